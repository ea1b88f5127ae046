"""Issue 23, the index part: the output rule for `index tag --out`, finite numbers and standard JSON, one
checking layer for the API, progress bars only on a terminal, a killed decoding worker recorded as a failed
video, CSV lists from Excel, one rule for prompts, and the messages (subcommand prefix, singulars, a
damaged index.json, stale shards, frame folders, the default stride). Tiny random-weight CLIP, CPU."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from conftest import SHARED_VIDEOS, index_frames, run_cli, stripes, tiny_openai_state_dict, write_video
from text4vis.errors import OutputError, UsageError, VideoIndexError
from text4vis.index import VideoIndex, build_index, expand_inputs

REAL = ["arm_wrestling_h264.mp4", "rotate90_keyboard_3frames_0.1s.mov"]


def model_args(clip) -> list[str]:
    return ["--clip", str(clip), "--frames", "4", "--device", "cpu", "--workers", "0"]


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity (standard JSON only)."""
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """Two real clips, two generated 1 s clips, a frame folder of 30 PNG images (1.2 s at 25 fps), the tiny
    CLIP file, and a per-video index of them built once."""
    d = tmp_path_factory.mktemp("index2")
    videos = d / "videos"
    videos.mkdir()
    for name in REAL:
        shutil.copy(os.path.join(SHARED_VIDEOS, name), videos / name)
    write_video(str(videos / "stripes.mp4"), stripes(25, 64, 64, 8))
    write_video(str(videos / "counter.mp4"), index_frames(25, 64, 64))
    frames = videos / "frames"
    frames.mkdir()
    for i, image in enumerate(stripes(30, 48, 48, 6)):
        Image.fromarray(image).save(frames / f"img_{i + 1:05d}.png")
    clip = d / "clip.pt"
    torch.save(tiny_openai_state_dict(0), clip)
    ref = d / "ref"
    rc, out, err = run_cli("index", "build", videos, "--out", ref, *model_args(clip), "--shard-size", "2", "--quiet")
    assert rc == 0, err
    return {"dir": d, "videos": videos, "frames": frames, "clip": clip, "ref": ref}


def one_error_line(err: str, prefix: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    return lines[0]


# ----------------------------------------------------------------------------- item 1: the output rule

def test_tag_out_never_replaces_a_file_that_is_not_a_tag_table(lib, tmp_path, monkeypatch):
    computed = []
    original = VideoIndex._tags

    def spy(self, *a, **kw):
        computed.append(1)
        return original(self, *a, **kw)
    monkeypatch.setattr(VideoIndex, "_tags", spy)
    tag = ["index", "tag", lib["ref"], "--labels", "ucf101", "--topk", "1", "--device", "cpu", "--out"]

    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    rc, _, err = run_cli(*tag, notes)
    assert rc == 2 and "must end in .parquet" in one_error_line(err, "text4vis index tag: error: --out ")
    assert notes.read_text() == "my notes"
    precious = tmp_path / "precious.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3]}), precious)
    before = precious.read_bytes()
    rc, _, err = run_cli(*tag, precious)
    line = one_error_line(err, "text4vis index tag: error: --out ")
    assert rc == 2 and "is not a tag table written by text4vis; not replaced (--overwrite replaces it)" in line
    assert precious.read_bytes() == before
    folder = tmp_path / "folder.parquet"
    folder.mkdir()
    rc, _, err = run_cli(*tag, folder)
    assert rc == 2 and "is a folder" in one_error_line(err, "text4vis index tag: error: --out ")
    blocked = tmp_path / "afile"
    blocked.write_text("x")
    rc, _, err = run_cli(*tag, blocked / "sub" / "t.parquet")
    assert rc == 2 and "is not a folder" in one_error_line(err, "text4vis index tag: error: --out ")
    assert computed == []                                # every refusal came before any tag was computed

    # a missing parent folder is created; text4vis's own tag table is replaced; --overwrite replaces the rest
    mine = tmp_path / "new" / "deeper" / "tags.parquet"
    rc, out, _ = run_cli(*tag, mine)
    assert rc == 0 and "top-1 labels of 5 entries" in out and pq.read_table(mine).num_rows == 5
    rc, _, _ = run_cli(*tag[:6], "2", *tag[7:], mine)
    assert rc == 0 and all(len(x) == 2 for x in pq.read_table(mine).column("labels").to_pylist())
    rc, _, _ = run_cli(*tag, precious, "--overwrite")
    assert rc == 0 and pq.read_table(precious).column_names == ["video", "start", "end", "labels", "scores"]
    # the API: the same rule
    idx = VideoIndex.open(lib["ref"], device="cpu")
    from text4vis.index import write_tags
    with pytest.raises(OutputError, match=r"out='.*notes.txt': .* must end in .parquet"):
        write_tags(idx.iter_tags(["a", "b"], 1), notes)
    assert write_tags(idx.iter_tags(["a", "b"], 1), Path(mine)) == 5


# ----------------------------------------------------------------------------- item 5: finite numbers, standard JSON

def test_window_and_stride_use_timelines_bounds_and_json_is_standard(lib, tmp_path):
    out = str(tmp_path / "w")
    for window, stride, match in (("4", None, "window='4': must be a number"),
                                  (True, None, "window=True: must be a number"),
                                  (4.0, float("inf"), "stride=inf: must be a finite number"),
                                  (float("nan"), None, "window=nan: must be a finite number"),
                                  (1e-300, 1e-300, "window=1e-300: must be at least 0.001"),
                                  (4.0, "2", "stride='2': must be a number")):
        with pytest.raises(UsageError, match=match):
            build_index([str(lib["videos"])], out, clip=str(lib["clip"]), frames=4, device="cpu", workers=0,
                        window=window, stride=stride)
    for value, match in ((0, "batch_size=0: must be at least 1"), (2.0, "batch_size=2.0: must be a whole number"),
                         (np.int64(2), None)):
        if match:
            with pytest.raises(UsageError, match=match):
                build_index([str(lib["videos"])], out, clip=str(lib["clip"]), batch_size=value)
    assert not os.path.exists(out)                       # refused before any work
    rc, _, err = run_cli("index", "build", lib["videos"], "--out", out, *model_args(lib["clip"]), "--window", "4",
                         "--stride", "inf")
    assert rc == 2 and "--stride inf: must be a finite number of seconds" in \
        one_error_line(err, "text4vis index build: error:")
    # the per-video bound of timeline: a stride under a quarter of a frame interval (25 fps: 0.01 s)
    rc, _, err = run_cli("index", "build", lib["videos"] / "stripes.mp4", "--out", out, *model_args(lib["clip"]),
                         "--window", "0.04", "--stride", "0.005", "--quiet")
    assert rc == 2 and "only repeats windows of the same frames" in one_error_line(err, "text4vis index build:")
    # standard JSON everywhere
    strict_json((lib["ref"] / "index.json").read_text())
    rc, out_text, _ = run_cli("index", "info", lib["ref"], "--json")
    assert rc == 0 and strict_json(out_text)["videos"] == 5
    rc, out_text, _ = run_cli("index", "search", lib["ref"], "a dog", "--json", "--device", "cpu")
    assert rc == 0 and len(strict_json(out_text)["results"]) == 5


# ----------------------------------------------------------------------------- item 8: one checking layer

def test_the_api_refuses_what_the_cli_refuses(lib):
    idx = VideoIndex.open(lib["ref"], device="cpu")
    vec = np.asarray(idx.vectors.read(0, 1)[0])
    for topk, match in ((0, "topk=0: must be at least 1"), (-1, "topk=-1: must be at least 1"),
                        (2.7, "topk=2.7: must be a whole number"), (True, "topk=True: must be a whole number"),
                        ("3", "topk='3': must be a whole number")):
        with pytest.raises(UsageError, match=match):
            idx.tag(["a", "b"], topk=topk)
    with pytest.raises(UsageError, match=r"labels=\[\]: no class names given"):
        idx.tag([])
    tags = idx.tag(["a", "b", "c"], topk=np.int64(2))
    assert len(tags) == 5 and all(len(t["top"]) == 2 for t in tags)
    assert len(idx.search(vec, k=np.int64(3))["results"]) == 3
    for k in (0, 2.0, True, "3"):
        with pytest.raises(UsageError, match="k="):
            idx.search(vec, k=k)
    with pytest.raises(UsageError, match="nprobe=0"):
        idx.search(vec, nprobe=0)
    with pytest.raises(UsageError, match="nprobe=1.5"):
        VideoIndex.open(lib["ref"], nprobe=1.5)
    with pytest.raises(UsageError, match=r"query=b'abc': give a sentence \(str\) or an embedding of 64 numbers"):
        idx.search(b"abc")
    with pytest.raises(UsageError, match="a zero vector has no direction"):
        idx.search(np.zeros(64, np.float32))
    with pytest.raises(UsageError, match="must be 64 finite numbers"):
        idx.search(np.full(64, np.nan))
    with pytest.raises(UsageError, match="an empty query"):
        idx.search("   ")
    with pytest.raises(UsageError, match="give a list of templates"):
        idx.search("a dog", prompts="{}")
    target = lib["videos"] / "stripes.mp4"
    result = idx.like(target, k=2)
    assert result["query"] == str(target) and isinstance(result["query"], str)
    assert result["results"][0]["video"] == str(target)
    json.dumps(result, allow_nan=False)
    assert idx.like(lib["frames"], k=1)["results"][0]["video"] == str(lib["frames"])   # a frame folder is a video
    with pytest.raises(UsageError, match="a folder of 5 videos, not a video"):
        idx.like(lib["videos"])


# ----------------------------------------------------------------------------- item 9: progress bars

class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_build_progress_bar_only_on_a_terminal(lib, tmp_path):
    rc, _, err = run_cli("index", "build", lib["videos"] / "stripes.mp4", "--out", tmp_path / "a",
                         *model_args(lib["clip"]))
    assert rc == 0 and err == ""                          # stderr is not a terminal: no bar
    from text4vis.cli import main
    term = _Terminal()
    with contextlib.redirect_stderr(term), contextlib.redirect_stdout(io.StringIO()):
        assert main(["index", "build", str(lib["videos"] / "stripes.mp4"), "--out", str(tmp_path / "b"),
                     *model_args(lib["clip"])]) == 0
    assert "index" in term.getvalue() and "video" in term.getvalue()    # tqdm's bar on the terminal


# ----------------------------------------------------------------------------- item 10: a worker killed

@pytest.mark.slow
def test_a_killed_decoding_worker_fails_its_video_and_the_build_goes_on(lib, tmp_path, monkeypatch):
    """The worker that decodes stripes.mp4 is killed with SIGKILL (as the OOM killer does), every time."""
    monkeypatch.setenv("TEXT4VIS_TEST_KILL_WORKER_ON", "stripes.mp4")
    out = tmp_path / "killed"
    args = ["index", "build", lib["videos"], "--out", out, "--clip", lib["clip"], "--frames", "4", "--device", "cpu",
            "--workers", "1", "--batch-size", "2", "--quiet"]
    rc, text, err = run_cli(*args)
    assert rc == 1, err
    assert "5 input videos (5 embedded now, 0 already indexed, 1 failed)" in text
    line = one_error_line(err.replace("text4vis: 1 of 5 inputs failed\n", ""), "error: ")
    assert str(lib["videos"] / "stripes.mp4") in line and "the process decoding it died" in line
    idx = VideoIndex.open(out, device="cpu")
    assert len(idx) == 4 and [f["video"] for f in idx.failures()] == [str(lib["videos"] / "stripes.mp4")]
    ref = VideoIndex.open(lib["ref"], device="cpu")
    for path in idx.ok.column("path").to_pylist():       # the others: the same embeddings as a calm build
        a = idx.vectors.read(idx.ok.column("path").to_pylist().index(path), 10**9)[0]
        b = ref.vectors.read(ref.ok.column("path").to_pylist().index(path), 10**9)[0]
        np.testing.assert_allclose(a, b, atol=1e-6)
    rc, text, _ = run_cli(*args)                          # a rerun does not stop at the same video
    assert rc == 1 and "(0 embedded now, 5 already indexed, 1 failed)" in text


@pytest.mark.slow
@pytest.mark.parametrize("mode", [["--window", "0.5", "--stride", "0.5"], ["--batch-size", "2"]],
                         ids=["windows", "videos-workers-0"])
def test_a_build_killed_twice_on_a_video_records_it_as_failed(lib, tmp_path, mode):
    """--window (and --workers 0) decode in the build process: the process itself is killed (SIGKILL) on
    counter.mp4. One death is retried (it may have been any kill; a batch's videos are then tried one by
    one); after a second one on the same video a rerun records it as failed."""
    import subprocess
    import sys
    folder = tmp_path / "v"
    folder.mkdir()
    for name in ("counter.mp4", "stripes.mp4"):
        shutil.copy(lib["videos"] / name, folder / name)
    out = tmp_path / "w"
    cmd = [sys.executable, "-m", "text4vis", "index", "build", str(folder), "--out", str(out), *map(str, model_args(
        lib["clip"])), *mode, "--quiet"]
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "src")
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1",
               TEXT4VIS_TEST_KILL_BUILD_ON="counter.mp4")
    for attempt in range(2):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == -9, proc.stderr[-2000:]
        record = json.loads((out / "shards" / ".inflight-0.json").read_text())["videos"]
        assert record[0]["video"] == str(folder / "counter.mp4") and record[0]["deaths"] == attempt
        assert len(record) == (2 if attempt == 0 and "--batch-size" in mode else 1)   # then alone
    rc, text, err = run_cli(*cmd[3:])          # the third build, in this process (nothing kills it now)
    assert rc == 1, err
    assert f"{folder / 'counter.mp4'}: the build process died twice while embedding it" in err
    assert "2 input videos (2 embedded now, 0 already indexed, 1 failed)" in text
    idx = VideoIndex.open(out)
    assert set(idx.ok.column("path").to_pylist()) == {str(folder / "stripes.mp4")}
    assert not (out / "shards" / ".inflight-0.json").exists()
    rc, text, _ = run_cli(*cmd[3:])                                       # not tried again ...
    assert rc == 1 and "(0 embedded now, 2 already indexed, 1 failed)" in text
    write_video(str(folder / "counter.mp4"), index_frames(30, 64, 64))    # ... until it changes
    rc, text, _ = run_cli(*cmd[3:])
    assert rc == 0 and "(1 embedded now, 1 already indexed, 0 failed)" in text


# ----------------------------------------------------------------------------- item 11: CSV lists from Excel

def test_csv_with_a_bom_and_a_capitalised_path_column(lib, tmp_path):
    real = [str(lib["videos"] / n) for n in REAL]
    (tmp_path / "excel.csv").write_bytes(("\ufeffPath,Label\r\n" + f"{real[0]},x\r\n{real[1]},y\r\n").encode("utf-8"))
    assert expand_inputs([str(tmp_path / "excel.csv")]) == (real, [])
    (tmp_path / "upper.csv").write_text(f"label,PATH\nx,{real[1]}\n")
    assert expand_inputs([str(tmp_path / "upper.csv")]) == ([real[1]], [])
    (tmp_path / "two.csv").write_text(f"path,Path\n{real[0]},{real[1]}\n")
    with pytest.raises(VideoIndexError, match="needs a `path` column, one"):
        expand_inputs([str(tmp_path / "two.csv")])


# ----------------------------------------------------------------------------- item 12: one rule for prompts

def test_recorded_prompts_are_kept_and_used_by_search_and_tag(lib, tmp_path):
    out = tmp_path / "prompted"
    one = lib["videos"] / "counter.mp4"
    rc, _, _ = run_cli("index", "build", one, "--out", out, *model_args(lib["clip"]), "--prompts", "a clip of {}",
                       "--quiet")
    assert rc == 0
    rc, _, err = run_cli("index", "build", one, "--out", out, *model_args(lib["clip"]), "--prompts", "other {}")
    line = one_error_line(err, "text4vis index build: error:")
    assert rc == 2 and "was built with --prompts ['a clip of {}'], not ['other {}']; the recorded prompts are not " \
        "rewritten" in line
    rc, _, _ = run_cli("index", "build", lib["videos"] / "stripes.mp4", "--out", out, *model_args(lib["clip"]),
                       "--quiet")                       # adding without --prompts keeps the recorded ones
    assert rc == 0 and json.loads((out / "index.json").read_text())["model"]["prompts"] == ["a clip of {}"]
    idx = VideoIndex.open(out, device="cpu")
    labels = ["juggling", "cooking", "swimming"]
    default = idx.tag(labels, topk=3)
    assert default == idx.tag(labels, topk=3, prompts=["a clip of {}"])
    assert default != idx.tag(labels, topk=3, prompts=["a video of a person {}."])
    assert idx.search("juggling") == idx.search("juggling", prompts=["a clip of {}"])
    (tmp_path / "labels.txt").write_text("\n".join(labels) + "\n")
    rc, text, _ = run_cli("index", "tag", out, "--labels", tmp_path / "labels.txt", "--topk", "3", "--json",
                          "--device", "cpu")
    assert rc == 0 and [json.loads(line) for line in text.splitlines()] == default    # the CLI: the same rule


# ----------------------------------------------------------------------------- item 13: inputs and messages

def test_search_messages_are_one_line_prefixed_with_the_subcommand(lib):
    prefix = "text4vis index search: error: "
    rc, _, err = run_cli("index", "search", lib["ref"], "--like", lib["videos"], "--device", "cpu")
    assert rc == 2 and "a folder of 5 videos, not a video" in one_error_line(err, prefix + "--like ")
    rc, _, err = run_cli("index", "search", lib["ref"], "--like", lib["videos"] / "stripes.mp4", "a dog")
    assert rc == 2 and "not both" in one_error_line(err, prefix)
    rc, _, err = run_cli("index", "search", lib["ref"], "")
    assert rc == 2 and "an empty query" in one_error_line(err, prefix)
    rc, _, err = run_cli("index", "search", lib["ref"], "--like", lib["videos"] / "missing.mp4", "--device", "cpu")
    assert rc == 2 and "missing.mp4" in one_error_line(err, prefix)


def test_singulars(lib, tmp_path):
    out = tmp_path / "one"
    rc, text, _ = run_cli("index", "build", lib["videos"] / "stripes.mp4", "--out", out, *model_args(lib["clip"]))
    assert rc == 0 and "1 input video (1 embedded now" in text and "the index holds 1 video, 1 searchable entry," in text
    rc, text, _ = run_cli("index", "info", out)
    assert rc == 0 and "1 searchable entry (one per video)" in text and "; 1 shard;" in text
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    rc, _, _ = run_cli("index", "build", junk, "--out", out, *model_args(lib["clip"]))
    assert rc == 1
    rc, _, err = run_cli("index", "tag", out, "--labels", "ucf101", "--device", "cpu")
    assert rc == 0 and "note: 1 video failed to embed" in err


def test_a_damaged_index_json_blocks_a_build_with_a_hint(lib, tmp_path):
    out = tmp_path / "damaged"
    shutil.copytree(lib["ref"], out)
    (out / "index.json").write_text("garbage{")
    rc, _, err = run_cli("index", "build", lib["videos"], "--out", out, *model_args(lib["clip"]))
    line = one_error_line(err, "text4vis index build: error:")
    assert rc == 2 and "damaged index description" in line and "build into a new folder, or delete" in line
    assert (out / "index.json").read_text() == "garbage{"


def test_replaced_entries_leave_no_stale_shards(lib, tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    for name in ("stripes.mp4", "counter.mp4"):
        shutil.copy(lib["videos"] / name, folder / name)
    out = tmp_path / "grow"
    args = ["index", "build", folder, "--out", out, *model_args(lib["clip"]), "--shard-size", "2", "--quiet"]
    assert run_cli(*args)[0] == 0
    assert len(os.listdir(out / "shards")) == 2           # one shard (.npy + .parquet) of both videos
    write_video(str(folder / "counter.mp4"), stripes(20, 64, 64, 16))       # changed: embedded again
    assert run_cli(*args)[0] == 0
    shards = sorted(os.listdir(out / "shards"))
    assert len(shards) == 4                               # the old shard rewritten with its live entry only
    assert json.loads((out / "index.json").read_text())["current"]["shards"] == 2
    tables = [pq.read_table(out / "shards" / f) for f in shards if f.endswith(".parquet")]
    assert sorted(p for t in tables for p in t.column("path").to_pylist()) == \
        [str(folder / "counter.mp4"), str(folder / "stripes.mp4")]
    write_video(str(folder / "stripes.mp4"), stripes(20, 64, 64, 4))
    write_video(str(folder / "counter.mp4"), stripes(20, 64, 64, 12))
    assert run_cli(*args)[0] == 0
    assert len(os.listdir(out / "shards")) == 2           # both old shards held only replaced entries: gone
    fresh = tmp_path / "fresh"
    assert run_cli("index", "build", folder, "--out", fresh, *model_args(lib["clip"]), "--quiet")[0] == 0
    a, b = VideoIndex.open(out), VideoIndex.open(fresh)
    assert a.ok.column("path").to_pylist() == b.ok.column("path").to_pylist()
    np.testing.assert_allclose(a.vectors.read(0, 10), b.vectors.read(0, 10), atol=1e-6)


def test_window_entries_of_frame_folders_and_the_default_stride(lib, tmp_path):
    from text4vis.index import load_model
    from text4vis.timeline import DEFAULT_STRIDE, embed_windows
    out = tmp_path / "windows"
    rc, text, err = run_cli("index", "build", lib["frames"], lib["videos"] / "counter.mp4", "--out", out,
                            *model_args(lib["clip"]), "--window", "0.5", "--quiet")
    assert rc == 0, err
    info = strict_json((out / "index.json").read_text())
    assert info["entries"] == {"window": 0.5, "stride": DEFAULT_STRIDE}        # timeline's default stride
    idx = VideoIndex.open(out, device="cpu")
    rec = load_model(clip=str(lib["clip"]), frames=4, device="cpu")
    want = embed_windows(rec, str(lib["frames"]), 0.5)                          # 1.2 s of frames at 25 fps
    rows = [r for r in idx.ok.to_pylist() if r["path"] == str(lib["frames"])]
    assert [(r["start"], r["end"]) for r in rows] == [(w["start"], w["end"]) for w in want["windows"]]
    assert rows[0]["duration"] == pytest.approx(1.2)
    # adding to it with --window and no --stride keeps the index's stride; --stride 0.5 is another index
    assert run_cli("index", "build", lib["videos"] / "stripes.mp4", "--out", out, *model_args(lib["clip"]),
                   "--window", "0.5", "--quiet")[0] == 0
    rc, _, err = run_cli("index", "build", lib["videos"] / "stripes.mp4", "--out", out, *model_args(lib["clip"]),
                         "--window", "0.5", "--stride", "0.5")
    assert rc == 2 and "was built with entries" in err
