"""The training loop: fine-tune the image tower and temporal head against a frozen classifier.

One visible loop (see `train`): build data, towers, classifier and model; then for each step:
learning rate, forward under autocast, loss, backward (accumulating), clip, optimiser step, log,
evaluate and checkpoint. Runs on one CPU, one GPU, or many (torchrun + DistributedDataParallel).
"""
from __future__ import annotations

from .errors import TrainError  # noqa: F401  (re-exported: the error family lives in errors.py)

import json
import math
import os
import random
import sys
import time
import warnings
from contextlib import nullcontext

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import checkpoints, classifiers, engine, losses, metrics
from .cli import UsageError
from .config import Config, ConfigError
from .datasets import (DataError, FrameReader, TestDataset, TrainBatchSampler, TrainDataset, drop_short, few_shot,
                       load_split, train_collate)
from .labels import load_labels
from .model import VideoModel
from .towers import WeightsError, load_towers
from .transforms import TrainTransform

CHECKPOINT_LAST = "last.safetensors"
CHECKPOINT_BEST = "best.safetensors"




# ----------------------------------------------------------------------------- distribution

def setup_distributed() -> tuple[int, int, torch.device]:
    """torchrun sets RANK/WORLD_SIZE/LOCAL_RANK: NCCL on GPUs, gloo on CPUs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
        dist.init_process_group(backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    return rank, world, device


def log(msg: str, rank: int = 0) -> None:
    if rank == 0:
        tqdm.write(msg, file=sys.stderr)


# ----------------------------------------------------------------------------- building blocks

def build_classifier(cfg: Config, towers, names: list[str], model: VideoModel | None = None,
                     samples=None, reader=None, device=None) -> classifiers.Classifier:
    c = cfg.classifier
    if c.file:
        cls = classifiers.load_classifier(c.file)
        classifiers.check_same_labels(cls, names, c.file)
        return cls
    if c.type == "text":
        return classifiers.text_classifier(towers, names, c.prompts)
    if c.type == "lm":
        return classifiers.lm_classifier(names, c.lm)
    if c.type == "random":
        return classifiers.random_classifier(names, towers.embed_dim, c.seed)
    if c.type in ("orthogonal",):
        return classifiers.orthogonal_classifier(names, towers.embed_dim, c.seed)
    if c.type == "linear":  # learned: random start, trained with the towers
        cls = classifiers.random_classifier(names, towers.embed_dim, c.seed)
        cls.meta["type"] = "linear"
        return cls
    if c.type == "lda":
        cls, failed = lda_from_model(model, samples, names, cfg, reader, device)
        for msg in failed:
            log(f"warning: a video for the LDA classifier does not decode (left out): {msg}", engine.rank_world()[0])
        return cls
    raise ConfigError(f"classifier.type {c.type!r} unknown")


def lda_from_model(model: VideoModel, samples, names, cfg: Config, reader,
                   device) -> tuple[classifiers.Classifier, list[str]]:
    """LDA on frozen video embeddings of a seeded fraction of the training set; also the errors of
    the chosen videos that failed to decode (left out)."""
    rng = np.random.default_rng(cfg.classifier.seed)
    per_class: dict[int, list] = {}
    for s in samples:
        per_class.setdefault(s.label, []).append(s)
    chosen = []
    for c in sorted(per_class):
        items = per_class[c]
        k = max(2, int(round(len(items) * cfg.classifier.lda_fraction)))
        chosen.extend(items[i] for i in rng.permutation(len(items))[:k])
    ds = TestDataset(chosen, cfg.data.num_frames, model_input_size(cfg, model), 1, 1, reader, cfg.data.dense)
    emb = engine.embed_dataset(model, ds, device, batch_size=cfg.evaluation.batch_size, workers=cfg.data.workers,
                               progress=True, desc="lda embeddings", precision=cfg.evaluation.precision)
    targets = np.array([chosen[i].label for i in emb.indices])
    errors = dict(emb.errors)                                  # chosen index -> message
    lost = sorted({chosen[i].label for i in errors} - set(targets.tolist()))
    if lost:
        example = next(msg for i, msg in errors.items() if chosen[i].label == lost[0])
        raise classifiers.ClassifierError(f"lda: every chosen video of {len(lost)} class(es) failed to decode, "
                                          f"e.g. of {names[lost[0]]!r}: {example}")
    failed = list(errors.values())
    cls = classifiers.lda_classifier(emb.embeddings.numpy(), targets, names)
    cls.meta["fraction"] = cfg.classifier.lda_fraction
    return cls, failed


def model_input_size(cfg: Config, model: VideoModel) -> int:
    if cfg.data.input_size:
        return int(cfg.data.input_size)
    size = getattr(model.visual, "image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def load_pretrain(model: VideoModel, path: str, clip: str = "") -> None:
    """Initialise the image tower, head and logit_scale from a text4vis or original checkpoint."""
    if checkpoints.is_text4vis_checkpoint(path):
        _, tensors = checkpoints.read_text4vis(path)
        state = checkpoints.split_prefix(tensors, "model.")
    else:
        state = checkpoints.read_original(path)
    state = checkpoints.video_weights(state)
    checkpoints.check_visual_fits(state, model.visual.state_dict(), path, clip or "model.clip")
    missing, unexpected = checkpoints.load_state_or_explain(model, state, f"model.pretrain {path}")
    if unexpected:
        raise TrainError(f"{path}: weights that do not fit this model, e.g. {unexpected[0]} (head type differs?)")


def lr_lambda(total_steps: int, warmup_steps: int):
    """Learning-rate factor of optimiser step `step` (0-based): linear warmup (step + 1) / warmup_steps,
    then 0.5 * (1 + cos(pi * (step - warmup_steps) / (total_steps - warmup_steps))), per iteration."""
    def f(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return f


class Trainee(nn.Module):
    """What DistributedDataParallel wraps: the video model, plus the text tower in contrastive mode."""

    def __init__(self, video: VideoModel, contrastive: bool = False, text_clip: nn.Module | None = None,
                 tokens: torch.Tensor | None = None, gather: bool = True):
        super().__init__()
        self.video, self.contrastive, self.text, self.gather = video, contrastive, text_clip, gather
        self.register_buffer("tokens", tokens, persistent=False)

    def forward(self, frames: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.video.embed(frames)                                   # (b, dc)
        logits = self.video.logits(emb)                                  # (b, c)
        if not self.contrastive:
            return losses.classification_loss(logits, labels), logits
        if self.gather:                                                  # "batch gather" across GPUs
            emb, labels = losses.gather_with_grad(emb), losses.gather_with_grad(labels)
        classes = torch.unique(labels)                                   # (u,) classes in the batch
        if self.text is not None:                                        # online text tower
            class_text = self.text.encode_text(self.tokens[classes])
        else:                                                            # frozen: the CLIP text rows
            class_text = self.video.classifier[classes]
        loss = losses.contrastive_loss(emb, labels, class_text, classes, self.video.logit_scale.exp())
        return loss, logits

    @torch.no_grad()
    def sync_classifier(self) -> None:
        """Online text tower: set the video model's classifier rows to the text tower's current class
        embeddings, so that evaluation and checkpoints use the trained tower (not its initial rows)."""
        if self.contrastive and self.text is not None:
            rows = self.text.encode_text(self.tokens).float()
            self.video.classifier.copy_(rows / rows.norm(dim=-1, keepdim=True).clamp_min(1e-12))


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(tuple(state["numpy"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if torch.cuda.is_available() and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def build_optimizer(trainee: Trainee, o, device: torch.device) -> torch.optim.AdamW:
    """AdamW with two groups: the image tower (and text tower) and logit_scale at lr * clip_ratio,
    the rest (temporal head, projection, a learned classifier) at lr. Frozen parameters stay out."""
    slow = [p for n, p in trainee.named_parameters() if p.requires_grad
            and (n.startswith(("video.visual.", "text.")) or n == "video.logit_scale")]
    slow_ids = {id(p) for p in slow}
    fast = [p for p in trainee.parameters() if p.requires_grad and id(p) not in slow_ids]
    groups = [g for g in ({"params": slow, "lr": o.lr * o.clip_ratio}, {"params": fast, "lr": o.lr}) if g["params"]]
    return torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay,
                             fused=device.type == "cuda")


def _data_error_line(exc: BaseException) -> str:
    """The message of a DataError, also when a DataLoader worker wrapped it in its traceback text."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    last = lines[-1] if lines else type(exc).__name__
    prefix = f"{DataError.__module__}.{DataError.__name__}: "
    return last[len(prefix):] if last.startswith(prefix) else last


def _trim_metrics(path: str, global_step: int) -> None:
    """Resuming: drop records a killed run wrote after its last checkpoint (and a torn last line)."""
    if not os.path.isfile(path):
        return
    keep = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and rec.get("step", 0) <= global_step:
                keep.append(json.dumps(rec) + "\n")
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(keep)


# ----------------------------------------------------------------------------- the loop

def train(cfg: Config, output: str, notes: list[str] | None = None, progress: bool = True) -> dict:
    own_group = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized()
    rank, world, device = setup_distributed()
    try:
        return _train(cfg, output, notes, progress, rank, world, device)
    finally:
        if own_group and dist.is_initialized():
            dist.destroy_process_group()


def check_output(output: str, resume: str | None) -> None:
    """The run folder can be written, and starting afresh does not overwrite another run in it."""
    if not resume and os.path.isfile(os.path.join(output, CHECKPOINT_LAST)):
        raise ConfigError(f"--output {output}: already holds a run ({CHECKPOINT_LAST}); continue it with "
                          f"--resume auto, or choose another --output")
    engine.check_output(output, "--output", folder=True)


def _train(cfg: Config, output: str, notes, progress: bool, rank: int, world: int, device: torch.device) -> dict:
    for n in notes or []:
        log(f"note: {n}", rank)
    problem = None
    if rank == 0:
        try:
            check_output(output, cfg.training.resume)
        except (ConfigError, OSError, UsageError) as exc:
            problem = exc
    if world > 1:  # every rank stops, not only rank 0 (the others would wait for it forever)
        box = [str(problem) if problem else None]
        dist.broadcast_object_list(box, src=0)
        if box[0] and problem is None:
            raise ConfigError(box[0])
    if problem:
        raise problem
    seed = cfg.training.seed
    torch.manual_seed(seed)          # the same model initialisation on every rank
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)

    # --- data: samples and class names ---------------------------------------------------------------
    if not cfg.data.train_list:
        raise ConfigError("data.train_list is not set (a list file, a CSV or a folder per class)")
    names = load_labels(cfg.data.labels) if cfg.data.labels else None
    train_samples, names = load_split(cfg.data.train_list, cfg.data.train_root, names)
    if names is None:
        raise ConfigError("data.labels is not set (a label set name or file)")
    expected = getattr(cfg, "_num_classes", None)
    if expected is not None and expected != len(names):
        raise ConfigError(f"data.num_classes is {expected} but the label list has {len(names)} classes")
    val_samples = load_split(cfg.data.val_list, cfg.data.val_root, names)[0] if cfg.data.val_list else []
    if cfg.data.min_frames:
        listed = len(train_samples)
        train_samples = drop_short(train_samples, cfg.data.min_frames, cfg.data.train_list)
        log(f"data.min_frames {cfg.data.min_frames}: {listed - len(train_samples)} of {listed} training entries "
            f"dropped (fewer frames by the list)", rank)
    distinct_train = train_samples
    if cfg.data.shot:
        chosen = few_shot(train_samples, cfg.data.shot, seed, len(names))
        repeats = max(1, len(train_samples) // max(1, len(chosen)))  # keep about as many steps per epoch
        log(f"few-shot: {len(chosen)} videos ({cfg.data.shot} per class), repeated {repeats}x per epoch", rank)
        if rank == 0:
            os.makedirs(output, exist_ok=True)
            with open(os.path.join(output, "fewshot_videos.txt"), "w") as f:
                f.writelines(f"{s.path} {s.num_frames} {s.label}\n" if s.num_frames is not None
                             else f"{s.path} {s.label}\n" for s in chosen)
        distinct_train, train_samples = chosen, chosen * repeats
    reader = FrameReader(cfg.data.image_tmpl, cfg.data.index_bias)

    # --- towers, model, classifier -------------------------------------------------------------------
    towers = load_towers(cfg.model.clip)
    model = VideoModel(towers.clip.visual, towers.embed_dim, cfg.model.head, head_heads=towers.head_heads,
                       logit_scale=float(towers.clip.logit_scale.detach()), mean=towers.mean, std=towers.std)
    if cfg.model.pretrain:
        load_pretrain(model, cfg.model.pretrain, cfg.model.clip)
    model.to(device)
    input_size = model_input_size(cfg, model)
    cls = build_classifier(cfg, towers, names, model, distinct_train, reader, device)
    model.set_classifier(cls.weight, learn=cfg.classifier.type == "linear" and not cfg.classifier.file)
    if cfg.model.freeze_visual:
        model.visual.requires_grad_(False)

    text_clip, tokens = None, None
    contrastive = cfg.training.mode == "contrastive"
    if contrastive and cfg.training.text_tower == "online":
        text_clip = towers.clip
        text_clip.visual = nn.Identity()          # the image tower lives in the video model
        text_clip.logit_scale.requires_grad_(False)
        tokens = towers.tokenize([cfg.classifier.prompts[0].format(n) for n in names])
    elif contrastive and cls.meta.get("type") != "text":
        raise ConfigError("training.text_tower=frozen contrasts against the CLIP text rows: set classifier.type=text")
    trainee = Trainee(model, contrastive, text_clip, tokens, cfg.training.batch_gather).to(device)
    # the model is initialised identically on every rank (above); from here on each rank draws its own
    torch.manual_seed(seed + rank)
    np.random.seed((seed + rank) % 2 ** 32)
    random.seed(seed + rank)
    net = trainee
    if world > 1:
        net = nn.parallel.DistributedDataParallel(trainee, device_ids=[device.index] if device.type == "cuda" else None)

    # --- loader: each rank its own disjoint share of every epoch ---------------------------------------
    transform = TrainTransform(input_size, scale=(cfg.data.crop_scale, 1.0), flip=cfg.data.flip,
                               grayscale=cfg.data.grayscale,
                               randaug=tuple(cfg.data.randaug) if cfg.data.randaug else None,
                               blur=cfg.data.blur, solarize=cfg.data.solarize)
    dataset = TrainDataset(train_samples, cfg.data.num_frames, transform, reader, cfg.data.dense,
                           cfg.data.random_shift, seed)
    sampler = TrainBatchSampler(len(dataset), cfg.data.batch_size, world, rank, seed)
    loader_kwargs = dict(num_workers=cfg.data.workers, pin_memory=device.type == "cuda", collate_fn=train_collate)
    if cfg.data.workers > 0:
        loader_kwargs.update(persistent_workers=True, prefetch_factor=4)
    loader = DataLoader(dataset, batch_sampler=sampler, **loader_kwargs)
    accum = cfg.optim.grad_accumulation
    batches = sampler.batches_per_epoch                      # micro-batches per epoch (per rank)
    steps_per_epoch = math.ceil(batches / accum)             # optimiser steps per epoch
    total_steps = steps_per_epoch * cfg.optim.epochs

    # --- optimiser: image tower and logit_scale at lr * clip_ratio, the rest at lr ---------------------
    o = cfg.optim
    optimizer = build_optimizer(trainee, o, device)
    warmup_steps = int(o.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(total_steps, warmup_steps))
    precision = o.precision
    if device.type != "cuda":
        precision = "fp32"
    elif precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")

    # --- run folder, resume --------------------------------------------------------------------------
    state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_top1": -1.0, "bad_videos": [], "samples_seen": 0}
    resume = cfg.training.resume
    last_path = os.path.join(output, CHECKPOINT_LAST)
    if resume == "auto":
        resume = last_path if os.path.isfile(last_path) else None
        if resume is None:
            log(f"--resume auto: no {last_path} yet, starting fresh", rank)
    if resume:
        resumed = restore(resume, trainee, optimizer, scheduler, scaler, device)
        state.update({k: resumed[k] for k in state if k in resumed})
        log(f"resumed from {resume}: epoch {state['epoch']}, step {state['global_step']}", rank)
    metrics_path = os.path.join(output, "metrics.jsonl")
    if rank == 0:
        os.makedirs(output, exist_ok=True)
        for name in os.listdir(output):  # temporary files of checkpoint writes a kill interrupted
            if ".safetensors.tmp" in name:
                os.remove(os.path.join(output, name))
        if resume:
            _trim_metrics(metrics_path, state["global_step"])
        with open(os.path.join(output, "config.yaml"), "w") as f:
            yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)
        if notes:
            with open(os.path.join(output, "config_notes.txt"), "w") as f:
                f.writelines(n + "\n" for n in notes)
    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(os.path.join(output, "tensorboard"), purge_step=state["global_step"] + 1 if resume else None)
    metrics_file = open(metrics_path, "a") if rank == 0 else None
    settings = {"num_frames": cfg.data.num_frames, "input_size": input_size, "dense": cfg.data.dense,
                "image_tmpl": cfg.data.image_tmpl, "index_bias": cfg.data.index_bias}

    def save(path: str, with_train_state: bool) -> None:
        trainee.sync_classifier()  # contrastive, online text tower: classifier rows from the trained tower
        if rank != 0:
            return
        train_state = None
        if with_train_state:
            train_state = dict(state, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                               scaler=scaler.state_dict(), rng=rng_state())
        try:
            checkpoints.save_checkpoint(path, model, towers,
                                        labels=names, classifier_meta=cls.meta, settings=settings,
                                        config=cfg.to_dict(), train_state=train_state,
                                        include_text=cfg.training.checkpoint_text_tower)
        except OSError as exc:
            raise TrainError(f"cannot write checkpoint {path} ({exc}); the previous one, if any, is intact") from None

    def write_metrics(record: dict) -> None:
        if metrics_file is not None:
            metrics_file.write(json.dumps(record) + "\n")
            metrics_file.flush()
        if writer is not None:
            for k, v in record.items():
                if k not in ("step", "epoch") and isinstance(v, (int, float)):
                    writer.add_scalar(k, v, record["step"])

    def sync(values: list[float]) -> list[float]:
        """Sum small per-rank numbers over the ranks, so that every rank takes the same decisions."""
        if world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device if device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return t.tolist()

    def gather_messages(msgs: list[str]) -> list[str]:
        if world == 1:
            return msgs
        parts: list = [None] * world
        dist.all_gather_object(parts, msgs)
        return [m for p in parts for m in p]

    log(f"training {len(train_samples)} videos, {len(names)} classes, {world} process(es) x batch "
        f"{cfg.data.batch_size} x accumulation {accum} = effective batch {cfg.data.batch_size * world * accum}; "
        f"{steps_per_epoch} steps/epoch, {cfg.optim.epochs} epochs, {precision} on {device}", rank)

    # --- the loop ----------------------------------------------------------------------------------
    nonfinite = 0                                   # optimiser steps skipped in a row (non-finite loss)
    bad_seen: set[str] = set(state["bad_videos"])
    val_warned: set[str] = set()
    stop = False
    result: dict = {}
    try:
        for epoch in range(state["epoch"], cfg.optim.epochs):
            skip = state["step_in_epoch"] * accum          # > 0 only when resuming mid-epoch
            sampler.set_epoch(epoch, start_batch=skip)
            net.train()
            bar = tqdm(total=steps_per_epoch, initial=state["step_in_epoch"], desc=f"epoch {epoch + 1}/{cfg.optim.epochs}",
                       unit="step", disable=not progress or rank != 0, dynamic_ncols=True)
            t_log, videos_since = time.perf_counter(), 0
            group_losses: list[float] = []
            group_bad = False
            for b_idx, (frames, labels, failed) in enumerate(loader, start=skip):
                group_start = b_idx - b_idx % accum
                group_len = min(accum, batches - group_start)            # the last group may be shorter
                last_micro = b_idx + 1 == group_start + group_len
                # 1. forward and backward (gradients accumulate over the group's batches)
                frames = frames.to(device, non_blocking=True)
                labels = labels.to(device, non_blocking=True)
                finite, loss_value = True, 0.0
                no_sync = net.no_sync() if (world > 1 and not last_micro) else nullcontext()
                with no_sync:
                    if not group_bad:
                        with engine.autocast(device, precision):
                            loss, _ = net(frames, labels)
                        loss_value = float(loss.detach())
                        finite = math.isfinite(loss_value)
                    # every rank learns whether a loss anywhere was non-finite, and about new bad videos
                    new_bad = [m for m in dict.fromkeys(failed) if m not in bad_seen]
                    flags = sync([0.0 if finite else 1.0, float(len(new_bad)), float(len(labels)),
                                  loss_value if finite else 0.0])
                    if not group_bad and flags[0] == 0:
                        scaler.scale(loss / group_len).backward()
                        group_losses.append(flags[3] / world)
                    elif not group_bad:
                        group_bad = True
                        optimizer.zero_grad(set_to_none=True)
                # 2. bad videos: log each once, count, stop when too many
                if flags[1]:
                    for msg in gather_messages(new_bad):
                        if msg not in bad_seen:
                            bad_seen.add(msg)
                            state["bad_videos"].append(msg)
                            log(f"warning: skipped a video that does not decode: {msg}", rank)
                state["samples_seen"] += int(flags[2])
                videos_since += int(flags[2])
                n_bad = len(state["bad_videos"])
                if n_bad and n_bad > cfg.data.max_bad_fraction * max(100, state["samples_seen"] + n_bad) \
                        and n_bad > cfg.data.max_bad_fraction * len(dataset):
                    raise TrainError(f"{n_bad} videos failed to decode (more than data.max_bad_fraction="
                                     f"{cfg.data.max_bad_fraction}; listed in {os.path.join(output, 'bad_videos.txt')}); "
                                     f"run `text4vis check-data` and fix the lists")
                if not last_micro:
                    continue
                # 3. optimiser step (unscale, clip, step), or skip it when a loss was not finite
                step = state["global_step"] + 1
                lrs = [g["lr"] for g in optimizer.param_groups]          # the learning rates of this step
                if group_bad:
                    nonfinite += 1
                    optimizer.zero_grad(set_to_none=True)
                    log(f"warning: non-finite loss at step {step}; step skipped", rank)
                    if nonfinite >= cfg.training.max_nonfinite:
                        raise TrainError(f"{nonfinite} non-finite losses in a row (last at step {step}); stopped; "
                                         f"the last good checkpoint is {last_path}. Lower optim.lr or use bf16/fp32")
                else:
                    nonfinite = 0
                    if o.grad_clip:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(trainee.parameters(), o.grad_clip)
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad(set_to_none=True)
                with warnings.catch_warnings():  # a skipped first step makes torch warn about the order
                    warnings.simplefilter("ignore", UserWarning)
                    scheduler.step()                                      # skipped steps keep the schedule's pace
                state["global_step"] = step
                state["step_in_epoch"] += 1
                bar.update(1)
                # 4. log
                if not group_bad and (step % cfg.training.print_freq == 0 or state["step_in_epoch"] == steps_per_epoch):
                    now = time.perf_counter()
                    rate = videos_since / max(1e-9, now - t_log)
                    rec = {"step": step, "epoch": epoch + state["step_in_epoch"] / steps_per_epoch,
                           "loss": sum(group_losses) / len(group_losses), "lr": lrs[-1]}
                    if len(lrs) > 1:
                        rec["lr_clip"] = lrs[0]
                    rec.update(logit_scale=float(model.logit_scale.detach().exp()), videos_per_s=rate,
                               bad_videos=len(state["bad_videos"]))
                    write_metrics(rec)
                    bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{rec['lr']:.2e}", vid_s=f"{rate:.1f}")
                    t_log, videos_since = now, 0
                group_losses, group_bad = [], False
                # 5. mid-epoch checkpoint / step limit
                if cfg.training.save_every_steps and step % cfg.training.save_every_steps == 0:
                    save(last_path, True)
                if cfg.training.max_steps and step >= cfg.training.max_steps:
                    stop = True
                    break
            bar.close()
            if stop and state["step_in_epoch"] < steps_per_epoch:
                save(last_path, True)  # mid-epoch: resumable from exactly here
                break
            # end of epoch: evaluate, checkpoint
            state["epoch"], state["step_in_epoch"] = epoch + 1, 0
            evaluating = bool(val_samples) and cfg.training.eval_freq > 0
            if evaluating and ((epoch + 1) % cfg.training.eval_freq == 0 or epoch + 1 == cfg.optim.epochs or stop):
                trainee.sync_classifier()
                result = evaluate(model, val_samples, cfg, input_size, reader, device, progress)
                result.update(step=state["global_step"], epoch=epoch + 1)
                write_metrics({k: v for k, v in result.items() if k != "failed"} | {"step": state["global_step"]})
                for msg in result["failed"]:                              # named once per run
                    if msg not in val_warned:
                        val_warned.add(msg)
                        log(f"warning: a val video does not decode (not counted): {msg}", rank)
                log(f"epoch {epoch + 1}: val top-1 {100 * result['val_top1']:.2f}%  top-5 {100 * result['val_top5']:.2f}%"
                    f"  ({result['val_videos']} videos, {result['val_failed']} failed)", rank)
                if result["val_top1"] > state["best_top1"]:
                    state["best_top1"] = result["val_top1"]
                    save(os.path.join(output, CHECKPOINT_BEST), False)
            elif not evaluating:  # nothing to choose by: `best` is the latest model
                save(os.path.join(output, CHECKPOINT_BEST), False)
            save(last_path, True)
            if stop:
                break
    except torch.cuda.OutOfMemoryError:
        raise TrainError(f"out of GPU memory at batch size {cfg.data.batch_size}: lower data.batch_size and raise "
                         f"optim.grad_accumulation to keep the effective batch, or use fewer data.num_frames") from None
    except DataError as exc:  # e.g. many videos in a row that do not decode (raised in a loader worker)
        raise TrainError(_data_error_line(exc)) from None
    finally:
        if metrics_file is not None:
            metrics_file.close()
        if writer is not None:
            writer.close()
        if rank == 0 and state["bad_videos"]:
            with open(os.path.join(output, "bad_videos.txt"), "w") as f:
                f.writelines(m + "\n" for m in state["bad_videos"])
    summary = {"output": output, "steps": state["global_step"], "epochs_done": state["epoch"],
               "best_top1": state["best_top1"], "bad_videos": len(state["bad_videos"]), **result}
    log(f"done: {state['global_step']} steps; best val top-1 "
        f"{'%.2f%%' % (100 * state['best_top1']) if state['best_top1'] >= 0 else 'n/a'}; "
        f"{len(state['bad_videos'])} bad videos; checkpoints in {output}", rank)
    return summary


def evaluate(model: VideoModel, samples, cfg: Config, input_size: int, reader, device, progress: bool) -> dict:
    """Single-view top-1/top-5 on the val list (every video exactly once, also under DDP)."""
    ds = TestDataset(samples, cfg.data.num_frames, input_size, 1, 1, reader, cfg.data.dense)
    emb = engine.embed_dataset(model, ds, device, batch_size=cfg.evaluation.batch_size, workers=cfg.data.workers,
                               progress=progress, desc="val", precision=cfg.evaluation.precision)
    model.train()
    if not emb.indices:
        return {"val_top1": 0.0, "val_top5": 0.0, "val_videos": 0, "val_failed": len(emb.errors),
                "failed": [msg for _, msg in emb.errors]}
    scores = engine.scores_from_embeddings(emb.embeddings, model.classifier).numpy()
    labels = np.array([samples[i].label for i in emb.indices])
    acc = metrics.topk_accuracy(scores, labels, (1, 5))
    return {"val_top1": acc["top1"], "val_top5": acc["top5"], "val_videos": len(emb.indices),
            "val_failed": len(emb.errors), "failed": [msg for _, msg in emb.errors]}


def restore(path: str, trainee: Trainee, optimizer, scheduler, scaler, device) -> dict:
    """Load a `last` checkpoint: model, optimiser, scheduler, scaler, RNG states, counters."""
    # problems of the file given are setup errors (exit 2), as for any other input file
    if not os.path.isfile(path):
        raise WeightsError(f"--resume {path}: no such checkpoint")
    if not checkpoints.is_text4vis_checkpoint(path):
        raise WeightsError(f"--resume {path}: not a text4vis checkpoint (an original Text4Vis checkpoint can start "
                           f"a run as model.pretrain, not resume one)")
    meta, tensors = checkpoints.read_text4vis(path)
    if "train" not in meta:
        raise WeightsError(f"--resume {path}: this checkpoint has no training state (use a `last` checkpoint)")
    # in place: the optimiser keeps pointing at the same parameters
    missing, unexpected = checkpoints.load_state_or_explain(trainee.video, checkpoints.split_prefix(tensors, "model."),
                                                            f"--resume {path}")
    if missing or unexpected:
        raise WeightsError(f"--resume {path}: the checkpoint's model does not fit this config "
                         f"({len(missing)} weights missing, e.g. {missing[:1]}; {len(unexpected)} unexpected, "
                         f"e.g. {unexpected[:1]}); resume with the config it was trained with")
    if trainee.text is not None and any(k.startswith("text.") for k in tensors):
        trainee.text.load_state_dict(checkpoints.split_prefix(tensors, "text."), strict=False)
    train_state = checkpoints.unpack(meta["train"], tensors)
    try:
        optimizer.load_state_dict(train_state["optimizer"])
    except ValueError as exc:
        raise WeightsError(f"--resume {path}: the optimiser state does not fit this config ({exc})") from None
    scheduler.load_state_dict(train_state["scheduler"])
    scaler.load_state_dict(train_state["scaler"])
    set_rng_state(train_state["rng"])
    return train_state
