"""Trainer conveniences (issue 24, items 11-12): `train --device`, per-epoch checkpoints kept
(`training.keep_last_n`), and `--test-best` (the config's multi-view protocol on best.safetensors)."""
from __future__ import annotations

import contextlib
import io
import json

import pytest
from conftest import small_benchmark

from text4vis import checkpoints
from text4vis.cli import main as cli_main


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return small_benchmark(tmp_path_factory.mktemp("opts") / "bench", train_per_class=1)


def run_train(tiny_dir, bench, out, *extra, **over) -> tuple[int, str, str]:
    values = {"model.clip": tiny_dir / "openai_sd.pt", "data.train_list": bench["train_list"],
              "data.train_root": bench["root"], "data.val_list": bench["val_list"], "data.val_root": bench["root"],
              "data.labels": bench["labels_csv"], "data.num_frames": 4, "data.batch_size": 2, "data.workers": 0,
              "optim.epochs": 1, "optim.warmup_epochs": 0, "evaluation.batch_size": 4}
    values.update({k.replace("__", "."): v for k, v in over.items()})
    argv = ["train", "--output", str(out), "--quiet", *extra,
            *[x for k, v in values.items() for x in ("--set", f"{k}={v}")]]
    out_, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out_):
        rc = cli_main(argv)
    return rc, out_.getvalue(), err.getvalue()


def test_train_device(tiny_dir, bench, tmp_path):
    rc, _, err = run_train(tiny_dir, bench, tmp_path / "cpu", "--device", "cpu")
    assert rc == 0 and "fp32 on cpu" in err, err
    rc, _, err = run_train(tiny_dir, bench, tmp_path / "gpu9", "--device", "cuda:9")
    assert rc == 2 and "--device cuda:9" in err and "Traceback" not in err, err
    rc, _, err = run_train(tiny_dir, bench, tmp_path / "bad", "--device", "tpu")
    assert rc == 2 and "--device tpu: not a device name" in err, err


def test_keep_last_n_keeps_the_newest_epoch_checkpoints(tiny_dir, bench, tmp_path):
    out = tmp_path / "run"
    rc, _, err = run_train(tiny_dir, bench, out, optim__epochs=3, training__keep_last_n=2, training__eval_freq=0)
    assert rc == 0, err
    kept = sorted(p.name for p in out.glob("epoch_*.safetensors"))
    assert kept == ["epoch_002.safetensors", "epoch_003.safetensors"]
    meta, tensors = checkpoints.read_text4vis(str(out / "epoch_002.safetensors"))
    assert checkpoints.unpack(meta["train"], tensors)["epoch"] == 2             # resumable: it has the train state
    assert (out / "epoch_003.safetensors").read_bytes() == (out / "last.safetensors").read_bytes()


def test_test_best_writes_the_multi_view_report_into_the_run_folder(tiny_dir, bench, tmp_path):
    out = tmp_path / "run"
    rc, stdout, err = run_train(tiny_dir, bench, out, "--test-best", evaluation__views="2x1")
    assert rc == 0, err
    r = json.loads((out / "test" / "results.json").read_text())
    assert r["views"] == "2x1" and r["checkpoint"] == str(out / "best.safetensors") and r["num_videos"] == 4
    assert "views 2x1" in stdout
    rc, _, err = run_train(tiny_dir, bench, tmp_path / "noval", "--test-best", data__val_list="")
    assert rc == 2 and "--test-best evaluates on the val list" in err
