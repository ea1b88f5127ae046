"""Evaluation metrics for video recognition (numpy only).

Conventions used everywhere in this module:

* ``scores`` is an ``(N, C)`` float array (one row per video, one column per
  class); ``labels`` is an ``(N,)`` integer array of true class ids in ``[0, C)``.
* Accuracies are returned as fractions in ``[0, 1]``, never percentages; the CLI
  formats percentages.
* Ranking rule: classes are ranked by score descending, and ties are broken in
  favour of the LOWER class index (a stable argsort on ``-scores``). The rule is
  therefore deterministic: with all scores equal, the top-1 prediction is class 0.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _as_2d_scores(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (N, C), got shape {scores.shape}")
    return scores


def _as_labels(labels: np.ndarray, n: int | None = None) -> np.ndarray:
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if n is not None and labels.shape[0] != n:
        raise ValueError(f"labels has {labels.shape[0]} entries, expected {n}")
    return labels


def ranking(scores: np.ndarray) -> np.ndarray:
    """Class ids of each row ordered best first, shape ``(N, C)``.

    Rule: score descending; ties broken in favour of the lower class index
    (``np.argsort(-scores, axis=1, kind="stable")``).
    """
    scores = _as_2d_scores(scores)
    return np.argsort(-scores, axis=1, kind="stable")


def predictions(scores: np.ndarray) -> np.ndarray:
    """Top-1 predicted class per row, shape ``(N,)``, with the lower-index tie rule."""
    return ranking(scores)[:, 0]


def topk_correct(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Boolean ``(N,)``: True where the true class is among the ``k`` best classes.

    Classes are ranked by score descending with ties broken in favour of the
    lower class index (stable argsort on ``-scores``). ``k`` larger than the
    number of classes ``C`` is clipped to ``C``; ``k`` must be >= 1.
    """
    scores = _as_2d_scores(scores)
    labels = _as_labels(labels, scores.shape[0])
    if k < 1:
        raise ValueError("k must be >= 1")
    k = min(int(k), scores.shape[1])
    top = ranking(scores)[:, :k]
    return (top == labels[:, None]).any(axis=1)


def topk_accuracy(
    scores: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 5)
) -> dict[str, float]:
    """Top-k accuracy as fractions in [0, 1], e.g. ``{"top1": 0.75, "top5": 1.0}``.

    Keys are ``f"top{k}"`` with the requested ``k`` (even when ``k`` is clipped
    to ``C`` internally). NaN when there are no videos.
    """
    scores = _as_2d_scores(scores)
    out: dict[str, float] = {}
    for k in ks:
        correct = topk_correct(scores, labels, k)
        out[f"top{k}"] = float(correct.mean()) if correct.size else float("nan")
    return out


def mean_class_accuracy(
    scores: np.ndarray, labels: np.ndarray, num_classes: int | None = None
) -> float:
    """Mean over classes of per-class top-1 accuracy.

    Only classes with at least one video are averaged; classes with no videos
    are excluded (not counted as 0). ``num_classes`` defaults to ``C`` (the
    number of score columns). NaN when there are no videos.
    """
    scores = _as_2d_scores(scores)
    labels = _as_labels(labels, scores.shape[0])
    c = scores.shape[1] if num_classes is None else int(num_classes)
    correct = topk_correct(scores, labels, 1).astype(np.float64)
    support = np.bincount(labels, minlength=c)[:c]
    hits = np.bincount(labels, weights=correct, minlength=c)[:c]
    present = support > 0
    if not present.any():
        return float("nan")
    return float(np.mean(hits[present] / support[present]))


def average_precision(scores_c: np.ndarray, positives: np.ndarray) -> float:
    """Non-interpolated average precision of one class.

    ``AP = sum_n (R_n - R_{n-1}) * P_n`` over decreasing score thresholds, i.e.
    the mean of the precision at the rank of each positive, where tied scores
    form a single threshold (all tied items enter together). This is exactly
    ``sklearn.metrics.average_precision_score``. NaN when there are no positives.
    """
    s = np.asarray(scores_c, dtype=np.float64).reshape(-1)
    pos = np.asarray(positives).astype(bool).reshape(-1)
    if s.shape != pos.shape:
        raise ValueError("scores_c and positives must have the same length")
    n_pos = int(pos.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    tp = np.cumsum(pos[order]).astype(np.float64)
    # last index of each group of tied scores = the thresholds
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], s_sorted.size - 1]
    tp_t = tp[last]
    precision = tp_t / (last + 1)
    recall = tp_t / n_pos
    d_recall = np.diff(np.r_[0.0, recall])
    return float(np.sum(d_recall * precision))


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean of :func:`average_precision` over classes with at least one positive.

    Class ``c`` uses column ``scores[:, c]`` and positives ``labels == c``.
    Classes without positives are excluded. NaN when no class has a positive.
    """
    scores = _as_2d_scores(scores)
    labels = _as_labels(labels, scores.shape[0])
    aps = [
        average_precision(scores[:, c], labels == c)
        for c in range(scores.shape[1])
        if np.any(labels == c)
    ]
    return float(np.mean(aps)) if aps else float("nan")


def per_class_report(
    scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> list[dict]:
    """One dict per class: ``id, name, support, accuracy, ap``.

    ``accuracy`` is top-1 accuracy over the class's videos (NaN when support is
    0); ``ap`` is :func:`average_precision` of the class (NaN with no positives).
    Sorted worst accuracy first, ties by class id; NaN accuracies come last.
    """
    scores = _as_2d_scores(scores)
    labels = _as_labels(labels, scores.shape[0])
    c = scores.shape[1]
    correct = topk_correct(scores, labels, 1) if c else np.zeros(0, bool)
    rows = []
    for cid in range(c):
        mask = labels == cid
        support = int(mask.sum())
        acc = float(correct[mask].mean()) if support else float("nan")
        rows.append(
            {
                "id": cid,
                "name": str(class_names[cid]),
                "support": support,
                "accuracy": acc,
                "ap": average_precision(scores[:, cid], mask),
            }
        )
    rows.sort(key=lambda r: (np.isnan(r["accuracy"]), 0.0 if np.isnan(r["accuracy"]) else r["accuracy"], r["id"]))
    return rows


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """``(C, C)`` int64 counts; rows are true classes, columns predicted classes."""
    labels = _as_labels(labels)
    preds = _as_labels(preds, labels.shape[0])
    c = int(num_classes)
    idx = labels * c + preds
    return np.bincount(idx, minlength=c * c).reshape(c, c).astype(np.int64)


def most_confused_pairs(
    conf: np.ndarray, class_names: Sequence[str], top: int = 50
) -> list[dict]:
    """The ``top`` largest off-diagonal cells of a confusion matrix.

    Each dict has ``true``, ``predicted`` (class names), ``count`` and
    ``fraction_of_true`` (count / number of videos of the true class). Cells
    with count 0 are skipped. Sorted by count descending, then fraction
    descending, then (true id, predicted id) ascending.
    """
    conf = np.asarray(conf, dtype=np.int64)
    row_sums = conf.sum(axis=1)
    items = []
    for t, p in zip(*np.nonzero(conf)):
        if t == p:
            continue
        count = int(conf[t, p])
        frac = count / row_sums[t] if row_sums[t] else float("nan")
        items.append((t, p, count, float(frac)))
    items.sort(key=lambda x: (-x[2], -x[3], x[0], x[1]))
    return [
        {
            "true": str(class_names[t]),
            "predicted": str(class_names[p]),
            "count": count,
            "fraction_of_true": frac,
        }
        for t, p, count, frac in items[:top]
    ]


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax (subtracts the max along ``axis``)."""
    x = np.asarray(x, dtype=np.float64)
    z = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)


def _subset_result(
    embeddings: np.ndarray,
    labels: np.ndarray,
    classifier: np.ndarray,
    kept: np.ndarray,
    scale: float,
) -> dict:
    """Score the videos of ``kept`` classes against ``kept`` only (labels remapped)."""
    kept = np.asarray(kept, dtype=np.int64).reshape(-1)
    sel = np.isin(labels, kept)
    remap = np.full(classifier.shape[0], -1, dtype=np.int64)
    remap[kept] = np.arange(kept.size)
    sub_labels = remap[labels[sel]]
    if not sel.any():
        return {"classes": kept.tolist(), "num_videos": 0, "top1": float("nan"), "top5": float("nan")}
    probs = softmax(scale * embeddings[sel] @ classifier[kept].T, axis=-1)
    acc = topk_accuracy(probs, sub_labels, ks=(1, 5))
    return {
        "classes": kept.tolist(),
        "num_videos": int(sel.sum()),
        "top1": acc["top1"],
        "top5": acc["top5"],
    }


def _aggregate(splits: list[dict]) -> dict:
    """Mean and population std over the splits that hold videos (a split of classes without any
    video, possible on a partial val list, has no accuracy and is left out)."""
    scored = [s for s in splits if s["num_videos"] > 0]
    top1 = np.array([s["top1"] for s in scored], dtype=np.float64)
    top5 = np.array([s["top5"] for s in scored], dtype=np.float64)
    nan = float("nan")
    return {
        "splits": splits,
        "splits_scored": len(scored),
        "top1_mean": float(np.mean(top1)) if len(scored) else nan,
        "top1_std": float(np.std(top1)) if len(scored) else nan,
        "top5_mean": float(np.mean(top5)) if len(scored) else nan,
        "top5_std": float(np.std(top5)) if len(scored) else nan,
    }


def half_classes_protocol(
    embeddings: np.ndarray,
    labels: np.ndarray,
    classifier: np.ndarray,
    num_splits: int = 10,
    scale: float = 100.0,
) -> dict:
    """Zero-shot "half classes" protocol of the original Text4Vis code.

    For split ``s`` in ``range(num_splits)``: ``np.random.seed(s)``;
    ``kept = np.random.permutation(C)[:C // 2]``. Videos whose label is in
    ``kept`` are scored against the kept classes only,
    ``softmax(scale * embeddings[sel] @ classifier[kept].T)``, with labels
    remapped to their position in ``kept``; top-1 / top-5 (fractions, lower
    index tie rule) are computed per split.

    ``embeddings`` ``(N, D)`` and ``classifier`` ``(C, D)`` are expected to be
    L2-normalised already (not re-normalised here).

    Returns ``{"splits": [{"split", "classes", "num_videos", "top1", "top5"}, ...],
    "top1_mean", "top1_std", "top5_mean", "top5_std"}``; std is ``np.std``
    (population, ddof=0). The global numpy RNG state is saved before and
    restored after, so callers are not affected.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    classifier = np.asarray(classifier, dtype=np.float64)
    labels = _as_labels(labels, embeddings.shape[0])
    c = classifier.shape[0]
    state = np.random.get_state()
    try:
        splits = []
        for s in range(num_splits):
            np.random.seed(s)
            kept = np.random.permutation(c)[: c // 2]
            res = _subset_result(embeddings, labels, classifier, kept, scale)
            splits.append({"split": s, **res})
    finally:
        np.random.set_state(state)
    return _aggregate(splits)


def split_protocol(
    embeddings: np.ndarray,
    labels: np.ndarray,
    classifier: np.ndarray,
    splits: Sequence[np.ndarray],
    scale: float = 100.0,
) -> dict:
    """Like :func:`half_classes_protocol` but for given class subsets.

    ``splits[s]`` is an array of class ids (e.g. Kinetics-600's three fixed
    160-class splits); labels are remapped to their position in that array.
    Same output format (std is population, ddof=0).
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    classifier = np.asarray(classifier, dtype=np.float64)
    labels = _as_labels(labels, embeddings.shape[0])
    out = []
    for s, kept in enumerate(splits):
        res = _subset_result(embeddings, labels, classifier, np.asarray(kept), scale)
        out.append({"split": s, **res})
    return _aggregate(out)


def summarize(scores: np.ndarray, labels: np.ndarray) -> dict:
    """``{"top1", "top5", "mean_class_accuracy", "mAP", "num_videos"}`` (fractions)."""
    scores = _as_2d_scores(scores)
    labels = _as_labels(labels, scores.shape[0])
    acc = topk_accuracy(scores, labels, ks=(1, 5))
    return {
        "top1": acc["top1"],
        "top5": acc["top5"],
        "mean_class_accuracy": mean_class_accuracy(scores, labels),
        "mAP": mean_average_precision(scores, labels),
        "num_videos": int(scores.shape[0]),
    }
