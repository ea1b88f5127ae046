"""`predict --engine ray` (ray_data.py) over a list file of local paths, s3:// objects (moto's S3 server) and
http:// URLs (an HTTP server), both on 127.0.0.1, with one local Ray (`ray.init(num_cpus=2)`) for the
module: the records written as JSON Lines (`--out FILE.jsonl`) and Parquet (`--out FILE.parquet`) equal
the local engine's (labels identical, scores and embeddings within 1e-6), in input order, failures
included; `--out` follows the output rule (another program's file is never replaced without --overwrite)."""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys

import pyarrow.parquet as pq
import pytest
import torch

from conftest import SHARED_VIDEOS, run_cli, tiny_openai_state_dict
from object_store import http_server, s3_server

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.server                       # moto's S3 server, an HTTP server, Ray's own processes
NAMES = ["arm_wrestling_h264.mp4", "rotate90_keyboard_3frames_0.1s.mov", "cleaning_pool_xvid_mp3.avi"]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """Three real clips and a junk file in a folder (served over HTTP too), one clip in a bucket, a CSV list
    naming them by local path, s3:// and http://, the tiny CLIP file and the local engine's records."""
    d = tmp_path_factory.mktemp("predict-ray")
    videos = d / "videos"
    videos.mkdir()
    for name in NAMES:
        shutil.copy(os.path.join(SHARED_VIDEOS, name), videos / name)
    (videos / "junk.mp4").write_text("not a video at all\n" * 20)
    clip = d / "clip.pt"
    torch.save(tiny_openai_state_dict(0), clip)
    with s3_server({f"predict-ray/in/{NAMES[1]}": os.path.join(SHARED_VIDEOS, NAMES[1])}), http_server(videos) as http:
        lst = d / "videos.csv"
        lst.write_text(f"path,note\nvideos/{NAMES[0]},local\ns3://predict-ray/in/{NAMES[1]},s3\n{http}/{NAMES[2]},http\n"
                       f"videos/junk.mp4,junk\n{http}/{NAMES[0]},http again\n")
        rc, out, err = run_cli("predict", lst, *model_args(clip), "--json", "--embedding", "--workers", "0")
        assert rc == 1 and err == "text4vis: 1 of 5 inputs failed\n"
        ref = [json.loads(line) for line in out.splitlines()]
        # Ray's workers inherit this environment (the S3 endpoint and its test credentials)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        try:
            yield {"dir": d, "list": lst, "clip": clip, "ref": ref, "http": http}
        finally:
            ray.shutdown()


def model_args(clip) -> list[str]:
    return ["--clip", str(clip), "--frames", "4", "--device", "cpu", "--labels", "ucf101", "--topk", "3",
            "--batch-size", "2", "--quiet"]


def same_records(got: list[dict], ref: list[dict]) -> None:
    assert [r["video"] for r in got] == [r["video"] for r in ref]
    for a, b in zip(got, ref):
        assert ("error" in a) == ("error" in b) and a.get("error") == b.get("error")
        if "error" in a:
            continue
        assert [t["label"] for t in a["top"]] == [t["label"] for t in b["top"]]
        assert max(abs(x["score"] - y["score"]) for x, y in zip(a["top"], b["top"])) <= 1e-6
        assert max(abs(x - y) for x, y in zip(a["embedding"], b["embedding"])) <= 1e-6


def test_reference_records(lib):
    ref = lib["ref"]
    assert [os.path.basename(r["video"]) for r in ref] == [*NAMES, "junk.mp4", NAMES[0]]
    assert ref[1]["video"].startswith("s3://") and ref[2]["video"].startswith("http://")
    assert ref[3]["error"].startswith(f"{lib['dir'] / 'videos' / 'junk.mp4'}: not a readable video")
    assert ref[4]["top"] == ref[0]["top"]                     # the http:// copy of the local file


def test_ray_records_equal_local_as_jsonl_and_parquet(lib):
    jsonl, parquet = lib["dir"] / "ray.jsonl", lib["dir"] / "ray.parquet"
    rc, out, err = run_cli("predict", lib["list"], *model_args(lib["clip"]), "--embedding", "--engine", "ray",
                           "--ray-concurrency", "1", "--out", jsonl)
    assert rc == 1 and out == "" and err == "text4vis: 1 of 5 inputs failed\n"
    same_records([json.loads(line) for line in jsonl.read_text().splitlines()], lib["ref"])
    rc, out, err = run_cli("predict", lib["list"], *model_args(lib["clip"]), "--embedding", "--engine", "ray",
                           "--out", parquet)
    assert rc == 1 and out == ""
    table = pq.read_table(parquet)
    assert table.schema.metadata[b"text4vis"] == b"predict"
    rows = [{k: v for k, v in r.items() if v is not None} for r in table.to_pylist()]
    same_records(rows, lib["ref"])


def test_out_follows_the_output_rule(lib, tmp_path):
    """--out is checked before any work: its extension names the format, a file that is not predict's
    records is replaced only with --overwrite; the local engine writes the records --json prints."""
    notes = tmp_path / "notes.jsonl"
    notes.write_text('{"my": "notes"}\n')
    rc, out, err = run_cli("predict", lib["list"], *model_args(lib["clip"]), "--out", notes)
    assert rc == 2 and err == (f"text4vis predict: error: --out {notes}: exists and is not a file of predict records "
                               "written by text4vis; not replaced (--overwrite replaces it)\n")
    assert notes.read_text() == '{"my": "notes"}\n'
    rc, _, err = run_cli("predict", lib["list"], *model_args(lib["clip"]), "--out", tmp_path / "x.json")
    assert rc == 2 and "--out" in err and ".jsonl or .parquet" in err
    rc, _, _ = run_cli("predict", lib["list"], *model_args(lib["clip"]), "--embedding", "--workers", "0",
                       "--out", notes, "--overwrite")
    assert rc == 1 and [json.loads(line) for line in notes.read_text().splitlines()] == lib["ref"]
    rc, _, _ = run_cli("predict", lib["list"], *model_args(lib["clip"]), "--workers", "0", "--out", notes)
    assert rc == 1 and "embedding" not in json.loads(notes.read_text().splitlines()[0])   # its own: replaced
    rc, _, err = run_cli("predict", lib["list"], *model_args(lib["clip"]), "--engine", "ray", "--workers", "2")
    assert rc == 2 and "with --engine ray, --ray-decode-concurrency" in err


def test_without_ray_one_line_says_how_to_install(lib, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)          # `import ray` fails as where it is not installed
    monkeypatch.setitem(sys.modules, "ray.data", None)
    rc, out, err = run_cli("predict", lib["list"], "--engine", "ray")
    assert rc == 2 and out == ""
    assert err == "text4vis predict: error: --engine ray needs Ray Data: pip install 'text4vis[ray]'\n"
