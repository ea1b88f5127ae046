"""`text4vis bench --watch`: live streams on 127.0.0.1 at real pace, and what `text4vis watch` makes of them.

Also the local streams the tests use: `make_ts` (an MPEG-TS file written with PyAV from a real clip) and
`UdpSender` (its bytes sent over UDP at the pace of their timestamps, the send time of every frame kept).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction

import numpy as np

from .. import video


# ----------------------------------------------------------------------------- local streams

def make_ts(source: str, path: str, fps: int = 10, seconds: float | None = None, width: int = 160,
            frames: np.ndarray | None = None) -> str:
    """Write `path`, an MPEG-TS file of H.264 (no B-frames, a keyframe every second, as cameras send) at `fps`,
    from the frames of `source` (resampled by time, resized to `width`, looped to last `seconds`), or from
    `frames` (uint8 [N, H, W, 3]) when given."""
    import av
    from PIL import Image
    if frames is None:
        decoded = [(t, rgb) for t, rgb in video.iter_all_frames(source)]
        length = decoded[-1][0] + (decoded[1][0] - decoded[0][0] if len(decoded) > 1 else 0.04)
        total = int(round((seconds or length) * fps))
        times = [t for t, _ in decoded]
        h0, w0 = decoded[0][1].shape[:2]
        height = max(2, int(round(h0 * width / w0 / 2)) * 2)
        picked = []
        for i in range(total):
            t = (i / fps) % length
            j = max(0, int(np.searchsorted(times, t + 1e-9, "right")) - 1)
            picked.append(j)
        cache: dict[int, np.ndarray] = {}

        def frame(i: int) -> np.ndarray:
            j = picked[i]
            if j not in cache:
                cache[j] = np.asarray(Image.fromarray(decoded[j][1]).resize((width, height), Image.BILINEAR))
            return cache[j]
        items = (frame(i) for i in range(total))
    else:
        items = iter(frames)
        height, width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
    with av.open(path, "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(fps), "bf": "0", "crf": "23"}
        for n, rgb in enumerate(items):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:height, :width]), format="rgb24")
            f.pts, f.time_base = n, Fraction(1, fps)
            out.mux(stream.encode(f))
        out.mux(stream.encode(None))
    return path


def ts_schedule(path: str) -> list[tuple[int, float, int]]:
    """(byte offset, seconds, pts) of each video packet of an MPEG-TS file, in file order: the packet's
    bytes are due at its decoding time."""
    import av
    out = []
    with av.open(path) as c:
        s = c.streams.video[0]
        base = float(s.time_base)
        for p in c.demux(s):
            if p.size and p.pos is not None and p.dts is not None:
                out.append((int(p.pos), float(p.dts) * base, int(p.pts)))
    if not out:
        raise ValueError(f"{path}: no video packets")
    t0 = out[0][1]
    return [(pos, t - t0, pts) for pos, t, pts in sorted(out)]


class UdpSender(threading.Thread):
    """Send an MPEG-TS file to 127.0.0.1:`port` over UDP at the pace of its timestamps (datagrams of
    7 TS packets). `sent[pts]` is the wall time each video frame's last byte went out; `stop()` stops."""

    def __init__(self, path: str, port: int, host: str = "127.0.0.1", pace: float = 1.0, repeat: int = 1):
        super().__init__(daemon=True, name="text4vis-udp-sender")
        self.data = open(path, "rb").read()
        self.schedule = ts_schedule(path)
        self.addr, self.pace, self.repeat = (host, port), pace, repeat
        self.sent: dict[int, float] = {}
        self.started: float | None = None
        self.finished = threading.Event()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for _ in range(self.repeat):
                self._send_once(sock)
        finally:
            sock.close()
            self.finished.set()

    def _send_once(self, sock) -> None:
        data, sched = self.data, self.schedule
        self.started = start = time.time()
        ends = [pos for pos, _, _ in sched[1:]] + [len(data)]
        self._chunks(sock, 0, sched[0][0])
        for (pos, t, pts), end in zip(sched, ends):
            delay = start + t / self.pace - time.time()
            if delay > 0 and self._stop.wait(delay):
                return
            if self._stop.is_set():
                return
            self._chunks(sock, pos, end)
            self.sent[pts] = time.time()

    def _chunks(self, sock, lo: int, hi: int, size: int = 188 * 7) -> None:
        for i in range(lo, hi, size):
            sock.sendto(self.data[i:min(hi, i + size)], self.addr)


def free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def udp_bound(port: int) -> bool:
    """Whether some socket on this machine is bound to UDP `port` (Linux: /proc/net/udp)."""
    try:
        with open("/proc/net/udp") as f:
            lines = f.read().splitlines()[1:]
    except OSError:  # not Linux: try to bind it
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", port))
            return False
        except OSError:
            return True
        finally:
            s.close()
    return any(int(line.split()[1].split(":")[1], 16) == port for line in lines)


def wait_bound(port: int, timeout: float = 60.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if udp_bound(port):
            return True
        time.sleep(0.05)
    return False


def udp_url(port: int) -> str:
    return f"udp://127.0.0.1:{port}?localaddr=127.0.0.1"
