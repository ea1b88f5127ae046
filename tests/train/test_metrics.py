import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from text4vis.train import metrics as M


def test_topk_tie_lower_index_wins():
    # all classes tied: rank is 0, 1, 2, ...
    scores = np.zeros((2, 4))
    labels = np.array([0, 1])
    assert M.topk_correct(scores, labels, 1).tolist() == [True, False]
    assert M.topk_correct(scores, labels, 2).tolist() == [True, True]
    # tie between class 1 and 3 at the top: class 1 wins
    scores = np.array([[0.1, 0.5, 0.2, 0.5]])
    assert M.topk_correct(scores, np.array([1]), 1).tolist() == [True]
    assert M.topk_correct(scores, np.array([3]), 1).tolist() == [False]
    assert M.topk_correct(scores, np.array([3]), 2).tolist() == [True]
    assert M.predictions(scores).tolist() == [1]


def test_topk_accuracy_hand_and_clip():
    scores = np.array(
        [
            [0.9, 0.1, 0.0],
            [0.2, 0.7, 0.1],
            [0.5, 0.4, 0.1],
            [0.1, 0.2, 0.7],
        ]
    )
    labels = np.array([0, 1, 1, 0])
    acc = M.topk_accuracy(scores, labels, ks=(1, 2, 5))
    assert acc["top1"] == pytest.approx(0.5)
    assert acc["top2"] == pytest.approx(0.75)  # row 3: class 0 ranked last
    assert acc["top5"] == pytest.approx(1.0)  # k clipped to C=3
    assert set(acc) == {"top1", "top2", "top5"}


def test_mean_class_accuracy_excludes_empty_class():
    # 4 classes, class 3 has no videos
    scores = np.array(
        [
            [1.0, 0, 0, 0],  # label 0 correct
            [0, 1.0, 0, 0],  # label 0 wrong
            [0, 1.0, 0, 0],  # label 1 correct
            [0, 0, 1.0, 0],  # label 2 correct
        ]
    )
    labels = np.array([0, 0, 1, 2])
    # per class: 0.5, 1, 1 -> mean 2.5/3 (class 3 excluded, not 0)
    assert M.mean_class_accuracy(scores, labels) == pytest.approx(2.5 / 3)
    assert M.mean_class_accuracy(scores, labels, num_classes=4) == pytest.approx(2.5 / 3)


def test_average_precision_hand():
    ap = M.average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0]))
    assert ap == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert np.isnan(M.average_precision(np.array([0.3, 0.2]), np.array([0, 0])))


def test_average_precision_matches_sklearn():
    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(5, 60))
        pos = rng.random(n) < 0.3
        if not pos.any():
            pos[0] = True
        s = rng.random(n)
        if trial % 2:
            s = np.round(s, 1)  # many ties
        assert M.average_precision(s, pos) == pytest.approx(average_precision_score(pos, s))


def test_map_excludes_class_without_positives():
    rng = np.random.default_rng(1)
    scores = rng.random((30, 5))
    labels = rng.integers(0, 4, size=30)  # class 4 never appears
    labels[:4] = [0, 1, 2, 3]
    expected = np.mean([average_precision_score(labels == c, scores[:, c]) for c in range(4)])
    assert M.mean_average_precision(scores, labels) == pytest.approx(expected)


def test_per_class_report_sorted():
    scores = np.array([[1.0, 0, 0], [0, 1.0, 0], [1.0, 0, 0]])
    labels = np.array([0, 1, 1])
    rep = M.per_class_report(scores, labels, ["a", "b", "c"])
    assert [r["name"] for r in rep] == ["b", "a", "c"]
    assert rep[0]["accuracy"] == pytest.approx(0.5) and rep[0]["support"] == 2
    assert rep[1]["accuracy"] == pytest.approx(1.0)
    assert np.isnan(rep[2]["accuracy"]) and np.isnan(rep[2]["ap"]) and rep[2]["support"] == 0
    assert set(rep[0]) == {"id", "name", "support", "accuracy", "ap"}


def test_confusion_and_pairs():
    labels = np.array([0, 0, 0, 1, 1, 2])
    preds = np.array([0, 1, 1, 1, 2, 0])
    conf = M.confusion_matrix(labels, preds, 3)
    assert conf.dtype == np.int64
    assert conf.tolist() == [[1, 2, 0], [0, 1, 1], [1, 0, 0]]
    pairs = M.most_confused_pairs(conf, ["a", "b", "c"])
    assert pairs[0] == {"true": "a", "predicted": "b", "count": 2, "fraction_of_true": pytest.approx(2 / 3)}
    # count 1 each: c->a (1/1) before b->c (1/2)
    assert [(p["true"], p["predicted"]) for p in pairs[1:]] == [("c", "a"), ("b", "c")]
    assert len(M.most_confused_pairs(conf, ["a", "b", "c"], top=1)) == 1


def test_softmax_stable():
    x = np.array([[1000.0, 1000.0], [-1000.0, 0.0]])
    p = M.softmax(x)
    assert np.all(np.isfinite(p))
    assert p[0].tolist() == [0.5, 0.5]
    assert p.sum(axis=1) == pytest.approx([1.0, 1.0])


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _reference_half(emb, labels, clf, num_splits, scale):
    c = clf.shape[0]
    out = []
    for s in range(num_splits):
        np.random.seed(s)
        kept = np.random.permutation(c)[: c // 2]
        kept_list = [int(k) for k in kept]
        n = t1 = t5 = 0
        for v in range(emb.shape[0]):
            if int(labels[v]) not in kept_list:
                continue
            target = kept_list.index(int(labels[v]))
            logits = [scale * float(np.dot(emb[v], clf[k])) for k in kept_list]
            m = max(logits)
            ex = [np.exp(v - m) for v in logits]
            probs = [e / sum(ex) for e in ex]
            # plain python ranking: score desc, then lower index
            rank = sorted(range(len(probs)), key=lambda j: (-probs[j], j))
            n += 1
            t1 += rank[0] == target
            t5 += target in rank[:5]
        out.append((kept_list, n, t1 / n, t5 / n))
    return out


def test_half_classes_protocol_matches_reference_and_keeps_rng():
    rng = np.random.default_rng(123)
    c, d, n = 21, 16, 200
    clf = _unit(rng.normal(size=(c, d)))
    labels = rng.integers(0, c, size=n)
    emb = _unit(clf[labels] * 0.6 + rng.normal(size=(n, d)) * 0.5)

    np.random.seed(999)
    before = np.random.get_state()
    res = M.half_classes_protocol(emb, labels, clf, num_splits=10, scale=100.0)
    after = np.random.get_state()
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]

    ref = _reference_half(emb, labels, clf, 10, 100.0)
    assert len(res["splits"]) == 10
    for s, (split, (kept, nv, t1, t5)) in enumerate(zip(res["splits"], ref)):
        assert split["split"] == s
        assert split["classes"] == kept and len(kept) == c // 2
        assert split["num_videos"] == nv
        assert split["top1"] == pytest.approx(t1)
        assert split["top5"] == pytest.approx(t5)
    t1s = np.array([r[2] for r in ref])
    t5s = np.array([r[3] for r in ref])
    assert res["top1_mean"] == pytest.approx(t1s.mean())
    assert res["top1_std"] == pytest.approx(t1s.std(ddof=0))
    assert res["top5_mean"] == pytest.approx(t5s.mean())
    assert res["top5_std"] == pytest.approx(t5s.std(ddof=0))
    assert 0 < res["top1_mean"] < 1


def test_split_protocol_given_subsets():
    rng = np.random.default_rng(5)
    c, d, n = 12, 8, 100
    clf = _unit(rng.normal(size=(c, d)))
    labels = rng.integers(0, c, size=n)
    emb = _unit(clf[labels] + rng.normal(size=(n, d)) * 0.7)
    splits = [np.array([3, 1, 7, 9]), np.array([0, 2, 4, 5, 6])]
    res = M.split_protocol(emb, labels, clf, splits)
    for s, kept in enumerate(splits):
        sel = np.isin(labels, kept)
        sub = np.array([list(kept).index(y) for y in labels[sel]])
        scores = emb[sel] @ clf[kept].T
        assert res["splits"][s]["num_videos"] == int(sel.sum())
        assert res["splits"][s]["classes"] == kept.tolist()
        assert res["splits"][s]["top1"] == pytest.approx(np.mean(scores.argmax(1) == sub))
        assert res["splits"][s]["top5"] == pytest.approx(1.0)  # <= 5 classes
    assert res["top1_std"] == pytest.approx(np.std([r["top1"] for r in res["splits"]]))


def test_summarize():
    scores = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array([0, 1, 1])
    s = M.summarize(scores, labels)
    assert s["num_videos"] == 3
    assert s["top1"] == pytest.approx(2 / 3)
    assert s["top5"] == pytest.approx(1.0)
    assert s["mean_class_accuracy"] == pytest.approx((1 + 0.5) / 2)
    exp_map = np.mean([average_precision_score(labels == c, scores[:, c]) for c in range(2)])
    assert s["mAP"] == pytest.approx(exp_map)


def test_protocol_skips_splits_without_videos():
    """A split whose kept classes have no video (partial val list) is reported but not averaged."""
    from text4vis.train.metrics import split_protocol
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(6, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cls = rng.normal(size=(4, 8))
    cls /= np.linalg.norm(cls, axis=1, keepdims=True)
    labels = np.array([0, 0, 1, 1, 0, 1])
    out = split_protocol(emb, labels, cls, [np.array([0, 1]), np.array([2, 3])])
    assert out["splits"][1]["num_videos"] == 0 and np.isnan(out["splits"][1]["top1"])
    assert out["splits_scored"] == 1
    assert out["top1_mean"] == out["splits"][0]["top1"] and out["top1_std"] == 0.0
