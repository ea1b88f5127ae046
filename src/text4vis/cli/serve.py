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

Endpoints: GET / (the page), GET /healthz, GET /v1/labels, POST /v1/predict, POST /v1/timeline,
GET /v1/search?q=&k= and POST /v1/search (with --index), GET /docs (OpenAPI).
Errors are {"error": "..."}: 400 bad parameters, 401 API key, 413 too large, 422 not a video, 503 busy.
SIGTERM or Ctrl-C: in-flight requests finish, then the server exits and removes its upload folder.
"""


def cmd_serve(args) -> int:
    check_numbers(("--port", args.port, 0, 65535), ("--max-upload-mb", args.max_upload_mb, 0.001),
                  ("--max-batch", args.max_batch, 1), ("--batch-wait-ms", args.batch_wait_ms, 0),
                  ("--max-queue", args.max_queue, 1), ("--decode-workers", args.decode_workers, 1),
                  ("--decode-timeout", args.decode_timeout, 0.1), ("--frames", args.frames, 1))
    from .. import serve
    serve.require_fastapi()  # before loading a model: a missing extra is one line at once
    key = serve.read_api_key(args.api_key_file) if args.api_key_file else None
    index = None
    if args.index and args.runtime != "torch":
        raise UsageError("--runtime onnx is not for --index: the index's model serves on torch")
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
              index=index)
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
    p.set_defaults(func=cmd_serve)
