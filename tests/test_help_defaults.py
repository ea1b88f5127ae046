"""Help (issue 24, item 16): every option of the research commands has help and says its default;
predict's inputs mention frame folders; synth says how many seen and held-out classes it makes."""
from __future__ import annotations

import argparse

import pytest

from text4vis.cli import build_parser

COMMANDS = ["check-data", "eval", "prepare", "synth", "train", "predict"]


def subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help_that_shows_its_default(command):
    missing = []
    for action in subparser(command)._actions:
        if isinstance(action, argparse._HelpAction) or not action.option_strings:
            continue
        text = action.help or ""
        flag = isinstance(action, argparse._StoreTrueAction)      # a switch: off unless given
        if not text or not (flag or action.required or "default" in text):
            missing.append(action.option_strings[0])
    assert missing == []


def test_inputs_and_synth_say_what_they_take_and_make():
    inputs = next(a for a in subparser("predict")._actions if a.dest == "inputs")
    assert "frame folders" in inputs.help
    text = " ".join(subparser("synth").description.split())
    assert "36 classes (4 shapes x 9 motions), 32 seen" in text and "4 held out" in text


def test_synth_takes_the_class_grid_and_says_what_it_made(tmp_path):
    import contextlib
    import io
    import json

    from text4vis.cli import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        rc = main(["synth", "--out", str(tmp_path / "s"), "--shapes", "2", "--motions", "3", "--train-per-class",
                   "1", "--val-per-class", "1", "--frames", "2", "--size", "16", "--quiet"])
    info = json.loads(out.getvalue())
    assert rc == 0 and (info["seen_classes"], info["heldout_classes"]) == (4, 2)   # 2 x 3 classes, 2 held out
    assert len((tmp_path / "s" / "labels.csv").read_text().splitlines()) == 1 + 4
