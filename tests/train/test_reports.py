"""Reports (issue 24, item 15): confusion.png shows the classes that have videos, results.json records the
labels used (also a checkpoint's own) and val_root, `compare` says which protocol each number is."""
from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch
import yaml

from conftest import original_text4vis_checkpoint, tiny_openai_state_dict
from text4vis import plots
from text4vis.cli import main as cli_main
from text4vis.synthetic import make_benchmark


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def ev(tmp_path_factory):
    d = tmp_path_factory.mktemp("reports")
    info = make_benchmark(d / "bench", shapes=["circle", "square"], motions=["moving left", "moving right"],
                          heldout=[], train_per_class=1, val_per_class=1, num_frames=8, size=32, progress=False)
    sd = tiny_openai_state_dict(0)
    clip, ckpt = str(d / "clip.pt"), str(d / "orig.pt")
    torch.save(sd, clip)
    torch.save(original_text4vis_checkpoint(sd, "transf"), ckpt)
    wide = d / "labels12.txt"                                       # 4 classes with videos + 8 without
    wide.write_text("".join(f"{n}\n" for n in info["classes"] + [f"other class {i}" for i in range(8)]))
    return {"d": d, "info": info, "clip": clip, "ckpt": ckpt, "wide": str(wide)}


def test_confusion_png_drops_classes_without_videos_and_results_record_the_labels(ev, tmp_path, monkeypatch):
    drawn = []
    real = plots.plot_confusion
    monkeypatch.setattr(plots, "plot_confusion", lambda conf, names, path, title="": (drawn.append(
        (conf.shape, list(names), title)), real(conf, names, path, title))[1])
    out = tmp_path / "ev"
    rc, _, err = run_cli(["eval", "--checkpoint", ev["ckpt"], "--clip", ev["clip"], "--labels", ev["wide"],
                          "--val-list", str(ev["info"]["val_list"]), "--val-root", str(ev["info"]["root"]),
                          "--frames", "4", "--workers", "0", "--quiet", "--out", str(out)])
    assert rc == 0, err
    assert drawn == [((4, 4), ev["info"]["classes"], "Confusion matrix: the 4 of 12 classes that have videos")]
    r = json.loads((out / "results.json").read_text())
    assert r["labels"] == ev["wide"] and len(r["label_names"]) == 12
    assert r["val_root"] == str(ev["info"]["root"]) and r["val_list"] == str(ev["info"]["val_list"])


def test_results_record_a_checkpoints_own_labels(ev, tmp_path):
    import text4vis
    from text4vis import checkpoints
    rec = text4vis.load(checkpoint=ev["ckpt"], clip=ev["clip"], labels=ev["info"]["classes"], frames=4)
    t4v = str(tmp_path / "t4v.safetensors")
    checkpoints.save_checkpoint(t4v, rec.model, rec.towers, labels=ev["info"]["classes"],
                                classifier_meta={"type": "text"}, settings={"num_frames": 4, "input_size": 32})
    out = tmp_path / "own"
    rc, _, err = run_cli(["eval", "--checkpoint", t4v, "--val-list", str(ev["info"]["val_list"]), "--val-root",
                          str(ev["info"]["root"]), "--workers", "0", "--quiet", "--out", str(out)])
    assert rc == 0, err
    r = json.loads((out / "results.json").read_text())
    assert r["labels"] == "the checkpoint's" and r["label_names"] == ev["info"]["classes"]


def test_compare_says_which_protocol_each_number_is(ev, tmp_path):
    out = tmp_path / "ev4x3"
    rc, _, err = run_cli(["eval", "--checkpoint", ev["ckpt"], "--clip", ev["clip"], "--labels",
                          str(ev["info"]["labels_csv"]), "--val-list", str(ev["info"]["val_list"]), "--val-root",
                          str(ev["info"]["root"]), "--frames", "4", "--workers", "0", "--quiet", "--views", "2x3",
                          "--out", str(out)])
    assert rc == 0, err
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"data": {}, "classifier": {"type": "text"},
                                                     "training": {"mode": "classifier"}, "model": {"head": "transf"}}))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 3, "epoch": 1, "val_top1": 0.5, "val_top5": 1.0}) + "\n")
    rc, table, err = run_cli(["compare", str(run), str(out)])
    assert rc == 0, err
    lines = table.splitlines()
    assert "| measured |" in lines[0]
    assert "| best val during training, 1x1 view | 50.00 | 100.00 |" in lines[2]
    assert "| eval, 2x3 views |" in lines[3]
