"""The settings of one watch, as one object (the CLI and `Recognizer.watch` fill it in)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UsageError


@dataclass
class WatchOptions:
    window: float = 4.0             # seconds per window (timeline's --window)
    stride: float = 2.0             # seconds between window starts
    frames: int | None = None       # T per window (default: the recognizer's)
    topk: int = 5                   # classes per window line
    min_score: float = 0.0          # segments: smoothed top-1 under this is a gap
    smooth: int = 1                 # segments: windows averaged on each side
    batch_size: int = 8             # windows per forward pass (of all sources together)
    queue: int | None = None        # windows waiting for the model, all sources (default batch_size); beyond: dropped
    realtime: bool = False          # files: play at the frames' own pace (else as fast as possible, as timeline)
    reconnect: bool | None = None   # reopen after a drop/stall/end (None: on for network sources and devices)
    retries: int | None = None      # reconnect attempts in a row before giving up (None: no limit)
    stall_timeout: float = 10.0     # seconds without data before a source counts as stalled (also the open timeout)
    backoff: float = 0.5            # first reconnect wait, doubled each attempt up to backoff_max
    backoff_max: float = 30.0
    alerts: list = field(default_factory=list)   # alerts.Alert (sentences already embedded)
    alert_score: float = 0.25       # cosine similarity an alert must reach
    alert_for: float = 0.0          # seconds it must stay there before the alert fires
    clips: str | None = None        # folder for the MP4 around each alert
    clip_before: float = 5.0        # seconds kept before the alert's window starts
    clip_after: float = 3.0         # seconds after its end
    duration: float | None = None   # stop after this many seconds of wall time (None: until stopped)
    threads: int = 0                # decoder slice threads (0: FFmpeg's choice)

    def check(self) -> None:
        if not (self.window > 0 and self.stride > 0):
            raise UsageError(f"window={self.window}, stride={self.stride}: both must be positive seconds")
        for name, low in (("batch_size", 1), ("topk", 1), ("smooth", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UsageError(f"{name}={value!r}: a whole number, at least {low}")
        if self.queue is not None and self.queue < 1:
            raise UsageError(f"queue={self.queue}: at least 1 window")
        if not 0.0 <= self.min_score <= 1.0:
            raise UsageError(f"min_score={self.min_score}: a probability, between 0 and 1")
        if self.retries is not None and self.retries < 0:
            raise UsageError(f"retries={self.retries}: at least 0")
        for name in ("stall_timeout", "backoff", "backoff_max"):
            if not getattr(self, name) > 0:
                raise UsageError(f"{name}={getattr(self, name)}: positive seconds")
        for name in ("alert_for", "clip_before", "clip_after"):
            if not getattr(self, name) >= 0:
                raise UsageError(f"{name}={getattr(self, name)}: seconds, at least 0")
        if not -1.0 <= self.alert_score <= 1.0:
            raise UsageError(f"alert_score={self.alert_score}: a cosine similarity, between -1 and 1")
        if self.duration is not None and not self.duration > 0:
            raise UsageError(f"duration={self.duration}: positive seconds")
