"""`text4vis bench`: speed and memory measurements (model, data loading, timeline, index, serve, ONNX)."""
from __future__ import annotations

import argparse
import json
import os
import sys

RAW = argparse.RawDescriptionHelpFormatter


# ----------------------------------------------------------------------------- bench

def add_bench(sub) -> None:
    p = sub.add_parser("bench", help="measure speed against the reference computation (model or data loading)",
                       formatter_class=RAW,
                       description="Model: videos/s, TFLOP/s, percent of peak, peak memory for text4vis and a faithful "
                                   "re-implementation of the reference's computation, same process, random weights. "
                                   "--data: clips/s per CPU core of the loaders.",
                       epilog="examples:\n"
                              "  text4vis bench --model ViT-B/16 --frames 8 --batch 32 --mode infer --json\n"
                              "  text4vis bench --model ViT-B/32 --mode train --compile\n"
                              "  text4vis bench --data\n"
                              "  text4vis bench --timeline long.mp4 --checkpoint runs/x/best.safetensors\n"
                              "  text4vis bench --index 1000000 --dim 512 --json    # the video index's vector search\n"
                              "  text4vis bench --runtime onnx --model ViT-B/32 --frames 8 --batch 4 --json --quantize int8")
    p.add_argument("--model", default="ViT-B/16",
                   help="ViT-B/32, ViT-B/16, ViT-L/14, ViT-L/14-336px or an open_clip ViT name (ViT towers only)")
    p.add_argument("--frames", type=int, default=8, help="frames per video, 1 to 77 (default 8)")
    p.add_argument("--batch", type=int, default=32, help="videos per batch, at least 1 (default 32)")
    p.add_argument("--mode", choices=["infer", "train"], default="infer")
    p.add_argument("--iters", type=int, default=10, help="timed iterations, at least 1 (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations first, at least 0 (default 3)")
    p.add_argument("--compile", action="store_true", help="torch.compile the text4vis model (falls back to eager)")
    p.add_argument("--device", default="auto")
    p.add_argument("--data", action="store_true", help="benchmark the data loaders instead (per CPU core)")
    p.add_argument("--index", type=int, metavar="N", help="benchmark the video index instead: N synthetic clustered "
                                                          "embeddings (build, search latency, recall@10, peak memory)")
    p.add_argument("--dim", type=int, default=512, help="with --index: embedding width (default 512)")
    p.add_argument("--timeline", metavar="FILE",
                   help="time `text4vis timeline` on FILE (windows of 4 s every 2 s) against one plain PyAV decode "
                        "of it, as a ratio, plus peak RSS; the model comes from --checkpoint/--clip")
    p.add_argument("--checkpoint", help="with --timeline: the model's checkpoint")
    p.add_argument("--clip", help="with --timeline: CLIP towers (a --clip value of predict)")
    p.add_argument("--serve", action="store_true",
                   help="load-test `text4vis serve`: requests/s, p50/p99 latency, errors, RSS, per client count")
    p.add_argument("--serve-args", default="", metavar="ARGS",
                   help='with --serve: the server\'s options, e.g. "--clip ViT-B/16 --labels k400 --max-batch 8"')
    p.add_argument("--clients", default="1,8", help="with --serve: concurrent clients per case (default 1,8)")
    p.add_argument("--seconds", type=float, default=10, help="with --serve: seconds per case (default 10)")
    p.add_argument("--video", help="with --serve: the video to upload (default: a generated 10 s 426x320 clip)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--runtime", choices=["torch", "onnx"], default="torch",
                   help="onnx: PyTorch eager vs ONNX Runtime (CPU provider) on the same weights, inputs and threads")
    p.add_argument("--quantize", choices=["int8"], help="with --runtime onnx: also int8 dynamic quantisation")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    if args.index is not None:  # before importing the model code: the figure is the index's own memory
        from ..index.bench import bench_index
        from ..errors import check_numbers
        check_numbers(("--index", args.index, 1), ("--dim", args.dim, 2))
        result = bench_index(args.index, args.dim)
        print(json.dumps(result, indent=1 if not args.json else None))
        return 0
    from ..devices import pick_device
    from ..bench import bench_data, bench_model, model_config
    from ..errors import UsageError, check_numbers
    check_numbers(("--frames", args.frames, 1), ("--batch", args.batch, 1), ("--iters", args.iters, 1),
                  ("--warmup", args.warmup, 0))
    if args.timeline:
        from ..api import load
        from ..timeline import bench_timeline
        rec = load(checkpoint=args.checkpoint, clip=args.clip, device=args.device)
        result = bench_timeline(rec, args.timeline)
        print(json.dumps(result, indent=1) if args.json else " ".join(f"{k}={v}" for k, v in result.items()))
        return 0
    if args.serve:
        result = _bench_serve(args)
        unit = "requests_per_s"
    elif args.data:
        result = bench_data(frames=args.frames, iters=args.iters)
        unit = "clips_per_s_per_core"
    elif args.runtime == "onnx":  # deploy.bench_onnx: the CPU runtime against PyTorch eager
        from ..deploy import bench_onnx
        try:
            cfg = model_config(args.model)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        result = bench_onnx(args.model, args.frames, args.batch, iters=args.iters, warmup=args.warmup,
                            quantize=args.quantize, cfg=cfg)
        unit = "videos_per_s"
    else:
        try:
            cfg = model_config(args.model)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        result = bench_model(args.model, args.frames, args.batch, args.mode, pick_device(args.device),
                             iters=args.iters, warmup=args.warmup, compile_model=args.compile, cfg=cfg)
        unit = "videos_per_s"
    for warning in result.get("warnings", []):  # too few iterations: said on stderr, whatever the format
        print(f"text4vis bench: warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(" ".join(f"{k}={v}" for k, v in result.items() if k not in ("cases", "warnings", "not_measured")))
    for case, r in result["cases"].items():
        extra = "".join(f"  {k}={v:.3g}" if isinstance(v, float) else f"  {k}={v}" for k, v in r.items() if k != unit)
        print(f"  {case:<24} {r[unit]:10.2f} {unit}{extra}")
    for field, why in result.get("not_measured", {}).items():
        print(f"  {field}: n/a ({why})")
    return 0


def _bench_serve(args) -> dict:
    import shlex
    import tempfile

    from ..bench import make_test_clip
    from ..serve.bench import bench_serve
    from ..errors import UsageError, check_numbers
    try:
        clients = sorted({int(c) for c in args.clients.split(",")})
    except ValueError:
        raise UsageError(f"--clients must be numbers separated by commas, e.g. 1,8 (got {args.clients!r})") from None
    check_numbers(("--clients", min(clients), 1), ("--seconds", args.seconds, 0.1))
    if args.video and not os.path.isfile(args.video):
        raise UsageError(f"--video {args.video}: no such file")
    with tempfile.TemporaryDirectory(prefix="text4vis-bench-") as tmp:
        video = args.video or make_test_clip(tmp, seconds=4.0)["video"]
        return bench_serve(shlex.split(args.serve_args), video, clients, args.seconds)


def register(sub) -> None:
    add_bench(sub)
