"""`--decode-device` on `eval` and `index build` (issue 27), on a CPU: `cuda` falls back to the CPU reader with
one warning line and the same results as `cpu`; where NVDEC is usable (faked here: the NVDEC reader replaced by
one giving CPU tensors), the frames come from it, decoded in this process, with the same results.
Tiny random-weight CLIP (tests/conftest.py), 4 frames, 32x32 synthetic videos and real clips."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
import yaml

from conftest import SHARED_VIDEOS, run_cli, tiny_openai_state_dict
from text4vis import video
from text4vis.decoders import gpu
from text4vis.decoders import readers as R
from text4vis.errors import UsageError

FALLBACK = "warning: --decode-device cuda: the model runs on cpu, not on a GPU; decoding on the CPU"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A 2-class val list of 32x32 H.264 videos with a config, 2 real clips, and a tiny CLIP file."""
    from text4vis.synthetic import make_benchmark
    d = tmp_path_factory.mktemp("decode_device")
    info = make_benchmark(d / "bench", shapes=["circle", "square"], motions=["moving left"], heldout=[],
                          train_per_class=1, val_per_class=1, num_frames=8, size=32, progress=False)
    clip = str(d / "clip.pt")
    torch.save(tiny_openai_state_dict(0), clip)
    cfg = {"data": {"val_list": str(info["val_list"]), "val_root": str(info["root"]),
                    "labels": str(info["labels_csv"]), "num_frames": 4, "workers": 0},
           "model": {"clip": clip, "head": "mean"}, "evaluation": {"batch_size": 2}}
    config = str(d / "eval.yaml")
    with open(config, "w") as f:
        yaml.safe_dump(cfg, f)
    videos = d / "videos"
    videos.mkdir()
    for name in ("arm_wrestling_h264.mp4", "flipping_pancake_h264_opus.mkv"):
        shutil.copy(os.path.join(SHARED_VIDEOS, name), videos / name)
    return {"dir": d, "config": config, "clip": clip, "videos": str(videos)}


@pytest.fixture
def fake_nvdec(monkeypatch):
    """NVDEC usable here: resolve_decode_device answers "cuda", and torchcodec's CUDA reader is text4vis's
    PyAV reader giving torch tensors (on the CPU); `calls` counts the videos it read in this process."""
    calls = []

    def fake_torchcodec(path, choose, threads=1, device="cuda"):
        assert device == "cuda"
        calls.append(path)
        frames, n = video.read_frames(path, choose)
        return torch.from_numpy(frames), n

    monkeypatch.setattr(gpu, "resolve_decode_device", lambda asked, path=None, device="cuda": asked)
    monkeypatch.setattr(R, "read_torchcodec", fake_torchcodec)
    return calls


def eval_run(setup, name: str, *extra) -> tuple[dict, dict, str]:
    out = setup["dir"] / name
    rc, _, err = run_cli("eval", "--config", setup["config"], "--out", out, "--quiet", *extra)
    assert rc == 0, err
    results = json.load(open(out / "results.json"))
    results.pop("speed")
    return results, dict(np.load(out / "predictions.npz")), err


def index_vectors(setup, name: str, *extra) -> tuple[np.ndarray, str]:
    out = setup["dir"] / name
    rc, _, err = run_cli("index", "build", setup["videos"], "--out", out, "--clip", setup["clip"], "--frames", "4",
                         "--device", "cpu", "--quiet", *extra)
    assert rc == 0, err
    info = json.load(open(out / "index.json"))
    return np.load(out / info["current"]["folder"] / "vectors.npy"), err


def test_eval_decode_device_cuda_falls_back_with_one_line(setup):
    plain, plain_pred, err = eval_run(setup, "cpu", "--workers", "0")
    assert err == ""
    results, pred, err = eval_run(setup, "cuda", "--workers", "0", "--decode-device", "cuda")
    assert err.splitlines() == [f"text4vis eval: {FALLBACK}"]
    assert results == plain and all(np.array_equal(pred[k], plain_pred[k]) for k in plain_pred)


def test_eval_decodes_with_nvdec_in_this_process_when_it_can(setup, fake_nvdec):
    plain, plain_pred, _ = eval_run(setup, "cpu2", "--workers", "0")
    assert not fake_nvdec
    results, pred, err = eval_run(setup, "nvdec", "--workers", "2", "--decode-device", "cuda")
    assert err == "" and len(fake_nvdec) == plain["num_videos"] == 2   # every video, here: not in workers
    assert results == plain and all(np.allclose(pred[k], plain_pred[k], atol=1e-6) for k in ("scores", "embeddings"))


def test_index_build_decode_device_cuda_falls_back_with_one_line(setup):
    plain, err = index_vectors(setup, "idx_cpu", "--workers", "0")
    assert err == "" and plain.shape[0] == 2
    vectors, err = index_vectors(setup, "idx_cuda", "--workers", "0", "--decode-device", "cuda")
    assert err.splitlines() == [f"text4vis index build: {FALLBACK}"]
    assert np.array_equal(vectors, plain)


def test_index_build_decodes_with_nvdec_in_this_process_when_it_can(setup, fake_nvdec):
    plain, _ = index_vectors(setup, "idx_cpu2", "--workers", "0")
    vectors, err = index_vectors(setup, "idx_nvdec", "--workers", "2", "--decode-device", "cuda")
    assert err == "" and len(fake_nvdec) == 2
    assert np.allclose(vectors, plain, atol=1e-6)
    # window entries stream through timeline's CPU reader: one line says so
    _, err = index_vectors(setup, "idx_windows", "--workers", "0", "--decode-device", "cuda", "--window", "1")
    assert err.splitlines() == ["text4vis index build: warning: --decode-device cuda: --window entries are decoded "
                                "on the CPU (NVDEC decodes whole-video entries of --engine local)"]


def test_library_calls_refuse_other_devices(setup):
    from text4vis.index import build_index
    from text4vis.train.config import load_config
    from text4vis.train.evaluate import eval_from_config
    cfg, _ = load_config(setup["config"], [])
    with pytest.raises(UsageError, match="decode_device='npu': choose cpu or cuda"):
        eval_from_config(cfg, decode_device="npu", progress=False)
    with pytest.raises(UsageError, match="decode_device='npu': choose cpu or cuda"):
        build_index([setup["videos"]], str(setup["dir"] / "never"), clip=setup["clip"], decode_device="npu")
    assert not os.path.exists(setup["dir"] / "never")
