"""Never lose or mix up work, never print a silent wrong number (issue 12, items 1-6, 8, 9).

Each test reproduces a measured failure: two trainings in one folder, a failed run's leftovers,
predict printing nothing until the end, outputs overwriting any file, resuming with a changed config,
non-finite weights, class-folder names against a checkpoint's labels, eval without data.labels.
Tiny random-weight CLIP (conftest), 4-class synthetic benchmark, 8-frame 32x32 videos.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import run_cli
from text4vis.labels import load_labels
from text4vis.synthetic import make_benchmark

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = SRC + os.pathsep + e.get("PYTHONPATH", "")
    e["OMP_NUM_THREADS"] = "1"
    return e


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    return make_benchmark(root, shapes=["circle", "square"], motions=["moving left", "moving right"], heldout=[],
                          train_per_class=2, val_per_class=1, num_frames=8, size=32, progress=False)


def sets(clip_file, bench, **over) -> list[str]:
    values = {"model.clip": clip_file, "data.num_frames": 4, "data.batch_size": 4, "data.workers": 0,
              "optim.epochs": 2, "optim.lr": 1e-3, "optim.warmup_epochs": 0, "training.print_freq": 1,
              "evaluation.batch_size": 4, "data.train_list": bench["train_list"], "data.train_root": bench["root"],
              "data.labels": bench["labels_csv"]}
    values.update({k.replace("__", "."): v for k, v in over.items()})
    items = []
    for k, v in values.items():
        items += ["--set", f"{k}={v}"]
    return items


def train_argv(clip_file, bench, out, *extra, **over) -> list[str]:
    return ["train", "--output", str(out), "--quiet", *sets(clip_file, bench, **over), *extra]


def metrics(out) -> list[dict]:
    return [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]


@pytest.fixture(scope="module")
def finished_run(clip_file, bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "done"
    rc, _, err = run_cli(train_argv(clip_file, bench, out))
    assert rc == 0, err
    return out


# ----------------------------------------------------------------------------- 1. one run per folder

@pytest.mark.slow
def test_second_run_into_a_busy_folder_is_refused_and_a_killed_run_leaves_no_lock(clip_file, bench, tmp_path):
    out = tmp_path / "dup"
    first = subprocess.Popen([sys.executable, "-m", "text4vis", *train_argv(clip_file, bench, out, optim__epochs=400)],
                             env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not os.path.exists(out / "metrics.jsonl") and time.time() < deadline and first.poll() is None:
            time.sleep(0.2)
        assert first.poll() is None, first.stderr.read()
        rc, _, err = run_cli(train_argv(clip_file, bench, out, "--resume", "auto"))
        assert rc == 2
        line = err.strip().splitlines()[-1]
        assert str(out) in line and f"pid {first.pid}" in line, err
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # SIGKILL: the OS dropped the lock with the process; the folder is usable again
    rc, _, err = run_cli(train_argv(clip_file, bench, out, "--resume", "auto", optim__epochs=1))
    assert rc in (0, 2), err
    assert "in use" not in err and "pid" not in err, err


# ----------------------------------------------------------------------------- 2. leftovers of a failed run

def test_fresh_run_does_not_inherit_a_failed_runs_files(clip_file, bench, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 123.0}) + "\n")
    (out / "bad_videos.txt").write_text("old/video.mp4\tcould not decode\n")
    (out / "tensorboard").mkdir()
    (out / "tensorboard" / "events.out.tfevents.1.old").write_bytes(b"x")
    rc, _, err = run_cli(train_argv(clip_file, bench, out, optim__epochs=1))
    assert rc == 0, err
    assert all(r.get("loss") != 123.0 for r in metrics(out))
    assert metrics(out)[0]["step"] == 1
    assert not (out / "bad_videos.txt").exists()
    assert not (out / "tensorboard" / "events.out.tfevents.1.old").exists()
    assert "earlier run" in err  # said once, not silently


# ----------------------------------------------------------------------------- 3. predict streams

@pytest.mark.slow
def test_predict_streams_records_and_sigint_keeps_them(tmp_path, tiny_dir):
    from conftest import write_video
    rng = np.random.default_rng(0)
    videos = []
    for i in range(60):
        p = str(tmp_path / f"v{i:03d}.mp4")
        write_video(p, rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8))
        videos.append(p)
    proc = subprocess.Popen([sys.executable, "-m", "text4vis", "predict", *videos, "--clip",
                             str(tiny_dir / "openai_sd.pt"), "--labels", "ucf101", "--json", "--workers", "0",
                             "--batch-size", "1", "--device", "cpu"],
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()           # arrives before the whole batch is done
    assert json.loads(first)["video"] == videos[0]
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=120)
    lines = [first] + [line for line in rest.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]      # every printed line is whole JSON
    assert [r["video"] for r in records] == videos[:len(records)]
    assert len(records) < len(videos)
    assert proc.returncode == 130
    assert f"{len(records)} of {len(videos)}" in err, err
    assert "Traceback" not in err


def test_predict_empty_folder_error_is_in_input_order(tmp_path, tiny_dir, square_index_video):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, out, _ = run_cli(["predict", square_index_video, str(empty), square_index_video, "--clip",
                          str(tiny_dir / "openai_sd.pt"), "--labels", "ucf101", "--json", "--workers", "0",
                          "--device", "cpu"])
    assert rc == 1
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["video"] for r in records] == [square_index_video, str(empty), square_index_video]
    assert "error" in records[1] and "error" not in records[0]


# ----------------------------------------------------------------------------- 4. outputs never overwrite other files

def test_classifier_build_refuses_to_replace_a_video(tmp_path, tiny_dir, square_index_video):
    import shutil
    video = tmp_path / "clip.mp4"
    shutil.copy(square_index_video, video)
    before = video.read_bytes()
    rc, _, err = run_cli(["classifier", "build", "--type", "random", "--labels", "ucf101", "--dim", "16",
                          "--out", str(video)])
    assert rc == 2 and str(video) in err and ".safetensors" in err
    assert video.read_bytes() == before
    # a classifier file over a classifier file is fine (same kind of output)
    out = tmp_path / "c.safetensors"
    for _ in range(2):
        rc, _, err = run_cli(["classifier", "build", "--type", "random", "--labels", "ucf101", "--dim", "16",
                              "--out", str(out)])
        assert rc == 0, err
    # any other file named .safetensors is not replaced
    other = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    rc, _, err = run_cli(["classifier", "build", "--type", "random", "--labels", "ucf101", "--dim", "16",
                          "--out", str(other)])
    assert rc == 2 and str(other) in err
    assert list(load_file(str(other))) == ["w"]


@pytest.mark.slow
def test_plot_extension_must_match_the_format(tmp_path, tiny_dir):
    cls = tmp_path / "c.safetensors"
    rc, _, err = run_cli(["classifier", "build", "--type", "random", "--labels", "ucf101", "--dim", "16",
                          "--out", str(cls)])
    assert rc == 0, err
    rc, _, err = run_cli(["classifier", "plot", str(cls), "--classes", "4", "--out", str(tmp_path / "x.gif")])
    assert rc == 2 and "x.gif" in err and ".png" in err
    assert not (tmp_path / "x.gif").exists()
    rc, _, err = run_cli(["classifier", "plot", str(cls), "--classes", "4", "--out", str(tmp_path / "x.png")])
    assert rc == 0, err
    assert (tmp_path / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    notes = tmp_path / "notes.png"   # a PNG someone else made is kept unless --overwrite
    notes.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 20)
    rc, _, err = run_cli(["classifier", "plot", str(cls), "--classes", "4", "--out", str(notes)])
    assert rc == 2 and "--overwrite" in err
    rc, _, err = run_cli(["classifier", "plot", str(cls), "--classes", "4", "--out", str(notes), "--overwrite"])
    assert rc == 0, err


# ----------------------------------------------------------------------------- 5. resume with a changed config

@pytest.mark.slow
def test_resume_with_more_epochs_is_said_and_keeps_a_sound_schedule(clip_file, bench, finished_run, tmp_path):
    import shutil
    out = tmp_path / "more"
    shutil.copytree(finished_run, out)
    rc, _, err = run_cli(train_argv(clip_file, bench, out, "--resume", "auto", optim__epochs=4))
    assert rc == 0, err
    assert "optim.epochs: 2 -> 4" in err
    recs = [r for r in metrics(out) if "loss" in r]
    steps_per_epoch = max(r["step"] for r in recs) // 4
    new = [r for r in recs if r["step"] > 2 * steps_per_epoch]
    assert new and all(r["lr"] > 0 for r in new[:-1]), new      # no step at lr 0.0
    lrs = [r["lr"] for r in new]
    assert lrs == sorted(lrs, reverse=True)                     # cosine goes on downwards: no jump up mid-way


def test_resume_with_an_unsafe_change_is_refused(clip_file, bench, finished_run, tmp_path):
    import shutil
    out = tmp_path / "changed"
    shutil.copytree(finished_run, out)
    rc, _, err = run_cli(train_argv(clip_file, bench, out, "--resume", "auto", optim__lr=5e-2, optim__epochs=3))
    assert rc == 2
    assert "optim.lr" in err and "0.001 -> 0.05" in err
    assert len(metrics(out)) == len(metrics(finished_run))     # nothing trained, nothing appended


# ----------------------------------------------------------------------------- 6. non-finite numbers

def test_checkpoint_with_nan_weights_is_refused(finished_run, tmp_path, square_index_video):
    bad = tmp_path / "nan.safetensors"
    from safetensors import safe_open
    with safe_open(str(finished_run / "last.safetensors"), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    name = sorted(k for k in tensors if k.startswith("model.") and tensors[k].is_floating_point())[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, str(bad), metadata=meta)
    rc, out, err = run_cli(["predict", square_index_video, "--checkpoint", str(bad), "--json", "--device", "cpu"])
    assert rc == 2 and "nan" not in out
    assert str(bad) in err and name.split("model.", 1)[1] in err and "finite" in err


def test_resume_from_a_nonfinite_optimiser_state_is_refused(clip_file, bench, finished_run, tmp_path):
    import shutil
    from text4vis import checkpoints
    out = tmp_path / "poisoned"
    shutil.copytree(finished_run, out)
    # an optimiser state full of NaN: the first step would make every weight NaN
    path = str(out / "last.safetensors")
    from safetensors import safe_open
    with safe_open(path, "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    poisoned = 0
    for k, v in tensors.items():
        if not k.startswith("model.") and v.is_floating_point() and v.numel() > 1:
            tensors[k] = torch.full_like(v, float("nan"))
            poisoned += 1
    assert poisoned
    save_file(tensors, path, metadata=meta)
    good = {k: v for k, v in load_file(str(finished_run / "best.safetensors")).items() if k.startswith("model.")}
    rc, _, err = run_cli(train_argv(clip_file, bench, out, "--resume", "auto", optim__epochs=3))
    assert rc != 0
    assert "non-finite" in err
    kept = {k: v for k, v in load_file(str(out / "best.safetensors")).items() if k.startswith("model.")}
    assert all(torch.isfinite(v).all() for v in kept.values())
    assert all(torch.equal(kept[k], good[k]) for k in good)
    del checkpoints


def test_training_stops_when_parameters_become_nonfinite(clip_file, bench, finished_run, tmp_path, monkeypatch):
    import shutil
    out = tmp_path / "diverged"
    shutil.copytree(finished_run, out)
    before = (out / "last.safetensors").read_bytes()
    original = torch.optim.AdamW.step
    calls = []

    def diverging_step(self, *a, **k):   # the second step of the resumed run diverges
        result = original(self, *a, **k)
        calls.append(1)
        if len(calls) == 2:
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("inf"))
        return result

    monkeypatch.setattr(torch.optim.AdamW, "step", diverging_step)
    rc, _, err = run_cli(train_argv(clip_file, bench, out, "--resume", "auto", optim__epochs=4))
    assert rc != 0 and "became non-finite" in err and "at step 6" in err, err   # resumed at 4: its 2nd step
    assert (out / "last.safetensors").read_bytes() == before      # the last good checkpoint is kept
    assert all(torch.isfinite(v).all() for k, v in load_file(str(out / "best.safetensors")).items()
               if v.is_floating_point())


# ----------------------------------------------------------------------------- 8, 9. eval and the checkpoint's labels

@pytest.mark.slow
def test_eval_class_folders_match_the_checkpoints_labels(clip_file, bench, finished_run, tmp_path):
    ck = str(finished_run / "best.safetensors")
    names = load_labels(str(bench["labels_csv"]))
    rc, _, err = run_cli(["eval", "--checkpoint", ck, "--val-list", str(bench["val_list"]), "--val-root",
                          str(bench["root"]), "--out", str(tmp_path / "list"), "--quiet", "--workers", "0"])
    assert rc == 0, err          # 9: the checkpoint's labels are the default
    by_list = json.load(open(tmp_path / "list" / "results.json"))
    folders = tmp_path / "folders"
    lines = open(bench["val_list"]).read().split("\n")
    for line in filter(None, lines):
        rel, label = line.split()
        dest = folders / names[int(label)].replace(" ", "_").upper()   # arm_wrestling style, any case
        dest.mkdir(parents=True, exist_ok=True)
        os.link(os.path.join(bench["root"], rel), dest / os.path.basename(rel))
    rc, _, err = run_cli(["eval", "--checkpoint", ck, "--val-list", str(folders), "--out", str(tmp_path / "f"),
                          "--quiet", "--workers", "0"])
    assert rc == 0, err
    by_folder = json.load(open(tmp_path / "f" / "results.json"))
    assert by_folder["top1"] == by_list["top1"] and by_folder["num_videos"] == by_list["num_videos"] == 4
    # a folder name the checkpoint does not know is named, never silently given a new classifier
    (folders / "juggling_fire").mkdir()
    first = next(p for p in folders.iterdir() if p.name != "juggling_fire")
    video = next(first.iterdir())
    os.link(video, folders / "juggling_fire" / video.name)
    rc, _, err = run_cli(["eval", "--checkpoint", ck, "--val-list", str(folders), "--out", str(tmp_path / "g"),
                          "--quiet", "--workers", "0"])
    assert rc == 2 and "juggling_fire" in err


def test_folder_names_go_into_prompts_as_words(tiny_dir):
    from text4vis.classifiers import text_classifier
    from text4vis.towers import load_towers
    towers = load_towers(str(tiny_dir / "openai_sd.pt"))
    folders = text_classifier(towers, ["arm_wrestling", "playing_cello"], cache=False)
    words = text_classifier(towers, ["arm wrestling", "playing cello"], cache=False)
    assert folders.labels == ["arm_wrestling", "playing_cello"]          # the names stay as given
    assert torch.allclose(folders.weight, words.weight, atol=1e-6)       # the prompts read them as words
    other = text_classifier(towers, ["armwrestling", "playing_cello"], cache=False)
    assert not torch.allclose(other.weight[0], words.weight[0], atol=1e-3)


@pytest.mark.slow
def test_interrupted_training_says_what_was_kept_and_how_to_continue(clip_file, bench, tmp_path):
    out = tmp_path / "stopped"
    argv = train_argv(clip_file, bench, out, optim__epochs=400, training__save_every_steps=1)
    proc = subprocess.Popen([sys.executable, "-m", "text4vis", *argv], env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "last.safetensors").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"text4vis train: interrupted; the last checkpoint is {out / 'last.safetensors'} (step ")
    assert re.search(r"\(step [1-9]\d*: \d+ epochs? done(, \d+ steps into epoch \d+)?\)", line), line   # decoded
    assert "Traceback" not in err
    again = line.split("continue with: ", 1)[1]
    assert again.startswith("text4vis train ") and again.endswith(f"--output {out} --resume auto")
