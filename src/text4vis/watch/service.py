"""Live streams in an HTTP service: a hub of watched streams and a FastAPI router serving their events as
Server-Sent Events. `serve` is meant to mount it (`app.include_router(watch.service.router(hub))`, behind the
app's API-key guard); it is not wired into `serve.py` yet.

    POST   /v1/streams                {"source", "window"?, "stride"?, "alerts"?, "alert_score"?, "alert_for"?}
    GET    /v1/streams                every stream: id, source, current label, windows, dropped, done
    DELETE /v1/streams/{id}           stop watching it
    GET    /v1/streams/{id}/events    text/event-stream: `event: window|segment|alert|...` + `data: {json}`

(No `from __future__ import annotations` here: FastAPI reads the routes' annotations at definition time.)
Each stream is one `Watch` in a thread of its own, on the hub's recognizer; every subscriber has a bounded
queue (the oldest events are dropped for a client that does not keep up, never the recognition).
"""

import itertools
import json
import queue
import threading
from collections import deque

from ..errors import UsageError, first_line
from . import watch

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
        return {"id": self.id, "source": self.source, "current": self.current, "windows": self.windows,
                "dropped": self.dropped, "done": self.done.is_set()}


class StreamHub:
    """The streams one service watches, on one recognizer."""

    def __init__(self, recognizer, max_streams: int = 16, **defaults):
        self.rec, self.max_streams, self.defaults = recognizer, max_streams, defaults
        self.streams: dict[str, Stream] = {}
        self.ids = itertools.count(1)
        self.lock = threading.Lock()

    def add(self, source: str, alerts=(), **options) -> Stream:
        unknown = set(options) - ALLOWED
        if unknown:
            raise UsageError(f"{sorted(unknown)[0]}: not a stream option (use {', '.join(sorted(ALLOWED))})")
        with self.lock:
            if sum(not s.done.is_set() for s in self.streams.values()) >= self.max_streams:
                raise UsageError(f"max_streams={self.max_streams}: that many streams are watched already")
        w = watch(self.rec, [source], alerts=list(alerts), **{**self.defaults, **options})
        with self.lock:
            s = Stream(str(next(self.ids)), source, w)
            self.streams[s.id] = s
        s.thread.start()
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
        try:
            s = await asyncio.to_thread(hub.add, source, body.get("alerts") or (), **options)
        except (UsageError, TypeError, ValueError) as exc:
            raise HTTPException(422, str(exc)) from None
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
