"""The model's one thread: the work of concurrent requests in small units (a forward pass of at most
max_batch clips, a chunk of a new label set's text classifier), shared round-robin between the requests,
and their answers (the `predict --json` and `timeline --json` records)."""
from __future__ import annotations

import collections
import concurrent.futures as cf
import queue
import threading
import time
from dataclasses import dataclass, field

from ..errors import ClassifierError, WeightsError
from ..records import top_labels, window_records

LABEL_CHUNK = 64                 # labels of a new label set encoded per unit of model work


@dataclass(eq=False)
class Job:
    views: object                      # uint8 torch [V, T, 3, S, S]
    name: str                          # the record's "video"
    topk: int = 5
    labels: tuple[str, ...] | None = None
    embedding: bool = False            # return the embedding (for search) instead of top-k
    windows: dict | None = None        # a timeline: one embedding per view (window), with its spans and times
    call: object = None                # instead of clips: a function to run on the model's thread
    future: cf.Future = field(default_factory=cf.Future)
    done: int = 0                      # clips embedded so far
    parts: list = field(default_factory=list)
    classifier: tuple | None = None    # (weight, names) once known
    label_rows: list = field(default_factory=list)

    @property
    def total(self) -> int:
        return 0 if self.views is None else int(self.views.shape[0])

    @property
    def clips_left(self) -> int:
        return self.total - self.done

    def cancel(self) -> None:
        """Stop this job's work (its client went away): the model thread drops it at its next unit."""
        self.future.cancel()


class ModelWorker:
    """One thread owns the model. Requests' jobs are served round-robin in small units: a forward pass
    takes up to max_batch clips from the jobs in turn (one clip each, then again), so a 1-clip predict
    waits for at most one pass of a long timeline, never for all of it; a new label set's classifier is
    built LABEL_CHUNK labels per turn. A pass waits at most batch_wait_ms for more clips while other
    requests are still decoding. A cancelled job (future.cancel()) is dropped at the next unit."""

    def __init__(self, recognizer, max_batch: int = 8, batch_wait_ms: float = 10.0, prompts=None,
                 cache_size: int = 16, upstream=lambda: 0):
        from ..classifiers import DEFAULT_PROMPTS
        self.rec, self.max_batch, self.wait = recognizer, int(max_batch), float(batch_wait_ms) / 1000
        self.prompts = list(prompts or DEFAULT_PROMPTS)
        self.cache: collections.OrderedDict = collections.OrderedDict()
        self.cache_size = int(cache_size)
        self.upstream = upstream           # how many requests are still on their way (uploading, decoding)
        self.batches = collections.deque(maxlen=1000)  # jobs in each of the latest forward passes
        self.passes = self.jobs = self.dropped = 0
        self.active: list[Job] = []        # jobs in progress; active[0] has the next turn
        self._stopping = False
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

    def pending_clips(self) -> int:
        return sum(j.clips_left for j in list(self.active))

    # ------------------------------------------------------------------ the loop

    def _loop(self) -> None:
        import torch
        torch.set_num_threads(self._threads)
        while True:
            if not self.active:
                if self._stopping:
                    return
                self._add(self._queue.get())
            self._collect()
            for j in [j for j in self.active if j.future.cancelled()]:  # their clients went away
                self.active.remove(j)
                self.dropped += 1
            if self.active:
                self._step()

    def _add(self, job: Job | None) -> None:
        if job is None:
            self._stopping = True
            return
        if job.future.cancelled():
            return
        if job.call is None and job.labels is not None and not job.embedding:
            if job.labels in self.cache:
                self.cache.move_to_end(job.labels)
                job.classifier = self.cache[job.labels]
            elif self.rec.towers is None:
                return _fail(job, WeightsError(f"{self.rec.source}: has no text tower, so custom labels cannot "
                                               f"be used (load it with clip= to add one)"))
            else:
                from ..classifiers import check_labels
                try:
                    check_labels(list(job.labels), "labels")
                except Exception as exc:
                    return _fail(job, exc)
        self.active.append(job)

    def _collect(self) -> None:
        """Take the jobs queued now; while a pass has room and requests are still decoding, wait up to
        batch_wait_ms for more."""
        deadline = time.monotonic() + self.wait
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                if self.pending_clips() >= self.max_batch or self.upstream() == 0 or self._stopping:
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                try:
                    job = self._queue.get(timeout=min(left, 0.002))
                except queue.Empty:
                    continue
            self._add(job)

    def _step(self) -> None:
        """One unit of work for the job whose turn it is (a pass also takes clips of the jobs after it)."""
        head = self.active[0]
        if head.call is not None:  # text queries and other model work that is not clips
            self.active.pop(0)
            try:
                head.future.set_result(head.call())
            except Exception as exc:
                _fail(head, exc)
            return
        if head.classifier is None and head.labels is not None and not head.embedding:
            self._label_chunk(head)
        else:
            self._pass()
        if self.active and self.active[0] is head:  # its turn is over: to the back of the line
            self.active.append(self.active.pop(0))

    def _label_chunk(self, job: Job) -> None:
        from ..classifiers import text_classifier
        rec = self.rec
        labels = list(job.labels)
        start = sum(len(w) for w in job.label_rows)
        try:
            cls = text_classifier(rec.towers, labels[start:start + LABEL_CHUNK], self.prompts, cache=False)
            width = rec.model.proj.out_features if rec.model.proj is not None else rec.model.embed_dim
            if cls.dim != width:
                raise ClassifierError(f"custom labels give a classifier of width {cls.dim} but this model's "
                                      f"classifier width is {width}")
        except Exception as exc:
            self.active.remove(job)
            return _fail(job, exc)
        job.label_rows.append(cls.weight)
        if start + LABEL_CHUNK >= len(labels):
            import torch
            job.classifier = (torch.cat(job.label_rows), labels)
            job.label_rows = []
            self.cache[job.labels] = job.classifier
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
            self._finish_if_done(job)

    def _pass(self) -> None:
        """One forward pass: up to max_batch clips, one clip from each job in turn, then again."""
        import torch

        from .. import engine
        order = [j for j in self.active if j.call is None and j.clips_left > 0]
        take = dict.fromkeys(order, 0)
        room = self.max_batch
        while room > 0 and order:
            for j in list(order):
                if room == 0:
                    break
                take[j] += 1
                room -= 1
                if take[j] == j.clips_left:
                    order.remove(j)
        jobs = [j for j, n in take.items() if n]
        if not jobs:  # only jobs waiting for their classifier (their own turns build it)
            return
        rec = self.rec
        try:
            with torch.no_grad():
                views = torch.cat([j.views[j.done:j.done + take[j]] for j in jobs])
                model = rec.video_backend or rec.model  # ONNX Runtime when loaded with runtime='onnx'
                model.eval()
                with engine.autocast(rec.device, rec.precision):
                    emb = model.embed(views.to(rec.device)).float().cpu()
        except Exception as exc:  # out of memory, ...: every job of this pass fails, the worker goes on
            for j in jobs:
                self.active.remove(j)
                _fail(j, exc)
            return
        self.batches.append(len(jobs))
        self.passes, self.jobs = self.passes + 1, self.jobs + len(jobs)
        start = 0
        for j in jobs:
            n = take[j]
            j.parts.append(emb[start:start + n])
            j.done += n
            start += n
            self._finish_if_done(j)

    def _finish_if_done(self, job: Job) -> None:
        if job.clips_left or (job.classifier is None and job.labels is not None and not job.embedding):
            return
        import torch
        import torch.nn.functional as F
        self.active.remove(job)
        part = torch.cat(job.parts)
        job.parts = []
        # predict: the mean over a video's views; timeline: each window (view) on its own
        e = F.normalize(part if job.windows is not None else part.mean(0, keepdim=True), dim=-1)
        try:
            if not job.future.cancelled():
                job.future.set_result(self._answer(job, e))
        except Exception as exc:
            _fail(job, exc)

    def _answer(self, job: Job, emb) -> dict:
        from ..engine import scores_from_embeddings
        if job.embedding:
            return {"video": job.name, "embedding": emb[0]}
        weight, names = job.classifier or (self.rec.model.classifier, self.rec.labels)
        if job.windows is not None:
            return timeline_record(job, scores_from_embeddings(emb, weight).numpy(), names)
        scores = scores_from_embeddings(emb, weight)[0]
        return {"video": job.name, "top": top_labels(scores, names, min(job.topk, len(names)))[0]}


def _fail(job: Job, exc: BaseException) -> None:
    if not job.future.done():
        job.future.set_exception(exc)


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
