"""`text4vis serve`: a Recognizer as an HTTP service (FastAPI + uvicorn) with a web page at `/`.

    app = text4vis.serve.create_app(text4vis.load(...), max_batch=8)   # any ASGI server runs it
    text4vis.serve.run(recognizer, host="127.0.0.1", port=8000)          # or uvicorn, with signals handled

How a request flows (the event loop only moves bytes and awaits futures):
  upload   streamed into a private temporary folder (mode 0700), counted against max_upload_mb while it
           arrives, within upload_timeout_s (408); the client's file name is only a label, never a path
           that is opened; only a complete upload takes one of the max_queue slots
  decode   in a pool of worker processes (DecodePool), each job with a time limit: a worker that hangs
           (a damaged stream can hang FFmpeg) is killed and replaced, a worker that crashes is replaced
  model    one thread (ModelWorker) owns the model; it serves the requests round-robin in small units
           (forward passes of up to max_batch clips taken from the requests in turn, chunks of a new label
           set's classifier), waiting at most batch_wait_ms for more clips
  gone     a client that closes its connection stops its work (decode process replaced, clips dropped): 499
  answer   the same record as `text4vis predict --json`; the upload is deleted

Errors are one-line JSON {"error": "..."}: 400 bad parameters, 401 API key, 408 upload too slow, 413 upload
too large, 422 not a decodable video, 503 (with Retry-After) when max_queue requests are already in flight.

The package, by role: uploads.py (the multipart upload, form fields, HTTP errors), decode.py (the decode
process pool), batching.py (the model worker and its records), service.py (Service, ServeSettings),
app.py (create_app: routes, error handling, the API key; run), bench.py (bench_serve), web/ (the page).
"""
from __future__ import annotations

from .app import bind, create_app, read_api_key, require_fastapi, run
from .decode import start_decoders
from .service import ServeSettings

__all__ = ["ServeSettings", "bind", "create_app", "read_api_key", "require_fastapi", "run", "start_decoders"]
