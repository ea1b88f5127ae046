"""`text4vis serve` as a real server on 127.0.0.1: every endpoint and error status, answers identical to
`text4vis predict --json`, 16 concurrent uploads, the queue-full 503, the API key, SIGTERM with a request in
flight (answered, then exit, no temporary files left); in-process: the batching model worker and the decode
pool's time limit (a hung worker killed and replaced)."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import httpx
import numpy as np
import pytest
import torch
from conftest import SHARED_VIDEOS, write_video
from serving import Server

from text4vis import cli
from text4vis.labels import load_labels

pytestmark = [pytest.mark.server]

KEY = "test-key-0123456789"
CLIPS = ["arm_wrestling_h264.mp4", "cleaning_pool_xvid_mp3.avi", "rotate90_keyboard_3frames_0.1s.mov",
         "flipping_pancake_h264_opus.mkv"]
CUSTOM = "arm wrestling\ncleaning a pool\ntyping on a keyboard\nflipping a pancake\n"


def clip(name: str) -> str:
    path = os.path.join(SHARED_VIDEOS, name)
    assert os.path.isfile(path), f"test video {name} is missing from tests/data/videos"
    return path


def upload(name: str, **fields) -> dict:
    return {"files": {"video": (name, open(clip(name), "rb").read())},
            "data": {k: str(v) for k, v in fields.items()}}


def assert_error(r: httpx.Response, status: int, *words: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    assert "\n" not in body["error"] and "Traceback" not in r.text and "/tmp" not in body["error"]
    for w in words:
        assert w in body["error"], body["error"]
    return body["error"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory, clip_file):
    """A: the default service (upload limit 1 MB). B: max-queue 1 and an API key (ends with SIGTERM)."""
    key_file = tmp_path_factory.mktemp("key") / "key.txt"
    key_file.write_text(KEY + "\n")
    a = Server(tmp_path_factory.mktemp("server_a"), clip_file, "--max-upload-mb", "1", "--decode-workers", "2",
               "--batch-wait-ms", "20")
    index_dir = tmp_path_factory.mktemp("index") / "clips"
    assert cli.main(["index", "build", *[clip(n) for n in CLIPS], "--out", str(index_dir), "--clip", clip_file,
                     "--frames", "4", "--device", "cpu"]) == 0
    b = Server(tmp_path_factory.mktemp("server_b"), clip_file, "--max-queue", "1", "--decode-workers", "1",
               "--api-key-file", str(key_file), "--index", str(index_dir))
    b.index_dir = index_dir
    try:
        yield a.wait_ready(), b.wait_ready()
    finally:
        a.stop()
        b.stop()
    assert a.leftovers() == [] and b.leftovers() == []


@pytest.fixture(scope="module")
def server(servers):
    return servers[0]


def cli_record(capsys, monkeypatch, clip_file, name: str, *options: str) -> dict:
    """`text4vis predict NAME --json` run in the clips' folder, so that "video" is the bare file name."""
    monkeypatch.chdir(SHARED_VIDEOS)
    rc = cli.main(["predict", name, "--clip", clip_file, "--labels", "ucf101", "--frames", "4", "--json",
                   "--quiet", *options])
    out = capsys.readouterr().out
    assert rc == 0
    (line,) = out.splitlines()
    return json.loads(line)


# ----------------------------------------------------------------------------- endpoints

def test_health_labels_page_docs(server):
    h = httpx.get(server.url + "/healthz").json()
    assert h["status"] == "ok" and h["labels"] == 101 and h["frames"] == 4 and h["model"].endswith("openai_sd.pt")
    assert h["custom_labels"] is True and h["max_upload_mb"] == 1
    labels = httpx.get(server.url + "/v1/labels").json()
    assert labels["labels"] == load_labels("ucf101") and labels["count"] == 101
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="file"' in page.text and "static/app.js" in page.text and "//cdn" not in page.text
    for asset in ("static/app.js", "static/app.css"):
        r = httpx.get(f"{server.url}/{asset}")
        assert r.status_code == 200 and len(r.text) > 1000 and "http://" not in r.text and "https://" not in r.text
    assert httpx.get(server.url + "/docs").status_code == 200
    spec = httpx.get(server.url + "/openapi.json").json()
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(body["properties"]) == {"video", "labels", "topk", "views"}
    assert {"/v1/timeline", "/v1/search", "/v1/labels", "/healthz"} <= set(spec["paths"])
    assert_error(httpx.get(server.url + "/v1/nothing"), 404)
    assert_error(httpx.get(server.url + "/v1/predict"), 405)


@pytest.mark.parametrize("name,options", [(CLIPS[0], {"topk": 3}), (CLIPS[1], {"topk": 2, "views": "2x3"})])
def test_predict_identical_to_cli(server, capsys, monkeypatch, clip_file, name, options):
    r = httpx.post(server.url + "/v1/predict", **upload(name, **options), timeout=60)
    assert r.status_code == 200, r.text
    argv = [a for k, v in options.items() for a in (f"--{k}", str(v))]
    assert r.json() == cli_record(capsys, monkeypatch, clip_file, name, *argv)
    assert len(r.json()["top"]) == options["topk"]


def test_custom_labels_identical_to_cli(server, capsys, monkeypatch, clip_file, tmp_path):
    labels_file = tmp_path / "mine.txt"
    labels_file.write_text(CUSTOM)
    for _ in range(2):  # the second answer comes from the classifier cache
        r = httpx.post(server.url + "/v1/predict", **upload(CLIPS[0], labels=CUSTOM, topk=10), timeout=60)
        assert r.status_code == 200, r.text
        record = r.json()
        assert sorted(t["label"] for t in record["top"]) == sorted(CUSTOM.split("\n")[:-1])  # topk capped at 4
        expected = cli_record(capsys, monkeypatch, clip_file, CLIPS[0], "--labels", str(labels_file), "--topk", "10")
        assert record == expected
    # the model's own labels are still there for the next request
    plain = httpx.post(server.url + "/v1/predict", **upload(CLIPS[0]), timeout=60).json()
    assert all(t["label"] in load_labels("ucf101") for t in plain["top"]) and len(plain["top"]) == 5


def test_client_file_name_is_only_a_label(server):
    files = {"video": ("../../../etc/passwd/evil clip.mp4", open(clip(CLIPS[2]), "rb").read())}
    r = httpx.post(server.url + "/v1/predict", files=files, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["video"] == "evil clip.mp4"


def test_timeline_matches_cli(server, capsys, monkeypatch, clip_file):
    options = {"window": "2", "stride": "1", "topk": "2"}
    r = httpx.post(server.url + "/v1/timeline", **upload(CLIPS[0], **options), timeout=120)
    assert r.status_code == 200, r.text
    got = r.json()
    monkeypatch.chdir(SHARED_VIDEOS)
    assert cli.main(["timeline", CLIPS[0], "--clip", clip_file, "--labels", "ucf101", "--frames", "4", "--json",
                     "--quiet", *[a for k, v in options.items() for a in (f"--{k}", v)]]) == 0
    want = json.loads(capsys.readouterr().out)
    assert {k: got[k] for k in ("video", "duration", "fps")} == {k: want[k] for k in ("video", "duration", "fps")}
    assert len(got["windows"]) == len(want["windows"]) == 9  # 10 s: windows of 2 s every 1 s
    for a, b in zip(got["windows"] + got["segments"], want["windows"] + want["segments"]):
        assert (a["start"], a["end"]) == (b["start"], b["end"])
        for x, y in zip(a.get("top", [a]), b.get("top", [b])):  # the same labels; scores up to batching noise
            assert x["label"] == y["label"] and abs(x["score"] - y["score"]) < 1e-5
    assert len(got["segments"]) == len(want["segments"]) >= 1
    custom = httpx.post(server.url + "/v1/timeline", **upload(CLIPS[0], labels=CUSTOM, window=5, stride=5), timeout=120)
    assert custom.status_code == 200 and len(custom.json()["windows"]) == 2
    assert {s["label"] for s in custom.json()["segments"]} <= set(CUSTOM.splitlines())
    assert_error(httpx.post(server.url + "/v1/timeline", **upload(CLIPS[0], window=0)), 400, "window")
    assert_error(httpx.post(server.url + "/v1/timeline", **upload(CLIPS[0], views="1x1")), 400, "unknown form field")
    assert_error(httpx.post(server.url + "/v1/timeline", files={"video": ("x.mp4", b"not a video" * 9)}), 422, "x.mp4")
    assert_error(httpx.get(server.url + "/v1/search?q=dog"), 404, "no video index is loaded")


def test_search_by_text_and_by_video(servers):
    from text4vis import VideoIndex
    b = servers[1]
    auth = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(b.url + "/healthz").json()["index_entries"] == len(CLIPS)
    r = httpx.get(b.url + "/v1/search", params={"q": "someone flipping a pancake", "k": 3}, headers=auth, timeout=60)
    assert r.status_code == 200, r.text
    idx = VideoIndex.open(str(b.index_dir))
    want = idx.search("someone flipping a pancake", 3)
    got = r.json()
    assert got["query"] == want["query"] and [h["video"] for h in got["results"]] == [h["video"] for h in want["results"]]
    assert all(abs(x["score"] - y["score"]) < 1e-5 for x, y in zip(got["results"], want["results"]))
    like = httpx.post(b.url + "/v1/search", **upload(CLIPS[1], k=2), headers=auth, timeout=60)
    assert like.status_code == 200, like.text
    hits = like.json()["results"]
    assert like.json()["query"] == CLIPS[1] and len(hits) == 2
    assert hits[0]["video"] == clip(CLIPS[1]) and hits[0]["score"] > 0.999  # the clip finds itself first
    assert_error(httpx.get(b.url + "/v1/search?q=&k=3", headers=auth), 400, "q")
    assert_error(httpx.get(b.url + "/v1/search?q=dog&k=0", headers=auth), 400, "k")
    assert_error(httpx.get(b.url + "/v1/search?q=dog&k=many", headers=auth), 400)
    assert_error(httpx.get(b.url + "/v1/search?q=dog"), 401)


# ----------------------------------------------------------------------------- errors

def test_undecodable_is_422(server, odd_inputs):
    post = lambda files: httpx.post(server.url + "/v1/predict", files=files, timeout=60)  # noqa: E731
    assert_error(post({"video": ("notes.mp4", b"this is not a video\n" * 50)}), 422, "notes.mp4", "not a readable video")
    assert_error(post({"video": ("empty.mp4", b"")}), 422, "empty.mp4", "empty")
    audio = open(odd_inputs["audio_only"], "rb").read()
    assert_error(post({"video": ("song.m4a", audio)}), 422, "song.m4a", "no video stream")
    half = open(odd_inputs["truncated_mp4"], "rb").read()
    assert_error(post({"video": ("half.mp4", half)}), 422, "half.mp4")
    log = server.log_text()
    assert "POST /v1/predict 422" in log and "notes.mp4: not a readable video" in log and "Traceback" not in log


def write_private_ts(path) -> None:
    """A small MPEG-TS video: the server's own file that no upload may read."""
    write_video(str(path), np.full((20, 48, 64, 3), 90, np.uint8), fps=10)


def test_uploaded_playlists_read_no_other_file(server, tmp_path):
    """An HLS playlist or concat list naming the server's own files (absolute, or relative to the upload
    folder) is refused without opening them: the answer is the same whether the file exists or not."""
    private = tmp_path / "private.ts"
    write_private_ts(private)
    missing = tmp_path / "missing.ts"
    rel = os.path.relpath(private, server.tmp)  # from the server's TMPDIR; the upload folder is one below it
    hls = "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2.0,\n{}\n#EXT-X-ENDLIST\n"
    answers = []
    for target in (private, missing, "../" + rel):
        for name, body in (("list.m3u8", hls.format(target)), ("list.ffconcat", f"ffconcat version 1.0\nfile '{target}'\n")):
            for route in ("/v1/predict", "/v1/timeline"):
                r = httpx.post(server.url + route, files={"video": (name, body.encode())}, timeout=60)
                answers.append(assert_error(r, 422, name, "not a readable video"))
    assert len(set(answers)) == 2, answers  # one message per client file name, whatever the playlist names
    assert str(private) not in server.log_text()


def test_media_files_only_is_a_switch_of_the_reader(tmp_path, monkeypatch):
    """A playlist the user chose opens as FFmpeg opens it; under media_files_only() it is refused, while the
    real clips (MP4, MOV, AVI, MKV, GIF, MPEG-TS) still open."""
    from text4vis import video
    private = tmp_path / "private.ts"
    write_private_ts(private)
    playlist = tmp_path / "list.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:2.0,\n{private}\n#EXT-X-ENDLIST\n")
    monkeypatch.setenv(video.MEDIA_FILES_ONLY_ENV, "0")
    assert video.probe(str(playlist)).num_frames == 20
    video.media_files_only()
    assert os.environ[video.MEDIA_FILES_ONLY_ENV] == "1"
    with pytest.raises(video.VideoError, match="playlists and reference files are refused"):
        video.probe(str(playlist))
    assert video.probe(str(private)).num_frames == 20
    for name in CLIPS + ["cricket_shot_ucf101.gif"]:
        assert video.probe(clip(name)).num_frames > 0


def test_bad_parameters_are_400(server):
    url = server.url + "/v1/predict"
    for fields, words in [({"topk": "abc"}, ["topk", "whole number"]), ({"topk": "0"}, ["topk", "between 1"]),
                          ({"views": "2x2"}, ["views"]), ({"views": "banana"}, ["views", "CxK"]),
                          ({"views": "20x3"}, ["at most"]),
                          ({"labels": "a\nb\na"}, ["appears twice"]), ({"colour": "red"}, ["unknown form field 'colour'"])]:
        assert_error(httpx.post(url, **upload(CLIPS[2], **fields), timeout=60), 400, *words)
    assert_error(httpx.post(url, data={"topk": "3"}, files={"other": ("x.txt", b"x")}), 400, "unknown form field")
    assert_error(httpx.post(url, data={"topk": "3"}, files={}), 400, "multipart")
    assert_error(httpx.post(url, files={"labels": (None, "a\nb")}), 400, "no video")
    assert_error(httpx.post(url, json={"video": "/etc/passwd"}), 400, "multipart/form-data")
    assert_error(httpx.post(url, content=b"--xx\r\nnonsense", headers={"content-type": "multipart/form-data; boundary=xx"}),
                 400)
    assert server.uploads() == []  # partial uploads of refused requests are gone


def test_over_the_limit_is_413_while_streaming(server):
    big = open(clip("cricket_shot_ucf101.gif"), "rb").read()  # 2.4 MB against the 1 MB limit
    assert len(big) > 2 * 1024 * 1024
    r = httpx.post(server.url + "/v1/predict", files={"video": ("big.gif", big)}, timeout=60)
    assert_error(r, 413, "over the limit")  # Content-Length says so: refused before reading the body

    sent = []

    def chunks():  # no Content-Length: the server must count while the upload streams in
        boundary = b"b0undary"
        yield b"--" + boundary + b'\r\nContent-Disposition: form-data; name="video"; filename="big.gif"\r\n\r\n'
        for i in range(0, len(big), 64 * 1024):
            sent.append(i)
            yield big[i:i + 64 * 1024]
        yield b"\r\n--" + boundary + b"--\r\n"

    try:
        r = httpx.post(server.url + "/v1/predict", content=chunks(), timeout=60,
                       headers={"content-type": "multipart/form-data; boundary=b0undary"})
        assert_error(r, 413, "over the limit")
    except httpx.TransportError:
        pass  # the server may close the connection while the client still sends; the log says 413
    assert "POST /v1/predict 413" in server.log_text()
    assert server.uploads() == []  # the partial upload is gone
    assert os.stat(server.upload_folder()).st_mode & 0o777 == 0o700  # this user only


# ----------------------------------------------------------------------------- load

def test_16_concurrent_uploads_all_answered(server):
    expected = {n: httpx.post(server.url + "/v1/predict", **upload(n, topk=3), timeout=60).json() for n in CLIPS}

    async def main():
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            names = [CLIPS[i % len(CLIPS)] for i in range(16)]
            answers = await asyncio.gather(*(client.post("/v1/predict", **upload(n, topk=3)) for n in names))
            return names, answers

    names, answers = asyncio.run(main())
    for name, r in zip(names, answers):
        assert r.status_code == 200, r.text
        got, want = r.json(), expected[name]
        assert got["video"] == name and [t["label"] for t in got["top"]] == [t["label"] for t in want["top"]]
        assert all(abs(a["score"] - b["score"]) < 1e-4 for a, b in zip(got["top"], want["top"]))
    assert server.log_text().count("POST /v1/predict 200") >= 16


# ----------------------------------------------------------------------------- queue, key, shutdown (server B)

async def slow_upload(client, name: str, release: asyncio.Event, **headers):
    """A predict request whose body waits for `release` half-way: it holds its place in the queue."""
    data = open(clip(name), "rb").read()
    boundary = b"slowb0undary"

    async def body():
        yield b"--" + boundary + b'\r\nContent-Disposition: form-data; name="video"; filename="' + name.encode() + b'"\r\n\r\n'
        yield data[: len(data) // 2]
        await release.wait()
        yield data[len(data) // 2:]
        yield b"\r\n--" + boundary + b"--\r\n"

    return await client.post("/v1/predict", content=body(),
                             headers={"content-type": "multipart/form-data; boundary=slowb0undary", **headers})


async def wait_in_flight(client, n: int) -> None:
    for _ in range(200):
        if (await client.get("/healthz")).json()["in_flight"] == n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never {n} requests in flight")


def test_api_key(servers):
    b = servers[1]
    url = b.url + "/v1/predict"
    assert_error(httpx.post(url, **upload(CLIPS[2])), 401, "API key")
    assert_error(httpx.post(url, **upload(CLIPS[2]), headers={"Authorization": "Bearer wrong-key-000"}), 401)
    assert_error(httpx.get(b.url + "/v1/labels", headers={"X-API-Key": KEY[:-1]}), 401)
    ok = httpx.post(url, **upload(CLIPS[2], topk=2), headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert ok.status_code == 200 and len(ok.json()["top"]) == 2
    assert httpx.get(b.url + "/v1/labels", headers={"X-API-Key": KEY}).json()["count"] == 101
    assert httpx.get(b.url + "/healthz").status_code == 200 and httpx.get(b.url + "/").status_code == 200
    assert "POST /v1/predict 401" in b.log_text()


def test_queue_full_is_503_with_retry_after(servers):
    b = servers[1]
    auth = {"Authorization": f"Bearer {KEY}"}

    async def main():
        release = asyncio.Event()
        async with httpx.AsyncClient(base_url=b.url, timeout=60) as client:
            first = asyncio.create_task(slow_upload(client, CLIPS[0], release, **auth))
            await wait_in_flight(client, 1)
            second = await client.post("/v1/predict", **upload(CLIPS[2]), headers=auth)
            release.set()
            return second, await first

    second, first = asyncio.run(main())
    assert_error(second, 503, "busy")
    assert second.headers["Retry-After"] == "1"
    assert first.status_code == 200 and first.json()["video"] == CLIPS[0]


def test_sigterm_finishes_the_request_in_flight(servers, clip_file):
    b = servers[1]
    auth = {"Authorization": f"Bearer {KEY}"}
    expected = httpx.post(b.url + "/v1/predict", **upload(CLIPS[0]), headers=auth, timeout=60).json()

    async def main():
        release = asyncio.Event()
        async with httpx.AsyncClient(base_url=b.url, timeout=60) as client:
            task = asyncio.create_task(slow_upload(client, CLIPS[0], release, **auth))
            await wait_in_flight(client, 1)
            b.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            assert b.proc.poll() is None  # still answering the request in flight
            release.set()
            return await task

    r = asyncio.run(main())
    assert r.status_code == 200 and r.json() == expected
    assert b.proc.wait(60) == 0
    assert b.leftovers() == []  # the private upload folder and everything in it are gone
    log = b.log_text()
    assert "Traceback" not in log and "stopped: upload folder removed" in log


# ----------------------------------------------------------------------------- in-process pieces

def test_model_worker_batches_concurrent_jobs(clip_file):
    import text4vis
    from text4vis.serve.batching import Job, ModelWorker
    from text4vis.serve.decode import decode_views
    rec = text4vis.load(clip=clip_file, labels="ucf101", frames=4, device="cpu")
    views = {n: torch.from_numpy(decode_views(clip(n), 4, rec.input_size, 1, 1)) for n in CLIPS}
    single = ModelWorker(rec, max_batch=1)
    alone = {n: single.submit(Job(v, n, 3)).result(60) for n, v in views.items()}
    single.stop()
    submitted = []
    worker = ModelWorker(rec, max_batch=8, batch_wait_ms=5000, upstream=lambda: len(CLIPS) - len(submitted))
    futures = []
    for n, v in views.items():  # the worker waits while requests are still on their way, then takes all four
        futures.append(worker.submit(Job(v, n, 3)))
        submitted.append(n)
    together = [f.result(60) for f in futures]
    worker.stop()
    assert list(worker.batches) == [len(CLIPS)] and list(single.batches) == [1] * len(CLIPS)
    for got in together:
        want = alone[got["video"]]
        assert [t["label"] for t in got["top"]] == [t["label"] for t in want["top"]]
        assert all(abs(a["score"] - b["score"]) < 1e-5 for a, b in zip(got["top"], want["top"]))
    for n, r in zip(CLIPS, rec.predict([clip(n) for n in CLIPS], topk=3, batch_size=1, workers=0)):
        assert [t["label"] for t in alone[n]["top"]] == [t["label"] for t in r["top"]]  # predict's record
        assert all(abs(a["score"] - b["score"]) < 1e-5 for a, b in zip(alone[n]["top"], r["top"]))


def test_model_worker_breaks_ties_in_label_order(clip_file, monkeypatch):
    """The service's records use the one top-k rule (records.py): equal scores in label order, for a
    predict record and for each window of a timeline record (tests/test_records.py: the other surfaces)."""
    import text4vis
    from text4vis import engine
    from text4vis.serve.batching import Job, ModelWorker
    labels = ["a", "b", "c", "d", "e"]
    tied = torch.tensor([[0.1, 0.3, 0.3, 0.0, 0.3]])     # b, c and e tie
    monkeypatch.setattr(engine, "scores_from_embeddings", lambda emb, weight: tied.expand(len(emb), -1).clone())
    rec = text4vis.load(clip=clip_file, labels=labels, frames=4, device="cpu")
    views = torch.zeros(2, 4, 3, rec.input_size, rec.input_size, dtype=torch.uint8)
    windows = {"spans": [(0.0, 1.0), (1.0, 2.0)], "duration": 2.0, "fps": 25.0, "min_score": 0.0, "smooth": 0}
    worker = ModelWorker(rec, max_batch=1)
    try:
        record = worker.submit(Job(views, "v.mp4", 4)).result(60)
        timeline = worker.submit(Job(views, "v.mp4", 4, windows=windows)).result(60)
    finally:
        worker.stop()
    want = ["b", "c", "e", "a"]
    assert [t["label"] for t in record["top"]] == want
    assert [[t["label"] for t in w["top"]] for w in timeline["windows"]] == [want, want]


@pytest.mark.slow
def test_decode_pool_kills_a_hung_worker_and_replaces_it():
    from text4vis.errors import VideoError
    from text4vis.serve.decode import DecodePool, DecodeTimeout, decode_views
    pool = DecodePool(workers=1, timeout_s=1.5)
    try:
        (before,) = pool.pids()
        t0 = time.monotonic()
        with pytest.raises(DecodeTimeout, match="longer than 1.5 s"):
            pool.run(time.sleep, 60)  # stands for FFmpeg hanging on a damaged stream
        assert time.monotonic() - t0 < 10
        (after,) = pool.pids()
        assert after != before and pool.replaced == 1
        with pytest.raises(ProcessLookupError):
            os.kill(before, 0)  # the hung process is gone
        views = pool.run(decode_views, clip(CLIPS[2]), 4, 32, 1, 1)  # the replacement decodes
        assert views.shape == (1, 4, 3, 32, 32) and views.dtype.name == "uint8"
        with pytest.raises(VideoError, match="crashed"):
            pool.run(os._exit, 3)  # a worker that dies mid-job is replaced too
        assert pool.run(decode_views, clip(CLIPS[2]), 4, 32, 1, 1).shape == (1, 4, 3, 32, 32)
        assert pool.replaced == 2
    finally:
        pool.close()


def test_serve_command_checks_before_loading(capsys, tmp_path, clip_file):
    short = tmp_path / "short.txt"
    short.write_text("abc\n")
    for argv, words in [(["--max-batch", "0"], "--max-batch must be at least 1"),
                        (["--port", "70000"], "--port must be at most 65535"),
                        (["--api-key-file", str(tmp_path / "none.txt")], "cannot read it"),
                        (["--api-key-file", str(short)], "at least 8 characters"),
                        (["--index", str(tmp_path / "no-index"), "--clip", clip_file], "no-index")]:
        assert cli.main(["serve", *argv]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
