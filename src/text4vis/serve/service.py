"""What the app runs on (`Service`): the private upload folder, the decode pool, the model worker and the
request counters, with its options (`ServeSettings`); one method per route."""
from __future__ import annotations

import asyncio
import concurrent.futures as cf
import os
import shutil
import tempfile
from dataclasses import dataclass

from ..errors import UsageError, VideoError
from .batching import Job, ModelWorker
from .decode import DecodePool, decode_views, decode_windows
from .uploads import (
    PARAMETERS,
    SEARCH_PARAMETERS,
    TIMELINE_PARAMETERS,
    HTTPError,
    Upload,
    int_field,
    parse_options,
    parse_timeline,
    read_upload,
    remove_file,
)

MAX_WINDOWS = 900                # timeline windows per request (30 minutes at the default stride)


@dataclass
class ServeSettings:
    """The options of a service (`create_app(recognizer, **options)`, `run`)."""
    max_upload_mb: float = 200          # the largest upload; 413 past it
    max_batch: int = 8                  # clips of concurrent requests per forward pass
    batch_wait_ms: float = 10           # how long a forward pass waits for more clips
    max_queue: int = 64                 # requests in flight; 503 (Retry-After) past it
    api_key: str | None = None          # required on /v1/* when set
    decode_workers: int | None = None   # decode processes (default: the CPUs, 1 to 8)
    decode_timeout_s: float = 60        # a decode job's time limit (its worker is replaced past it)
    prompts: list[str] | None = None    # prompt templates of request labels
    label_cache: int = 16               # request label sets whose classifiers are kept

    def check(self) -> None:
        """UsageError for the first option out of range."""
        for name, least in (("max_upload_mb", 0.001), ("max_batch", 1), ("batch_wait_ms", 0), ("max_queue", 1),
                            ("label_cache", 1)):
            value = getattr(self, name)
            if not value >= least:
                raise UsageError(f"{name}={value}: must be at least {least}")

    @property
    def workers(self) -> int:
        return self.decode_workers or max(1, min(8, os.cpu_count() or 1))


class Service:
    """What the app runs on: the private upload folder, the decode pool, the model worker, counters."""

    def __init__(self, recognizer, settings: ServeSettings):
        self.rec, self.settings = recognizer, settings
        self.max_bytes = int(settings.max_upload_mb * 1024 * 1024)
        self.max_queue = int(settings.max_queue)
        self.in_flight = 0          # admitted requests not yet answered
        self.upstream = 0           # of those, the ones not yet queued for the model
        self.folder = tempfile.mkdtemp(prefix="text4vis-serve-")  # mode 0700: this user only
        self.pool = DecodePool(settings.workers, settings.decode_timeout_s)
        self.threads = cf.ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="text4vis-decode")
        self.model = ModelWorker(recognizer, settings.max_batch, settings.batch_wait_ms, settings.prompts,
                                 settings.label_cache, upstream=lambda: self.upstream)

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
                remove_file(up.path)

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
            k = int_field(up.fields, "k", 10, 1, 1000)
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
