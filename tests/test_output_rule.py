"""The README's output rule for folder outputs (issue 24, item 5): `eval --out`, `synth --out` and
`prepare --out` replace only text4vis's own output of the same kind; a folder holding anything else is
refused before any work (exit 2, naming --out and a file found), `--overwrite` writes anyway."""
from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch
import yaml

from conftest import original_text4vis_checkpoint, tiny_openai_state_dict
from text4vis.cli import main as cli_main
from text4vis.synthetic import make_benchmark


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def ev(tmp_path_factory):
    """4 classes, one 8-frame 32x32 val video each; a tiny CLIP, an original checkpoint, a config."""
    d = tmp_path_factory.mktemp("outrule")
    info = make_benchmark(d / "bench", shapes=["circle", "square"], motions=["moving left", "moving right"],
                          heldout=[], train_per_class=1, val_per_class=1, num_frames=8, size=32, progress=False)
    sd = tiny_openai_state_dict(0)
    clip, ckpt = str(d / "tiny_clip.pt"), str(d / "orig.pt")
    torch.save(sd, clip)
    torch.save(original_text4vis_checkpoint(sd, "transf"), ckpt)
    config = d / "eval.yaml"
    config.write_text(yaml.safe_dump({"data": {"val_list": str(info["val_list"]), "val_root": str(info["root"]),
                                               "labels": str(info["labels_csv"]), "num_frames": 4, "workers": 0},
                                      "model": {"clip": clip}, "evaluation": {"batch_size": 4}}))
    other = d / "val_other.txt"
    other.write_text("".join(open(info["val_list"]).readlines()[:2]))
    return {"d": d, "info": info, "clip": clip, "ckpt": ckpt, "config": str(config), "other": str(other)}


def eval_args(ev, out, *extra) -> list[str]:
    return ["eval", "--config", ev["config"], "--checkpoint", ev["ckpt"], "--clip", ev["clip"], "--out", str(out),
            "--quiet", "--workers", "0", *extra]


def test_eval_out_keeps_a_users_files_and_other_reports(ev, tmp_path):
    # a user's results.json and per_class.csv: refused, untouched
    users = tmp_path / "mine"
    users.mkdir()
    (users / "results.json").write_text('{"my": "numbers"}')
    (users / "per_class.csv").write_text("mine\n")
    rc, _, err = run_cli(eval_args(ev, users))
    assert rc == 2 and "--out" in err and "per_class.csv and 1 more" in err and "--overwrite" in err, err
    assert (users / "results.json").read_text() == '{"my": "numbers"}' and (users / "per_class.csv").read_text() == "mine\n"
    # a dataset folder: nothing mixed into it
    rc, _, err = run_cli(eval_args(ev, ev["info"]["root"]))
    assert rc == 2 and "not an eval report written by text4vis" in err
    assert not (ev["info"]["root"] / "results.json").exists()
    # a new folder, then the same eval again: an earlier report of the same list is replaced
    out = tmp_path / "report"
    assert run_cli(eval_args(ev, out))[0] == 0
    rc, _, err = run_cli(eval_args(ev, out, "--views", "2x1"))
    assert rc == 0, err
    assert json.loads((out / "results.json").read_text())["views"] == "2x1"
    # an earlier report of another list is refused, unless --overwrite
    rc, _, err = run_cli(eval_args(ev, out, "--val-list", ev["other"], "--val-root", str(ev["info"]["root"])))
    assert rc == 2 and "an earlier eval of another list" in err and "--overwrite" in err, err
    assert json.loads((out / "results.json").read_text())["num_videos"] == 4
    rc, _, err = run_cli(eval_args(ev, users, "--overwrite"))
    assert rc == 0, err
    assert json.loads((users / "results.json").read_text())["num_videos"] == 4


def test_synth_out_refuses_a_folder_of_other_files(tmp_path):
    args = ["--train-per-class", "1", "--val-per-class", "1", "--frames", "2", "--size", "16", "--quiet"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "train.txt").write_text("my list\n")
    rc, _, err = run_cli(["synth", "--out", str(mine), *args])
    assert rc == 2 and f"--out {mine}" in err and "train.txt" in err and "synthetic benchmark" in err, err
    assert (mine / "train.txt").read_text() == "my list\n" and not (mine / "videos").exists()
    out = tmp_path / "synth"
    assert run_cli(["synth", "--out", str(out), *args])[0] == 0
    assert run_cli(["synth", "--out", str(out), "--seed", "1", *args])[0] == 0      # its own output: replaced
    assert json.loads((out / "benchmark.json").read_text())["seed"] == 1
    partial = tmp_path / "partial"                                 # an interrupted synth: rerunning it works
    (partial / "videos" / "train").mkdir(parents=True)
    (partial / "train.txt").write_text("")
    assert run_cli(["synth", "--out", str(partial), *args])[0] == 0
    assert run_cli(["synth", "--out", str(mine), "--overwrite", *args])[0] == 0
    assert (mine / "train.txt").read_text() != "my list\n"


def test_prepare_out_refuses_an_unrelated_list(ev, tmp_path):
    val = ev["info"]["val_list"]                                   # .../val.txt
    out = tmp_path / "prep"
    out.mkdir()
    (out / "val.txt").write_text("clips/a.mp4 0\n")                # a user's list of the same name
    base = ["prepare", "--list", str(val), "--root", str(ev["info"]["root"]), "--out", str(out), "--workers", "1",
            "--quiet"]
    rc, _, err = run_cli(base)
    assert rc == 2 and "--out" in err and "val.txt" in err and "prepared videos" in err, err
    assert (out / "val.txt").read_text() == "clips/a.mp4 0\n" and not list(out.rglob("*.frames.zip"))
    rc, stdout, err = run_cli(base + ["--overwrite"])
    assert rc == 0, err
    assert all(line.split()[0].endswith(".frames.zip") for line in (out / "val.txt").read_text().splitlines())
    rc, stdout, err = run_cli(base)                                # its own list: rerunning resumes
    assert rc == 0 and "4 already done" in stdout, (stdout, err)
