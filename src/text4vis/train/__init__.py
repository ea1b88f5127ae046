"""Training (`text4vis train`), evaluation (`text4vis eval`) and the data check (`text4vis check-data`).

By role: config.py (the YAML config and its overrides), check_data.py (lists, labels, decodable videos),
runs.py (the run folder: lock, checkpoint names, metrics.jsonl, resume rules), loop.py (the training loop:
`train`), evaluate.py (the paper's protocols and reports), metrics.py (top-k, mean class accuracy, mAP).
"""
from __future__ import annotations

from .loop import train

__all__ = ["train"]
