"""The FastAPI app (`create_app`: routes, error handling, the API key, the page in web/) and `run`.

No `from __future__ import annotations` here: FastAPI reads the routes' annotations (`request: Request`,
imported inside create_app) as objects."""

import asyncio
import dataclasses
import importlib
import logging
import os
import secrets
import signal
import threading
import time

from ..errors import Text4VisError, UsageError, first_line
from .service import ServeSettings, Service
from .uploads import PARAMETERS, SEARCH_PARAMETERS, TIMELINE_PARAMETERS, HTTPError, status_of

log = logging.getLogger("text4vis.serve")


def require_fastapi():
    try:
        for name in ("fastapi", "python_multipart", "uvicorn"):
            importlib.import_module(name)
    except ImportError as exc:
        raise UsageError(f"serving needs FastAPI, uvicorn and python-multipart ({exc.name} is missing): "
                         f"pip install 'text4vis[serve]'") from None


def _web_dir() -> str:
    from importlib import resources
    return str(resources.files("text4vis.serve").joinpath("web"))


def create_app(recognizer, settings: ServeSettings | None = None, *, index=None, **options):
    """The FastAPI app serving `recognizer` (and `index`, a VideoIndex, for /v1/search). The options are
    ServeSettings' fields, given as one `settings` or as keywords (max_upload_mb=, max_batch=, ...). Its
    worker processes and threads start with the app's lifespan (startup) and stop at its shutdown, which
    removes the private upload folder."""
    require_fastapi()
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    settings = dataclasses.replace(settings, **options) if settings is not None else ServeSettings(**options)
    settings.check()

    @asynccontextmanager
    async def lifespan(app):
        service = await asyncio.to_thread(Service, recognizer, settings)
        app.state.service = service
        log.info("ready: %s, %d labels, upload folder %s", recognizer.source, len(recognizer.labels), service.folder)
        try:
            yield
        finally:
            await asyncio.to_thread(service.close)
            log.info("stopped: upload folder removed")

    app = FastAPI(title="text4vis", version=_version(), lifespan=lifespan,
                  description="Video recognition with CLIP towers and a frozen text classifier. "
                              "Errors are {\"error\": \"...\"} with status 400, 401, 413, 422 or 503.")

    _add_error_handling(app, settings.api_key)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(os.path.join(_web_dir(), "index.html"))

    app.mount("/static", StaticFiles(directory=_web_dir()), name="static")

    @app.get("/healthz", summary="liveness and the loaded model")
    async def healthz(request: Request):
        service: Service = request.app.state.service
        rec = recognizer
        return {"status": "ok", "model": rec.source, "labels": len(rec.labels), "frames": rec.num_frames,
                "input_size": rec.input_size, "device": str(rec.device), "custom_labels": rec.towers is not None,
                "index": index is not None, "index_entries": len(index) if index is not None else 0,
                "timeline": True, "in_flight": service.in_flight, "max_queue": service.max_queue,
                "max_batch": service.model.max_batch, "max_upload_mb": settings.max_upload_mb,
                "forward_passes": service.model.passes,
                "mean_batch": round(service.model.jobs / service.model.passes, 2) if service.model.passes else 0,
                "decoders_replaced": service.pool.replaced, "version": _version()}

    @app.get("/v1/labels", summary="the model's own label set")
    async def labels():
        return {"labels": list(recognizer.labels), "count": len(recognizer.labels),
                "classifier": recognizer.classifier_meta.get("type", "")}

    @app.post("/v1/predict", summary="top-k labels of an uploaded video (the `predict --json` record)",
              openapi_extra=_multipart_schema(PARAMETERS))
    async def predict(request: Request):
        return await request.app.state.service.predict(request)

    @app.post("/v1/timeline", summary="what happens when: scored time windows and labelled segments "
                                      "(the `timeline --json` record)",
              openapi_extra=_multipart_schema(TIMELINE_PARAMETERS))
    async def timeline(request: Request):
        return await request.app.state.service.timeline(request)

    def need_index():
        if index is None:
            raise HTTPError(404, "no video index is loaded on this server (it was started without one)")
        return index

    @app.get("/v1/search", summary="index entries closest to a sentence (the `index search` record)")
    async def search(request: Request, q: str = "", k: int = 10):
        idx = need_index()
        if not q.strip():
            raise HTTPError(400, "q: give a sentence to search for, e.g. /v1/search?q=someone+juggling")
        if not 1 <= k <= 1000:
            raise HTTPError(400, f"k must be between 1 and 1000 (got {k})")
        return await request.app.state.service.search_text(q.strip()[:1000], k, idx)

    @app.post("/v1/search", summary="index entries closest to an uploaded video (the `index search --like` record)",
              openapi_extra=_multipart_schema(SEARCH_PARAMETERS))
    async def search_video(request: Request):
        return await request.app.state.service.search_video(request, need_index())

    return app


def _add_error_handling(app, api_key: str | None) -> None:
    """One log line per request, the API key on /v1/*, and every failure as one-line JSON {"error"}."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    def error(status: int, message: str, headers=None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.middleware("http")
    async def log_and_guard(request: Request, call_next):
        start = time.perf_counter()
        request.state.error = None
        if api_key and request.url.path.startswith("/v1/") and not _key_ok(request, api_key):
            request.state.error = "missing or wrong API key"
            response = error(401, "missing or wrong API key: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                             {"WWW-Authenticate": "Bearer"})
        else:
            try:
                response = await call_next(request)
            except Exception as exc:  # never a stack trace to the client
                request.state.error = f"{type(exc).__name__}: {first_line(exc)}"
                response = error(500, "internal server error")
        ms = 1000 * (time.perf_counter() - start)
        why = f"  {request.state.error}" if request.state.error else ""
        log.info("%s %s %d %.0f ms%s", request.method, request.url.path, response.status_code, ms, why)
        return response

    @app.exception_handler(HTTPError)
    async def on_http_error(request: Request, exc: HTTPError):
        request.state.error = exc.message
        return error(exc.status, exc.message, exc.headers)

    @app.exception_handler(Text4VisError)
    async def on_library_error(request: Request, exc: Text4VisError):
        request.state.error = first_line(exc)
        return error(status_of(exc), first_line(exc))

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg')}" for e in exc.errors())
        request.state.error = problems
        return error(400, problems or "bad request")

    @app.exception_handler(StarletteHTTPException)
    async def on_starlette(request: Request, exc: StarletteHTTPException):
        request.state.error = str(exc.detail)
        return error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))


def _multipart_schema(names: set[str]) -> dict:
    props = {"video": {"type": "string", "format": "binary", "description": "the video file"},
             "labels": {"type": "string", "description": "optional custom labels, one per line (zero-shot)"},
             "topk": {"type": "integer", "default": 5, "minimum": 1, "maximum": 1000},
             "views": {"type": "string", "default": "1x1", "description": "CxK: C clips x K crops (1 or 3)"},
             "window": {"type": "number", "default": 4, "description": "window length in seconds"},
             "stride": {"type": "number", "default": 2, "description": "seconds between window starts"},
             "min_score": {"type": "number", "default": 0, "description": "smoothed score under which a window is a gap"},
             "smooth": {"type": "integer", "default": 1, "description": "windows averaged on each side"},
             "k": {"type": "integer", "default": 10, "description": "results"}}
    schema = {"type": "object", "required": ["video"], "properties": {k: v for k, v in props.items() if k in names}}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def _key_ok(request, key: str) -> bool:
    sent = request.headers.get("x-api-key")
    auth = request.headers.get("authorization", "")
    if sent is None and auth.lower().startswith("bearer "):
        sent = auth[7:].strip()
    return sent is not None and secrets.compare_digest(sent.encode(), key.encode())


def _version() -> str:
    from .. import __version__
    return __version__


def read_api_key(path: str) -> str:
    """The API key from a file: its first line, stripped (UsageError if unreadable or empty)."""
    try:
        with open(path, encoding="utf-8") as f:
            key = f.readline().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"api_key_file={path}: cannot read it ({first_line(exc)})") from None
    if len(key) < 8:
        raise UsageError(f"api_key_file={path}: the key on its first line must have at least 8 characters")
    return key


def run(recognizer, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info", **options) -> None:
    """Serve until SIGTERM/SIGINT: uvicorn stops accepting, in-flight requests finish, then the
    lifespan shutdown stops the workers and removes the upload folder."""
    require_fastapi()
    import uvicorn
    if not logging.getLogger().handlers and not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s text4vis %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    app = create_app(recognizer, **options)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=None)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again for the handler that
    # was there before: a no-op one, so a requested stop ends the process normally (exit status 0).
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
    uvicorn.Server(config).run()
