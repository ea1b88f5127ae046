"""`text4vis timeline`: what happens when in videos of any length (windows, segments, plot, annotated copy)."""
from __future__ import annotations

import argparse
import json
import os
import sys

from ..errors import UsageError, check_numbers
from ..onnx_runtime import RUNTIMES
from .common import add_model_args

EXAMPLES_TIMELINE = """examples:
  text4vis timeline match.mp4 --checkpoint runs/x/best.safetensors
  text4vis timeline recordings/ --clip ViT-B/16 --labels k400 --window 4 --stride 2 --json > timeline.jsonl
  text4vis timeline match.mp4 --checkpoint best.safetensors --min-score 0.3 --plot plots/ --annotate annotated/

Windows start at 0, STRIDE, 2*STRIDE, ... seconds and last WINDOW seconds (the last one ends at the
video's end; a video shorter than one window is one window); times come from the frames' timestamps.
Each window is scored as `predict` scores a clip (T frames spread over it, resize, centre crop).
Segments: window scores are averaged with SMOOTH neighbouring windows on each side, each window
takes its top-1 class (a gap under --min-score), and consecutive windows with the same label merge.
Exit status: 0 all videos done, 1 some inputs failed (one line each), 2 usage or setup error.
"""


def _out_name(folder: str, video: str, suffix: str, used: set) -> str:
    stem = os.path.splitext(os.path.basename(video))[0] or "video"
    name, n = os.path.join(folder, stem + suffix), 1
    while name in used:  # two inputs with the same file name: keep both
        n += 1
        name = os.path.join(folder, f"{stem}-{n}{suffix}")
    used.add(name)
    return name


def _print_table(r: dict, window: float, stride: float) -> None:
    from ..timeline import clock
    count = len(r["windows"])
    print(f"{r['video']}  ({clock(r['duration'])}, {r['fps']:.2f} fps, {count} window{'s' if count != 1 else ''} "
          f"of {window:g} s every {stride:g} s)")
    if not r["segments"]:
        print("   no segment scores above --min-score")
    width = max([len(s["label"]) for s in r["segments"]] + [5])
    for s in r["segments"]:
        print(f"  {clock(s['start']):>11} - {clock(s['end']):>11}  {s['label']:<{width}}  {100 * s['score']:6.2f}%")


def cmd_timeline(args) -> int:
    from ..api import load
    from ..files import check_output
    from ..errors import Text4VisError, first_line
    from ..timeline import annotate_video, plot_timeline
    from ..video import list_inputs
    if not (args.window > 0 and args.stride > 0):
        raise UsageError(f"--window and --stride must be positive seconds (got {args.window} and {args.stride})")
    check_numbers(("--topk", args.topk, 1), ("--frames", args.frames, 1), ("--min-score", args.min_score, 0.0, 1.0),
                  ("--smooth", args.smooth, 0), ("--batch-size", args.batch_size, 1))
    for option, folder in (("--plot", args.plot), ("--annotate", args.annotate)):
        if folder:
            check_output(folder, option, folder=True)
            os.makedirs(folder, exist_ok=True)
    items = list_inputs(args.inputs)  # each folder walked once
    files = [p for p, empty in items if not empty]
    if not files:
        raise UsageError(f"no videos found in {' '.join(args.inputs)}")
    empty = [p for p, is_empty in items if is_empty]
    rec = load(checkpoint=args.checkpoint, clip=args.clip, labels=args.labels, prompts=args.prompts,
               classifier=args.classifier, frames=args.frames, device=args.device, precision=args.precision or "auto",
               runtime=args.runtime)
    failed, used = 0, set()

    def fail(video: str, error: str) -> None:
        nonlocal failed
        failed += 1
        if args.json:
            print(json.dumps({"video": video, "error": error}), flush=True)
        else:
            print(f"{video}\n   error: {error}", flush=True)

    for folder in empty:  # a folder given on purpose that holds no video is an input that failed
        fail(folder, "a folder without video files")
    for path in files:
        try:
            r = rec.timeline(path, window=args.window, stride=args.stride, topk=args.topk,
                             min_score=args.min_score, smooth=args.smooth, batch_size=args.batch_size,
                             progress=not args.quiet and sys.stderr.isatty())
            if args.plot:
                plot_timeline(r, _out_name(args.plot, path, ".timeline.png", used))
            if args.annotate:
                annotate_video(r, path, _out_name(args.annotate, path, ".annotated.mp4", used))
        except UsageError:
            raise
        except Text4VisError as exc:
            fail(path, first_line(exc))
            continue
        except Exception as exc:  # a decoder or encoder crash on one file must not stop the others
            fail(path, f"{path}: {type(exc).__name__}: {first_line(exc)}")
            continue
        if "error" in r:  # the stream broke off part-way: the windows before the break are shown
            failed += 1
        if args.json:
            print(json.dumps(r), flush=True)
        else:
            _print_table(r, args.window, args.stride)
            if "error" in r:
                print(f"   error: {r['error']}", flush=True)
    if failed:
        print(f"text4vis: {failed} of {len(files) + len(empty)} inputs failed", file=sys.stderr)
    return 1 if failed else 0


def register(sub) -> None:
    p = sub.add_parser("timeline", help="what happens when in untrimmed videos: scored windows and segments",
                       description="Score time windows of videos of any length and merge them into labelled "
                                   "segments, in one decoding pass per video (memory bounded by the window).",
                       epilog=EXAMPLES_TIMELINE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="video files and/or folders (searched recursively)")
    add_model_args(p)
    p.add_argument("--runtime", choices=RUNTIMES, default="torch",
                   help="onnx: run the video model on ONNX Runtime's CPU provider from the checkpoint's model.onnx "
                        "(onnx-int8: its int8 model.int8.onnx, from `export --quantize int8`) "
                        "(`text4vis export`); windows and scores as with torch (default torch)")
    p.add_argument("--window", type=float, default=4.0, help="window length in seconds (default 4)")
    p.add_argument("--stride", type=float, default=2.0, help="seconds between window starts (default 2)")
    p.add_argument("--topk", type=int, default=5, help="classes kept per window in --json (default 5)")
    p.add_argument("--min-score", type=float, default=0.0,
                   help="windows whose smoothed top-1 score is under this are gaps, 0..1 (default 0: no gaps)")
    p.add_argument("--smooth", type=int, default=1,
                   help="average each window's scores with this many windows on each side (default 1; 0: none)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (default 8)")
    p.add_argument("--json", action="store_true", help="JSON Lines: one object per input, in input order")
    p.add_argument("--plot", metavar="DIR", help="write DIR/<video>.timeline.png: class scores over time and segments")
    p.add_argument("--annotate", metavar="OUT_DIR",
                   help="write OUT_DIR/<video>.annotated.mp4 (H.264, no audio) with the current label on every frame")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_timeline)
