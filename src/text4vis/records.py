"""Scores -> records: the one place class scores become `[{"label", "score"}, ...]`.

predict (`api.Recognizer`), timeline windows, `index tag` and the HTTP service all call `top_labels`, so
they agree on the order: best first, and equal scores in label order (the lower class id first: a stable
sort, as `metrics.ranking` ranks).
"""
from __future__ import annotations

import numpy as np


def _rows(scores) -> np.ndarray:
    """[N, C] or [C] scores (numpy, or a torch tensor on any device) as a float32 numpy array [N, C]."""
    if hasattr(scores, "detach"):
        scores = scores.detach().float().cpu().numpy()
    scores = np.asarray(scores, dtype=np.float32)
    return scores[None] if scores.ndim == 1 else scores


def top_labels(scores, labels: list[str], k: int) -> list[list[dict]]:
    """The k best classes of each row of `scores` [N, C] (or of one row [C]): one list per row of
    {"label", "score"} (score rounded to 6 decimals), best first, ties in label order."""
    rows = _rows(scores)
    k = max(0, min(int(k), len(labels), rows.shape[1]))
    best = np.argsort(-rows, axis=1, kind="stable")[:, :k]
    return [[{"label": labels[j], "score": round(float(row[j]), 6)} for j in ids] for row, ids in zip(rows, best)]


def window_records(spans, scores, labels: list[str], k: int) -> list[dict]:
    """The windows of a timeline record: {"start", "end", "top": top_labels} per window span and score row."""
    return [{"start": start, "end": end, "top": top}
            for (start, end), top in zip(spans, top_labels(scores, labels, k) if len(spans) else [])]
