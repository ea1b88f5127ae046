"""`index build --engine ray` (index/ray_engine.py) on one local Ray (`ray.init(num_cpus=2)`, started once for
the module: it takes seconds): over local files and an S3 bucket on moto's server the Ray index equals the
local engine's byte for byte (shard files too); an embedding actor SIGKILLed mid-run is restarted, its batch
retried, and the index is the same; engine options are checked in the library."""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import threading
import time

import pytest
import torch

from conftest import SHARED_VIDEOS, index_frames, run_cli, stripes, tiny_openai_state_dict, write_video
from object_store import s3_server
from text4vis.errors import UsageError
from text4vis.index import build_index

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.server                       # moto's S3 server on 127.0.0.1, Ray's own processes
REAL = ["arm_wrestling_h264.mp4", "cleaning_pool_xvid_mp3.avi", "rotate90_keyboard_3frames_0.1s.mov"]
ON_S3 = "iphone4s_rotate90_h264_aac.mov"


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """Local clips (3 real, 2 generated, a junk file), one clip in a bucket on moto, the tiny CLIP file,
    the local engine's index of them (shards of 2, batches of 2), and one Ray for the module."""
    d = tmp_path_factory.mktemp("ray")
    videos = d / "videos"
    videos.mkdir()
    for name in REAL:
        shutil.copy(os.path.join(SHARED_VIDEOS, name), videos / name)
    write_video(str(videos / "stripes.mp4"), stripes(24, 64, 64, 8), options={"g": "8"})
    write_video(str(videos / "counter.mp4"), index_frames(24, 64, 64), options={"g": "8"})
    (videos / "junk.mp4").write_text("not a video at all\n" * 20)
    clip = d / "clip.pt"
    torch.save(tiny_openai_state_dict(0), clip)
    with s3_server({f"bucket/in/{ON_S3}": os.path.join(SHARED_VIDEOS, ON_S3)}):
        # Ray's workers inherit this environment (the S3 endpoint and its test credentials)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        try:
            inputs = [str(videos), "s3://bucket/in/"]
            ref = d / "ref"
            rc, out, err = run_cli("index", "build", *inputs, "--out", ref, *model_args(clip), "--workers", "0")
            assert rc == 1 and "7 input videos (7 embedded now" in out, err   # the junk file failed
            yield {"dir": d, "inputs": inputs, "clip": clip, "ref": ref}
        finally:
            ray.shutdown()


def model_args(clip) -> list[str]:
    return ["--clip", str(clip), "--frames", "4", "--device", "cpu", "--shard-size", "2", "--batch-size", "2",
            "--quiet"]


def same_files(a, b) -> None:
    """index.json, every shard file and every merged file: equal bytes."""
    assert sorted(os.listdir(a / "shards")) == sorted(os.listdir(b / "shards"))
    for name in os.listdir(a / "shards"):
        assert (a / "shards" / name).read_bytes() == (b / "shards" / name).read_bytes(), name
    info = json.loads((a / "index.json").read_text())
    assert info == json.loads((b / "index.json").read_text())
    folder = info["current"]["folder"]
    for name in ("entries.parquet", "vectors.npy", "vectors.faiss"):
        assert (a / folder / name).read_bytes() == (b / folder / name).read_bytes(), name


def test_ray_index_equals_local_byte_for_byte(lib):
    out = lib["dir"] / "on-ray"
    rc, stdout, err = run_cli("index", "build", *lib["inputs"], "--out", out, *model_args(lib["clip"]),
                              "--engine", "ray", "--ray-num-cpus", "1", "--ray-concurrency", "1")
    assert rc == 1 and "7 input videos (7 embedded now, 0 already indexed, 1 failed)" in stdout
    assert "junk.mp4: not a readable video" in err              # a recorded failure, not a failed task
    same_files(out, lib["ref"])
    rc, stdout, _ = run_cli("index", "build", *lib["inputs"], "--out", out, *model_args(lib["clip"]),
                            "--engine", "ray")
    assert "(0 embedded now, 7 already indexed" in stdout        # a rerun skips finished shards


def _ray_processes(title: str) -> list[int]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmd.startswith(title):
            pids.append(int(pid))
    return pids


@pytest.mark.slow
def test_killed_ray_workers_are_retried_and_the_index_is_the_same(lib):
    """SIGKILL the first decode task's worker (the task is retried) and the embedding actor while it loads
    the model (it is restarted): on 2 cores every decode finishes while the actor is still loading, so
    these are the processes alive in the middle of the run."""
    out = lib["dir"] / "killed-workers"
    result = {}

    def build():
        result["report"] = build_index(lib["inputs"], str(out), clip=str(lib["clip"]), frames=4, device="cpu",
                                       shard_size=2, batch_size=2, engine="ray")

    thread = threading.Thread(target=build)
    thread.start()
    killed: dict[str, int] = {}
    deadline = time.time() + 240
    while len(killed) < 2 and thread.is_alive() and time.time() < deadline:
        for title in ("ray::Map(_decode)", "ray::MapWorker(Map(Embed))"):
            if title not in killed:
                for pid in _ray_processes(title)[:1]:
                    os.kill(pid, signal.SIGKILL)
                    killed[title] = pid
        time.sleep(0.02)
    thread.join(300)
    assert len(killed) == 2, f"the build ended before both were killed ({killed})"
    report = result["report"]
    assert report["embedded_now"] == 7 and len(report["failed"]) == 1
    same_files(out, lib["ref"])


def test_engine_options_are_checked_in_the_library(lib, tmp_path):
    for options, message in (({"engine": "spark"}, "engine='spark': choose one of local, ray"),
                             ({"engine": "ray", "window": 2.0}, "engine='ray' builds one entry per video"),):
        with pytest.raises(UsageError, match=message):
            build_index(lib["inputs"], str(tmp_path / "x"), clip=str(lib["clip"]), **options)
    rc, _, err = run_cli("index", "build", *lib["inputs"], "--out", tmp_path / "y", *model_args(lib["clip"]),
                         "--engine", "ray", "--ray-concurrency", "0")
    assert rc == 2 and err.strip().endswith("--ray-concurrency must be a whole number of at least 1 (got 0)")


def test_without_ray_one_line_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)          # `import ray` fails as where it is not installed
    monkeypatch.setitem(sys.modules, "ray.data", None)
    rc, out, err = run_cli("index", "build", SHARED_VIDEOS, "--out", tmp_path / "x", "--engine", "ray")
    assert rc == 2 and out == ""
    assert err == "text4vis index build: error: --engine ray needs Ray Data: pip install 'text4vis[ray]'\n"
