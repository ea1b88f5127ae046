"""`text4vis serve`: a Recognizer as an HTTP service (FastAPI + uvicorn) with a web page at `/`.

    app = text4vis.serve.create_app(text4vis.load(...), max_batch=8)   # any ASGI server runs it
    text4vis.serve.run(recognizer, host="127.0.0.1", port=8000)          # or uvicorn, with signals handled

How a request flows (the event loop only moves bytes and awaits futures):
  upload   streamed into a private temporary folder (mode 0700), counted against max_upload_mb while it
           arrives; the client's file name is only a label, never a path that is opened
  decode   in a pool of worker processes (DecodePool), each job with a time limit: a worker that hangs
           (a damaged stream can hang FFmpeg) is killed and replaced, a worker that crashes is replaced
  model    one thread (ModelWorker) owns the model; it takes the queued clips of concurrent requests
           together, up to max_batch per forward pass, waiting at most batch_wait_ms for more
  answer   the same record as `text4vis predict --json`; the upload is deleted

Errors are one-line JSON {"error": "..."}: 400 bad parameters, 401 API key, 413 upload too large,
422 not a decodable video, 503 (with Retry-After) when max_queue requests are already in flight.

The package, by role: uploads.py (the multipart upload, form fields, HTTP errors), decode.py (the decode
process pool), batching.py (the model worker and its records), service.py (Service, ServeSettings),
app.py (create_app: routes, error handling, the API key; run), bench.py (bench_serve), web/ (the page).
"""
from __future__ import annotations

from .app import create_app, read_api_key, require_fastapi, run
from .service import ServeSettings

__all__ = ["ServeSettings", "create_app", "read_api_key", "require_fastapi", "run"]
