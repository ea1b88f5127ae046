"""`text4vis demo`: the offline end-to-end demo (library: the demo/ package)."""
from __future__ import annotations

import argparse

RAW = argparse.RawDescriptionHelpFormatter


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="offline end-to-end demo on the synthetic benchmark (CPU, about 8 minutes)",
                       formatter_class=RAW,
                       description="Render the synthetic benchmark, pretrain a small image tower against the frozen "
                                   "MiniLM language model on captioned frames (cached in OUT/pretrain/), transfer it "
                                   "to video in the paper's arms (frozen text, learned linear, orthogonal and LDA "
                                   "classifiers; Transf and mean heads; vision-only pretraining), on full data, "
                                   "2-shot and zero-shot over several seeds, and write report.md (the paper's two "
                                   "ablation tables with the demo's numbers beside them), results.json and figures. "
                                   "No GPU, downloaded weights, dataset or network needed.",
                       epilog="examples:\n"
                              "  text4vis demo                            # about 8 minutes on 2 cores (--quick: about 1 minute)\n"
                              "  text4vis demo --quick --out /tmp/demo    # about 1 minute, smaller everything, 1 seed\n"
                              "  text4vis demo --seeds 5                  # more transfer seeds (longer)")
    p.add_argument("--out", default="demo-report", help="report folder (default: ./demo-report)")
    p.add_argument("--quick", action="store_true", help="a ~1-minute version: fewer classes, videos, epochs, one seed")
    p.add_argument("--seed", type=int, default=0, help="seed of the benchmark and the pretraining (default 0)")
    p.add_argument("--seeds", type=int, default=None,
                   help="transfer seeds, mean and std over them (default: 3, --quick: 1)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from ..demo.run import run_demo
    run_demo(args.out, quick=args.quick, seed=args.seed, seeds=args.seeds)
    return 0


def register(sub) -> None:
    add_demo(sub)
