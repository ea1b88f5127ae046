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
from text4vis import cli, errors, sampling, timeline as tl, video
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


def _check_property(spans, duration, window, stride, min_score, smooth, scores):
    names = ["A", "B", "C"]
    segs = tl.segments(spans, scores, names, min_score=min_score, smooth=smooth)
    prev_end = 0.0
    for s in segs:  # ordered, not overlapping, inside [0, duration], finite
        assert math.isfinite(s["start"]) and math.isfinite(s["end"]) and math.isfinite(s["score"])
        assert prev_end - 1e-9 <= s["start"] < s["end"] <= round(duration, 6) + 1e-9
        prev_end = s["end"]
    for a, b in zip(segs, segs[1:]):  # equal labels that touch are one segment
        assert not (a["label"] == b["label"] and abs(a["end"] - b["start"]) < 1e-6), (duration, window, stride, segs)
    if stride > window:  # windows apart: every segment lies inside one window (the time between is a gap)
        starts = [ws for ws, _ in spans]
        for s in segs:
            ws, we = spans[max(0, int(np.searchsorted(starts, s["start"] + 1e-6)) - 1)]
            assert ws - 1e-6 <= s["start"] and s["end"] <= we + 1e-6, (duration, window, stride, segs)
        if min_score == 0.0:  # and together they are the windows
            total = sum(s["end"] - s["start"] for s in segs)
            assert abs(total - sum(e - s for s, e in spans)) < 1e-5
    elif min_score == 0.0:  # overlapping windows, no gaps asked: they tile [0, duration]
        assert segs[0]["start"] == 0.0 and abs(segs[-1]["end"] - duration) < 2e-6, (duration, window, stride, segs)
        assert all(a["end"] == b["start"] for a, b in zip(segs, segs[1:])), (duration, window, stride, segs)


def test_segments_property_20000_cases_every_stride_window_ratio():
    rng = np.random.default_rng(23)
    ratios = np.concatenate([rng.uniform(0.05, 0.5, 5000), rng.uniform(0.5, 1.0, 7000),
                             np.ones(1000), rng.uniform(1.0, 3.0, 7000)])  # stride / window
    rng.shuffle(ratios)
    for case, ratio in enumerate(ratios):
        window = float(rng.choice([0.5, 1.0, 2.0, 4.0, 4.0, 8.0]) * rng.uniform(0.5, 1.5))
        stride = float(window * ratio)
        duration = float(rng.uniform(0.05, 12 * window))
        spans = sampling.window_spans(duration, window, stride)
        n = len(spans)
        kind = case % 4
        if kind == 0:  # one label everywhere: one segment per run of touching windows
            scores = np.tile([0.8, 0.15, 0.05], (n, 1))
        elif kind == 1:  # few, long runs
            scores = np.eye(3)[np.repeat(rng.integers(0, 3, 4), -(-n // 4))[:n]] * 0.7 + 0.1
        else:
            scores = rng.dirichlet(np.ones(3), size=n)
        min_score = 0.0 if case % 3 else float(rng.uniform(0.3, 0.7))
        _check_property(spans, duration, window, stride, min_score, int(case % 3), scores)


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
    assert errors.check_int("k", np.int64(3), 1) == 3 and type(errors.check_int("k", np.int64(3))) is int
    assert errors.check_int("k", None, optional=True) is None
    assert errors.check_float("x", 1, 0.0) == 1.0 and type(errors.check_float("x", np.float32(0.5))) is float
    for bad in (True, "3", 2.5, None, float("nan")):
        with pytest.raises(UsageError, match=r"^k="):
            errors.check_int("k", bad)
    for bad in (False, "0.5", None, float("inf"), -float("inf"), float("nan"), [1.0]):
        with pytest.raises(UsageError, match=r"^x="):
            errors.check_float("x", bad)
    with pytest.raises(UsageError, match=r"x=0.0: must be more than 0"):
        errors.check_float("x", 0.0, above=0)
    assert errors.check_bool("b", False) is False
    with pytest.raises(UsageError):
        errors.check_bool("b", 1)


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


# ----------------------------------------------------------------------------- item 2: never replace a user's file

def test_plot_and_annotate_never_replace_other_files(clip, short, tmp_path, capsys, monkeypatch):
    from PIL import Image
    import text4vis.api
    plots, ann = tmp_path / "plots", tmp_path / "ann"
    plots.mkdir()
    ann.mkdir()
    notes = plots / "short.timeline.png"
    notes.write_text("my notes\n")
    foreign = ann / "short.annotated.mp4"
    foreign.write_bytes(open(short, "rb").read())  # someone's video of the same name
    real_load = text4vis.api.load
    monkeypatch.setattr(text4vis.api, "load", lambda **kw: pytest.fail("work started before the outputs were checked"))
    args = ["timeline", short, "--clip", clip, "--labels", "ucf101", "--window", "1", "--stride", "1"]
    assert cli.main([*args, "--plot", str(plots)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"text4vis timeline: error: --plot {notes}: exists and is not a PNG plot written by "
                           f"text4vis; not replaced (--overwrite replaces it)")
    Image.new("RGB", (8, 8)).save(notes)  # a PNG, but not text4vis's
    assert cli.main([*args, "--plot", str(plots)]) == 2
    assert cli.main([*args, "--annotate", str(ann)]) == 2
    err = capsys.readouterr().err
    assert f"--annotate {foreign}: exists and is not an annotated copy written by text4vis" in err
    assert foreign.read_bytes() == open(short, "rb").read() and Image.open(notes).size == (8, 8)
    # --overwrite replaces them; then they are text4vis's own, replaced by a second run without it
    monkeypatch.setattr(text4vis.api, "load", real_load)
    for extra in (["--overwrite"], []):
        assert cli.main([*args, "--plot", str(plots), "--annotate", str(ann), *extra]) == 0
        capsys.readouterr()
        assert tl.is_annotated_copy(str(foreign))
        from text4vis.plots import is_text4vis_png
        assert is_text4vis_png(str(notes))
    with pytest.raises(text4vis.errors.OutputError, match=r"^plot='.*notes.txt': a PNG plot is written here"):
        tl.plot_timeline({"video": "v", "duration": 1.0, "windows": [], "segments": []}, str(tmp_path / "notes.txt"))


# ----------------------------------------------------------------------------- item 3: side outputs that fail

def tiny_gif(path, frames: int = 10) -> None:
    from PIL import Image
    images = [Image.new("RGB", (1, 1), (i * 20, 0, 0)) for i in range(frames)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)


def test_annotate_failure_keeps_the_timeline(clip, tmp_path, capsys):
    gif = str(tmp_path / "dot.gif")
    tiny_gif(gif)
    ann = tmp_path / "ann"
    code = cli.main(["timeline", gif, "--clip", clip, "--labels", "ucf101", "--window", "0.5", "--stride", "0.5",
                     "--json", "--annotate", str(ann), "--plot", str(tmp_path / "plots")])
    out, err = capsys.readouterr()
    assert code == 1
    r = json.loads(out)  # the record is printed whole
    assert r["video"] == gif and r["duration"] == pytest.approx(1.0) and len(r["windows"]) == 2 and r["segments"]
    assert "error" not in r
    lines = err.strip().splitlines()
    assert lines == [f"text4vis timeline: error: {ann / 'dot.annotated.mp4'}: annotated copy not written: "
                     f"{gif}: frames of 1x1 are too small to encode", "text4vis: 1 of 1 input failed"]
    assert (tmp_path / "plots" / "dot.timeline.png").exists() and not list(ann.iterdir())  # no partial file
    # the table: the segments, then the error
    assert cli.main(["timeline", gif, "--clip", clip, "--labels", "ucf101", "--window", "0.5", "--stride", "0.5",
                     "--annotate", str(ann)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{gif}  (0:00:01.0") and "2 windows" in out[0]
    assert out[-1] == (f"   error: {ann / 'dot.annotated.mp4'}: annotated copy not written: {gif}: frames of 1x1 "
                       f"are too small to encode")


def test_a_246_character_name_gets_its_side_outputs(clip, tmp_path, capsys):
    name = "a" * 242 + ".mp4"
    path = str(tmp_path / name)
    write_video(path, index_frames(10), fps=10)
    code = cli.main(["timeline", path, "--clip", clip, "--labels", "ucf101", "--json", "--plot", str(tmp_path / "p"),
                     "--annotate", str(tmp_path / "a")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["video"] == path
    for folder, suffix in (("p", ".timeline.png"), ("a", ".annotated.mp4")):
        [made] = os.listdir(tmp_path / folder)
        assert made.endswith(suffix) and made.startswith("a" * 200) and len(made.encode()) <= 255 - 24


# ----------------------------------------------------------------------------- item 6: variable frame rate

def vfr_clip(path: str) -> np.ndarray:
    """5 s at 5 fps, then 1 s at 50 fps (75 frames); returns the frame times."""
    import av
    from fractions import Fraction
    times, t = [], 0
    with av.open(path, "w") as out:
        stream = out.add_stream("libx264", rate=50)
        stream.width, stream.height, stream.pix_fmt = 128, 64, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for i, image in enumerate(index_frames(75)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            times.append(t / 1000)
            out.mux(stream.encode(frame))
            t += 200 if i < 25 else 20
        out.mux(stream.encode(None))
    return np.array(times)


def test_vfr_windows_spread_over_time_and_annotate_keeps_timestamps(rec, tmp_path):
    import av
    path = str(tmp_path / "vfr.mp4")
    times = vfr_clip(path)
    info = video.probe(path)
    assert np.allclose(info.times, times, atol=1e-3) and sampling.is_variable_rate(info.times)
    [whole] = tl.plan_windows(info, 10.0, 10.0, 8)  # one window: the whole 6 s video
    targets = np.arange(8) * info.duration / 8
    assert np.abs(info.times[whole["frames"]] - targets).max() <= 0.2  # within one 5 fps frame of each time
    assert sum(info.times[whole["frames"]] >= 5.0) == 1  # not 5 of 8 in the fast last second
    r = rec.timeline(path, window=2, stride=2)
    out = str(tmp_path / "vfr.annotated.mp4")
    assert tl.annotate_video(r, path, out) == 75
    with av.open(out) as c:
        got = np.array([float(f.pts * f.time_base) for f in c.decode(video=0)])
    assert np.abs(got - got[0] - times).max() < 1e-3  # each frame keeps its own time
    # constant-rate clips keep the frames rule of `predict` (the index video: 25 fps)
    cfr = str(tmp_path / "cfr.mp4")
    write_video(cfr, index_frames(50))
    assert not sampling.is_variable_rate(video.probe(cfr).times)
    assert tl.plan_windows(video.probe(cfr), 4.0, 2.0, 8)[0]["frames"] == sampling.view_indices(50, 8, 1)[0]


# ----------------------------------------------------------------------------- item 7: plots

def _plotted(monkeypatch, record, **kw):
    """plot_timeline's figure, kept open: (score axes, bar axes, figure)."""
    from text4vis import plots
    kept = {}
    monkeypatch.setattr(plots, "_save", lambda fig, path: kept.setdefault("fig", fig))
    tl.plot_timeline(record, "unused.png", **kw)
    fig = kept["fig"]
    return fig.axes[0], fig.axes[1], fig


def _record(n: int, labels: list[str], seconds: float = 2.0, topk: int = 1, rng=None):
    rng = rng or np.random.default_rng(0)
    scores = rng.dirichlet(np.ones(len(labels)), size=n)
    spans = [(i * seconds, (i + 1) * seconds) for i in range(n)]
    windows = [{"start": s, "end": e, "top": [{"label": labels[j], "score": float(row[j])}
                                               for j in np.argsort(-row)[:topk]]} for (s, e), row in zip(spans, scores)]
    return {"video": "v.mp4", "duration": n * seconds, "fps": 25.0, "windows": windows,
            "segments": tl.segments(spans, scores, labels, smooth=0)}, scores


def test_plot_draws_the_models_scores_not_the_top_k(monkeypatch):
    import matplotlib.pyplot as plt
    labels = ["walking", "running", "jumping"]
    record, scores = _record(12, labels, topk=1)
    ax, _, fig = _plotted(monkeypatch, record, scores=scores, labels=labels)
    for line in ax.get_lines():
        assert np.allclose(line.get_ydata(), scores[:, labels.index(line.get_label())])
    plt.close(fig)
    ax, _, fig = _plotted(monkeypatch, record)  # without scores: gaps where a class is not in the top-k, never 0
    for line in ax.get_lines():
        y = np.asarray(line.get_ydata(), dtype=float)
        tops = np.array([w["top"][0]["label"] == line.get_label() for w in record["windows"]])
        assert np.isnan(y[~tops]).all() and (y[tops] > 0).all()
    plt.close(fig)


def test_plot_labels_fit_and_legend_is_beside_the_curves(monkeypatch):
    import matplotlib.pyplot as plt
    labels = [f"a rather long class name number {i} of the data set" for i in range(12)]
    record, scores = _record(1800, labels, seconds=4.0, rng=np.random.default_rng(3))  # 2 hours
    record["segments"][3]["label"] = labels[0]
    ax, bars, fig = _plotted(monkeypatch, record, scores=scores, labels=labels)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in bars.texts]
    to_px = bars.transData.transform
    for t, box in zip(bars.texts, boxes):  # each label inside its own segment's bar
        x = t.get_position()[0]
        seg = next(s for s in record["segments"] if s["start"] <= x <= s["end"])
        assert to_px((seg["start"], 0))[0] <= box.x0 and box.x1 <= to_px((seg["end"], 0))[0]
    assert all(a.x1 <= b.x0 + 0.5 for a, b in zip(boxes, boxes[1:]))  # none overlap
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.x0 >= ax.get_window_extent(renderer).x1  # beside the curves, not over them
    plt.close(fig)
    record, scores = _record(3, ["a short one", "another"], seconds=10.0)  # wide bars: whole labels
    _, bars, fig = _plotted(monkeypatch, record, scores=scores, labels=["a short one", "another"])
    assert sorted(t.get_text() for t in bars.texts) == sorted(s["label"] for s in record["segments"])
    plt.close(fig)


def test_plot_any_script_without_matplotlib_warnings(tmp_path, caplog):
    import logging
    import warnings
    from matplotlib import font_manager
    from text4vis import plots
    from text4vis.errors import Text4VisWarning
    labels = ["跳舞", "운동", "прыжки"]
    record, scores = _record(6, labels)
    record["video"] = "视频.mp4"
    png = str(tmp_path / "cjk.timeline.png")
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, logger="matplotlib"):
        warnings.simplefilter("always")
        tl.plot_timeline(record, png, scores=scores, labels=labels)
    assert not [w for w in caught if not issubclass(w.category, Text4VisWarning)]  # no matplotlib warning
    assert not caplog.records
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        families, texts = plots.fonts_for(labels)
    if texts == labels:  # an installed font has them: it is used
        assert len(families) > 1 and not caught
    else:  # none has: one warning of ours, the characters drawn as a square
        [w] = caught
        assert "no installed font has the characters" in str(w.message)
        assert texts[2] == "прыжки" and set(texts[0]) == {plots.MISSING_GLYPH}
    # a character only another installed font has: that font joins the list, the text is unchanged
    default = plots._charmap(font_manager.findfont("DejaVu Sans"))
    other = next(((e.name, c) for e in font_manager.fontManager.ttflist for c in sorted(plots._charmap(e.fname))
                  if c > 0x2000 and c not in default and chr(c).isprintable()), None)
    if other:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            families, texts = plots.fonts_for([f"x{chr(other[1])}"])
        assert texts == [f"x{chr(other[1])}"] and len(families) == 2


# ----------------------------------------------------------------------------- item 13: inputs and messages

def test_frame_folder_is_a_timeline_input(clip, tmp_path, capsys):
    from PIL import Image
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, image in enumerate(index_frames(20)):
        Image.fromarray(image).save(folder / f"img_{i + 1:05d}.jpg")
    code = cli.main(["timeline", str(tmp_path), "--clip", clip, "--labels", "ucf101", "--json", "--window", "0.4",
                     "--stride", "0.4", "--annotate", str(tmp_path / "ann")])
    out, err = capsys.readouterr()
    assert code == 0, err
    r = json.loads(out)
    assert r["video"] == str(folder) and r["fps"] == video.FRAME_FOLDER_RATE == 25.0
    assert r["duration"] == pytest.approx(0.8) and [(w["start"], w["end"]) for w in r["windows"]] == [(0.0, 0.4), (0.4, 0.8)]
    assert len(video.read_all_frames(str(tmp_path / "ann" / "frames.annotated.mp4"))) == 20


def test_truncated_faststart_mp4_is_analysed_with_a_warning(clip, tmp_path, capsys):
    import av
    whole, fast = str(tmp_path / "whole.mp4"), str(tmp_path / "fast.mp4")
    write_video(whole, index_frames(120), fps=10, options={"g": "10"})  # 12 s
    with av.open(whole) as src, av.open(fast, "w", options={"movflags": "faststart"}) as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    data = open(fast, "rb").read()
    assert data.find(b"moov") < data.find(b"mdat")  # the index is at the start
    cut = str(tmp_path / "cut.mp4")
    mdat = data.find(b"mdat")
    open(cut, "wb").write(data[: mdat + (len(data) - mdat) // 2])  # half the frames' data is gone
    code = cli.main(["timeline", cut, "--clip", clip, "--labels", "ucf101", "--json"])
    out, err = capsys.readouterr()
    r = json.loads(out)
    assert code == 0 and 3.0 < r["duration"] < 9.0 and r["windows"] and "error" not in r, (r.get("error"), err)
    assert r["warning"] == (f"{cut}: the file is cut short: its header says 0:00:12.0, its frames end at "
                            f"{tl.clock(r['duration'])}; analysed up to there")
    assert video.probe(whole).header_duration is None
    assert cli.main(["timeline", cut, "--clip", clip, "--labels", "ucf101"]) == 0
    assert "   warning: " in capsys.readouterr().out


def test_singular_messages(clip, tmp_path, capsys):
    path = str(tmp_path / "one.mp4")
    write_video(path, index_frames(10), fps=10)
    assert cli.main(["timeline", path, str(tmp_path / "missing.mp4"), "--clip", clip, "--labels", "ucf101"]) == 1
    out, err = capsys.readouterr()
    assert "(0:00:01.0, 10.00 fps, 1 window of 4 s every 2 s)" in out
    assert "1 of 2 inputs failed" in err
    assert cli.main(["timeline", str(tmp_path / "missing.mp4"), "--clip", clip, "--labels", "ucf101"]) == 1
    assert "text4vis: 1 of 1 input failed" in capsys.readouterr().err


def test_cli_plot_with_cjk_names_keeps_stderr_clean(clip, short, tmp_path):
    import subprocess
    import sys
    labels = tmp_path / "names.txt"
    labels.write_text("跳舞\n운동\n", encoding="utf-8")  # every plotted class has CJK/Hangul characters
    run = subprocess.run([sys.executable, "-m", "text4vis", "timeline", short, "--clip", clip, "--labels", str(labels),
                          "--window", "1", "--stride", "1", "--plot", str(tmp_path / "p")],
                         capture_output=True, text=True, timeout=300)  # a real process: its real stderr
    code, err = run.returncode, run.stderr
    assert code == 0 and (tmp_path / "p" / "short.timeline.png").exists(), err
    # nothing from matplotlib; at most text4vis's own line about a missing font
    assert all(line.startswith("text4vis timeline: warning: no installed font has the characters")
               for line in err.splitlines()), err
