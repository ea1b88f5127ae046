"""Where the events go: JSON lines, a terminal view, a webhook, and MP4 clips around alerts."""
from __future__ import annotations

import json
import queue
import sys
import threading
import time
import urllib.error
import urllib.request

from ..files import atomic_write


# ----------------------------------------------------------------------------- clips

def write_clip(path: str, stream, packets) -> int:
    """An MP4 of `packets` (demuxed from `stream`) remuxed as they arrived: no re-encoding. Timestamps
    start at 0. Returns the number of packets written."""
    import av
    if not packets:
        raise ValueError("no packets arrived for the clip")
    first = min(p.dts if p.dts is not None else p.pts for p in packets)

    def write(tmp: str) -> None:
        with av.open(tmp, "w", format="mp4") as out:
            ost = out.add_stream_from_template(stream)
            for p in packets:
                q = av.Packet(bytes(p))  # a copy: muxing takes the packet's data
                q.pts = p.pts - first if p.pts is not None else None
                q.dts = p.dts - first if p.dts is not None else None
                q.time_base = p.time_base
                q.is_keyframe = p.is_keyframe
                q.stream = ost
                out.mux(q)
    atomic_write(path, write)
    return len(packets)


# ----------------------------------------------------------------------------- terminal

class TerminalView:
    """A human view: on a terminal one status line per source (current label, score, latency, dropped
    windows) rewritten in place, segments and alerts as lines above it; elsewhere plain lines."""

    def __init__(self, out=None, quiet: bool = False):
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self.quiet = quiet
        self.status: dict[str, str] = {}

    def __call__(self, ev: dict) -> None:
        name = ev.get("source", "")
        kind = ev.get("event")
        if kind is None:  # a window
            top = ev["top"][0]
            self.status[name] = (f"{name}  {top['label']} {100 * top['score']:.0f}%  "
                                 f"[{ev['start']:.1f}-{ev['end']:.1f} s]  latency {ev['latency']:.2f} s  "
                                 f"dropped {ev['dropped']}")
            if self.tty and not self.quiet:
                self._status()
            return
        if kind == "segment":
            line = (f"{name}  {ev['start']:8.1f} - {ev['end']:8.1f} s  {ev['label']}  {100 * ev['score']:.1f}%"
                    if "end" in ev else f"{name}  {ev['start']:8.1f} s  -> {ev['label']}")
        elif kind == "alert":
            line = f"{name}  ALERT {ev['query']!r}  score {ev['score']:.3f}  at {ev['start']:.1f}-{ev['end']:.1f} s"
            if ev.get("clip"):
                line += f"  clip {ev['clip']}"
        elif kind == "summary":
            line = (f"{name}  {ev['windows']} windows, {ev['dropped']} dropped, {ev['frames']} frames, "
                    f"{ev['corrupt_packets']} corrupt packets")
        else:
            detail = ev.get("error") or ev.get("reason") or ev.get("path") or ""
            line = f"{name}  {kind}" + (f": {detail}" if detail else "")
        if self.quiet and kind == "segment":
            return
        if self.tty:
            self.out.write("\r\x1b[K")
        self.out.write(line + "\n")
        if self.tty and not self.quiet and self.status:
            self._status(newline=False)
        self.out.flush()

    def _status(self, newline: bool = False) -> None:
        self.out.write("\r\x1b[K" + " | ".join(self.status.values())[:200])
        self.out.flush()

    def close(self) -> None:
        if self.tty and self.status:
            self.out.write("\n")
            self.out.flush()


# ----------------------------------------------------------------------------- webhook

class Webhook:
    """POST each event as JSON to `url` from a thread of its own: recognition never waits for it. A failed
    POST is retried with exponential backoff (`retries` times); at most `capacity` events wait, beyond
    that the oldest are dropped (counted)."""

    def __init__(self, url: str, kinds=("segment", "alert"), retries: int = 4, backoff: float = 0.5,
                 timeout: float = 5.0, capacity: int = 1000, headers: dict | None = None):
        self.url, self.kinds, self.retries, self.backoff, self.timeout = url, set(kinds), retries, backoff, timeout
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.q: queue.Queue = queue.Queue(maxsize=capacity)
        self.sent = self.failed = self.dropped = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._work, daemon=True, name="text4vis-webhook")
        self.thread.start()

    def __call__(self, ev: dict) -> None:
        if ev.get("event") not in self.kinds:
            return
        while True:
            try:
                self.q.put_nowait(ev)
                return
            except queue.Full:
                try:
                    self.q.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _post(self, ev: dict) -> None:
        data = json.dumps(ev).encode()
        for attempt in range(self.retries + 1):
            try:
                req = urllib.request.Request(self.url, data=data, headers=self.headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    resp.read()
                self.sent += 1
                return
            except (urllib.error.URLError, OSError, ValueError) as exc:
                self.last_error = f"{self.url}: {getattr(exc, 'reason', None) or exc}"
                if attempt == self.retries or self._stop.wait(self.backoff * 2 ** attempt):
                    break
        self.failed += 1

    def _work(self) -> None:
        while not (self._stop.is_set() and self.q.empty()):
            try:
                ev = self.q.get(timeout=0.1)
            except queue.Empty:
                continue
            self._post(ev)

    def close(self, wait: float = 10.0) -> None:
        """Send what is waiting (for at most `wait` seconds), then stop."""
        deadline = time.time() + wait
        while not self.q.empty() and time.time() < deadline:
            time.sleep(0.05)
        self._stop.set()
        self.thread.join(timeout=max(0.1, deadline - time.time()))
