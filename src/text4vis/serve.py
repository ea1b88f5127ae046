"""`text4vis serve`: a Recognizer as an HTTP service (FastAPI + uvicorn) with a web page at `/`.

    app = text4vis.serve.create_app(text4vis.load(...), max_batch=8)   # any ASGI server runs it
    text4vis.serve.run(recognizer, host="127.0.0.1", port=8000)          # or uvicorn, with signals handled

How a request flows (the event loop only moves bytes and awaits futures):
  upload   streamed into a private temporary folder (mode 0700), counted against max_upload_mb while it
           arrives; the client's file name is only a label, never a path that is opened
  decode   in a pool of worker processes (DecodePool), each job with a time limit: a worker that hangs
           (a damaged stream can hang FFmpeg) is killed and replaced, a worker that crashes is replaced
  model    one thread (ModelWorker) owns the model; it takes the queued clips of concurrent requests
           together, up to max_batch per forward pass, waiting at most batch_wait_ms for more
  answer   the same record as `text4vis predict --json`; the upload is deleted

Errors are one-line JSON {"error": "..."}: 400 bad parameters, 401 API key, 413 upload too large,
422 not a decodable video, 503 (with Retry-After) when max_queue requests are already in flight.
"""

import asyncio
import collections
import concurrent.futures as cf
import logging
import multiprocessing as mp
import os
import queue
import re
import secrets
import shutil
import signal
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field

from .errors import ClassifierError, LabelsError, Text4VisError, UsageError, VideoError, WeightsError, first_line

log = logging.getLogger("text4vis.serve")

FIELD_LIMIT = 64 * 1024          # bytes of one non-file form field (labels, topk, ...)
MAX_LABELS = 2000                # custom labels per request
MAX_VIEWS = 30                   # clips x crops per request
PARAMETERS = {"video", "labels", "topk", "views"}
TIMELINE_PARAMETERS = {"video", "labels", "topk", "window", "stride", "min_score", "smooth"}
SEARCH_PARAMETERS = {"video", "k"}
MAX_WINDOWS = 900                # timeline windows per request (30 minutes at the default stride)
CHUNK = 64                       # clips per forward pass of a long timeline


def _require_fastapi():
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"serving needs FastAPI, uvicorn and python-multipart ({exc.name} is missing): "
                         f"pip install 'text4vis[serve]'") from None


class HTTPError(Text4VisError):
    """An answer other than 200: status, one-line message, extra headers."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def status_of(exc: BaseException) -> int:
    """HTTP status of a library error: 422 for videos, 400 for what the client asked, else 500."""
    if isinstance(exc, HTTPError):
        return exc.status
    if isinstance(exc, VideoError):
        return 422
    if isinstance(exc, (UsageError, LabelsError, ClassifierError, WeightsError, ValueError)):
        return 400
    return 500


# ----------------------------------------------------------------------------- decode pool

class DecodeTimeout(VideoError):
    """A decode job that ran past the pool's time limit (its worker process was killed)."""


def _worker_main(conn) -> None:
    """A decode worker process: run (function, args) jobs until told to stop (None) or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the server decides
    try:
        import torch
        torch.set_num_threads(1)
        from . import datasets  # noqa: F401  (imported once here, not in the first job's time)
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


DECODE_PRELOAD = ["text4vis.serve", "text4vis.datasets"]  # what the decode workers' forkserver imports once


def start_decoders() -> None:
    """Start the forkserver the decode workers fork from now, so that its imports run while this process
    loads the model (DecodePool then uses it): the service answers sooner."""
    from multiprocessing import forkserver
    mp.get_context("forkserver").set_forkserver_preload(DECODE_PRELOAD)
    forkserver.ensure_running()


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
        self._ctx.set_forkserver_preload(DECODE_PRELOAD)
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
    from .datasets import Sample, TestDataset
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

    from . import timeline, video
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


# ----------------------------------------------------------------------------- model worker

@dataclass
class Job:
    views: object                      # uint8 torch [V, T, 3, S, S]
    name: str                          # the record's "video"
    topk: int = 5
    labels: tuple[str, ...] | None = None
    embedding: bool = False            # return the embedding (for search) instead of top-k
    windows: dict | None = None        # a timeline: one embedding per view (window), with its spans and times
    call: object = None                # instead of clips: a function to run on the model's thread
    future: cf.Future = field(default_factory=cf.Future)


class ModelWorker:
    """One thread owns the model. Jobs queue up; each forward pass takes every queued job (up to
    max_batch), waiting at most batch_wait_ms for more while other requests are still decoding."""

    def __init__(self, recognizer, max_batch: int = 8, batch_wait_ms: float = 10.0, prompts=None,
                 cache_size: int = 16, upstream=lambda: 0):
        from .classifiers import DEFAULT_PROMPTS
        self.rec, self.max_batch, self.wait = recognizer, int(max_batch), float(batch_wait_ms) / 1000
        self.prompts = list(prompts or DEFAULT_PROMPTS)
        self.cache: collections.OrderedDict = collections.OrderedDict()
        self.cache_size = int(cache_size)
        self.upstream = upstream           # how many requests are still on their way (uploading, decoding)
        self.batches = collections.deque(maxlen=1000)  # sizes of the latest forward passes
        self.passes = self.jobs = 0
        self._queue: queue.Queue = queue.Queue()
        import torch
        self._threads = torch.get_num_threads()  # the caller's setting (OpenMP keeps it per thread)
        self._thread = threading.Thread(target=self._loop, name="text4vis-model", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> cf.Future:
        self._queue.put(job)
        return job.future

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        import torch
        torch.set_num_threads(self._threads)
        while True:
            job = self._queue.get()
            if job is None:
                return
            if job.call is not None:  # text queries and other model work that is not a batch of clips
                try:
                    job.future.set_result(job.call())
                except Exception as exc:
                    job.future.set_exception(exc)
                continue
            batch, stop = [job], False
            deadline = time.monotonic() + self.wait
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    left = deadline - time.monotonic()
                    if left <= 0 or self.upstream() == 0:
                        break
                    try:
                        nxt = self._queue.get(timeout=min(left, 0.002))
                    except queue.Empty:
                        continue
                if nxt is None:
                    stop = True
                    break
                if nxt.call is not None:  # runs after this batch
                    self._queue.put(nxt)
                    break
                batch.append(nxt)
            self.batches.append(len(batch))
            self.passes, self.jobs = self.passes + 1, self.jobs + len(batch)
            self._run(batch)
            if stop:
                return

    def _classifier(self, labels: tuple[str, ...]):
        """The weight rows and names for a label set: the model's own, or a cached text classifier."""
        rec = self.rec
        if labels is None:
            return rec.model.classifier, rec.labels
        if labels in self.cache:
            self.cache.move_to_end(labels)
            return self.cache[labels]
        if rec.towers is None:
            raise WeightsError(f"{rec.source}: has no text tower, so custom labels cannot be used "
                               f"(load it with clip= to add one)")
        from .classifiers import text_classifier
        cls = text_classifier(rec.towers, list(labels), self.prompts)
        width = rec.model.proj.out_features if rec.model.proj is not None else rec.model.embed_dim
        if cls.dim != width:
            raise ClassifierError(f"custom labels give a classifier of width {cls.dim} but this model's "
                                  f"classifier width is {width}")
        self.cache[labels] = (cls.weight, list(cls.labels))
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return self.cache[labels]

    def _run(self, batch: list[Job]) -> None:
        import torch
        import torch.nn.functional as F

        from . import engine
        rec = self.rec
        try:
            with torch.no_grad():
                views = torch.cat([j.views for j in batch])
                model = rec.video_backend or rec.model  # ONNX Runtime when loaded with runtime='onnx'
                model.eval()
                parts = []
                for i in range(0, len(views), CHUNK):  # a long timeline goes through in slices
                    with engine.autocast(rec.device, rec.precision):
                        parts.append(model.embed(views[i:i + CHUNK].to(rec.device)).float().cpu())
                emb = torch.cat(parts)
        except Exception as exc:  # out of memory, ...: every job of this pass fails, the worker goes on
            for j in batch:
                j.future.set_exception(exc)
            return
        start = 0
        for j in batch:
            n = j.views.shape[0]
            part = emb[start:start + n]
            # predict: the mean over a video's views; timeline: each window (view) on its own
            e = F.normalize(part if j.windows is not None else part.mean(0, keepdim=True), dim=-1)
            start += n
            try:
                j.future.set_result(self._answer(j, e))
            except Exception as exc:
                j.future.set_exception(exc)

    def _answer(self, job: Job, emb) -> dict:
        import torch

        from .engine import scores_from_embeddings
        if job.embedding:
            return {"video": job.name, "embedding": emb[0]}
        weight, names = self._classifier(job.labels)
        if job.windows is not None:
            return timeline_record(job, scores_from_embeddings(emb, weight).numpy(), names)
        scores = scores_from_embeddings(emb, weight)[0]
        top = torch.topk(scores, min(job.topk, len(names)))
        return {"video": job.name, "top": [{"label": names[j], "score": round(float(v), 6)}
                                           for v, j in zip(top.values.tolist(), top.indices.tolist())]}


def timeline_record(job: Job, scores, names: list[str]) -> dict:
    """The `text4vis timeline` record from window scores [W, C] (its rule: text4vis.timeline)."""
    import numpy as np

    from .timeline import segments
    w = job.windows
    k = min(job.topk, len(names))
    windows = []
    for (start, end), s in zip(w["spans"], scores):
        best = np.argsort(-s, kind="stable")[:k]
        windows.append({"start": start, "end": end,
                        "top": [{"label": names[j], "score": round(float(s[j]), 6)} for j in best]})
    record = {"video": job.name, "duration": w["duration"], "fps": w["fps"], "windows": windows,
              "segments": segments(w["spans"], scores, names, w["min_score"], w["smooth"])}
    if "error" in w:
        record["error"] = w["error"]
    return record


# ----------------------------------------------------------------------------- uploads

@dataclass
class Upload:
    path: str | None = None            # the file in the private folder
    name: str = ""                     # what the client called it (a label only)
    size: int = 0
    fields: dict[str, str] = field(default_factory=dict)


_SAFE_EXT = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


def _display_name(filename: str) -> str:
    """The client's file name as a label: its last component, printable, at most 200 characters."""
    base = re.split(r"[\\/]", filename or "")[-1]
    base = "".join(c for c in base if c.isprintable()).strip()
    return base[:200] or "upload"


async def read_upload(request, folder: str, max_bytes: int, allowed: set[str]) -> Upload:
    """Stream a multipart/form-data body: the one file field `video` goes into `folder` under a
    random name, counted against `max_bytes` as it arrives (413 the moment it is exceeded); other
    fields are small text values. The caller deletes upload.path."""
    from python_multipart.multipart import MultipartParser, parse_options_header
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise HTTPError(400, "send the video as multipart/form-data (a file field named video)")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes + FIELD_LIMIT * 4:
        raise HTTPError(413, f"upload of {int(length)} bytes is over the limit of {max_bytes} bytes")
    up = Upload()
    part = {"headers": {}, "field": b"", "value": b"", "name": None, "file": None, "data": None}

    def on_header_field(data, start, end):
        part["field"] += data[start:end]

    def on_header_value(data, start, end):
        part["value"] += data[start:end]

    def on_header_end():
        part["headers"][part["field"].decode("latin-1").lower()] = part["value"]
        part["field"] = part["value"] = b""

    def on_headers_finished():
        _, disp = parse_options_header(part["headers"].get("content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        if name not in allowed:
            raise HTTPError(400, f"unknown form field {name!r}: send {', '.join(sorted(allowed))}")
        if name in up.fields or (name == "video" and up.path):
            raise HTTPError(400, f"form field {name!r} is sent twice")
        part["name"] = name
        if name == "video":
            if b"filename" not in disp:
                raise HTTPError(400, "form field 'video' must be a file")
            up.name = _display_name(disp[b"filename"].decode("utf-8", "replace"))
            ext = os.path.splitext(up.name)[1]
            up.path = os.path.join(folder, uuid.uuid4().hex + (ext.lower() if _SAFE_EXT.match(ext) else ""))
            part["file"] = open(up.path, "xb")
        else:
            part["data"] = bytearray()

    def on_part_data(data, start, end):
        if part["file"] is not None:
            up.size += end - start
            if up.size > max_bytes:
                raise HTTPError(413, f"upload is over the limit of {max_bytes} bytes")
            part["file"].write(data[start:end])
        else:
            part["data"] += data[start:end]
            if len(part["data"]) > FIELD_LIMIT:
                raise HTTPError(400, f"form field {part['name']!r} is over {FIELD_LIMIT} bytes")

    def on_part_end():
        if part["file"] is not None:
            part["file"].close()
        else:
            try:
                up.fields[part["name"]] = bytes(part["data"]).decode("utf-8")
            except UnicodeDecodeError:
                raise HTTPError(400, f"form field {part['name']!r} is not UTF-8 text") from None
        part.update(headers={}, name=None, file=None, data=None)

    parser = MultipartParser(boundary, dict(
        on_header_field=on_header_field, on_header_value=on_header_value, on_header_end=on_header_end,
        on_headers_finished=on_headers_finished, on_part_data=on_part_data, on_part_end=on_part_end))
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except BaseException as exc:  # the partial file goes at once (413, a bad field, a client that went away)
        if part["file"] is not None:
            part["file"].close()
        if up.path:
            _remove(up.path)
        if isinstance(exc, Exception) and not isinstance(exc, HTTPError):  # python-multipart's parse errors
            raise HTTPError(400, f"malformed multipart body ({first_line(exc)})") from None
        raise
    if not up.path:
        raise HTTPError(400, "no video: send the file in a form field named video")
    if up.size == 0:
        _remove(up.path)
        raise HTTPError(422, f"{up.name}: empty file (0 bytes)")
    return up


def _int_field(fields: dict, name: str, default: int, least: int, most: int) -> int:
    text = fields.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise HTTPError(400, f"{name} must be a whole number (got {text[:40]!r})") from None
    if not least <= value <= most:
        raise HTTPError(400, f"{name} must be between {least} and {most} (got {value})")
    return value


def parse_options(fields: dict) -> dict:
    """topk, views and labels of a request, checked (HTTPError 400)."""
    from .labels import parse_labels
    from .sampling import parse_views
    topk = _int_field(fields, "topk", 5, 1, 1000)
    views = fields.get("views", "").strip() or "1x1"
    try:
        clips, crops = parse_views(views)
    except ValueError as exc:
        raise HTTPError(400, str(exc)) from None
    if clips * crops > MAX_VIEWS:
        raise HTTPError(400, f"views {views}: at most {MAX_VIEWS} views (clips x crops) per request")
    labels = None
    if fields.get("labels", "").strip():
        try:
            labels = tuple(parse_labels(fields["labels"], "labels"))
        except LabelsError as exc:
            raise HTTPError(400, str(exc)) from None
        if len(labels) > MAX_LABELS:
            raise HTTPError(400, f"labels: at most {MAX_LABELS} custom labels (got {len(labels)})")
    return {"topk": topk, "clips": clips, "crops": crops, "labels": labels}


def _float_field(fields: dict, name: str, default: float, least: float, most: float, strict: bool = False) -> float:
    text = fields.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise HTTPError(400, f"{name} must be a number (got {text[:40]!r})") from None
    if not (least < value <= most if strict else least <= value <= most):
        raise HTTPError(400, f"{name} must be {'over' if strict else 'at least'} {least:g} and at most {most:g} "
                             f"(got {text[:40]})")
    return value


def parse_timeline(fields: dict) -> dict:
    """window, stride, min_score, smooth (and topk, labels) of a timeline request, checked (HTTPError 400)."""
    opts = parse_options({k: v for k, v in fields.items() if k in ("topk", "labels")})
    opts.update(window=_float_field(fields, "window", 4.0, 0, 3600, strict=True),
                stride=_float_field(fields, "stride", 2.0, 0, 3600, strict=True),
                min_score=_float_field(fields, "min_score", 0.0, 0, 1), smooth=_int_field(fields, "smooth", 1, 0, 100))
    return opts


# ----------------------------------------------------------------------------- the service

class Service:
    """What the app runs on: the private upload folder, the decode pool, the model worker, counters."""

    def __init__(self, recognizer, max_upload_mb: float, max_batch: int, batch_wait_ms: float, max_queue: int,
                 decode_workers: int, decode_timeout_s: float, prompts, cache_size: int):
        self.rec = recognizer
        self.max_bytes = int(max_upload_mb * 1024 * 1024)
        self.max_queue = int(max_queue)
        self.in_flight = 0          # admitted requests not yet answered
        self.upstream = 0           # of those, the ones not yet queued for the model
        self.folder = tempfile.mkdtemp(prefix="text4vis-serve-")  # mode 0700: this user only
        self.pool = DecodePool(decode_workers, decode_timeout_s)
        self.threads = cf.ThreadPoolExecutor(max_workers=decode_workers, thread_name_prefix="text4vis-decode")
        self.model = ModelWorker(recognizer, max_batch, batch_wait_ms, prompts, cache_size,
                                 upstream=lambda: self.upstream)

    def close(self) -> None:
        self.model.stop()
        self.threads.shutdown(wait=True)
        self.pool.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def admit(self) -> None:
        if self.in_flight >= self.max_queue:
            raise HTTPError(503, f"the server is busy ({self.in_flight} requests in flight); retry shortly",
                            {"Retry-After": "1"})
        self.in_flight += 1
        self.upstream += 1

    def release(self, queued: bool) -> None:
        self.in_flight -= 1
        if not queued:
            self.upstream -= 1

    async def decode(self, up: Upload, fn, *args):
        """fn(path, *args) in the decode pool; errors name the client's file, not the private one."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.threads, self.pool.run, fn, up.path, *args)
        except (VideoError, UsageError) as exc:
            message = str(exc).replace(up.path, up.name)
            raise type(exc)(message if message.startswith(up.name) else f"{up.name}: {message}") from None

    async def upload_then(self, request, allowed: set[str], work):
        """Admit (503 when full), stream the upload, then `await work(upload, queue)`, where queue(job)
        hands a job to the model worker and returns its future; the upload is deleted afterwards."""
        self.admit()
        queued, up = [], None

        def queue_job(job: Job):
            if not queued:
                queued.append(True)
                self.upstream -= 1
            return asyncio.wrap_future(self.model.submit(job))

        try:
            up = await read_upload(request, self.folder, self.max_bytes, allowed)
            return await work(up, queue_job)
        finally:
            self.release(bool(queued))
            if up is not None and up.path:
                _remove(up.path)

    async def predict(self, request) -> dict:
        """POST /v1/predict: the `predict --json` record of the uploaded video."""
        import torch

        async def work(up, queue_job):
            opts = parse_options(up.fields)
            views = await self.decode(up, decode_views, self.rec.num_frames, self.rec.input_size,
                                      opts["clips"], opts["crops"])
            return await queue_job(Job(torch.from_numpy(views), up.name, opts["topk"], opts["labels"]))
        return await self.upload_then(request, PARAMETERS, work)

    async def timeline(self, request) -> dict:
        """POST /v1/timeline: the `text4vis timeline --json` record of the uploaded video."""
        import torch

        async def work(up, queue_job):
            opts = parse_timeline(up.fields)
            w = await self.decode(up, decode_windows, opts["window"], opts["stride"], self.rec.num_frames,
                                  self.rec.input_size, MAX_WINDOWS)
            clips = torch.from_numpy(w.pop("clips"))
            w.update(min_score=opts["min_score"], smooth=opts["smooth"])
            if "error" in w:
                w["error"] = w["error"].replace(up.path, up.name)
            return await queue_job(Job(clips, up.name, opts["topk"], opts["labels"], windows=w))
        return await self.upload_then(request, TIMELINE_PARAMETERS, work)

    async def search_video(self, request, index) -> dict:
        """POST /v1/search: the index entries closest to the uploaded video (embedded as predict --views 1x1)."""
        import torch

        async def work(up, queue_job):
            k = _int_field(up.fields, "k", 10, 1, 1000)
            views = await self.decode(up, decode_views, self.rec.num_frames, self.rec.input_size, 1, 1)
            emb = (await queue_job(Job(torch.from_numpy(views), up.name, embedding=True)))["embedding"]
            record = await queue_job(Job(None, up.name, call=lambda: index.search(emb.numpy(), k)))
            return {**record, "query": up.name}
        return await self.upload_then(request, SEARCH_PARAMETERS, work)

    async def search_text(self, q: str, k: int, index) -> dict:
        """GET /v1/search: the index entries closest to a sentence (the index's text tower and prompts)."""
        self.admit()
        try:
            self.upstream -= 1
            return await asyncio.wrap_future(self.model.submit(Job(None, q, call=lambda: index.search(q, k))))
        finally:
            self.in_flight -= 1


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _web_dir() -> str:
    from importlib import resources
    return str(resources.files("text4vis").joinpath("web"))


def create_app(recognizer, *, max_upload_mb: float = 200, max_batch: int = 8, batch_wait_ms: float = 10,
               max_queue: int = 64, api_key: str | None = None, decode_workers: int | None = None,
               decode_timeout_s: float = 60, prompts=None, label_cache: int = 16, index=None):
    """The FastAPI app serving `recognizer`. Its worker processes and threads start with the app's
    lifespan (startup) and stop at its shutdown, which removes the private upload folder."""
    _require_fastapi()
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    for name, value, least in (("max_upload_mb", max_upload_mb, 0.001), ("max_batch", max_batch, 1),
                               ("batch_wait_ms", batch_wait_ms, 0), ("max_queue", max_queue, 1),
                               ("label_cache", label_cache, 1)):
        if not value >= least:
            raise UsageError(f"{name}={value}: must be at least {least}")
    workers = decode_workers or max(1, min(8, os.cpu_count() or 1))

    @asynccontextmanager
    async def lifespan(app):
        service = await asyncio.to_thread(Service, recognizer, max_upload_mb, max_batch, batch_wait_ms, max_queue,
                                          workers, decode_timeout_s, prompts, label_cache)
        app.state.service = service
        log.info("ready: %s, %d labels, upload folder %s", recognizer.source, len(recognizer.labels), service.folder)
        try:
            yield
        finally:
            await asyncio.to_thread(service.close)
            log.info("stopped: upload folder removed")

    app = FastAPI(title="text4vis", version=_version(), lifespan=lifespan,
                  description="Video recognition with CLIP towers and a frozen text classifier. "
                              "Errors are {\"error\": \"...\"} with status 400, 401, 413, 422 or 503.")

    _add_error_handling(app, api_key)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(os.path.join(_web_dir(), "index.html"))

    app.mount("/static", StaticFiles(directory=_web_dir()), name="static")

    @app.get("/healthz", summary="liveness and the loaded model")
    async def healthz(request: Request):
        service: Service = request.app.state.service
        rec = recognizer
        return {"status": "ok", "model": rec.source, "labels": len(rec.labels), "frames": rec.num_frames,
                "input_size": rec.input_size, "device": str(rec.device), "custom_labels": rec.towers is not None,
                "index": index is not None, "index_entries": len(index) if index is not None else 0,
                "timeline": True, "in_flight": service.in_flight, "max_queue": service.max_queue,
                "max_batch": service.model.max_batch, "max_upload_mb": max_upload_mb,
                "forward_passes": service.model.passes,
                "mean_batch": round(service.model.jobs / service.model.passes, 2) if service.model.passes else 0,
                "decoders_replaced": service.pool.replaced, "version": _version()}

    @app.get("/v1/labels", summary="the model's own label set")
    async def labels():
        return {"labels": list(recognizer.labels), "count": len(recognizer.labels),
                "classifier": recognizer.classifier_meta.get("type", "")}

    @app.post("/v1/predict", summary="top-k labels of an uploaded video (the `predict --json` record)",
              openapi_extra=_multipart_schema(PARAMETERS))
    async def predict(request: Request):
        return await request.app.state.service.predict(request)

    @app.post("/v1/timeline", summary="what happens when: scored time windows and labelled segments "
                                      "(the `timeline --json` record)",
              openapi_extra=_multipart_schema(TIMELINE_PARAMETERS))
    async def timeline(request: Request):
        return await request.app.state.service.timeline(request)

    def need_index():
        if index is None:
            raise HTTPError(404, "no video index is loaded on this server (it was started without one)")
        return index

    @app.get("/v1/search", summary="index entries closest to a sentence (the `index search` record)")
    async def search(request: Request, q: str = "", k: int = 10):
        idx = need_index()
        if not q.strip():
            raise HTTPError(400, "q: give a sentence to search for, e.g. /v1/search?q=someone+juggling")
        if not 1 <= k <= 1000:
            raise HTTPError(400, f"k must be between 1 and 1000 (got {k})")
        return await request.app.state.service.search_text(q.strip()[:1000], k, idx)

    @app.post("/v1/search", summary="index entries closest to an uploaded video (the `index search --like` record)",
              openapi_extra=_multipart_schema(SEARCH_PARAMETERS))
    async def search_video(request: Request):
        return await request.app.state.service.search_video(request, need_index())

    return app


def _add_error_handling(app, api_key: str | None) -> None:
    """One log line per request, the API key on /v1/*, and every failure as one-line JSON {"error"}."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    def error(status: int, message: str, headers=None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.middleware("http")
    async def log_and_guard(request: Request, call_next):
        start = time.perf_counter()
        request.state.error = None
        if api_key and request.url.path.startswith("/v1/") and not _key_ok(request, api_key):
            request.state.error = "missing or wrong API key"
            response = error(401, "missing or wrong API key: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                             {"WWW-Authenticate": "Bearer"})
        else:
            try:
                response = await call_next(request)
            except Exception as exc:  # never a stack trace to the client
                request.state.error = f"{type(exc).__name__}: {first_line(exc)}"
                response = error(500, "internal server error")
        ms = 1000 * (time.perf_counter() - start)
        why = f"  {request.state.error}" if request.state.error else ""
        log.info("%s %s %d %.0f ms%s", request.method, request.url.path, response.status_code, ms, why)
        return response

    @app.exception_handler(HTTPError)
    async def on_http_error(request: Request, exc: HTTPError):
        request.state.error = exc.message
        return error(exc.status, exc.message, exc.headers)

    @app.exception_handler(Text4VisError)
    async def on_library_error(request: Request, exc: Text4VisError):
        request.state.error = first_line(exc)
        return error(status_of(exc), first_line(exc))

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg')}" for e in exc.errors())
        request.state.error = problems
        return error(400, problems or "bad request")

    @app.exception_handler(StarletteHTTPException)
    async def on_starlette(request: Request, exc: StarletteHTTPException):
        request.state.error = str(exc.detail)
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))


def _multipart_schema(names: set[str]) -> dict:
    props = {"video": {"type": "string", "format": "binary", "description": "the video file"},
             "labels": {"type": "string", "description": "optional custom labels, one per line (zero-shot)"},
             "topk": {"type": "integer", "default": 5, "minimum": 1, "maximum": 1000},
             "views": {"type": "string", "default": "1x1", "description": "CxK: C clips x K crops (1 or 3)"},
             "window": {"type": "number", "default": 4, "description": "window length in seconds"},
             "stride": {"type": "number", "default": 2, "description": "seconds between window starts"},
             "min_score": {"type": "number", "default": 0, "description": "smoothed score under which a window is a gap"},
             "smooth": {"type": "integer", "default": 1, "description": "windows averaged on each side"},
             "k": {"type": "integer", "default": 10, "description": "results"}}
    schema = {"type": "object", "required": ["video"], "properties": {k: v for k, v in props.items() if k in names}}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def _key_ok(request, key: str) -> bool:
    sent = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if sent is None and auth.lower().startswith("bearer "):
        sent = auth[7:].strip()
    return sent is not None and secrets.compare_digest(sent.encode(), key.encode())


def _version() -> str:
    from . import __version__
    return __version__


def read_api_key(path: str) -> str:
    """The API key from a file: its first line, stripped (UsageError if unreadable or empty)."""
    try:
        with open(path, encoding="utf-8") as f:
            key = f.readline().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"api_key_file={path}: cannot read it ({first_line(exc)})") from None
    if len(key) < 8:
        raise UsageError(f"api_key_file={path}: the key on its first line must have at least 8 characters")
    return key


def run(recognizer, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info", **options) -> None:
    """Serve until SIGTERM/SIGINT: uvicorn stops accepting, in-flight requests finish, then the
    lifespan shutdown stops the workers and removes the upload folder."""
    _require_fastapi()
    import uvicorn
    if not logging.getLogger().handlers and not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s text4vis %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    app = create_app(recognizer, **options)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=None)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again for the handler that
    # was there before: a no-op one, so a requested stop ends the process normally (exit status 0).
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
    uvicorn.Server(config).run()


# ----------------------------------------------------------------------------- load benchmark

def _rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants (the decode workers), in MB (Linux /proc)."""
    def one(p):
        try:
            with open(f"/proc/{p}/status") as f:
                rss = next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0) / 1024
            with open(f"/proc/{p}/task/{p}/children") as f:
                kids = [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            return 0.0
        return rss + sum(one(k) for k in kids)
    return round(one(pid), 1)


async def _clients(url: str, video: str, clients: int, seconds: float) -> dict:
    import httpx
    data = open(video, "rb").read()
    name = os.path.basename(video)
    latencies, errors = [], collections.Counter()
    deadline = time.perf_counter() + seconds

    async def client(http):
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                r = await http.post("/v1/predict", files={"video": (name, data)})
                ok = r.status_code == 200 and "top" in r.json()
                if not ok:
                    errors[str(r.status_code)] += 1
            except httpx.HTTPError as exc:
                ok = False
                errors[type(exc).__name__] += 1
            if ok:
                latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=clients)) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    wall = time.perf_counter() - start
    lat = sorted(latencies) or [float("nan")]
    pick = lambda q: round(1000 * lat[min(len(lat) - 1, int(q * len(lat)))])  # noqa: E731
    return {"requests_per_s": round(len(latencies) / wall, 2), "requests": len(latencies),
            "errors": sum(errors.values()), "p50_ms": pick(0.50), "p99_ms": pick(0.99),
            **({"error_kinds": dict(errors)} if errors else {})}


def bench_serve(serve_args: list[str], video: str, clients=(1, 8), seconds: float = 10.0,
                python: str | None = None) -> dict:
    """Start `text4vis serve SERVE_ARGS` on a free local port, then for each number of concurrent
    clients send uploads of `video` for `seconds`: requests/s, p50/p99 latency, errors, and the
    server's resident memory (with its decode workers) before and after all the requests."""
    import socket
    import subprocess
    import sys

    import httpx
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = tempfile.TemporaryFile()  # the server's log (a pipe nobody reads would fill up and stop it)
    proc = subprocess.Popen([python or sys.executable, "-m", "text4vis", "serve", *serve_args, "--port", str(port),
                             "--max-queue", str(max(64, 2 * max(clients)))],
                            stdout=subprocess.DEVNULL, stderr=log)
    try:
        for _ in range(600):
            if proc.poll() is not None:
                log.seek(0)
                last = log.read().decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise UsageError(f"the server did not start: {last[0]}")
            try:
                health = httpx.get(url + "/healthz", timeout=2).json()
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise UsageError("the server did not answer /healthz within 5 minutes")
        asyncio.run(_clients(url, video, 1, 1.0))  # warm-up: first batches, caches
        before = _rss_mb(proc.pid)
        cases = {}
        for n in clients:
            cases[f"{n} client{'s' if n > 1 else ''}"] = case = asyncio.run(_clients(url, video, n, seconds))
            case["rss_mb_after"] = round(_rss_mb(proc.pid))
        after = _rss_mb(proc.pid)
        health = httpx.get(url + "/healthz", timeout=120).json()
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    rates = [c["requests_per_s"] for c in cases.values()]
    return {"video": os.path.basename(video), "model": health["model"], "max_batch": health["max_batch"],
            "seconds_per_case": seconds, "mean_batch": health["mean_batch"], "requests": sum(c["requests"] for c in cases.values()),
            "errors": sum(c["errors"] for c in cases.values()), "rss_mb_before": before, "rss_mb_after": after,
            f"speedup_{max(clients)}_vs_{min(clients)}": round(rates[-1] / rates[0], 2) if rates[0] else None,
            "cases": cases}
