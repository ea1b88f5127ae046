"""`text4vis watch` and `Recognizer.watch`: live windows equal timeline's on the recorded copy, segments and
alerts online, reconnects, broken sources, SIGINT, webhooks and clips.

Real streams on 127.0.0.1: MPEG-TS files written with PyAV from a real clip (tests/data/videos), sent over
UDP at the pace of their timestamps (`watch.bench.UdpSender`) or piped to stdin. Tiny random-weight CLIP
of conftest on the CPU. Every wait is bounded.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import av
import numpy as np
import pytest
import torch

import text4vis
from text4vis import timeline as tl
from text4vis.watch import WatchOptions, Watch, alerts, bench as wb, segments as ws, windows as ww
from conftest import SHARED_VIDEOS

from test_timeline import COLOURS, colour_clip

LABELS = ["arm wrestling", "cooking", "dancing", "skiing"]
ARM = os.path.join(SHARED_VIDEOS, "arm_wrestling_h264.mp4")


@pytest.fixture(scope="module")
def clip(tiny_dir):
    return str(tiny_dir / "openai_sd.pt")


@pytest.fixture(scope="module")
def rec(clip):
    return text4vis.load(clip=clip, labels=LABELS, device="cpu")


@pytest.fixture(scope="module")
def arm_ts(tmp_path_factory):
    """5 s of the real arm-wrestling clip as a 10 fps H.264 MPEG-TS (what a camera would send)."""
    return wb.make_ts(ARM, str(tmp_path_factory.mktemp("ts") / "arm.ts"), fps=10, seconds=5)


def run_watch(clip, *args, stdin=None):
    """Start `text4vis watch` in a subprocess; a thread collects its stdout lines."""
    cmd = [sys.executable, "-m", "text4vis", "watch", *args, "--clip", clip, "--device", "cpu", "--json"]
    if not any(a in ("--labels", "--classifier") for a in args):
        cmd += ["--labels", _labels_file(clip)]
    proc = subprocess.Popen(cmd, stdin=stdin or subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines: list[str] = []

    def read():
        for line in proc.stdout:
            lines.append(line)
    t = threading.Thread(target=read, daemon=True)
    t.start()
    proc.lines, proc.reader = lines, t
    return proc


def _labels_file(clip):
    path = os.path.join(os.path.dirname(clip), "watch_labels.txt")
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write("\n".join(LABELS) + "\n")
    return path


def wait_for(proc, pred, timeout=60.0):
    """Poll the collected lines until one (parsed) satisfies pred; returns it (None on timeout or exit)."""
    deadline = time.time() + timeout
    seen = 0
    while time.time() < deadline:
        lines = proc.lines
        for line in lines[seen:]:
            ev = json.loads(line)
            if pred(ev):
                return ev
        seen = len(lines)
        if proc.poll() is not None and seen == len(proc.lines):
            return None
        time.sleep(0.05)
    return None


def finish(proc, sig=None, timeout=60.0):
    if sig is not None and proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    proc.reader.join(timeout=10)
    err = proc.stderr.read()
    events = [json.loads(line) for line in proc.lines]  # every printed line is one JSON object
    return proc.returncode, events, err


def windows_of(events, source=None):
    return [e for e in events if "event" not in e and (source is None or e["source"] == source)]


def assert_same_windows(live, record):
    """Live windows equal timeline's on the recorded copy: spans, labels, scores within 1e-4."""
    assert [(w["start"], w["end"]) for w in live] == [(w["start"], w["end"]) for w in record["windows"]]
    for a, b in zip(live, record["windows"]):
        assert [t["label"] for t in a["top"]] == [t["label"] for t in b["top"]]
        assert np.allclose([t["score"] for t in a["top"]], [t["score"] for t in b["top"]], atol=1e-4)


# ----------------------------------------------------------------------------- windows and segments online

def test_windower_spans_match_window_spans():
    """Full windows online are window_spans' windows of any longer video; the cut tail is window_spans' own."""
    spans = [ww.full_span(k, 4.0, 1.5) for k in range(50)]
    assert spans[:30] == __import__("text4vis").sampling.window_spans(200.0, 4.0, 1.5)[:30]
    w = ww.Windower(2.0, 1.0, 4, 32)
    rgb = np.zeros((40, 40, 3), np.uint8)
    out = []
    for i in range(35):  # 3.5 s at 10 fps
        out += w.add(i / 10, rgb, 0.0)
    out += w.finish(0.0)
    assert [(x.start, x.end) for x in out] == [(0.0, 2.0), (1.0, 3.0), (2.0, 3.5)]
    assert [x.frames for x in out] == [20, 20, 15] and out[0].clip.shape == (4, 3, 32, 32)
    assert w.peak <= 22  # the ring holds about one window of frames


def test_file_windows_equal_timeline_vfr_rotated(rec):
    """A variable-frame-rate, rotated phone clip read as a file: the windows and scores of timeline."""
    path = os.path.join(SHARED_VIDEOS, "dog_android_vfr_rotate180_h264_aac.mp4")
    record = rec.timeline(path, window=2, stride=1, topk=3)
    events = list(rec.watch(path, window=2, stride=1, topk=3))
    assert_same_windows(windows_of(events), record)
    segs = [e for e in events if e.get("event") == "segment" and "end" in e]
    assert [{k: s[k] for k in ("label", "start", "end", "score")} for s in segs] == record["segments"]
    summary = events[-1]
    assert summary["event"] == "summary" and summary["dropped"] == 0 and summary["windows"] == len(record["windows"])


@pytest.mark.parametrize("smooth,min_score", [(0, 0.0), (1, 0.0), (2, 0.4), (3, 0.6)])
def test_online_segments_equal_timeline_segments(smooth, min_score):
    rng = np.random.default_rng(smooth)
    labels = ["a", "b", "c"]
    for n in (1, 2, 7, 30):
        spans = [ww.full_span(k, 3.0, 1.0) for k in range(n)]
        raw = rng.random((n, 3)) ** 3
        scores = raw / raw.sum(1, keepdims=True)
        want = tl.segments(spans, scores, labels, min_score, smooth)
        seg = ws.OnlineSegments(labels, min_score, smooth)
        events = [e for s, row in zip(spans, scores) for e in seg.add(*s, row)] + seg.finish()
        closed = [{k: e[k] for k in ("label", "start", "end", "score")} for e in events if "end" in e]
        assert len(closed) == len(want)
        for a, b in zip(closed, want):
            assert a["label"] == b["label"] and a["start"] == b["start"] and a["end"] == b["end"]
            assert a["score"] == pytest.approx(b["score"], abs=2e-6)
        assert sum("end" not in e for e in events) == len(want)  # each segment opened once


def test_hysteresis_once_per_episode():
    h = alerts.Hysteresis(0.5, hold=2.0)
    fired = [h.update(k, k + 2, s) for k, s in enumerate([0.6, 0.7, 0.8, 0.9, 0.9, 0.2, 0.6, 0.6, 0.6, 0.1])]
    assert fired == [False, False, True, False, False, False, False, False, True, False]


# ----------------------------------------------------------------------------- live sources, CLI

def test_cli_file_fast_realtime_and_stdin_equal_timeline(clip, rec, arm_ts):
    record = rec.timeline(arm_ts, window=2, stride=1, topk=5)
    with open(arm_ts, "rb") as f:
        piped = run_watch(clip, "-", "--window", "2", "--stride", "1", stdin=f)
        code, events, err = finish(piped)
    assert code == 0, err
    assert_same_windows(windows_of(events), record)
    assert events[0]["event"] == "opened" and events[-1]["event"] == "summary"
    t0 = time.time()
    code, events, err = finish(run_watch(clip, arm_ts, "--window", "2", "--stride", "1", "--realtime"))
    assert code == 0, err
    assert time.time() - t0 >= 5.0  # 5 s of video at its own pace
    live = windows_of(events)
    assert_same_windows(live, record)
    for w in live:  # the ISO wall-clock time of each window's end
        assert w["time"].endswith("+00:00") and 0 <= w["latency"] < 30


def test_udp_live_equals_timeline_on_recorded_copy(clip, rec, arm_ts):
    port = wb.free_udp_port()
    proc = run_watch(clip, wb.udp_url(port), "--window", "2", "--stride", "1", "--stall-timeout", "2",
                     "--no-reconnect")
    try:
        assert wb.wait_bound(port, 90), "the watcher never bound its UDP port"
        sender = wb.UdpSender(arm_ts, port)
        sender.start()
        sender.finished.wait(30)
        code, events, err = finish(proc, timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, err
    record = rec.timeline(arm_ts, window=2, stride=1, topk=5)
    live = windows_of(events)
    assert len(live) == len(record["windows"]) and live[-1]["dropped"] == 0, events
    # The one intentional difference: a stream that stops keeps its last frames in the MPEG-TS demuxer (a
    # PES ends when the next begins), so the live tail window ends a frame or two earlier than the file's.
    assert_same_windows(live[:-1], {"windows": record["windows"][:-1]})
    assert live[-1]["start"] == record["windows"][-1]["start"]
    assert record["windows"][-1]["end"] - 0.35 <= live[-1]["end"] <= record["windows"][-1]["end"]
    kinds = [e["event"] for e in events if "event" in e]
    assert kinds[0] == "opened" and "stall" in kinds and kinds[-1] == "summary"
    assert [s for s in events if s.get("event") == "stall"][0]["final"] is True
