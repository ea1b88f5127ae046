"""Bad data inputs: damaged videos, unsafe output paths, bad frame templates, binary list files.

Rule under test: bad input never produces a traceback, a hang or lost work; a one-line error names
the file and the problem, the rest of the batch is processed, exit 1 (some inputs failed) or 2
(usage/setup error). Fixtures are real files: videos written with PyAV, damaged copies of the shared
sample videos, JPEG frame folders.
"""
from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import SHARED_VIDEOS, write_video
from text4vis import cli, video
from text4vis.train.check_data import check_config
from text4vis.train.config import load_config
from text4vis.datasets import DataError, FrameReader, check_image_tmpl, read_csv, read_list
from text4vis.prepare import prepare_list
from text4vis.video import VideoError, read_frames

BASKETBALL = os.path.join(SHARED_VIDEOS, "shooting_basketball_h264_29.97fps.mp4")
SRC = os.path.join(os.path.dirname(__file__), "..", "src")


def damaged_copy(dst, seed: int = 0) -> str:
    """The shared 300-frame H.264 video with 200 kB of its middle overwritten by random bytes
    (frame threading deadlocks on it now and then; only the first ~46 frames decode)."""
    r = random.Random(seed)
    data = bytearray(open(BASKETBALL, "rb").read())
    data[100000:300000] = bytes(r.getrandbits(8) for _ in range(200000))
    with open(dst, "wb") as f:
        f.write(data)
    return str(dst)


def frames(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)


def run_python(code: str, timeout: float) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter; a hang fails the test instead of hanging the suite."""
    env = dict(os.environ, PYTHONPATH=os.path.abspath(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"hung: no result after {timeout} s\n{exc.stdout or ''}{exc.stderr or ''}")


# ----------------------------------------------------------------------------- A1: no decoding hang

@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    return damaged_copy(tmp_path_factory.mktemp("damaged") / "corrupt_seed0.mp4")


def test_main_process_decode_never_uses_frame_threads(damaged, index_video, monkeypatch):
    """threads=0 (predict, eval and training with workers 0) decodes with slice threads only."""
    seen = []
    original = video._decode_selected

    def spy(container, stream, wanted, path):
        seen.append(stream.codec_context.thread_type)
        return original(container, stream, wanted, path)

    monkeypatch.setattr(video, "_decode_selected", spy)
    for path in (index_video, damaged):
        read_frames(path, lambda n: [0, n - 1], threads=0)
    assert seen and all(not (t & av_thread_type().FRAME) for t in seen), seen


def av_thread_type():
    from av.codec.context import ThreadType
    return ThreadType


@pytest.mark.slow
def test_damaged_h264_decodes_repeatedly_without_hanging(damaged):
    """Before the fix, with three of these loops running side by side (contention makes the race
    likely), at least one deadlocked in FFmpeg's frame threads nearly every time."""
    code = textwrap.dedent(f"""
        import numpy as np
        from text4vis.video import read_frames
        for i in range(150):
            frames, n = read_frames({damaged!r}, lambda n: np.linspace(0, n - 1, 4).astype(int), threads=0)
            assert frames.shape[0] == 4 and 0 < n < 300, n
        print("done", n)
    """)
    env = dict(os.environ, PYTHONPATH=os.path.abspath(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(3)]
    hung, deadline = 0, time.monotonic() + 180
    try:
        for p in procs:
            try:
                out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                hung += 1
                continue
            assert p.returncode == 0 and out.startswith("done"), err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert hung == 0, f"{hung} of 3 decoding loops hung on {damaged}"


# ----------------------------------------------------------------------------- decode error messages

def test_decode_errors_are_one_clean_line(tmp_path, odd_inputs):
    text = tmp_path / "text.avi"
    text.write_text("not a video\n" * 100)
    # decode a damaged Matroska file first: FFmpeg's global "last error log" must not leak into the next message
    read_frames(odd_inputs["truncated_mkv"], lambda n: [0])
    with pytest.raises(VideoError) as e:
        read_frames(str(text), lambda n: [0])
    assert str(e.value) == f"{text}: not a readable video (Invalid data found when processing input)"
    for name in ("text", "zero", "truncated_mp4"):
        with pytest.raises(VideoError) as e:
            read_frames(odd_inputs[name], lambda n: [0])
        msg = str(e.value)
        assert msg.count(odd_inputs[name]) == 1 and "Errno" not in msg and "last error log" not in msg, msg
        assert "\n" not in msg


# ----------------------------------------------------------------------------- B9: partly decodable videos

def test_check_data_reports_video_that_decodes_few_of_its_frames(damaged, tmp_path, capsys):
    good = os.path.join(SHARED_VIDEOS, "arm_wrestling_h264.mp4")
    (tmp_path / "train.txt").write_text(f"{good} 0\n{damaged} 1\n")
    cfg, _ = load_config(None, [f"data.train_list={tmp_path / 'train.txt'}"])
    report = check_config(cfg, workers=1, clean_dir=str(tmp_path / "clean"))
    out, err = capsys.readouterr()
    assert report["splits"]["train"]["ok"] == 1 and report["splits"]["train"]["broken"] == 1
    m = re.search(rf"broken: {re.escape(str(tmp_path / 'train.txt'))}:2: {re.escape(damaged)}: "
                  r"decodes (\d+) of 300 frames", err)
    assert m and int(m.group(1)) < 270, err
    assert (tmp_path / "clean" / "train.txt").read_text() == f"{good} 0\n"
    assert "cleaned list (1 entries, 1 removed" in out


# ----------------------------------------------------------------------------- A2: --write-clean

@pytest.fixture
def listdir_cfg(tmp_path):
    """A folder holding val.txt (one good video, one text file named .mp4) and a config naming it."""
    write_video(str(tmp_path / "good.mp4"), frames(8, 0))
    (tmp_path / "text.mp4").write_text("not a video\n")
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "val.txt").write_text("good.mp4 0\ntext.mp4 1\n")
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({"data": {"val_list": str(tmp_path / "lists" / "val.txt"),
                                                                "val_root": str(tmp_path)}}))
    return tmp_path


def test_write_clean_refuses_to_overwrite_the_input_list(listdir_cfg, capsys):
    d = listdir_cfg
    before = (d / "lists" / "val.txt").read_bytes()
    for target in (d / "lists", d / "lists" / "." / ".." / "lists"):
        rc = cli.main(["check-data", "--config", str(d / "cfg.yaml"), "--workers", "1", "--write-clean", str(target)])
        out, err = capsys.readouterr()
        assert rc == 2
        assert err.strip().splitlines() == [
            f"text4vis check-data: error: --write-clean {target}: would overwrite the input list "
            f"{d / 'lists' / 'val.txt'}; write the cleaned lists to another folder"]
        assert out == ""  # refused before any work
        assert (d / "lists" / "val.txt").read_bytes() == before
    # through a symlinked folder too
    os.symlink(d / "lists", d / "alias")
    assert cli.main(["check-data", "--config", str(d / "cfg.yaml"), "--workers", "1",
                     "--write-clean", str(d / "alias")]) == 2
    assert "would overwrite the input list" in capsys.readouterr().err
    assert (d / "lists" / "val.txt").read_bytes() == before


def test_write_clean_elsewhere_is_atomic_and_counts_what_it_wrote(listdir_cfg, capsys):
    d = listdir_cfg
    clean = d / "clean"
    rc = cli.main(["check-data", "--config", str(d / "cfg.yaml"), "--workers", "1", "--write-clean", str(clean)])
    out, _ = capsys.readouterr()
    assert rc == 1
    assert f"val: cleaned list (1 entries, 1 removed, 0 frame counts corrected) written to {clean / 'val.txt'}" in out
    assert (clean / "val.txt").read_text() == "good.mp4 0\n"
    assert os.listdir(clean) == ["val.txt"]  # no temporary file left behind
    assert (d / "lists" / "val.txt").read_text() == "good.mp4 0\ntext.mp4 1\n"


# ----------------------------------------------------------------------------- A3, B11, C23: prepare

@pytest.fixture
def video_list(tmp_path):
    (tmp_path / "videos").mkdir()
    for i in range(2):
        write_video(str(tmp_path / "videos" / f"v{i}.mp4"), frames(6, i))
    (tmp_path / "videos" / "zero.mp4").write_bytes(b"")
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "val.txt").write_text("videos/v0.mp4 0\nvideos/zero.mp4 1\nvideos/v1.mp4 1\n")
    return tmp_path


def test_prepare_refuses_to_replace_its_input_list(video_list, capsys):
    d = video_list
    before = (d / "lists" / "val.txt").read_bytes()
    for _ in range(2):  # a re-run used to empty the list
        rc = cli.main(["prepare", "--list", str(d / "lists" / "val.txt"), "--root", str(d),
                       "--out", str(d / "lists"), "--workers", "1"])
        err = capsys.readouterr().err
        assert rc == 2
        assert err.strip().splitlines() == [
            f"text4vis prepare: error: --out {d / 'lists'}: the prepared list {d / 'lists' / 'val.txt'} would "
            f"replace the input list; choose another output folder"]
        assert (d / "lists" / "val.txt").read_bytes() == before
    assert not (d / "lists" / "videos").exists()  # nothing converted


def test_prepare_reports_each_failure_in_one_line_and_reruns_safely(video_list, capsys):
    d = video_list
    args = ["prepare", "--list", str(d / "lists" / "val.txt"), "--root", str(d), "--out", str(d / "prep"),
            "--workers", "1"]
    assert cli.main(args) == 1
    out, err = capsys.readouterr()
    assert f"failed: {d / 'videos' / 'zero.mp4'}: empty file (0 bytes)" in err
    assert "Traceback" not in err and "Errno" not in err
    assert "3 videos: 2 converted, 0 already done, 1 failed" in out
    assert (d / "prep" / "val.txt").read_text() == "videos/v0.mp4.frames.zip 0\nvideos/v1.mp4.frames.zip 1\n"
    assert cli.main(args) == 1  # resumable: done files skipped, the list written again (atomically)
    assert "3 videos: 0 converted, 2 already done, 1 failed" in capsys.readouterr().out
    assert (d / "prep" / "val.txt").read_text() == "videos/v0.mp4.frames.zip 0\nvideos/v1.mp4.frames.zip 1\n"
    assert not [n for n in os.listdir(d / "prep") if ".tmp" in n]


@pytest.mark.parametrize("option, value, message", [
    ("--short-side", "0", "--short-side must be a whole number of pixels, at least 1 (not 0)"),
    ("--quality", "500", "--quality must be a JPEG quality from 1 to 100 (not 500)"),
    ("--quality", "0", "--quality must be a JPEG quality from 1 to 100 (not 0)"),
    ("--workers", "-1", "--workers must be 0 (one per CPU) or more (not -1)"),
])
def test_prepare_bad_numbers_are_usage_errors_before_work(video_list, option, value, message, capsys):
    d = video_list
    rc = cli.main(["prepare", "--list", str(d / "lists" / "val.txt"), "--root", str(d), "--out", str(d / "prep"),
                   option, value])
    assert rc == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"text4vis prepare: error: {message}"]
    assert not (d / "prep").exists()
    with pytest.raises(DataError):
        prepare_list(str(d / "lists" / "val.txt"), str(d), str(d / "prep"),
                     **{option.lstrip("-").replace("-", "_"): int(value)})


def test_prepare_frame_folder_list_is_one_line_error(tmp_path, capsys):
    (tmp_path / "f").mkdir()
    Image.fromarray(frames(1, 0)[0]).save(tmp_path / "f" / "img_00001.jpg")
    (tmp_path / "frames.txt").write_text("f 1 0\n")
    rc = cli.main(["prepare", "--list", str(tmp_path / "frames.txt"), "--root", str(tmp_path),
                   "--out", str(tmp_path / "out"), "--workers", "1"])
    assert rc == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"text4vis prepare: error: {tmp_path / 'frames.txt'}:1: frame-folder lists are already frames; "
        f"prepare converts video lists"]


# ----------------------------------------------------------------------------- A7: image_tmpl

@pytest.fixture
def frame_folder_cfg(tmp_path):
    (tmp_path / "f").mkdir()
    for i, f in enumerate(frames(3, 0)):
        Image.fromarray(f).save(tmp_path / "f" / f"img_{i + 1:05d}.jpg")
    (tmp_path / "val.txt").write_text("f 3 0\n")
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({"data": {"val_list": str(tmp_path / "val.txt"),
                                                                "val_root": str(tmp_path)}}))
    return tmp_path


@pytest.mark.parametrize("tmpl, problem", [
    ("img_00001.jpg", "has no field for the frame number"),
    ("{x}.jpg", "not a valid template (unknown field 'x')"),
    ("img_{:05d", "not a valid template (unmatched '{' in format spec)"),
    ("img_{}_{}.jpg", "not a valid template ("),
    ("img_{:s}.jpg", "not a valid template ("),
])
def test_bad_image_tmpl_is_a_data_error(tmpl, problem):
    with pytest.raises(DataError) as e:
        check_image_tmpl(tmpl)
    assert str(e.value).startswith(f"data.image_tmpl {tmpl!r}: {problem}")
    with pytest.raises(DataError):
        FrameReader(tmpl)
    check_image_tmpl("img_{:05d}.jpg")
    check_image_tmpl("{}.png")


@pytest.mark.slow
def test_check_data_with_bad_image_tmpl_neither_hangs_nor_crashes(frame_folder_cfg):
    d = frame_folder_cfg
    result = run_python(f"""
        import sys, time
        from text4vis import cli
        from text4vis.train.check_data import check_sample
        from text4vis.datasets import Sample
        for tmpl in ("img_00001.jpg", "{{x}}.jpg", "img_{{:05d"):
            rc = cli.main(["check-data", "--config", {str(d / 'cfg.yaml')!r}, "--workers", "1",
                           "--set", "data.image_tmpl=" + tmpl])
            print("rc", rc, flush=True)
        # the frame count itself is bounded, whatever the template
        kind, msg, n = check_sample((Sample({str(d / 'f')!r}, 0, 5, "val.txt:1"), "img_00001.jpg", 1, 0))
        print("sample", kind, n)
    """, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["rc 2", "rc 2", "rc 2", "sample frames 3"]
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 3 and "Traceback" not in result.stderr
    assert errors[0].startswith("text4vis check-data: error: data.image_tmpl 'img_00001.jpg': has no field")
    assert errors[1].startswith("text4vis check-data: error: data.image_tmpl '{x}.jpg': not a valid template")


# ----------------------------------------------------------------------------- C17: binary lists

def test_binary_list_and_csv_are_not_text_files(tmp_path, capsys):
    blob = bytes(range(256)) * 8
    (tmp_path / "list.txt").write_bytes(blob)
    (tmp_path / "list.csv").write_bytes(b"path,label\n" + blob)
    with pytest.raises(DataError) as e:
        read_list(str(tmp_path / "list.txt"))
    assert str(e.value).startswith(f"{tmp_path / 'list.txt'}: not a text file (")
    with pytest.raises(DataError) as e:
        read_csv(str(tmp_path / "list.csv"), ["a", "b"])
    assert str(e.value).startswith(f"{tmp_path / 'list.csv'}: not a text file (")
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({"data": {"train_list": str(tmp_path / "list.txt")}}))
    assert cli.main(["check-data", "--config", str(tmp_path / "cfg.yaml"), "--workers", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"text4vis check-data: error: {tmp_path / 'list.txt'}: not a text file")
    assert cli.main(["prepare", "--list", str(tmp_path / "list.txt"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"text4vis prepare: error: {tmp_path / 'list.txt'}: not a text file")
