"""Live streams in an HTTP service: a hub of watched streams and a FastAPI router serving their events as
Server-Sent Events. `serve` is meant to mount it (`app.include_router(watch.service.router(hub))`, behind the
app's API-key guard), as `serve.create_app` does.

    POST   /v1/streams                {"source", "window"?, "stride"?, "alerts"?, "alert_score"?, "alert_for"?}
    GET    /v1/streams                every stream: id, source, current label, alerts, windows, dropped, done
    DELETE /v1/streams/{id}           stop watching it
    POST   /v1/streams/{id}/alerts    {"query": "a sentence"}: one more alert on a running stream
    GET    /v1/streams/{id}/events    text/event-stream: `event: window|segment|alert|...` + `data: {json}`

(No `from __future__ import annotations` here: FastAPI reads the routes' annotations at definition time.)
Each stream is one `Watch` in a thread of its own, on the hub's recognizer; every subscriber has a bounded
queue (the oldest events are dropped for a client that does not keep up, never the recognition).
`run_model(fn)` runs the model work (forward passes, alert sentences) where the host wants it: `serve` gives
its model worker's, so streams take turns with uploads. `allow_local=False` (serve's clients) accepts
network URLs only: no files, devices or stdin of the server's machine.
"""

import itertools
import json
import queue
import threading
from collections import deque

from ..errors import UsageError, first_line
from . import alerts as alerts_mod
from .options import WatchOptions
from .runner import Watch
from .sources import parse_source

ALLOWED = {"window", "stride", "alert_score", "alert_for", "topk", "min_score", "smooth", "realtime",
           "stall_timeout", "reconnect", "retries"}


class Stream:
    def __init__(self, sid: str, source: str, w):
        self.id, self.source, self.watch = sid, source, w
        self.current: dict | None = None           # the latest window's top-1
        self.windows = self.dropped = 0
        self.recent: deque = deque(maxlen=50)       # the latest segment/alert/source events, for new subscribers
        self.subscribers: list[queue.Queue] = []
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"text4vis-stream-{sid}")

    def _run(self) -> None:
        try:
            for ev in self.watch:
                self._publish(ev)
        except Exception as exc:  # a stream that fails is one event, never a crash of the service
            self._publish({"source": self.source, "event": "error", "error": first_line(exc, with_type=True)})
        finally:
            self.done.set()
            self._publish(None)

    def _publish(self, ev: dict | None) -> None:
        with self.lock:
            if ev is not None and "event" not in ev:
                self.current = {**ev["top"][0], "start": ev["start"], "end": ev["end"], "time": ev["time"]}
                self.windows += 1
                self.dropped = ev.get("dropped", 0)
            elif ev is not None:
                self.recent.append(ev)
            for q in list(self.subscribers):
                while True:
                    try:
                        q.put_nowait(ev)
                        break
                    except queue.Full:
                        try:
                            q.get_nowait()
                        except queue.Empty:
                            pass

    def subscribe(self, capacity: int = 1000) -> queue.Queue:
        q: queue.Queue = queue.Queue(maxsize=capacity)
        with self.lock:
            for ev in self.recent:
                q.put_nowait(ev)
            if self.done.is_set():
                q.put_nowait(None)
            self.subscribers.append(q)
        return q

    def unsubscribe(self, q: queue.Queue) -> None:
        with self.lock:
            if q in self.subscribers:
                self.subscribers.remove(q)

    def info(self) -> dict:
        return {"id": self.id, "source": self.source, "current": self.current,
                "alerts": self.watch.alert_queries(),
                "windows": self.windows, "dropped": self.dropped, "done": self.done.is_set()}


class StreamHub:
    """The streams one service watches, on one recognizer."""

    def __init__(self, recognizer, max_streams: int = 16, run_model=None, allow_local: bool = True, **defaults):
        self.rec, self.max_streams, self.defaults = recognizer, max_streams, defaults
        self.run_model = run_model or (lambda fn: fn())
        self.allow_local = allow_local
        self.streams: dict[str, Stream] = {}
        self.ids = itertools.count(1)
        self.lock = threading.Lock()
        self.closing = threading.Event()  # set when the server stops: event streams end (their clients see `end`)

    def add(self, source: str, alerts=(), local: bool | None = None, **options) -> Stream:
        """Watch `source` (its events go to subscribers); `local`: may it be a file, device or stdin
        (default: the hub's allow_local)."""
        unknown = set(options) - ALLOWED
        if unknown:
            raise UsageError(f"{sorted(unknown)[0]}: not a stream option (use {', '.join(sorted(ALLOWED))})")
        if not (self.allow_local if local is None else local) and parse_source(source).kind != "network":
            raise UsageError(f"source={source!r}: a network URL (rtsp://, rtmp://, http(s)://, udp://, srt:// ...); "
                             f"files and devices of this machine are watched only when the service starts")
        with self.lock:
            if sum(not s.done.is_set() for s in self.streams.values()) >= self.max_streams:
                raise UsageError(f"max_streams={self.max_streams}: that many streams are watched already")
        found = self.embed_alerts(alerts)
        w = Watch(self.rec, [source], WatchOptions(alerts=found, **{**self.defaults, **options}))
        w.run_model = self.run_model
        with self.lock:
            s = Stream(str(next(self.ids)), source, w)
            self.streams[s.id] = s
        s.thread.start()
        return s

    def embed_alerts(self, sentences) -> list:
        """Alert sentences embedded by the text tower (on run_model), checked against the video width."""
        sentences = [str(q).strip()[:500] for q in sentences]
        if not sentences:
            return []
        found = self.run_model(lambda: alerts_mod.from_sentences(self.rec, sentences))
        model = self.rec.model
        width = model.proj.out_features if getattr(model, "proj", None) is not None else model.embed_dim
        alerts_mod.check_dim(found, width)
        return found

    def add_alert(self, sid: str, query: str) -> Stream | None:
        """One more alert sentence on a running stream (None: no such stream)."""
        s = self.streams.get(sid)
        if s is None:
            return None
        if s.done.is_set():
            raise UsageError(f"stream {sid} ({s.source}) has ended: add the alert to a running stream")
        s.watch.add_alerts(self.embed_alerts([query]))
        return s

    def remove(self, sid: str) -> bool:
        with self.lock:
            s = self.streams.pop(sid, None)
        if s is None:
            return False
        s.watch.stop()
        s.thread.join(timeout=15)
        return True

    def close(self) -> None:
        self.closing.set()
        for sid in list(self.streams):
            self.remove(sid)


def router(hub: StreamHub):
    """A FastAPI APIRouter with the /v1/streams routes over `hub`."""
    import asyncio

    from fastapi import APIRouter, Body, HTTPException, Request
    from fastapi.responses import StreamingResponse

    r = APIRouter()

    @r.post("/v1/streams", summary="watch a live source")
    async def add(body: dict = Body(...)):
        source = body.get("source")
        if not isinstance(source, str) or not source:
            raise HTTPException(422, "source: a URL, device or file to watch")
        options = {k: v for k, v in body.items() if k not in ("source", "alerts")}
        alerts = body.get("alerts") or []
        alerts = [alerts] if isinstance(alerts, str) else alerts
        if not isinstance(alerts, list) or not all(isinstance(q, str) and q.strip() for q in alerts):
            raise HTTPException(422, "alerts: a list of sentences")
        try:
            s = await asyncio.to_thread(hub.add, source, alerts, **options)
        except (UsageError, TypeError, ValueError) as exc:
            raise HTTPException(422, str(exc)) from None
        return s.info()

    @r.post("/v1/streams/{sid}/alerts", summary="add an alert sentence to a running stream")
    async def add_alert(sid: str, body: dict = Body(...)):
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            raise HTTPException(422, "query: a sentence to alert on, e.g. a person falls down")
        try:
            s = await asyncio.to_thread(hub.add_alert, sid, query)
        except (UsageError, TypeError, ValueError) as exc:
            raise HTTPException(422, str(exc)) from None
        if s is None:
            raise HTTPException(404, f"no stream {sid}")
        return s.info()

    @r.get("/v1/streams", summary="the watched streams and their current labels")
    async def list_streams():
        return {"streams": [s.info() for s in list(hub.streams.values())]}

    @r.delete("/v1/streams/{sid}", summary="stop watching a stream")
    async def delete(sid: str):
        if not await asyncio.to_thread(hub.remove, sid):
            raise HTTPException(404, f"no stream {sid}")
        return {"deleted": sid}

    @r.get("/v1/streams/{sid}/events", summary="the stream's events as Server-Sent Events")
    async def events(sid: str, request: Request):
        s = hub.streams.get(sid)
        if s is None:
            raise HTTPException(404, f"no stream {sid}")
        q = s.subscribe()

        async def gen():
            idle = 0.0
            try:
                while not await request.is_disconnected():
                    if hub.closing.is_set():  # the server is stopping: end the response so it can
                        yield 'event: end\ndata: {"reason": "server stopping"}\n\n'
                        return
                    try:
                        ev = q.get_nowait()
                    except queue.Empty:
                        await asyncio.sleep(0.05)
                        idle += 0.05
                        if idle >= 15:  # a comment keeps proxies from closing an idle connection
                            idle = 0.0
                            yield ": keep-alive\n\n"
                        continue
                    idle = 0.0
                    if ev is None:
                        yield "event: end\ndata: {}\n\n"
                        return
                    yield f"event: {ev.get('event', 'window')}\ndata: {json.dumps(ev)}\n\n"
            finally:
                s.unsubscribe(q)

        return StreamingResponse(gen(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return r
