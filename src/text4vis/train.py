"""The training loop: fine-tune the image tower and temporal head against a frozen classifier.

One visible loop (`_train`): `Run` builds data, towers, classifier, model, loader and optimiser (and
resumes); then for each micro-batch: forward under autocast, loss, backward (accumulating); for each
optimiser step: learning rate, unscale + clip, step, log, checkpoint; for each epoch: evaluate and
checkpoint. Runs on one CPU, one GPU, or many (torchrun + DistributedDataParallel). The run folder's
files are described in runs.py.
"""
from __future__ import annotations


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
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import checkpoints, classifiers, engine, losses, metrics
from .config import Config, ConfigError
from .devices import autocast, precision_name, process_group, setup_distributed  # noqa: F401  (re-exported)
from .errors import OutputError, TrainError, UsageError
from .runs import (CHECKPOINT_BEST, CHECKPOINT_LAST, FolderLock, MetricsLog, check_run_folder, clear_leftovers,
                   config_changes, resume_path, start_folder, write_lines)
from .datasets import (DataError, FrameReader, TestDataset, TrainBatchSampler, TrainDataset, few_shot, load_split,
                       train_collate, drop_short)
from .labels import resolve_labels
from .model import VideoModel
from .towers import WeightsError, load_towers
from .transforms import TrainTransform





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
    if c.type in classifiers.KINDS:
        return classifiers.build_classifier(c.type, names, towers=towers, dim=towers.embed_dim, prompts=c.prompts,
                                            lm=c.lm, seed=c.seed)
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


# ----------------------------------------------------------------------------- setup, in named steps

def check_folder_on_all_ranks(output: str, resume: str | None, rank: int, world: int):
    """Rank 0 checks the run folder, locks it for this run (see runs.FolderLock) and, for a fresh run,
    clears what an earlier run that stopped before its first checkpoint left; every rank stops if the
    folder is unusable (the others would wait forever). Returns the lock (None on other ranks)."""
    problem, lock = None, None
    if rank == 0:
        try:
            check_run_folder(output, resume)
            lock = FolderLock(output)
            removed = clear_leftovers(output) if resume_path(output, resume) is None else []
            if removed:
                log(f"note: removed the files of an earlier run that stopped before its first checkpoint "
                    f"({', '.join(removed)}); this run starts clean")
        except (ConfigError, OSError, OutputError, UsageError) as exc:
            problem = exc
    if world > 1:
        box = [str(problem) if problem else None]
        dist.broadcast_object_list(box, src=0)
        if box[0] and problem is None:
            raise ConfigError(box[0])
    if problem:
        raise problem
    return lock


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


def load_data(cfg: Config, output: str, rank: int):
    """(class names, training samples of an epoch, the distinct ones, val samples); a few-shot run's
    chosen videos are written to the run folder."""
    if not cfg.data.train_list:
        raise ConfigError("data.train_list is not set (a list file, a CSV or a folder per class)")
    names = resolve_labels(("data.labels", cfg.data.labels))
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
    distinct = train_samples
    if cfg.data.shot:
        chosen = few_shot(train_samples, cfg.data.shot, cfg.training.seed, len(names))
        repeats = max(1, len(train_samples) // max(1, len(chosen)))  # keep about as many steps per epoch
        log(f"few-shot: {len(chosen)} videos ({cfg.data.shot} per class), repeated {repeats}x per epoch", rank)
        if rank == 0:
            os.makedirs(output, exist_ok=True)
            write_lines(os.path.join(output, "fewshot_videos.txt"),
                        [f"{s.path} {s.num_frames} {s.label}" if s.num_frames is not None else f"{s.path} {s.label}"
                         for s in chosen])
        distinct, train_samples = chosen, chosen * repeats
    return names, train_samples, distinct, val_samples


def build_model(cfg: Config, names, distinct, reader, device):
    """(towers, video model on `device`, classifier): the towers of model.clip, the temporal head, an
    optional model.pretrain checkpoint, and the classifier set into the model (learned when linear)."""
    towers = load_towers(cfg.model.clip)
    model = VideoModel(towers.clip.visual, towers.embed_dim, cfg.model.head, head_heads=towers.head_heads,
                       logit_scale=float(towers.clip.logit_scale.detach()), mean=towers.mean, std=towers.std)
    if cfg.model.pretrain:
        load_pretrain(model, cfg.model.pretrain, cfg.model.clip)
    model.to(device)
    cls = build_classifier(cfg, towers, names, model, distinct, reader, device)
    model.set_classifier(cls.weight, learn=cfg.classifier.type == "linear" and not cfg.classifier.file)
    if cfg.model.freeze_visual:
        model.visual.requires_grad_(False)
    return towers, model, cls


def build_trainee(cfg: Config, towers, model: VideoModel, cls, names, device) -> Trainee:
    """The video model, plus the online text tower in contrastive mode."""
    text_clip, tokens = None, None
    contrastive = cfg.training.mode == "contrastive"
    if contrastive and cfg.training.text_tower == "online":
        text_clip = towers.clip
        text_clip.visual = nn.Identity()          # the image tower lives in the video model
        text_clip.logit_scale.requires_grad_(False)
        tokens = towers.tokenize([cfg.classifier.prompts[0].format(n) for n in names])
    elif contrastive and cls.meta.get("type") != "text":
        raise ConfigError("training.text_tower=frozen contrasts against the CLIP text rows: set classifier.type=text")
    return Trainee(model, contrastive, text_clip, tokens, cfg.training.batch_gather).to(device)


def build_loader(cfg: Config, samples, input_size: int, reader, rank: int, world: int, device):
    """(dataset, batch sampler, loader): each rank its own disjoint share of every epoch."""
    transform = TrainTransform(input_size, scale=(cfg.data.crop_scale, 1.0), flip=cfg.data.flip,
                               grayscale=cfg.data.grayscale,
                               randaug=tuple(cfg.data.randaug) if cfg.data.randaug else None,
                               blur=cfg.data.blur, solarize=cfg.data.solarize)
    dataset = TrainDataset(samples, cfg.data.num_frames, transform, reader, cfg.data.dense,
                           cfg.data.random_shift, cfg.training.seed)
    sampler = TrainBatchSampler(len(dataset), cfg.data.batch_size, world, rank, cfg.training.seed)
    kwargs = dict(num_workers=cfg.data.workers, pin_memory=device.type == "cuda", collate_fn=train_collate)
    if cfg.data.workers > 0:
        kwargs.update(persistent_workers=True, prefetch_factor=4)
    return dataset, sampler, DataLoader(dataset, batch_sampler=sampler, **kwargs)


class Run:
    """Everything a training run holds between steps, built by `setup` in the order the loop needs it."""

    def __init__(self, cfg: Config, output: str, notes, rank: int, world: int, device: torch.device):
        self.cfg, self.output, self.rank, self.world, self.device = cfg, output, rank, world, device
        seed = cfg.training.seed
        seed_everything(seed)                       # the same model initialisation on every rank
        self.names, self.train_samples, distinct, self.val_samples = load_data(cfg, output, rank)
        self.reader = FrameReader(cfg.data.image_tmpl, cfg.data.index_bias)
        self.towers, self.model, self.cls = build_model(cfg, self.names, distinct, self.reader, device)
        self.input_size = model_input_size(cfg, self.model)
        self.trainee = build_trainee(cfg, self.towers, self.model, self.cls, self.names, device)
        seed_everything(seed + rank)                # from here on each rank draws its own
        self.net = self.trainee
        if world > 1:
            self.net = nn.parallel.DistributedDataParallel(
                self.trainee, device_ids=[device.index] if device.type == "cuda" else None)
        self.dataset, self.sampler, self.loader = build_loader(cfg, self.train_samples, self.input_size,
                                                               self.reader, rank, world, device)
        self.accum = cfg.optim.grad_accumulation
        self.batches = self.sampler.batches_per_epoch                 # micro-batches per epoch (per rank)
        self.steps_per_epoch = math.ceil(self.batches / self.accum)   # optimiser steps per epoch
        # optimiser: image tower and logit_scale at lr * clip_ratio, the rest at lr; warmup + cosine
        self.optimizer = build_optimizer(self.trainee, cfg.optim, device)
        total_steps = self.steps_per_epoch * cfg.optim.epochs
        warmup_steps = int(cfg.optim.warmup_epochs * self.steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(total_steps, warmup_steps))
        self.precision = precision_name(device, cfg.optim.precision)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_top1": -1.0, "bad_videos": [],
                      "samples_seen": 0}
        self.last_path = os.path.join(output, CHECKPOINT_LAST)
        resume = self.resume(cfg.training.resume)
        if rank == 0:
            start_folder(output, cfg.to_dict(), notes, self.state["global_step"] if resume else None)
        self.metrics = MetricsLog(output, rank, purge_step=self.state["global_step"] + 1 if resume else None)
        self.settings = {"num_frames": cfg.data.num_frames, "input_size": self.input_size, "dense": cfg.data.dense,
                         "image_tmpl": cfg.data.image_tmpl, "index_bias": cfg.data.index_bias}

    def resume(self, resume: str | None) -> str | None:
        """Restore a `last` checkpoint (training.resume: 'auto' or a path) into the run; the path or None.
        A changed config is said, line by line; only safe changes are allowed (runs.config_changes). With
        more optim.epochs the warmup + cosine schedule is the one the new total would have had from the
        start: the learning rate resumes at that schedule's value for the step reached."""
        path = resume_path(self.output, resume)
        if resume == "auto" and path is None:
            log(f"training.resume='auto': no {self.last_path} yet, starting fresh", self.rank)
        if path:
            resumed, stored_config = restore(path, self.trainee, self.optimizer, self.scheduler, self.scaler,
                                             self.device)
            self.state.update({k: resumed[k] for k in self.state if k in resumed})
            changes = config_changes(stored_config, self.cfg.to_dict(), self.state["epoch"], path)
            before = [g["lr"] for g in self.optimizer.param_groups]
            # the schedule of this config at the step reached (the stored lr belongs to the stored schedule)
            factor = self.scheduler.lr_lambdas[0](self.scheduler.last_epoch)
            for g, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs):
                g["lr"] = base * factor
            self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]
            log(f"resumed from {path}: epoch {self.state['epoch']}, step {self.state['global_step']}", self.rank)
            for line in changes:
                log(f"resuming with a changed config: {line}", self.rank)
            if changes and before[-1] != self.optimizer.param_groups[-1]["lr"]:
                log(f"the learning-rate schedule follows the new config: lr {before[-1]:.3g} -> "
                    f"{self.optimizer.param_groups[-1]['lr']:.3g} at step {self.state['global_step']}", self.rank)
        return path

    def save(self, path: str, with_train_state: bool) -> None:
        self.trainee.sync_classifier()  # contrastive, online text tower: classifier rows from the trained tower
        if self.rank != 0:
            return
        train_state = None
        if with_train_state:
            train_state = dict(self.state, optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                               scaler=self.scaler.state_dict(), rng=rng_state())
        try:
            checkpoints.save_checkpoint(path, self.model, self.towers, labels=self.names,
                                        classifier_meta=self.cls.meta, settings=self.settings,
                                        config=self.cfg.to_dict(), train_state=train_state,
                                        include_text=self.cfg.training.checkpoint_text_tower)
        except OSError as exc:
            raise TrainError(f"cannot write checkpoint {path} ({exc}); the previous one, if any, is intact") from None

    def sync(self, values: list[float]) -> list[float]:
        """Sum small per-rank numbers over the ranks, so that every rank takes the same decisions."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return t.tolist()

    def gather_messages(self, msgs: list[str]) -> list[str]:
        if self.world == 1:
            return msgs
        parts: list = [None] * self.world
        dist.all_gather_object(parts, msgs)
        return [m for p in parts for m in p]

    def close(self) -> None:
        self.metrics.close()
        if self.rank == 0 and self.state["bad_videos"]:
            write_lines(os.path.join(self.output, "bad_videos.txt"), self.state["bad_videos"])


# ----------------------------------------------------------------------------- one step's parts

def forward_backward(run: Run, frames, labels, failed, group: dict) -> list[float]:
    """Forward under autocast and backward of one micro-batch (gradients accumulate over the group), unless
    the group already had a non-finite loss. Returns the numbers every rank agrees on:
    [ranks with a non-finite loss, new bad videos, videos in the batch, summed loss]."""
    frames = frames.to(run.device, non_blocking=True)
    labels = labels.to(run.device, non_blocking=True)
    finite, loss_value = True, 0.0
    no_sync = run.net.no_sync() if (run.world > 1 and not group["last_micro"]) else nullcontext()
    with no_sync:
        if not group["bad"]:
            with autocast(run.device, run.precision):
                loss, _ = run.net(frames, labels)
            loss_value = float(loss.detach())
            finite = math.isfinite(loss_value)
        # every rank learns whether a loss anywhere was non-finite, and about new bad videos
        group["new_bad"] = [m for m in dict.fromkeys(failed) if m not in group["bad_seen"]]
        flags = run.sync([0.0 if finite else 1.0, float(len(group["new_bad"])), float(len(labels)),
                          loss_value if finite else 0.0])
        if not group["bad"] and flags[0] == 0:
            run.scaler.scale(loss / group["len"]).backward()
            group["losses"].append(flags[3] / run.world)
        elif not group["bad"]:
            group["bad"] = True
            run.optimizer.zero_grad(set_to_none=True)
    return flags


def count_bad_videos(run: Run, flags: list[float], group: dict) -> int:
    """Log each video that failed to decode once, count the videos seen; stop when too many failed.
    Returns the number of videos of this batch."""
    cfg, state = run.cfg, run.state
    if flags[1]:
        for msg in run.gather_messages(group["new_bad"]):
            if msg not in group["bad_seen"]:
                group["bad_seen"].add(msg)
                state["bad_videos"].append(msg)
                log(f"warning: skipped a video that does not decode: {msg}", run.rank)
    state["samples_seen"] += int(flags[2])
    n_bad = len(state["bad_videos"])
    if n_bad and n_bad > cfg.data.max_bad_fraction * max(100, state["samples_seen"] + n_bad) \
            and n_bad > cfg.data.max_bad_fraction * len(run.dataset):
        raise TrainError(f"{n_bad} videos failed to decode (more than data.max_bad_fraction="
                         f"{cfg.data.max_bad_fraction}; listed in {os.path.join(run.output, 'bad_videos.txt')}); "
                         f"run `text4vis check-data` and fix the lists")
    return int(flags[2])


def optimizer_step(run: Run, step: int, group: dict, nonfinite: int) -> int:
    """Unscale, clip, step and zero the gradients, or skip the step when a loss of the group was not
    finite (several in a row stop the run). The schedule advances either way. Returns the skips in a row."""
    if group["bad"]:
        nonfinite += 1
        run.optimizer.zero_grad(set_to_none=True)
        log(f"warning: non-finite loss at step {step}; step skipped", run.rank)
        if nonfinite >= run.cfg.training.max_nonfinite:
            raise TrainError(f"{nonfinite} non-finite losses in a row (last at step {step}); stopped; "
                             f"the last good checkpoint is {run.last_path}. Lower optim.lr or use bf16/fp32")
    else:
        nonfinite = 0
        if run.cfg.optim.grad_clip:
            run.scaler.unscale_(run.optimizer)
            torch.nn.utils.clip_grad_norm_(run.trainee.parameters(), run.cfg.optim.grad_clip)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.optimizer.zero_grad(set_to_none=True)
        check_finite_parameters(run, step)
    with warnings.catch_warnings():  # a skipped first step makes torch warn about the order
        warnings.simplefilter("ignore", UserWarning)
        run.scheduler.step()                                      # skipped steps keep the schedule's pace
    return nonfinite


def check_finite_parameters(run: Run, step: int) -> None:
    """After an optimiser step: parameters that became NaN or Inf (a diverged step, a damaged optimiser
    state) stop the run before anything is saved, so the checkpoints on disk stay the last good ones."""
    params = [p for p in run.trainee.parameters() if p.requires_grad]
    finite = torch.stack([torch.isfinite(p).all() for p in params])   # one device sync, not one per tensor
    if not bool(finite.all()):
        name = next(n for (n, p), ok in zip(((n, p) for n, p in run.trainee.named_parameters() if p.requires_grad),
                                           finite.tolist()) if not ok)
        raise TrainError(f"parameter {name} became non-finite (NaN or Inf) at step {step}; stopped without saving; "
                         f"the last good checkpoint is {run.last_path}. Lower optim.lr or use bf16/fp32")


def step_record(run: Run, step: int, epoch: int, losses_: list[float], lrs: list[float], rate: float) -> dict:
    """The metrics.jsonl record of a logged step."""
    rec = {"step": step, "epoch": epoch + run.state["step_in_epoch"] / run.steps_per_epoch,
           "loss": sum(losses_) / len(losses_), "lr": lrs[-1]}
    if len(lrs) > 1:
        rec["lr_clip"] = lrs[0]
    rec.update(logit_scale=float(run.model.logit_scale.detach().exp()), videos_per_s=rate,
               bad_videos=len(run.state["bad_videos"]))
    return rec


def end_of_epoch(run: Run, epoch: int, stop: bool, val_warned: set, progress: bool) -> dict:
    """Evaluate when it is time (val top-1 picks `best`), then write the `last` checkpoint."""
    cfg, state = run.cfg, run.state
    result: dict = {}
    evaluating = bool(run.val_samples) and cfg.training.eval_freq > 0
    if evaluating and ((epoch + 1) % cfg.training.eval_freq == 0 or epoch + 1 == cfg.optim.epochs or stop):
        run.trainee.sync_classifier()
        result = evaluate(run.model, run.val_samples, cfg, run.input_size, run.reader, run.device, progress)
        result.update(step=state["global_step"], epoch=epoch + 1)
        run.metrics.write({k: v for k, v in result.items() if k != "failed"} | {"step": state["global_step"]})
        for msg in result["failed"]:                              # named once per run
            if msg not in val_warned:
                val_warned.add(msg)
                log(f"warning: a val video does not decode (not counted): {msg}", run.rank)
        log(f"epoch {epoch + 1}: val top-1 {100 * result['val_top1']:.2f}%  top-5 {100 * result['val_top5']:.2f}%"
            f"  ({result['val_videos']} videos, {result['val_failed']} failed)", run.rank)
        if result["val_top1"] > state["best_top1"]:
            state["best_top1"] = result["val_top1"]
            run.save(os.path.join(run.output, CHECKPOINT_BEST), False)
    elif not evaluating:  # nothing to choose by: `best` is the latest model
        run.save(os.path.join(run.output, CHECKPOINT_BEST), False)
    run.save(run.last_path, True)
    return result


# ----------------------------------------------------------------------------- the loop

def train(cfg: Config, output: str, notes: list[str] | None = None, progress: bool = True) -> dict:
    """Train as `cfg` says into the run folder `output` (see runs.py); under torchrun on every rank.
    Returns a summary (steps, epochs done, best val top-1, bad videos, the last evaluation)."""
    with process_group() as (rank, world, device):
        for n in notes or []:
            log(f"note: {n}", rank)
        lock = check_folder_on_all_ranks(output, cfg.training.resume, rank, world)  # one run per folder
        try:
            return _train(cfg, output, notes, progress, rank, world, device)
        finally:
            if lock is not None:
                lock.release()


def _train(cfg: Config, output: str, notes, progress: bool, rank: int, world: int, device: torch.device) -> dict:
    run = Run(cfg, output, notes, rank, world, device)   # data, model, classifier, loader, optimiser, resume
    state, accum = run.state, run.accum
    log(f"training {len(run.train_samples)} videos, {len(run.names)} classes, {world} process(es) x batch "
        f"{cfg.data.batch_size} x accumulation {accum} = effective batch {cfg.data.batch_size * world * accum}; "
        f"{run.steps_per_epoch} steps/epoch, {cfg.optim.epochs} epochs, {run.precision} on {device}", rank)
    nonfinite = 0                                   # optimiser steps skipped in a row (non-finite loss)
    val_warned: set[str] = set()
    stop, result = False, {}
    group = {"bad_seen": set(state["bad_videos"]), "losses": [], "bad": False}
    try:
        for epoch in range(state["epoch"], cfg.optim.epochs):
            skip = state["step_in_epoch"] * accum          # > 0 only when resuming mid-epoch
            run.sampler.set_epoch(epoch, start_batch=skip)
            run.net.train()
            bar = tqdm(total=run.steps_per_epoch, initial=state["step_in_epoch"], unit="step", dynamic_ncols=True,
                       desc=f"epoch {epoch + 1}/{cfg.optim.epochs}", disable=not progress or rank != 0)
            t_log, videos_since = time.perf_counter(), 0
            group.update(losses=[], bad=False)
            for b_idx, (frames, labels, failed) in enumerate(run.loader, start=skip):
                group_start = b_idx - b_idx % accum
                group["len"] = min(accum, run.batches - group_start)     # the last group may be shorter
                group["last_micro"] = b_idx + 1 == group_start + group["len"]
                # forward, loss, backward (gradients accumulate over the group's micro-batches)
                flags = forward_backward(run, frames, labels, failed, group)
                # videos that did not decode: log once, count, stop when too many
                videos_since += count_bad_videos(run, flags, group)
                if not group["last_micro"]:
                    continue
                # the learning rates of this step, then the optimiser step: unscale, clip, step (or skip)
                step = state["global_step"] + 1
                lrs = [g["lr"] for g in run.optimizer.param_groups]
                nonfinite = optimizer_step(run, step, group, nonfinite)
                state["global_step"] = step
                state["step_in_epoch"] += 1
                bar.update(1)
                # log
                if not group["bad"] and (step % cfg.training.print_freq == 0
                                         or state["step_in_epoch"] == run.steps_per_epoch):
                    now = time.perf_counter()
                    rec = step_record(run, step, epoch, group["losses"], lrs, videos_since / max(1e-9, now - t_log))
                    run.metrics.write(rec)
                    bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{rec['lr']:.2e}", vid_s=f"{rec['videos_per_s']:.1f}")
                    t_log, videos_since = now, 0
                group.update(losses=[], bad=False)
                # mid-epoch checkpoint; step limit
                if cfg.training.save_every_steps and step % cfg.training.save_every_steps == 0:
                    run.save(run.last_path, True)
                if cfg.training.max_steps and step >= cfg.training.max_steps:
                    stop = True
                    break
            bar.close()
            if stop and state["step_in_epoch"] < run.steps_per_epoch:
                run.save(run.last_path, True)  # mid-epoch: resumable from exactly here
                break
            # end of epoch: evaluate, checkpoint
            state["epoch"], state["step_in_epoch"] = epoch + 1, 0
            result = end_of_epoch(run, epoch, stop, val_warned, progress) or result
            if stop:
                break
    except torch.cuda.OutOfMemoryError:
        raise TrainError(f"out of GPU memory at batch size {cfg.data.batch_size}: lower data.batch_size and raise "
                         f"optim.grad_accumulation to keep the effective batch, or use fewer data.num_frames") from None
    except DataError as exc:  # e.g. many videos in a row that do not decode (raised in a loader worker)
        raise TrainError(_data_error_line(exc)) from None
    finally:
        run.close()
    log(f"done: {state['global_step']} steps; best val top-1 "
        f"{'%.2f%%' % (100 * state['best_top1']) if state['best_top1'] >= 0 else 'n/a'}; "
        f"{len(state['bad_videos'])} bad videos; checkpoints in {output}", rank)
    return {"output": output, "steps": state["global_step"], "epochs_done": state["epoch"],
            "best_top1": state["best_top1"], "bad_videos": len(state["bad_videos"]), **result}


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


def restore(path: str, trainee: Trainee, optimizer, scheduler, scaler, device) -> tuple[dict, dict | None]:
    """Load a `last` checkpoint: model, optimiser, scheduler, scaler, RNG states, counters. Returns the
    training state and the config the checkpoint was trained with (None in files that lack it)."""
    # problems of the file given are setup errors (exit 2), as for any other input file
    if not os.path.isfile(path):
        raise WeightsError(f"training.resume={path!r}: no such checkpoint")
    if not checkpoints.is_text4vis_checkpoint(path):
        raise WeightsError(f"training.resume={path!r}: not a text4vis checkpoint (an original Text4Vis checkpoint can start "
                           f"a run as model.pretrain, not resume one)")
    meta, tensors = checkpoints.read_text4vis(path)
    if "train" not in meta:
        raise WeightsError(f"training.resume={path!r}: this checkpoint has no training state (use a `last` checkpoint)")
    # in place: the optimiser keeps pointing at the same parameters
    missing, unexpected = checkpoints.load_state_or_explain(trainee.video, checkpoints.split_prefix(tensors, "model."),
                                                            f"training.resume={path!r}")
    if missing or unexpected:
        raise WeightsError(f"training.resume={path!r}: the checkpoint's model does not fit this config "
                         f"({len(missing)} weights missing, e.g. {missing[:1]}; {len(unexpected)} unexpected, "
                         f"e.g. {unexpected[:1]}); resume with the config it was trained with")
    if trainee.text is not None and any(k.startswith("text.") for k in tensors):
        trainee.text.load_state_dict(checkpoints.split_prefix(tensors, "text."), strict=False)
    train_state = checkpoints.unpack(meta["train"], tensors)
    try:
        optimizer.load_state_dict(train_state["optimizer"])
    except ValueError as exc:
        raise WeightsError(f"training.resume={path!r}: the optimiser state does not fit this config ({exc})") from None
    scheduler.load_state_dict(train_state["scheduler"])
    scaler.load_state_dict(train_state["scaler"])
    set_rng_state(train_state["rng"])
    return train_state, meta.get("config")
