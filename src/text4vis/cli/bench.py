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
                              "  text4vis bench --startup --json    # fresh processes: import, model load, first result\n"
                              "  text4vis bench --decode --json    # the video readers side by side\n"
                              "  text4vis bench --timeline long.mp4 --checkpoint runs/x/best.safetensors\n"
                              "  text4vis bench --index 1000000 --dim 512 --json    # the video index's vector search\n"
                              "  text4vis bench --index-build --engine ray --videos 16   # index build's engines\n"
                              "  text4vis bench --runtime onnx --model ViT-B/32 --frames 8 --batch 4 --json --quantize int8")
    p.add_argument("--model", default="ViT-B/16",
                   help="ViT-B/32, ViT-B/16, ViT-L/14, ViT-L/14-336px or an open_clip ViT name (ViT towers only)")
    p.add_argument("--frames", type=int, default=8, help="frames per video, 1 to 77 (default 8)")
    p.add_argument("--batch", type=int, default=32, help="videos per batch, at least 1 (default 32)")
    p.add_argument("--mode", choices=["infer", "train"], default="infer")
    p.add_argument("--iters", type=int, help="timed iterations, at least 1 (default 10; with --startup: "
                                             "processes per model, default 3)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations first, at least 0 (default 3)")
    p.add_argument("--compile", action="store_true", help="torch.compile the text4vis model (falls back to eager)")
    p.add_argument("--device", default="auto")
    p.add_argument("--data", action="store_true", help="benchmark the data loaders instead (per CPU core)")
    p.add_argument("--index", type=int, metavar="N", help="benchmark the video index instead: N synthetic clustered "
                                                          "embeddings (build, search latency, recall@10, peak memory)")
    p.add_argument("--dim", type=int, default=512, help="with --index: embedding width (default 512)")
    p.add_argument("--index-build", action="store_true",
                   help="time `index build` over 8 and --videos copies of a generated 4 s clip with 1 and 2 decode "
                        "workers (a tiny random CLIP unless --clip names one): start-up and time per video")
    p.add_argument("--engine", choices=["local", "ray"], default="local", help="with --index-build (default local)")
    p.add_argument("--videos", type=int, default=32,
                   help="with --index-build: videos of the large build (the small one has 8) (default 32)")
    p.add_argument("--timeline", metavar="FILE",
                   help="time `text4vis timeline` on FILE (windows of 4 s every 2 s) against one plain PyAV decode "
                        "of it, as a ratio, plus peak RSS; the model comes from --checkpoint/--clip")
    p.add_argument("--checkpoint", help="with --timeline: the model's checkpoint")
    p.add_argument("--clip", help="with --timeline or --index-build: CLIP towers (a --clip value of predict)")
    p.add_argument("--serve", action="store_true",
                   help="load-test `text4vis serve`: requests/s, p50/p99 latency, errors, RSS, per client count")
    p.add_argument("--serve-args", default="", metavar="ARGS",
                   help='with --serve: the server\'s options, e.g. "--clip ViT-B/16 --labels k400 --max-batch 8"')
    p.add_argument("--clients", default="1,8", help="with --serve: concurrent clients per case (default 1,8)")
    p.add_argument("--seconds", type=float, default=10,
                   help="with --serve: seconds per case; with --watch: seconds of stream (default 10)")
    p.add_argument("--video", help="with --serve: the video to upload (default: a generated 10 s 426x320 clip); "
                                   "with --startup: the clip to predict (default: a generated 0.2 s 320x240 clip)")
    p.add_argument("--startup", nargs="?", const="tiny,ViT-B/16", metavar="MODELS",
                   help="start-up of `predict` in fresh processes: interpreter, import, model load, first result, "
                        "wall and CPU seconds, for random-weight models: tiny and/or ViT-B/16 (default both)")
    p.add_argument("--towers", metavar="ARCH",
                   help="throughput of one backbone's image and text towers: an open_clip architecture (random "
                        "weights: ViT-B-16, ViT-B-16-SigLIP, EVA02-B-16 ...) or a --clip value (bench/towers.py)")
    p.add_argument("--watch", action="store_true",
                   help="benchmark `text4vis watch`: --sources MPEG-TS streams over UDP on 127.0.0.1 at real pace for "
                        "--seconds (made from --video); latency p50/p95/max, dropped windows, CPU share, RSS")
    p.add_argument("--sources", type=int, default=1, help="with --watch: streams watched at once (default 1)")
    p.add_argument("--watch-args", default="", metavar="ARGS",
                   help='with --watch: more watch options, e.g. "--labels k400 --window 2 --stride 1"')
    p.add_argument("--flood", metavar="LONG_VIDEO",
                   help="with --serve: 1-clip predicts on an idle server, then while 4 slow uploads and 2 timelines "
                        "of LONG_VIDEO (windows of 2 s every 1 s) are in flight: seconds per predict")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--runtime", choices=["torch", "onnx"], default="torch",
                   help="onnx: PyTorch eager vs ONNX Runtime (CPU provider) on the same weights, inputs and threads")
    p.add_argument("--quantize", choices=["int8"], help="with --runtime onnx: also int8 dynamic quantisation")
    from .decode import add_bench_decode_args
    add_bench_decode_args(p)
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    if args.decode or args.decode_e2e:  # the video readers side by side; decode + model (decoders/)
        from .decode import run_bench_decode, run_bench_e2e
        return run_bench_e2e(args) if args.decode_e2e else run_bench_decode(args)
    if args.startup:  # fresh processes measure themselves; this one imports no model code first
        return _bench_startup(args)
    args.iters = 10 if args.iters is None else args.iters
    if args.index is not None:  # before importing the model code: the figure is the index's own memory
        from ..index.bench import bench_index
        from ..errors import check_numbers
        check_numbers(("--index", args.index, 1), ("--dim", args.dim, 2))
        result = bench_index(args.index, args.dim)
        print(json.dumps(result, indent=1 if not args.json else None))
        return 0
    if args.index_build:
        from ..index.bench_build import bench_index_build
        result = bench_index_build(args.engine, args.videos, clip=args.clip, frames=args.frames)
        print(json.dumps(result, indent=1 if not args.json else None))
        return 0
    from ..devices import pick_device
    from ..bench.model import bench_data, bench_model, model_config
    from ..errors import UsageError, check_numbers
    check_numbers(("--frames", args.frames, 1), ("--batch", args.batch, 1), ("--iters", args.iters, 1),
                  ("--warmup", args.warmup, 0))
    if args.towers:
        from ..bench.towers import bench_towers
        result = bench_towers(args.towers, batch=args.batch, iters=args.iters,
                              device="cpu" if args.device == "auto" else args.device)
        print(json.dumps(result, indent=1) if args.json else " ".join(f"{k}={v}" for k, v in result.items()))
        return 0
    if args.timeline:
        from ..api import load
        from ..timeline import bench_timeline
        rec = load(checkpoint=args.checkpoint, clip=args.clip, device=args.device)
        result = bench_timeline(rec, args.timeline)
        print(json.dumps(result, indent=1) if args.json else " ".join(f"{k}={v}" for k, v in result.items()))
        return 0
    if args.serve and args.flood:
        import shlex

        from ..serve.bench import bench_flood
        if not os.path.isfile(args.flood):
            raise UsageError(f"--flood {args.flood}: no such file")
        if not args.video:
            raise UsageError("--flood needs --video (the 1-clip video to predict)")
        result = bench_flood(shlex.split(args.serve_args), args.video, args.flood)
        print(json.dumps(result, indent=1) if args.json else "\n".join(f"{k}={v}" for k, v in result.items()))
        return 0
    if args.watch:  # text4vis.watch.bench: the live path, end to end
        import shlex
        from ..watch.bench import bench_watch
        check_numbers(("--sources", args.sources, 1), ("--seconds", args.seconds, 5))
        model = [*(["--checkpoint", args.checkpoint] if args.checkpoint else []),
                 *(["--clip", args.clip] if args.clip else []), "--device", args.device]
        extra = shlex.split(args.watch_args)
        result = bench_watch(model, args.sources, args.seconds, args.video, watch_args=extra)
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


def _bench_startup(args) -> int:
    from ..bench.startup import MODELS, bench_startup, format_table
    from ..errors import UsageError, check_numbers
    models = [m.strip() for m in args.startup.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if not models or unknown:
        raise UsageError(f"--startup {args.startup}: choose from {', '.join(MODELS)} (comma-separated)")
    runs = 3 if args.iters is None else args.iters
    check_numbers(("--iters", runs, 1))
    if args.video and not os.path.isfile(args.video):
        raise UsageError(f"--video {args.video}: no such file")
    result = bench_startup(args.video, models, runs)
    print(json.dumps(result, indent=1) if args.json else format_table(result))
    return 0


def _bench_serve(args) -> dict:
    import shlex
    import tempfile

    from ..bench.model import make_test_clip
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
