"""One client must not stall the others (issue 21, items 3-5), against a real server on 127.0.0.1 and the
model worker in-process: slow uploads (raw sockets trickling bytes) hold no queue slot and are cut off
(408, or closed when even the headers are slow); a long timeline shares the model thread round-robin with
a 1-clip predict (the predict is answered first); an abandoned timeline stops (logged 499, not 200); a port
in use is one line and exit 2 before any model loads; a decode process over its memory bound is recycled."""
from __future__ import annotations

import os
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import torch
from conftest import SHARED_VIDEOS, write_video
from serving import Server

from text4vis import cli

pytestmark = [pytest.mark.server]

CLIP = os.path.join(SHARED_VIDEOS, "arm_wrestling_h264.mp4")
BOUNDARY = "fairb0undary"


def multipart(fields: dict, name: str, data: bytes) -> bytes:
    out = b""
    for k, v in fields.items():
        out += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
    out += (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="video"; filename="{name}"\r\n\r\n').encode()
    return out + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def request_bytes(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def health(server) -> dict:
    return httpx.get(server.url + "/healthz", timeout=30).json()


def poll(server, test, what: str, tries: int = 600) -> dict:
    for _ in range(tries):  # at most 600 x 0.1 s (plus the requests' own time)
        h = health(server)
        if test(h):
            return h
        time.sleep(0.1)
    raise AssertionError(f"never {what}: {h}\n{server.log_text()[-3000:]}")


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> str:
    """150 s at 4 fps (48 px): 597 windows of 1 s every 0.25 s."""
    path = str(tmp_path_factory.mktemp("long") / "long.mp4")
    frames = (np.random.RandomState(0).rand(600, 48, 48, 3) * 255).astype(np.uint8)
    write_video(path, frames, fps=4)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory, clip_file):
    """max-queue 2, uploads cut off after 3 s, headers after 2 s, one clip per forward pass (so a long
    timeline is many passes)."""
    s = Server(tmp_path_factory.mktemp("server_fair"), clip_file, "--max-queue", "2", "--upload-timeout", "3",
               "--header-timeout", "2", "--decode-workers", "1", "--max-batch", "1")
    try:
        yield s.wait_ready()
    finally:
        s.stop()
    assert s.leftovers() == []


def test_slow_uploads_hold_no_slot_and_are_cut_off(server):
    data = open(CLIP, "rb").read()
    body = multipart({}, "slow.mp4", data)
    whole = request_bytes("/v1/predict", body)
    cut = len(whole) - len(body) + 200  # the headers and 200 bytes of the body
    slow = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(4)]
    for s in slow:
        s.sendall(whole[:cut])
    headers_only = socket.create_connection(("127.0.0.1", server.port))
    headers_only.sendall(whole[:20])  # never finishes its request headers
    answers: dict[int, bytes] = {}

    def trickle(i: int, s: socket.socket) -> None:  # a byte every 0.2 s until the server answers
        s.settimeout(0.2)
        for k in range(300):
            try:
                s.sendall(whole[cut + k:cut + k + 1])
                got = s.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            answers[i] = got
            return

    threads = [threading.Thread(target=trickle, args=(i, s)) for i, s in enumerate(slow)]
    for t in threads:
        t.start()
    try:
        poll(server, lambda h: h["uploading"] == 4, "4 uploads arriving")
        # four slow uploads and --max-queue 2: a complete upload still gets its slot and its answer
        r = httpx.post(server.url + "/v1/predict", files={"video": ("quick.mp4", data)}, timeout=120)
        assert r.status_code == 200 and r.json()["video"] == "quick.mp4"
    finally:
        for t in threads:
            t.join(120)
    for i in range(4):
        head, _, text = answers[i].partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), answers[i]
        assert b"did not arrive within 3 s" in text or text == b""  # the body may come in a second packet
    headers_only.settimeout(60)
    assert headers_only.recv(100) == b""  # closed by the server, no answer
    for s in [*slow, headers_only]:
        s.close()
    h = poll(server, lambda h: h["uploading"] == 0 and h["in_flight"] == 0, "every upload gone")
    assert h["clients_gone"] == 0
    log = server.log_text()
    assert log.count("POST /v1/predict 408") == 4 and "no request headers within 2 s" in log
    assert server.uploads() == []  # the partial uploads are deleted


def test_abandoned_timeline_stops(server, long_video):
    body = multipart({"window": "1", "stride": "0.25"}, "abandoned.mp4", open(long_video, "rb").read())
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(request_bytes("/v1/timeline", body))
    h = poll(server, lambda h: h["clips_pending"] > 0, "the timeline at the model")
    s.close()  # the client goes away half-way through the model's work
    h = poll(server, lambda h: h["in_flight"] == 0, "the abandoned timeline stopped")
    assert h["model_jobs"] == 0 and h["clips_pending"] == 0 and h["clients_gone"] == 1
    log = server.log_text()
    line = next(ln for ln in log.splitlines() if "POST /v1/timeline" in ln)
    assert " 499 " in line and "abandoned.mp4: the client went away after" in line and "of 597 windows" in line
    done = int(line.split("went away after ")[1].split()[0])
    assert done < 597
    assert server.uploads() == []


def test_the_work_one_request_may_ask_for_is_bounded_and_said(server, long_video):
    data = open(long_video, "rb").read()
    r = httpx.post(server.url + "/v1/timeline", files={"video": ("long.mp4", data)},
                   data={"window": "1", "stride": "0.1"}, timeout=120)
    assert r.status_code == 400 and "at most 900 per request (use a larger stride)" in r.json()["error"], r.text
    short = open(CLIP, "rb").read()
    labels = "\n".join(f"label {i}" for i in range(2001))
    r = httpx.post(server.url + "/v1/predict", files={"video": ("a.mp4", short)}, data={"labels": labels}, timeout=120)
    assert r.status_code == 400 and "at most 2000 custom labels" in r.json()["error"], r.text
    r = httpx.post(server.url + "/v1/predict", files={"video": ("a.mp4", short)}, data={"views": "11x3"}, timeout=120)
    assert r.status_code == 400 and "at most 30 views" in r.json()["error"], r.text


def test_port_in_use_is_one_line_before_the_model_loads(server, capsys):
    # the port is the running server's; the model file does not exist: the port is checked first
    assert cli.main(["serve", "--clip", "/nonexistent/model.pt", "--port", str(server.port)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"127.0.0.1:{server.port} is already in use" in err, err
    assert "Traceback" not in err and "nonexistent" not in err


# ----------------------------------------------------------------------------- in-process: the model worker

@pytest.fixture(scope="module")
def rec(clip_file):
    import text4vis
    return text4vis.load(clip=clip_file, labels="ucf101", frames=4, device="cpu")


def test_a_predict_is_answered_before_a_long_timeline(rec):
    from text4vis.serve.batching import Job, ModelWorker
    from text4vis.serve.decode import decode_views
    clips = torch.zeros(800, 4, 3, rec.input_size, rec.input_size, dtype=torch.uint8)
    windows = {"spans": [(i / 4, i / 4 + 1) for i in range(800)], "duration": 201.0, "fps": 4.0, "min_score": 0.0,
               "smooth": 1}
    views = torch.from_numpy(decode_views(CLIP, 4, rec.input_size, 1, 1))
    worker = ModelWorker(rec, max_batch=2)
    order = []
    try:
        long = Job(clips, "long.mp4", 3, windows=windows)
        worker.submit(long).add_done_callback(lambda f: order.append("timeline"))
        for _ in range(6000):  # the timeline is being worked on
            if long.done:
                break
            time.sleep(0.005)
        assert long.done > 0
        short = worker.submit(Job(views, "short.mp4", 3))
        short.add_done_callback(lambda f: order.append("predict"))
        record = short.result(120)
        timeline = long.future.result(300)
    finally:
        worker.stop()
    assert order == ["predict", "timeline"]  # served in turns: the predict did not wait for 800 windows
    assert record["video"] == "short.mp4" and len(record["top"]) == 3
    assert len(timeline["windows"]) == 800
    (want,) = rec.predict([CLIP], topk=3, batch_size=1, workers=0)
    assert [t["label"] for t in record["top"]] == [t["label"] for t in want["top"]]
    assert all(abs(a["score"] - b["score"]) < 1e-5 for a, b in zip(record["top"], want["top"]))


def test_a_new_label_set_is_built_in_turns(rec):
    """300 new labels are 5 units of text-tower work; a predict with the model's labels goes between them,
    and the classifier built in chunks scores as the one built at once."""
    from text4vis.classifiers import DEFAULT_PROMPTS, text_classifier
    from text4vis.engine import scores_from_embeddings
    from text4vis.serve.batching import LABEL_CHUNK, Job, ModelWorker
    from text4vis.serve.decode import decode_views
    labels = tuple(f"activity number {i}" for i in range(300))
    assert len(labels) > 4 * LABEL_CHUNK
    views = torch.from_numpy(decode_views(CLIP, 4, rec.input_size, 1, 1))
    worker = ModelWorker(rec, max_batch=8)
    order = []
    try:
        many = worker.submit(Job(views, "many.mp4", 5, labels))
        many.add_done_callback(lambda f: order.append("labels"))
        plain = worker.submit(Job(views, "plain.mp4", 5))
        plain.add_done_callback(lambda f: order.append("plain"))
        got, _ = many.result(300), plain.result(300)
    finally:
        worker.stop()
    assert order == ["plain", "labels"]
    cls = text_classifier(rec.towers, list(labels), DEFAULT_PROMPTS, cache=False)
    scores = scores_from_embeddings(torch.nn.functional.normalize(rec.encode_video(views).float(), dim=-1),
                                    cls.weight)[0]
    best = torch.argsort(scores, descending=True)[:5]
    assert [t["label"] for t in got["top"]] == [labels[i] for i in best]
    assert all(abs(t["score"] - float(scores[i])) < 1e-4 for t, i in zip(got["top"], best))
