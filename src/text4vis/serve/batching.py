"""The model's one thread: jobs from concurrent requests batched into forward passes, and their answers
(the `predict --json` and `timeline --json` records)."""
from __future__ import annotations

import collections
import concurrent.futures as cf
import queue
import threading
import time
from dataclasses import dataclass, field

from ..errors import ClassifierError, WeightsError
from ..records import top_labels, window_records

CHUNK = 64                       # clips per forward pass of a long timeline


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
        from ..classifiers import DEFAULT_PROMPTS
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
        from ..classifiers import text_classifier
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

        from .. import engine
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
        from ..engine import scores_from_embeddings
        if job.embedding:
            return {"video": job.name, "embedding": emb[0]}
        weight, names = self._classifier(job.labels)
        if job.windows is not None:
            return timeline_record(job, scores_from_embeddings(emb, weight).numpy(), names)
        scores = scores_from_embeddings(emb, weight)[0]
        return {"video": job.name, "top": top_labels(scores, names, min(job.topk, len(names)))[0]}


def timeline_record(job: Job, scores, names: list[str]) -> dict:
    """The `text4vis timeline` record from window scores [W, C] (its rule: text4vis.timeline)."""
    from ..timeline import segments
    w = job.windows
    k = min(job.topk, len(names))
    record = {"video": job.name, "duration": w["duration"], "fps": w["fps"],
              "windows": window_records(w["spans"], scores, names, k),
              "segments": segments(w["spans"], scores, names, w["min_score"], w["smooth"])}
    if "error" in w:
        record["error"] = w["error"]
    return record
