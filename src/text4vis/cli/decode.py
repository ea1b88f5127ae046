"""The decoding options shared by commands: `bench --decode` (the readers side by side), `--decoder`
and `--decode-device` (which reader a command decodes with). Not a command of its own: `bench`,
`predict` and `eval` add these options with one call each."""
from __future__ import annotations

import json
import os
import sys


def add_bench_decode_args(p) -> None:
    g = p.add_argument_group("--decode: the video readers side by side")
    g.add_argument("--decode", action="store_true",
                   help="benchmark the video readers (text4vis's PyAV reader, PyAV decoding every frame, "
                        "torchcodec, decord, OpenCV; those not installed are skipped) on the predict, training "
                        "and timeline access patterns: clips/s per core, frames decoded, whether frames agree")
    g.add_argument("--decode-videos", metavar="DIR",
                   help="with --decode: real clips to read (default: the repository's tests/data/videos)")
    g.add_argument("--decode-seconds", type=float, metavar="S",
                   help="with --decode: length of the generated 720p/1080p H.264 videos (default 60; 0: none)")
    g.add_argument("--decode-rounds", type=int, metavar="N", help="with --decode: interleaved rounds (default 3)")
    g.add_argument("--decode-sets", metavar="SET,...",
                   help="with --decode: only these video sets: real, 720p_gop25, 720p_gop250, 1080p_gop25, "
                        "1080p_gop250 (quick: 240p_gop25, 240p_gop250); default all")
    g.add_argument("--decode-e2e", action="store_true",
                   help="does decoding keep the model fed: videos/s of the model alone, of decode + model with "
                        "CPU decoding (a worker per core) and with NVDEC (--decode-videos clips, --model, --frames, "
                        "--batch, --iters batches, --device)")
    g.add_argument("--decode-quick", action="store_true",
                   help="with --decode: 3 s 240p generated videos, one round (a first look; tests)")
    p.set_defaults(param_flags={"only": "--decode-sets", "videos_dir": "--decode-videos"})


def add_decoder_args(p, device: bool = True) -> None:
    """`--decoder` (and `--decode-device`) for a command that reads videos."""
    from ..decoders.choose import CHOICES
    p.add_argument("--decoder", choices=CHOICES, default="auto",
                   help="video reader: auto = the fastest installed reader that gives text4vis's frames for this "
                        "access pattern (README, Decoding), pyav = text4vis's own PyAV reader (default: auto)")
    if device:
        p.add_argument("--decode-device", choices=["cpu", "cuda"], default="cpu",
                       help="cuda: decode on the GPU (NVDEC through torchcodec) and hand frames to the model "
                            "without a host copy; without a GPU or NVDEC one line says so and the CPU decodes "
                            "(default: cpu)")


def run_bench_e2e(args) -> int:
    from ..bench.model import model_config
    from ..decoders.e2e import bench_end_to_end
    from ..errors import UsageError, check_numbers
    check_numbers(("--frames", args.frames, 1, 77), ("--batch", args.batch, 1), ("--iters", args.iters, 1))
    try:
        model_config(args.model)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    result = bench_end_to_end(args.model, args.frames, args.batch, args.device, args.decode_videos,
                              videos=args.batch * args.iters)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(" ".join(f"{k}={v}" for k, v in result.items() if k not in ("cases", "not_measured", "clips")))
    for case, r in result["cases"].items():
        print(f"  {case:<12} {r['videos_per_s']:10.2f} videos_per_s" + (f"  fed={r['fed']}" if "fed" in r else ""))
    for case, why in result["not_measured"].items():
        print(f"  {case}: n/a ({why})")
    return 0


def run_bench_decode(args) -> int:
    from ..decoders.bench import bench_decode, default_videos_dir, format_table
    from ..errors import UsageError, check_numbers
    from .common import show_progress
    if args.decode_seconds is not None:
        check_numbers(("--decode-seconds", args.decode_seconds, 0))
    if args.decode_rounds is not None:
        check_numbers(("--decode-rounds", args.decode_rounds, 1))
    if args.decode_videos and not os.path.isdir(args.decode_videos):
        raise UsageError(f"--decode-videos {args.decode_videos}: no such folder")
    progress = show_progress(args)

    def log(line: str) -> None:  # skipped readers always (one line each); progress on a terminal
        if line.startswith("skipping") or progress:
            print(f"text4vis bench: {line}", file=sys.stderr, flush=True)

    result = bench_decode(args.decode_videos or default_videos_dir(), quick=args.decode_quick,
                          seconds=args.decode_seconds, rounds=args.decode_rounds,
                          only=args.decode_sets.split(",") if args.decode_sets else None, log=log)
    print(json.dumps(result, indent=1) if args.json else "\n".join(format_table(result)))
    return 0
