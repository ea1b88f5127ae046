"""One model for every source: windows of all sources are batched together, scored, and turned into events.

The sources' threads hand completed windows to an `Inbox` that holds at most `queue` windows (default:
one batch). A live source never waits for the model: when the inbox is full the oldest waiting window is
dropped (counted per source, reported in each window line), so the lag stays bounded; a file read as fast
as possible waits instead (no window is lost, as `timeline`). The model takes whatever windows are
waiting, up to `batch_size`, as soon as it is free, so a window's line is printed within the model time of
(at most) two batches plus the decode of one stride after its last frame arrived.
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from datetime import datetime, timezone

import numpy as np
import torch
import torch.nn.functional as F

from .. import engine
from ..errors import UsageError
from ..records import top_labels
from . import alerts as alerts_mod
from .options import WatchOptions
from .segments import OnlineSegments
from .sources import Source, parse_source, source_name_for_file


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


class Inbox:
    """Windows, events and controls of all sources, in the order they happened; at most `capacity`
    windows (the oldest dropped for live sources, producers of files wait)."""

    def __init__(self, capacity: int, sources: int):
        self.capacity = capacity
        self.items: deque = deque()
        self.windows = 0
        self.dropped = [0] * sources
        self.peak = 0  # most windows waiting at once
        self.cond = threading.Condition()

    def window(self, index: int, item: dict, block: bool, stop: threading.Event) -> None:
        with self.cond:
            while block and self.windows >= self.capacity and not stop.is_set():
                self.cond.wait(0.1)
            while self.windows >= self.capacity:
                for i, (src, it) in enumerate(self.items):
                    if it is not None and it.get("kind") == "window":
                        del self.items[i]
                        self.windows -= 1
                        self.dropped[src] += 1
                        break
            self.items.append((index, item))
            self.windows += 1
            self.peak = max(self.peak, self.windows)
            self.cond.notify_all()

    def event(self, index: int, event: dict | None) -> None:
        with self.cond:
            self.items.append((index, event))
            self.cond.notify_all()

    control = event

    def take(self, max_windows: int, timeout: float) -> list:
        with self.cond:
            if not self.items:
                self.cond.wait(timeout)
            out, n = [], 0
            while self.items:
                it = self.items[0][1]
                if it is not None and it.get("kind") == "window":
                    if n == max_windows:
                        break
                    n += 1
                    self.windows -= 1
                out.append(self.items.popleft())
            self.cond.notify_all()
            return out


def check_sources(names) -> list:
    """The sources as `sources.Spec`s; UsageError for an empty list, stdin twice, or a path that is no file."""
    names = [names] if isinstance(names, (str, os.PathLike)) else list(names)
    if not names:
        raise UsageError("sources=[]: give at least one source (a URL, a device, '-' for stdin, or a file)")
    specs = [parse_source(os.fspath(s)) for s in names]
    if sum(s.kind == "stdin" for s in specs) > 1:
        raise UsageError("sources: '-' (stdin) can be given once")
    for s in specs:
        if s.kind == "file" and not os.path.exists(s.target):
            raise UsageError(f"sources={s.name!r}: no such file, and not a URL (rtsp://, udp://, http://, ...), "
                             f"a device (/dev/video0, webcam:0) or '-'")
    return specs


class Watch:
    """Iterate for the events of the sources (dicts, see the README); `stop()` (any thread, e.g. a signal
    handler) ends the iteration cleanly: sources closed, the open segments closed, one "summary" event
    per source. Breaking out of the loop closes the sources too."""

    def __init__(self, recognizer, sources, options: WatchOptions | None = None):
        from ..timeline import _num_frames
        self.rec, self.opt = recognizer, options or WatchOptions()
        self.opt.check()
        self.specs = check_sources(sources)
        self.num_frames = _num_frames(recognizer, self.opt.frames)
        if self.opt.clips:
            os.makedirs(self.opt.clips, exist_ok=True)
        self._stop = threading.Event()
        self.sources: list[Source] = []
        self.failed = False
        self.windows = 0
        # run_model(fn) runs fn where the model runs and returns its result: `serve` passes its model
        # worker's, so a stream's forward passes take turns with the uploads' (default: right here)
        self.run_model = lambda fn: fn()
        self._new_alerts: list = []
        self._alerts_lock = threading.Lock()

    def stop(self) -> None:
        self._stop.set()

    def add_alerts(self, found: list) -> None:
        """Add alerts (alerts.Alert, already embedded) while the watch runs, from any thread: they apply
        from the next window on, each with its own hysteresis per source."""
        with self._alerts_lock:
            self._new_alerts.extend(found)

    def alert_queries(self) -> list[str]:
        """The alerts' sentences (names), those added but not applied yet included."""
        with self._alerts_lock:
            return [a.query for a in [*self.opt.alerts, *self._new_alerts]]

    def _apply_new_alerts(self) -> list:
        with self._alerts_lock:
            found, self._new_alerts = self._new_alerts, []
            if not found:
                return []
            self.opt.alerts = [*self.opt.alerts, *found]
        for h in self.hyst:
            h.extend(alerts_mod.Hysteresis(self.opt.alert_score, self.opt.alert_for) for _ in found)
        self.alert_matrix = torch.from_numpy(np.stack([a.vector for a in self.opt.alerts]))
        return [{"source": s.spec.name, "event": "alert_added", "query": a.query, "time": iso(time.time())}
                for a in found for s in self.sources]

    def __iter__(self):
        return self._run()

    # -- the loop -------------------------------------------------------------------------------------
    def _run(self):
        opt, rec = self.opt, self.rec
        inbox = Inbox(opt.queue or opt.batch_size, len(self.specs))
        self.inbox = inbox
        self.sources = [Source(i, s, opt, self.num_frames, rec.input_size, inbox) for i, s in enumerate(self.specs)]
        self.segs = [OnlineSegments(rec.labels, opt.min_score, opt.smooth) for _ in self.sources]
        self.hyst = [[alerts_mod.Hysteresis(opt.alert_score, opt.alert_for) for _ in opt.alerts] for _ in self.sources]
        self.scored = [0] * len(self.sources)
        self.clip_count = 0
        vectors = np.stack([a.vector for a in opt.alerts]) if opt.alerts else None
        self.alert_matrix = torch.from_numpy(vectors) if vectors is not None else None
        started = time.time()
        for s in self.sources:
            s.start()
        done: set[int] = set()
        try:
            while len(done) < len(self.sources) and not self._stop.is_set():
                if opt.duration is not None and time.time() - started >= opt.duration:
                    break
                yield from self._apply_new_alerts()
                yield from self._handle(inbox.take(opt.batch_size, 0.1), done)
            for s in self.sources:  # stopping: close the sources, then finish what they handed over
                s.stop()
            deadline = time.time() + 3.0
            for s in self.sources:
                s.join(timeout=max(0.05, deadline - time.time()))
            while True:
                items = inbox.take(opt.batch_size, 0.0)
                if not items:
                    break
                yield from self._handle(items, done)
            for i, s in enumerate(self.sources):
                for ev in self.segs[i].finish():  # a reader still blocked in a read: its segment closes here
                    yield self._segment_event(i, ev)
                yield {"source": s.spec.name, "event": "summary", "windows": self.scored[i],
                       "dropped": inbox.dropped[i], "frames": s.frames, "corrupt_packets": s.corrupt,
                       "epochs": s.epochs, "time": iso(time.time())}
            self.failed = any(s.failed for s in self.sources)
        finally:
            for s in self.sources:
                s.stop()

    def _handle(self, items, done: set):
        batch = []
        for index, item in items:
            if item is not None and item.get("kind") == "window":
                batch.append((index, item))
                continue
            if batch:
                yield from self._score(batch)
                batch = []
            if item is None:
                done.add(index)
            elif item.get("kind") == "epoch_end":
                for ev in self.segs[index].finish():
                    yield self._segment_event(index, ev)
                for h in self.hyst[index]:
                    h.reset()
            else:
                item.setdefault("time", iso(time.time()))
                yield item
        if batch:
            yield from self._score(batch)

    @torch.no_grad()
    def _score(self, batch):
        rec, opt = self.rec, self.opt
        clips = torch.stack([item["clip"] for _, item in batch])
        emb = self.run_model(lambda: self._embed(clips))
        scores = engine.scores_from_embeddings(emb, rec.model.classifier)
        alert_scores = None
        if self.alert_matrix is not None:
            if self.alert_matrix.shape[1] != emb.shape[1]:
                alerts_mod.check_dim(self.opt.alerts, emb.shape[1])
            alert_scores = (emb @ self.alert_matrix.t()).numpy()
        k = min(opt.topk, len(rec.labels))
        for row, (index, item) in enumerate(batch):
            src = self.sources[index]
            self.scored[index] += 1
            self.windows += 1
            start, end, wall0 = item["start"], item["end"], item["wall0"]
            record = {"source": src.spec.name, "start": start, "end": end, "time": iso(wall0 + end),
                      "top": top_labels(scores[row], rec.labels, k)[0],
                      "latency": round(time.time() - item["arrival"], 3), "dropped": self.inbox.dropped[index]}
            if alert_scores is not None:
                record["alerts"] = {a.query: round(float(v), 4) for a, v in zip(opt.alerts, alert_scores[row])}
            yield record
            for ev in self.segs[index].add(start, end, scores[row].numpy()):
                yield self._segment_event(index, ev)
            if alert_scores is None:
                src.done_windows += 1
                continue
            for a, h, value in zip(opt.alerts, self.hyst[index], alert_scores[row]):
                if h.update(start, end, float(value)):
                    ev = {"source": src.spec.name, "event": "alert", "query": a.query, "score": round(float(value), 4),
                          "start": start, "end": end, "time": iso(wall0 + end)}
                    if opt.clips:
                        self.clip_count += 1
                        name = (f"{source_name_for_file(src.spec.name)}-{int(end * 1000):09d}ms-"
                                f"{source_name_for_file(a.query)[:30]}-{self.clip_count}.mp4")
                        ev["clip"] = os.path.join(opt.clips, name)
                        src.request_clip(ev["clip"], start, end)
                    yield ev
            src.done_windows += 1

    @torch.no_grad()
    def _embed(self, clips):
        rec = self.rec
        model, device = rec.video_backend or rec.model, rec.device
        model.eval()
        with engine.autocast(device, rec.precision):  # timeline.embed_windows' computation
            emb = model.embed(clips.to(device, non_blocking=True))
        return F.normalize(emb.float(), dim=-1).cpu()

    def _segment_event(self, index: int, ev: dict) -> dict:
        src = self.sources[index]
        wall0 = src.first_wall
        out = {"source": src.spec.name, **ev}
        if wall0 is not None:
            out["time"] = iso(wall0 + ev.get("end", ev["start"]))
        return out
