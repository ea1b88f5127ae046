"""`text4vis train`: fine-tune a video model (library: the train/ package)."""
from __future__ import annotations

import argparse
import os
import sys

RAW = argparse.RawDescriptionHelpFormatter


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
    p.add_argument("--config", help="YAML config (text4vis sections, or an original Text4Vis config; default: none, "
                                    "the defaults of --help-config and the --set values)")
    p.add_argument("--output", help="run folder (config, train.log, metrics.jsonl, tensorboard/, last/best "
                                    "checkpoints); required (no default)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set data.batch_size=16 (repeatable; default: none)")
    p.add_argument("--resume", help="'auto' (the run folder's last checkpoint, if any) or a checkpoint path "
                                    "(default: training.resume, else a fresh run)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: training.device, auto: this process's GPU, "
                                    "else the CPU)")
    p.add_argument("--test-best", action="store_true",
                   help="after training, evaluate best.safetensors on the val list with evaluation.views (the "
                        "config's multi-view protocol); the report goes to OUTPUT/test/")
    p.add_argument("--help-config", action="store_true", help="print every config field with its default and meaning")
    p.add_argument("--quiet", action="store_true", help="no progress bars (default: bars on a terminal only)")
    p.set_defaults(func=cmd_train, param_flags={"training.resume": "--resume", "training.device": "--device"})


def cmd_train(args) -> int:
    from ..errors import UsageError
    from .common import with_flags
    from ..train.config import describe, load_config
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
    if args.device:
        cfg.training.device = args.device
    from ..train.runs import check_run_folder
    check_run_folder(args.output, cfg.training.resume)   # a folder holding a run is refused before torch loads
    if args.test_best and not cfg.data.val_list:
        raise UsageError("--test-best evaluates on the val list: set data.val_list")
    from ..errors import TrainError
    from ..train import train
    from .common import show_progress
    try:
        train(cfg, args.output, notes, progress=show_progress(args))   # bars on a terminal only
    except TrainError as exc:  # the run started and stopped: exit 1 (its folder keeps what it finished)
        print(f"text4vis train: error: {with_flags(str(exc), args.flag_names)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(_interrupted(args), file=sys.stderr)
        return 130
    if args.test_best:   # the config's multi-view protocol on the best checkpoint, as mmaction2's --test-best
        from ..train.evaluate import eval_from_config
        from ..train.runs import CHECKPOINT_BEST
        results = eval_from_config(cfg, checkpoint=os.path.join(args.output, CHECKPOINT_BEST),
                                   out=os.path.join(args.output, "test"), progress=show_progress(args))
        return 1 if results["num_failed"] else 0
    return 0


def _interrupted(args) -> str:
    """What an interrupted run kept and the command that continues it."""
    import shlex
    from ..train.runs import CHECKPOINT_LAST, last_checkpoint_step
    last = os.path.join(args.output, CHECKPOINT_LAST)
    if not os.path.isfile(last):
        return (f"text4vis train: interrupted before the first checkpoint; nothing to resume in {args.output} "
                f"(a new run there starts afresh)")
    again = ["text4vis", "train"] + (["--config", args.config] if args.config else [])
    for item in args.set:
        again += ["--set", item]
    again += ["--output", args.output, "--resume", "auto"]
    return (f"text4vis train: interrupted; the last checkpoint is {last} ({last_checkpoint_step(last)}); "
            f"continue with: {shlex.join(again)}")


def register(sub) -> None:
    add_train(sub)
