"""Messages name the parameter the user gave (issue 24, item 13): the run folder (`--output`), the config's
model.pretrain / model.clip, the classifier file; a folder that holds a run is refused before torch loads."""
from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys

import pytest
import torch

from conftest import small_benchmark, TINY, original_text4vis_checkpoint, tiny_state_dict_of
from text4vis.cli import main as cli_main


def run_cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = cli_main(argv)
    return rc, err.getvalue()


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return small_benchmark(tmp_path_factory.mktemp("msgs") / "bench", train_per_class=1)


def sets(tiny_dir, bench, **over) -> list[str]:
    values = {"model.clip": tiny_dir / "openai_sd.pt", "data.train_list": bench["train_list"],
              "data.train_root": bench["root"], "data.labels": bench["labels_csv"], "data.num_frames": 4,
              "data.workers": 0, "optim.epochs": 1}
    values.update({k.replace("__", "."): v for k, v in over.items()})
    return [x for k, v in values.items() for x in ("--set", f"{k}={v}")]


def test_an_output_that_cannot_be_created_names_the_flag(tiny_dir, bench):
    rc, err = run_cli(["train", "--output", "/proc/text4vis-test/run", *sets(tiny_dir, bench)])
    assert rc == 2 and err.strip() == ("text4vis train: error: --output /proc/text4vis-test/run: cannot create the "
                                       "run folder there (No such file or directory)")


def test_pretrain_that_does_not_fit_the_clip_names_the_config_keys(tiny_dir, bench, tmp_path):
    wide = str(tmp_path / "orig_wide128.pt")
    torch.save(original_text4vis_checkpoint(tiny_state_dict_of(dict(TINY, embed_dim=128), seed=1), "transf"), wide)
    rc, err = run_cli(["train", "--output", str(tmp_path / "run"), *sets(tiny_dir, bench, model__pretrain=wide)])
    assert rc == 2, err
    assert f"model.pretrain={wide!r} does not fit model.clip=" in err
    assert "checkpoint=" not in err and " clip=" not in err


def test_a_classifier_of_another_width_is_named(tiny_dir, bench, tmp_path):
    from text4vis.classifiers import random_classifier, save_classifier
    cls_file = str(tmp_path / "wide.safetensors")
    save_classifier(random_classifier(list(bench["classes"]), 32, 0), cls_file)
    rc, err = run_cli(["eval", "--checkpoint", str(tiny_dir / "text4vis_orig_transf.pt"), "--clip",
                       str(tiny_dir / "openai_sd.pt"), "--classifier", cls_file, "--val-list", str(bench["val_list"]),
                       "--val-root", str(bench["root"]), "--frames", "4", "--workers", "0", "--quiet"])
    assert rc == 2 and f"--classifier {cls_file}: its width 32 differs from the video embedding width 64" in err, err


def test_a_folder_holding_a_run_is_refused_before_torch_loads(tmp_path):
    (tmp_path / "last.safetensors").write_bytes(b"x")
    code = ("import sys\nfrom text4vis.cli import main\n"
            f"rc = main(['train', '--output', {str(tmp_path)!r}, '--set', 'data.train_list=x.txt'])\n"
            "print('torch' in sys.modules, rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ))
    assert proc.stdout.split() == ["False", "2"], proc.stderr
    assert "already holds a run (last.safetensors)" in proc.stderr
