"""`text4vis demo`: the offline end-to-end demo (library: demo.py)."""
from __future__ import annotations

import argparse
import json
import os
import sys

RAW = argparse.RawDescriptionHelpFormatter


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="offline end-to-end demo on the synthetic benchmark (CPU, about 8 minutes)",
                       formatter_class=RAW,
                       description="Render the synthetic benchmark, train a small CLIP image tower from scratch "
                                   "against the frozen MiniLM text classifier, a learned linear and a frozen "
                                   "orthogonal classifier (and with a mean-pooling head), measure full-data, 2-shot "
                                   "and zero-shot accuracy, predict a new clip, and write report.md, results.json "
                                   "and figures. No GPU, pretrained weights, dataset or network needed.",
                       epilog="examples:\n"
                              "  text4vis demo                            # about 8 minutes on 2 cores (--quick: about 1 minute)\n"
                              "  text4vis demo --quick --out /tmp/demo    # about 1 minute, smaller everything")
    p.add_argument("--out", default="demo-report", help="report folder (default: ./demo-report)")
    p.add_argument("--quick", action="store_true", help="a ~1-minute version: fewer classes, videos and epochs")
    p.add_argument("--seed", type=int, default=0, help="seed of the benchmark, the model and training (default 0)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from ..demo import run_demo
    run_demo(args.out, quick=args.quick, seed=args.seed)
    return 0


def register(sub) -> None:
    add_demo(sub)
