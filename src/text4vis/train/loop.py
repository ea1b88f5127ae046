"""The training loop: fine-tune the image tower and temporal head against a frozen classifier.

One visible loop (`_train`): `Run` (setup.py) builds data, towers, classifier, model, loader and optimiser (and
resumes); then for each micro-batch: forward under autocast, loss, backward (accumulating); for each
optimiser step: learning rate, unscale + clip, step, log, checkpoint; for each epoch: evaluate and
checkpoint. Runs on one CPU, one GPU, or many (torchrun + DistributedDataParallel). The run folder's
files are described in runs.py.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .. import engine
from ..datasets import DataError, TestDataset
from ..devices import autocast, pick_device, process_group
from ..errors import ConfigError, Text4VisError, TrainError
from ..model import VideoModel
from . import metrics
from .config import Config
from .runs import CHECKPOINT_BEST, keep_epoch_checkpoint, remove_unused_folder
from .setup import RUN_LOG, Run, check_folder_on_all_ranks, data_error_line, log

# ----------------------------------------------------------------------------- one step's parts

@dataclass
class Group:
    """One optimiser step's accumulation group of micro-batches, as the loop goes through it."""
    bad_seen: set[str]                                  # videos already reported as not decoding (whole run)
    losses: list[float] = field(default_factory=list)   # the group's micro-batch losses (mean over ranks)
    bad: bool = False                                   # a loss of the group was not finite: skip its step
    size: int = 1                                       # micro-batches in the group (the last may be shorter)
    last_micro: bool = True                             # this micro-batch ends the group
    new_bad: list[str] = field(default_factory=list)    # this micro-batch's videos that failed for the first time

    def start(self, b_idx: int, accum: int, batches: int, carry: bool = False) -> None:
        """Place micro-batch `b_idx` in its group. `carry` (the original's rule): every group has `accum`
        micro-batches and the epoch's leftover ones end none (their gradients join the next epoch's first
        step); else the epoch's last group is shorter."""
        group_start = b_idx - b_idx % accum
        self.size = accum if carry else min(accum, batches - group_start)
        self.last_micro = (b_idx + 1) % accum == 0 if carry else b_idx + 1 == group_start + self.size

    def reset(self) -> None:
        self.losses, self.bad = [], False


class Agreed(NamedTuple):
    """What every rank agrees on after a micro-batch (summed over the ranks)."""
    nonfinite: float      # ranks whose loss was not finite
    new_bad: float        # videos that failed to decode for the first time
    videos: float         # videos in the batch
    loss: float           # the finite losses
    correct: float        # videos whose true class scored highest (training accuracy)


def forward_backward(run: Run, frames, labels, failed, group: Group) -> Agreed:
    """Forward under autocast and backward of one micro-batch (gradients accumulate over the group), unless
    the group already had a non-finite loss. Returns the numbers every rank agrees on."""
    frames = frames.to(run.device, non_blocking=True)
    labels = labels.to(run.device, non_blocking=True)
    finite, loss_value, correct = True, 0.0, 0.0
    no_sync = run.net.no_sync() if (run.world > 1 and not group.last_micro) else nullcontext()
    with no_sync:
        if not group.bad:
            with autocast(run.device, run.precision):
                loss, logits = run.net(frames, labels)
            loss_value = float(loss.detach())
            finite = math.isfinite(loss_value)
            correct = float((logits.detach().argmax(-1) == labels).sum()) if finite else 0.0
        # every rank learns whether a loss anywhere was non-finite, and about new bad videos
        group.new_bad = [m for m in dict.fromkeys(failed) if m not in group.bad_seen]
        agreed = Agreed(*run.sync([0.0 if finite else 1.0, float(len(group.new_bad)), float(len(labels)),
                                   loss_value if finite else 0.0, correct]))
        if not group.bad and agreed.nonfinite == 0:
            run.scaler.scale(loss / group.size).backward()
            group.losses.append(agreed.loss / run.world)
        elif not group.bad:
            group.bad = True
            run.optimizer.zero_grad(set_to_none=True)
    return agreed


def count_bad_videos(run: Run, agreed: Agreed, group: Group) -> int:
    """Log each video that failed to decode once, count the videos seen; stop when too many failed.
    Returns the number of videos of this batch."""
    cfg, state = run.cfg, run.state
    if agreed.new_bad:
        for msg in run.gather_messages(group.new_bad):
            if msg not in group.bad_seen:
                group.bad_seen.add(msg)
                state["bad_videos"].append(msg)
                log(f"warning: skipped a video that does not decode: {msg}", run.rank)
    state["samples_seen"] += int(agreed.videos)
    n_bad = len(state["bad_videos"])
    if n_bad and n_bad > cfg.data.max_bad_fraction * max(100, state["samples_seen"] + n_bad) \
            and n_bad > cfg.data.max_bad_fraction * len(run.dataset):
        raise TrainError(f"{n_bad} videos failed to decode (more than data.max_bad_fraction="
                         f"{cfg.data.max_bad_fraction}; listed in {os.path.join(run.output, 'bad_videos.txt')}); "
                         f"run `text4vis check-data` and fix the lists")
    return int(agreed.videos)


def optimizer_step(run: Run, step: int, group: Group, nonfinite: int) -> int:
    """Unscale, clip, step and zero the gradients, or skip the step when a loss of the group was not
    finite (several in a row stop the run). The schedule advances either way. Returns the skips in a row."""
    if group.bad:
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


@dataclass
class Tally:
    """Training figures summed over micro-batches with a finite loss: since the last logged step and over
    the epoch (train loss and accuracy beside the val figures)."""
    loss: float = 0.0      # sum of micro-batch losses (each the mean over its videos and the ranks)
    batches: int = 0
    correct: float = 0.0   # videos whose true class scored highest (summed over ranks)
    videos: float = 0.0

    def add(self, agreed: Agreed, world: int) -> None:
        self.loss += agreed.loss / world
        self.batches += 1
        self.correct += agreed.correct
        self.videos += agreed.videos

    def top1(self) -> float | None:
        return self.correct / self.videos if self.videos else None


def step_record(run: Run, step: int, epoch: int, losses_: list[float], factor: float, rate: float,
                since: Tally) -> dict:
    """The metrics.jsonl record of a logged step: `lr` is always the head's and `lr_tower` the image
    tower's (lr * clip_ratio; 0 when model.freeze_visual), whichever optimiser groups exist."""
    o = run.cfg.optim
    rec = {"step": step, "epoch": epoch + run.state["step_in_epoch"] / run.steps_per_epoch,
           "loss": sum(losses_) / len(losses_), "train_top1": since.top1(), "lr": o.lr * factor,
           "lr_tower": 0.0 if run.cfg.model.freeze_visual else o.lr * o.clip_ratio * factor}
    rec.update(logit_scale=float(run.model.logit_scale.detach().exp()), videos_per_s=rate,
               bad_videos=len(run.state["bad_videos"]))
    return rec


def log_step(run: Run, rec: dict, progress: bool) -> None:
    """A logged step as a line of train.log (and of stderr when no progress bar shows it)."""
    top1 = "n/a" if rec["train_top1"] is None else f"{100 * rec['train_top1']:.2f}%"
    log(f"step {rec['step']}/{run.steps_per_epoch * run.cfg.optim.epochs} (epoch {rec['epoch']:.2f}): loss "
        f"{rec['loss']:.4f}, train top-1 {top1}, lr {rec['lr']:.3e} (tower {rec['lr_tower']:.3e}), "
        f"{rec['videos_per_s']:.1f} videos/s", run.rank, echo=not progress)


def end_of_epoch(run: Run, epoch: int, stop: bool, val_warned: set, progress: bool, epoch_t: Tally) -> dict:
    """Evaluate when it is time (val top-1 picks `best`), log the epoch's train and val figures, then write
    the `last` checkpoint."""
    cfg, state = run.cfg, run.state
    result: dict = {}
    train_fig = {"epoch_train_loss": epoch_t.loss / epoch_t.batches if epoch_t.batches else None,
                 "epoch_train_top1": epoch_t.top1()}
    line = (f"epoch {epoch + 1}: train loss {_num(train_fig['epoch_train_loss'], '.4f')}, "
            f"top-1 {_pct(train_fig['epoch_train_top1'])}")
    evaluating = bool(run.val_samples) and cfg.training.eval_freq > 0
    if evaluating and ((epoch + 1) % cfg.training.eval_freq == 0 or epoch + 1 == cfg.optim.epochs or stop):
        run.trainee.sync_classifier()
        result = evaluate(run.model, run.val_samples, cfg, run.input_size, run.reader, run.device, progress)
        result.update(step=state["global_step"], epoch=epoch + 1)
        run.metrics.write({k: v for k, v in result.items() if k != "failed"} | train_fig)
        for msg in result["failed"]:                              # named once per run
            if msg not in val_warned:
                val_warned.add(msg)
                log(f"warning: a val video does not decode (not counted): {msg}", run.rank)
        log(f"{line}; val loss {_num(result['val_loss'], '.4f')}, top-1 {_pct(result['val_top1'])}, top-5 "
            f"{_pct(result['val_top5'])} ({result['val_videos']} videos, {result['val_failed']} failed)", run.rank)
        if result["val_top1"] > state["best_top1"]:
            state["best_top1"] = result["val_top1"]
            run.save(os.path.join(run.output, CHECKPOINT_BEST), False)
    else:
        run.metrics.write({"step": state["global_step"], "epoch": epoch + 1} | train_fig)
        log(line, run.rank)
    if not evaluating:  # nothing to choose by: `best` is the latest model
        run.save(os.path.join(run.output, CHECKPOINT_BEST), False)
    run.save(run.last_path, True)
    if cfg.training.keep_last_n and run.rank == 0:
        keep_epoch_checkpoint(run.output, epoch + 1, cfg.training.keep_last_n)
    return result


def _num(x: float | None, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


# ----------------------------------------------------------------------------- the loop

def train(cfg: Config, output: str, notes: list[str] | None = None, progress: bool = True) -> dict:
    """Train as `cfg` says into the run folder `output` (see runs.py); under torchrun on every rank.
    Every line printed also goes to `output`/train.log; a run that fails at setup in a folder it created
    removes it. Returns a summary (steps, epochs done, best val top-1, bad videos, the last evaluation)."""
    with process_group() as (rank, world, device):
        if cfg.training.device != "auto":
            if world > 1:
                raise ConfigError(f"training.device={cfg.training.device!r}: under torchrun each process uses "
                                  f"its own GPU (LOCAL_RANK); leave training.device at auto")
            device = pick_device(cfg.training.device)
        RUN_LOG.start()
        try:
            bs, accum = cfg.data.batch_size, cfg.optim.grad_accumulation
            # train.log's first line (stderr gets it with the data's figures, once the setup worked)
            log(f"effective batch {bs * world * accum} = {world} process(es) x batch {bs} x accumulation {accum}",
                rank, echo=False)
            for n in notes or []:
                log(f"note: {n}", rank)
            created = not os.path.isdir(output)
            lock = check_folder_on_all_ranks(output, cfg.training.resume, rank, world)  # one run per folder
            if rank == 0:
                RUN_LOG.open(output)
            try:
                return _train(cfg, output, notes, progress, rank, world, device, created)
            except Text4VisError as exc:
                log(f"error: {exc}", rank, echo=False)             # the caller prints it
                raise
            finally:
                if lock is not None:
                    lock.release()
        finally:
            RUN_LOG.stop()


def _setup(cfg: Config, output: str, notes, progress: bool, rank: int, world: int, device, created: bool) -> Run:
    """The run's setup (setup.Run); if it fails in a folder this run created, the folder goes again."""
    try:
        return Run(cfg, output, notes, rank, world, device, progress)
    except BaseException:
        if rank == 0 and created:
            RUN_LOG.stop()
            remove_unused_folder(output)
        raise


def _train(cfg: Config, output: str, notes, progress: bool, rank: int, world: int, device: torch.device,
           created: bool = False) -> dict:
    run = _setup(cfg, output, notes, progress, rank, world, device, created)  # data, model, classifier, ...
    state, accum = run.state, run.accum
    log(f"training {len(run.train_samples)} videos, {len(run.names)} classes, {world} process(es) x batch "
        f"{cfg.data.batch_size} x accumulation {accum} = effective batch {cfg.data.batch_size * world * accum}; "
        f"{run.steps_per_epoch} steps/epoch, {cfg.optim.epochs} epochs, {run.precision} on {device}", rank)
    nonfinite = 0                                   # optimiser steps skipped in a row (non-finite loss)
    val_warned: set[str] = set()
    stop, result, unlogged = False, {}, None
    group = Group(bad_seen=set(state["bad_videos"]))
    try:
        for epoch in range(state["epoch"], cfg.optim.epochs):
            skip = state["step_in_epoch"] * accum          # > 0 only when resuming mid-epoch
            run.sampler.set_epoch(epoch, start_batch=skip)
            run.net.train()
            bar = tqdm(total=run.steps_per_epoch, initial=state["step_in_epoch"], unit="step", dynamic_ncols=True,
                       desc=f"epoch {epoch + 1}/{cfg.optim.epochs}", disable=not progress or rank != 0)
            t_log, videos_since, since = time.perf_counter(), 0, Tally()
            # the epoch's training figures so far (stored in checkpoints: a resumed epoch's figures are whole)
            epoch_t = Tally(*state["epoch_tally"]) if state["step_in_epoch"] else Tally()
            if not run.carry:
                group.reset()                                  # (carry: the last epoch's leftover group goes on)
            for b_idx, (frames, labels, failed) in enumerate(run.loader, start=skip):
                group.start(b_idx, accum, run.batches, run.carry)  # the last group may be shorter (or carry over)
                # forward, loss, backward (gradients accumulate over the group's micro-batches)
                agreed = forward_backward(run, frames, labels, failed, group)
                if agreed.nonfinite == 0 and not group.bad:
                    since.add(agreed, world)
                    epoch_t.add(agreed, world)
                # videos that did not decode: log once, count, stop when too many
                videos_since += count_bad_videos(run, agreed, group)
                if not group.last_micro:
                    continue
                # the learning rates of this step, then the optimiser step: unscale, clip, step (or skip)
                step = state["global_step"] + 1
                factor = run.scheduler.lr_lambdas[0](run.scheduler.last_epoch)
                nonfinite = optimizer_step(run, step, group, nonfinite)
                state["global_step"] = step
                state["step_in_epoch"] += 1
                state["epoch_tally"] = [epoch_t.loss, epoch_t.batches, epoch_t.correct, epoch_t.videos]
                bar.update(1)
                stop = bool(cfg.training.max_steps and step >= cfg.training.max_steps)
                # log (also the last step of a run stopped early)
                if not group.bad:
                    now = time.perf_counter()
                    rec = step_record(run, step, epoch, group.losses, factor, videos_since / max(1e-9, now - t_log),
                                      since)
                    unlogged = rec
                    if step % cfg.training.print_freq == 0 or state["step_in_epoch"] == run.steps_per_epoch or stop:
                        run.metrics.write(rec)
                        log_step(run, rec, progress)
                        bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{rec['lr']:.2e}",
                                        vid_s=f"{rec['videos_per_s']:.1f}")
                        t_log, videos_since, since, unlogged = now, 0, Tally(), None
                group.reset()
                # mid-epoch checkpoint; step limit
                if cfg.training.save_every_steps and step % cfg.training.save_every_steps == 0:
                    run.save(run.last_path, True)
                if stop:
                    break
            bar.close()
            if stop and state["step_in_epoch"] < run.steps_per_epoch:
                run.save(run.last_path, True)  # mid-epoch: resumable from exactly here
                break
            # end of epoch: evaluate, checkpoint
            state["epoch"], state["step_in_epoch"] = epoch + 1, 0
            result = end_of_epoch(run, epoch, stop, val_warned, progress, epoch_t) or result
            if stop:
                break
    except torch.cuda.OutOfMemoryError:
        raise TrainError(f"out of GPU memory at batch size {cfg.data.batch_size}: lower data.batch_size and raise "
                         f"optim.grad_accumulation to keep the effective batch, or use fewer data.num_frames") from None
    except DataError as exc:  # e.g. many videos in a row that do not decode (raised in a loader worker)
        raise TrainError(data_error_line(exc)) from None
    except KeyboardInterrupt:  # the steps done since the last logged one are written before stopping
        if unlogged is not None:
            run.metrics.write(unlogged)
            log_step(run, unlogged, progress=True)             # into train.log only
        log("interrupted", rank, echo=False)
        raise
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
        return {"val_top1": 0.0, "val_top5": 0.0, "val_loss": None, "val_videos": 0, "val_failed": len(emb.errors),
                "failed": [msg for _, msg in emb.errors]}
    scores = engine.scores_from_embeddings(emb.embeddings, model.classifier).numpy()
    labels = np.array([samples[i].label for i in emb.indices])
    acc = metrics.topk_accuracy(scores, labels, (1, 5))
    # the training loss on the val videos: cross-entropy of logit_scale.exp() x cosine (the training logits)
    cos = F.normalize(emb.embeddings.float(), dim=-1) @ F.normalize(model.classifier.detach().float().cpu(), dim=-1).t()
    val_loss = float(F.cross_entropy(float(model.logit_scale.detach().exp()) * cos, torch.from_numpy(labels)))
    return {"val_top1": acc["top1"], "val_top5": acc["top5"], "val_loss": val_loss, "val_videos": len(emb.indices),
            "val_failed": len(emb.errors), "failed": [msg for _, msg in emb.errors]}
