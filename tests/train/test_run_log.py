"""What a run leaves for a person and a log file (issue 24, items 8-9): train.log with every line the run
prints (the effective batch first), train accuracy and val loss beside val top-1/top-5, the head's and
the tower's lr always both, metrics from runs shorter than print_freq and from interrupted ones, no
folder left by a run that failed at setup, and one note when the warmup is longer than the run."""
from __future__ import annotations

import contextlib
import io
import json
import math
import re

import pytest
from conftest import small_benchmark

from text4vis.cli import main as cli_main
from text4vis.train import loop

TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """4 classes x (2 train + 1 val) real 8-frame 32x32 videos."""
    return small_benchmark(tmp_path_factory.mktemp("runlog") / "bench", train_per_class=2)


def run_train(tiny_dir, bench, out, **over) -> tuple[int, str]:
    values = {"model.clip": tiny_dir / "openai_sd.pt", "data.train_list": bench["train_list"],
              "data.train_root": bench["root"], "data.val_list": bench["val_list"], "data.val_root": bench["root"],
              "data.labels": bench["labels_csv"], "data.num_frames": 4, "data.batch_size": 2, "data.workers": 0,
              "optim.epochs": 2, "optim.lr": 1e-3, "optim.warmup_epochs": 0, "training.print_freq": 1,
              "evaluation.batch_size": 4}
    values.update({k.replace("__", "."): v for k, v in over.items()})
    argv = ["train", "--output", str(out), *[x for k, v in values.items() for x in ("--set", f"{k}={v}")]]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = cli_main(argv)
    return rc, err.getvalue()


def records(out) -> list[dict]:
    return [json.loads(line) for line in open(out / "metrics.jsonl")]


def test_train_log_holds_every_printed_line_and_the_figures(tiny_dir, bench, tmp_path):
    out = tmp_path / "run"
    rc, err = run_train(tiny_dir, bench, out)
    assert rc == 0, err
    lines = (out / "train.log").read_text().splitlines()
    assert all(TIME.match(line) for line in lines)
    text = [TIME.sub("", line) for line in lines]
    assert text[0] == "effective batch 2 = 1 process(es) x batch 2 x accumulation 1"   # the first line
    printed = [line for line in err.splitlines() if line.strip()]
    assert printed and all(line in text for line in printed), set(printed) - set(text)
    # the step lines a progress bar would show are in the log (and, without a bar, on stderr too)
    steps = [t for t in text if t.startswith("step ")]
    assert len(steps) == 8 and steps[0].startswith("step 1/8 (epoch 0.25): loss ")
    assert re.search(r"train top-1 \d+\.\d\d%, lr 1\.000e-03 \(tower 1\.000e-04\)", steps[0]), steps[0]
    epochs = [t for t in text if t.startswith("epoch ")]
    assert len(epochs) == 2 and re.fullmatch(r"epoch 1: train loss \d+\.\d{4}, top-1 \d+\.\d\d%; val loss \d+\.\d{4}, "
                                             r"top-1 \d+\.\d\d%, top-5 \d+\.\d\d% \(4 videos, 0 failed\)", epochs[0])
    assert text[-1].startswith("done: 8 steps")
    recs = records(out)
    train_recs, evals = [r for r in recs if "loss" in r], [r for r in recs if "val_top1" in r]
    assert all(0 <= r["train_top1"] <= 1 and r["lr"] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(
        math.pi * (r["step"] - 1) / 8))) and r["lr_tower"] == pytest.approx(0.1 * r["lr"]) for r in train_recs)
    assert [e["epoch"] for e in evals] == [1, 2]
    for e in evals:
        assert math.isfinite(e["val_loss"]) and e["val_loss"] > 0
        assert math.isfinite(e["epoch_train_loss"]) and 0 <= e["epoch_train_top1"] <= 1


def test_lr_means_the_head_and_the_tower_whichever_groups_exist(tiny_dir, bench, tmp_path):
    # the mean head has no parameters and the text classifier is a buffer: the tower is the only group
    rc, err = run_train(tiny_dir, bench, tmp_path / "mean", model__head="mean", optim__epochs=1,
                        training__eval_freq=0)
    assert rc == 0, err
    first = [r for r in records(tmp_path / "mean") if "loss" in r][0]
    assert (first["lr"], first["lr_tower"]) == (pytest.approx(1e-3), pytest.approx(1e-4))
    rc, err = run_train(tiny_dir, bench, tmp_path / "frozen", model__freeze_visual="true", optim__epochs=1,
                        training__eval_freq=0)
    assert rc == 0, err
    first = [r for r in records(tmp_path / "frozen") if "loss" in r][0]
    assert (first["lr"], first["lr_tower"]) == (pytest.approx(1e-3), 0.0)


def test_short_and_interrupted_runs_leave_metrics(tiny_dir, bench, tmp_path, monkeypatch):
    rc, err = run_train(tiny_dir, bench, tmp_path / "short", training__print_freq=10, training__max_steps=2)
    assert rc == 0, err
    assert [r["step"] for r in records(tmp_path / "short") if "loss" in r] == [2]
    # Ctrl-C during the third step: the second, not yet logged, is written
    calls = []
    real = loop.optimizer_step

    def third_interrupts(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)
    monkeypatch.setattr(loop, "optimizer_step", third_interrupts)
    rc, err = run_train(tiny_dir, bench, tmp_path / "stopped", training__print_freq=10)
    assert rc == 130
    assert [r["step"] for r in records(tmp_path / "stopped") if "loss" in r] == [2]
    assert (tmp_path / "stopped" / "train.log").read_text().splitlines()[-1].endswith(" interrupted")


def test_a_run_failing_at_setup_removes_the_folder_it_created(tiny_dir, bench, tmp_path):
    out = tmp_path / "new" / "run"
    rc, err = run_train(tiny_dir, bench, out, data__train_list=tmp_path / "missing.txt")
    assert rc == 2 and "missing.txt" in err
    assert not out.exists()
    kept = tmp_path / "mine"                                        # a folder that was there stays, with its log
    kept.mkdir()
    rc, err = run_train(tiny_dir, bench, kept, data__train_list=tmp_path / "missing.txt")
    assert rc == 2 and kept.is_dir() and "error: " in (kept / "train.log").read_text()


def test_a_warmup_longer_than_the_run_is_said_once(tiny_dir, bench, tmp_path):
    rc, err = run_train(tiny_dir, bench, tmp_path / "run", optim__epochs=1, optim__warmup_epochs=5,
                        training__eval_freq=0)
    assert rc == 0, err
    notes = [line for line in err.splitlines() if "the warmup" in line]
    assert notes == ["note: the warmup (optim.warmup_epochs=5, 20 steps) is longer than this run (4 steps): the lr "
                     "peaks at 0.2 x optim.lr=0.001"]


def test_a_resumed_epoch_reports_the_whole_epochs_figures(tiny_dir, bench, tmp_path):
    rc, err = run_train(tiny_dir, bench, tmp_path / "a", training__eval_freq=0)
    assert rc == 0, err
    rc, err = run_train(tiny_dir, bench, tmp_path / "b", training__eval_freq=0, training__max_steps=2)
    assert rc == 0, err
    rc, err = run_train(tiny_dir, bench, tmp_path / "b", training__eval_freq=0, training__resume="auto")
    assert rc == 0, err
    keep = ("step", "epoch", "epoch_train_loss", "epoch_train_top1")
    epochs = [[{k: r[k] for k in keep} for r in records(tmp_path / x) if "epoch_train_loss" in r] for x in "ab"]
    assert len(epochs[0]) == 2 and epochs[0] == epochs[1]
    assert "resumed from" in (tmp_path / "b" / "train.log").read_text()   # the log of both parts, appended
