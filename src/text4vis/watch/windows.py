"""Online windows: `timeline`'s windows and sampling, computed as the frames arrive.

A window [start, end) of `timeline` (`sampling.window_spans`, `timeline.plan_windows`) holds the frames
whose time t satisfies start - 1e-9 <= t < end - 1e-9; T of them are taken with the test-time rule
(`sampling.view_indices` over its N frames); a window holding no frame takes the frame shown at its
start; the last window (the first that reaches the end) ends at the end of the stream and takes every
frame up to it. Online, window k is complete as soon as a frame with t >= end - 1e-9 arrives; when the
stream ends (or restarts) the remaining windows are cut exactly as `timeline` cuts them for a file of
that duration (the last frame's time plus the median frame step, as `video.probe`). So the windows of a
live stream are those of `timeline` on a recording of the same frames.

The ring keeps only the frames the unfinished windows can still take (the frames from the next window's
start on, plus the one shown at that start); each frame is kept as the decoder gave it (YUV) and is
converted and cropped at most once, when the first window that samples it completes.
"""
from __future__ import annotations

import bisect
from collections import Counter, deque
from dataclasses import dataclass

import numpy as np
import torch

from .. import sampling, transforms, video

EPS = 1e-9  # timeline.plan_windows' tolerance on frame times
VARIABLE_TOLERANCE = 0.15  # sampling.is_variable_rate's default (where it exists)


@dataclass
class Frame:
    t: float              # seconds since the first frame of this epoch
    frame: object         # the decoder's frame (PyAV VideoFrame) or an RGB array, until it is cropped
    arrival: float        # wall-clock time.time() the frame came out of the decoder
    crop: torch.Tensor | None = None


@dataclass
class Window:
    k: int                # index of the window in its epoch
    start: float          # seconds since the first frame of the epoch (as timeline reports them)
    end: float
    clip: torch.Tensor    # uint8 [T, 3, S, S]
    arrival: float        # wall time the frame that completed the window arrived (or the epoch ended)
    frames: int           # frames the window held (N)


def full_span(k: int, window: float, stride: float) -> tuple[float, float]:
    """Window k of `sampling.window_spans` when the stream goes on past its end."""
    start = k * stride
    return float(round(start, 6)), float(round(start + window, 6))


class Windower:
    """Feed frames in presentation order with `add(t, frame, arrival)`; get back the windows that
    completed. `finish()` at the end of the stream returns the remaining windows."""

    def __init__(self, window: float, stride: float, num_frames: int, input_size: int):
        if not (window > 0 and stride > 0):
            raise ValueError(f"window and stride must be positive seconds (got window={window}, stride={stride})")
        self.window, self.stride, self.t, self.size = float(window), float(stride), int(num_frames), int(input_size)
        self.k = 0                          # next window to complete
        self.ring: deque[Frame] = deque()
        self.count = 0                      # frames seen
        self.last_t: float | None = None
        self.steps: Counter = Counter()     # frame steps (rounded to 1 ns) -> count: the median step, in O(1) memory
        self.peak = 0                       # most frames held at once

    # -- frames in ---------------------------------------------------------------------------------
    def add(self, t: float, frame, arrival: float) -> list[Window]:
        done = []
        while True:
            start, end = full_span(self.k, self.window, self.stride)
            if t < end - EPS or not self.ring:
                break
            done.append(self._complete(start, end, last=False, arrival=arrival))
            self.k += 1
            self._trim()
        if self.last_t is not None:
            self.steps[round(t - self.last_t, 9)] += 1
        self.ring.append(Frame(t, frame, arrival))
        self.count += 1
        self.last_t = t
        self.peak = max(self.peak, len(self.ring))
        return done

    def duration(self) -> float:
        """`video.probe`'s duration of the frames so far: the last frame's time plus the median step."""
        if self.last_t is None:
            return 0.0
        return round(float(self.last_t + (self.median_step() or 0.04)), 6)

    def median_step(self) -> float:
        n = sum(self.steps.values())
        if n == 0:
            return 0.0
        values, seen, lo = sorted(self.steps.items()), 0, None
        for value, c in values:  # np.median: the middle value, or the mean of the two middle ones
            if lo is None and seen + c > (n - 1) // 2:
                lo = value
            if seen + c > n // 2:
                return float((lo + value) / 2)
            seen += c
        return float(values[-1][0])

    def _variable_rate(self) -> bool:
        """`sampling.is_variable_rate` over the frame steps seen so far (where the sampling module has that
        rule: timeline samples the windows of a variable-frame-rate video over time). Online only the past
        is known, so on a file whose frame rate becomes irregular later the windows before that point are
        sampled by frame count here, over time by timeline."""
        if not hasattr(sampling, "is_variable_rate") or sum(self.steps.values()) < 2:
            return False
        median = self.median_step()
        return median > 0 and max(self.steps) - min(self.steps) > VARIABLE_TOLERANCE * median

    def finish(self, arrival: float) -> list[Window]:
        """The windows left when the stream ends, cut as `timeline` cuts a file of this duration."""
        if not self.ring:
            return []
        total = self.duration()
        spans = sampling.window_spans(total, self.window, self.stride)
        done = []
        for k in range(self.k, len(spans)):
            start, end = spans[k]
            done.append(self._complete(start, end, last=end >= total - EPS, arrival=arrival))
            self.k = k + 1
            self._trim()
        self.ring.clear()
        return done

    # -- windows out --------------------------------------------------------------------------------
    def _complete(self, start: float, end: float, last: bool, arrival: float) -> Window:
        times = [f.t for f in self.ring]
        lo = bisect.bisect_left(times, start - EPS)
        hi = len(times) if last else bisect.bisect_left(times, end - EPS)
        if hi <= lo:  # no frame in the window: the one shown at its start
            lo = max(0, min(len(times) - 1, bisect.bisect_right(times, start + EPS) - 1))
            hi = lo + 1
        if hi - lo > 1 and self._variable_rate():  # sampled over the window's time, as timeline does then
            picks = sampling.time_view_indices(times, lo, hi, start, end, self.t)
        else:
            picks = [lo + i for i in sampling.view_indices(hi - lo, self.t, 1)[0]]
        clip = torch.stack([self._crop(self.ring[i]) for i in picks])
        return Window(self.k, start, end, clip, arrival, hi - lo)

    def _crop(self, f: Frame) -> torch.Tensor:
        if f.crop is None:  # timeline.window_clips' crop of a frame
            rgb = f.frame if isinstance(f.frame, np.ndarray) else video._to_rgb(f.frame)
            f.crop = transforms.test_views(transforms.to_tensor(rgb[None]), self.size, 1)[0][0].clone()
            f.frame = None
        return f.crop

    def _trim(self) -> None:
        """Drop the frames no unfinished window can take: keep those from the next window's start on,
        and the last one shown at or before it."""
        start = full_span(self.k, self.window, self.stride)[0]
        while len(self.ring) > 1 and self.ring[1].t <= start + EPS and self.ring[0].t < start - EPS:
            self.ring.popleft()
