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


def create_app(recognizer, settings: ServeSettings | None = None, *, index=None, watch=(), watch_options=None,
               **options):
    """The FastAPI app serving `recognizer` (and `index`, a VideoIndex, for /v1/search). The options are
    ServeSettings' fields, given as one `settings` or as keywords (max_upload_mb=, max_batch=, ...). Its
    worker processes and threads start with the app's lifespan (startup) and stop at its shutdown, which
    removes the private upload folder. Live streams (/v1/streams, watch/service.py): `watch` lists sources
    watched from the start (files and devices allowed there; clients may add network URLs only), with
    `watch_options` (window=, stride=, alerts=, alert_score=, ...)."""
    require_fastapi()
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    settings = dataclasses.replace(settings, **options) if settings is not None else ServeSettings(**options)
    settings.check()

    from .streams import start_streams, stream_hub
    hub = stream_hub(recognizer, settings, lambda: app.state.service, watch_options)

    @asynccontextmanager
    async def lifespan(app):
        service = await asyncio.to_thread(Service, recognizer, settings)
        app.state.service = service
        log.info("ready: %s, %d labels, upload folder %s", recognizer.source, len(recognizer.labels), service.folder)
        try:
            await asyncio.to_thread(start_streams, hub, watch, watch_options)
            yield
        finally:
            await asyncio.to_thread(hub.close)  # the streams first: they use the model worker
            await asyncio.to_thread(service.close)
            log.info("stopped: upload folder removed")

    app = FastAPI(title="text4vis", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Video recognition with CLIP towers and a frozen text classifier. "
                              "Errors are {\"error\": \"...\"} with status 400, 401, 408, 413, 422 or 503.")

    app.state.settings = settings
    _add_error_handling(app, settings.api_key)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(os.path.join(_web_dir(), "index.html"))

    app.mount("/static", StaticFiles(directory=_web_dir()), name="static")
    _add_docs(app)

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
                "decoders_replaced": service.pool.replaced, "decoders_recycled": service.pool.recycled,
                "uploading": service.uploading, "model_jobs": len(service.model.active),
                "clips_pending": service.model.pending_clips(), "clients_gone": service.gone,
                "upload_timeout_s": settings.upload_timeout_s, "max_windows": settings.max_windows,
                "streams": len(hub.streams), "version": _version()}

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

    from ..watch.service import router
    app.include_router(router(hub))  # /v1/streams: behind the API key like every /v1 route
    app.state.streams = hub
    return app


def _swagger_ui_dir() -> str | None:
    """Swagger UI's files as the swagger-ui-py package ships them (its static/ folder), found without
    importing that package; None when it is not installed."""
    import importlib.util
    spec = importlib.util.find_spec("swagger_ui")
    for root in (spec.submodule_search_locations or []) if spec else []:
        static = os.path.join(root, "static")
        if os.path.isfile(os.path.join(static, "swagger-ui-bundle.js")):
            return static
    return None


def _add_docs(app) -> None:
    """/docs: Swagger UI served by this server from the swagger-ui-py package (so it works offline), or a
    page pointing at /openapi.json when that package is missing."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles
    assets = _swagger_ui_dir()
    if assets:
        app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        if not assets:
            return HTMLResponse('<p>The API description is <a href="openapi.json">openapi.json</a> '
                                "(pip install swagger-ui-py for Swagger UI here).</p>")
        return get_swagger_ui_html(openapi_url="openapi.json", title="text4vis API",
                                   swagger_js_url="docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="docs-assets/swagger-ui.css",
                                   swagger_favicon_url="docs-assets/favicon-32x32.png")


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
            response = error(401, "missing or wrong API key: type the server's key in the API key field "
                                  "(clients: send it as 'Authorization: Bearer KEY' or 'X-API-Key: KEY')",
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


def bind(host: str, port: int):
    """The listening socket, bound before anything slow happens: UsageError in one line when the address
    is in use or cannot be bound (port 0 picks a free port: sock.getsockname()[1])."""
    import socket
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = "is already in use (another server?)" if exc.errno == 98 else f"cannot be bound ({exc.strerror})"
        raise UsageError(f"port={port}: {host}:{port} {why}; choose another port") from None
    sock.set_inheritable(True)
    return sock


def _header_timeout_protocol(seconds: float):
    """uvicorn's h11 protocol with a time limit on a new connection's request headers: a client that
    trickles its headers is disconnected (it never reaches the app, so it holds no queue slot)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            self._headers_timer = self.loop.call_later(seconds, self._headers_late)

        def _headers_late(self):
            if self.cycle is None and not self.transport.is_closing():
                log.info("connection from %s closed: no request headers within %g s", self.client and self.client[0],
                         seconds)
                self.transport.close()

        def handle_events(self):
            super().handle_events()
            if self.cycle is not None:
                self._headers_timer.cancel()

        def connection_lost(self, exc):
            self._headers_timer.cancel()
            super().connection_lost(exc)

    return Protocol


def run(recognizer, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info", sock=None, **options) -> None:
    """Serve until SIGTERM/SIGINT: uvicorn stops accepting, in-flight requests finish, then the
    lifespan shutdown stops the workers and removes the upload folder. `sock`: a socket from bind()
    (the command binds it before loading the model); without it, host:port are bound here."""
    require_fastapi()
    import uvicorn
    if not logging.getLogger().handlers and not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s text4vis %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    sock = sock or bind(host, port)
    app = create_app(recognizer, **options)
    header_s = app.state.settings.header_timeout_s
    config = uvicorn.Config(app, host=host, port=sock.getsockname()[1], log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=None, http=_header_timeout_protocol(header_s))
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again for the handler that
    # was there before: a no-op one, so a requested stop ends the process normally (exit status 0).
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):  # open event streams (/v1/streams/ID/events) end, or the
            app.state.streams.closing.set()  # graceful shutdown would wait for them forever
            super().handle_exit(sig, frame)

    shown = f"[{host}]" if ":" in host else host
    log.info("listening on http://%s:%d/ (the page; API at /v1, docs at /docs)", shown, sock.getsockname()[1])
    Server(config).run(sockets=[sock])
