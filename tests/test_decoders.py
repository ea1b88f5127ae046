"""The video readers (decoders/): frames against text4vis's own reader on the real clips, the seeking
reader, `bench --decode` on tiny inputs (table and JSON), `--decoder`, and the GPU fallbacks on a CPU."""
from __future__ import annotations

import json
import os
import shutil
import warnings

import numpy as np
import pytest
import torch
from conftest import SHARED_VIDEOS, decode_index, index_frames, write_video

from text4vis import cli, sampling, video
from text4vis.decoders import bench as dbench
from text4vis.decoders import choose, gpu
from text4vis.decoders import readers as R
from text4vis.errors import Text4VisWarning, UsageError

REAL = sorted(f for f in os.listdir(SHARED_VIDEOS) if not f.endswith(".md"))

# What each peer does differently on the real clips (README, Decoding). Every other clip: the same N
# and pixel-identical frames.
KNOWN = {
    ("torchcodec", "cleaning_pool_xvid_mp3.avi"): "frames",  # seeking in the XviD AVI lands on other frames
    ("decord", "nasa_multistream_h264_aac_subs.mp4"): "stream",  # its "best" stream, not the default one
    ("opencv", "flipping_pancake_h264_opus.mkv"): "count",  # N from duration x fps: 311 for 310 frames
}


def available(name: str) -> bool:
    return R.missing(name) is None


def views(n: int) -> list[int]:
    return [i for clip in sampling.view_indices(n, 8, 4) for i in clip]


@pytest.mark.parametrize("name", REAL)
def test_readers_agree_on_the_real_clips(name):
    path = os.path.join(SHARED_VIDEOS, name)
    ref, n = video.read_frames(path, views, threads=1)
    assert ref.dtype == np.uint8 and ref.shape[0] == 32
    for reader in R.READERS[1:]:
        if not available(reader):
            continue
        seen = {}
        frames, m = R.read(reader, path, lambda k, seen=seen: (seen.setdefault("n", k), [i for i in views(n) if i < k])[1])
        problem = KNOWN.get((reader, name))
        if problem == "stream":
            assert m != n and frames.shape[1:3] != ref.shape[1:3]
        elif problem == "count":
            assert m == n + 1 and np.array_equal(frames, ref)  # same indices given: same pixels
        elif problem == "frames":
            assert m == n and np.abs(frames.astype(int) - ref).max() > 64
        else:
            assert (m, frames.shape) == (n, ref.shape), reader
            assert np.array_equal(frames, ref), reader  # also rotation: every reader turns frames upright


def test_agreement_report_names_the_differences():
    rec = dbench.agreement(os.path.join(SHARED_VIDEOS, "flipping_pancake_h264_opus.mkv"), ["pyav", "pyav_seek"])
    assert rec["pyav"]["num_frames"] == 310
    assert rec["pyav_seek"] == {"num_frames": 310, "same_shape": True, "max_abs_diff": 0, "mean_abs_diff": 0.0}
    assert dbench.same_frames(rec["pyav_seek"], 310) and not dbench.same_frames(rec["pyav_seek"], 311)


@pytest.fixture(scope="module")
def short_gop(tmp_path_factory):
    """8 s at 25 fps, a keyframe every 10 frames, B-frames: each frame draws its own index."""
    path = str(tmp_path_factory.mktemp("gop") / "gop10.mp4")
    write_video(path, index_frames(200), options={"x264-params": "keyint=10:min-keyint=10:scenecut=0:bframes=3"})
    return path


def test_seeking_reader_seeks_and_gives_the_same_frames(short_gop):
    n = video.count_frames(short_gop)
    rng = np.random.default_rng(3)
    cases = [sampling.view_indices(n, 8, 1)[0], views(n), sampling.segment_indices(n, 8, rng),
             [150, 3, 150, 77, 199, 0]]  # any order, repeats
    for indices in cases:
        ref, _ = video.read_frames(short_gop, lambda m, indices=indices: indices, threads=1)
        stats = R.SeekStats()
        frames, m = R.read_pyav_seek(short_gop, lambda k, indices=indices: indices, 1, stats)
        assert m == n and np.array_equal(frames, ref)
        assert [decode_index(f) for f in frames] == indices  # frame-accurate: each frame shows its index
        if len(set(indices)) <= 8:  # sparse: it jumped, decoding far fewer frames than one forward pass
            assert not stats.forward and stats.seeks >= 2 and stats.decoded < n / 2
    # dense frames: seeking would not save half the decoding, so it reads forward (the same frames)
    stats = R.SeekStats()
    frames, _ = R.read_pyav_seek(short_gop, lambda k: list(range(0, k, 3)), 1, stats)
    assert stats.forward and np.array_equal(frames, video.read_frames(short_gop, lambda k: list(range(0, k, 3)))[0])


def test_seek_cost_model():
    keys = [0, 10, 20, 30]
    assert R.seek_cost(keys, [5]) == 6              # forward from the start
    assert R.seek_cost(keys, [5, 25]) == 6 + 6      # frame 25: seek to 20
    assert R.seek_cost(keys, [5, 8]) == 9           # frame 8: forward from 5


def _outcome(read, path):
    try:
        frames, n = read(path, lambda k: [0, k // 2, k - 1])
        return n, frames
    except video.VideoError as exc:
        return str(exc)


def test_seeking_reader_on_odd_inputs(odd_inputs):
    """Damaged and odd files: the same frames and N, or the same one-line error, as text4vis's reader."""
    for name, path in sorted(odd_inputs.items()):
        ref = _outcome(lambda p, c: video.read_frames(p, c, threads=1), path)
        got = _outcome(R.read_pyav_seek, path)
        if isinstance(ref, str):
            assert got == ref, name
        else:
            assert got[0] == ref[0] and np.array_equal(got[1], ref[1]), name


def test_decoder_choice():
    assert choose.resolve("auto", "predict") == "pyav_seek" and choose.resolve("auto", "train") == "pyav_seek"
    assert choose.resolve("decord") == "decord"
    with pytest.raises(UsageError, match="decoder='ffmpeg'"):
        choose.resolve("ffmpeg")
    path = os.path.join(SHARED_VIDEOS, "arm_wrestling_h264.mp4")
    a, n = choose.read_frames(path, views, decoder="auto")
    b, m = choose.read_frames(path, views, decoder="pyav")
    assert n == m and np.array_equal(a, b)


def test_missing_peer_is_one_line(monkeypatch):
    monkeypatch.setattr(R.importlib.util, "find_spec", lambda name: None)
    assert R.missing("torchcodec") == "torchcodec is not installed (pip install 'text4vis[decode]')"
    with pytest.raises(UsageError, match=r"^decoder='torchcodec': torchcodec is not installed"):
        choose.check_decoder("torchcodec")


def _small_clips(tmp_path) -> str:
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("rotate90_keyboard_3frames_0.1s.mov", "cricket_shot_ucf101.gif"):
        shutil.copy(os.path.join(SHARED_VIDEOS, name), folder / name)
    return str(folder)


def test_bench_decode_json_and_table(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    argv = ["bench", "--decode", "--decode-quick", "--decode-seconds", "1", "--decode-videos", _small_clips(tmp_path)]
    assert cli.main(argv + ["--json"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert set(result["patterns"]) == set(dbench.PATTERNS)
    assert set(result["sets"]) == {"real", "240p_gop25", "240p_gop250"}
    assert os.path.isfile(tmp_path / "cache" / "text4vis" / "decode-bench" / "240p_gop25_1s.mp4")  # cached
    for pattern, res in result["patterns"].items():
        row = res["sets"]["real"]["pyav"]
        assert row["clips_per_s_per_core"] > 0 and row["frames_decoded"] == "counted"
        assert row["frames_decoded_per_clip"] > 0
        assert res["default_reader"] == ("pyav" if pattern == "timeline" else "pyav_seek")
        assert set(res["text4vis_vs_fastest_peer"]) <= set(result["sets"])
        assert all(v > 0 for v in res["text4vis_vs_fastest_peer"].values())
    real = result["patterns"]["predict_4x3"]["sets"]["real"]
    assert 3 <= real["pyav"]["frames_decoded_per_clip"] <= (3 + 79) / 2  # at most every frame
    assert result["patterns"]["timeline"]["sets"]["real"]["pyav"]["clips"] == 2  # each clip is shorter than one 4 s window
    assert result["agreement"]["cricket_shot_ucf101.gif"]["pyav"]["num_frames"] == 79
    assert result["agreement"]["cricket_shot_ucf101.gif"]["pyav_seek"]["max_abs_diff"] == 0
    # the table: a block per pattern, a row per video set, the agreement line
    table = "\n".join(dbench.format_table(result))
    for pattern in dbench.PATTERNS:
        assert f"{pattern}: clips/s per core" in table
    assert "same frames as text4vis" in table and "pyav_seek=yes" in table
    assert len([line for line in table.splitlines() if line.startswith("  240p_gop25 ")]) == len(dbench.PATTERNS)


def test_bench_decode_prints_the_table(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(dbench, "PATTERNS", ("predict_t8",))  # one pattern is enough to see the text
    assert cli.main(["bench", "--decode", "--decode-quick", "--decode-seconds", "0", "--decode-videos",
                     _small_clips(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("predict_t8: clips/s per core (frames decoded per clip)\n")
    assert "  real " in out and "same frames as text4vis" in out


def test_bench_decode_skips_a_missing_reader(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    real_missing = R.missing
    monkeypatch.setattr(R, "missing", lambda name: "decord is not installed (pip install 'text4vis[decode]')"
                        if name == "decord" else real_missing(name))
    monkeypatch.setattr(dbench, "PATTERNS", ("predict_t8",))
    rc = cli.main(["bench", "--decode", "--decode-quick", "--decode-seconds", "0", "--decode-videos",
                   _small_clips(tmp_path), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert err.splitlines() == ["text4vis bench: skipping decord: decord is not installed (pip install "
                                "'text4vis[decode]')"]
    result = json.loads(out)
    assert "decord" not in result["readers"] and result["skipped"] == {"decord": err.strip().split(": ", 2)[2]}


def test_bench_decode_usage_errors(capsys, tmp_path):
    assert cli.main(["bench", "--decode", "--decode-videos", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.strip().endswith("--decode-videos " + str(tmp_path / "none") + ": no such folder")
    assert cli.main(["bench", "--decode", "--decode-quick", "--decode-sets", "4k", "--decode-videos",
                     _small_clips(tmp_path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "text4vis bench: error: --decode-sets 4k: not a video set of this run (choose from real, 240p_gop25, 240p_gop250)"]


# ----------------------------------------------------------------------------- GPU decoding, on a CPU

def test_cuda_decoding_falls_back_with_one_line(monkeypatch):
    path = os.path.join(SHARED_VIDEOS, "arm_wrestling_h264.mp4")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert gpu.resolve_decode_device("cuda", path, "cpu") == "cpu"
        assert gpu.resolve_decode_device("cpu", path, "cpu") == "cpu"
    assert [str(w.message) for w in caught] == [
        "decode_device='cuda': the model runs on cpu, not on a GPU; decoding on the CPU"]
    assert issubclass(caught[0].category, Text4VisWarning)
    if not torch.cuda.is_available():
        assert gpu.cuda_problem(path) == "no CUDA GPU here (torch.cuda.is_available() is False)"
    # a GPU without torchcodec (or without NVDEC) says which
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(R.importlib.util, "find_spec", lambda name: None)
    assert gpu.cuda_problem(path) == "torchcodec is not installed (pip install 'text4vis[decode]')"
    with pytest.raises(UsageError, match="decode_device='npu'"):
        gpu.resolve_decode_device("npu")


def test_gpu_frames_path_runs_on_tensors(monkeypatch):
    """The NVDEC path hands torch tensors (on the GPU there) to the test-time views; here the decoder is
    replaced by one giving CPU tensors, and inputs NVDEC cannot decode are read on the CPU and moved."""
    from text4vis.datasets import FrameReader, Sample, TestDataset

    def fake_torchcodec(path, choose_, threads=1, device="cuda"):
        if path.endswith(".gif"):
            raise video.VideoError(f"{path}: torchcodec cannot decode it (no NVDEC for GIF)")
        frames, n = video.read_frames(path, choose_)
        return torch.from_numpy(frames), n

    monkeypatch.setattr(R, "read_torchcodec", fake_torchcodec)
    path = os.path.join(SHARED_VIDEOS, "arm_wrestling_h264.mp4")
    samples = [Sample(path, -1, None, path)]
    on_gpu = TestDataset(samples, 4, 32, 2, 3, reader=FrameReader(decode_device="cuda", decoder="pyav"))
    on_cpu = TestDataset(samples, 4, 32, 2, 3, reader=FrameReader(decoder="pyav"))
    a, b = on_gpu[0], on_cpu[0]
    assert a[2] is None and a[1].shape == (6, 4, 3, 32, 32) and torch.equal(a[1], b[1])
    # a GIF (no NVDEC): read on the CPU, then moved to the decoding device ("cpu" stands in for the GPU here)
    gif = os.path.join(SHARED_VIDEOS, "cricket_shot_ucf101.gif")
    frames, n = gpu.read_frames_cuda(gif, views, device="cpu",
                                     cpu_read=lambda: video.read_frames(gif, views))
    assert isinstance(frames, torch.Tensor) and n == 79
    assert torch.equal(frames, torch.from_numpy(video.read_frames(gif, views)[0]))


def test_predict_decode_device_cuda_on_a_cpu(capsys, tiny_dir):
    path = os.path.join(SHARED_VIDEOS, "arm_wrestling_h264.mp4")
    base = ["predict", path, "--clip", str(tiny_dir / "openai_sd.pt"), "--labels", "ucf101", "--json",
            "--frames", "4", "--quiet", "--workers", "0"]
    assert cli.main(base + ["--decoder", "pyav"]) == 0
    plain = capsys.readouterr().out
    assert cli.main(base + ["--decode-device", "cuda"]) == 0
    out, err = capsys.readouterr()
    assert out == plain  # the same records: the CPU decoded
    assert err.splitlines() == ["text4vis predict: warning: --decode-device cuda: the model runs on cpu, not on a "
                                "GPU; decoding on the CPU"]


def test_end_to_end_bench_on_a_cpu(tmp_path):
    """decode + model vs the model alone, on a tiny model: NVDEC not measured here, and says why."""
    from conftest import TINY

    from text4vis.decoders.e2e import bench_end_to_end
    clips = _small_clips(tmp_path)
    r = bench_end_to_end("tiny", frames=2, batch=2, device="cpu", videos_dir=clips, videos=4, workers=0,
                         cfg=TINY)
    assert set(r["cases"]) == {"model_alone", "cpu_decode"}
    assert r["not_measured"] == {"nvdec": "the model runs on cpu, not on a GPU"}
    assert r["cases"]["cpu_decode"]["videos_per_s"] > 0 and r["cases"]["cpu_decode"]["fed"] > 0
    assert sorted(r["clips"]) == ["cricket_shot_ucf101.gif", "rotate90_keyboard_3frames_0.1s.mov"]


def test_gpu_script_runs_its_e2e_step_on_a_cpu(tmp_path):
    """scripts/gpu_bench.sh on this CPU machine: no wheels folder (one line), the e2e step measures the model
    and CPU decoding and says why NVDEC was not measured, the summary prints it."""
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, GPU_BENCH_STEPS="e2e", PYTHON=sys.executable, GPU_BENCH_SECONDS="300",
               GPU_BENCH_E2E_ARGS="--model ViT-M-32 --frames 1 --batch 1 --iters 1 --device cpu")
    out = tmp_path / "out"
    proc = subprocess.run(["bash", os.path.join(root, "scripts", "gpu_bench.sh"), str(out)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("gpu_bench: no wheels/ folder: using the packages already installed")
    result = json.loads((out / "e2e_ViT-M-32.json").read_text())
    assert set(result["cases"]) == {"model_alone", "cpu_decode"}
    assert result["not_measured"]["nvdec"] == "the model runs on cpu, not on a GPU"
    assert any(line.startswith("e2e_ViT-M-32.json CPU") or line.startswith("e2e_ViT-M-32.json cpu") for line in lines)
    assert "nvdec: n/a (the model runs on cpu, not on a GPU)" in proc.stdout
