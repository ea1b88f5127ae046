"""Live video: `text4vis watch` recognises what happens on streams, cameras and files as it happens.

    sources.py   opening URLs / devices / stdin / files, a reader thread per source, reconnects with backoff
    windows.py   timeline's windows and sampling, online (a ring of the frames the current windows need)
    runner.py    one model for all sources: bounded inbox (live windows dropped when the model falls behind),
                 batching, window lines, segment and alert events
    segments.py  timeline's segment rule, online
    alerts.py    alerts from sentences (text tower), with hysteresis
    sinks.py     JSON lines, a terminal view, a webhook, MP4 clips around alerts
    bench.py     `text4vis bench --watch`: latency, drops, CPU and memory on local UDP streams

    from text4vis.watch import watch
    for event in watch(rec, "udp://127.0.0.1:5000", window=2, stride=1, alerts=["a person falls down"]):
        ...
"""
from __future__ import annotations

from .options import WatchOptions
from .runner import Watch

__all__ = ["Watch", "WatchOptions", "watch"]


def watch(recognizer, sources, alerts=(), alert_classifier=None, prompts=None, **options) -> Watch:
    """A `Watch` over `sources` (one or a list: URLs, devices, '-' for stdin, files). `alerts`: sentences
    (embedded by the text tower as `index search` embeds a query); `alert_classifier`: a Classifier (or
    file) whose rows are alerts too. Other keywords are `WatchOptions` fields."""
    from . import alerts as A
    from .. import classifiers
    found = A.from_sentences(recognizer, list(alerts), tuple(prompts) if prompts else A.DEFAULT_PROMPTS)
    if alert_classifier is not None:
        cls = alert_classifier if isinstance(alert_classifier, classifiers.Classifier) else \
            classifiers.load_classifier(str(alert_classifier))
        found += A.from_classifier(cls)
    return Watch(recognizer, sources, WatchOptions(alerts=found, **options))
