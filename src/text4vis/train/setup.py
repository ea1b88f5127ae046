"""The setup of a training run, in named steps: data, towers, classifier, model, loader, optimiser, resume
(`Run`), and the building blocks they use (`Trainee`, `lr_lambda`, `build_optimizer`, `classifier_for_run`)."""


import math
import os
import random
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from .. import checkpoints, classifiers, engine, losses
from ..datasets import (
    DataError,
    FrameReader,
    TestDataset,
    TrainBatchSampler,
    TrainDataset,
    drop_short,
    few_shot,
    load_split,
    train_collate,
)
from ..devices import precision_name, rank_world
from ..errors import ConfigError, OutputError, TrainError, UsageError, first_line
from ..labels import resolve_labels
from ..model import VideoModel
from ..towers import WeightsError, load_towers
from ..transforms import TrainTransform
from . import tower
from .config import Config
from .runs import (
    CHECKPOINT_LAST,
    FolderLock,
    MetricsLog,
    TextLog,
    check_run_folder,
    clear_leftovers,
    config_changes,
    resume_path,
    start_folder,
    write_lines,
)


RUN_LOG = TextLog()   # the running training's train.log (inactive outside `train`)


def log(msg: str, rank: int = 0, echo: bool = True) -> None:
    """A line of the run: on stderr (unless not `echo`: the step lines a progress bar shows) and in train.log."""
    if rank == 0:
        if echo:
            tqdm.write(msg, file=sys.stderr)
        RUN_LOG.write(msg)


# ----------------------------------------------------------------------------- building blocks

def classifier_for_run(cfg: Config, towers, names: list[str], model: VideoModel | None = None,
                       samples=None, reader=None, device=None, progress: bool = False) -> classifiers.Classifier:
    """The run's classifier as `cfg.classifier` says: a stored file, one of classifiers.KINDS, or LDA on
    the training videos embedded by `model`."""
    c = cfg.classifier
    if c.file:
        cls = classifiers.load_classifier(c.file)
        classifiers.check_same_labels(cls, names, c.file)
        return cls
    if c.type in classifiers.KINDS:
        return classifiers.build_classifier(c.type, names, towers=towers, dim=towers.embed_dim, prompts=c.prompts,
                                            lm=c.lm, seed=c.seed)
    if c.type == "lda":
        cls, failed = lda_from_model(model, samples, names, cfg, reader, device, progress)
        for msg in failed:
            log(f"warning: a video for the LDA classifier does not decode (left out): {msg}", rank_world()[0])
        return cls
    raise ConfigError(f"classifier.type {c.type!r} unknown")


def lda_from_model(model: VideoModel, samples, names, cfg: Config, reader, device,
                   progress: bool = False) -> tuple[classifiers.Classifier, list[str]]:
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
                               progress=progress, desc="lda embeddings", precision=cfg.evaluation.precision)
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
    checkpoints.check_visual_fits(state, model.visual.state_dict(), path, clip, ("model.pretrain", "model.clip"))
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


def original_lr_lambda(epochs: int, warmup_epochs: float, batches: int, accum: int, carry: bool):
    """Learning-rate factor of optimiser step `step` (0-based) as the original Text4Vis train.py sets it:
    its WarmupCosineAnnealingLR is stepped before the micro-batches i == 0 and (i + 1) % 10 == 0 of an
    epoch, at `epoch + i / batches`, with the factor `t / warmup_epochs` during warmup (0 at the start)
    and `0.5 * (1 + cos(pi * (t - warmup) / (epochs - warmup)))` after it. A step uses the factor of the
    last such point at or before its last micro-batch. `carry`: an epoch has batches // accum steps (the
    leftover micro-batches carry over), else ceil(batches / accum) (a shorter last step)."""
    per_epoch = batches // accum if carry else math.ceil(batches / accum)

    def factor(t: float) -> float:
        if t < warmup_epochs:
            return t / warmup_epochs
        progress = (t - warmup_epochs) / max(1e-12, epochs - warmup_epochs)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    def f(step: int) -> float:
        epoch, k = divmod(step, per_epoch)
        i = min((k + 1) * accum, batches) - 1               # the step's last micro-batch in its epoch
        point = i if (i + 1) % 10 == 0 else max(0, (i + 1) // 10 * 10 - 1)   # the scheduler's last step
        return factor(epoch + point / batches)
    return f


class Trainee(nn.Module):
    """What DistributedDataParallel wraps: the video model, plus the text tower in contrastive mode."""

    def __init__(self, video: VideoModel, contrastive: bool = False, text_clip: nn.Module | None = None,
                 tokens: torch.Tensor | None = None, gather: bool = True, label_smoothing: float = 0.0):
        super().__init__()
        self.video, self.contrastive, self.text, self.gather = video, contrastive, text_clip, gather
        self.label_smoothing = label_smoothing
        self.register_buffer("tokens", tokens, persistent=False)

    def forward(self, frames: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.video.embed(frames)                                   # (b, dc)
        logits = self.video.logits(emb)                                  # (b, c)
        if not self.contrastive:
            return losses.classification_loss(logits, labels, self.label_smoothing), logits
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


def data_error_line(exc: BaseException) -> str:
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
        except (ConfigError, OutputError, UsageError) as exc:
            problem = exc
        except OSError as exc:  # e.g. a folder under /proc: named with the parameter given, not a bare strerror
            problem = OutputError(f"output={output!r}: cannot create the run folder there "
                                  f"({exc.strerror or first_line(exc)})")
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


def build_model(cfg: Config, names, distinct, reader, device, progress: bool = False):
    """(towers, video model on `device`, classifier): the towers of model.clip, the temporal head, an
    optional model.pretrain checkpoint, and the classifier set into the model (learned when linear)."""
    towers = load_towers(cfg.model.clip)
    model = VideoModel(towers.clip.visual, towers.embed_dim, cfg.model.head, head_heads=towers.head_heads,
                       logit_scale=float(towers.clip.logit_scale.detach()), mean=towers.mean, std=towers.std)
    if cfg.model.pretrain:
        load_pretrain(model, cfg.model.pretrain, cfg.model.clip)
    model.to(device)
    cls = classifier_for_run(cfg, towers, names, model, distinct, reader, device, progress)
    model.set_classifier(cls.weight, learn=cfg.classifier.type == "linear" and not cfg.classifier.file)
    if cfg.model.freeze_visual:
        model.visual.requires_grad_(False)
    if cfg.model.grad_checkpointing:
        tower.set_grad_checkpointing(model.visual)
    if cfg.model.drop_path:
        tower.add_drop_path(model.visual, cfg.model.drop_path)
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
    return Trainee(model, contrastive, text_clip, tokens, cfg.training.batch_gather,
                   cfg.training.label_smoothing).to(device)


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

    def __init__(self, cfg: Config, output: str, notes, rank: int, world: int, device: torch.device,
                 progress: bool = False):
        self.cfg, self.output, self.rank, self.world, self.device = cfg, output, rank, world, device
        seed = cfg.training.seed
        seed_everything(seed)                       # the same model initialisation on every rank
        self.names, self.train_samples, distinct, self.val_samples = load_data(cfg, output, rank)
        self.reader = FrameReader(cfg.data.image_tmpl, cfg.data.index_bias)
        self.towers, self.model, self.cls = build_model(cfg, self.names, distinct, self.reader, device,
                                                        progress and rank == 0)
        self.input_size = model_input_size(cfg, self.model)
        self.trainee = build_trainee(cfg, self.towers, self.model, self.cls, self.names, device)
        seed_everything(seed + rank)                # from here on each rank draws its own
        self.net = self.trainee
        if world > 1:
            self.net = nn.parallel.DistributedDataParallel(
                self.trainee, device_ids=[device.index] if device.type == "cuda" else None)
        if cfg.training.compile:   # the forward and backward compiled; weights and checkpoints as without
            self.net = torch.compile(self.net)
        self.dataset, self.sampler, self.loader = build_loader(cfg, self.train_samples, self.input_size,
                                                               self.reader, rank, world, device)
        self.accum = cfg.optim.grad_accumulation
        self.batches = self.sampler.batches_per_epoch                 # micro-batches per epoch (per rank)
        self.carry = cfg.optim.carry_gradients and self.accum > 1    # leftover micro-batches carry over
        if self.carry and self.batches < self.accum:
            raise ConfigError(f"optim.carry_gradients: an epoch has {self.batches} batches, fewer than "
                              f"optim.grad_accumulation={self.accum}, so no step would ever be taken; lower "
                              f"optim.grad_accumulation or set optim.carry_gradients=false")
        # optimiser steps per epoch
        self.steps_per_epoch = self.batches // self.accum if self.carry else math.ceil(self.batches / self.accum)
        # optimiser: image tower and logit_scale at lr * clip_ratio, the rest at lr; warmup + cosine
        self.optimizer = build_optimizer(self.trainee, cfg.optim, device)
        if cfg.optim.schedule == "original":
            schedule = original_lr_lambda(cfg.optim.epochs, cfg.optim.warmup_epochs, self.batches, self.accum,
                                          self.carry)
        else:
            total_steps = self.steps_per_epoch * cfg.optim.epochs
            schedule = lr_lambda(total_steps, int(cfg.optim.warmup_epochs * self.steps_per_epoch))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.note_short_warmup(schedule)
        self.precision = precision_name(device, cfg.optim.precision)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_top1": -1.0, "bad_videos": [],
                      "samples_seen": 0, "epoch_tally": [0.0, 0, 0.0, 0.0]}   # loop.Tally of the epoch so far
        self.last_path = os.path.join(output, CHECKPOINT_LAST)
        resume = self.resume(cfg.training.resume)
        if rank == 0:
            start_folder(output, cfg.to_dict(), notes, self.state["global_step"] if resume else None)
        tracker = None
        if rank == 0 and cfg.training.tracker != "none":
            from .tracker import Tracker
            tracker = Tracker(cfg.training.tracker, cfg.training.tracker_project, output, cfg.to_dict())
        self.metrics = MetricsLog(output, rank, purge_step=self.state["global_step"] + 1 if resume else None,
                                  tracker=tracker)
        self.settings = {"num_frames": cfg.data.num_frames, "input_size": self.input_size, "dense": cfg.data.dense,
                         "image_tmpl": cfg.data.image_tmpl, "index_bias": cfg.data.index_bias}

    def note_short_warmup(self, schedule) -> None:
        """Say once when the warmup is longer than the run (optim.epochs, or training.max_steps): the lr
        never reaches optim.lr."""
        o, steps = self.cfg.optim, self.steps_per_epoch * self.cfg.optim.epochs
        if self.cfg.training.max_steps:
            steps = min(steps, self.cfg.training.max_steps)
        warmup_steps = o.warmup_epochs * self.steps_per_epoch
        if o.warmup_epochs > 0 and warmup_steps > steps:
            peak = max(schedule(i) for i in range(steps))
            log(f"note: the warmup (optim.warmup_epochs={o.warmup_epochs:g}, {warmup_steps:g} steps) is longer than "
                f"this run ({steps} steps): the lr peaks at {peak:.3g} x optim.lr={o.lr:g}", self.rank)

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
