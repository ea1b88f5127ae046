"""An optional experiment tracker (issue 24, item 12): off by default; asked for, it gets the config once and
every metrics.jsonl number at its step; not installed, the config is refused before training."""
from __future__ import annotations

import json
import sys
import types

import pytest

from text4vis.errors import ConfigError
from text4vis.synthetic import make_benchmark
from text4vis.train import train
from text4vis.train.config import load_config


def fake_wandb(calls: list):
    class Run:
        def log(self, numbers, step):
            calls.append(("log", step, numbers))

        def finish(self):
            calls.append(("finish",))

    def init(**kwargs):
        calls.append(("init", kwargs))
        return Run()
    return types.SimpleNamespace(init=init)


def test_tracker_gets_the_config_and_every_logged_number(tiny_dir, tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "wandb", fake_wandb(calls))
    bench = make_benchmark(tmp_path / "bench", shapes=["circle", "square"], motions=["moving left", "moving right"],
                           heldout=[], train_per_class=1, val_per_class=1, num_frames=8, size=32, progress=False)
    cfg, _ = load_config(None, [f"model.clip={tiny_dir / 'openai_sd.pt'}", f"data.train_list={bench['train_list']}",
                                f"data.train_root={bench['root']}", f"data.val_list={bench['val_list']}",
                                f"data.val_root={bench['root']}", f"data.labels={bench['labels_csv']}",
                                "data.num_frames=4", "data.batch_size=2", "data.workers=0", "optim.epochs=1",
                                "training.print_freq=1", "training.tracker=wandb", "training.tracker_project=abl"])
    out = tmp_path / "run-7"
    train(cfg, str(out), progress=False)
    assert calls[0][0] == "init" and calls[0][1]["project"] == "abl" and calls[0][1]["name"] == "run-7"
    assert calls[0][1]["config"]["training"]["tracker"] == "wandb" and calls[-1] == ("finish",)
    logged = [(step, numbers) for kind, *rest in calls if kind == "log" for step, numbers in [rest]]
    records = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [s for s, _ in logged] == [r["step"] for r in records]
    for (_, numbers), r in zip(logged, records):
        assert numbers == {k: float(v) for k, v in r.items() if k != "step" and isinstance(v, (int, float))}


def test_tracker_is_off_by_default_and_refused_when_not_installed(monkeypatch):
    assert load_config(None)[0].training.tracker == "none"
    monkeypatch.setitem(sys.modules, "mlflow", None)        # import fails, as when not installed
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    with pytest.raises(ConfigError, match=r"training.tracker='mlflow': the mlflow package is not installed"):
        load_config(None, ["training.tracker=mlflow"])
