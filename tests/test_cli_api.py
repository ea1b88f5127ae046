"""Issue 13: a fast command line (no heavy imports for --help) and a forgiving Python API (paths as str or
PathLike, numpy/torch frames in the documented layouts, `classify`, one rule for API and CLI)."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import SHARED_VIDEOS, index_frames, write_video
import text4vis
from text4vis import cli, sampling
from text4vis.errors import UsageError
from text4vis.video import read_all_frames

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
HEAVY = ("torch", "open_clip", "transformers", "torchvision", "av", "matplotlib", "sklearn")
ARM = os.path.join(SHARED_VIDEOS, "arm_wrestling_h264.mp4")
LABELS = ["arm wrestling", "cleaning pool", "dog", "cat", "juggling"]


# ----------------------------------------------------------------------------- start-up stays light

@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["predict", "--help"], ["train", "--help"],
                                  ["classifier", "plot", "--help"], ["bench", "--help"]])
def test_help_imports_nothing_heavy(argv):
    """`text4vis --help` (and each command's) must not import torch, open_clip or transformers."""
    code = ("import sys, runpy\n"
            f"sys.argv = ['text4vis', *{argv!r}]\n"
            "try:\n    runpy.run_module('text4vis', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules])\n")
    env = dict(os.environ, PYTHONPATH=SRC)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "usage: text4vis" in out.stdout or "text4vis " in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "LOADED []"


def test_version_is_printed():
    out = subprocess.run([sys.executable, "-m", "text4vis", "--version"], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=SRC), timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"text4vis {text4vis.__version__}"


# ----------------------------------------------------------------------------- the Python API

@pytest.fixture(scope="module")
def rec(tiny_dir):
    return text4vis.load(checkpoint=tiny_dir / "text4vis_orig_transf.pt", clip=tiny_dir / "openai_sd.pt",
                         labels=LABELS, frames=4, device="cpu")


def test_load_and_predict_take_pathlike(rec, tiny_dir, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    again = text4vis.load(checkpoint=pathlib.Path(tiny_dir / "text4vis_orig_transf.pt"),
                          clip=pathlib.Path(tiny_dir / "openai_sd.pt"), labels=labels, frames=4, device="cpu")
    assert again.labels == LABELS
    by_str = rec.predict([ARM], topk=3, workers=0)
    by_path = again.predict([pathlib.Path(ARM)], topk=3, workers=0)
    one_path = again.predict(pathlib.Path(ARM), topk=3, workers=0)
    assert "error" not in by_path[0], by_path
    assert by_path == by_str == one_path
    assert isinstance(by_path[0]["video"], str) and by_path[0]["video"] == ARM
    folder = tmp_path / "vids"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(open(ARM, "rb").read())
    recs = again.predict(folder, topk=2, workers=0)
    assert [r["video"] for r in recs] == [str(folder / "a.mp4")] and recs[0]["top"] == by_str[0]["top"][:2]


def _view_frames(path: str, t: int) -> np.ndarray:
    """The frames `predict` uses for a 1x1 view of `path`: [T, H, W, 3] uint8."""
    frames = read_all_frames(path)
    return frames[sampling.view_indices(len(frames), t, 1)[0]]


def test_classify_equals_predict_for_every_layout(rec):
    """Frames decoded by hand, in each documented layout, give predict's scores (predict resizes and
    crops; classify does the same for frames that are not yet the model's input size)."""
    want = rec.predict([ARM], topk=3, workers=0)[0]["top"]
    hwc = _view_frames(ARM, rec.num_frames)                                 # [T, H, W, 3] numpy, 240x320
    assert hwc.shape[1:] != (rec.input_size, rec.input_size, 3)
    chw = torch.from_numpy(hwc).permute(0, 3, 1, 2).contiguous()             # [T, 3, H, W] torch
    for frames in (hwc, chw, torch.from_numpy(hwc), chw.numpy()):
        got = rec.classify(frames, topk=3)
        assert [g["label"] for g in got] == [w["label"] for w in want]
        np.testing.assert_allclose([g["score"] for g in got], [w["score"] for w in want], atol=2e-5)
    batch = rec.classify(np.stack([hwc, hwc[::-1].copy()]), topk=3)          # [B, T, H, W, 3]
    assert len(batch) == 2 and [b["label"] for b in batch[0]] == [w["label"] for w in want]
    assert batch[0] != batch[1]
    emb = rec.encode_video(np.stack([hwc, hwc]))
    assert emb.shape == (2, 64) and torch.allclose(emb[0], emb[1])
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))


def test_float_frames_in_unit_range_match_uint8(rec):
    hwc = _view_frames(ARM, rec.num_frames)
    as_uint8 = rec.encode_video(hwc)
    as_float = rec.encode_video(hwc.astype(np.float32) / 255.0)
    torch.testing.assert_close(as_float, as_uint8)
    with pytest.raises(UsageError, match=r"float frames must be in 0\.\.1 \(got 0\.\.255\); pass uint8"):
        rec.encode_video(hwc.astype(np.float32))


@pytest.mark.parametrize("frames,words", [
    (np.zeros((4, 32, 32), np.uint8), "expected RGB frames [T, H, W, 3] or [T, 3, H, W], optionally batched "
                                      "[B, T, ...], got shape (4, 32, 32)"),
    (np.zeros((4, 32, 32, 4), np.uint8), "got shape (4, 32, 32, 4)"),
    (np.zeros((2, 3, 4, 32, 32, 3), np.uint8), "got shape (2, 3, 4, 32, 32, 3)"),
    (torch.zeros(4, 3, 32, 32, dtype=torch.int64), "expected uint8 (0..255) or float (0..1) frames, got torch.int64"),
    (np.zeros((4, 32, 32, 3), bool), "expected a uint8 or float array, got dtype bool"),
    ([[1, 2, 3]], "expected a numpy array or torch tensor"),
    (np.zeros((80, 32, 32, 3), np.uint8), "80 frames per video, but this model's transf head takes at most 77"),
])
def test_bad_frames_are_one_line_usage_errors(rec, frames, words):
    with pytest.raises(UsageError) as e:
        rec.encode_video(frames)
    msg = str(e.value)
    assert words in msg and "\n" not in msg and msg.startswith("frames: ")


def test_api_and_cli_share_one_rule(rec, capsys):
    """Values the CLI refuses are refused by the API, with the same rule (parameter names there, flags here)."""
    frames = _view_frames(ARM, rec.num_frames)
    for call, words in ((lambda: rec.predict([ARM], topk=0), "topk= must be at least 1 (got 0)"),
                        (lambda: rec.classify(frames, topk=0), "topk= must be at least 1 (got 0)"),
                        (lambda: rec.predict([ARM], batch_size=0), "batch_size= must be at least 1 (got 0)"),
                        (lambda: rec.predict([ARM], workers=-1), "workers= must be at least 0 (got -1)"),
                        (lambda: rec.predict([ARM], topk=2.5), "topk= must be a whole number (got 2.5)"),
                        (lambda: rec.predict([ARM], views="2x2"), "views='2x2': need at least 1 clip and 1 or 3"),
                        (lambda: text4vis.load(frames=0), "frames= must be at least 1 (got 0)")):
        with pytest.raises(UsageError) as e:
            call()
        assert str(e.value) == words or str(e.value).startswith(words), (str(e.value), words)
    for argv, words in ((["--topk", "0"], "--topk must be at least 1 (got 0)"),
                        (["--batch-size", "0"], "--batch-size must be at least 1 (got 0)"),
                        (["--workers", "-1"], "--workers must be at least 0 (got -1)"),
                        (["--frames", "0"], "--frames must be at least 1 (got 0)"),
                        (["--views", "2x2"], "--views 2x2: need at least 1 clip and 1 or 3")):
        assert cli.main(["predict", ARM, *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"text4vis predict: error: {words}"), err
    # topk larger than the label set: every label, as the CLI does
    assert len(rec.predict([ARM], topk=50, workers=0)[0]["top"]) == len(LABELS)
    assert len(rec.classify(frames, topk=50)) == len(LABELS)


# ----------------------------------------------------------------------------- frame folders in predict

GIF = os.path.join(SHARED_VIDEOS, "cricket_shot_ucf101.gif")


@pytest.fixture(scope="module")
def frame_tree(tmp_path_factory):
    """root/clip.mp4, root/frames_a/frame_1.png..frame_79.png (the GIF's frames, lossless), root/frames_b (the same
    frames as JPEG, named img_00001.jpg ...), root/empty_sub/ (nothing)."""
    from PIL import Image
    root = tmp_path_factory.mktemp("frametree")
    frames = read_all_frames(GIF)
    (root / "frames_a").mkdir()
    (root / "frames_b").mkdir()
    (root / "empty_sub").mkdir()
    for i, f in enumerate(frames, start=1):  # frame_2 before frame_10: names compare by their numbers
        Image.fromarray(f).save(root / "frames_a" / f"frame_{i}.png")
        Image.fromarray(f).save(root / "frames_b" / f"img_{i:05d}.jpg", quality=95)
    (root / "frames_a" / "notes.txt").write_text("not a frame")
    write_video(str(root / "clip.mp4"), index_frames(12, 64, 64))
    return root


def test_find_videos_tells_frame_folders_from_video_folders(frame_tree):
    from text4vis.video import find_videos
    assert find_videos([frame_tree]) == [str(frame_tree / "clip.mp4"), str(frame_tree / "frames_a"),
                                         str(frame_tree / "frames_b")]
    assert find_videos([frame_tree / "frames_a"]) == [str(frame_tree / "frames_a")]
    # a folder with a video and a thumbnail image is a folder of videos, not a frame folder
    thumb = frame_tree / "with_thumb"
    thumb.mkdir(exist_ok=True)
    (thumb / "v.mp4").write_bytes((frame_tree / "clip.mp4").read_bytes())
    (thumb / "cover.jpg").write_bytes((frame_tree / "frames_b" / "img_00001.jpg").read_bytes())
    try:
        assert find_videos([thumb]) == [str(thumb / "v.mp4")]
    finally:
        for f in thumb.iterdir():
            f.unlink()
        thumb.rmdir()


def test_predict_frame_folder_equals_the_video(rec, frame_tree):
    """The GIF's own frames stored as PNG give the GIF's prediction; JPEG frames nearly."""
    want = rec.predict([GIF], topk=5, workers=0, with_embedding=True)[0]
    got = rec.predict([frame_tree / "frames_a", frame_tree / "frames_b"], topk=5, workers=0, with_embedding=True)
    assert got[0]["video"] == str(frame_tree / "frames_a") and "error" not in got[0], got[0]
    assert [t["label"] for t in got[0]["top"]] == [t["label"] for t in want["top"]]
    # the same frames: the same numbers (up to float rounding of a batch of 2 instead of 1)
    np.testing.assert_allclose([t["score"] for t in got[0]["top"]], [t["score"] for t in want["top"]], atol=2e-6)
    np.testing.assert_allclose(got[0]["embedding"], want["embedding"], atol=2e-6)
    cos = float(np.dot(got[1]["embedding"], want["embedding"]))
    assert cos > 0.99


def test_predict_cli_frame_folder(capsys, frame_tree, tiny_dir):
    rc = cli.main(["predict", str(frame_tree), "--checkpoint", str(tiny_dir / "text4vis_orig_transf.pt"),
                   "--clip", str(tiny_dir / "openai_sd.pt"), "--labels", "ucf101",
                   "--frames", "4", "--json", "--topk", "2", "--quiet", "--workers", "0"])
    out, err = capsys.readouterr()
    recs = [json.loads(line) for line in out.splitlines()]
    assert rc == 0, err
    assert [r["video"] for r in recs] == [str(frame_tree / n) for n in ("clip.mp4", "frames_a", "frames_b")]
    assert all(len(r["top"]) == 2 for r in recs)
    # a frame folder whose images do not decode is one failed input, the others still processed
    bad = frame_tree / "frames_bad"
    bad.mkdir()
    (bad / "img_00001.jpg").write_text("not an image")
    try:
        rc = cli.main(["predict", str(bad), str(frame_tree / "clip.mp4"), "--checkpoint",
                       str(tiny_dir / "text4vis_orig_transf.pt"), "--clip", str(tiny_dir / "openai_sd.pt"),
                       "--labels", "ucf101", "--frames", "4", "--json", "--quiet", "--workers", "0"])
        out, err = capsys.readouterr()
        recs = [json.loads(line) for line in out.splitlines()]
        assert rc == 1 and "1 of 2 inputs failed" in err
        assert recs[0]["video"] == str(bad) and "img_00001.jpg: not a readable image" in recs[0]["error"]
        assert "top" in recs[1]
    finally:
        (bad / "img_00001.jpg").unlink()
        bad.rmdir()


# ----------------------------------------------------------------------------- progress: what it is doing

def test_predict_says_what_it_does_and_shows_a_bar_from_the_first_video(capsys, tiny_dir, tmp_path, monkeypatch):
    labels = tmp_path / "labels.txt"
    labels.write_text("unseen action one\nunseen action two\nunseen action three\n")  # not in the classifier cache
    argv = ["predict", ARM, "--checkpoint", str(tiny_dir / "text4vis_orig_transf.pt"), "--clip",
            str(tiny_dir / "openai_sd.pt"), "--labels", str(labels), "--frames", "4", "--workers", "0"]
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip()]
    assert lines[0] == f"text4vis: 1 video found; loading the model ({tiny_dir / 'text4vis_orig_transf.pt'})"
    assert lines[1] == "text4vis: building the CLIP text classifier for 3 labels x 1 prompts"
    assert any("1/1" in ln and ("video/s" in ln or "s/video" in ln) for ln in lines), err  # the bar, with its rate
    assert out.startswith(ARM)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert cli.main([*argv, "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    # in a pipe or a log file (stderr not a terminal): no status lines, no bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert cli.main(argv) == 0
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------------------- plots and tables name their inputs

def test_classifier_plot_panels_are_named_by_what_tells_them_apart(capsys, tmp_path):
    from text4vis import classifiers as C
    from text4vis.labels import load_labels
    names = load_labels("ucf101")
    paths = []
    for run_name in ("a", "b", "c", "d"):
        p = tmp_path / "runs" / run_name / "best.safetensors"
        p.parent.mkdir(parents=True)
        C.save_classifier(C.random_classifier(names, 32, seed=ord(run_name)), str(p))
        paths.append(str(p))
    out = tmp_path / "corr.png"
    assert cli.main(["classifier", "plot", *paths, "--classes", "12", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.strip() == f"{out}: 4 panel(s), 12 classes; panels: a (random); b (random); c (random); d (random)"
    assert out.stat().st_size > 10000


def test_compare_rows_are_named_by_what_tells_them_apart(capsys, tmp_path):
    import yaml
    cfg = {"classifier": {"type": "text"}, "training": {"mode": "classifier"}, "model": {"head": "transf"},
           "data": {"shot": None}}
    for run_name, top1 in (("lr1e-5", 0.5), ("lr1e-4", 0.25)):
        d = tmp_path / "runs" / run_name / "full"
        d.mkdir(parents=True)
        (d / "config.yaml").write_text(yaml.safe_dump(cfg))
        (d / "metrics.jsonl").write_text(json.dumps({"step": 1, "val_top1": top1, "val_top5": 0.9}) + "\n")
    folders = sorted(str(p) for p in (tmp_path / "runs").glob("*/full"))
    assert cli.main(["compare", *folders]) == 0
    rows = [line.split("|")[1].strip() for line in capsys.readouterr().out.splitlines()[2:]]
    assert rows == ["lr1e-4", "lr1e-5"]


# ----------------------------------------------------------------------------- bench: no None, warn when unreliable

def _no_none(obj, where="result"):
    if isinstance(obj, dict):
        for k, v in obj.items():
            _no_none(v, f"{where}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _no_none(v, f"{where}[{i}]")
    else:
        assert obj is not None, f"{where} is None"


@pytest.mark.parametrize("iters,warned", [(2, 2), (6, 1)])
def test_bench_prints_no_none_and_warns_about_few_iterations(capsys, monkeypatch, iters, warned):
    from conftest import tiny_config
    from text4vis.bench import model as bench
    tiny = tiny_config(64)
    monkeypatch.setattr(bench, "model_config", lambda name: tiny)
    assert cli.main(["bench", "--model", "tiny", "--frames", "2", "--batch", "1", "--iters", str(iters),
                     "--warmup", "0", "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    assert "None" not in out
    assert "percent_of_peak: n/a (no peak TFLOP/s known for this device)" in out
    assert "peak_memory_gb: n/a (measured on CUDA devices only)" in out
    warnings = err.strip().splitlines()
    assert len(warnings) == warned and all(w.startswith("text4vis bench: warning: ") for w in warnings)
    if iters < 5:
        assert f"only {iters} timed iterations: figures from fewer than 5 are unreliable" in warnings[0]
    assert "s in all: under 1 s, timer and warm-up effects dominate" in warnings[-1]  # a tiny model is fast
    assert cli.main(["bench", "--model", "tiny", "--frames", "2", "--batch", "1", "--iters", str(iters),
                     "--warmup", "0", "--device", "cpu", "--json"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    _no_none(result)
    assert len(result["warnings"]) == warned and len(err.strip().splitlines()) == warned
    assert set(result["cases"]) == {"text4vis", "reference_fp32"}


def test_bench_reliability_rule():
    from text4vis.bench.model import reliability_warnings
    assert reliability_warnings(10, [1.5, 2.0]) == []
    assert len(reliability_warnings(4, [1.5])) == 1 and len(reliability_warnings(10, [0.5, 3.0])) == 1
