"""`text4vis eval`: the paper's evaluation protocols (library: train/evaluate.py)."""
from __future__ import annotations

import argparse
import sys

RAW = argparse.RawDescriptionHelpFormatter


def add_eval(sub) -> None:
    from .common import add_model_args
    p = sub.add_parser("eval", help="evaluate a model: top-1/5, mean class accuracy, mAP, zero-shot protocols",
                       formatter_class=RAW,
                       description="Evaluate on a config's val list (or --val-list) with multi-view testing; "
                                   "writes results.json, predictions.npz, per_class.csv, confusion.png.",
                       epilog="examples:\n"
                              "  text4vis eval --config configs/k400_vitb16_f8.yaml --checkpoint runs/k400-b16/best.safetensors --views 4x3 --out eval/k400\n"
                              "  text4vis eval --config ucf_zero_shot.yaml --checkpoint k400-vitl-14-f8.pt --clip ViT-L/14 --zero-shot --out eval/ucf-zs\n"
                              "  torchrun --nproc_per_node 8 -m text4vis eval ...")
    p.add_argument("--config", help="YAML config (its data section names the val list and labels; default: none, "
                                    "then give --val-list)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. data.val_root=/data/k400 (repeatable; default: none)")
    add_model_args(p)
    p.add_argument("--val-list", help="list file / CSV / class-folder tree to evaluate (default: the config's "
                                      "data.val_list)")
    p.add_argument("--val-root", default="", help="folder the --val-list paths are relative to (default: none, "
                                                  "paths as written)")
    p.add_argument("--views", help="CxK views, e.g. 1x1, 4x3 (default: evaluation.views, 1x1)")
    p.add_argument("--zero-shot", action="store_true",
                   help="also report the half-classes protocol (10 seeded splits; K600: its three 160-class splits)")
    p.add_argument("--splits", nargs="+", metavar="LABELS",
                   help="label files naming class subsets to score apart (default: none)")
    p.add_argument("--out", help="output folder for results.json, predictions.npz, per_class.csv, confusion.png, "
                                 "confused_pairs.csv: new or empty, or an earlier eval of the same list (replaced; "
                                 "default: no files, the summary only)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into --out even if it holds other files or another list's report")
    p.add_argument("--batch-size", type=int, help="videos per forward pass (default: evaluation.batch_size, 8)")
    p.add_argument("--workers", type=int, help="decoding processes (default: by CPU count)")
    p.add_argument("--quiet", action="store_true",
                   help="no status lines or progress bar (default: shown when stderr is a terminal)")
    from .decode import add_decode_device_arg
    add_decode_device_arg(p)
    p.set_defaults(func=cmd_eval, on_interrupt=_interrupted)


def _interrupted(args) -> str:
    where = f"nothing was written to {args.out}" if args.out else "no results"
    return (f"text4vis eval: interrupted before the evaluation ended; {where} (the report is written at the end); "
            f"rerun the same command to evaluate again")


def cmd_eval(args) -> int:
    from ..train.config import load_config
    from ..train.evaluate import eval_from_config
    from .common import show_progress
    cfg, notes = load_config(args.config, args.set)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    results = eval_from_config(
        cfg, checkpoint=args.checkpoint, clip=args.clip, labels=args.labels, prompts=args.prompts,
        classifier=args.classifier, frames=args.frames, device=args.device, precision=args.precision,
        val_list=args.val_list, val_root=args.val_root, views=args.views, zero_shot=args.zero_shot,
        splits=args.splits, out=args.out, batch_size=args.batch_size, workers=args.workers, progress=show_progress(args),
        decode_device=args.decode_device, overwrite=args.overwrite)
    return 1 if results["num_failed"] else 0


def register(sub) -> None:
    add_eval(sub)
