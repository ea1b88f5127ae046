"""Issue 23, timeline items: no silent overwrite, side outputs that fail keep the timeline, segments that
tile for every stride/window ratio, finite bounded numbers, VFR timestamps kept, plots of the model's
scores, one check for the API and the CLI, frame folders, truncated files, singulars.

The property test is pure Python (no model); the rest uses the tiny random-weight CLIP of conftest on
short generated clips.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

import text4vis
from text4vis import checks, cli, sampling, timeline as tl, video
from text4vis.errors import UsageError
from conftest import index_frames, write_video


@pytest.fixture(scope="module")
def clip(tiny_dir):
    return str(tiny_dir / "openai_sd.pt")


@pytest.fixture(scope="module")
def rec(clip):
    return text4vis.load(clip=clip, labels=["red", "green", "blue"], device="cpu")


@pytest.fixture(scope="module")
def short(tmp_path_factory):
    """3 s at 10 fps."""
    path = str(tmp_path_factory.mktemp("r2") / "short.mp4")
    write_video(path, index_frames(30), fps=10)
    return path


# ----------------------------------------------------------------------------- item 4: segments tile

def test_short_last_window_does_not_split_a_label():
    """7.2 s, window 4, stride 3: the issue's case gave `A 0.0-5.8` and `A 6.0-7.2`."""
    spans = sampling.window_spans(7.2, 4.0, 3.0)
    assert spans == [(0.0, 4.0), (3.0, 7.0), (6.0, 7.2)]
    segs = tl.segments(spans, np.array([[0.9, 0.1]] * 3), ["A", "B"], smooth=0)
    assert [(s["label"], s["start"], s["end"]) for s in segs] == [("A", 0.0, 7.2)]
    parts = tl.window_parts(spans)
    assert parts[0][0] == 0.0 and parts[-1][1] == 7.2
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))  # no gap between the parts
    assert all(s <= left < right <= e for (s, e), (left, right) in zip(spans, parts))  # inside each window


def _check_property(duration, window, stride, labels_per_window, min_score, smooth, scores):
    spans = sampling.window_spans(duration, window, stride)
    names = ["A", "B", "C"]
    segs = tl.segments(spans, scores, names, min_score=min_score, smooth=smooth)
    prev_end = 0.0
    for s in segs:  # ordered, not overlapping, inside [0, duration], finite
        assert math.isfinite(s["start"]) and math.isfinite(s["end"]) and math.isfinite(s["score"])
        assert prev_end - 1e-9 <= s["start"] < s["end"] <= round(duration, 6) + 1e-9
        prev_end = s["end"]
    for a, b in zip(segs, segs[1:]):  # equal labels that touch are one segment
        assert not (a["label"] == b["label"] and abs(a["end"] - b["start"]) < 1e-6), (duration, window, stride, segs)
    covered = [(s, e) for s, e in spans]
    for s in segs:  # every segment lies inside the windows (gaps between windows stay gaps)
        assert any(ws - 1e-6 <= s["start"] and s["end"] <= we + 1e-6 for ws, we in covered) or stride <= window
    if min_score == 0.0 and stride <= window:  # overlapping windows, no gaps asked: they tile [0, duration]
        assert segs[0]["start"] == 0.0 and segs[-1]["end"] == pytest.approx(duration, abs=2e-6)
        assert all(a["end"] == b["start"] for a, b in zip(segs, segs[1:])), (duration, window, stride, segs)
    if stride > window and min_score == 0.0:  # the union of segments is the union of windows
        total = sum(s["end"] - s["start"] for s in segs)
        assert total == pytest.approx(sum(e - s for s, e in spans), abs=1e-5)


def test_segments_property_20000_cases_every_stride_window_ratio():
    rng = np.random.default_rng(23)
    ratios = np.concatenate([rng.uniform(0.05, 0.5, 5000), rng.uniform(0.5, 1.0, 7000),
                             np.ones(1000), rng.uniform(1.0, 3.0, 7000)])  # stride / window
    rng.shuffle(ratios)
    for case, ratio in enumerate(ratios):
        window = float(rng.choice([0.5, 1.0, 2.0, 4.0, 4.0, 8.0]) * rng.uniform(0.5, 1.5))
        stride = float(window * ratio)
        duration = float(rng.uniform(0.05, 25 * window))
        n = len(sampling.window_spans(duration, window, stride))
        kind = case % 4
        if kind == 0:  # one label everywhere: one segment per run of touching windows
            scores = np.tile([0.8, 0.15, 0.05], (n, 1))
        elif kind == 1:  # few, long runs
            scores = np.eye(3)[np.repeat(rng.integers(0, 3, 4), -(-n // 4))[:n]] * 0.7 + 0.1
        else:
            scores = rng.dirichlet(np.ones(3), size=n)
        min_score = 0.0 if case % 3 else float(rng.uniform(0.3, 0.7))
        _check_property(duration, window, stride, None, min_score, int(case % 3), scores)


def test_old_and_new_rule_agree_when_the_last_window_is_whole():
    """Where the old rule was right (every window whole), the parts are the same: halfway between centres."""
    spans = sampling.window_spans(10.0, 4.0, 2.0)
    assert tl.window_parts(spans) == [(0.0, 3.0), (3.0, 5.0), (5.0, 7.0), (7.0, 10.0)]
    assert tl.window_parts(sampling.window_spans(10.0, 2.0, 3.0)) == [(0, 2), (3, 5), (6, 8), (9, 10)]


# ----------------------------------------------------------------------------- items 5 and 8: numbers

BAD_API = [
    ("topk", 0, "topk=0: must be at least 1"), ("topk", -3, "topk=-3: must be at least 1"),
    ("topk", 2.7, "topk=2.7: must be a whole number"), ("topk", "3", "topk='3': must be a whole number"),
    ("topk", True, "topk=True: must be a whole number"), ("frames", 0, "frames=0: must be at least 1"),
    ("batch_size", 0, "batch_size=0: must be at least 1"), ("batch_size", -1, "batch_size=-1: must be at least 1"),
    ("window", "4", "window='4': must be a number of seconds"), ("window", None, "window=None: must be a number"),
    ("window", float("inf"), "window=inf: must be a finite number"), ("stride", float("nan"), "stride=nan: must be"),
    ("window", 1e-300, "window=1e-300: must be at least 0.001 seconds"),
    ("stride", 1e300, "stride=1e+300: must be at most 1e+06 seconds"),
    ("smooth", "1", "smooth='1': must be a whole number"), ("smooth", 1.5, "smooth=1.5: must be a whole number"),
    ("smooth", 10 ** 20, "smooth=100000000000000000000: must be at most 10000"),
    ("min_score", None, "min_score=None: must be a number"), ("min_score", 1.5, "min_score=1.5: must be at most 1"),
    ("min_score", float("nan"), "min_score=nan: must be a finite number"),
]


@pytest.mark.parametrize("name,value,message", BAD_API)
def test_api_refuses_what_the_cli_refuses(rec, short, name, value, message):
    with pytest.raises(UsageError) as exc:
        rec.timeline(short, **{name: value})
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)
    if name in ("window", "stride", "frames", "batch_size"):
        with pytest.raises(UsageError, match=message.split(":")[0].replace("+", r"\+").replace("(", r"\(")):
            rec.embed_windows(short, **{name: value})


def test_numpy_numbers_are_numbers(rec, short):
    r = rec.timeline(short, window=np.float32(2.0), stride=np.int64(1), topk=np.int64(2), smooth=np.int32(0),
                     min_score=np.float64(0.0), batch_size=np.int16(4))
    assert [(w["start"], w["end"]) for w in r["windows"]] == [(0.0, 2.0), (1.0, 3.0)]
    assert len(r["windows"][0]["top"]) == 2
    json.dumps(r, allow_nan=False)


def test_check_functions():
    assert checks.check_int("k", np.int64(3), 1) == 3 and type(checks.check_int("k", np.int64(3))) is int
    assert checks.check_int("k", None, optional=True) is None
    assert checks.check_float("x", 1, 0.0) == 1.0 and type(checks.check_float("x", np.float32(0.5))) is float
    for bad in (True, "3", 2.5, None, float("nan")):
        with pytest.raises(UsageError, match=r"^k="):
            checks.check_int("k", bad)
    for bad in (False, "0.5", None, float("inf"), -float("inf"), float("nan"), [1.0]):
        with pytest.raises(UsageError, match=r"^x="):
            checks.check_float("x", bad)
    with pytest.raises(UsageError, match=r"x=0.0: must be more than 0"):
        checks.check_float("x", 0.0, above=0)
    assert checks.check_bool("b", False) is False
    with pytest.raises(UsageError):
        checks.check_bool("b", 1)


def test_stride_far_below_the_frame_interval_is_refused(rec, short):
    # 10 fps: frames every 0.1 s; a stride of 0.01 s is a tenth of a frame
    with pytest.raises(UsageError, match=r"^stride=0.01: .*short.mp4 has a frame every 0.1 s"):
        rec.timeline(short, window=1, stride=0.01)
    r = rec.timeline(short, window=1, stride=0.05)  # half a frame is allowed (windows every half frame)
    assert len(r["windows"]) == 41
    sampling.check_stride_for_video(0.025, 3.0, 30, "v.mp4")  # exactly a quarter: allowed
    with pytest.raises(UsageError):
        sampling.check_stride_for_video(0.0249, 3.0, 30, "v.mp4")


@pytest.mark.parametrize("flags,message", [
    (["--stride", "inf"], "--stride inf: must be a finite number of seconds"),
    (["--window", "nan"], "--window nan: must be a finite number of seconds"),
    (["--window", "1e-300", "--stride", "1e-300"], "--window 1e-300: must be at least 0.001 seconds"),
    (["--smooth", "100000000000000000000"], "--smooth 100000000000000000000: must be at most 10000"),
    (["--min-score", "nan"], "--min-score nan: must be a finite number"),
    (["--topk", "0"], "--topk 0: must be at least 1"),
    (["--batch-size", "-1"], "--batch-size -1: must be at least 1"),
])
def test_cli_numbers_one_line_before_loading(short, flags, message, capsys, monkeypatch):
    import text4vis.api
    monkeypatch.setattr(text4vis.api, "load", lambda **kw: pytest.fail("loaded a model for bad options"))
    assert cli.main(["timeline", short, "--clip", "x.pt", *flags]) == 2
    out, err = capsys.readouterr()
    assert err.strip() == f"text4vis timeline: error: {message}" and out == ""


def test_stride_under_the_frame_interval_through_the_cli(clip, short, capsys):
    assert cli.main(["timeline", short, "--clip", clip, "--labels", "ucf101", "--stride", "0.001"]) == 2
    err = capsys.readouterr().err
    assert "--stride 0.001: " in err and "only repeats windows" in err and len(err.strip().splitlines()) == 1


def test_window_spans_refuses_non_finite():
    for window, stride in ((float("inf"), 2.0), (4.0, float("inf")), (float("nan"), 1.0)):
        with pytest.raises(ValueError):
            sampling.window_spans(10.0, window, stride)


def test_huge_smooth_is_the_whole_video():
    spans = sampling.window_spans(10.0, 2.0, 2.0)
    scores = np.array([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8], [0.9, 0.1], [0.9, 0.1]])
    assert tl.segments(spans, scores, ["A", "B"], smooth=10_000) == tl.segments(spans, scores, ["A", "B"], smooth=5)
