"""Decoding outside the server process: a pool of worker processes with a time limit per job, and the
functions they run (a video's test-time views, a video's timeline windows)."""
from __future__ import annotations

import importlib
import multiprocessing as mp
import queue
import signal
import threading

from ..errors import Text4VisError, UsageError, VideoError, first_line


class DecodeTimeout(VideoError):
    """A decode job that ran past the pool's time limit (its worker process was killed)."""


def _worker_main(conn) -> None:
    """A decode worker process: run (function, args) jobs until told to stop (None) or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the server decides
    try:
        import torch
        torch.set_num_threads(1)
        importlib.import_module("text4vis.datasets")  # imported once here, not in the first job's time
        from ..video import media_files_only
        media_files_only()  # every file this process opens is an upload: no playlist may read other files
        conn.send(("ready", None))
        while True:
            job = conn.recv()
            if job is None:
                return
            fn, args = job
            try:
                conn.send(("ok", fn(*args)))
            except Text4VisError as exc:
                conn.send(("error", (type(exc).__name__, first_line(exc))))
            except Exception as exc:  # a decoder failure must not end the worker
                conn.send(("error", ("Exception", f"{type(exc).__name__}: {first_line(exc)}")))
    except (EOFError, OSError, KeyboardInterrupt):
        return


class _Worker:
    def __init__(self, ctx):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child,), daemon=True, name="text4vis-decode")
        self.process.start()
        child.close()
        self.ready = False

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()


class DecodePool:
    """N worker processes; `run(fn, *args)` (blocking, thread-safe) runs fn in one of them with a time
    limit. On timeout the worker is killed and replaced and DecodeTimeout is raised; a worker that dies
    is replaced and VideoError is raised. `fn` must be importable (a module-level function)."""

    def __init__(self, workers: int = 2, timeout_s: float = 60.0, start_timeout_s: float = 120.0):
        if workers < 1:
            raise UsageError(f"decode_workers={workers}: at least 1 decode process is needed")
        if not timeout_s > 0:
            raise UsageError(f"decode_timeout_s={timeout_s}: the decode time limit must be positive")
        # Never fork the server itself (it holds threads and a model): workers fork from a clean
        # forkserver that imported the decoder once, so a replacement starts in milliseconds.
        self._ctx = mp.get_context("forkserver")
        self._ctx.set_forkserver_preload(["text4vis.serve.decode", "text4vis.datasets"])
        self.timeout_s, self.start_timeout_s = float(timeout_s), float(start_timeout_s)
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._lock = threading.Lock()
        self._workers: set[_Worker] = set()
        self.replaced = 0
        started = [self._start() for _ in range(workers)]
        for w in started:  # ready before the first request: its time limit is for decoding only
            self._wait_ready(w)
            self._idle.put(w)

    def _start(self) -> _Worker:
        w = _Worker(self._ctx)
        with self._lock:
            self._workers.add(w)
        return w

    def _replace(self, w: _Worker) -> _Worker:
        w.kill()
        with self._lock:
            self._workers.discard(w)
            self.replaced += 1
        return self._start()

    def _wait_ready(self, w: _Worker) -> None:
        if not w.ready:
            if not w.conn.poll(self.start_timeout_s):
                raise VideoError(f"a decode process did not start within {self.start_timeout_s:g} s")
            w.conn.recv()
            w.ready = True

    def pids(self) -> list[int]:
        with self._lock:
            return sorted(w.process.pid for w in self._workers)

    def run(self, fn, *args):
        w = self._idle.get()
        try:
            self._wait_ready(w)  # a replacement may still be starting: not counted against the job's limit
            w.conn.send((fn, args))
            if not w.conn.poll(self.timeout_s):
                w = self._replace(w)
                raise DecodeTimeout(f"decoding took longer than {self.timeout_s:g} s and was stopped")
            kind, value = w.conn.recv()
        except (EOFError, OSError):  # the process died (a crash inside the decoder)
            w = self._replace(w)
            raise VideoError("the decoder crashed on this file") from None
        finally:
            self._idle.put(w)
        if kind == "ok":
            return value
        name, message = value
        raise (VideoError if name != "UsageError" else UsageError)(message)

    def close(self) -> None:
        with self._lock:
            workers = list(self._workers)
            self._workers.clear()
        for w in workers:
            try:
                w.conn.send(None)
            except OSError:
                pass
        for w in workers:
            w.process.join(2)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(2)
            w.conn.close()


def decode_views(path: str, num_frames: int, input_size: int, clips: int, crops: int):
    """The test-time views of one video exactly as `predict` builds them: uint8 numpy [V, T, 3, S, S]."""
    from ..datasets import Sample, TestDataset
    _, views, error = TestDataset([Sample(path, -1, None, path)], num_frames, input_size, clips, crops)[0]
    if error is not None:
        raise VideoError(error)
    return views.numpy()


def decode_windows(path: str, window: float, stride: float, num_frames: int, input_size: int,
                   max_windows: int) -> dict:
    """The time windows of one video as `text4vis timeline` samples them, in one decoding pass:
    {"clips": uint8 numpy [W, T, 3, S, S], "spans": [(start, end)], "duration", "fps"} (+ "error"
    when the stream breaks off part-way: the windows before the break are kept)."""
    import numpy as np

    from .. import timeline, video
    info = video.probe(path)
    plan = timeline.plan_windows(info, window, stride, num_frames)
    if len(plan) > max_windows:
        raise UsageError(f"{path}: {len(plan)} windows of {window:g} s every {stride:g} s; at most {max_windows} "
                         f"per request (use a larger stride)")
    stats = video.DecodeStats()
    rows = {k: clip.numpy() for k, clip in timeline.window_clips(path, info, plan, input_size, stats=stats)}
    if not rows:
        raise VideoError(f"{path}: video stream does not decode ({stats.broken or 'no window complete'})")
    keys = sorted(rows)
    out = {"clips": np.stack([rows[k] for k in keys]), "spans": [(plan[k]["start"], plan[k]["end"]) for k in keys],
           "duration": round(info.duration, 6), "fps": round(info.fps, 6)}
    if len(rows) < len(plan):
        out["error"] = (f"{path}: video stream breaks off ({stats.broken}); {len(plan) - len(rows)} of "
                        f"{len(plan)} windows after it are left out")
    return out
