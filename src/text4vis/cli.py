"""The `text4vis` command line: a thin layer over the library.

Exit codes: 0 success; 1 some inputs failed (each has its own one-line error); 2 usage or setup
error (bad arguments, missing weights, unusable label list, ...). Input problems never print a
traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

EXAMPLES_PREDICT = """examples:
  text4vis predict clip.mp4 other.webm --clip ViT-B/16 --labels k400 --topk 5
  text4vis predict videos/ --checkpoint k400-vitb-16-f8.pt --clip ViT-B/16 --labels k400 --views 4x3 --json
  text4vis predict clip.mp4 --checkpoint runs/x/best.safetensors
"""


from .errors import Text4VisError, UsageError  # noqa: F401


def check_numbers(*checks) -> None:
    """Numeric options, each (option, value, least) or (option, value, least, most); None values are skipped.
    UsageError (one line, exit 2) on the first value out of range."""
    for name, value, least, *most in checks:
        if value is None:
            continue
        if not value >= least:  # also NaN
            raise UsageError(f"{name} must be at least {least} (got {value})")
        if most and value > most[0]:
            raise UsageError(f"{name} must be at most {most[0]} (got {value})")


def _known_errors():
    return (Text4VisError,)


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--checkpoint", help="text4vis checkpoint (.safetensors, self-contained) or original Text4Vis .pt")
    g.add_argument("--clip", help="CLIP towers: ViT-B/32, ViT-B/16, ViT-L/14, ViT-L/14-336px, RN50, "
                                   "open_clip MODEL:PRETRAINED, hf-hub:ID, or a local OpenAI/open_clip file "
                                   "(default: the checkpoint's own, else ViT-B/16)")
    g.add_argument("--labels", help="label set: k400, k600, ucf101, hmdb51, anet, ssv2, or a file "
                                     "(CSV id,name or one name per line); default: the checkpoint's, else k400")
    g.add_argument("--prompts", nargs="+", metavar="TEMPLATE",
                   help='prompt templates with {} for the class name (default: "a video of a person {}.")')
    g.add_argument("--classifier", help="a stored classifier file (from `text4vis classifier build`)")
    g.add_argument("--frames", type=int, help="frames per clip T (default: the checkpoint's, else 8)")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: auto)")
    from .config import PRECISIONS
    g.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="GPU compute precision: auto = bf16 autocast where supported (fastest); fp32 = the "
                        "reference test scripts' precision, to reproduce published numbers most closely "
                        "(default: auto; eval: evaluation.precision). The CPU always computes in fp32")


# ----------------------------------------------------------------------------- predict

def cmd_predict(args) -> int:
    from .api import load
    from .sampling import parse_views
    from .video import find_videos
    try:
        parse_views(args.views)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    check_numbers(("--topk", args.topk, 1), ("--frames", args.frames, 1),
                  ("--batch-size", args.batch_size, 1), ("--workers", args.workers, 0))
    if args.embedding and not args.json:
        raise UsageError("--embedding adds the embedding to --json output: use both")
    files = find_videos(args.inputs)
    if not files:
        raise UsageError(f"no videos found in {' '.join(args.inputs)}")
    empty = [p for p in args.inputs if os.path.isdir(p) and not find_videos([p])]
    rec = load(checkpoint=args.checkpoint, clip=args.clip, labels=args.labels, prompts=args.prompts,
               classifier=args.classifier, frames=args.frames, device=args.device, precision=args.precision or "auto")
    records = rec.predict(files, topk=args.topk, views=args.views, batch_size=args.batch_size,
                          workers=args.workers, progress=len(files) > 3 and not args.quiet,
                          with_embedding=args.embedding)
    failed = len(empty)
    for folder in empty:  # a folder given on purpose that holds no video is an input that failed
        if args.json:
            print(json.dumps({"video": folder, "error": "a folder without video files"}), flush=True)
        else:
            print(f"{folder}\n   error: a folder without video files")
    for r in records:
        if "error" in r:
            failed += 1
        if args.json:
            print(json.dumps(r), flush=True)
        elif "error" in r:
            print(f"{r['video']}\n   error: {r['error']}")
        else:
            print(r["video"])
            width = max(len(t["label"]) for t in r["top"])
            for k, t in enumerate(r["top"], start=1):
                print(f"  {k:>2}. {t['label']:<{width}}  {100 * t['score']:6.2f}%")
    if failed:
        print(f"text4vis: {failed} of {len(records) + len(empty)} inputs failed", file=sys.stderr)
    return 1 if failed else 0


# ----------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="text4vis",
        description="Video recognition with CLIP towers and a frozen text classifier (Text4Vis).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `text4vis COMMAND --help` for each command's options and examples.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("predict", help="top-k actions for video files or folders",
                       description="Classify videos: top-k classes per video, zero-shot or with a checkpoint.",
                       epilog=EXAMPLES_PREDICT, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="video files and/or folders (searched recursively)")
    add_model_args(p)
    p.add_argument("--views", default="1x1", help="CxK: C temporal clips x K spatial crops (1 or 3), e.g. 4x3 (default 1x1)")
    p.add_argument("--topk", type=int, default=5, help="classes to show per video (default 5)")
    p.add_argument("--batch-size", type=int, default=4, help="videos per forward pass (default 4)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: by CPU count)")
    p.add_argument("--json", action="store_true", help="JSON Lines: one object per input, in input order")
    p.add_argument("--embedding", action="store_true", help="with --json: include the normalised video embedding")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_predict)

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands():
    """Other commands register themselves here (kept apart so predict stays light to import)."""
    from . import commands
    return commands.REGISTER


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    errors = _known_errors()
    try:
        return int(args.func(args) or 0)
    except errors as exc:
        print(f"text4vis {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        sys.stdout = open(os.devnull, "w")
        return 0
    except OSError as exc:  # a path that cannot be read or written (permissions, a folder, a full disk, ...)
        if exc.filename is None:
            raise
        where = f"{exc.filename} -> {exc.filename2}" if exc.filename2 else exc.filename
        print(f"text4vis {args.command}: error: {where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("text4vis: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
