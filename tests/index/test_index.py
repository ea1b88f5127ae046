"""`text4vis index` and `text4vis.VideoIndex`: build over real and generated clips (with a junk file),
search by a video and by text, tag equals predict, SIGKILL mid-build then rerun, a 2-process torchrun
build, incremental add, the build lock, mismatched models, folders that are not indexes, the IVF path,
list files and the benchmark. Tiny random-weight CLIP (tests/conftest.py), 4 frames, CPU."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from conftest import SHARED_VIDEOS, index_frames, run_cli, stripes, tiny_openai_state_dict, write_video
from text4vis import cli
from text4vis.errors import VideoIndexError
from text4vis.index import BuildLock, VideoIndex, bench_index, expand_inputs

REAL = ["arm_wrestling_h264.mp4", "cleaning_pool_xvid_mp3.avi", "flipping_pancake_h264_opus.mkv",
        "iphone4s_rotate90_h264_aac.mov", "rotate90_keyboard_3frames_0.1s.mov"]
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "src")


def make_generated(folder, seed: int = 0, n: int = 3) -> list[str]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        kind = (stripes(24, 64, 64, 4 + 4 * i) if i % 2 == 0 else
                np.clip(index_frames(24, 64, 64).astype(int) + rng.integers(0, 60, (24, 64, 64, 3)), 0, 255).astype(np.uint8))
        path = os.path.join(folder, f"gen_{seed}_{i}.mp4")
        write_video(path, kind, options={"g": "8"})
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """A video folder (5 real clips in a sub-folder, 3 generated clips, 1 junk file), the tiny CLIP
    file, and a reference index built once in this process."""
    d = tmp_path_factory.mktemp("index")
    videos = d / "videos"
    (videos / "real").mkdir(parents=True)
    for name in REAL:
        shutil.copy(os.path.join(SHARED_VIDEOS, name), videos / "real" / name)
    make_generated(str(videos))
    (videos / "junk.mp4").write_text("not a video at all\n" * 20)
    clip = d / "clip.pt"
    torch.save(tiny_openai_state_dict(0), clip)
    other = d / "other_clip.pt"
    torch.save(tiny_openai_state_dict(7), other)
    ref = d / "ref"
    rc = cli.main(["index", "build", str(videos), "--out", str(ref), *model_args(clip), "--shard-size", "2",
                   "--quiet"])
    assert rc == 1                                  # the junk file failed; everything else is indexed
    return {"dir": d, "videos": videos, "clip": clip, "other": other, "ref": ref}


def model_args(clip) -> list[str]:
    return ["--clip", str(clip), "--frames", "4", "--device", "cpu", "--workers", "0"]


def merged(directory) -> tuple[list[dict], np.ndarray, bytes]:
    info = json.load(open(os.path.join(directory, "index.json")))
    folder = os.path.join(directory, info["current"]["folder"])
    rows = pq.read_table(os.path.join(folder, "entries.parquet")).to_pylist()
    return rows, np.load(os.path.join(folder, "vectors.npy")), open(os.path.join(folder, "vectors.faiss"), "rb").read()


def assert_same_index(a, b) -> None:
    rows_a, vec_a, faiss_a = merged(a)
    rows_b, vec_b, faiss_b = merged(b)
    assert rows_a == rows_b
    assert vec_a.dtype == vec_b.dtype and np.array_equal(vec_a, vec_b)
    assert faiss_a == faiss_b


def env() -> dict:
    return dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1",
                HF_HUB_OFFLINE="1")


# ----------------------------------------------------------------------------- build, info, search, tag

def test_build_records_everything_and_info(lib, capsys):
    rows, vectors, _ = merged(lib["ref"])
    assert len(rows) == 9 and len(vectors) == 8
    assert [r["path"] for r in rows] == sorted(r["path"] for r in rows)
    bad = [r for r in rows if r["status"] != "ok"]
    assert [os.path.basename(r["path"]) for r in bad] == ["junk.mp4"] and bad[0]["row"] == -1
    assert bad[0]["error"].startswith(str(lib["videos"] / "junk.mp4") + ": ") and "\n" not in bad[0]["error"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert [r["row"] for r in ok] == list(range(8))
    for r in ok:
        st = os.stat(r["path"])
        assert (r["size"], r["mtime"]) == (st.st_size, st.st_mtime)
        assert r["start"] is None and r["end"] is None and r["duration"] > 0
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    info = json.load(open(lib["ref"] / "index.json"))
    m = info["model"]
    assert m["clip"] == str(lib["clip"]) and len(m["clip_sha256"]) == 64 and m["frames"] == 4
    assert m["embedding_width"] == 64 and m["prompts"] == ["a video of a person {}."]
    assert info["current"]["shards"] == 5                       # 9 videos in shards of 2
    rc, out, _ = run_cli("index", "info", lib["ref"])
    assert rc == 0 and "9 (1 failed), 8 searchable entries" in out and "junk.mp4: not a readable video" in out
    rc, out, _ = run_cli("index", "info", lib["ref"], "--json")
    s = json.loads(out)
    assert (s["videos"], s["failed"], s["embedded"]) == (9, 1, 8) and s["failures"][0]["video"].endswith("junk.mp4")


def test_search_by_video_finds_itself_first(lib, capsys):
    target = lib["videos"] / "real" / "flipping_pancake_h264_opus.mkv"
    rc, out, _ = run_cli("index", "search", lib["ref"], "--like", target, "-k", "3", "--json",
                     "--device", "cpu")
    assert rc == 0
    result = json.loads(out)
    assert result["query"] == str(target) and len(result["results"]) == 3
    first = result["results"][0]
    assert first == {"video": str(target), "start": None, "end": None, "score": pytest.approx(1.0, abs=1e-5)}
    scores = [r["score"] for r in result["results"]]
    assert scores == sorted(scores, reverse=True) and scores[1] < 1 - 1e-4
    # every indexed video finds itself first through the API, by its stored embedding too
    idx = VideoIndex.open(lib["ref"], device="cpu")
    _, vectors, _ = merged(lib["ref"])
    paths = idx.ok.column("path").to_pylist()
    for row, vec in enumerate(vectors):
        assert idx.search(vec, k=1)["results"][0]["video"] == paths[row]


def test_text_search_ranks_by_the_text_tower(lib, capsys):
    """The answer is known independently: predict's embeddings against the text classifier row of the query."""
    from text4vis import text_classifier
    from text4vis.towers import load_towers
    query = "flipping a pancake"
    files = sorted(str(p) for p in lib["videos"].rglob("*.m*") if p.name != "junk.mp4") + \
        sorted(str(p) for p in lib["videos"].rglob("*.avi"))
    rc, out, _ = run_cli("predict", *files, *model_args(lib["clip"]), "--labels", "ucf101", "--json",
                     "--embedding", "--quiet")
    assert rc == 0
    emb = {os.path.abspath(r["video"]): np.array(r["embedding"]) for r in map(json.loads, out.splitlines())}
    row = text_classifier(load_towers(str(lib["clip"])), [query], cache=False).weight[0].numpy()
    expected = sorted(emb, key=lambda p: -float(emb[p] @ row))
    rc, out, _ = run_cli("index", "search", lib["ref"], query, "-k", "8", "--json", "--device", "cpu")
    assert rc == 0
    result = json.loads(out)
    assert result["query"] == query
    assert [r["video"] for r in result["results"]] == expected
    for r in result["results"]:
        assert r["score"] == pytest.approx(float(emb[r["video"]] @ row), abs=1e-5)
    # "{}" uses the query as it is: another text embedding, another order of scores
    bare = VideoIndex.open(lib["ref"], device="cpu").search(query, k=8, prompts=["{}"])
    assert [r["score"] for r in bare["results"]] != [r["score"] for r in result["results"]]


def test_tag_equals_predict(lib, capsys):
    files = [str(p) for p in sorted(lib["videos"].rglob("*")) if p.is_file() and p.name != "junk.mp4"]
    rc, out, _ = run_cli("predict", *files, *model_args(lib["clip"]), "--labels", "hmdb51", "--topk", "5",
                     "--json", "--quiet")
    assert rc == 0
    predicted = {os.path.abspath(r["video"]): r["top"] for r in map(json.loads, out.splitlines())}
    rc, out, err = run_cli("index", "tag", lib["ref"], "--labels", "hmdb51", "--topk", "5", "--json",
                       "--device", "cpu")
    assert rc == 0 and "1 video failed" in err
    tagged = [json.loads(line) for line in out.splitlines()]
    assert len(tagged) == 8 and {t["video"] for t in tagged} == set(predicted)
    for t in tagged:
        assert set(t) == {"video", "top"}
        want = predicted[t["video"]]
        assert [x["label"] for x in t["top"]] == [x["label"] for x in want]
        for a, b in zip(t["top"], want):
            assert abs(a["score"] - b["score"]) <= 1e-4
    # any vocabulary later, from the stored embeddings: a label file, and a Parquet output
    labels = lib["dir"] / "mine.txt"
    labels.write_text("juggling\ncooking pancakes\nwrestling\n")
    out_file = lib["dir"] / "tags.parquet"
    rc, out, _ = run_cli("index", "tag", lib["ref"], "--labels", labels, "--topk", "1", "--out", out_file,
                     "--device", "cpu")
    assert rc == 0
    table = pq.read_table(out_file).to_pylist()
    assert len(table) == 8 and all(len(r["labels"]) == 1 and r["labels"][0] in labels.read_text() for r in table)


# ----------------------------------------------------------------------------- resumable, distributed, incremental

def build_cmd(videos, out, clip, *extra) -> list[str]:
    return [sys.executable, "-m", "text4vis", "index", "build", str(videos), "--out", str(out),
            *model_args(clip), "--shard-size", "2", "--quiet", *extra]


@pytest.mark.slow
def test_sigkill_mid_build_then_rerun_equals_uninterrupted(lib):
    killed = lib["dir"] / "killed"
    proc = subprocess.Popen(build_cmd(lib["videos"], killed, lib["clip"]), env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    shards = killed / "shards"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if shards.is_dir() and any(f.endswith(".parquet") for f in os.listdir(shards)):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the build ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    finished = len([f for f in os.listdir(shards) if f.endswith(".parquet")])
    assert 1 <= finished < 5 and '"current"' not in (killed / "index.json").read_text()
    with pytest.raises(VideoIndexError, match="no finished build"):
        VideoIndex.open(killed)
    rerun = subprocess.run(build_cmd(lib["videos"], killed, lib["clip"]), env=env(), capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 1, rerun.stderr[-2000:]
    assert f"{9 - 2 * finished} embedded now, {2 * finished} already indexed" in rerun.stdout
    assert_same_index(killed, lib["ref"])                      # the uninterrupted build, byte for byte
    assert sorted(os.listdir(shards)) == sorted(os.listdir(lib["ref"] / "shards"))   # no temporary files left


@pytest.mark.slow
@pytest.mark.distributed
def test_torchrun_two_processes_equal_one(lib):
    out = lib["dir"] / "dist"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "text4vis",
           "index", "build", str(lib["videos"]), "--out", str(out), *model_args(lib["clip"]), "--shard-size", "2",
           "--quiet"]
    proc = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 1, proc.stderr[-3000:]            # the junk file failed, on whichever rank
    assert proc.stdout.count("9 input videos (9 embedded now") == 1   # rank 0 reports once
    assert_same_index(out, lib["ref"])


def test_incremental_add_embeds_only_new_and_changed(lib, capsys):
    folder = lib["dir"] / "grow"
    shutil.copytree(lib["videos"], folder)
    out = lib["dir"] / "grow_index"
    assert run_cli("index", "build", folder, "--out", out, *model_args(lib["clip"]), "--shard-size", "3",
               "--quiet")[0] == 1
    rows_before, vec_before, _ = merged(out)
    added = make_generated(str(folder), seed=5, n=2)
    changed = folder / "gen_0_1.mp4"
    write_video(str(changed), stripes(20, 64, 64, 16))             # new content, new size and mtime
    rc, out_text, _ = run_cli("index", "build", folder, "--out", out, *model_args(lib["clip"]),
                          "--shard-size", "3", "--quiet")
    assert rc == 1
    assert "11 input videos (3 embedded now, 8 already indexed, 1 failed)" in out_text
    rows, vectors, _ = merged(out)
    assert len(rows) == 11 and len(vectors) == 10
    paths = [r["path"] for r in rows if r["status"] == "ok"]
    assert set(added) <= set(paths) and paths.count(str(changed)) == 1
    old = {r["path"]: vec_before[r["row"]] for r in rows_before if r["status"] == "ok"}
    new = {r["path"]: vectors[r["row"]] for r in rows if r["status"] == "ok"}
    assert not np.array_equal(old[str(changed)], new[str(changed)])
    for p in old:
        if p != str(changed):
            assert np.array_equal(old[p], new[p])
    fresh = lib["dir"] / "grow_fresh"
    assert run_cli("index", "build", folder, "--out", fresh, *model_args(lib["clip"]), "--quiet")[0] == 1
    rows_f, vec_f, _ = merged(fresh)
    assert [r["path"] for r in rows_f] == [r["path"] for r in rows]
    np.testing.assert_allclose(vec_f, vectors, atol=1e-6)


def test_a_second_builder_is_refused_and_the_lock_dies_with_its_process(lib, capsys):
    out = lib["dir"] / "locked"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom text4vis.index import BuildLock\n"
                               f"BuildLock({str(out)!r}); print('locked', flush=True); time.sleep(300)"],
                              env=env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc, _, err = run_cli("index", "build", lib["videos"] / "real", "--out", out, *model_args(lib["clip"]))
        assert rc == 2 and f"another process (pid {holder.pid}) is building into this index" in err
        assert len(err.strip().splitlines()) == 1
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    assert run_cli("index", "build", lib["videos"] / "real", "--out", out, *model_args(lib["clip"]),
               "--quiet")[0] == 0
    BuildLock(str(out)).release()                               # free again once the build ended


# ----------------------------------------------------------------------------- errors

def test_another_model_is_refused(lib, capsys):
    with pytest.raises(VideoIndexError, match="built with another model"):
        VideoIndex.open(lib["ref"], clip=str(lib["other"]), device="cpu").search("a dog", k=1)
    rc, _, err = run_cli("index", "search", lib["ref"], "a dog", "--clip", lib["other"], "--device", "cpu")
    assert rc == 2 and "built with another model" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run_cli("index", "tag", lib["ref"], "--labels", "ucf101", "--clip", lib["other"])
    assert rc == 2 and "built with another model" in err
    rc, _, err = run_cli("index", "build", lib["videos"], "--out", lib["ref"], *model_args(lib["other"]))
    assert rc == 2 and "built with another model" in err
    # a moved CLIP file: the recorded path is gone, the same file elsewhere is accepted
    moved_dir = lib["dir"] / "moved"
    shutil.copytree(lib["ref"], moved_dir)
    info = json.load(open(moved_dir / "index.json"))
    info["model"]["clip"] = str(lib["dir"] / "gone.pt")
    json.dump(info, open(moved_dir / "index.json", "w"))
    with pytest.raises(VideoIndexError, match="is not there; pass clip="):
        VideoIndex.open(moved_dir).search("a dog")
    assert VideoIndex.open(moved_dir, clip=str(lib["clip"]), device="cpu").search("a dog", k=2)["results"]


def test_folders_that_are_not_an_index(lib, tmp_path, capsys):
    with pytest.raises(VideoIndexError, match="not a text4vis index"):
        VideoIndex.open(str(tmp_path))
    with pytest.raises(VideoIndexError, match="no such index folder"):
        VideoIndex.open(str(tmp_path / "nothing"))
    (tmp_path / "index.json").write_text('{"format": "something else"}')
    rc, _, err = run_cli("index", "info", tmp_path)
    assert rc == 2 and "another program's file" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "index.json").write_text("{not json")
    rc, _, err = run_cli("index", "search", tmp_path, "x")
    assert rc == 2 and "damaged index description" in err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    rc, _, err = run_cli("index", "build", lib["videos"] / "real", "--out", busy, *model_args(lib["clip"]))
    assert rc == 2 and "holds other files and no text4vis index" in err
    assert sorted(os.listdir(busy)) == ["notes.txt"]
    rc, _, err = run_cli("index", "search", lib["ref"])
    assert rc == 2 and "give a text query or --like VIDEO" in err


# ----------------------------------------------------------------------------- IVF, list files, bench

def test_ivf_indexes_rerank_exactly(lib, capsys):
    target = str(lib["videos"] / "real" / "arm_wrestling_h264.mp4")
    _, vectors, _ = merged(lib["ref"])
    for kind in ("ivf-sq8", "ivf-pq"):
        out = lib["dir"] / kind
        shutil.copytree(lib["ref"] / "shards", out / "shards")   # the same shards: nothing to embed again
        shutil.copy(lib["ref"] / "index.json", out / "index.json")
        rc, text, _ = run_cli("index", "build", lib["videos"], "--out", out, *model_args(lib["clip"]),
                          "--exact-below", "1", "--vector-index", "auto" if kind == "ivf-sq8" else kind, "--quiet")
        assert rc == 1 and "0 embedded now, 9 already indexed" in text and f"vector index {kind}" in text
        idx = VideoIndex.open(out, device="cpu")
        assert idx.settings["type"] == kind and idx.settings["nlist"] >= 1
        res = idx.like(target, k=8)["results"]
        assert res[0]["video"] == target and res[0]["score"] == pytest.approx(1.0, abs=1e-5)
        exact = VideoIndex.open(lib["ref"], device="cpu").search(vectors[0], k=8)["results"]
        assert idx.search(vectors[0], k=8)["results"] == exact     # re-ranked: the exact scores and order
    # at a real scale: IVF-SQ8 with re-ranking keeps recall@10 on clustered synthetic embeddings
    r = bench_index(4000, 64, queries=60, exact_below=100, recall_queries=60, clusters=40)
    assert r["vector_index"]["type"] == "ivf-sq8" and r["recall_at_10"] >= 0.95


def test_list_files_and_inputs(lib, tmp_path):
    real = sorted(str(p) for p in (lib["videos"] / "real").iterdir())
    lst = tmp_path / "videos.txt"
    lst.write_text("# my videos\n" + "\n".join(os.path.relpath(p, tmp_path) for p in real[:2]) + "\n\n")
    csv_file = tmp_path / "videos.csv"
    csv_file.write_text("label,path\nx," + real[2] + "\ny," + real[0] + "\n")
    videos, empty = expand_inputs([str(lst), str(csv_file), str(lib["videos"] / "real"), str(tmp_path)])
    assert videos == real[:3] + real[3:]                      # in input order, each once
    assert empty == [str(tmp_path)]
    (tmp_path / "bad.csv").write_text("file\na.mp4\n")
    with pytest.raises(VideoIndexError, match="needs a `path` column"):
        expand_inputs([str(tmp_path / "bad.csv")])
    out = tmp_path / "from_lists"
    idx = VideoIndex.build([str(lst), str(csv_file)], str(out), clip=str(lib["clip"]), frames=4, device="cpu",
                           workers=0)
    assert len(idx) == 3 and idx.build_report["failed"] == []
    assert sorted(idx.ok.column("path").to_pylist()) == sorted(real[:3])


def test_bench_index_cli(capsys):
    rc, out, _ = run_cli("bench", "--index", "3000", "--dim", "16", "--json")
    assert rc == 0
    r = json.loads(out)
    assert (r["n"], r["dim"]) == (3000, 16) and r["vector_index"]["type"] == "flat" and r["recall_at_10"] == 1.0
    assert r["build_s"] >= 0 and r["rss_mb"] > 50                # a whole Python process with NumPy and FAISS
    for key in ("search_p50_ms", "search_p99_ms", "search_cpu_p50_ms"):
        assert r[key] > 0
    assert r["search_p99_ms"] >= r["search_p50_ms"] and r["search_cpu_p99_ms"] >= r["search_cpu_p50_ms"]
    assert len(r["load_average"]) == 6


def test_window_entries_are_timeline_windows(lib, capsys):
    from text4vis.index import load_model
    from text4vis.timeline import embed_windows
    folder = lib["dir"] / "long"
    folder.mkdir()
    shutil.copy(lib["videos"] / "real" / "arm_wrestling_h264.mp4", folder)
    frames = index_frames(60, 64, 64).astype(int) + np.random.default_rng(1).integers(0, 80, (60, 64, 64, 3))
    write_video(str(folder / "counter.mp4"), np.clip(frames, 0, 255).astype(np.uint8))   # 2.4 s at 25 fps
    out = lib["dir"] / "windows"
    rc, text, _ = run_cli("index", "build", folder, "--out", out, *model_args(lib["clip"]), "--window", "1",
                      "--stride", "0.5", "--quiet")
    assert rc == 0, text
    rows, vectors, _ = merged(out)
    rec = load_model(clip=str(lib["clip"]), frames=4, device="cpu")
    for path in sorted(str(p) for p in folder.iterdir()):
        want = embed_windows(rec, path, 1.0, 0.5)
        mine = [r for r in rows if r["path"] == path]
        assert [(r["start"], r["end"]) for r in mine] == [(w["start"], w["end"]) for w in want["windows"]]
        assert len(mine) >= 3 and all(r["duration"] == want["duration"] for r in mine)
        for r, w in zip(mine, want["windows"]):
            np.testing.assert_allclose(vectors[r["row"]], w["embedding"], atol=1e-6)
    idx = VideoIndex.open(out, device="cpu")
    target = [r for r in rows if r["path"].endswith("counter.mp4")][2]
    best = idx.search(vectors[target["row"]], k=1)["results"][0]
    assert best == {"video": target["path"], "start": target["start"], "end": target["end"],
                    "score": pytest.approx(1.0, abs=1e-5)}
    tags = idx.tag(["a", "b"], topk=1)
    assert len(tags) == len(rows) and set(tags[0]) == {"video", "start", "end", "top"}
    rc, _, err = run_cli("index", "build", folder, "--out", out, *model_args(lib["clip"]), "--window", "2")
    assert rc == 2 and "was built with entries" in err


def test_untrusted_list_opens_only_media_files(lib, capsys, tmp_path, monkeypatch):
    """`index build --untrusted` over a third-party list: an HLS playlist naming another file on this machine
    is a failed input (one line), the real clips are indexed; without the flag FFmpeg follows the playlist."""
    from text4vis import video
    monkeypatch.setenv(video.MEDIA_FILES_ONLY_ENV, "0")  # the flag switches it on for this process: restored after
    private = tmp_path / "private.ts"
    write_video(str(private), index_frames(20, 48, 64))
    playlist = tmp_path / "evil.m3u8"
    playlist.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:20\n#EXTINF:10.0,\n{private}\n#EXT-X-ENDLIST\n")
    good = lib["videos"] / "real" / REAL[1]
    listing = tmp_path / "list.txt"
    listing.write_text(f"{playlist}\n{good}\n")
    rc, _, err = run_cli("index", "build", listing, "--out", tmp_path / "trusting", *model_args(lib["clip"]),
                     "--quiet")
    assert rc == 0, err
    rc, _, err = run_cli("index", "build", listing, "--out", tmp_path / "careful", *model_args(lib["clip"]),
                     "--quiet", "--untrusted")
    assert rc == 1
    assert f"{playlist}: not a readable video" in err and "playlists and reference files are refused" in err
    rows, _, _ = merged(tmp_path / "careful")
    assert [(r["path"], r["status"]) for r in rows] == [(str(good), "ok"), (str(playlist), "error")]
    assert "playlists and reference files are refused" in rows[1]["error"]
    trusting, _, _ = merged(tmp_path / "trusting")
    assert [r["status"] for r in trusting] == ["ok", "ok"]
