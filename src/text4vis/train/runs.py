"""The run folder of `train` and what reads it (`compare`, resuming).

    config.yaml         the fully resolved config (config_notes.txt: notes about an original config)
    train.log           every line the run printed (also the step lines a progress bar shows), timed
    metrics.jsonl       one JSON object per logged step and per evaluation
    tensorboard/        the same numbers for TensorBoard
    last.safetensors    the latest state, with everything needed to resume
    best.safetensors    the best val top-1 (or the latest when there is no val list)
    epoch_NNN.safetensors  `last` at the end of epoch NNN, the newest training.keep_last_n of them
    bad_videos.txt      videos that failed to decode, when there were some
    fewshot_videos.txt  the videos a few-shot run chose
"""
from __future__ import annotations

import json
import os
import shutil

import yaml

from ..errors import ConfigError, DataError, OutputError, first_line
from ..files import atomic_write_text, check_output

CHECKPOINT_LAST = "last.safetensors"
CHECKPOINT_BEST = "best.safetensors"
METRICS = "metrics.jsonl"
TRAIN_LOG = "train.log"
CONFIG = "config.yaml"
LOCK = ".text4vis.lock"
# what a run writes besides its checkpoints: a fresh run removes these leftovers of an earlier run that
# stopped before its first checkpoint, so that nothing of it mixes into the new run's files
RUN_FILES = (METRICS, "bad_videos.txt", "fewshot_videos.txt", "config_notes.txt", CHECKPOINT_BEST, TRAIN_LOG)
RUN_FOLDERS = ("tensorboard",)


class TextLog:
    """train.log: the lines a run prints, each with its time. Lines printed before the run folder is checked and
    locked are kept and written first once it is (`open`); a resumed run appends. Inactive between runs."""

    def __init__(self):
        self.file, self.pending, self.active = None, [], False

    def start(self) -> None:
        self.file, self.pending, self.active = None, [], True

    def open(self, output: str) -> None:
        self.file = open(os.path.join(output, TRAIN_LOG), "a", encoding="utf-8")
        for line in self.pending:
            self.file.write(line)
        self.pending = []
        self.file.flush()

    def write(self, msg: str) -> None:
        if not self.active:
            return
        import time
        line = "".join(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {part}\n" for part in msg.splitlines() or [""])
        if self.file is None:
            self.pending.append(line)
        else:
            self.file.write(line)
            self.file.flush()

    def stop(self) -> None:
        if self.file is not None:
            self.file.close()
        self.file, self.pending, self.active = None, [], False


class FolderError(DataError):
    """A run or eval folder whose files cannot be summarised (one line); `compare` skips it."""


def check_run_folder(output: str, resume: str | None) -> None:
    """The run folder can be written, and starting afresh does not overwrite another run in it."""
    if not resume and os.path.isfile(os.path.join(output, CHECKPOINT_LAST)):
        raise OutputError(f"output={output!r}: already holds a run ({CHECKPOINT_LAST}); continue it with "
                          f"training.resume='auto', or choose another output")
    check_output(output, "output", folder=True)


class FolderLock:
    """An OS lock on a run folder for the length of a run (fcntl.flock on `.text4vis.lock`): the OS drops
    it when the process ends, however it ends (SIGKILL included), so a lock is never stale. A second run
    into a folder in use is refused with an OutputError naming the folder and the holder's pid."""

    def __init__(self, folder: str):
        import fcntl
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, LOCK)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(self.fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            raise OutputError(f"output={folder!r}: in use by another run (pid {holder}); wait for it to end, "
                              f"or choose another output") from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the lock
            self.fd = None


def keep_epoch_checkpoint(output: str, epoch: int, keep: int) -> None:
    """`training.keep_last_n`: the `last` checkpoint of an epoch's end kept as epoch_NNN.safetensors (a hard link
    where the file system has them, so no copy: `last` is replaced by rename, never written in place); only
    the newest `keep` are kept."""
    last, kept = os.path.join(output, CHECKPOINT_LAST), os.path.join(output, f"epoch_{epoch:03d}.safetensors")
    if os.path.lexists(kept):
        os.remove(kept)
    try:
        os.link(last, kept)
    except OSError:
        shutil.copyfile(last, kept)
    epochs = sorted(n for n in os.listdir(output) if n.startswith("epoch_") and n.endswith(".safetensors"))
    for name in epochs[:-keep]:
        os.remove(os.path.join(output, name))


def remove_unused_folder(output: str) -> None:
    """A run that failed at setup, in a folder it created, leaves nothing behind: its lock, log and few-shot
    list go, then the folder (only if nothing else is in it)."""
    for name in (LOCK, TRAIN_LOG, "fewshot_videos.txt"):
        try:
            os.remove(os.path.join(output, name))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(output)
    except OSError:
        pass


def clear_leftovers(output: str) -> list[str]:
    """A fresh run (nothing to resume) starts from a clean folder: the files of an earlier run that stopped
    before its first checkpoint are removed. Returns their names (for one note line)."""
    removed = []
    for name in RUN_FILES:
        if os.path.isfile(os.path.join(output, name)):
            os.remove(os.path.join(output, name))
            removed.append(name)
    for name in RUN_FOLDERS:
        if os.path.isdir(os.path.join(output, name)):
            shutil.rmtree(os.path.join(output, name))
            removed.append(name + "/")
    return removed


# config values a resumed run may change: where the data lives, how often to log/evaluate/save, when to
# stop, how to evaluate. optim.epochs may grow (see `config_changes`); anything else would make the
# resumed run a different experiment than its first part, so it is refused.
SAFE_ON_RESUME = {
    "data.train_root", "data.val_root", "data.workers", "data.max_bad_fraction", "optim.epochs",
    "training.eval_freq", "training.print_freq", "training.save_every_steps", "training.max_steps",
    "training.max_nonfinite", "training.resume", "training.checkpoint_text_tower", "training.device",
    "training.keep_last_n", "training.compile", "model.grad_checkpointing",
    "evaluation.batch_size", "evaluation.precision", "evaluation.views",
}


def _flat(config: dict) -> dict:
    return {f"{sec}.{k}": v for sec, values in config.items() if isinstance(values, dict) for k, v in values.items()}


def config_changes(stored: dict | None, current: dict, epochs_done: int, source: str) -> list[str]:
    """What differs between the config a checkpoint was trained with and the one resuming it, as
    "key: old -> new" lines. Keys the stored config lacks (an older text4vis) are not compared.
    ConfigError listing every change that is not safe (see SAFE_ON_RESUME), or fewer epochs than done."""
    if not stored:
        return []
    old, new = _flat(stored), _flat(current)
    changes, unsafe = [], []
    for key in sorted(set(old) & set(new) - {"training.resume"}):
        if old[key] == new[key] or (isinstance(old[key], (list, tuple)) and list(old[key]) == list(new[key] or [])):
            continue
        line = f"{key}: {old[key]} -> {new[key]}"
        (changes if key in SAFE_ON_RESUME else unsafe).append(line)
        if key == "optim.epochs" and isinstance(new[key], int) and new[key] < epochs_done:
            unsafe.append(f"optim.epochs: {new[key]} is fewer than the {epochs_done} epochs this run has done")
    if unsafe:
        raise ConfigError(f"training.resume={source!r}: the config differs from the one this run was trained with "
                          f"in ways a resumed run cannot follow ({'; '.join(unsafe)}); resume with the run's own "
                          f"config.yaml, or start a new run in another output folder")
    return changes


def last_checkpoint_step(path: str) -> str:
    """Where a `last` checkpoint stands ("step 12: 2 epochs done, 3 steps into epoch 3"), from its metadata
    alone (the training state is stored packed: checkpoints.pack); "its step unknown" if it cannot be read."""
    from safetensors import safe_open
    try:
        with safe_open(path, "pt") as f:
            train = json.loads(f.metadata()["text4vis"]).get("train", {})
        # the counters are plain numbers in the packed dict (only tensors are stored apart)
        state = {k: v for k, v in train.get("__dict__", []) if isinstance(k, str)} if "__dict__" in train else train
        epochs, step, into = int(state["epoch"]), int(state["global_step"]), int(state.get("step_in_epoch") or 0)
    except Exception:
        return "its step unknown"
    where = f", {into} steps into epoch {epochs + 1}" if into else ""
    return f"step {step}: {epochs} epoch{'s' if epochs != 1 else ''} done{where}"


def resume_path(output: str, resume: str | None) -> str | None:
    """The checkpoint to resume from: `auto` is the folder's last checkpoint if there is one (else None)."""
    if resume != "auto":
        return resume or None
    last = os.path.join(output, CHECKPOINT_LAST)
    return last if os.path.isfile(last) else None


def start_folder(output: str, config: dict, notes: list[str] | None, resumed_step: int | None) -> None:
    """Rank 0, before the first step: the folder exists, temporary files of checkpoint writes a kill
    interrupted are gone, a resumed run's metrics end at its checkpoint, the config is written."""
    os.makedirs(output, exist_ok=True)
    for name in os.listdir(output):
        if ".safetensors.tmp" in name:
            os.remove(os.path.join(output, name))
    if resumed_step is not None:
        trim_metrics(os.path.join(output, METRICS), resumed_step)
    atomic_write_text(os.path.join(output, CONFIG), yaml.safe_dump(config, sort_keys=False))
    if notes:
        atomic_write_text(os.path.join(output, "config_notes.txt"), "".join(n + "\n" for n in notes))


def write_lines(path: str, lines: list[str]) -> None:
    atomic_write_text(path, "".join(line + "\n" for line in lines))


# ----------------------------------------------------------------------------- metrics.jsonl

def read_metrics(path: str, strict: bool = True) -> list[dict]:
    """The records of a metrics.jsonl; a half-written last line (a killed run) is dropped. Other lines that
    are not JSON objects: FolderError when `strict`, else skipped."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    records = []
    for n, line in enumerate(lines, start=1):
        try:
            rec = json.loads(line)
        except ValueError:
            if n == len(lines) or not strict:
                continue
            raise FolderError(f"{path}: line {n} is not JSON") from None
        if not isinstance(rec, dict):
            if not strict:
                continue
            raise FolderError(f"{path}: line {n} is not a JSON object")
        records.append(rec)
    return records


def trim_metrics(path: str, step: int) -> None:
    """Resuming: drop records a killed run wrote after its last checkpoint (and a torn last line)."""
    if os.path.isfile(path):
        keep = [rec for rec in read_metrics(path, strict=False) if rec.get("step", 0) <= step]
        atomic_write_text(path, "".join(json.dumps(rec) + "\n" for rec in keep))


class MetricsLog:
    """Appends records to metrics.jsonl (and scalars to TensorBoard); a no-op on ranks other than 0."""

    def __init__(self, output: str, rank: int, purge_step: int | None = None, tracker=None):
        self.file = self.writer = None
        self.tracker = tracker if rank == 0 else None   # train/tracker.py (training.tracker), or None
        if rank == 0:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(os.path.join(output, "tensorboard"), purge_step=purge_step)
            self.file = open(os.path.join(output, METRICS), "a")

    def write(self, record: dict) -> None:
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        if self.writer is not None:
            for k, v in record.items():
                if k not in ("step", "epoch") and isinstance(v, (int, float)):
                    self.writer.add_scalar(k, v, record["step"])
        if self.tracker is not None:
            self.tracker.log(record)

    def close(self) -> None:
        for f in (self.file, self.writer, self.tracker):
            if f is not None:
                f.close()


# ----------------------------------------------------------------------------- summaries (compare)

def _eval_summary(folder: str, res: str) -> dict:
    try:
        with open(res, encoding="utf-8") as f:
            r = json.load(f)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FolderError(f"{res}: not valid JSON ({first_line(exc, 160)})") from None
    if not isinstance(r, dict):
        raise FolderError(f"{res}: not a text4vis results file (expected a JSON object)")
    half = r.get("half_classes")
    zs = half.get("top1_mean") if isinstance(half, dict) else None
    return {"name": os.path.basename(folder.rstrip("/")), "classifier": "(eval)", "mode": r.get("protocol", ""),
            "shot": "", "head": "", "measured": f"eval, {r.get('views', '?')} views", "top1": r.get("top1"),
            "top5": r.get("top5"), "zero_shot_half": zs}


def run_summary(folder: str) -> dict | None:
    """Best val top-1/top-5 of a run folder, or the metrics of an eval folder (results.json); None for other
    folders. FolderError for a run/eval folder whose files are damaged or incomplete."""
    res = os.path.join(folder, "results.json")
    if os.path.isfile(res):
        return _eval_summary(folder, res)
    cfg_path, met_path = os.path.join(folder, CONFIG), os.path.join(folder, METRICS)
    if not (os.path.isfile(cfg_path) and os.path.isfile(met_path)):
        return None
    try:
        with open(cfg_path, encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise FolderError(f"{cfg_path}: not valid YAML ({first_line(exc, 160)})") from None
    try:
        values = [cfg[sec][key] for sec, key in (("classifier", "type"), ("training", "mode"), ("model", "head"))]
        shot = cfg["data"].get("shot") or "all"
    except (KeyError, TypeError, AttributeError):
        raise FolderError(f"{cfg_path}: not a text4vis run config (needs classifier.type, training.mode, "
                          f"model.head and a data section)") from None
    evals = [rec for rec in read_metrics(met_path) if isinstance(rec.get("val_top1"), (int, float))]
    best = max(evals, key=lambda r: r["val_top1"]) if evals else {}
    return {"name": os.path.basename(folder.rstrip("/")), "classifier": values[0], "mode": values[1],
            "shot": shot, "head": values[2], "measured": "best val during training, 1x1 view",
            "top1": best.get("val_top1"), "top5": best.get("val_top5"), "zero_shot_half": None}
