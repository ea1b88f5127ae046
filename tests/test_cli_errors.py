"""Bad input to `classifier`, `compare`, `bench` and `synth`: one line on stderr naming the option or file, exit 2
(usage/setup) or 1 (some inputs failed, the rest processed), never a traceback, a hang or a half-written file."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from conftest import original_text4vis_checkpoint, run_cli, tiny_openai_state_dict
from text4vis import classifiers as C


def one_line_error(rc, err, *words, code=2):
    """Exit `code`, exactly one non-empty stderr line, holding every word, no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == code, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def labels_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("labels") / "labels.txt"
    p.write_text("run\njump\nswim\n")
    return str(p)


@pytest.fixture(scope="module")
def stored(tmp_path_factory, labels_file):
    """A valid classifier file, 3 classes x 8 dims."""
    path = str(tmp_path_factory.mktemp("stored") / "rand.safetensors")
    C.save_classifier(C.random_classifier(["run", "jump", "swim"], 8, seed=0), path)
    return path


# ----------------------------------------------------------------------------- numeric arguments (A6, B14, C25, C26)

@pytest.mark.parametrize("kind,dim", [("orthogonal", "0"), ("orthogonal", "-5"), ("random", "0"), ("random", "-5")])
def test_build_dim_must_be_positive(kind, dim, labels_file, tmp_path):
    out = tmp_path / "c.safetensors"
    rc, _, err = run_cli(["classifier", "build", "--type", kind, "--labels", labels_file, "--dim", dim,
                      "--out", str(out)])
    one_line_error(rc, err, "--dim", "at least 1")
    assert not out.exists() and not list(tmp_path.iterdir())


def test_library_rejects_zero_width():
    for build in (C.random_classifier, C.orthogonal_classifier):
        with pytest.raises(C.ClassifierError, match="at least 1"):
            build(["a", "b"], 0)


@pytest.mark.parametrize("fraction", ["0", "-0.5", "5", "nan"])
def test_build_lda_fraction_range(fraction, tmp_path):
    rc, _, err = run_cli(["classifier", "build", "--type", "lda", "--checkpoint", "x.safetensors", "--config", "c.yaml",
                      "--fraction", fraction, "--out", str(tmp_path / "l.safetensors")])
    one_line_error(rc, err, "--fraction", "(0, 1]")


@pytest.mark.parametrize("classes,words", [("0", ["--classes", "at least 1"]), ("-3", ["--classes", "at least 1"]),
                                           (",", ["--classes", "','"]), (" , ,", ["--classes"])])
def test_plot_classes(classes, words, stored, tmp_path):
    out = tmp_path / "p.png"
    rc, _, err = run_cli(["classifier", "plot", stored, "--classes", classes, "--out", str(out)])
    one_line_error(rc, err, *words)
    assert not out.exists()


@pytest.mark.parametrize("k", ["0", "-1"])
def test_inspect_k(k, stored):
    rc, out, err = run_cli(["classifier", "inspect", stored, "--k", k])
    one_line_error(rc, err, "--k", "at least 1")
    assert out == ""


def test_library_plot_and_neighbour_counts():
    from text4vis import plots
    w = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="at least 1"):
        plots.nearest_classes(w, ["a", "b", "c"], k=0)
    with pytest.raises(ValueError, match="at least 1"):
        plots.plot_correlation([("x", w)], ["a", "b", "c"], "unused.png", classes=0)
    with pytest.raises(ValueError, match="at least 1"):
        plots.plot_correlation([("x", w)], ["a", "b", "c"], "unused.png", classes=[])


@pytest.mark.parametrize("argv,words", [
    (["--frames", "0"], ["--frames", "at least 1"]),
    (["--batch", "0"], ["--batch", "at least 1"]),
    (["--iters", "0"], ["--iters", "at least 1"]),
    (["--warmup", "-1"], ["--warmup", "at least 0"]),
    (["--frames", "100"], ["--frames", "at most 77"]),
    (["--data", "--iters", "0"], ["--iters", "at least 1"]),
    (["--data", "--frames", "0"], ["--frames", "at least 1"]),
    (["--model", "ViT-X/99"], ["--model ViT-X/99", "unknown", "ViT-B/16"]),
    (["--model", "RN50"], ["--model RN50", "ViT", "ViT-B/16"]),
])
def test_bench_arguments(argv, words):
    rc, out, err = run_cli(["bench", *argv])
    line = one_line_error(rc, err, *words)
    assert out == ""
    if "RN50" in argv:  # the list of what bench supports must not name RN50 itself
        assert "RN50" not in line.split(":", 2)[2].replace("--model RN50", "")


@pytest.mark.parametrize("argv,words", [
    (["--frames", "0"], ["--frames", "at least 1"]),
    (["--size", "0"], ["--size", "at least 8"]),
    (["--size", "7"], ["--size", "at least 8"]),
    (["--train-per-class", "0"], ["--train-per-class", "at least 1"]),
    (["--train-per-class", "-1"], ["--train-per-class", "at least 1"]),
    (["--val-per-class", "0"], ["--val-per-class", "at least 1"]),
])
def test_synth_arguments_checked_before_any_work(argv, words, tmp_path):
    out = tmp_path / "syn"
    rc, stdout, err = run_cli(["synth", "--out", str(out), *argv])
    one_line_error(rc, err, *words)
    assert stdout == "" and not out.exists()       # nothing written, no progress bar


def test_library_synth_checks_first(tmp_path):
    from text4vis.synthetic import make_benchmark
    with pytest.raises(ValueError, match="num_frames >= 1"):
        make_benchmark(tmp_path / "s", num_frames=0, progress=False)
    assert not (tmp_path / "s").exists()


# ----------------------------------------------------------------------------- output locations (C18)

def test_build_out_is_a_folder_leaves_no_temp_file(labels_file, tmp_path):
    folder = tmp_path / "existing"
    folder.mkdir()
    rc, _, err = run_cli(["classifier", "build", "--type", "orthogonal", "--labels", labels_file, "--dim", "4",
                      "--out", str(folder)])
    one_line_error(rc, err, f"--out {folder}", "folder")
    assert sorted(os.listdir(tmp_path)) == ["existing"] and not os.listdir(folder)


def test_save_classifier_cleans_its_temp_file(tmp_path):
    folder = tmp_path / "dir.safetensors"
    folder.mkdir()
    with pytest.raises(OSError):
        C.save_classifier(C.random_classifier(["a", "b"], 4), str(folder))
    assert sorted(os.listdir(tmp_path)) == ["dir.safetensors"]


def test_outputs_under_a_file(labels_file, stored, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [
        ["classifier", "build", "--type", "random", "--labels", labels_file, "--dim", "4",
         "--out", str(afile / "x.safetensors")],
        ["classifier", "plot", stored, "--out", str(afile / "sub" / "p.png")],
        ["synth", "--out", str(afile), "--train-per-class", "1", "--val-per-class", "1"],
        ["synth", "--out", str(afile / "syn"), "--train-per-class", "1", "--val-per-class", "1"],
    ]
    for argv in cases:
        rc, out, err = run_cli(argv)
        one_line_error(rc, err, "--out", str(afile))
        assert out == ""
    assert afile.read_text() == "x" and sorted(os.listdir(tmp_path)) == ["afile"]


def test_plot_out_is_a_folder(stored, tmp_path):
    rc, out, err = run_cli(["classifier", "plot", stored, "--out", str(tmp_path)])
    one_line_error(rc, err, f"--out {tmp_path}", "folder")


def test_unwritable_output_folder(labels_file, stored, tmp_path, monkeypatch):
    """A folder without write permission (simulated: the tests may run as root, who may write anywhere)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if os.path.abspath(p) == str(ro) else real_access(p, mode))
    for argv in (["classifier", "build", "--type", "orthogonal", "--labels", labels_file, "--dim", "4",
                  "--out", str(ro / "o.safetensors")],
                 ["classifier", "plot", stored, "--out", str(ro / "p.png")],
                 ["synth", "--out", str(ro / "sy"), "--train-per-class", "1", "--val-per-class", "1"],
                 ["synth", "--out", str(ro), "--train-per-class", "1", "--val-per-class", "1"]):
        rc, out, err = run_cli(argv)
        one_line_error(rc, err, "--out", str(ro), "permission denied")
    assert not os.listdir(ro)


def test_outputs_in_new_folders_are_created(labels_file, stored, tmp_path):
    out = tmp_path / "a" / "b" / "c.safetensors"
    rc, _, err = run_cli(["classifier", "build", "--type", "random", "--labels", labels_file, "--dim", "4",
                      "--out", str(out)])
    assert rc == 0, err
    assert C.load_classifier(str(out)).weight.shape == (3, 4)
    png = tmp_path / "p" / "q.png"
    rc, _, err = run_cli(["classifier", "plot", stored, "--classes", "all", "--out", str(png)])
    assert rc == 0 and png.is_file(), err


# ----------------------------------------------------------------------------- classifier files (C20)

def _write(path, weight, meta):
    save_file({"weight": weight}, str(path), metadata={"text4vis_classifier": json.dumps(meta)})
    return str(path)


@pytest.mark.parametrize("name,weight,meta,words", [
    ("nolabels", torch.randn(2, 4), {"type": "x"}, ["no class labels"]),
    ("notalist", torch.randn(2, 4), {"type": "x", "labels": "ab"}, ["not a list"]),
    ("oned", torch.randn(4), {"type": "x", "labels": ["a", "a", "a", "a"]}, ["shape (4,)"]),
    ("count", torch.randn(3, 4), {"type": "x", "labels": ["a", "b"]}, ["2 label names for 3 rows"]),
    ("nan", torch.tensor([[float("nan"), 1.0], [1.0, 0.0]]), {"type": "x", "labels": ["a", "b"]}, ["NaN", "'a'"]),
    ("inf", torch.tensor([[1.0, 0.0], [float("inf"), 0.0]]), {"type": "x", "labels": ["a", "b"]}, ["infinite", "'b'"]),
    ("dup", torch.randn(2, 4), {"type": "x", "labels": ["a", "a"]}, ["appears twice"]),
    ("empty", torch.randn(2, 4), {"type": "x", "labels": ["a", " "]}, ["empty name"]),
])
def test_damaged_classifier_files(name, weight, meta, words, tmp_path):
    path = _write(tmp_path / f"{name}.safetensors", weight, meta)
    with pytest.raises(C.ClassifierError) as e:
        C.load_classifier(path)
    msg = str(e.value)
    assert msg.startswith(path) and "\n" not in msg
    for w in words:
        assert w in msg
    rc, out, err = run_cli(["classifier", "inspect", path, "--k", "1"])
    one_line_error(rc, err, path, *words)
    assert out == ""


def test_good_classifier_file_still_loads(stored):
    cls = C.load_classifier(stored)
    assert cls.labels == ["run", "jump", "swim"] and cls.weight.shape == (3, 8)


# ----------------------------------------------------------------------------- LDA with undecodable videos (B12)

@pytest.fixture(scope="module")
def lda_setup(tmp_path_factory):
    from text4vis.synthetic import make_benchmark
    d = tmp_path_factory.mktemp("lda")
    info = make_benchmark(d / "bench", shapes=["circle", "square"], motions=["moving left", "moving right"],
                          heldout=[], train_per_class=2, val_per_class=1, num_frames=8, size=32, progress=False)
    sd = tiny_openai_state_dict(0)
    clip = str(d / "tiny_clip.pt")
    torch.save(sd, clip)
    ckpt = str(d / "orig_mean.pt")
    torch.save(original_text4vis_checkpoint(sd, "mean"), ckpt)
    (d / "zero.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("not a video\n" * 20)
    good = [line for line in open(info["train_list"]).read().splitlines() if line.strip()]
    root = str(info["root"])
    absolute = [f"{os.path.join(root, line.rsplit(' ', 1)[0])} {line.rsplit(' ', 1)[1]}" for line in good]
    broken = [f"{d / 'zero.mp4'} 0", f"{d / 'text.mp4'} 1"]
    (d / "some_bad.txt").write_text("\n".join(absolute + broken) + "\n")
    # class 0 has only the broken video
    (d / "class_dead.txt").write_text("\n".join([f"{d / 'zero.mp4'} 0"] + [a for a in absolute
                                                                         if not a.endswith(" 0")]) + "\n")
    cfg = {"data": {"train_list": str(d / "some_bad.txt"), "train_root": "", "labels": str(info["labels_csv"]),
                    "num_frames": 4, "workers": 0},
           "model": {"clip": clip, "head": "mean"},
           "evaluation": {"batch_size": 4}}
    config = str(d / "cfg.yaml")
    with open(config, "w") as f:
        yaml.safe_dump(cfg, f)
    return {"dir": d, "clip": clip, "checkpoint": ckpt, "config": config, "names": info["classes"]}


def test_lda_names_each_failed_video(lda_setup, tmp_path):
    d, out = lda_setup["dir"], tmp_path / "lda.safetensors"
    rc, stdout, err = run_cli(["classifier", "build", "--type", "lda", "--checkpoint", lda_setup["checkpoint"],
                           "--clip", lda_setup["clip"], "--config", lda_setup["config"], "--fraction", "1",
                           "--out", str(out)])
    assert rc == 1, err
    assert "Traceback" not in err
    lines = [line for line in err.replace("\r", "\n").splitlines() if "text4vis classifier:" in line]
    for bad in ("zero.mp4", "text.mp4"):
        assert sum(str(d / bad) in line for line in lines) == 1, err
    assert any("2 videos failed" in line for line in lines), err
    cls = C.load_classifier(str(out))                  # written all the same: every class has videos
    assert cls.labels == lda_setup["names"] and cls.meta["type"] == "lda" and cls.meta["num_videos"] == 8
    assert "lda classifier" in stdout


def test_lda_class_whose_videos_all_failed(lda_setup, tmp_path):
    d, out = lda_setup["dir"], tmp_path / "lda.safetensors"
    rc, _, err = run_cli(["classifier", "build", "--type", "lda", "--checkpoint", lda_setup["checkpoint"],
                      "--clip", lda_setup["clip"], "--config", lda_setup["config"], "--fraction", "1",
                      "--set", f"data.train_list={d / 'class_dead.txt'}", "--out", str(out)])
    assert rc == 2 and "Traceback" not in err
    lines = [line for line in err.replace("\r", "\n").splitlines() if "text4vis classifier:" in line]
    assert "error:" in lines[-1] and "failed to decode" in lines[-1] and repr(lda_setup["names"][0]) in lines[-1]
    assert str(d / "zero.mp4") in lines[-1] and "empty file" in lines[-1], err     # the failure, named
    assert not out.exists() and not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------- compare (B12, C18, C24)

def _run_folder(path, metrics_text, cfg=None):
    path.mkdir(parents=True)
    cfg = cfg if cfg is not None else {"classifier": {"type": "text"}, "training": {"mode": "classifier"},
                                       "model": {"head": "transf"}, "data": {"shot": None}}
    (path / "config.yaml").write_text(yaml.safe_dump(cfg) if isinstance(cfg, dict) else cfg)
    (path / "metrics.jsonl").write_text(metrics_text)
    return str(path)


GOOD_METRICS = "".join(json.dumps(r) + "\n" for r in [{"step": 1, "loss": 3.0}, {"step": 2, "val_top1": 0.25,
                                                                                   "val_top5": 0.5},
                                                      {"step": 3, "val_top1": 0.5, "val_top5": 0.75}])


def test_compare_skips_a_half_written_last_line(tmp_path):
    killed = _run_folder(tmp_path / "killed", GOOD_METRICS + '{"step": 4, "val_to')
    rc, out, err = run_cli(["compare", killed])
    assert rc == 0 and err == "", err
    assert "| killed | text | classifier | transf | all | best val during training, 1x1 view | 50.00 | 75.00 |  |" in out


def test_compare_warns_about_each_bad_folder(tmp_path):
    good = _run_folder(tmp_path / "good", GOOD_METRICS)
    bad = {
        "badmetrics_mid": _run_folder(tmp_path / "badmetrics_mid", '{"step": 1\n' + GOOD_METRICS),
        "badcfg": _run_folder(tmp_path / "badcfg", GOOD_METRICS, cfg=": : :\n"),
        "nokeys": _run_folder(tmp_path / "nokeys", GOOD_METRICS, cfg={"data": {}}),
        "listcfg": _run_folder(tmp_path / "listcfg", GOOD_METRICS, cfg="[1, 2]\n"),
    }
    for name, text in (("badjson", "{bad"), ("resnotdict", "[1, 2]")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(text)
        bad[name] = str(tmp_path / name)
    (tmp_path / "emptydir").mkdir()
    bad["emptydir"] = str(tmp_path / "emptydir")
    bad["nonexist"] = str(tmp_path / "nonexist")
    rc, out, err = run_cli(["compare", good, *bad.values()])
    assert rc == 1 and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == len(bad), err
    for (name, folder), line in zip(bad.items(), lines):
        assert folder in line and "warning" in line and "skipped" in line, (name, line)
    assert "| good |" in out and "50.00" in out
    for name in bad:
        assert f"| {name} |" not in out


def test_compare_output_location(tmp_path):
    good = _run_folder(tmp_path / "good", GOOD_METRICS)
    rc, out, err = run_cli(["compare", good, "--out", str(tmp_path)])
    one_line_error(rc, err, f"--out {tmp_path}", "folder")
    assert out == ""                                    # checked before the table is printed
    afile = tmp_path / "afile"
    afile.write_text("x")
    rc, out, err = run_cli(["compare", good, "--out", str(afile / "t.md")])
    one_line_error(rc, err, "--out", str(afile))
    md = tmp_path / "new" / "dir" / "t.md"
    rc, out, err = run_cli(["compare", good, "--out", str(md)])
    assert rc == 0, err
    assert md.read_text() == out


# ----------------------------------------------------------------------------- --help (help 5)

def test_help_texts():
    rc, out, _ = run_cli(["synth", "--help"])
    assert rc == 0 and "examples:" in out and "text4vis synth --out" in out
    for opt in ("--seed", "--train-per-class", "--val-per-class", "--frames", "--size"):
        block = out.split("options:", 1)[1].split(opt, 1)[1].split("\n  --", 1)[0]
        assert len(block.split()) > 2, (opt, block)      # a help text after the metavar
    for action in ("build", "plot", "inspect"):
        rc, out, _ = run_cli(["classifier", action, "--help"])
        assert rc == 0 and "examples:" in out and f"text4vis classifier {action} " in out.split("examples:")[1]
    rc, out, _ = run_cli(["classifier", "build", "--help"])
    for opt in ("--seed SEED ", "--set KEY=VALUE ", "--device DEVICE "):
        assert opt in out and out.split(opt, 1)[1].strip()[:1] not in ("-", ""), opt
    rc, out, _ = run_cli(["classifier", "inspect", "--help"])
    assert "--k K " in out and "neighbours" in out
    rc, out, _ = run_cli(["classifier", "--help"])
    assert "compare" not in out
    rc, out, _ = run_cli(["demo", "--help"])
    assert "about 8 minutes on 2 cores" in out and "10 minutes" not in out
