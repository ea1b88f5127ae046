"""`text4vis watch`: what happens on live streams, cameras and files, as it happens (windows, segments, alerts)."""
from __future__ import annotations

import argparse
import json
import signal
import sys

from ..errors import check_numbers
from .common import add_model_args

EXAMPLES = """examples:
  text4vis watch rtsp://camera.local/stream --checkpoint best.safetensors --window 2 --stride 1
  text4vis watch udp://127.0.0.1:5000 --clip ViT-B/16 --labels k400 --json
  text4vis watch cam1.m3u8 webcam:0 --alert "a person falls down" --alert-score 0.28 --alert-for 2 \\
      --webhook http://127.0.0.1:8080/hook --clips alerts/
  ffmpeg -i rtsp://... -c copy -f mpegts - | text4vis watch - --json
  text4vis watch recording.mp4 --realtime        # a file at its own pace (without --realtime: as fast as possible)

SOURCE: a URL FFmpeg reads (rtsp://, rtmp://, http(s):// incl. HLS .m3u8, udp://, srt:// ...), a capture
device (/dev/video0, webcam:0), '-' for an MPEG-TS or Matroska byte stream on stdin, or a file.
Windows, sampling and scores are timeline's; --json prints one line per scored window
{"source", "start", "end", "time", "top", "latency", "dropped"} and one per event ("segment", "alert",
"opened", "stall", "error", "ended", "reconnected", "restarted", "clip", "summary").
Network sources and devices are reopened with exponential backoff after they end, stall or fail.
Ctrl-C / SIGTERM stop cleanly (segments closed, exit 0). Exit status: 0 done, 1 a source failed for good,
2 usage or setup error.
"""


def cmd_watch(args) -> int:
    from ..api import load
    from ..errors import UsageError
    from ..files import check_output
    from ..watch import watch
    from ..watch.sinks import TerminalView, Webhook
    check_numbers(("--topk", args.topk, 1), ("--frames", args.frames, 1), ("--min-score", args.min_score, 0.0, 1.0),
                  ("--smooth", args.smooth, 0), ("--batch-size", args.batch_size, 1),
                  ("--alert-score", args.alert_score, -1.0, 1.0), ("--alert-for", args.alert_for, 0.0))
    if not (args.window > 0 and args.stride > 0):
        raise UsageError(f"--window and --stride must be positive seconds (got {args.window} and {args.stride})")
    if args.clips:
        check_output(args.clips, "--clips", folder=True)
    if args.webhook and not args.webhook.startswith(("http://", "https://")):
        raise UsageError(f"--webhook {args.webhook}: an http:// or https:// URL")
    from ..watch.runner import check_sources
    check_sources(args.sources)  # before the model loads
    rec = load(checkpoint=args.checkpoint, clip=args.clip, labels=args.labels, prompts=args.prompts,
               classifier=args.classifier, frames=args.frames, device=args.device, precision=args.precision or "auto",
               runtime=args.runtime)
    w = watch(rec, args.sources, alerts=args.alert or (), alert_classifier=args.alert_classifier,
              window=args.window, stride=args.stride, frames=args.frames, topk=args.topk, min_score=args.min_score,
              smooth=args.smooth, batch_size=args.batch_size, queue=args.queue, realtime=args.realtime,
              reconnect=args.reconnect, retries=args.retries, stall_timeout=args.stall_timeout,
              alert_score=args.alert_score, alert_for=args.alert_for, clips=args.clips, duration=args.duration)
    sinks = []
    view = None
    if args.json:
        def emit(ev):
            sys.stdout.write(json.dumps(ev) + "\n")
            sys.stdout.flush()
        sinks.append(emit)
    else:
        view = TerminalView(quiet=args.quiet)
        sinks.append(view)
    hook = Webhook(args.webhook) if args.webhook else None
    if hook:
        sinks.append(hook)

    def stop(signum, frame):  # a flag, never an exception: no line is cut in half
        w.stop()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for ev in w:
            for sink in sinks:
                sink(ev)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if view:
            view.close()
        if hook:
            hook.close()
            if hook.failed or hook.dropped:
                print(f"text4vis watch: webhook: {hook.failed} events not delivered, {hook.dropped} dropped"
                      + (f" ({hook.last_error})" if hook.last_error else ""), file=sys.stderr)
    return 1 if w.failed else 0


def register(sub) -> None:
    p = sub.add_parser("watch", help="live video: windows, segments and alerts on streams, cameras and files",
                       description="Recognise what happens on live sources as it happens: timeline's windows "
                                   "and segments online, alerts defined by sentences, bounded latency.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="URL, device, '-' (stdin) or file; several at once")
    add_model_args(p)
    p.add_argument("--runtime", choices=["torch", "onnx"], default="torch",
                   help="onnx: run the video model on ONNX Runtime's CPU provider from the checkpoint's model.onnx")
    p.add_argument("--window", type=float, default=4.0, help="window length in seconds (default 4)")
    p.add_argument("--stride", type=float, default=2.0, help="seconds between window starts (default 2)")
    p.add_argument("--topk", type=int, default=5, help="classes per window line (default 5)")
    p.add_argument("--min-score", type=float, default=0.0, help="segments: smoothed top-1 under this is a gap")
    p.add_argument("--smooth", type=int, default=1, help="segments: windows averaged on each side (default 1)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass, all sources (default 8)")
    p.add_argument("--queue", type=int, help="windows that may wait for the model (default: --batch-size); "
                                            "beyond that the oldest live window is dropped")
    p.add_argument("--realtime", action="store_true", help="play files at their own pace (default: as fast as possible)")
    p.add_argument("--reconnect", action=argparse.BooleanOptionalAction, default=None,
                   help="reopen a source that ends, stalls or fails (default: on for network URLs and devices)")
    p.add_argument("--retries", type=int, help="reconnect attempts in a row before giving up (default: no limit)")
    p.add_argument("--stall-timeout", type=float, default=10.0,
                   help="seconds without data (or without a frame) before a source counts as stalled (default 10)")
    p.add_argument("--alert", action="append", metavar="SENTENCE",
                   help="alert when windows match this sentence (text tower; repeatable)")
    p.add_argument("--alert-classifier", metavar="FILE",
                   help="a stored classifier whose rows are alerts too (named by their labels)")
    p.add_argument("--alert-score", type=float, default=0.25,
                   help="cosine similarity a window must reach for an alert (default 0.25; calibrate, see README)")
    p.add_argument("--alert-for", type=float, default=0.0,
                   help="seconds the score must stay there before the alert fires (default 0)")
    p.add_argument("--webhook", metavar="URL", help="POST each segment and alert event as JSON (retries with backoff)")
    p.add_argument("--clips", metavar="DIR", help="save the seconds around each alert as an MP4 (packets remuxed)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--json", action="store_true", help="JSON Lines: one per window and one per event")
    p.add_argument("--quiet", action="store_true", help="no status line (and no segment lines) in the human view")
    p.set_defaults(func=cmd_watch)
