"""Live streams in `text4vis serve` (issue 25): a real server on 127.0.0.1 started with
`--watch udp://127.0.0.1:PORT` and an API key, fed a real clip as MPEG-TS over UDP at its own pace.
Its events arrive as Server-Sent Events (window lines, segment events, alerts), streams are added and
deleted while it runs (network URLs only from clients), the API key is enforced on every /v1/streams
route, an upload is answered while a stream is live, and the page's Live panel shows a live label and
takes an alert sentence in the real browser (Debian's chromium through Playwright; screenshot kept with
TEXT4VIS_SCREENSHOTS=DIR). Every wait is bounded in count and time."""
from __future__ import annotations

import json
import os
import threading
import time

import httpx
import pytest
from conftest import SHARED_VIDEOS
from serving import Server

from text4vis.watch import bench as wb

pytestmark = [pytest.mark.slow, pytest.mark.server]

CLIP = os.path.join(SHARED_VIDEOS, "arm_wrestling_h264.mp4")
KEY = "watch-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def arm_ts(tmp_path_factory):
    """5 s of the real arm-wrestling clip as a 10 fps H.264 MPEG-TS (what a camera would send)."""
    return wb.make_ts(CLIP, str(tmp_path_factory.mktemp("ts") / "arm.ts"), fps=10, seconds=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_dir):
    folder = tmp_path_factory.mktemp("watch_server")
    (folder / "key.txt").write_text(KEY + "\n")
    port = wb.free_udp_port()
    s = Server(folder, str(tiny_dir / "openai_sd.pt"), "--decode-workers", "1", "--api-key-file",
               str(folder / "key.txt"), "--watch", wb.udp_url(port), "--watch-window", "2", "--watch-stride", "1",
               "--watch-alert", "people arm wrestling", "--watch-alert-score", "-1")
    s.udp_port = port
    try:
        yield s.wait_ready()
    finally:
        s.stop()


class Events(threading.Thread):
    """Read a stream's Server-Sent Events in a thread: `got` is [(event, data)] as they arrive."""

    def __init__(self, url: str, limit: int = 500, seconds: float = 120):
        super().__init__(daemon=True)
        self.url, self.limit, self.seconds = url, limit, seconds
        self.got: list[tuple[str, dict]] = []
        self.status = None
        self.content_type = ""

    def run(self):
        deadline = time.time() + self.seconds
        with httpx.stream("GET", self.url, headers=AUTH, timeout=self.seconds) as r:
            self.status, self.content_type = r.status_code, r.headers.get("content-type", "")
            kind = None
            for line in r.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    self.got.append((kind, json.loads(line[6:])))
                    if kind == "end" or len(self.got) >= self.limit or time.time() > deadline:
                        return

    def kinds(self) -> list[str]:
        return [k for k, _ in self.got]

    def wait(self, pred, seconds: float = 90) -> bool:
        for _ in range(int(seconds / 0.1)):
            if pred(self):
                return True
            time.sleep(0.1)
        return pred(self)


def windows(events: Events) -> list[dict]:
    return [ev for kind, ev in events.got if kind == "window"]


def test_serve_watch_sse_api_key_post_delete(server, arm_ts):
    base = server.url
    assert wb.wait_bound(server.udp_port, 60), "the server never bound the --watch UDP port"
    # the API key guards every /v1/streams route
    assert httpx.get(base + "/v1/streams").status_code == 401
    assert httpx.get(base + "/v1/streams/1/events").status_code == 401
    assert httpx.post(base + "/v1/streams", json={"source": wb.udp_url(wb.free_udp_port())}).status_code == 401
    assert httpx.delete(base + "/v1/streams/1").status_code == 401
    assert httpx.post(base + "/v1/streams/1/alerts", json={"query": "x"}).status_code == 401
    (first,) = httpx.get(base + "/v1/streams", headers=AUTH).json()["streams"]
    assert first["id"] == "1" and first["source"] == wb.udp_url(server.udp_port)
    assert first["alerts"] == ["people arm wrestling"] and first["done"] is False

    events = Events(f"{base}/v1/streams/1/events")
    events.start()
    sender = wb.UdpSender(arm_ts, server.udp_port, repeat=2)
    sender.start()
    try:
        assert events.wait(lambda e: len(windows(e)) >= 4), (events.got, server.log_text()[-3000:])
        assert events.status == 200 and events.content_type.startswith("text/event-stream")
        w = windows(events)
        assert {"source", "start", "end", "time", "top", "latency", "dropped"} <= set(w[0])
        assert [(x["start"], x["end"]) for x in w[:3]] == [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0)]
        assert all(len(x["top"]) == 5 and 0 <= x["top"][0]["score"] <= 1 for x in w)
        # alert score -1: the alert of --watch-alert fires at the first window, once for the episode
        alerts = [ev for kind, ev in events.got if kind == "alert"]
        assert len(alerts) == 1 and alerts[0]["query"] == "people arm wrestling"
        # an upload is answered while the stream is live (the stream's passes take turns with it)
        r = httpx.post(base + "/v1/predict", files={"video": ("arm.mp4", open(CLIP, "rb").read())},
                       headers=AUTH, timeout=120)
        assert r.status_code == 200 and len(r.json()["top"]) == 5, r.text
        # an alert sentence added while it runs
        r = httpx.post(base + "/v1/streams/1/alerts", json={"query": "someone cooking"}, headers=AUTH, timeout=60)
        assert r.status_code == 200 and r.json()["alerts"] == ["people arm wrestling", "someone cooking"], r.text
        assert events.wait(lambda e: any(k == "alert" and ev["query"] == "someone cooking" for k, ev in e.got))
        assert any(k == "alert_added" and ev["query"] == "someone cooking" for k, ev in events.got)
        listed = httpx.get(base + "/v1/streams", headers=AUTH).json()["streams"][0]
        assert listed["windows"] >= 4 and listed["current"]["label"]
    finally:
        sender.stop()
    # DELETE stops it: the open segment is closed, then the event stream ends
    assert httpx.delete(base + "/v1/streams/1", headers=AUTH, timeout=60).json() == {"deleted": "1"}
    assert events.wait(lambda e: "end" in e.kinds(), 30), events.kinds()
    segs = [ev for kind, ev in events.got if kind == "segment"]
    assert segs and all(s["source"] == wb.udp_url(server.udp_port) and s["label"] for s in segs)
    assert segs[-1]["end"] >= segs[-1]["start"]
    assert events.kinds()[-1] == "end" and "summary" in events.kinds()
    assert httpx.delete(base + "/v1/streams/1", headers=AUTH).status_code == 404
    assert httpx.get(base + "/v1/streams/1/events", headers=AUTH).status_code == 404

    # clients add network URLs only; bad options and sentences are 422 in one line
    for body in ({"source": arm_ts}, {"source": "/etc/passwd"}, {"source": "-"}, {"source": "webcam:0"},
                 {"source": wb.udp_url(1), "bogus": 1}, {"source": wb.udp_url(1), "alerts": [""]}, {}):
        r = httpx.post(base + "/v1/streams", json=body, headers=AUTH, timeout=30)
        assert r.status_code == 422 and "\n" not in r.json()["error"], (body, r.text)
    assert "network URL" in httpx.post(base + "/v1/streams", json={"source": arm_ts}, headers=AUTH).json()["error"]
    port = wb.free_udp_port()
    r = httpx.post(base + "/v1/streams", json={"source": wb.udp_url(port), "window": 2, "stride": 1,
                                               "alerts": ["arm wrestling"]}, headers=AUTH, timeout=60)
    assert r.status_code == 200 and r.json()["alerts"] == ["arm wrestling"], r.text
    sid = r.json()["id"]
    assert sid != "1" and wb.wait_bound(port, 30)
    assert httpx.post(f"{base}/v1/streams/{sid}/alerts", json={"query": " "}, headers=AUTH).status_code == 422
    assert httpx.post(base + "/v1/streams/99/alerts", json={"query": "x"}, headers=AUTH).status_code == 404
    assert httpx.delete(f"{base}/v1/streams/{sid}", headers=AUTH, timeout=60).json() == {"deleted": sid}
    # a source that never sends (no reconnect): its stream ends with an error event and takes no alert
    r = httpx.post(base + "/v1/streams", json={"source": wb.udp_url(wb.free_udp_port()), "stall_timeout": 1,
                                               "reconnect": False}, headers=AUTH, timeout=60)
    dead = r.json()["id"]
    for _ in range(300):
        if httpx.get(base + "/v1/streams", headers=AUTH).json()["streams"][0]["done"]:
            break
        time.sleep(0.1)
    quiet = Events(f"{base}/v1/streams/{dead}/events", seconds=30)
    quiet.run()  # replays its events, then `end`
    assert [k for k in quiet.kinds() if k != "summary"] == ["error", "end"], quiet.got
    r = httpx.post(f"{base}/v1/streams/{dead}/alerts", json={"query": "x y"}, headers=AUTH)
    assert r.status_code == 422 and "has ended" in r.json()["error"]
    assert httpx.delete(f"{base}/v1/streams/{dead}", headers=AUTH, timeout=60).status_code == 200
    assert httpx.get(base + "/v1/streams", headers=AUTH).json() == {"streams": []}
    assert httpx.get(base + "/healthz").json()["status"] == "ok"


def test_page_shows_a_live_label_and_takes_an_alert(server, arm_ts, tmp_path):
    from test_serve_browser import CHROMIUM, browser_or_skip
    sync_playwright = browser_or_skip()
    shots = os.environ.get("TEXT4VIS_SCREENSHOTS") or str(tmp_path)
    port = wb.free_udp_port()
    r = httpx.post(server.url + "/v1/streams", json={"source": wb.udp_url(port), "window": 2, "stride": 1},
                   headers=AUTH, timeout=60)
    assert r.status_code == 200, r.text
    sid = r.json()["id"]
    assert wb.wait_bound(port, 30)
    sender = wb.UdpSender(arm_ts, port, repeat=8)
    sender.start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                context = browser.new_context(viewport={"width": 1280, "height": 1000})
                page = context.new_page()
                errors = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(server.url + "/")
                assert page.is_hidden("#live")  # no key yet: no streams to show
                page.evaluate(f"sessionStorage.setItem('text4vis-key', '{KEY}')")
                card = f"#live .live-stream[data-id='{sid}']"
                page.wait_for_selector(card, timeout=30_000)
                assert page.inner_text(f"{card} .live-source") == wb.udp_url(port)
                # a live label: one of the model's labels, with its score, as windows arrive
                page.wait_for_function(f"document.querySelector(\"{card} .live-status\").textContent"
                                       f".includes('latency')", timeout=60_000)  # from its Server-Sent Events
                assert page.inner_text(f"{card} .live-score").endswith("%")
                label = page.inner_text(f"{card} .live-label")
                labels = httpx.get(server.url + "/v1/labels", headers=AUTH).json()["labels"]
                assert label in labels
                # type an alert sentence: it is added to the stream and (score -1) fires in the timeline
                page.fill(f"{card} .live-alert-input", "two people arm wrestling")
                page.press(f"{card} .live-alert-input", "Enter")
                page.wait_for_selector(f"{card} .live-chip:has-text('two people arm wrestling')", timeout=60_000)
                page.wait_for_selector(f"{card} .live-item.alert:has-text('two people arm wrestling')",
                                       timeout=60_000)
                assert page.input_value(f"{card} .live-alert-input") == ""
                info = [s for s in httpx.get(server.url + "/v1/streams", headers=AUTH).json()["streams"]
                        if s["id"] == sid][0]
                assert info["alerts"] == ["two people arm wrestling"]
                page.locator("#live").scroll_into_view_if_needed()
                page.screenshot(path=os.path.join(shots, "serve_live_1280.png"), full_page=True)
                page.set_viewport_size({"width": 390, "height": 844})  # a phone: the card fits, no sideways scroll
                assert page.evaluate("document.documentElement.scrollWidth") <= 390
                box = page.locator(card).bounding_box()
                assert box["x"] >= 0 and box["x"] + box["width"] <= 390
                page.locator(card).scroll_into_view_if_needed()
                page.screenshot(path=os.path.join(shots, "serve_live_390.png"), full_page=True)
                # the stream deleted: its card goes at the next refresh
                assert httpx.delete(f"{server.url}/v1/streams/{sid}", headers=AUTH, timeout=60).status_code == 200
                page.wait_for_selector(card, state="detached", timeout=30_000)
                others = httpx.get(server.url + "/v1/streams", headers=AUTH).json()["streams"]
                assert page.is_hidden("#live") == (others == [])  # the panel goes with the last stream
                assert errors == []
            finally:
                browser.close()
    finally:
        sender.stop()


def test_watch_file_at_its_pace_then_sigterm_with_a_client(tmp_path, tiny_dir):
    """`serve --watch FILE` plays the file at its own pace: the windows a client reads are timeline's on
    that file (spans, labels, scores within 1e-4). SIGTERM while the client's event stream is open: the
    stream ends (`end`), the server exits 0 (an open event stream does not hold the shutdown)."""
    import numpy as np

    import text4vis
    clip_file = str(tiny_dir / "openai_sd.pt")
    s = Server(tmp_path, clip_file, "--decode-workers", "1", "--watch", CLIP, "--watch-window", "2",
               "--watch-stride", "1")
    try:
        s.wait_ready()
        events = Events(s.url + "/v1/streams/1/events", seconds=60)
        events.start()
        assert events.wait(lambda e: len(windows(e)) >= 2, 60), (events.got, s.log_text()[-3000:])
        s.proc.terminate()
        assert s.proc.wait(30) == 0, s.log_text()[-3000:]
        events.join(10)
    finally:
        s.stop()
    assert events.got[-1] == ("end", {"reason": "server stopping"}), events.got[-3:]
    assert "watching " + CLIP + " as stream 1" in s.log_path.read_text()
    rec = text4vis.load(clip=clip_file, labels="ucf101", frames=4, device="cpu")
    want = {(w["start"], w["end"]): w for w in rec.timeline(CLIP, window=2, stride=1, topk=5)["windows"]}
    got = windows(events)
    assert got and got[-1]["end"] < 10.0  # stopped while the file was still playing (at its own pace)
    for w in got:
        ref = want[(w["start"], w["end"])]
        assert [t["label"] for t in w["top"]] == [t["label"] for t in ref["top"]]
        assert np.allclose([t["score"] for t in w["top"]], [t["score"] for t in ref["top"]], atol=1e-4)


def test_serve_watch_options_checked_before_loading(capsys, tmp_path):
    from text4vis import cli
    missing = str(tmp_path / "no-such.mp4")
    for argv, words in [(["--watch", missing], "no-such.mp4': no such file"),
                        (["--watch", "udp://127.0.0.1:5000", "--watch-window", "0"], "--watch-window and --watch-stride"),
                        (["--watch-alert-score", "2"], "--watch-alert-score must be at most 1.0")]:
        assert cli.main(["serve", "--port", "0", *argv]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_a_busy_stream_leaves_uploads_their_turn(tiny_dir):
    """The model worker is kept busy by a stream (its run_model, as serve builds it, called back to back
    from the stream's thread); an upload's job submitted meanwhile is answered after at most two of the
    stream's units (the one running and one queued before it), never after the stream's backlog."""
    import types

    import torch

    import text4vis
    from text4vis.serve.batching import Job, ModelWorker
    from text4vis.serve.service import ServeSettings
    from text4vis.serve.streams import stream_hub
    rec = text4vis.load(clip=str(tiny_dir / "openai_sd.pt"), labels="ucf101", frames=4, device="cpu")
    worker = ModelWorker(rec, max_batch=8)
    hub = stream_hub(rec, ServeSettings(), lambda: types.SimpleNamespace(model=worker))
    log: list[str] = []
    stop = threading.Event()
    clips = torch.randint(0, 256, (8, 4, 3, rec.input_size, rec.input_size), dtype=torch.uint8)

    def unit():
        with torch.no_grad():
            rec.model.embed(clips)  # a stream's forward pass of 8 windows
        log.append("stream")

    def stream():
        for _ in range(500):
            if stop.is_set():
                return
            hub.run_model(unit)
    t = threading.Thread(target=stream, daemon=True)
    t.start()
    try:
        for _ in range(600):
            if len(log) >= 3:
                break
            time.sleep(0.05)
        assert len(log) >= 3, "the stream never ran"
        before = len(log)
        views = torch.randint(0, 256, (1, 4, 3, rec.input_size, rec.input_size), dtype=torch.uint8)
        future = worker.submit(Job(views, "upload.mp4", 3))
        at_answer: list[int] = []
        future.add_done_callback(lambda f: at_answer.append(len(log)))  # on the worker's thread, at once
        answer = future.result(120)
        for _ in range(600):  # the stream goes on after the upload's answer
            if len(log) >= at_answer[0] + 2:
                break
            time.sleep(0.05)
    finally:
        stop.set()
        t.join(60)
        worker.stop()
    assert len(answer["top"]) == 3 and at_answer[0] - before <= 2, (before, at_answer, len(log))
    assert len(log) >= at_answer[0] + 2
