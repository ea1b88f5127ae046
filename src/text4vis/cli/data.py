"""The data commands: `check-data`, `prepare`, `synth` (library: train/check_data.py, prepare.py, synthetic.py)."""
from __future__ import annotations

import argparse
import json
import sys

RAW = argparse.RawDescriptionHelpFormatter


def add_check_data(sub) -> None:
    p = sub.add_parser("check-data", help="scan a config's train/val lists for missing or broken videos",
                       formatter_class=RAW,
                       description="Before a long run: read every entry of the train and val lists in parallel "
                                   "and report missing files, videos that do not decode, frame counts that differ "
                                   "from the list, and label ids outside the label list.",
                       epilog="example:\n  text4vis check-data --config cfg.yaml --write-clean cleaned/")
    p.add_argument("--config", required=True, help="training config (text4vis or original Text4Vis YAML) naming "
                                                   "the train and val lists")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. data.train_root=/data/k400 (repeatable; default: none)")
    p.add_argument("--workers", type=int, default=None, help="parallel processes (default: CPU count)")
    p.add_argument("--write-clean", metavar="DIR", help="write train/val lists without the broken entries to DIR "
                                                        "(default: only report)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: a bar on a terminal only)")
    p.set_defaults(func=cmd_check_data, param_flags={"clean_dir": "--write-clean"},
                   on_interrupt=lambda a: "text4vis check-data: interrupted; no report and no cleaned lists were "
                                          "written; rerun the same command to check again")


def cmd_check_data(args) -> int:
    from ..train.check_data import check_config
    from ..train.config import load_config
    cfg, notes = load_config(args.config, args.set)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    from .common import show_progress
    report = check_config(cfg, workers=args.workers, clean_dir=args.write_clean, progress=show_progress(args))
    return 1 if report["problems"] else 0


# ----------------------------------------------------------------------------- prepare

def add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="convert a video list to packed resized frames for fast training",
                       formatter_class=RAW,
                       description="Each video of a 'path label' list becomes one <path>.frames.zip (JPEG frames "
                                   "at short side 256, uncompressed ZIP); a new list file points at them. Parallel, "
                                   "with a progress bar, resumable (finished files are skipped).",
                       epilog="example:\n  text4vis prepare --list lists/k400/train.txt --root /data/k400/train "
                              "--out /fast/k400-prepared\n  then: --set data.train_list=/fast/k400-prepared/train.txt "
                              "--set data.train_root=/fast/k400-prepared")
    p.add_argument("--list", required=True, help="video list file ('relative/path.mp4 label')")
    p.add_argument("--root", default="", help="folder the list's paths are relative to (default: none, paths as "
                                              "written)")
    p.add_argument("--out", required=True, help="output folder (mirrors the list's relative paths; rerunning into "
                                                "it resumes; a list file there that prepare did not write is refused)")
    p.add_argument("--short-side", type=int, default=256, help="frames are resized to this short side (default 256)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality, 1-100 (default 90)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
    p.add_argument("--overwrite", action="store_true", help="replace a list file in --out that prepare did not write")
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: a bar on a terminal only)")
    p.set_defaults(func=cmd_prepare, param_flags={"out_dir": "--out"}, on_interrupt=_prepare_interrupted)


def _prepare_interrupted(args) -> str:
    import os
    from ..video import FRAME_ZIP_SUFFIX
    done = sum(f.endswith(FRAME_ZIP_SUFFIX) for _, _, files in os.walk(args.out) for f in files)
    return (f"text4vis prepare: interrupted; {done} converted videos are kept in {args.out} (its list file is "
            f"written at the end); rerun the same command to continue: finished videos are skipped")


def cmd_prepare(args) -> int:
    from ..prepare import prepare_list
    from .common import show_progress
    t = prepare_list(args.list, args.root, args.out, args.short_side, args.quality, args.workers,
                     progress=show_progress(args), overwrite=args.overwrite)
    per_hour = f"{t['gb_per_hour']:.2f} GB per hour of video" if t["gb_per_hour"] else "n/a"
    print(f"{t['videos']} videos: {t['converted']} converted, {t['skipped']} already done, {t['failed']} failed; "
          f"{t['bytes'] / 1e9:.2f} GB ({per_hour}); list: {t['list']}")
    return 1 if t["failed"] else 0


# ----------------------------------------------------------------------------- synth

def add_synth(sub) -> None:
    p = sub.add_parser("synth", help="write the synthetic action benchmark (videos + list files)",
                       formatter_class=RAW,
                       description="Procedurally rendered short videos of shapes moving, rotating, growing ...:\n"
                                   "by default 36 classes (4 shapes x 9 motions), 32 seen (trained on) and 4 held\n"
                                   "out for zero-shot evaluation; --shapes S --motions M make S x M classes (the\n"
                                   "first S shapes and M motions), min(4, S, M) of them held out when S, M >= 2.\n"
                                   "H.264 files plus Text4Vis-format list files (train.txt, val.txt, zeroshot_val.txt)\n"
                                   "and label CSVs (labels.csv, zeroshot_labels.csv). Deterministic given --seed.\n"
                                   "Train on it with data.train_list=OUT/train.txt, data.train_root=OUT,\n"
                                   "data.labels=OUT/labels.csv.",
                       epilog="examples:\n"
                              "  text4vis synth --out data/synth\n"
                              "  text4vis synth --out /tmp/tiny --train-per-class 2 --val-per-class 1 --frames 8 --size 32\n"
                              "  text4vis synth --out data/synth-s1 --seed 1 --size 96")
    p.add_argument("--out", required=True, help="output folder: new or empty, or an earlier synth benchmark "
                                                "(replaced); anything else is refused")
    p.add_argument("--overwrite", action="store_true", help="write into --out even if it holds other files")
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: a bar on a terminal only)")
    p.add_argument("--seed", type=int, default=0, help="seed of every clip's content (default 0)")
    p.add_argument("--train-per-class", type=int, default=12, help="training videos per seen class (default 12)")
    p.add_argument("--val-per-class", type=int, default=4,
                   help="validation videos per seen class, and per held-out (zero-shot) class (default 4)")
    p.add_argument("--frames", type=int, default=16, help="frames per video, at least 1 (default 16)")
    p.add_argument("--size", type=int, default=64, help="frame width and height in pixels, at least 8 (default 64)")
    p.add_argument("--shapes", type=int, default=4, help="shapes, 1-4: circle, square, triangle, star (default 4)")
    p.add_argument("--motions", type=int, default=9, help="motions, 1-9 (default 9); classes = shapes x motions")
    p.set_defaults(func=cmd_synth, param_flags={"out_dir": "--out"},
                   on_interrupt=lambda a: f"text4vis synth: interrupted; {a.out} holds part of the benchmark (no "
                                          f"benchmark.json yet); rerun the same command to write it again")


def cmd_synth(args) -> int:
    from ..errors import check_numbers
    check_numbers(("--frames", args.frames, 1), ("--size", args.size, 8),
                  ("--train-per-class", args.train_per_class, 1), ("--val-per-class", args.val_per_class, 1),
                  ("--shapes", args.shapes, 1, 4), ("--motions", args.motions, 1, 9))
    from ..synthetic import DEFAULT_MOTIONS, DEFAULT_SHAPES, make_benchmark
    from .common import show_progress
    info = make_benchmark(args.out, seed=args.seed, shapes=DEFAULT_SHAPES[:args.shapes],
                          motions=DEFAULT_MOTIONS[:args.motions], train_per_class=args.train_per_class,
                          val_per_class=args.val_per_class, num_frames=args.frames, size=args.size,
                          progress=show_progress(args), overwrite=args.overwrite)
    summary = {"seen_classes": len(info["classes"]), "heldout_classes": len(info["heldout_classes"])}
    print(json.dumps(summary | {k: v for k, v in info.items() if not isinstance(v, list)}, indent=1, default=str))
    return 0


def register(sub) -> None:
    for add in (add_check_data, add_prepare, add_synth):
        add(sub)
