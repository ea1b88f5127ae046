"""Training (`text4vis train`), evaluation (`text4vis eval`) and the data check (`text4vis check-data`).

By role: config.py (the YAML config and its overrides), check_data.py (lists, labels, decodable videos),
runs.py (the run folder: lock, checkpoint names, metrics.jsonl, resume rules), loop.py (the training loop:
`train`), evaluate.py (the paper's protocols and reports), metrics.py (top-k, mean class accuracy, mAP),
tower.py (activation checkpointing, drop path of the image tower), tracker.py (wandb / mlflow, optional).
"""
from __future__ import annotations

__all__ = ["train"]


def __getattr__(name: str):
    """`train` is imported when first used: the config, the run-folder checks and `--help` need no torch."""
    if name == "train":
        from .loop import train
        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
