"""The model of an index (loading, the identity recorded in index.json) and the embedding of whole
videos or time windows, shard by shard."""
from __future__ import annotations

import contextlib
import os

import numpy as np

from ..errors import UsageError, VideoError, VideoIndexError, first_line
from ..files import sha256_file
from .inputs import file_stat

QUERY_LABEL = "video"           # a one-class classifier: loading a model for embedding needs some labels
KILL_WORKER_ENV = "TEXT4VIS_TEST_KILL_WORKER_ON"   # tests: the file name whose decoding worker is killed
KILL_BUILD_ENV = "TEXT4VIS_TEST_KILL_BUILD_ON"     # tests: the file name whose in-process embedding kills the build


# ----------------------------------------------------------------------------- the model

def local_checkpoint(checkpoint):
    """A converted folder or hf-hub:ORG/NAME checkpoint as the local file it names (what is hashed and recorded)."""
    from ..checkpoints import resolve_checkpoint
    return os.path.abspath(resolve_checkpoint(os.fspath(checkpoint))) if checkpoint else checkpoint


def load_model(checkpoint=None, clip=None, frames=None, device="auto", precision="auto", labels=None,
               prompts=None, classifier=None, runtime="torch"):
    """A Recognizer for embedding (a one-class classifier unless `labels`/`classifier` are given);
    runtime='onnx' embeds on ONNX Runtime (the checkpoint's exported model.onnx), as in `load`."""
    from ..api import load
    from ..checkpoints import is_text4vis_checkpoint
    if labels is None and classifier is None and not (checkpoint and is_text4vis_checkpoint(checkpoint)):
        labels = [QUERY_LABEL]
    return load(checkpoint=checkpoint, clip=clip, labels=labels, prompts=prompts, classifier=classifier,
                frames=frames, device=device, precision=precision, runtime=runtime)


def embedding_width(rec) -> int:
    proj = getattr(rec.model, "proj", None)
    return int(proj.out_features) if proj is not None else int(rec.model.embed_dim)


def model_record(rec, checkpoint, clip, prompts, known: dict | None = None) -> dict:
    """What index.json says about the model that built the index (and what identifies it). A file
    that `known` (an earlier record) names, unchanged (same path, size and mtime), keeps its recorded
    hash instead of being hashed again."""
    record = {"checkpoint": None, "checkpoint_sha256": None, "checkpoint_size": None, "checkpoint_mtime": None,
              "clip": clip, "clip_sha256": None, "clip_size": None, "clip_mtime": None, "source": rec.source,
              "towers": rec.towers.source if rec.towers is not None else None, "head": rec.model.head_type,
              "frames": int(rec.num_frames), "input_size": int(rec.input_size), "embedding_width": embedding_width(rec),
              "prompts": list(prompts or rec.classifier_meta.get("prompts") or _default_prompts())}
    for name, path in (("checkpoint", checkpoint), ("clip", clip)):
        if not path or not os.path.isfile(path):
            continue
        path = os.path.abspath(path)
        size, mtime = file_stat(path)
        k = known or {}
        same = k.get(name) == path and (k.get(f"{name}_size"), k.get(f"{name}_mtime")) == (size, mtime)
        record.update({name: path, f"{name}_size": size, f"{name}_mtime": mtime,
                       f"{name}_sha256": k[f"{name}_sha256"] if same and k.get(f"{name}_sha256") else sha256_file(path)})
    return record


def _default_prompts():
    from ..classifiers import DEFAULT_PROMPTS
    return DEFAULT_PROMPTS


IDENTITY = ("checkpoint_sha256", "clip", "head", "frames", "input_size", "embedding_width")


def _identity(record: dict) -> dict:
    """The fields that tell models apart; a local CLIP file is known by its hash, not its path."""
    ident = {k: record.get(k) for k in IDENTITY}
    if record.get("clip_sha256"):
        ident["clip"] = record["clip_sha256"]
    return ident


def check_same_model(recorded: dict, other: dict, where: str) -> None:
    """VideoIndexError when `other` is not the model that built the index at `where`."""
    a, b = _identity(recorded), _identity(other)
    for key in IDENTITY:
        if a[key] != b[key]:
            built = recorded.get("checkpoint") or recorded.get("clip") or recorded.get("source")
            raise VideoIndexError(f"{where} was built with another model ({key} {a[key]} there, {b[key]} here); "
                                  f"use the model that built it ({built})")



# ----------------------------------------------------------------------------- embedding shards

class _Videos:
    """Dataset of whole videos sampled as `predict --views 1x1`, with each video's duration."""

    def __init__(self, paths: list[str], num_frames: int, input_size: int):
        from ..datasets import Sample, TestDataset
        self.paths = paths
        self.ds = TestDataset([Sample(p, -1, None, p) for p in paths], num_frames, input_size, 1, 1)
        # tests only: a decoding worker that reaches a video whose file name is this kills itself with SIGKILL,
        # as the OOM killer would (read here, in the parent, so it holds under any multiprocessing start method)
        self.kill_on = os.environ.get(KILL_WORKER_ENV) or None
        self.kill_build_on = os.environ.get(KILL_BUILD_ENV) or None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        if self.kill_on and os.path.basename(self.paths[i]) == self.kill_on:
            from torch.utils.data import get_worker_info
            if get_worker_info() is not None:        # only ever a worker process, never the build itself
                import signal
                os.kill(os.getpid(), signal.SIGKILL)
        if self.kill_build_on and os.path.basename(self.paths[i]) == self.kill_build_on:
            import signal                            # tests only: the build process itself, decoding in-process
            os.kill(os.getpid(), signal.SIGKILL)
        index, views, error = self.ds[i]
        return index, views, error, (video_duration(self.paths[i]) if error is None else None)


def _collate(batch):
    import torch
    ok = [b for b in batch if b[1] is not None]
    views = torch.stack([b[1] for b in ok]) if ok else None
    return [b[0] for b in ok], views, [(b[0], b[2]) for b in batch if b[1] is None], {b[0]: b[3] for b in ok}


def video_duration(path: str) -> float | None:
    """Seconds of the default video stream from the container's header (None when it does not say); a frame
    folder's from its frame count (`video.FRAME_FOLDER_RATE`)."""
    if os.path.isdir(path):
        try:
            from ..video import probe
            return round(float(probe(path).duration), 6)
        except Exception:
            return None
    try:
        from ..video import _default_stream, _open
        with _open(path) as c:                       # local files and URLs (remote.py) alike
            s = _default_stream(c)
            if s.duration is not None and s.time_base:
                return round(float(s.duration * s.time_base), 6)
            return round(c.duration / 1e6, 6) if c.duration else None
    except Exception:
        return None


def _error_text(path: str, exc: BaseException) -> str:
    if isinstance(exc, VideoError):
        return first_line(exc)
    return f"{path}: {type(exc).__name__}: {first_line(exc)}"


def embed_views(rec, views) -> np.ndarray:
    """Views [b, v, T, 3, H, W] of b videos -> their embeddings [b, D] (predict's rule: the mean over
    views, L2-normalised), on the model's device and precision; the caller holds torch.no_grad()."""
    import torch.nn.functional as F

    from .. import engine
    model = rec.video_backend or rec.model      # ONNX Runtime when runtime='onnx'
    b, v = views.shape[:2]
    with engine.autocast(rec.device, rec.precision):
        emb = model.embed(views.to(rec.device).flatten(0, 1))
    return F.normalize(emb.float().view(b, v, -1).mean(1), dim=-1).cpu().numpy()


def chunk_bounds(groups, batch_size: int) -> list[list[int]]:
    """The batches of a build: runs of `batch_size` consecutive videos, never straddling two shards
    (so a shard's numbers depend on neither its neighbours nor the engine that embeds it)."""
    batches, start = [], 0
    for g in groups:
        batches.extend(list(range(i, min(i + batch_size, start + len(g)))) for i in range(start, start + len(g), batch_size))
        start += len(g)
    return batches


def embed_video_groups(rec, groups, batch_size: int, workers, on_group, bar=None, inflight=None,
                       died: dict | None = None) -> None:
    """Embed whole videos, shard by shard: `on_group(g, items)` receives, for shard g, one
    (embeddings [n, D] or None, error or None, duration, spans or None) per video, in order.
    Batches never straddle two shards, so a shard's numbers do not depend on its neighbours.

    Decoding in this process (workers=0) with `inflight` (storage.InFlight): each batch's videos are
    recorded while it is decoded and embedded; a video that was in flight when an earlier build died
    (`died`, storage.take_inflight) is decoded in a batch of its own, and one on which two builds in a row
    died is recorded as failed (decoding workers are handled by `_loaded_batches` instead)."""
    import torch

    from .. import engine
    items = [v for g in groups for v in g]
    flat = [p for p, _, _ in items]
    if not flat:
        return
    died = died or {}
    batches = chunk_bounds(groups, batch_size)
    workers = engine.default_workers(len(flat)) if workers is None else workers
    done: dict[int, tuple] = {}
    if inflight is not None and not workers and died:
        batches = _isolate_suspects(batches, items, died, done)
    dataset = _Videos(flat, rec.num_frames, rec.input_size)
    (rec.video_backend or rec.model).eval()
    gi, pos = 0, 0

    def flush() -> None:  # every shard whose videos are all done, in order
        nonlocal gi, pos
        while gi < len(groups) and all(j in done for j in range(pos, pos + len(groups[gi]))):
            on_group(gi, [done.pop(j) for j in range(pos, pos + len(groups[gi]))])
            pos += len(groups[gi])
            gi += 1

    if bar is not None and done:
        bar.update(len(done))
    flush()
    loaded = _loaded_batches(dataset, batches, workers)
    if inflight is not None and not workers:
        loaded = _recorded(loaded, batches, items, died, inflight)
    with torch.no_grad():
        for indices, views, failed, durations in loaded:
            if views is not None:
                for i, e in zip(indices, embed_views(rec, views)):
                    done[i] = (e[None], None, durations[i], None)
            for i, msg in failed:
                done[i] = (None, msg, None, None)
            if bar is not None:
                bar.update(len(indices) + len(failed))
            flush()


def _died_twice(path: str) -> str:
    return (f"{path}: the build process died twice while embedding it (out of memory, or a crash in the video "
            f"decoder); not tried again until it changes")


def _isolate_suspects(batches, items, died: dict, done: dict) -> list[list[int]]:
    """Batches without the videos two builds died on (recorded as failed in `done`), and with each video
    one build died on in a batch of its own."""
    out = []
    for batch in batches:
        rest = []
        for i in batch:
            deaths = died.get(tuple(items[i]), 0)
            if deaths >= 2:
                done[i] = (None, _died_twice(items[i][0]), None, None)
            elif deaths == 1:
                out.append([i])
            else:
                rest.append(i)
        if rest:
            out.append(rest)
    return out


def _recorded(loaded, batches, items, died: dict, inflight):
    """`loaded` (decoding in this process) with each batch's videos recorded in flight from before it is
    decoded until the caller has embedded it (asks for the next batch)."""
    it = iter(loaded)
    try:
        for batch in batches:
            inflight.enter([(*items[i], died.get(tuple(items[i]), 0)) for i in batch])
            out = next(it)
            yield out
            inflight.leave()
    finally:
        inflight.leave()


PREFETCH = 4     # batches each decoding worker prepares ahead


def _worker_died(exc: BaseException) -> bool:
    """The DataLoader's error for a worker process that died (killed by a signal: the OOM killer, a crash
    in native decoding code; or exited), as opposed to an error raised in Python."""
    return isinstance(exc, RuntimeError) and "DataLoader worker" in str(exc) and \
        ("killed by signal" in str(exc) or "exited unexpectedly" in str(exc))


def _loaded_batches(dataset, batches: list[list[int]], workers: int):
    """The collated batches of `dataset` in order, decoded by `workers` processes (0: in this process).

    A worker process that dies (killed by the OOM killer, a segfault in a native decoder) does not stop the
    build: the batches it may have been decoding (the ones not yet delivered, at most workers x PREFETCH)
    are decoded again, each in a worker of its own, and a batch whose worker dies again is split into single
    videos; a video whose own worker dies is reported as failed with the reason, and the rest go on as before.
    In this process (workers=0) such a crash ends the build, as it would any program."""
    from torch.utils.data import DataLoader

    def loader(todo, n):
        return DataLoader(dataset, batch_sampler=todo, num_workers=n, collate_fn=_collate,
                          prefetch_factor=PREFETCH if n else None)

    def run(todo, n):
        """(batches delivered, reason or None when all were)."""
        delivered = []
        try:
            for out in loader(todo, n):
                delivered.append(out)
        except RuntimeError as exc:
            if not _worker_died(exc):
                raise
            return delivered, first_line(exc)
        return delivered, None

    if not workers:
        yield from loader(batches, 0)
        return
    with _no_async_worker_errors():
        yield from _recovering(dataset, batches, workers, loader, run)


@contextlib.contextmanager
def _no_async_worker_errors():
    """PyTorch's SIGCHLD handler raises a worker's death in the main thread wherever it is (in the model, or
    writing a shard); while this is active that death is raised by the DataLoader's own status check instead
    (within its 5 s poll), inside the `next()` that waits for the dead worker's batch, where it is handled."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from torch.utils.data._utils import signal_handling
    signal_handling._set_SIGCHLD_handler()      # PyTorch installs it once, lazily: now, so that it is undone here
    previous = signal.getsignal(signal.SIGCHLD)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGCHLD, previous)


def _recovering(dataset, batches, workers, loader, run):
    todo = list(batches)
    while todo:
        it, done, reason = iter(loader(todo, workers)), 0, None
        try:
            for out in it:
                yield out
                done += 1
        except RuntimeError as exc:
            if not _worker_died(exc):
                raise
            reason = first_line(exc)
        del it
        if reason is None:
            return
        todo = todo[done:]
        suspects, todo = todo[:workers * PREFETCH], todo[workers * PREFETCH:]
        for batch in suspects:                     # each alone: the one that kills its worker again is found
            got, died = run([batch], 1)
            if died is None:
                yield from got
                continue
            for i in batch:                        # then each of its videos alone
                got, died = run([[i]], 1)
                if died is None:
                    yield from got
                else:
                    yield [], None, [(i, f"{dataset.paths[i]}: the process decoding it died ({died}): out of "
                                         f"memory, or a crash in the video decoder")], {}


def embed_window_groups(rec, groups, window: float, stride: float, batch_size: int, on_group, bar=None,
                        inflight=None, died: dict | None = None) -> None:
    """Embed the time windows of each video (`timeline.embed_windows`, as `text4vis timeline` windows
    them), shard by shard. A stream that breaks off part-way keeps the windows before the break and
    is recorded as failed too (its one-line error). Decoding runs in this process, so a native crash or
    the OOM killer ends it: `inflight` (storage.InFlight) records the video being embedded, and a video
    on which `died` (storage.take_inflight) says two builds in a row died is recorded as failed instead
    of being embedded a third time (one death is retried: it may have been a kill that had nothing to do
    with the video)."""
    from ..timeline import embed_windows
    died = died or {}
    kill_on = os.environ.get(KILL_BUILD_ENV) or None
    for gi, g in enumerate(groups):
        items = []
        for p, size, mtime in g:
            deaths = died.get((p, size, mtime), 0)
            if deaths >= 2:
                items.append((None, _died_twice(p), None, None))
                if bar is not None:
                    bar.update(1)
                continue
            if inflight is not None:
                inflight.enter([(p, size, mtime, deaths)])
            if kill_on and os.path.basename(p) == kill_on:     # tests only: die as the OOM killer kills
                import signal
                os.kill(os.getpid(), signal.SIGKILL)
            try:
                r = embed_windows(rec, p, window, stride, batch_size=batch_size)
                emb = np.stack([w["embedding"] for w in r["windows"]]).astype(np.float32)
                items.append((emb, r.get("error"), r["duration"], [(w["start"], w["end"]) for w in r["windows"]]))
            except UsageError:
                raise
            except Exception as exc:  # one video never stops the build
                items.append((None, _error_text(p, exc), None, None))
            finally:
                if inflight is not None:
                    inflight.leave()
            if bar is not None:
                bar.update(1)
        on_group(gi, items)


def shard_rows(group, items, dim: int) -> tuple[list[dict], np.ndarray]:
    """Metadata rows and embeddings of one shard: a row per embedded entry, and a row with status
    "error" for a video that failed (or broke off part-way)."""
    rows, embs = [], []
    for (path, size, mtime), (emb, error, duration, spans) in zip(group, items):
        base = {"path": path, "size": size, "mtime": mtime, "duration": duration}
        for k, e in enumerate(emb if emb is not None else []):
            start, end = spans[k] if spans else (None, None)
            rows.append(dict(base, start=start, end=end, status="ok", error=None))
            embs.append(e)
        if error is not None:
            rows.append(dict(base, start=None, end=None, status="error", error=error))
    return rows, (np.stack(embs).astype(np.float32) if embs else np.zeros((0, dim), np.float32))

