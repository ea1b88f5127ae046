"""Scores -> top-k records in one place (records.py), with one tie rule: best first, equal scores in
label order (the lower class id first), as predict has always broken ties. Checked on the function and
through every surface that writes records: predict and classify, timeline windows, index tag (CLI and
API); the HTTP service's surface is in tests/serve/test_serve.py."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import text4vis
from conftest import run_cli
from text4vis import engine
from text4vis.records import top_labels, window_records

LABELS = ["a", "b", "c", "d", "e"]
TIED = [0.1, 0.3, 0.3, 0.0, 0.3]        # b, c and e tie for first place
WANT = ["b", "c", "e", "a"]             # top-4: the tie in label order, then the next best


def test_top_labels_keeps_label_order_in_ties():
    rows = np.array([TIED, [0.2, 0.2, 0.2, 0.2, 0.2]], np.float32)
    tops = top_labels(rows, LABELS, 4)
    assert [[t["label"] for t in top] for top in tops] == [WANT, ["a", "b", "c", "d"]]
    assert tops[0][0] == {"label": "b", "score": 0.3}
    assert top_labels(torch.tensor(TIED), LABELS, 4) == [tops[0]]          # a torch row, one record
    assert [t["label"] for t in top_labels(rows, LABELS, 99)[0]] == ["b", "c", "e", "a", "d"]  # k capped
    assert window_records([(0.0, 1.0), (1.0, 2.0)], rows, LABELS, 1) == [
        {"start": 0.0, "end": 1.0, "top": [{"label": "b", "score": 0.3}]},
        {"start": 1.0, "end": 2.0, "top": [{"label": "a", "score": 0.2}]}]


@pytest.fixture
def tied_scores(monkeypatch):
    """Every video or window scores TIED, whatever its embedding (each surface scores through engine)."""
    def scores(emb, weight):
        return torch.tensor([TIED]).expand(len(emb), -1).clone()
    monkeypatch.setattr(engine, "scores_from_embeddings", scores)


@pytest.fixture(scope="module")
def rec(clip_file):
    return text4vis.load(clip=clip_file, labels=LABELS, frames=4, device="cpu")


def labels_of(top: list[dict]) -> list[str]:
    return [t["label"] for t in top]


def test_predict_and_classify_break_ties_in_label_order(rec, index_video, tied_scores):
    assert labels_of(rec.predict([index_video], topk=4, workers=0)[0]["top"]) == WANT
    assert labels_of(rec.classify(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), topk=4)) == WANT


def test_predict_cli_breaks_ties_in_label_order(clip_file, index_video, tmp_path, tied_scores):
    names = tmp_path / "labels.txt"
    names.write_text("\n".join(LABELS) + "\n")
    rc, out, err = run_cli("predict", index_video, "--clip", clip_file, "--labels", names, "--frames", "4",
                           "--topk", "4", "--json", "--workers", "0")
    assert rc == 0, err
    assert labels_of(json.loads(out)["top"]) == WANT


def test_timeline_windows_break_ties_in_label_order(rec, index_video, tied_scores):
    record = rec.timeline(index_video, window=1.0, stride=1.0, topk=4)
    assert record["windows"] and all(labels_of(w["top"]) == WANT for w in record["windows"])


def test_index_tag_breaks_ties_in_label_order(clip_file, index_video, tmp_path, tied_scores):
    idx = text4vis.VideoIndex.build([index_video], str(tmp_path / "idx"), clip=clip_file, frames=4, workers=0)
    tags = idx.tag(LABELS, topk=4)
    assert len(tags) == 1 and labels_of(tags[0]["top"]) == WANT
    names = tmp_path / "labels.txt"
    names.write_text("\n".join(LABELS) + "\n")
    rc, out, err = run_cli("index", "tag", tmp_path / "idx", "--labels", names, "--topk", "4", "--json")
    assert rc == 0, err
    assert labels_of(json.loads(out.splitlines()[0])["top"]) == WANT
