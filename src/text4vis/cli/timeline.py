"""`text4vis timeline`: what happens when in videos of any length (windows, segments, plot, annotated copy)."""
from __future__ import annotations

import argparse
import json
import os
import sys

from ..errors import UsageError
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
--plot/--annotate never replace a file that is not text4vis's own plot or annotated copy (--overwrite does);
a plot or annotated copy that fails is reported after the video's timeline, which is kept.
Exit status: 0 all videos done, 1 some inputs failed (one line each), 2 usage or setup error.
"""


NAME_BYTES = 255 - 24  # a file name's limit, less room for "-N" and atomic_write's temporary suffix


def _out_name(folder: str, video: str, suffix: str, used: set) -> str:
    """FOLDER/<video's name><suffix>, the name cut (at a character) to fit the file system's 255 bytes, and
    numbered when two inputs share a name."""
    stem = os.path.splitext(os.path.basename(os.path.normpath(video)))[0] or "video"
    room = NAME_BYTES - len(suffix.encode())
    if len(stem.encode()) > room:
        stem = stem.encode()[:room].decode(errors="ignore")
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
    if "warning" in r:
        print(f"   warning: {r['warning']}")
    if not r["segments"]:
        print("   no segment scores above --min-score")
    width = max([len(s["label"]) for s in r["segments"]] + [5])
    for s in r["segments"]:
        print(f"  {clock(s['start']):>11} - {clock(s['end']):>11}  {s['label']:<{width}}  {100 * s['score']:6.2f}%")


def _side_outputs(args, files: list[str]) -> dict[str, tuple[str | None, str | None]]:
    """video -> (plot path, annotated copy path), each checked by the output rule before any work."""
    from ..files import check_output
    from ..timeline import check_annotate_path, check_plot_path
    for option, folder in (("plot", args.plot), ("annotate", args.annotate)):
        if folder:
            check_output(folder, option, folder=True)
    used: set = set()
    names = {p: (_out_name(args.plot, p, ".timeline.png", used) if args.plot else None,
                 _out_name(args.annotate, p, ".annotated.mp4", used) if args.annotate else None) for p in files}
    for png, mp4 in names.values():
        if png:
            check_plot_path(png, args.overwrite)
        if mp4:
            check_annotate_path(mp4, args.overwrite)
    for folder in (args.plot, args.annotate):
        if folder:
            os.makedirs(folder, exist_ok=True)
    return names


def cmd_timeline(args) -> int:
    from ..api import load
    from ..errors import Text4VisError, first_line
    from ..timeline import annotate_video, check_timeline_args, plot_timeline, timeline_scores
    from ..video import empty_input_error, list_inputs
    numbers = check_timeline_args(args.window, args.stride, args.frames, args.topk, args.min_score, args.smooth,
                                  args.batch_size)  # the library's checks: the API refuses the same values
    items = list_inputs(args.inputs)  # each folder walked once
    files = [p for p, empty in items if not empty]
    if not files:
        raise UsageError(f"no videos found in {' '.join(args.inputs)}")
    empty = [p for p, is_empty in items if is_empty]
    outputs = _side_outputs(args, files)
    rec = load(checkpoint=args.checkpoint, clip=args.clip, labels=args.labels, prompts=args.prompts,
               classifier=args.classifier, frames=args.frames, device=args.device, precision=args.precision or "auto",
               runtime=args.runtime)
    failed = 0

    def fail(video: str, error: str) -> None:
        nonlocal failed
        failed += 1
        if args.json:
            print(json.dumps({"video": video, "error": error}, allow_nan=False), flush=True)
        else:
            print(f"{video}\n   error: {error}", flush=True)

    def side_failed(error: str) -> None:  # after the record: the timeline is kept, the side output is not
        if args.json:  # stdout keeps one JSON object per input
            print(f"text4vis timeline: error: {error}", file=sys.stderr, flush=True)
        else:
            print(f"   error: {error}", flush=True)

    for folder in empty:  # a folder given on purpose that holds no video is an input that failed
        fail(folder, empty_input_error(folder))
    for path in files:
        try:
            r, scores = timeline_scores(rec, path, numbers["window"], numbers["stride"], None, numbers["topk"],
                                        numbers["min_score"], numbers["smooth"], numbers["batch_size"],
                                        progress=not args.quiet and sys.stderr.isatty())
        except UsageError:
            raise
        except Text4VisError as exc:
            fail(path, first_line(exc))
            continue
        except Exception as exc:  # a decoder crash on one file must not stop the others
            fail(path, f"{path}: {type(exc).__name__}: {first_line(exc)}")
            continue
        if "error" in r:  # the stream broke off part-way: the windows before the break are shown
            failed += 1
        if args.json:
            print(json.dumps(r, allow_nan=False), flush=True)  # standard JSON only (no NaN/Infinity)
        else:
            _print_table(r, args.window, args.stride)
            if "error" in r:
                print(f"   error: {r['error']}", flush=True)
        png, mp4 = outputs[path]
        side_ok = True
        for what, out, write in (("plot", png, lambda o, r=r, scores=scores: plot_timeline(
                                     r, o, scores=scores, labels=rec.labels, overwrite=args.overwrite)),
                                 ("annotated copy", mp4, lambda o, r=r, path=path: annotate_video(
                                     r, path, o, overwrite=args.overwrite))):
            if not out:
                continue
            try:
                write(out)
            except Exception as exc:  # the record is printed already; say which side output is missing
                reason = first_line(exc, with_type=not isinstance(exc, (Text4VisError, OSError)))
                side_failed(f"{out}: {what} not written: {reason}")
                side_ok = False
        failed += int(not side_ok and "error" not in r)  # an input counts once
    if failed:
        total = len(files) + len(empty)
        print(f"text4vis: {failed} of {total} input{'s' if total != 1 else ''} failed", file=sys.stderr)
    return 1 if failed else 0


def register(sub) -> None:
    p = sub.add_parser("timeline", help="what happens when in untrimmed videos: scored windows and segments",
                       description="Score time windows of videos of any length and merge them into labelled "
                                   "segments, in one decoding pass per video (memory bounded by the window).",
                       epilog=EXAMPLES_TIMELINE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="video files, frame folders (images, read at 25 fps) and/or folders "
                                            "(searched recursively)")
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
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing files in --plot/--annotate folders that are not text4vis's own plots or "
                        "annotated copies (without it they are refused before any work)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_timeline)
