"""`text4vis predict` end to end through cli.main: JSON lines, embeddings, views, folders, broken
inputs (each its own one-line error), usage errors (exit 2, one line), and the table output."""
from __future__ import annotations

import json
import math
import os
import re
import shutil

import pytest
import torch

from conftest import SHARED_VIDEOS, run_cli, tiny_config, tiny_state_dict_of
from text4vis import cli
from text4vis.labels import load_labels

REAL = ["arm_wrestling_h264.mp4", "cricket_shot_ucf101.gif", "rotate90_keyboard_3frames_0.1s.mov",
        "cleaning_pool_xvid_mp3.avi"]
UCF = load_labels("ucf101")


def real(name: str) -> str:
    path = os.path.join(SHARED_VIDEOS, name)
    assert os.path.isfile(path), f"test video {name} is missing from tests/data/videos"
    return path


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def check_top(rec: dict, k: int, labels=UCF) -> None:
    top = rec["top"]
    assert len(top) == k
    scores = [t["score"] for t in top]
    assert scores == sorted(scores, reverse=True)
    assert all(0 <= s <= 1 for s in scores) and sum(scores) <= 1 + 1e-5
    assert all(t["label"] in labels for t in top)
    assert len({t["label"] for t in top}) == k


def test_predict_json_real_videos(capsys, clip_file):
    paths = [real(n) for n in REAL]
    rc, out, err = run_cli("predict", *paths, "--clip", clip_file, "--labels", "ucf101", "--json", "--topk", "3",
                       "--frames", "4", "--quiet")
    assert rc == 0
    assert out.count("\n") == len(paths)
    recs = json_lines(out)
    assert [r["video"] for r in recs] == paths  # input order
    for r in recs:
        assert set(r) == {"video", "top"}
        check_top(r, 3)
    # deterministic: the same run gives the same lines
    rc2, out2, _ = run_cli("predict", *paths, "--clip", clip_file, "--labels", "ucf101", "--json", "--topk", "3",
                       "--frames", "4", "--quiet")
    assert rc2 == 0 and out2 == out


def test_predict_embedding_and_views(capsys, clip_file):
    paths = [real(REAL[0]), real(REAL[3])]
    rc, out, _ = run_cli("predict", *paths, "--clip", clip_file, "--labels", "ucf101", "--json", "--topk", "2",
                     "--frames", "4", "--embedding", "--workers", "0")
    assert rc == 0
    plain = json_lines(out)
    for r in plain:
        check_top(r, 2)
        emb = r["embedding"]
        assert len(emb) == 64
        assert math.isclose(math.sqrt(sum(x * x for x in emb)), 1.0, abs_tol=1e-5)
    # the top scores follow from the embedding: softmax(100 x cosine) against the classifier
    assert plain[0]["embedding"] != plain[1]["embedding"]

    rc, out, _ = run_cli("predict", *paths, "--clip", clip_file, "--labels", "ucf101", "--json", "--topk", "2",
                     "--frames", "4", "--embedding", "--views", "2x3", "--workers", "0")
    assert rc == 0
    views = json_lines(out)
    assert [r["video"] for r in views] == paths
    for r, p in zip(views, plain):
        check_top(r, 2)
        assert math.isclose(math.sqrt(sum(x * x for x in r["embedding"])), 1.0, abs_tol=1e-5)
        assert r["embedding"] != p["embedding"]  # more views, another (averaged) embedding


def test_predict_folder_recursive(capsys, clip_file, tmp_path, index_video):
    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / "a").mkdir()
    shutil.copy(index_video, tmp_path / "b" / "deep" / "z.mp4")
    shutil.copy(index_video, tmp_path / "a" / "one.mp4")
    shutil.copy(real("rotate90_keyboard_3frames_0.1s.mov"), tmp_path / "top.mov")
    (tmp_path / "a" / "readme.txt").write_text("not a video")
    rc, out, err = run_cli("predict", tmp_path, "--clip", clip_file, "--labels", "ucf101", "--json", "--topk", "1",
                       "--frames", "4", "--quiet")
    assert rc == 0, err
    recs = json_lines(out)
    assert [os.path.relpath(r["video"], tmp_path) for r in recs] == ["top.mov", "a/one.mp4", "b/deep/z.mp4"]
    for r in recs:
        check_top(r, 1)
    assert recs[1]["top"] == recs[2]["top"]  # the same file twice: the same answer


def test_predict_bad_inputs_in_one_run(capsys, clip_file, odd_inputs):
    good = real("arm_wrestling_h264.mp4")
    rotated = real("iphone4s_rotate90_h264_aac.mov")
    vfr = real("dog_android_vfr_rotate180_h264_aac.mp4")
    o = odd_inputs
    inputs = [o["missing"], good, o["zero"], o["text"], o["truncated_mp4"], o["truncated_mkv"], o["audio_only"],
              o["single"], o["wide"], o["gray"], rotated, vfr]
    must_fail = {o["missing"]: "no such file", o["zero"]: "empty", o["text"]: "not a readable video",
                 o["truncated_mp4"]: "", o["audio_only"]: "no video stream"}
    rc, out, err = run_cli("predict", *inputs, "--clip", clip_file, "--labels", "ucf101", "--json", "--topk", "3",
                       "--frames", "4", "--batch-size", "3")
    assert rc == 1
    recs = json_lines(out)
    assert [r["video"] for r in recs] == inputs
    failed = 0
    for r in recs:
        p = r["video"]
        if "error" in r:
            failed += 1
            assert set(r) == {"video", "error"}
            assert p in must_fail, f"{p} should have been predicted: {r['error']}"
            assert p in r["error"] and must_fail[p] in r["error"]
            assert "\n" not in r["error"] and len(r["error"]) < 400
        else:
            assert p not in must_fail, f"{p} should have failed"
            check_top(r, 3)
    assert failed == len(must_fail)
    assert f"{failed} of {len(inputs)} inputs failed" in err


def test_predict_all_inputs_fail(capsys, clip_file, odd_inputs):
    rc, out, err = run_cli("predict", odd_inputs["zero"], odd_inputs["missing"], "--clip", clip_file, "--labels", "ucf101",
                       "--json", "--frames", "4")
    assert rc == 1
    recs = json_lines(out)
    assert [set(r) for r in recs] == [{"video", "error"}] * 2
    assert "2 of 2 inputs failed" in err


def test_predict_table_output(capsys, clip_file):
    path = real("arm_wrestling_h264.mp4")
    args = [path, "--clip", clip_file, "--labels", "ucf101", "--topk", "4", "--frames", "4"]
    rc, table, _ = run_cli("predict", *args)
    assert rc == 0
    rc, out, _ = run_cli("predict", *args, "--json")
    (rec,) = json_lines(out)
    lines = table.splitlines()
    assert lines[0] == path and len(lines) == 5
    for k, (line, t) in enumerate(zip(lines[1:], rec["top"]), start=1):
        m = re.fullmatch(r"\s*(\d+)\. (.+?)\s+(\d+\.\d\d)%", line)
        assert m, line
        assert int(m.group(1)) == k and m.group(2) == t["label"]
        assert float(m.group(3)) == pytest.approx(100 * t["score"], abs=0.006)


def test_predict_table_shows_errors(capsys, clip_file, odd_inputs):
    rc, out, err = run_cli("predict", odd_inputs["zero"], "--clip", clip_file, "--labels", "ucf101", "--frames", "4")
    assert rc == 1
    assert out.splitlines() == [odd_inputs["zero"], f"   error: {odd_inputs['zero']}: empty file (0 bytes)"]


def test_predict_own_labels_file(capsys, clip_file, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("arm wrestling\ncleaning pool\ndog sitting\n")
    rc, out, _ = run_cli("predict", real(REAL[0]), "--clip", clip_file, "--labels", labels, "--json", "--topk", "5",
                     "--frames", "4", "--prompts", "a video of {}.", "{}")
    assert rc == 0
    (rec,) = json_lines(out)
    check_top(rec, 3, labels=["arm wrestling", "cleaning pool", "dog sitting"])  # topk capped at 3 classes
    assert sum(t["score"] for t in rec["top"]) == pytest.approx(1.0, abs=1e-5)


# ----------------------------------------------------------------------------- usage errors: exit 2, one line

@pytest.fixture(scope="module")
def wide_clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("wide_cli") / "w128.pt"
    torch.save(tiny_state_dict_of(tiny_config(128), seed=3), path)
    return str(path)


def usage_error(capsys, *argv) -> str:
    rc, out, err = run_cli("predict", *argv)
    assert rc == 2, (rc, out, err)
    lines = [line for line in err.splitlines() if line.strip() and "Warning" not in line and "warnings.warn" not in line]
    assert len(lines) == 1, err
    assert lines[0].startswith("text4vis predict: error: ")
    assert out == ""
    return lines[0]


def test_usage_unknown_labels(capsys, clip_file, index_video):
    line = usage_error(capsys, index_video, "--clip", clip_file, "--labels", "no_such_label_set")
    assert "no_such_label_set" in line and "k400" in line


def test_usage_bad_views(capsys, clip_file, index_video):
    line = usage_error(capsys, index_video, "--clip", clip_file, "--labels", "ucf101", "--views", "2x2")
    assert "2x2" in line


def test_usage_folder_without_videos(capsys, clip_file, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    line = usage_error(capsys, tmp_path, "--clip", clip_file, "--labels", "ucf101")
    assert str(tmp_path) in line and "no videos" in line


def test_empty_folder_among_inputs_is_a_failed_input(capsys, clip_file, tmp_path, index_video):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, out, err = run_cli("predict", index_video, empty, "--clip", clip_file, "--labels", "ucf101", "--json")
    recs = json_lines(out)
    assert rc == 1 and "1 of 2 inputs failed" in err
    assert {"video": str(empty), "error": "a folder without video files"} in recs
    assert any(r.get("video") == str(index_video) and "top" in r for r in recs)


@pytest.mark.parametrize("extra,words", [(["--embedding"], "--embedding"), (["--views", "100000x1"], "at most 64")])
def test_usage_embedding_without_json_and_too_many_views(capsys, clip_file, index_video, extra, words):
    line = usage_error(capsys, index_video, "--clip", clip_file, "--labels", "ucf101", *extra)
    assert words in line


def test_usage_bad_device(capsys, clip_file, index_video):
    line = usage_error(capsys, index_video, "--clip", clip_file, "--labels", "ucf101", "--device", "gpu")
    assert "--device gpu: not a device name" in line
    if not torch.cuda.is_available():
        line = usage_error(capsys, index_video, "--clip", clip_file, "--labels", "ucf101", "--device", "cuda")
        assert "no CUDA GPU is usable" in line


def test_usage_checkpoint_clip_width_mismatch(capsys, tiny_dir, wide_clip, index_video):
    ckpt = str(tiny_dir / "text4vis_orig_transf.pt")
    line = usage_error(capsys, index_video, "--checkpoint", ckpt, "--clip", wide_clip, "--labels", "ucf101")
    assert ckpt in line and wide_clip in line


@pytest.mark.parametrize("extra,words", [
    (["--topk", "0"], "--topk"), (["--frames", "-2"], "--frames"), (["--batch-size", "0"], "--batch-size"),
    (["--prompts", "no placeholder"], "no placeholder"),
])
def test_usage_bad_numbers_and_prompts(capsys, clip_file, index_video, extra, words):
    line = usage_error(capsys, index_video, "--clip", clip_file, "--labels", "ucf101", *extra)
    assert words in line


def test_usage_too_many_frames_for_transf_head(capsys, tiny_dir, clip_file, index_video):
    line = usage_error(capsys, index_video, "--checkpoint", tiny_dir / "text4vis_orig_transf.pt", "--clip", clip_file,
                       "--labels", "ucf101", "--frames", "78")
    assert "77" in line


def test_usage_missing_weights_offline(capsys, index_video, tmp_path, monkeypatch):
    from text4vis import towers
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(towers, "OPENAI_CACHE", str(tmp_path / "clip"))
    line = usage_error(capsys, index_video, "--labels", "ucf101")  # default --clip ViT-B/16
    assert "ViT-B/16" in line and "--clip /path/to/checkpoint.pt" in line


def test_usage_refused_checkpoint(capsys, clip_file, index_video, tmp_path):
    evil = tmp_path / "evil.pt"
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'PWNED'}",))

    evil.write_bytes(pickle.dumps({"x": Payload()}, protocol=2))
    line = usage_error(capsys, index_video, "--checkpoint", evil, "--clip", clip_file, "--labels", "ucf101")
    assert str(evil) in line and "refused" in line
    assert not (tmp_path / "PWNED").exists()


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "predict" in capsys.readouterr().out
