"""Videos read straight from object storage and web servers (text4vis.remote): moto's S3 server and a
Range-answering HTTP server, both real servers on 127.0.0.1 (tests/object_store.py), holding real clips.
`predict` on s3:// and http:// URLs equals predict on the local copies; `index build` over a list file of
URLs (and a bucket prefix) embeds the same vectors as over the local files and skips them on a rerun;
a container's header is found with ranged reads (moov first or last), not by downloading the object;
a missing bucket, a missing object, an object that is not a video and missing credentials each give one
line naming the object."""
from __future__ import annotations

import json
import os
import shutil
import sys

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from conftest import SHARED_VIDEOS, run_cli, tiny_openai_state_dict
from object_store import RangeHandler, copy_videos, http_server, s3_server
from text4vis import remote
from text4vis.index.embedding import video_duration
from text4vis.index.inputs import expand_inputs, file_stat

pytestmark = pytest.mark.server                      # moto's S3 server and an HTTP server on 127.0.0.1

MOOV_LAST = "arm_wrestling_h264.mp4"                   # mdat first, moov at the end
MOOV_FIRST = "arm_wrestling_faststart.mp4"  # the same streams remuxed with moov first (fast start)
TINY = "rotate90_keyboard_3frames_0.1s.mov"
NAMES = [MOOV_LAST, TINY]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("remote")
    local = copy_videos(SHARED_VIDEOS, [MOOV_LAST, TINY], d / "videos")
    local.append(faststart(local[0], str(d / "videos" / MOOV_FIRST)))
    (d / "videos" / "junk.mp4").write_text("not a video at all\n" * 20)
    clip = d / "clip.pt"
    torch.save(tiny_openai_state_dict(0), clip)
    files = {f"clips/videos/{os.path.basename(p)}": p for p in local}
    files["clips/videos/junk.mp4"] = str(d / "videos" / "junk.mp4")
    with s3_server(files), http_server(d / "videos") as http:
        yield {"dir": d, "local": {os.path.basename(p): p for p in local}, "clip": clip, "http": http}


def faststart(src: str, dst: str) -> str:
    """`src` remuxed (no re-encoding) with the moov box before the media data."""
    with av.open(src) as inp, av.open(dst, "w", options={"movflags": "faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")}
        for packet in inp.demux(list(inp.streams)):
            if packet.dts is not None and packet.stream.index in streams:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    data = open(dst, "rb").read()
    assert data.find(b"moov") < data.find(b"mdat")
    return dst


def model_args(clip) -> list[str]:
    return ["--clip", str(clip), "--frames", "4", "--device", "cpu", "--workers", "0"]


def test_predict_urls_equal_local_copies(stores):
    urls = [f"s3://clips/videos/{MOOV_LAST}", f"{stores['http']}/{MOOV_LAST}", f"s3://clips/videos/{TINY}",
            f"{stores['http']}/{TINY}"]
    local = [stores["local"][MOOV_LAST], stores["local"][TINY]]
    rc, out, _ = run_cli("predict", *urls, *local, *model_args(stores["clip"]), "--labels", "ucf101",
                     "--json", "--embedding", "--batch-size", "1")   # alone in its batch: equal to the bit
    assert rc == 0
    recs = [json.loads(line) for line in out.splitlines()]
    assert [r["video"] for r in recs] == urls + local
    for k in range(len(urls)):
        ref = recs[4 + k // 2]
        assert recs[k]["top"] == ref["top"] and recs[k]["embedding"] == ref["embedding"]


def test_predict_over_list_files_equals_local_copies(stores, tmp_path):
    """A local .txt list (a comment, a blank line, s3://, http:// and a path relative to the list) and a
    .csv list in the bucket (its relative path relative to the list's URL): the same records as the
    local copies; a list naming no video is one failed record; a list that is not there is one line."""
    import s3fs
    http, local = stores["http"], stores["local"]
    shutil.copy(local[TINY], tmp_path / TINY)
    txt = tmp_path / "videos.txt"
    txt.write_text(f"# urls and a local file\ns3://clips/videos/{MOOV_LAST}\n\n{http}/{TINY}\n{TINY}\n")
    csv_url = "s3://clips/lists/videos.csv"
    s3fs.S3FileSystem(skip_instance_cache=True).pipe(
        csv_url[5:], f"label,path\na,../videos/{TINY}\nb,{http}/{MOOV_LAST}\n".encode())
    empty = tmp_path / "none.lst"
    empty.write_text("# nothing yet\n")
    rc, out, err = run_cli("predict", str(txt), csv_url, str(empty), local[MOOV_LAST], local[TINY],
                           *model_args(stores["clip"]), "--labels", "ucf101", "--json", "--embedding",
                           "--batch-size", "1")
    assert rc == 1 and err == "text4vis: 1 of 8 inputs failed\n"
    recs = [json.loads(line) for line in out.splitlines()]
    assert [r["video"] for r in recs] == [
        f"s3://clips/videos/{MOOV_LAST}", f"{http}/{TINY}", str(tmp_path / TINY), f"s3://clips/videos/{TINY}",
        f"{http}/{MOOV_LAST}", str(empty), local[MOOV_LAST], local[TINY]]
    assert recs[5] == {"video": str(empty), "error": "a list without video files"}
    ref = {MOOV_LAST: recs[6], TINY: recs[7]}
    for r in recs[:5]:
        assert r["top"] == ref[os.path.basename(r["video"])]["top"]
        assert r["embedding"] == ref[os.path.basename(r["video"])]["embedding"]
    rc, out, err = run_cli("predict", "s3://clips/lists/absent.txt", *model_args(stores["clip"]))
    assert rc == 2 and out == "" and err == "text4vis predict: error: s3://clips/lists/absent.txt: no such object\n"


def test_training_lists_with_urls(stores):
    """Training and evaluation lists (datasets.load_split) at a URL, with URL entries and a URL root: the
    clips equal those of the local copies; a frame folder at a URL is refused in one line per entry;
    check-data finds a URL present or missing as it does a file."""
    import s3fs

    from text4vis.datasets import DataError, Sample, TestDataset, load_split
    from text4vis.train.check_data import check_sample
    http, local = stores["http"], stores["local"]
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.pipe("clips/lists/train.txt", f"videos/{MOOV_LAST} 0\n{http}/{TINY} 1\n".encode())
    fs.pipe("clips/lists/val.csv", f"path,label\nvideos/{TINY},jump\n".encode())
    fs.pipe("clips/lists/frames.txt", b"frames/clip_1 16 0\n")
    samples, _ = load_split("s3://clips/lists/train.txt", root="s3://clips/")
    assert [(s.path, s.label) for s in samples] == [(f"s3://clips/videos/{MOOV_LAST}", 0), (f"{http}/{TINY}", 1)]
    val, names = load_split("s3://clips/lists/val.csv", root="s3://clips", labels=["run", "jump"])
    assert [(s.path, s.label) for s in val] == [(f"s3://clips/videos/{TINY}", 1)] and names == ["run", "jump"]
    with pytest.raises(DataError, match="s3://clips/frames/clip_1 is a frame folder at a URL; frame folders are "
                                        "read from disk only"):
        load_split("s3://clips/lists/frames.txt", root="s3://clips")
    with pytest.raises(DataError, match="^s3://clips/lists/absent.txt: no such object$"):
        load_split("s3://clips/lists/absent.txt")
    copies = [Sample(local[MOOV_LAST], 0, None, "a"), Sample(local[TINY], 1, None, "b")]
    remote_ds, local_ds = TestDataset(samples, 4, 32, 2, 1), TestDataset(copies, 4, 32, 2, 1)
    for i in range(2):
        assert remote_ds[i][2] is None and torch.equal(remote_ds[i][1], local_ds[i][1])
    assert check_sample((samples[0], "img_{:05d}.jpg", 1, 2))[0] == "ok"
    absent = Sample("s3://clips/videos/absent.mp4", 0, None, "train.txt:3")
    assert check_sample((absent, "img_{:05d}.jpg", 1, 2)) == \
        ("missing", "train.txt:3: s3://clips/videos/absent.mp4 not found", None)


def test_timeline_on_a_url(stores):
    url = f"s3://clips/videos/{MOOV_LAST}"
    args = model_args(stores["clip"])[:-2] + ["--labels", "ucf101", "--window", "2", "--json"]
    rc, out, _ = run_cli("timeline", url, *args)
    rc_l, out_l, _ = run_cli("timeline", stores["local"][MOOV_LAST], *args)
    assert rc == rc_l == 0
    a, b = json.loads(out), json.loads(out_l)
    assert a["video"] == url and a["windows"] == b["windows"] and len(a["windows"]) >= 2


def test_headers_are_read_with_ranges_not_whole_downloads(stores, monkeypatch):
    monkeypatch.setattr(remote, "BLOCK_SIZE", 32 * 1024)
    for name in (MOOV_LAST, MOOV_FIRST):
        RangeHandler.sent.pop(name, None)
        url = f"{stores['http']}/{name}"
        assert video_duration(url) == video_duration(stores["local"][name]) is not None
        size = os.path.getsize(stores["local"][name])
        assert 0 < RangeHandler.sent[name] < size / 4, (name, RangeHandler.sent[name], size)


def test_index_build_over_urls_equals_local_and_reruns_skip(stores, tmp_path):
    http = stores["http"]
    lst = tmp_path / "videos.csv"
    lst.write_text(f"path,label\ns3://clips/videos/{MOOV_LAST},a\n{http}/{TINY},b\ns3://clips/videos/junk.mp4,c\n")
    found, empty = expand_inputs([str(lst), "s3://clips/videos/", "s3://clips/nothing-here/"])
    assert found == [f"s3://clips/videos/{MOOV_LAST}", f"{http}/{TINY}", "s3://clips/videos/junk.mp4",
                     f"s3://clips/videos/{MOOV_FIRST}", f"s3://clips/videos/{TINY}", "s3://clips/nothing-here/"]
    assert empty == []                         # a prefix that holds nothing is kept: the build records it failed
    size, mtime = file_stat(f"s3://clips/videos/{TINY}")
    assert size == os.path.getsize(stores["local"][TINY]) and mtime > 0
    assert file_stat("s3://clips/videos/absent.mp4") == (-1, -1.0)

    remote_out, local_out = tmp_path / "remote-index", tmp_path / "local-index"
    rc, out, err = run_cli("index", "build", str(lst), "--out", remote_out, *model_args(stores["clip"]),
                       "--quiet")
    assert rc == 1 and "3 input videos (3 embedded now" in out
    assert err.splitlines()[0].startswith("error: s3://clips/videos/junk.mp4: not a readable video")
    rc, out, _ = run_cli("index", "build", stores["local"][MOOV_LAST], stores["local"][TINY], "--out", local_out,
                     *model_args(stores["clip"]), "--quiet")
    assert rc == 0

    def entries(folder):
        info = json.load(open(folder / "index.json"))
        rows = pq.read_table(folder / info["current"]["folder"] / "entries.parquet").to_pylist()
        vectors = np.load(folder / info["current"]["folder"] / "vectors.npy")
        return {os.path.basename(r["path"]): (r, vectors[r["row"]] if r["row"] >= 0 else None) for r in rows}

    a, b = entries(remote_out), entries(local_out)
    for name in NAMES:
        assert np.array_equal(a[name][1], b[name][1])
        assert a[name][0]["duration"] == b[name][0]["duration"] and a[name][0]["size"] == b[name][0]["size"]
    rc, out, _ = run_cli("index", "build", str(lst), "--out", remote_out, *model_args(stores["clip"]), "--quiet")
    assert "(0 embedded now, 3 already indexed" in out   # object identity: size and last-modified time


def test_one_line_per_unreachable_object(stores, monkeypatch):
    args = model_args(stores["clip"]) + ["--labels", "ucf101", "--json"]
    bad = ["s3://no-such-bucket/clip.mp4", "s3://clips/videos/absent.mp4", "s3://clips/videos/junk.mp4",
           f"{stores['http']}/absent.mp4"]
    rc, out, err = run_cli("predict", *bad, *args)
    recs = [json.loads(line) for line in out.splitlines()]
    assert rc == 1 and [r["video"] for r in recs] == bad
    errors = [r["error"] for r in recs]
    assert errors[0] == "s3://no-such-bucket/clip.mp4: no such bucket 'no-such-bucket' (or it cannot be listed)"
    assert errors[1] == "s3://clips/videos/absent.mp4: no such object"
    assert errors[2].startswith("s3://clips/videos/junk.mp4: not a readable video (")
    assert errors[3] == f"{stores['http']}/absent.mp4: no such object"
    assert all("\n" not in e for e in errors)

    import s3fs
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        rc, out, _ = run_cli("predict", f"s3://clips/videos/{TINY}", *args)
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
    assert rc == 1
    assert json.loads(out)["error"].startswith(f"s3://clips/videos/{TINY}: no credentials for s3:// (")

    rc, _, err = run_cli("index", "build", f"s3://clips/videos/{TINY}", "--out", "s3://clips/index",
                     *model_args(stores["clip"]))
    assert rc == 2 and err.count("\n") == 1 and "--out s3://clips/index: an index is built into a local" in err


def test_untrusted_inputs_never_fetch_urls(stores, monkeypatch):
    from text4vis.errors import VideoError
    from text4vis.video import MEDIA_FILES_ONLY_ENV, read_frames
    monkeypatch.setenv(MEDIA_FILES_ONLY_ENV, "1")
    RangeHandler.sent.pop(TINY, None)
    url = f"{stores['http']}/{TINY}"
    with pytest.raises(VideoError, match="a URL, and only local video files are opened for untrusted inputs"):
        read_frames(url, lambda n: [0])
    lst = stores["dir"] / "untrusted.txt"
    lst.write_text(url + "\n")
    found, _ = expand_inputs([str(lst)])
    assert found == [url] and file_stat(url) == (-1, -1.0)       # kept as a failing input, never fetched
    assert TINY not in RangeHandler.sent and remote.UNTRUSTED_ENV == MEDIA_FILES_ONLY_ENV
    assert read_frames(stores["local"][TINY], lambda n: [0])[0].shape[0] == 1


def test_a_missing_filesystem_package_is_one_line(monkeypatch):
    from text4vis.errors import VideoError
    from text4vis.video import read_frames
    monkeypatch.setitem(sys.modules, "gcsfs", None)        # as where gcsfs is not installed
    with pytest.raises(VideoError) as info:
        read_frames("gs://bucket/clip.mp4", lambda n: [0])
    message = str(info.value)
    assert message.startswith("gs://bucket/clip.mp4: reading gs:// needs gcsfs (")
    assert message.endswith("pip install 'text4vis[gcs]'") and "\n" not in message
