"""`text4vis serve`: the HTTP service and its web page (library: the serve/ package)."""
from __future__ import annotations

import argparse

from ..errors import UsageError, check_numbers
from ..onnx_runtime import RUNTIMES
from .common import add_model_args

EXAMPLES_SERVE = """examples:
  text4vis serve --clip ViT-B/16 --labels k400                      # http://127.0.0.1:8000/
  text4vis serve --checkpoint runs/x/best.safetensors --port 9000 --max-batch 16
  text4vis serve --clip ViT-B/16 --api-key-file key.txt --host 0.0.0.0 --max-upload-mb 50

  curl -F video=@clip.mp4 -F topk=3 http://127.0.0.1:8000/v1/predict
  curl -F video=@clip.mp4 -F $'labels=cooking\\ndancing' http://127.0.0.1:8000/v1/predict

  text4vis serve --index my-index --labels k400                      # adds /v1/search
  curl 'http://127.0.0.1:8000/v1/search?q=someone+juggling&k=5'

  text4vis serve --clip ViT-B/16 --watch rtsp://cam1/stream --watch-alert "a person falls down"
  curl -N http://127.0.0.1:8000/v1/streams/1/events                 # live events (Server-Sent Events)
  curl -H 'Content-Type: application/json' -d '{"source": "udp://127.0.0.1:5000"}' \
      http://127.0.0.1:8000/v1/streams                                # watch one more stream

Endpoints: GET / (the page), GET /healthz, GET /v1/labels, POST /v1/predict, POST /v1/timeline,
GET /v1/search?q=&k= and POST /v1/search (with --index), GET/POST /v1/streams, DELETE /v1/streams/ID,
POST /v1/streams/ID/alerts, GET /v1/streams/ID/events (live streams), GET /docs (OpenAPI).
Errors are {"error": "..."}: 400 bad parameters, 401 API key, 408 upload too slow, 413 too large,
422 not a video, 503 busy. A request takes a --max-queue slot only once its upload is complete.
SIGTERM or Ctrl-C: in-flight requests finish, then the server exits and removes its upload folder.
"""


def cmd_serve(args) -> int:
    check_numbers(("--port", args.port, 0, 65535), ("--max-upload-mb", args.max_upload_mb, 0.001),
                  ("--max-batch", args.max_batch, 1), ("--batch-wait-ms", args.batch_wait_ms, 0),
                  ("--max-queue", args.max_queue, 1), ("--decode-workers", args.decode_workers, 1),
                  ("--decode-timeout", args.decode_timeout, 0.1), ("--frames", args.frames, 1),
                  ("--upload-timeout", args.upload_timeout, 0.1), ("--header-timeout", args.header_timeout, 0.1),
                  ("--max-windows", args.max_windows, 1), ("--decode-worker-mb", args.decode_worker_mb, 0),
                  ("--watch-alert-score", args.watch_alert_score, -1.0, 1.0))
    if not (args.watch_window > 0 and args.watch_stride > 0):
        raise UsageError(f"--watch-window and --watch-stride must be positive seconds "
                         f"(got {args.watch_window} and {args.watch_stride})")
    if args.watch:
        from ..watch.runner import check_sources
        try:
            check_sources(args.watch)  # a file that is not there: one line before the model loads
        except UsageError as exc:
            raise UsageError(str(exc).replace("sources=", "--watch ", 1)) from None
    from .. import serve
    serve.require_fastapi()  # before loading a model: a missing extra is one line at once
    key = serve.read_api_key(args.api_key_file) if args.api_key_file else None
    index = None
    if args.index and args.runtime != "torch":
        raise UsageError("--runtime onnx is not for --index: the index's model serves on torch")
    sock = serve.bind(args.host, args.port)  # a port in use is one line now, not after the model has loaded
    from ..serve.decode import start_decoders
    start_decoders()  # the decode workers' imports run while the model loads
    if args.index:
        rec, index = _index_model(args)
    else:
        from ..api import load
        rec = load(checkpoint=args.checkpoint, clip=args.clip, labels=args.labels, prompts=args.prompts,
                   classifier=args.classifier, frames=args.frames, device=args.device,
                   precision=args.precision or "auto", runtime=args.runtime)
    serve.run(rec, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb, max_batch=args.max_batch,
              batch_wait_ms=args.batch_wait_ms, max_queue=args.max_queue, api_key=key,
              decode_workers=args.decode_workers, decode_timeout_s=args.decode_timeout, prompts=args.prompts,
              index=index, sock=sock, upload_timeout_s=args.upload_timeout, header_timeout_s=args.header_timeout,
              max_windows=args.max_windows, decode_worker_mb=args.decode_worker_mb, watch=args.watch or (),
              watch_options={"window": args.watch_window, "stride": args.watch_stride, "alerts": args.watch_alert,
                             "alert_score": args.watch_alert_score})
    return 0


def _index_model(args):
    """With --index the server runs the model that built the index (one model for predict, timeline and
    search); --checkpoint/--clip only say where its files are now. Labels as for predict."""
    from ..classifiers import DEFAULT_PROMPTS, load_classifier
    from ..index import QUERY_LABEL, VideoIndex
    from ..labels import load_labels
    index = VideoIndex.open(args.index, checkpoint=args.checkpoint, clip=args.clip, device=args.device,
                            precision=args.precision or "auto")
    frames = index.info["model"]["frames"]
    if args.frames and args.frames != frames:
        raise UsageError(f"--frames {args.frames}: the index {args.index} was built with {frames} frames per clip")
    rec = index.model
    if args.classifier:
        rec.set_classifier(load_classifier(args.classifier))
    elif args.labels or rec.labels == [QUERY_LABEL]:  # the index loads CLIP models with a one-query classifier
        rec.use_labels(load_labels(args.labels or "k400"), args.prompts or DEFAULT_PROMPTS)
    return rec, index


def register(sub) -> None:
    p = sub.add_parser("serve", help="HTTP service and web page: upload a video, get its top-k labels",
                       description="Serve a model over HTTP (FastAPI + uvicorn) with a web page at /. Concurrent "
                                   "requests are batched into one forward pass; videos decode in worker processes "
                                   "with a time limit; uploads are streamed to a private folder and deleted.",
                       epilog=EXAMPLES_SERVE, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    p.add_argument("--runtime", choices=RUNTIMES, default="torch",
                   help="onnx: the video model runs on ONNX Runtime's CPU provider from the checkpoint's model.onnx "
                        "(onnx-int8: its model.int8.onnx) "
                        "(`text4vis export`; not with --index, whose model runs on torch) (default torch)")
    g = p.add_argument_group("service")
    g.add_argument("--index", metavar="DIR", help="a video index (text4vis index) for /v1/search")
    g.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    g.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    g.add_argument("--max-upload-mb", type=float, default=200, help="largest upload, checked while it streams (default 200)")
    g.add_argument("--max-batch", type=int, default=8, help="most videos per forward pass (default 8)")
    g.add_argument("--batch-wait-ms", type=float, default=10,
                   help="longest wait for more requests to join a batch (default 10)")
    g.add_argument("--max-queue", type=int, default=64,
                   help="requests in flight before new ones get 503 + Retry-After (default 64)")
    g.add_argument("--api-key-file", metavar="FILE",
                   help="require the key on this file's first line for /v1/* (Authorization: Bearer KEY or X-API-Key)")
    g.add_argument("--decode-workers", type=int, default=None,
                   help="decoding processes (default: the CPU count, at most 8)")
    g.add_argument("--decode-timeout", type=float, default=60,
                   help="seconds one video may take to decode before its process is killed (default 60)")
    g.add_argument("--upload-timeout", type=float, default=60,
                   help="seconds an upload may take to arrive; a slower one gets 408 (default 60). A request "
                        "takes a --max-queue slot only once its upload is complete")
    g.add_argument("--header-timeout", type=float, default=10,
                   help="seconds a new connection may take to send its request headers (default 10)")
    g.add_argument("--max-windows", type=int, default=900,
                   help="most timeline windows one request may ask for; 400 past it (default 900)")
    g.add_argument("--decode-worker-mb", type=float, default=1024,
                   help="a decode process above this resident memory after a job is replaced (default 1024; 0: never)")
    w = p.add_argument_group("live streams (text4vis watch in the service)")
    w.add_argument("--watch", action="append", metavar="SOURCE",
                   help="watch this source from the start (repeatable): a URL, a device or a file (played at its "
                        "own pace); clients add network URLs with POST /v1/streams")
    w.add_argument("--watch-window", type=float, default=4.0, help="window length of live streams in seconds (default 4)")
    w.add_argument("--watch-stride", type=float, default=2.0, help="seconds between their window starts (default 2)")
    w.add_argument("--watch-alert", action="append", metavar="SENTENCE",
                   help="alert sentence for the --watch sources (repeatable; the page adds more)")
    w.add_argument("--watch-alert-score", type=float, default=0.25,
                   help="cosine similarity an alert must reach (default 0.25, see README: Live video)")
    p.set_defaults(func=cmd_serve)
