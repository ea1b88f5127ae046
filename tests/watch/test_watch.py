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
from text4vis.watch import alerts, bench as wb, segments as ws, watch, windows as ww
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


@pytest.fixture(scope="module")
def short_ts(tmp_path_factory):
    return wb.make_ts(ARM, str(tmp_path_factory.mktemp("ts") / "arm_short.ts"), fps=10, seconds=2.5)


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
    events = list(watch(rec, path, window=2, stride=1, topk=3))
    assert_same_windows(windows_of(events), record)
    segs = [e for e in events if e.get("event") == "segment" and "end" in e]
    assert [(s["label"], s["start"], s["end"]) for s in segs] == \
        [(s["label"], s["start"], s["end"]) for s in record["segments"]]
    assert np.allclose([s["score"] for s in segs], [s["score"] for s in record["segments"]], atol=1e-4)
    summary = events[-1]
    assert summary["event"] == "summary" and summary["dropped"] == 0 and summary["windows"] == len(record["windows"])


@pytest.mark.parametrize("smooth,min_score", [(0, 0.0), (1, 0.0), (2, 0.4), (3, 0.6)])
def test_online_segments_equal_timeline_segments(smooth, min_score):
    rng = np.random.default_rng(smooth)
    labels = ["a", "b", "c"]
    for n, cut in ((1, 0), (2, 0), (7, 0), (30, 0), (7, 2.2), (12, 0.4)):
        spans = [ww.full_span(k, 3.0, 1.0) for k in range(n)]
        if cut:  # the last window cut at the end of the stream, as timeline cuts it
            spans[-1] = (spans[-1][0], round(spans[-1][0] + cut, 6))
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


def test_pts_wrap_and_restart_in_one_stream(rec, arm_ts, tmp_path):
    """MPEG-TS timestamps wrap at 2**33; a stream whose timestamps start again (the same stream twice, back to
    back) is a new epoch whose times go on after the first one's end."""
    from text4vis.watch.sources import Epoch
    ep = Epoch(0.0, None)
    base = 1 / 90000
    assert ep.seconds(2 ** 33 - 9000, base) == 0.0
    assert ep.seconds(9000, base) == pytest.approx(0.2)  # wrapped: 0.2 s later, not 95443 s earlier
    twice = tmp_path / "twice.ts"
    twice.write_bytes(open(arm_ts, "rb").read() * 2)
    events = list(watch(rec, str(twice), window=2, stride=1))
    assert [e["event"] for e in events if e.get("event") == "restarted"] == ["restarted"]
    wins = windows_of(events)
    first = rec.timeline(arm_ts, window=2, stride=1)["windows"]
    assert [(w["start"], w["end"]) for w in wins[:len(first)]] == [(w["start"], w["end"]) for w in first]
    second = wins[len(first):]
    assert len(second) == len(first) and second[0]["start"] >= 5.0  # after the first epoch's end
    assert np.allclose([w["end"] - w["start"] for w in second], [w["end"] - w["start"] for w in first])
    assert events[-1]["epochs"] == 2


def test_memory_bounded_over_many_windows():
    """The ring holds about one window of frames and the segment state a few windows, whatever the length."""
    rgb = np.zeros((8, 8, 3), np.uint8)
    peaks = []
    for seconds in (10, 120):
        w = ww.Windower(2.0, 1.0, 2, 8)
        seg = ws.OnlineSegments(["a", "b"], 0.0, 2)
        for i in range(seconds * 10):
            for win in w.add(i / 10, rgb, 0.0):
                seg.add(win.start, win.end, np.array([0.6, 0.4]) if (win.k // 7) % 2 else np.array([0.3, 0.7]))
        peaks.append((w.peak, len(seg.buf), len(w.steps)))
    assert peaks[0] == peaks[1] and peaks[0][0] <= 22


def test_breaking_the_loop_closes_the_source(rec, arm_ts):
    w = watch(rec, arm_ts, window=2, stride=1, realtime=True)
    for event in w:
        if "event" not in event:
            break
    src = w.sources[0]
    src.join(timeout=10)
    assert src.stop_event.is_set() and not src.is_alive()


# ----------------------------------------------------------------------------- live sources, CLI

def test_stdin_and_realtime_equal_timeline(clip, rec, arm_ts):
    record = rec.timeline(arm_ts, window=2, stride=1, topk=5)
    with open(arm_ts, "rb") as f:  # the command line, an MPEG-TS byte stream on stdin
        code, events, err = finish(run_watch(clip, "-", "--window", "2", "--stride", "1", stdin=f))
    assert code == 0, err
    assert_same_windows(windows_of(events), record)
    assert events[0]["event"] == "opened" and events[-1]["event"] == "summary"
    t0 = time.time()
    events = list(watch(rec, arm_ts, window=2, stride=1, realtime=True))  # the file at its own pace
    assert time.time() - t0 >= 4.9  # the last of 50 frames at 10 fps is due 4.9 s after the first
    live = windows_of(events)
    assert_same_windows(live, record)
    for w in live:  # the ISO wall-clock time of each window's end
        assert w["time"].endswith("+00:00") and 0 <= w["latency"] < 30


# ----------------------------------------------------------------------------- alerts, webhook, clips

PLAN = [("red", 3.0), ("green", 3.0), ("red", 3.0), ("blue", 2.0)]  # two red episodes


class Hook(BaseHTTPRequestHandler):
    """Records POSTed JSON; answers 500 to the first request (the sender must retry)."""
    received: list = []
    calls = 0

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).calls += 1
        if type(self).calls == 1:
            self.send_response(500)
            self.end_headers()
            return
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def hook_server():
    Hook.received, Hook.calls = [], 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def colours(clip, tmp_path_factory):
    """A colour stream (red, green, red, blue) as MPEG-TS, a classifier of colour prototypes (each row the
    window embedding of a reference clip of that colour, as test_timeline builds them) and an alert
    classifier holding the red row alone."""
    from text4vis.classifiers import Classifier, save_classifier
    from conftest import write_video
    d = tmp_path_factory.mktemp("colours")
    r = text4vis.load(clip=clip, labels=list(COLOURS), device="cpu")
    rows = []
    for k, name in enumerate(COLOURS):
        path = str(d / f"{name}.mp4")
        write_video(path, colour_clip(name, 3.0, seed=100 + k), fps=10)
        rows.append(torch.from_numpy(r.embed_windows(path, window=2, stride=1)["windows"][0]["embedding"]))
    cls = Classifier(torch.stack(rows), list(COLOURS), {"type": "prototypes"})
    save_classifier(cls, str(d / "colours.safetensors"))
    save_classifier(Classifier(rows[0][None], ["red"], {"type": "prototypes"}), str(d / "red.safetensors"))
    frames = np.concatenate([colour_clip(name, secs, seed=k) for k, (name, secs) in enumerate(PLAN)])
    ts = wb.make_ts(None, str(d / "colours.ts"), fps=10, frames=frames)
    r.set_classifier(cls)
    emb = r.embed_windows(ts, window=2, stride=1)["windows"]
    red = rows[0].numpy() / np.linalg.norm(rows[0].numpy())
    sims = {(w["start"], w["end"]): float(w["embedding"] @ red) for w in emb}
    pure_red = [v for (s, e), v in sims.items() if e <= 3 or (6 <= s and e <= 9)]
    not_red = [v for (s, e), v in sims.items() if (3 <= s and e <= 6) or s >= 9]
    assert min(pure_red) > max(not_red), "the red prototype must be unmistakable"
    threshold = (min(pure_red) + max(not_red)) / 2
    return {"rec": r, "ts": ts, "classifier": str(d / "colours.safetensors"), "red": str(d / "red.safetensors"),
            "threshold": threshold}


def test_alerts_once_per_episode_webhook_and_clips(clip, colours, hook_server, tmp_path):
    clips = str(tmp_path / "clips")
    code, events, err = finish(run_watch(clip, colours["ts"], "--classifier", colours["classifier"],
                                         "--alert-classifier", colours["red"],
                                         "--alert-score", f"{colours['threshold']:.6f}", "--alert-for", "1",
                                         "--window", "2", "--stride", "1", "--webhook", hook_server,
                                         "--clips", clips))
    assert code == 0, err
    alerts_seen = [e for e in events if e.get("event") == "alert"]
    assert len(alerts_seen) == 2  # one per red episode, although several windows of each score above
    assert all(a["query"] == "red" and a["score"] >= colours["threshold"] for a in alerts_seen)
    assert alerts_seen[0]["end"] <= 4.0 and 6.0 <= alerts_seen[1]["start"] <= alerts_seen[1]["end"] <= 10.0
    # --alert-for 1: the alert comes with the second window above the score, not the first
    above = [w for w in windows_of(events) if w["alerts"]["red"] >= colours["threshold"]]
    assert alerts_seen[0]["end"] == above[0]["end"] + 1.0
    # segments online = timeline's segments of the same stream
    record = colours["rec"].timeline(colours["ts"], window=2, stride=1)
    segs = [{k: e[k] for k in ("label", "start", "end", "score")} for e in events
            if e.get("event") == "segment" and "end" in e]
    assert [s["label"] for s in segs] == ["red", "green", "red", "blue"]
    assert [(s["label"], s["start"], s["end"]) for s in segs] == \
        [(s["label"], s["start"], s["end"]) for s in record["segments"]]
    assert np.allclose([s["score"] for s in segs], [s["score"] for s in record["segments"]], atol=1e-4)
    # the webhook got every alert and segment event (the first POST failed and was retried)
    deadline = time.time() + 20
    want = [e for e in events if e.get("event") in ("alert", "segment")]
    while len(Hook.received) < len(want) and time.time() < deadline:
        time.sleep(0.05)
    assert Hook.calls == len(want) + 1 and Hook.received == want
    # a clip per alert: H.264 packets as they were sent, from a keyframe, covering the alert's window
    saved = [e for e in events if e.get("event") == "clip"]
    assert sorted(e["path"] for e in saved) == sorted(a["clip"] for a in alerts_seen)
    for a in alerts_seen:
        with av.open(a["clip"]) as c:
            s = c.streams.video[0]
            assert s.codec_context.name == "h264"
            frames = [f for f in c.decode(s)]
            span = len(frames) / 10.0
        assert span >= (a["end"] - a["start"]) and span <= a["end"] - a["start"] + 5.0 + 3.0 + 1.0


def test_sentence_alerts_score_by_cosine(rec, arm_ts):
    """A sentence alert's score is the cosine of the window embedding with the text tower's embedding."""
    events = list(watch(rec, arm_ts, window=2, stride=1, alerts=["two people arm wrestling"], alert_score=-1.0))
    wins = windows_of(events)
    emb = rec.embed_windows(arm_ts, window=2, stride=1)["windows"]
    text = rec.towers.encode_text(["two people arm wrestling"]).float()[0].numpy()
    text /= np.linalg.norm(text)
    for w, e in zip(wins, emb):
        assert w["alerts"]["two people arm wrestling"] == pytest.approx(float(e["embedding"] @ text), abs=1e-4)
    assert [e["event"] for e in events if e.get("event") == "alert"] == ["alert"]  # never below: one episode


# ----------------------------------------------------------------------------- streams fail, the watcher does not

def test_reconnect_after_restart_then_sigint(clip, arm_ts, short_ts):
    port = wb.free_udp_port()
    proc = run_watch(clip, wb.udp_url(port), "--window", "2", "--stride", "1", "--stall-timeout", "1")
    senders = []
    try:
        assert wb.wait_bound(port, 90)
        senders.append(wb.UdpSender(short_ts, port))
        senders[0].start()
        assert wait_for(proc, lambda e: e.get("event") == "stall", 40), proc.lines
        senders.append(wb.UdpSender(arm_ts, port, repeat=3))  # the source comes back (timestamps restart)
        senders[1].start()
        assert wait_for(proc, lambda e: e.get("event") == "reconnected", 40), proc.lines
        first = wait_for(proc, lambda e: "event" not in e and e["start"] >= 3.5, 40)
        assert first is not None, proc.lines
        code, events, err = finish(proc, signal.SIGINT)  # mid-stream
    finally:
        for s in senders:
            s.stop()
        if proc.poll() is None:
            proc.kill()
    assert code == 0 and "Traceback" not in err, err
    kinds = [e.get("event") for e in events if "event" in e]
    assert kinds[0] == "opened" and "stall" in kinds and "reconnected" in kinds
    stall = next(e for e in events if e.get("event") == "stall")
    assert stall["reconnect_in"] > 0 and stall["attempt"] == 1
    summary = events[-1]
    assert summary["event"] == "summary" and summary["epochs"] >= 2
    starts = [w["start"] for w in windows_of(events)]
    assert starts == sorted(starts) and starts[0] == 0.0  # times go on after the reconnect
    closed = [e for e in events if e.get("event") == "segment" and "end" in e]
    assert closed and closed[-1]["end"] >= first["end"]  # the last segment closed on SIGINT


def test_udp_live_equals_timeline_and_broken_sources(clip, rec, arm_ts, tmp_path):
    """Three sources in one process: a UDP stream sent at its real pace that then stops (its windows are
    timeline's on the recorded copy; then one stall line), a UDP port that never gets anything (one error
    line), garbage on stdin (one error line). No traceback; exit 1 (two sources failed for good)."""
    silent, live = wb.free_udp_port(), wb.free_udp_port()
    garbage = tmp_path / "garbage.ts"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    with open(garbage, "rb") as f:
        proc = run_watch(clip, wb.udp_url(silent), wb.udp_url(live), "-", "--window", "2", "--stride", "1",
                         "--stall-timeout", "3", "--no-reconnect", stdin=f)
    sender = wb.UdpSender(arm_ts, live)
    try:
        assert wb.wait_bound(live, 90), "the watcher never bound its UDP port"
        sender.start()
        sender.finished.wait(30)
        code, events, err = finish(proc, timeout=60)
    finally:
        sender.stop()
        if proc.poll() is None:
            proc.kill()
    assert code == 1 and "Traceback" not in err, err
    by = {}
    for e in events:
        if "event" in e and e["event"] not in ("summary", "segment"):
            by.setdefault(e["source"], []).append(e)
    assert [e["event"] for e in by[wb.udp_url(silent)]] == ["error"]
    assert "no data for 3 s" in by[wb.udp_url(silent)][0]["error"]
    assert [e["event"] for e in by["-"]] == ["error"]
    assert [e["event"] for e in by[wb.udp_url(live)]] == ["opened", "stall"]
    assert by[wb.udp_url(live)][1]["final"] is True
    record = rec.timeline(arm_ts, window=2, stride=1, topk=5)
    got = windows_of(events, wb.udp_url(live))
    assert len(got) == len(record["windows"]) and got[-1]["dropped"] == 0, events
    # The one intentional difference: a stream that stops keeps its last frames in the MPEG-TS demuxer (a
    # PES ends when the next begins), so the live tail window ends a frame or two earlier than the file's.
    assert_same_windows(got[:-1], {"windows": record["windows"][:-1]})
    assert got[-1]["start"] == record["windows"][-1]["start"]
    assert record["windows"][-1]["end"] - 0.35 <= got[-1]["end"] <= record["windows"][-1]["end"]


def test_terminal_view_lines_off_a_terminal():
    import io
    from text4vis.watch.sinks import TerminalView
    out = io.StringIO()
    view = TerminalView(out)
    view({"source": "cam", "start": 0.0, "end": 2.0, "top": [{"label": "red", "score": 0.9}], "latency": 0.1,
          "dropped": 0})  # a window: only the status line on a terminal, nothing here
    view({"source": "cam", "event": "segment", "label": "red", "start": 0.0, "end": 4.5, "score": 0.87})
    view({"source": "cam", "event": "alert", "query": "red", "score": 0.95, "start": 1.0, "end": 3.0})
    view({"source": "cam", "event": "stall", "reason": "cam: no data for 10 s", "reconnect_in": 0.5})
    assert out.getvalue().splitlines() == [
        "cam       0.0 -      4.5 s  red  87.0%", "cam  ALERT 'red'  score 0.950  at 1.0-3.0 s",
        "cam  stall: cam: no data for 10 s"]


# ----------------------------------------------------------------------------- the service's streams (SSE)

def test_stream_hub_serves_events_as_sse(rec, arm_ts):
    """A real HTTP server on 127.0.0.1 with the /v1/streams router: add a stream, read its events as
    Server-Sent Events (the same window lines as `watch`), list it with its current label, delete it."""
    httpx = pytest.importorskip("httpx")
    uvicorn = pytest.importorskip("uvicorn")
    from fastapi import FastAPI
    from text4vis.watch.service import StreamHub, router
    hub = StreamHub(rec, window=2, stride=1)
    app = FastAPI()
    app.include_router(router(hub))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 30
        while not (server.started and server.servers) and time.time() < deadline:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        assert httpx.post(base + "/v1/streams", json={"source": arm_ts, "bogus": 1}).status_code == 422
        r = httpx.post(base + "/v1/streams", json={"source": arm_ts, "realtime": True})
        assert r.status_code == 200, r.text
        sid = r.json()["id"]
        got = []
        with httpx.stream("GET", f"{base}/v1/streams/{sid}/events", timeout=30) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            kind = None
            for line in resp.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    got.append((kind, json.loads(line[6:])))
                    if kind == "end" or len(got) > 100:
                        break
        windows = [ev for kind, ev in got if kind == "window"]
        record = rec.timeline(arm_ts, window=2, stride=1)
        assert [(w["start"], w["end"]) for w in windows] == [(w["start"], w["end"]) for w in record["windows"]]
        assert got[-1][0] == "end" and any(kind == "segment" for kind, _ in got)
        listed = httpx.get(base + "/v1/streams").json()["streams"]
        assert listed[0]["id"] == sid and listed[0]["current"]["label"] == windows[-1]["top"][0]["label"]
        assert httpx.delete(f"{base}/v1/streams/{sid}").json() == {"deleted": sid}
        assert httpx.delete(f"{base}/v1/streams/{sid}").status_code == 404
    finally:
        hub.close()
        server.should_exit = True
        thread.join(timeout=10)


def test_http_source_equals_timeline(rec, arm_ts):
    """An http:// source (a real HTTP server on 127.0.0.1 serving the recording)."""
    from http.server import SimpleHTTPRequestHandler
    from functools import partial

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=os.path.dirname(arm_ts)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{os.path.basename(arm_ts)}"
        events = list(watch(rec, url, window=2, stride=1, reconnect=False))
    finally:
        server.shutdown()
        server.server_close()
    assert_same_windows(windows_of(events), rec.timeline(arm_ts, window=2, stride=1))
    assert [e["event"] for e in events if "event" in e and e["event"] != "segment"] == ["opened", "ended", "summary"]


def test_model_behind_drops_windows_never_queues(rec, arm_ts):
    """A live source and a model slower than the windows arrive: windows are dropped (counted), the inbox
    never holds more than `queue` windows, every window is either scored or dropped."""
    import dataclasses

    class Slow:
        def __init__(self, model):
            self.model = model

        def eval(self):
            return self

        def embed(self, x):
            time.sleep(0.4)
            return self.model.embed(x)
    slow = dataclasses.replace(rec, video_backend=Slow(rec.model))
    w = watch(slow, arm_ts, window=1, stride=0.2, realtime=True, batch_size=1, queue=1)
    events = list(w)
    summary = events[-1]
    spans = [(s, e) for s, e in __import__("text4vis").sampling.window_spans(5.0, 1.0, 0.2)]
    assert summary["dropped"] > 0 and summary["windows"] + summary["dropped"] == len(spans)
    assert w.inbox.peak == 1
    got = windows_of(events)
    assert [w_["dropped"] for w_ in got] == sorted(w_["dropped"] for w_ in got)  # a running count per source


def test_duration_stops_cleanly(rec, arm_ts):
    events = list(watch(rec, arm_ts, window=1, stride=1, realtime=True, duration=2.5))
    wins = windows_of(events)
    assert events[-1]["event"] == "summary" and 1 <= len(wins) <= 3  # 1 s windows of a 2.5 s run of a 5 s file
    closed = [e for e in events if e.get("event") == "segment" and "end" in e]
    assert closed and closed[-1]["end"] == wins[-1]["end"]  # the open segment was closed at the stop
