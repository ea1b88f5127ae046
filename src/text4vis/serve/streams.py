"""Live streams in the service: the app's StreamHub (watch/service.py) on the service's model worker.

A stream's forward passes (and its alert sentences) are jobs of the model worker (batching.py), like an
upload's: the worker serves its jobs round-robin, one unit each (a pass of at most max_batch clips), so an
upload waits for at most one pass of each live stream, never for a stream's backlog; a stream that falls
behind drops windows (watch's rule), it does not queue them. Its windows are decoded by its own reader
thread (FFmpeg through PyAV), not by the upload decode processes.
"""
from __future__ import annotations

import logging

from ..errors import first_line
from .batching import Job

log = logging.getLogger("text4vis.serve")

MODEL_WAIT_S = 300.0   # a stream's model job that has not run after this is an error event of that stream


def stream_hub(recognizer, settings, service, watch_options=None):
    """The app's hub: `service()` returns the running Service (it exists once the lifespan has started)."""
    from ..watch.service import StreamHub

    def run_model(fn):
        return service().model.submit(Job(None, "stream", call=fn)).result(timeout=MODEL_WAIT_S)

    defaults = {"batch_size": settings.max_batch}
    for name in ("window", "stride", "alert_score", "alert_for", "topk", "min_score", "smooth"):
        if (watch_options or {}).get(name) is not None:
            defaults[name] = watch_options[name]
    return StreamHub(recognizer, run_model=run_model, allow_local=False, **defaults)


def start_streams(hub, sources, watch_options=None) -> None:
    """The sources given at start (`serve --watch`): files play at their own pace; a source that cannot
    be opened is one log line, the service starts anyway."""
    from ..watch.sources import parse_source
    alerts = list((watch_options or {}).get("alerts") or ())
    for source in sources or ():
        try:
            realtime = parse_source(source).kind == "file"
            s = hub.add(source, alerts, local=True, realtime=realtime)
            log.info("watching %s as stream %s", source, s.id)
        except Exception as exc:
            log.info("cannot watch %s: %s", source, first_line(exc))
