"""Where live frames come from: URLs FFmpeg reads, capture devices, stdin, files.

Each source is read by its own thread: demux, decode (a corrupt packet costs its frame, not the stream),
timestamps -> seconds, the online windows (`windows.Windower`), each completed window handed to the
runner's inbox. A source that ends, stalls (no data for `stall_timeout`: PyAV's read timeout) or fails
is reopened with exponential backoff when reconnecting is on (the default for network URLs and devices),
each step an event. Times are seconds since the first frame of the source: within one connection from
the frames' PTS (33-bit MPEG-TS wrap-around undone); a restart (a new connection, or timestamps that
jump back or leap forward) starts a new epoch whose times go on from the wall-clock time elapsed since
the first frame (never before the previous epoch's end), and whose windows start again at its first frame.
"""
from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass

from .. import video
from ..errors import first_line
from .windows import Windower

NETWORK = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "rtp", "srt", "tcp", "hls", "mms", "rist")
LEAP = 10.0  # seconds: a forward jump of the timestamps larger than this (and than two windows) is a restart


@dataclass
class Spec:
    name: str                 # as given (the "source" of every event)
    target: object            # what av.open opens: a URL, a path, or a file object
    kind: str                 # network, device, stdin, file
    format: str | None = None
    options: dict | None = None


def parse_source(text: str) -> Spec:
    """A SOURCE argument -> how to open it (files are checked when opened)."""
    text = str(text)
    if text == "-":
        return Spec("-", None, "stdin")
    m = re.fullmatch(r"webcam:(\d+)", text)
    if m or text.startswith("/dev/video"):
        n = m.group(1) if m else None
        if sys.platform == "darwin":
            return Spec(text, n or text, "device", "avfoundation")
        return Spec(text, f"/dev/video{n}" if m else text, "device", "v4l2")
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in NETWORK:
        options = {"overrun_nonfatal": "1"} if scheme == "udp" else {}
        if scheme in ("rtsp", "rtsps"):
            options["rtsp_transport"] = "tcp"
        return Spec(text, text, "network", None, options)
    if scheme == "file":
        text = text[len("file://"):]
    return Spec(text, text, "file")


class Epoch:
    """One connection's clock: PTS -> seconds since its first frame, the 33-bit wrap undone."""

    def __init__(self, offset: float, windower: Windower):
        self.offset, self.windower = offset, windower
        self.first_pts = None
        self.wrap = 0            # added to pts after a 33-bit wrap
        self.last_pts = None
        self.wall0 = None        # wall time of the first frame (realtime pacing of files)

    def seconds(self, pts, base: float) -> float:
        if self.first_pts is None:
            self.first_pts = pts
        if self.last_pts is not None and pts + self.wrap < self.last_pts - 2 ** 32 and base * 2 ** 33 > 3600:
            self.wrap += 2 ** 33
        pts += self.wrap
        self.last_pts = pts
        return float(pts - self.first_pts) * base


class Source(threading.Thread):
    """Reads one source until stopped; windows and events go to `inbox` (runner.Inbox)."""

    def __init__(self, index: int, spec: Spec, options, num_frames: int, input_size: int, inbox):
        super().__init__(daemon=True, name=f"text4vis-watch-{index}")
        self.index, self.spec, self.opt, self.inbox = index, spec, options, inbox
        self.num_frames, self.input_size = num_frames, input_size
        self.reconnect = options.reconnect if options.reconnect is not None else spec.kind in ("network", "device")
        self.live = spec.kind != "file" or options.realtime    # live: windows are dropped rather than waited for
        self.stop_event = threading.Event()
        self.first_wall: float | None = None   # wall time of the source's first frame
        self.epoch: Epoch | None = None
        self.epochs = 0
        self.frames = 0
        self.corrupt = 0                        # packets that did not decode
        self.failed = False                     # ended with an error (never opened, or gave up)
        self.peak_frames = 0
        self.packets: deque = deque()           # (pts, packet) kept for clips
        self.clip_requests: list = []
        self.lock = threading.Lock()
        self._stream = None
        self._progress = 0.0
        self.stream_end = 0.0                   # end of the last epoch, seconds since the first frame
        self.handed = 0                         # windows handed to the inbox
        self.done_windows = 0                   # of those, scored by the runner (alerts and clip requests made)

    # -- the thread ---------------------------------------------------------------------------------
    def stop(self) -> None:
        self.stop_event.set()

    def event(self, name: str, **fields) -> None:
        self.inbox.event(self.index, {"source": self.spec.name, "event": name, **fields})

    def run(self) -> None:
        attempt, opened = 0, False
        try:
            while not self.stop_event.is_set():
                try:
                    container = self._open()
                except Exception as exc:
                    import av
                    if isinstance(exc, av.error.ExitError):  # PyAV's open timeout
                        reason = f"{self.spec.name}: no data for {self.opt.stall_timeout:g} s"
                    elif isinstance(exc, video.VideoError):
                        reason = first_line(exc)
                    else:
                        reason = f"{self.spec.name}: cannot open ({video._short(exc)})"
                    if not self._retry(attempt, "error", reason):
                        return
                    attempt += 1
                    continue
                self.event("reconnected" if opened else "opened", **({"attempt": attempt} if opened else {}))
                opened, attempt = True, 0
                try:
                    outcome, reason = self._read(container)
                finally:
                    try:
                        container.close()
                    except Exception:
                        pass
                if outcome == "stopped":
                    return
                if outcome == "end" and not self.reconnect:
                    self.event("ended", frames=self.frames, corrupt_packets=self.corrupt)
                    return
                if not self._retry(attempt, outcome, reason):
                    return
                attempt += 1
        except BaseException as exc:  # never a traceback from a reader thread: one event line
            self.failed = True
            self.event("error", error=f"{self.spec.name}: {type(exc).__name__}: {first_line(exc)}")
        finally:
            self.inbox.event(self.index, None)  # this source is done

    def _retry(self, attempt: int, outcome: str, reason: str) -> bool:
        """Say what happened; wait the backoff and return True when the source is to be reopened."""
        fields = {"error": reason} if outcome == "error" else {"reason": reason}
        give_up = not self.reconnect or (self.opt.retries is not None and attempt >= self.opt.retries)
        if give_up:  # failed for good: an error, or no frame ever came
            self.failed = self.failed or outcome == "error" or self.frames == 0
            self.event(outcome if outcome != "end" else "ended", **fields, frames=self.frames,
                       **({"final": True} if outcome != "end" else {}))
            return False
        wait = min(self.opt.backoff_max, self.opt.backoff * 2 ** attempt)
        self.event(outcome if outcome != "end" else "ended", **fields, reconnect_in=round(wait, 3),
                   attempt=attempt + 1)
        return not self.stop_event.wait(wait)

    def _open(self):
        import av
        spec, timeout = self.spec, self.opt.stall_timeout
        if spec.kind == "file":
            return video._open(spec.target)
        if spec.kind == "stdin":
            container = av.open(sys.stdin.buffer, "r", format=spec.format, metadata_errors="ignore")
        else:
            container = av.open(spec.target, "r", format=spec.format, options=dict(spec.options or {}),
                                timeout=(timeout, timeout), metadata_errors="ignore")
        if not container.streams.video:
            container.close()
            raise video.VideoError(f"{spec.name}: has no video stream")
        return container

    def _read(self, container) -> tuple[str, str]:
        """One connection: ("end" | "stall" | "error" | "stopped", reason)."""
        import av
        stream = video._default_stream(container)
        video._set_threads(stream, self.opt.threads)
        self._stream = stream
        base = float(stream.time_base) if stream.time_base else 0.0
        self._new_epoch()
        self._progress = time.time()
        try:
            for packet in container.demux(stream):
                if self.stop_event.is_set():
                    return "stopped", "stopped"
                if time.time() - self._progress > self.opt.stall_timeout:  # data, but no frame out of it
                    return "stall", f"{self.spec.name}: no frame for {self.opt.stall_timeout:g} s"
                if self.opt.clips:
                    self._keep_packet(packet, base)
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:  # a corrupt packet costs its frame
                    self.corrupt += 1
                    continue
                for frame in frames:
                    if not self._frame(frame, base):
                        return "stopped", "stopped"
            return "end", f"{self.spec.name}: the stream ended"
        except av.error.ExitError:  # PyAV's read timeout
            return "stall", f"{self.spec.name}: no data for {self.opt.stall_timeout:g} s"
        except Exception as exc:
            return "error", f"{self.spec.name}: the stream broke off ({video._short(exc)})"
        finally:
            self._end_epoch()

    # -- frames -> windows --------------------------------------------------------------------------
    def _new_epoch(self) -> None:
        now = time.time()
        # the wall-clock time since the first frame, and never before the end of the previous epoch
        offset = 0.0 if self.first_wall is None else max(round(now - self.first_wall, 3), self.stream_end)
        self.epoch = Epoch(offset, Windower(self.opt.window, self.opt.stride, self.num_frames, self.input_size))
        self.epochs += 1

    def _end_epoch(self, restart: bool = False) -> None:
        ep = self.epoch
        if ep is None:
            return
        self._hand(ep, ep.windower.finish(time.time()))
        if ep.windower.last_t is not None:
            self.stream_end = round(ep.offset + ep.windower.duration(), 6)
        self.peak_frames = max(self.peak_frames, ep.windower.peak)
        if self.opt.clips:  # alerts on this epoch's last windows still get their clip (bounded wait)
            deadline = time.time() + 10.0
            while (self.done_windows + self.inbox.dropped[self.index] < self.handed and time.time() < deadline
                   and not self.stop_event.is_set()):
                time.sleep(0.02)
        self._save_clips(final=True)
        self.inbox.control(self.index, {"kind": "epoch_end"})
        self.epoch = None

    def _frame(self, frame, base: float) -> bool:
        now = time.time()
        ep = self.epoch
        if self.first_wall is None:
            self.first_wall = now
        fbase = float(frame.time_base) if frame.time_base else base
        if frame.pts is None or fbase <= 0:
            last = ep.windower.last_t
            t = 0.0 if last is None else last + (ep.windower.median_step() or 0.04)
        else:
            t = ep.seconds(frame.pts, fbase)
        last = ep.windower.last_t
        if last is not None and (t < last - 1e-9 or t > last + max(LEAP, 2 * self.opt.window)):
            self._end_epoch()                       # the timestamps restarted: a new epoch
            self.event("restarted", reason="timestamps jumped back" if t < last else "timestamps leapt forward")
            self._new_epoch()
            ep = self.epoch
            t = ep.seconds(frame.pts, fbase) if frame.pts is not None and fbase > 0 else 0.0
        elif last is not None and t <= last + 1e-9:
            return True                             # a repeated timestamp: not a new frame
        if ep.wall0 is None:
            ep.wall0 = now
        if self.spec.kind == "file" and self.opt.realtime:
            delay = ep.wall0 + t - time.time()
            if delay > 0 and self.stop_event.wait(delay):
                return False
            now = time.time()
        self.frames += 1
        self._progress = now
        self._hand(ep, ep.windower.add(t, frame, now))
        self._save_clips(final=False)
        return True

    def _hand(self, ep: Epoch, windows) -> None:
        for w in windows:
            self.handed += 1
            self.inbox.window(self.index, {"kind": "window", "start": round(w.start + ep.offset, 6),
                                           "end": round(w.end + ep.offset, 6), "clip": w.clip,
                                           "arrival": w.arrival, "wall0": self.first_wall,
                                           "frames": w.frames}, block=not self.live, stop=self.stop_event)

    # -- clips: the packets as they arrived ----------------------------------------------------------
    def _keep_packet(self, packet, base: float) -> None:
        if packet.pts is None or not packet.size:
            return
        keep = self.opt.clip_before + self.opt.window + self.opt.clip_after + 10.0
        with self.lock:
            self.packets.append((packet.pts, packet))
            newest = packet.pts
            # drop whole GOPs older than `keep` seconds (the ring starts at a keyframe)
            while len(self.packets) > 1 and (newest - self.packets[0][0]) * base > keep:
                nxt = next((i for i, (_, p) in enumerate(self.packets) if i > 0 and p.is_keyframe), None)
                if nxt is None or (newest - self.packets[nxt][0]) * base < keep:
                    break
                for _ in range(nxt):
                    self.packets.popleft()

    def request_clip(self, path: str, start: float, end: float) -> None:
        """Save the packets from `clip_before` s before `start` to `clip_after` s after `end` (times of
        this source, as in the events) to `path` once they have arrived."""
        with self.lock:
            self.clip_requests.append((path, start - self.opt.clip_before, end + self.opt.clip_after))

    def _save_clips(self, final: bool) -> None:
        if not self.clip_requests or self.epoch is None or self.epoch.first_pts is None:
            return
        from .sinks import write_clip
        ep, stream = self.epoch, self._stream
        base = float(stream.time_base)
        with self.lock:
            newest = (self.packets[-1][0] - ep.first_pts) * base + ep.offset if self.packets else None
            ready = [r for r in self.clip_requests if final or (newest is not None and newest >= r[2])]
            for r in ready:
                self.clip_requests.remove(r)
            packets = list(self.packets)
        for path, lo, hi in ready:
            chosen = [p for pts, p in packets if (pts - ep.first_pts) * base + ep.offset <= hi]
            start = 0
            for i, (pts, p) in enumerate(packets[:len(chosen)]):
                if p.is_keyframe and (pts - ep.first_pts) * base + ep.offset <= lo:
                    start = i
            try:
                write_clip(path, stream, chosen[start:])
                self.event("clip", path=path)
            except Exception as exc:
                self.event("error", error=f"{path}: cannot write the clip ({first_line(exc)})")


def source_name_for_file(name: str) -> str:
    """A source name as a file name part."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", os.path.basename(name.rstrip("/")) or name)[:60] or "source"
