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
def clip(tiny_dir):
    return str(tiny_dir / "openai_sd.pt")


@pytest.fixture(scope="module")
def rec(clip):
    return text4vis.load(clip=clip, labels=["red", "green", "blue"], device="cpu")


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
