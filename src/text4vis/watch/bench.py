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


# ----------------------------------------------------------------------------- the benchmark

def _proc_stat(pid: int) -> tuple[float, float]:
    """(CPU seconds used by process `pid`, its RSS in MB), from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    return cpu, rss


def _quantiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    a = np.asarray(values)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3),
            "max": round(float(a.max()), 3)}


def bench_watch(model_args: list[str], sources: int = 1, seconds: float = 120.0, video_path: str | None = None,
                fps: int = 10, window: float = 2.0, stride: float = 1.0, watch_args: list[str] | None = None,
                width: int = 320) -> dict:
    """Run `text4vis watch` on `sources` MPEG-TS streams sent over UDP on 127.0.0.1 at real pace for `seconds`
    (H.264 at `fps`, made from `video_path` or a generated clip). Latency of a window = wall time its line was
    read from the watcher's stdout minus wall time the window's last frame was sent. Also: dropped windows,
    the watcher's CPU share (CPU seconds / wall seconds; 1.0 = one core fully busy) and RSS over the run."""
    from ..bench.model import make_test_clip
    with tempfile.TemporaryDirectory(prefix="text4vis-bench-watch-") as tmp:
        src = video_path or make_test_clip(tmp, seconds=10.0)["video"]
        ts = make_ts(src, os.path.join(tmp, "stream.ts"), fps=fps, seconds=seconds, width=width)
        sched = ts_schedule(ts)
        pts0 = min(p for _, _, p in sched)
        frame_times = sorted(((p - pts0) / 90000.0, p) for _, _, p in sched)  # MPEG-TS: 90 kHz
        ports = [free_udp_port() for _ in range(sources)]
        urls = [udp_url(p) for p in ports]
        cmd = [sys.executable, "-m", "text4vis", "watch", *urls, "--json", "--window", str(window), "--stride",
               str(stride), "--stall-timeout", "5", "--no-reconnect", *model_args, *(watch_args or [])]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: list[tuple[float, str]] = []

        def read():
            for line in proc.stdout:
                lines.append((time.time(), line))
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            for p in ports:
                if not wait_bound(p, 300):
                    raise RuntimeError(f"text4vis watch did not open udp port {p}: {proc.stderr.read()[-500:]}")
            cpu0, rss0 = _proc_stat(proc.pid)
            wall0 = time.time()
            senders = [UdpSender(ts, p) for p in ports]
            for s in senders:
                s.start()
            rss_series = []
            while not all(s.finished.is_set() for s in senders):
                time.sleep(1.0)
                rss_series.append(round(_proc_stat(proc.pid)[1], 1))
            time.sleep(min(3.0, window + 1.0))  # the last windows
            cpu1, rss1 = _proc_stat(proc.pid)
            wall1 = time.time()
            proc.send_signal(2)  # SIGINT: a clean stop
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        reader.join(timeout=10)
        events = [(t, json.loads(line)) for t, line in lines]
    latencies, first_min, last_min, per_source = [], [], [], {}
    dropped = {}
    t_list = [t for t, _ in frame_times]
    for printed, ev in events:
        if ev.get("event") == "summary":
            dropped[ev["source"]] = ev["dropped"]
        if "event" in ev or ev["end"] - ev["start"] < window - 1e-6:
            continue  # events, and the tail window cut when the stream stops (it ends with the stall, not a frame)
        i = urls.index(ev["source"])
        j = int(np.searchsorted(t_list, ev["end"] - 1e-9, "left")) - 1  # the window's last frame
        sent = senders[i].sent.get(frame_times[j][1]) if j >= 0 else None
        if sent is None:
            continue
        lat = printed - sent
        latencies.append(lat)
        per_source.setdefault(ev["source"], []).append(lat)
        if ev["end"] <= 60:
            first_min.append(lat)
        if ev["end"] > seconds - 60:
            last_min.append(lat)
    return {"sources": sources, "seconds": seconds, "fps": fps, "window": window, "stride": stride,
            "windows": len(latencies), "latency_s": _quantiles(latencies),
            "latency_first_minute_s": _quantiles(first_min), "latency_last_minute_s": _quantiles(last_min),
            "dropped_windows": sum(dropped.values()), "cpu_share": round((cpu1 - cpu0) / (wall1 - wall0), 3),
            "cpus": os.cpu_count(), "rss_mb_start": round(rss0, 1), "rss_mb_end": round(rss1, 1),
            "rss_mb_max_during": max(rss_series) if rss_series else None,
            "rss_mb_each_tenth": [rss_series[min(len(rss_series) - 1, len(rss_series) * i // 10)]
                                  for i in range(1, 11)] if rss_series else [],
            "load_avg": [round(x, 2) for x in os.getloadavg()], "exit_code": proc.returncode}
