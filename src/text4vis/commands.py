"""The CLI commands other than predict: train, check-data, eval, classifier, synth, demo, bench.

Each `add_*` function registers one sub-command on the parser; each `cmd_*` is thin over the library.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

RAW = argparse.RawDescriptionHelpFormatter


# ----------------------------------------------------------------------------- train

def add_train(sub) -> None:
    p = sub.add_parser("train", help="fine-tune a video model against a frozen classifier", formatter_class=RAW,
                       description="Train the image tower and temporal head against a frozen classifier (or a "
                                   "learned one, or contrastively). Configs are YAML (ours, or the original "
                                   "Text4Vis ones unchanged); see configs/ and `--help-config`.",
                       epilog="examples:\n"
                              "  text4vis train --config configs/k400_vitb16_f8.yaml --output runs/k400-b16\n"
                              "  text4vis train --config configs/k400_vitb16_f8.yaml --output runs/k400-b16 --resume auto\n"
                              "  text4vis train --config their_text4vis.yaml --set data.train_root=/data/k400 --output runs/x\n"
                              "  torchrun --nproc_per_node 8 -m text4vis train --config ... --output ...\n"
                              "effective batch = data.batch_size x processes x optim.grad_accumulation")
    p.add_argument("--config", help="YAML config (text4vis sections, or an original Text4Vis config)")
    p.add_argument("--output", help="run folder (config, metrics.jsonl, tensorboard/, last/best checkpoints)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set data.batch_size=16 (repeatable)")
    p.add_argument("--resume", help="'auto' (the run folder's last checkpoint, if any) or a checkpoint path")
    p.add_argument("--help-config", action="store_true", help="print every config field with its default and meaning")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from .cli import UsageError
    from .config import describe, load_config
    if args.help_config:
        print(describe())
        return 0
    if not args.config and not args.set:
        raise UsageError("give --config FILE (and/or --set KEY=VALUE); see `text4vis train --help`")
    if not args.output:
        raise UsageError("give --output RUN_FOLDER")
    cfg, notes = load_config(args.config, args.set)
    if args.resume:
        cfg.training.resume = args.resume
    from .train import TrainError, train
    try:
        train(cfg, args.output, notes, progress=not args.quiet)
    except TrainError as exc:
        print(f"text4vis train: error: {exc}", file=sys.stderr)
        return 1
    return 0


# ----------------------------------------------------------------------------- check-data

def add_check_data(sub) -> None:
    p = sub.add_parser("check-data", help="scan a config's train/val lists for missing or broken videos",
                       formatter_class=RAW,
                       description="Before a long run: read every entry of the train and val lists in parallel "
                                   "and report missing files, videos that do not decode, frame counts that differ "
                                   "from the list, and label ids outside the label list.",
                       epilog="example:\n  text4vis check-data --config cfg.yaml --write-clean cleaned/")
    p.add_argument("--config", required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--workers", type=int, default=None, help="parallel processes (default: CPU count)")
    p.add_argument("--write-clean", metavar="DIR", help="write train/val lists without the broken entries to DIR")
    p.set_defaults(func=cmd_check_data)


def cmd_check_data(args) -> int:
    from .check_data import check_config
    from .config import load_config
    cfg, notes = load_config(args.config, args.set)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    report = check_config(cfg, workers=args.workers, clean_dir=args.write_clean)
    return 1 if report["problems"] else 0


# ----------------------------------------------------------------------------- synth

def add_synth(sub) -> None:
    p = sub.add_parser("synth", help="write the synthetic action benchmark (videos + list files)",
                       description="Procedurally rendered short videos of shapes moving, rotating, growing ...; "
                                   "H.264 files plus Text4Vis-format list files and label CSVs.")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-per-class", type=int, default=12)
    p.add_argument("--val-per-class", type=int, default=4)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=64)
    p.set_defaults(func=cmd_synth)


def cmd_synth(args) -> int:
    from .synthetic import make_benchmark
    info = make_benchmark(args.out, seed=args.seed, train_per_class=args.train_per_class,
                          val_per_class=args.val_per_class, num_frames=args.frames, size=args.size)
    print(json.dumps({k: v for k, v in info.items() if not isinstance(v, list)}, indent=1, default=str))
    return 0


# ----------------------------------------------------------------------------- eval

def add_eval(sub) -> None:
    from .cli import add_model_args
    p = sub.add_parser("eval", help="evaluate a model: top-1/5, mean class accuracy, mAP, zero-shot protocols",
                       formatter_class=RAW,
                       description="Evaluate on a config's val list (or --val-list) with multi-view testing; "
                                   "writes results.json, predictions.npz, per_class.csv, confusion.png.",
                       epilog="examples:\n"
                              "  text4vis eval --config configs/k400_vitb16_f8.yaml --checkpoint runs/k400-b16/best.safetensors --views 4x3 --out eval/k400\n"
                              "  text4vis eval --config ucf_zero_shot.yaml --checkpoint k400-vitl-14-f8.pt --clip ViT-L/14 --zero-shot --out eval/ucf-zs\n"
                              "  torchrun --nproc_per_node 8 -m text4vis eval ...")
    p.add_argument("--config", help="YAML config (its data section names the val list and labels)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    add_model_args(p)
    p.add_argument("--val-list", help="list file / CSV / class-folder tree to evaluate (instead of the config's)")
    p.add_argument("--val-root", default="", help="folder the --val-list paths are relative to")
    p.add_argument("--views", help="CxK views, e.g. 1x1, 4x3 (default: evaluation.views, 1x1)")
    p.add_argument("--zero-shot", action="store_true",
                   help="also report the half-classes protocol (10 seeded splits; K600: its three 160-class splits)")
    p.add_argument("--splits", nargs="+", metavar="LABELS", help="label files naming class subsets to score apart")
    p.add_argument("--out", help="output folder for results.json, predictions.npz, per_class.csv, confusion.png")
    p.add_argument("--batch-size", type=int, help="videos per forward pass")
    p.add_argument("--workers", type=int, help="decoding processes")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    from .config import load_config
    from .evaluate import eval_from_config
    cfg, notes = load_config(args.config, args.set)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    results = eval_from_config(cfg, args)
    return 1 if results["num_failed"] else 0


REGISTER = [add_train, add_check_data, add_eval, add_synth]
