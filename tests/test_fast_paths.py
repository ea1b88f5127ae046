"""The fast paths give the same results as the plain ones: skipping decode, prepared frames,
bf16 / compiled model vs the reference computation in fp32, in-place normalisation."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import SHARED_VIDEOS, TINY, index_frames, write_video
from text4vis import devices, prepare, transforms, video
from text4vis.bench import model as bench
from text4vis.sampling import segment_indices, view_indices
from text4vis.video import VideoError, read_frames

CLIPS = ["arm_wrestling_h264.mp4", "flipping_pancake_h264_opus.mkv", "cricket_shot_ucf101.gif",
         "dog_android_vfr_rotate180_h264_aac.mp4", "cleaning_pool_xvid_mp3.avi", "iphone4s_rotate90_h264_aac.mov"]


@pytest.mark.slow
@pytest.mark.parametrize("name", CLIPS)
def test_single_thread_skipping_decode_equals_full_decode(name):
    path = os.path.join(SHARED_VIDEOS, name)
    rng = np.random.default_rng(3)
    for _ in range(3):
        wanted = None

        def choose(n):
            nonlocal wanted
            wanted = segment_indices(n, 8, rng) if wanted is None else wanted
            return wanted

        fast, n_fast = read_frames(path, choose, threads=1)
        slow, n_slow = read_frames(path, lambda n: wanted, threads=0)  # noqa: B023 (called at once)
        assert n_fast == n_slow
        assert np.array_equal(fast, slow)
        wanted = None


def test_skipping_decode_with_b_frames_and_repeats(tmp_path):
    path = str(tmp_path / "b.mp4")
    write_video(path, index_frames(60), options={"crf": "10", "bf": "3", "g": "30"})
    from conftest import decode_index
    want = [59, 3, 3, 17, 40, 0]
    frames, n = read_frames(path, lambda n: want, threads=1)
    assert n == 60
    assert [decode_index(f) for f in frames] == want


def test_prepared_frames_match_resized_video(tmp_path):
    src = str(tmp_path / "v.mp4")
    write_video(src, index_frames(40, h=128, w=256), options={"crf": "10"})
    dst = str(tmp_path / "v.mp4" ) + prepare.SUFFIX
    info = prepare.convert_video(src, dst, short_side=64)
    assert info["frames"] == 40 and not info["skipped"]
    again = prepare.convert_video(src, dst, short_side=64)
    assert again["skipped"]                                   # resumable: finished outputs are kept
    from conftest import decode_index
    frames, n = video.read_frame_zip(dst, lambda n: view_indices(n, 8, 1)[0])
    assert n == 40 and frames.shape == (8, 64, 128, 3)
    assert [decode_index(f) for f in frames] == view_indices(40, 8, 1)[0]


def test_prepared_list_and_damaged_file(tmp_path):
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    write_video(str(root / "a" / "x.mp4"), index_frames(12), options={"crf": "10"})
    (root / "a" / "bad.mp4").write_bytes(b"not a video")
    lst = tmp_path / "train.txt"
    lst.write_text("a/x.mp4 0\na/bad.mp4 1\n")
    out = tmp_path / "prepared"
    totals = prepare.prepare_list(str(lst), str(root), str(out), short_side=32, workers=1)
    assert totals["converted"] == 1 and totals["failed"] == 1
    assert (out / "train.txt").read_text() == "a/x.mp4.frames.zip 0\n"
    broken = out / "broken.frames.zip"
    broken.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(VideoError, match="broken.frames.zip"):
        video.read_frame_zip(str(broken), lambda n: [0])


def test_normalize_matches_plain_formula():
    x = torch.randint(0, 256, (2, 3, 5, 7), dtype=torch.uint8)
    m = torch.tensor(transforms.OPENAI_MEAN).view(3, 1, 1)
    s = torch.tensor(transforms.OPENAI_STD).view(3, 1, 1)
    assert torch.allclose(transforms.normalize(x), (x.float() / 255 - m) / s, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_pair():
    cfg = {**TINY, "vision_cfg": dict(TINY["vision_cfg"]), "text_cfg": dict(TINY["text_cfg"])}
    from text4vis.model import VideoModel
    from text4vis.towers import build_clip
    torch.manual_seed(0)
    ours = VideoModel(build_clip(cfg).visual, cfg["embed_dim"], "transf").eval()
    ref = bench.RefVideoModel(cfg).load_from(ours).eval()
    x = torch.randn(3, 4, 3, 32, 32)
    return ours, ref, x


def test_text4vis_model_equals_reference_computation_fp32(tiny_pair):
    ours, ref, x = tiny_pair
    with torch.no_grad():
        assert torch.allclose(ours.embed(x), ref(x), atol=1e-5)


def test_bf16_autocast_within_tolerance_of_fp32(tiny_pair):
    ours, ref, x = tiny_pair
    with torch.no_grad():
        exact = F.normalize(ref(x), dim=-1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = F.normalize(ours.embed(x).float(), dim=-1)
    assert (fast - exact).abs().max() < 3e-2
    assert F.cosine_similarity(fast, exact).min() > 0.999


def test_precision_names(monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert [devices.precision_name(cpu, p) for p in devices.PRECISIONS] == ["fp32"] * 4
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert [devices.precision_name(gpu, p) for p in devices.PRECISIONS] == ["bf16", "bf16", "fp16", "fp32"]
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert devices.precision_name(gpu, "auto") == "fp16"           # older GPUs: fp16 autocast
    with pytest.raises(ValueError):
        devices.precision_name(cpu, "fp64")
    assert isinstance(devices.autocast(cpu, "bf16"), type(devices.autocast(cpu)))  # CPU: no autocast at all


def test_compiled_path_falls_back_cleanly(monkeypatch, tiny_pair):
    ours, _, x = tiny_pair

    def broken_compile(fn, *a, **k):
        def run(*args, **kwargs):
            raise RuntimeError("no C compiler available")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    fn, compiled, reason = bench.compiled_or_eager(ours.embed, x[:1], torch.device("cpu"), torch.float32)
    assert not compiled and "no C compiler" in reason
    with torch.no_grad():
        assert torch.equal(fn(x), ours.embed(x))


def test_bench_model_reports_ratio_and_agreement():
    cfg = {**TINY, "vision_cfg": dict(TINY["vision_cfg"]), "text_cfg": dict(TINY["text_cfg"])}
    out = bench.bench_model("tiny", 4, 2, "infer", torch.device("cpu"), iters=1, warmup=0, cfg=cfg)
    assert set(out["cases"]) == {"text4vis", "reference_fp32"}
    assert out["cases"]["reference_fp32"]["ratio_vs_reference"] == 1.0
    assert out["max_abs_diff_vs_fp32"] < 1e-5
    assert out["gflop_per_video"] > 0
    train = bench.bench_model("tiny", 4, 2, "train", torch.device("cpu"), iters=1, warmup=0, cfg=cfg)
    assert train["cases"]["text4vis"]["videos_per_s"] > 0
