"""Interrupts and progress bars for every command (issue 24, items 6-7): Ctrl-C names the command, what was
done and how to continue; progress bars appear only on a terminal, never in pipes and log files (here
stderr is a StringIO, as a pipe is), whether or not --quiet is given."""
from __future__ import annotations

import contextlib
import io
import logging
import re

import pytest
import torch

from conftest import small_benchmark, original_text4vis_checkpoint
from text4vis.cli import main as cli_main

BAR = re.compile(r"\d+%\||it/s\]|s/it\]|video/s\]|step/s\]")   # what a tqdm bar writes


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return small_benchmark(tmp_path_factory.mktemp("bars") / "bench", train_per_class=2)


@pytest.fixture(scope="module")
def clip(tiny_dir):
    return str(tiny_dir / "openai_sd.pt")


def train_sets(clip, bench, **over) -> list[str]:
    values = {"model.clip": clip, "data.train_list": bench["train_list"], "data.train_root": bench["root"],
              "data.val_list": bench["val_list"], "data.val_root": bench["root"], "data.labels": bench["labels_csv"],
              "data.num_frames": 4, "data.batch_size": 4, "data.workers": 0, "optim.epochs": 1,
              "optim.warmup_epochs": 0, "evaluation.batch_size": 4}
    values.update({k.replace("__", "."): v for k, v in over.items()})
    return [x for k, v in values.items() for x in ("--set", f"{k}={v}")]


# ----------------------------------------------------------------------------- progress bars

def test_no_bars_in_pipes_for_train_with_lda_synth_and_prepare(bench, clip, tmp_path):
    # train (its epoch bar, the val bar and the LDA embedding bar), without --quiet
    rc, _, err = run_cli(["train", "--output", str(tmp_path / "run"),
                          *train_sets(clip, bench, classifier__type="lda", classifier__lda_fraction=1.0)])
    assert rc == 0, err
    assert not BAR.search(err), err
    assert "effective batch 4" in err                                # the log lines stay
    rc, _, err = run_cli(["synth", "--out", str(tmp_path / "synth"), "--train-per-class", "1", "--val-per-class", "1",
                          "--frames", "2", "--size", "16"])
    assert rc == 0 and not BAR.search(err), err
    rc, _, err = run_cli(["prepare", "--list", str(bench["val_list"]), "--root", str(bench["root"]),
                          "--out", str(tmp_path / "prep"), "--workers", "1"])
    assert rc == 0 and not BAR.search(err), err


def test_transformers_loading_bar_follows_the_status_lines(capfd):
    from text4vis.classifiers import DEFAULT_LM, load_sentence_model
    load_sentence_model(DEFAULT_LM)
    assert "Loading weights" not in capfd.readouterr().err           # a library call, or the CLI in a pipe
    log = logging.getLogger("text4vis")
    level = log.level
    log.setLevel(logging.INFO)                                       # the CLI on a terminal
    try:
        load_sentence_model(DEFAULT_LM)
    finally:
        log.setLevel(level)
    assert "Loading weights" in capfd.readouterr().err


# ----------------------------------------------------------------------------- interrupts

def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_interrupted_commands_say_what_was_done_and_how_to_continue(bench, clip, tmp_path, monkeypatch):
    import text4vis.prepare
    import text4vis.train.check_data
    import text4vis.train.evaluate
    import text4vis.train.setup
    config = tmp_path / "c.yaml"
    config.write_text(f"data:\n  val_list: {bench['val_list']}\n  val_root: {bench['root']}\n"
                      f"  train_list: {bench['train_list']}\n  train_root: {bench['root']}\n"
                      f"  labels: {bench['labels_csv']}\n  num_frames: 4\n  workers: 0\nmodel:\n  clip: {clip}\n")
    monkeypatch.setattr(text4vis.train.evaluate, "run_eval", interrupt)
    rc, _, err = run_cli(["eval", "--config", str(config), "--out", str(tmp_path / "ev"), "--quiet"])
    assert rc == 130 and err.strip().splitlines()[-1] == (
        f"text4vis eval: interrupted before the evaluation ended; nothing was written to {tmp_path / 'ev'} "
        f"(the report is written at the end); rerun the same command to evaluate again")
    monkeypatch.setattr(text4vis.train.check_data, "check_config", interrupt)
    rc, _, err = run_cli(["check-data", "--config", str(config), "--quiet"])
    assert rc == 130 and "text4vis check-data: interrupted; no report and no cleaned lists were written; rerun" in err
    monkeypatch.setattr(text4vis.train.setup, "lda_from_model", interrupt)
    ckpt = str(tmp_path / "orig.pt")
    torch.save(original_text4vis_checkpoint(torch.load(clip, weights_only=True), "transf"), ckpt)
    rc, _, err = run_cli(["classifier", "build", "--type", "lda", "--checkpoint", ckpt, "--config", str(config),
                          "--out", str(tmp_path / "lda.safetensors")])
    assert rc == 130 and ("text4vis classifier build: interrupted while embedding the videos for the LDA classifier; "
                          "nothing was written to") in err, err

    # prepare: stopped after its first video; what is kept, and the rerun resumes
    real_tqdm = text4vis.prepare.tqdm

    def one_then_interrupt(results, **kwargs):
        for i, item in enumerate(results):
            if i == 1:
                raise KeyboardInterrupt
            yield item
    monkeypatch.setattr(text4vis.prepare, "tqdm", one_then_interrupt)
    prep = ["prepare", "--list", str(bench["val_list"]), "--root", str(bench["root"]), "--out", str(tmp_path / "prep"),
            "--workers", "1", "--quiet"]
    rc, _, err = run_cli(prep)
    lines = err.strip().splitlines()
    assert rc == 130 and len(lines) == 1 and "Traceback" not in err, err
    done = int(re.match(r"text4vis prepare: interrupted; (\d+) converted videos are kept in ", lines[0]).group(1))
    assert 1 <= done <= 4 and lines[0].endswith("rerun the same command to continue: finished videos are skipped")
    monkeypatch.setattr(text4vis.prepare, "tqdm", real_tqdm)
    rc, stdout, err = run_cli(prep)
    assert rc == 0 and f"{done} already done" in stdout, (stdout, err)


def test_interrupted_train_decodes_the_stored_step(bench, clip, tmp_path):
    from text4vis.train.runs import last_checkpoint_step
    out = tmp_path / "run"
    rc, _, err = run_cli(["train", "--output", str(out), "--quiet",
                          *train_sets(clip, bench, optim__epochs=3, training__max_steps=3, data__batch_size=2)])
    assert rc == 0, err
    assert last_checkpoint_step(str(out / "last.safetensors")) == "step 3: 0 epochs done, 3 steps into epoch 1"   # 4 steps an epoch


def test_a_ctrl_c_as_the_command_exits_just_ends_the_process(tmp_path):
    """Worker pools are joined while Python exits (an atexit hook): a Ctrl-C then printed a KeyboardInterrupt
    traceback and exited 0. After a command-line run, SIGINT has its default action: the process just ends."""
    import os
    import subprocess
    import sys
    code = ("import signal, sys\nfrom text4vis.cli import main\n"
            f"sys.argv = ['text4vis', 'compare', {str(tmp_path / 'none')!r}]\n"
            "rc = main()\nprint(rc, signal.getsignal(signal.SIGINT) is signal.SIG_DFL)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ))
    assert proc.stdout.split() == ["2", "True"], proc.stderr
