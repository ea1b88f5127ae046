"""Which frame indices a clip uses: training segments, dense sampling, and test-time views.

All functions take N (the number of frames that decode) and return indices in 0..N-1, following
the original Text4Vis rules exactly.
"""
from __future__ import annotations

import numpy as np

DENSE_RANGE = 128  # dense sampling spans 128 frames: every (128 // T)-th frame


def segment_indices(n: int, t: int, rng: np.random.Generator) -> list[int]:
    """Training: T segments of equal length, one random frame in each (TSN "random shift").

    With N <= T the clip holds every frame once plus random repeats, in temporal order.
    """
    if n <= t:
        extra = rng.integers(0, n, size=t - n)
        return sorted(list(range(n)) + extra.tolist())
    ticks = [i * n // t for i in range(t + 1)]
    return [int(ticks[i] + rng.integers(0, ticks[i + 1] - ticks[i])) for i in range(t)]


def uniform_indices(n: int, t: int) -> list[int]:
    """Validation without random shift: frame int(tick * i) of tick = N / T."""
    tick = n / float(t)
    return [int(tick * i) % n for i in range(t)]


def dense_indices(n: int, t: int, rng: np.random.Generator) -> list[int]:
    """Training, dense: every (128 // T)-th frame from a random start (wrapping around short videos)."""
    positions = max(1, 1 + n - DENSE_RANGE)
    stride = DENSE_RANGE // t
    start = 0 if positions == 1 else int(rng.integers(0, positions - 1))
    return [int((start + i * stride) % n) for i in range(t)]


def view_indices(n: int, t: int, clips: int) -> list[list[int]]:
    """Test time, C temporal clips: tick = N / T, clip starts linspace(0, tick - 1, C) (as ints),
    frame i of clip s = int(s + tick * i) % N."""
    tick = n / float(t)
    starts = np.linspace(0, tick - 1, num=clips).astype(int)
    return [[int(s + tick * i) % n for i in range(t)] for s in starts.tolist()]


def dense_view_indices(n: int, t: int, clips: int) -> list[list[int]]:
    """Test time with dense sampling: C clips of every (128 // T)-th frame, starts evenly spread."""
    positions = max(0, n - DENSE_RANGE)
    stride = DENSE_RANGE // t
    step = positions // (clips - 1) if clips > 1 else 0
    return [[int((c * step + i * stride) % n) for i in range(t)] for c in range(clips)]


def parse_views(text: str) -> tuple[int, int]:
    """'4x3' -> (4 temporal clips, 3 spatial crops). Spatial crops must be 1 or 3."""
    try:
        clips, crops = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--views must look like CxK, e.g. 1x1 or 4x3 (got {text!r})") from None
    if clips < 1 or crops not in (1, 3):
        raise ValueError(f"--views {text}: need at least 1 clip and 1 or 3 crops")
    if clips > MAX_CLIPS:  # every view of a video is decoded and held at once
        raise ValueError(f"--views {text}: at most {MAX_CLIPS} temporal clips per video (the paper's protocol is 4x3)")
    return clips, crops


MAX_CLIPS = 64


# ----------------------------------------------------------------------------- untrimmed videos: windows

def window_spans(duration: float, window: float, stride: float) -> list[tuple[float, float]]:
    """The time windows (start, end) in seconds that `timeline` and `index build --window` score.

    Windows start at 0, stride, 2*stride, ... and last `window` seconds. The first window that reaches
    the video's end is the last one, cut to end there (so with stride <= window the last window ends
    at the video's end); a video shorter than one window is one window [0, duration]. With
    stride > window the video has gaps by design: the last window is the last one starting before
    the end. Times are compared to the microsecond (a window ending within 1 us of the end reaches
    it). Raises ValueError for a non-positive window or stride.
    """
    if not (window > 0 and stride > 0):  # also NaN
        raise ValueError(f"window and stride must be positive seconds (got window={window}, stride={stride})")
    duration = max(0.0, float(duration))
    spans = []
    k = 0
    while True:
        start = k * stride
        if k > 0 and start >= duration - 1e-6:
            break
        end = min(start + window, duration)
        if end >= duration - 1e-6:
            end = duration
        spans.append((float(round(start, 6)), float(round(end, 6))))
        if end >= duration:
            break
        k += 1
    return spans
