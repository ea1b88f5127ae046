"""`text4vis timeline` and the window embeddings under it (timeline.embed_windows, Recognizer.timeline).

Tiny random-weight CLIP of conftest (32x32 inputs) on the CPU; short generated videos plus the real
phone clips in tests/data/videos.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import text4vis
from text4vis import cli, sampling, timeline as tl, video
from conftest import SHARED_VIDEOS, index_frames, write_video


@pytest.fixture(scope="module")
def rec(clip_file):
    return text4vis.load(clip=clip_file, labels=["red", "green", "blue"], device="cpu")


@pytest.fixture(scope="module")
def index10s(tmp_path_factory):
    """10 s at 25 fps (250 frames) whose frames show their own index (mod 256)."""
    path = str(tmp_path_factory.mktemp("tl") / "index250.mp4")
    write_video(path, index_frames(250), options={"g": "12", "bf": "2"})
    return path


# ----------------------------------------------------------------------------- window arithmetic

def test_window_spans_count_first_last():
    spans = sampling.window_spans(10.0, 4.0, 2.0)
    assert spans == [(0.0, 4.0), (2.0, 6.0), (4.0, 8.0), (6.0, 10.0)]
    spans = sampling.window_spans(9.0, 4.0, 2.0)  # the last window is cut at the end
    assert spans[0] == (0.0, 4.0) and spans[-1] == (6.0, 9.0) and len(spans) == 4
    assert sampling.window_spans(3.0, 4.0, 2.0) == [(0.0, 3.0)]  # shorter than one window
    assert sampling.window_spans(8.0, 2.0, 2.0) == [(0.0, 2.0), (2.0, 4.0), (4.0, 6.0), (6.0, 8.0)]  # stride = window
    gaps = sampling.window_spans(10.0, 2.0, 3.0)  # stride > window: gaps by design
    assert gaps == [(0.0, 2.0), (3.0, 5.0), (6.0, 8.0), (9.0, 10.0)]
    long = sampling.window_spans(7200.0, 4.0, 2.0)
    assert len(long) == 3599 and long[-1] == (7196.0, 7200.0)
    with pytest.raises(ValueError):
        sampling.window_spans(10.0, 0, 2.0)


def test_plan_takes_test_time_frames_of_each_window(index10s):
    info = video.probe(index10s)
    assert info.num_frames == 250 and info.duration == pytest.approx(10.0) and info.fps == pytest.approx(25.0)
    plan = tl.plan_windows(info, 4.0, 2.0, 8)
    assert [(w["start"], w["end"]) for w in plan] == sampling.window_spans(10.0, 4.0, 2.0)
    assert plan[0]["frames"] == sampling.view_indices(100, 8, 1)[0]
    assert plan[1]["frames"] == [50 + i for i in sampling.view_indices(100, 8, 1)[0]]
    assert plan[-1]["frames"][-1] < 250


# ----------------------------------------------------------------------------- embed_windows (shared with `index`)

def test_embed_windows_are_predicts_embeddings(rec, index10s, tmp_path):
    out = tl.embed_windows(rec, index10s, window=4, stride=2)
    assert out["duration"] == pytest.approx(10.0) and out["num_frames"] == 250
    assert [(w["start"], w["end"]) for w in out["windows"]] == sampling.window_spans(10.0, 4.0, 2.0)
    for w in out["windows"]:
        assert w["embedding"].dtype == np.float32 and w["embedding"].shape == (64,)
        assert np.linalg.norm(w["embedding"]) == pytest.approx(1.0, abs=1e-5)
    # a video shorter than one window: one window, the same embedding as `predict --embedding`
    short = str(tmp_path / "short.mp4")
    write_video(short, index_frames(30))
    one = rec.embed_windows(short, window=4, stride=2)
    assert len(one["windows"]) == 1 and one["windows"][0]["start"] == 0.0
    assert one["windows"][0]["end"] == pytest.approx(1.2)
    pred = rec.predict([short], with_embedding=True)[0]
    assert np.allclose(one["windows"][0]["embedding"], pred["embedding"], atol=1e-5)
    # windows differ (frames differ), so the embeddings are not all one vector
    e = np.stack([w["embedding"] for w in out["windows"]])
    assert np.abs(e[0] - e[-1]).max() > 1e-4


# ----------------------------------------------------------------------------- segments recover known classes

COLOURS = {"red": (200, 30, 30), "green": (30, 190, 40), "blue": (30, 40, 210)}
FPS = 10


def colour_clip(name: str, seconds: float, seed: int, size: int = 48) -> np.ndarray:
    """A clip of one class: its colour, with a moving grey bar and sensor noise (every frame differs)."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * FPS))
    frames = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        f = np.empty((size, size, 3), np.float32)
        f[:] = COLOURS[name]
        x = (i * 3 + seed * 7) % size
        f[:, x:x + 6] = 128
        f += rng.normal(0, 8, f.shape)
        frames[i] = np.clip(f, 0, 255).astype(np.uint8)
    return frames


@pytest.fixture(scope="module")
def fitted(clip_file, tmp_path_factory):
    """The tiny CLIP with a classifier fitted to the three classes: each row is the normalised window
    embedding (through embed_windows, the real path) of a reference clip of that class."""
    d = tmp_path_factory.mktemp("ref")
    r = text4vis.load(clip=clip_file, labels=list(COLOURS), device="cpu")
    rows = []
    for k, name in enumerate(COLOURS):
        path = str(d / f"{name}.mp4")
        write_video(path, colour_clip(name, 3.0, seed=100 + k), fps=FPS)
        rows.append(torch.from_numpy(r.embed_windows(path, window=4, stride=2)["windows"][0]["embedding"]))
    from text4vis.classifiers import Classifier
    r.set_classifier(Classifier(torch.stack(rows), list(COLOURS), {"type": "prototypes"}))
    return r


PLAN = [("red", 8.0), ("green", 6.0), ("blue", 10.0), ("red", 6.0)]  # 30 s, boundaries at 8, 14, 24


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("long") / "concatenated.mp4")
    parts = [colour_clip(name, secs, seed=k) for k, (name, secs) in enumerate(PLAN)]
    write_video(path, np.concatenate(parts), fps=FPS, options={"g": "25", "bf": "2"})
    return path


def check_segments(r: dict) -> None:
    """Ordered, not overlapping, inside [0, duration]."""
    prev = 0.0
    for s in r["segments"]:
        assert prev - 1e-9 <= s["start"] < s["end"] <= r["duration"] + 1e-9
        assert 0.0 <= s["score"] <= 1.0
        prev = s["end"]


def test_segments_recover_labels_and_boundaries(fitted, long_video):
    r = fitted.timeline(long_video, window=4, stride=2)
    assert r["duration"] == pytest.approx(30.0)
    check_segments(r)
    assert [s["label"] for s in r["segments"]] == [name for name, _ in PLAN]
    truth = np.cumsum([0.0] + [secs for _, secs in PLAN])
    starts = [s["start"] for s in r["segments"]] + [r["segments"][-1]["end"]]
    assert starts[0] == 0.0 and starts[-1] == pytest.approx(30.0)
    assert np.abs(np.array(starts) - truth).max() <= 2.0  # within one stride
    # windows entirely inside one part are that part's class in top-1
    for w in r["windows"]:
        inside = [name for (name, _), a, b in zip(PLAN, truth[:-1], truth[1:]) if a <= w["start"] and w["end"] <= b]
        if inside:
            assert w["top"][0]["label"] == inside[0]
    # the same video at stride = window: still the right labels in the right order
    r2 = fitted.timeline(long_video, window=2, stride=2, smooth=0)
    assert [s["label"] for s in r2["segments"]] == [name for name, _ in PLAN]
    check_segments(r2)


def test_segment_rule_gaps_and_smoothing():
    spans = sampling.window_spans(10.0, 2.0, 2.0)  # 5 windows
    a, b = [0.9, 0.1], [0.2, 0.8]
    scores = np.array([a, a, b, a, a])
    one = tl.segments(spans, scores, ["A", "B"], smooth=0)
    assert [(s["label"], s["start"], s["end"]) for s in one] == [("A", 0, 4), ("B", 4, 6), ("A", 6, 10)]
    smoothed = tl.segments(spans, scores, ["A", "B"], smooth=1)  # one odd window is smoothed away
    assert [(s["label"], s["start"], s["end"]) for s in smoothed] == [("A", 0, 10)]
    gaps = tl.segments(spans, np.array([a, a, [0.55, 0.45], a, a]), ["A", "B"], min_score=0.6, smooth=0)
    assert [(s["start"], s["end"]) for s in gaps] == [(0, 4), (6, 10)]
    wide = sampling.window_spans(10.0, 2.0, 3.0)  # stride > window: the gaps between windows stay gaps
    segs = tl.segments(wide, np.array([a] * len(wide)), ["A", "B"], smooth=0)
    assert [(s["start"], s["end"]) for s in segs] == [(0, 2), (3, 5), (6, 8), (9, 10)]
    overlap = sampling.window_spans(10.0, 4.0, 2.0)  # parts nearest each window's centre tile [0, 10]
    segs = tl.segments(overlap, np.array([a, a, b, b]), ["A", "B"], smooth=0)
    assert [(s["label"], s["start"], s["end"]) for s in segs] == [("A", 0, 5), ("B", 5, 10)]


# ----------------------------------------------------------------------------- real clips, odd inputs

def test_variable_frame_rate_phone_clip_times_from_timestamps(rec):
    path = os.path.join(SHARED_VIDEOS, "dog_android_vfr_rotate180_h264_aac.mp4")
    info = video.probe(path)
    steps = np.diff(info.times)
    assert info.num_frames == 25 and info.duration == pytest.approx(2.38, abs=0.02)
    assert steps.min() == pytest.approx(0.08, abs=0.002) and steps.max() == pytest.approx(0.1, abs=0.002)
    plan = tl.plan_windows(info, 1.0, 0.5, 4)
    for w in plan[:-1]:  # each window's frames are the ones whose timestamp falls inside it
        inside = np.flatnonzero((info.times >= w["start"] - 1e-9) & (info.times < w["end"] - 1e-9))
        assert set(w["frames"]) <= set(inside.tolist()) and w["frames"][0] == inside[0]
    # frame counts by timestamps differ from a constant-rate assumption at the average rate
    assert any(len(np.flatnonzero((info.times >= s) & (info.times < s + 1.0))) != round(info.fps)
               for s in (0.0, 0.5, 1.0))
    r = rec.timeline(path, window=1.0, stride=0.5)
    assert [(w["start"], w["end"]) for w in r["windows"]] == sampling.window_spans(info.duration, 1.0, 0.5)
    check_segments(r)


@pytest.mark.parametrize("name,shape", [("dog_android_vfr_rotate180_h264_aac.mp4", (720, 1280)),
                                        ("iphone4s_rotate90_h264_aac.mov", (568, 320))])
def test_rotated_clips_stream_upright_frames_like_predict(name, shape):
    path = os.path.join(SHARED_VIDEOS, name)
    n = video.probe(path).num_frames
    wanted = [0, n // 2, n - 1]
    streamed = dict(video.stream_frames(path, wanted))
    assert sorted(streamed) == wanted
    frames, _ = video.read_frames(path, lambda m: wanted)  # predict's reader
    for k, i in enumerate(wanted):
        assert streamed[i].shape[:2] == shape
        assert np.array_equal(streamed[i], frames[k])


def test_one_frame_video_and_shorter_than_a_window(rec, odd_inputs):
    r = rec.timeline(odd_inputs["single"], window=4, stride=2)
    assert len(r["windows"]) == 1 and r["windows"][0]["start"] == 0.0
    assert r["duration"] == pytest.approx(0.04) and r["windows"][0]["end"] == pytest.approx(0.04)
    assert len(r["segments"]) == 1 and r["segments"][0]["end"] == pytest.approx(0.04)
    assert r["segments"][0]["label"] == r["windows"][0]["top"][0]["label"]
    top = rec.predict([odd_inputs["single"]], topk=3)[0]["top"]  # one window scored exactly as predict
    assert r["windows"][0]["top"][:3] == top


def test_cli_json_with_damaged_and_audio_only_inputs(clip_file, index10s, odd_inputs, capsys):
    inputs = [index10s, odd_inputs["truncated_mp4"], odd_inputs["audio_only"], odd_inputs["text"],
              odd_inputs["single"]]
    code = cli.main(["timeline", *inputs, "--clip", clip_file, "--labels", "ucf101", "--json", "--topk", "3"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in err and "3 of 5 inputs failed" in err
    recs = [json.loads(line) for line in out.splitlines()]
    assert [r["video"] for r in recs] == inputs
    ok = [recs[0], recs[4]]
    for r in ok:
        assert set(r) == {"video", "duration", "fps", "windows", "segments"}
        for w in r["windows"]:
            assert set(w) == {"start", "end", "top"} and len(w["top"]) == 3
            assert set(w["top"][0]) == {"label", "score"}
        for s in r["segments"]:
            assert set(s) == {"label", "start", "end", "score"}
    assert recs[0]["duration"] == pytest.approx(10.0) and len(recs[0]["windows"]) == 4
    assert recs[0]["fps"] == pytest.approx(25.0)
    for r in recs[1:4]:
        assert set(r) == {"video", "error"} and r["error"].startswith(r["video"] + ":")
        assert "\n" not in r["error"]
    assert "has no video stream" in recs[2]["error"]


def test_stream_that_breaks_off_keeps_the_windows_before_the_break(clip_file, tmp_path, capsys):
    from test_data_errors import damaged_copy  # the real 300-frame clip with its middle overwritten
    damaged = damaged_copy(tmp_path / "damaged.mp4")
    code = cli.main(["timeline", damaged, "--clip", clip_file, "--labels", "ucf101", "--window", "1", "--stride", "0.5",
                     "--json"])
    out, err = capsys.readouterr()
    r = json.loads(out)
    assert code == 1 and "Traceback" not in err
    assert r["duration"] == pytest.approx(10.0, abs=0.05) and 1 <= len(r["windows"]) < 19
    assert r["windows"][-1]["end"] <= 2.0 and r["segments"][-1]["end"] <= 2.0
    assert "breaks off at 0:00:0" in r["error"] and "windows after it are left out" in r["error"]
    # with windows longer than what decodes, nothing is left: an error record
    assert cli.main(["timeline", damaged, "--clip", clip_file, "--labels", "ucf101", "--json"]) == 1
    r = json.loads(capsys.readouterr().out)
    assert set(r) == {"video", "error"} and "does not decode" in r["error"]


@pytest.mark.slow
def test_cli_table_plot_and_annotated_copy(fitted, long_video, clip_file, tmp_path, capsys, monkeypatch):
    import av
    from PIL import Image
    import text4vis.api
    monkeypatch.setattr(text4vis.api, "load", lambda **kw: fitted)  # the fitted classifier, through the CLI
    code = cli.main(["timeline", long_video, "--clip", clip_file, "--plot", str(tmp_path / "plots"),
                     "--annotate", str(tmp_path / "ann")])
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(long_video) and "0:00:30.0" in lines[0] and "14 windows" in lines[0]
    rows = [line.split() for line in lines[1:]]  # "0:00:00.0 - 0:00:09.0 red 87.49%"
    assert [row[3] for row in rows] == [name for name, _ in PLAN]
    seconds = [[float(t.split(":")[1]) * 60 + float(t.split(":")[2]) for t in (row[0], row[2])] for row in rows]
    truth = np.cumsum([0.0] + [secs for _, secs in PLAN])
    assert np.abs(np.array(seconds) - np.stack([truth[:-1], truth[1:]], 1)).max() <= 2.0
    assert all(row[4].endswith("%") for row in rows)
    png = tmp_path / "plots" / "concatenated.timeline.png"
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 1000
    ann = str(tmp_path / "ann" / "concatenated.annotated.mp4")
    with av.open(ann) as c:
        assert not c.streams.audio and c.streams.video[0].codec_context.name == "h264"
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    src = video.read_all_frames(long_video)
    assert len(frames) == len(src) == 300
    # the label box is drawn at the top left, the rest of the frame is the video
    assert frames[50][:3, :3].mean() < 40 < src[50][:3, :3].mean()
    assert np.abs(frames[50][-10:, -10:].astype(int) - src[50][-10:, -10:]).mean() < 20


# ----------------------------------------------------------------------------- one pass, bounded memory

def test_each_frame_decoded_and_converted_at_most_once(rec, index10s, monkeypatch):
    converted = []
    original = video._to_rgb

    def counting(frame):
        converted.append(frame.pts)
        return original(frame)

    decoded = []
    original_decoded = video._decoded

    def counting_decoder(*args):  # every frame that comes out of the decoder
        for i, frame in original_decoded(*args):
            decoded.append(frame.pts)
            yield i, frame

    monkeypatch.setattr(video, "_to_rgb", counting)
    monkeypatch.setattr(video, "_decoded", counting_decoder)
    stats, held = video.DecodeStats(), tl.Held()
    out = tl.embed_windows(rec, index10s, window=4, stride=0.5, stats=stats, held=held)  # 8-fold overlap
    plan = tl.plan_windows(video.probe(index10s), 4, 0.5, rec.num_frames)
    needed = {i for w in plan for i in w["frames"]}
    assert len(out["windows"]) == len(plan) == 13
    assert len(converted) == len(set(converted)) == len(needed) == stats.converted
    assert len(decoded) == len(set(decoded)) == stats.decoded <= 250 and len(needed) < 250 / 2
    # the frames each window got are the frames its plan names (index video: frames show their index)
    got = dict(video.stream_frames(index10s, sorted(needed)))
    from conftest import decode_index
    assert all(decode_index(got[i]) == i % 256 for i in needed)


def test_memory_is_bounded_by_the_window_not_the_video(rec, tmp_path):
    held = {}
    for seconds in (10, 60):
        path = str(tmp_path / f"v{seconds}.mp4")
        write_video(path, np.repeat(index_frames(seconds * 5, 32, 64), 5, axis=0), fps=25,
                    options={"preset": "ultrafast"})
        h = tl.Held()
        r = tl.embed_windows(rec, path, window=4, stride=2, held=h)
        assert len(r["windows"]) == seconds // 2 - 1
        assert h.now == 0
        held[seconds] = h.peak
    assert held[60] == held[10] <= 2 * rec.num_frames  # the crops of about two open windows


def test_bench_timeline_reports_ratio_and_memory(clip_file, index10s, capsys):
    code = cli.main(["bench", "--timeline", index10s, "--clip", clip_file, "--device", "cpu", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["frames"] == 250 and out["windows"] == 4 and out["frames_converted"] <= 4 * 8
    assert out["plain_decode_s"] > 0 and out["timeline_s"] > 0  # (rounded to ms: compare loosely)
    assert out["ratio_vs_plain_decode"] == pytest.approx(out["timeline_s"] / out["plain_decode_s"], rel=0.2)
    assert out["cpu_ratio_vs_plain_decode"] == pytest.approx(out["timeline_cpu_s"] / out["plain_decode_cpu_s"], rel=0.2)
    assert out["peak_rss_mb"] > 0 and out["peak_frames_held"] <= 16 and out["rounds"] == 2


def test_bad_window_options_are_usage_errors(clip_file, index10s, capsys):
    assert cli.main(["timeline", index10s, "--clip", clip_file, "--window", "0"]) == 2
    assert cli.main(["timeline", index10s, "--clip", clip_file, "--min-score", "1.5"]) == 2
    err = capsys.readouterr().err
    assert "--window" in err and "--min-score" in err and "Traceback" not in err
