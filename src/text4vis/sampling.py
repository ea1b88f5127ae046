"""Which frame indices a clip uses: training segments, dense sampling, and test-time views.

All functions take N (the number of frames that decode) and return indices in 0..N-1, following
the original Text4Vis rules exactly.
"""
from __future__ import annotations

import math

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


def is_variable_rate(times, tolerance: float = 0.15) -> bool:
    """Frame times whose intervals differ by more than `tolerance` of the median interval (a phone's
    variable frame rate, a 5 -> 50 fps change); rounding of timestamps (33/34 ms at 29.97 fps) stays under it."""
    steps = np.diff(np.asarray(times, dtype=np.float64))
    if len(steps) < 2:
        return False
    median = float(np.median(steps))
    return median > 0 and float(steps.max() - steps.min()) > tolerance * median


def time_view_indices(times, lo: int, hi: int, start: float, end: float, t: int) -> list[int]:
    """Test time, one clip, spread over a window's TIME rather than its frames (variable frame rate): frame
    i is the one shown at start + i * (end - start) / T (the last frame at or before that time), within
    the window's frames lo..hi-1. On a constant-rate video this is `view_indices(hi - lo, t, 1)`."""
    times = np.asarray(times, dtype=np.float64)
    out = []
    for i in range(t):
        at = start + i * (end - start) / t
        j = int(np.searchsorted(times, at + 1e-9, "right")) - 1
        out.append(min(max(j, lo), hi - 1))
    return out


def dense_view_indices(n: int, t: int, clips: int) -> list[list[int]]:
    """Test time with dense sampling: C clips of every (128 // T)-th frame, starts evenly spread."""
    positions = max(0, n - DENSE_RANGE)
    stride = DENSE_RANGE // t
    step = positions // (clips - 1) if clips > 1 else 0
    return [[int((c * step + i * stride) % n) for i in range(t)] for c in range(clips)]


def _what(option: str, text) -> str:
    return f"{option}{text!r}" if option.endswith("=") else f"{option} {text}"


def parse_views(text: str, option: str = "views=") -> tuple[int, int]:
    """'4x3' -> (4 temporal clips, 3 spatial crops). Spatial crops must be 1 or 3. Messages name `option`."""
    try:
        clips, crops = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"{_what(option, text)}: must look like CxK, e.g. 1x1 or 4x3") from None
    if clips < 1 or crops not in (1, 3):
        raise ValueError(f"{_what(option, text)}: need at least 1 clip and 1 or 3 crops")
    if clips > MAX_CLIPS:  # every view of a video is decoded and held at once
        raise ValueError(f"{_what(option, text)}: at most {MAX_CLIPS} temporal clips per video (the paper's protocol is 4x3)")
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
    it). Raises ValueError for a non-positive or non-finite window or stride (see `check_window_times`
    for the bounds the commands and the API apply before any work).
    """
    if not (window > 0 and stride > 0 and math.isfinite(window) and math.isfinite(stride)):  # also NaN
        raise ValueError(f"window and stride must be positive, finite seconds (got window={window}, stride={stride})")
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


# The bounds of window and stride (seconds), the same for `timeline`, `index build --window` and the API.
MIN_WINDOW_SECONDS = 1e-3          # 1 ms: below any real frame interval (1000 fps)
MAX_WINDOW_SECONDS = 1e6           # about 11.6 days: longer than any video, and exact in float arithmetic
MIN_STRIDE_FRAMES = 0.25           # a stride under a quarter of a video's frame interval only repeats windows


def check_window_times(window, stride) -> tuple[float, float]:
    """(window, stride) as floats, checked before any work: finite numbers of seconds (not bool, not strings)
    between MIN_WINDOW_SECONDS and MAX_WINDOW_SECONDS. UsageError naming `window=` or `stride=` otherwise.
    Per video, `check_stride_for_video` also bounds the stride by the video's frame interval."""
    from .errors import check_float
    return (check_float("window", window, MIN_WINDOW_SECONDS, MAX_WINDOW_SECONDS, unit="seconds"),
            check_float("stride", stride, MIN_WINDOW_SECONDS, MAX_WINDOW_SECONDS, unit="seconds"))


def check_stride_for_video(stride: float, duration: float, num_frames: int, path: str) -> None:
    """UsageError when `stride` is under MIN_STRIDE_FRAMES of the video's mean frame interval
    (duration / frames): such windows would start between the same two frames again and again (a stride
    of 1e-9 s would make billions of windows of the same frames). The number of windows is then at most
    about 4 per frame."""
    from .errors import UsageError
    interval = float(duration) / max(1, int(num_frames))
    if stride < MIN_STRIDE_FRAMES * interval:
        raise UsageError(f"stride={stride:g}: {path} has a frame every {interval:.4g} s, so a stride under "
                         f"{MIN_STRIDE_FRAMES * interval:.4g} s ({MIN_STRIDE_FRAMES:g} of a frame) only repeats "
                         f"windows of the same frames")
