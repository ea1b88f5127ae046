import time

import matplotlib.image as mpimg
import numpy as np
import pytest

from text4vis import plots as P


def _size(path):
    img = mpimg.imread(str(path))
    return img.shape[1], img.shape[0]  # width, height


def _expected(w_in, h_in):
    return round(w_in * P.DPI), round(h_in * P.DPI)


def _close(actual, expected):
    return all(abs(a - e) <= 1 for a, e in zip(actual, expected))


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_cluster_order_groups_related():
    assert P.cluster_order(np.eye(2)).tolist() == [0, 1]
    # classes 0,2,4 similar; 1,3,5 similar
    g = np.array([0, 1, 0, 1, 0, 1])
    sim = (g[:, None] == g[None, :]).astype(float) + 0.01 * np.eye(6)
    order = P.cluster_order(sim).tolist()
    assert sorted(order) == list(range(6))
    groups = [g[i] for i in order]
    assert groups in ([0, 0, 0, 1, 1, 1], [1, 1, 1, 0, 0, 0])


@pytest.mark.slow
def test_plot_confusion_small_and_large(tmp_path):
    rng = np.random.default_rng(0)
    conf = rng.integers(0, 5, size=(10, 10)) + np.eye(10, dtype=int) * 20
    p = tmp_path / "sub" / "conf.png"
    P.plot_confusion(conf, [f"class {i}" for i in range(10)], p)
    assert p.exists()
    side = P._square_size(10)
    assert _close(_size(p), _expected(side, side))

    conf = rng.integers(0, 3, size=(400, 400)) + np.eye(400, dtype=int) * 10
    p = tmp_path / "conf400.png"
    t0 = time.time()
    P.plot_confusion(conf, [f"c{i}" for i in range(400)], p)
    assert time.time() - t0 < 20
    assert _close(_size(p), _expected(16, 16))


@pytest.mark.slow
def test_plot_correlation_20_and_400(tmp_path):
    rng = np.random.default_rng(0)
    names = [f"action {i}" for i in range(100)]
    a = rng.normal(size=(100, 32))
    b = a + rng.normal(size=(100, 32))
    p = tmp_path / "corr.png"
    ids = P.plot_correlation([("text", a), ("random", b)], names, p, classes=20, seed=0)
    assert len(ids) == 20 and len(set(ids)) == 20 and all(0 <= i < 100 for i in ids)
    assert p.exists()
    panel = max(5.0, 3 + 0.15 * 20)
    assert _close(_size(p), _expected(panel * 2 + 1, panel))
    # same seed -> same set of classes
    ids2 = P.plot_correlation([("text", a)], names, tmp_path / "c2.png", classes=20, seed=0)
    assert sorted(ids2) == sorted(ids)
    # explicit list
    ids3 = P.plot_correlation([("text", a)], names, tmp_path / "c3.png", classes=[5, 6, 7])
    assert sorted(ids3) == [5, 6, 7]

    big = rng.normal(size=(400, 64))
    t0 = time.time()
    ids4 = P.plot_correlation(
        [("a", big), ("b", rng.normal(size=(400, 64)))], [f"c{i}" for i in range(400)],
        tmp_path / "c400.png", classes=None,
    )
    assert time.time() - t0 < 20
    assert sorted(ids4) == list(range(400))
    assert (tmp_path / "c400.png").exists()


def test_nearest_classes():
    rng = np.random.default_rng(0)
    base = _unit(rng.normal(size=(6, 16)))
    clf = np.vstack([base, base[2] + 0.01 * rng.normal(size=16)])  # row 6 ~ row 2
    names = [f"n{i}" for i in range(7)]
    nn = P.nearest_classes(clf * 3.0, names, k=3)
    assert len(nn) == 7
    assert nn[6]["neighbours"][0]["id"] == 2
    assert nn[2]["neighbours"][0]["name"] == "n6"
    assert nn[2]["neighbours"][0]["similarity"] == pytest.approx(1.0, abs=1e-3)
    assert len(nn[0]["neighbours"]) == 3
    assert all(n["id"] != 0 for n in nn[0]["neighbours"])


def test_plot_curves_bars_strip(tmp_path):
    p = tmp_path / "curves.png"
    P.plot_curves({"train": [(0, 1.0), (1, 0.5)], "val": [(0, 1.2), (1, 0.8)]}, p, "epoch", "loss", "Loss")
    assert _close(_size(p), _expected(8, 5))

    p = tmp_path / "bars.png"
    P.plot_bars({"a": 0.5, "b": 0.7, "c": 0.2}, p, "accuracy", "Acc", reference=0.1)
    assert _close(_size(p), _expected(6, 5))

    rng = np.random.default_rng(0)
    clips = [
        ("clip one", rng.integers(0, 255, size=(16, 32, 40, 3), dtype=np.uint8)),
        ("clip two", rng.integers(0, 255, size=(4, 32, 40, 3), dtype=np.uint8)),
    ]
    p = tmp_path / "deep" / "strip.png"
    P.save_image_strip(clips, p, frames_per_clip=8)
    assert _close(_size(p), _expected(1.5 * 8 + 2, 1.5 * 2))


def _drawn_figure(monkeypatch):
    """Capture the figure a plot function saves (drawn, so text positions are final)."""
    figs = []
    real = P._save

    def keep(fig, path):
        from matplotlib.text import Text
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        fig.text_extents = [(t.get_text(), t.get_window_extent(renderer)) for t in fig.findobj(Text)
                            if t.get_visible() and t.get_text().strip()]
        figs.append(fig)
        real(fig, path)
    monkeypatch.setattr(P, "_save", keep)
    return figs


@pytest.mark.slow
def test_correlation_four_panels_long_names_nothing_clipped(tmp_path, monkeypatch):
    """Four inputs with Kinetics' longest class names: every title, tick label and colour-bar label lies
    inside the saved image (issue 13: titles and ticks were clipped)."""
    from text4vis.labels import load_labels
    names = load_labels("k400")
    rng = np.random.default_rng(0)
    base = rng.normal(size=(len(names), 32))
    long = [i for i, n in enumerate(names) if len(n) > 30][:5]
    assert long, "k400 has long class names"
    figs = _drawn_figure(monkeypatch)
    ids = P.plot_correlation([(f"run {t}/best.safetensors (text)", base + s * rng.normal(size=base.shape))
                              for t, s in ((1, 0), (2, 1), (3, 3), (4, 30))],
                             names, tmp_path / "c4.png", classes=long + list(range(15)))
    assert len(ids) == 20
    fig = figs[0]
    box = fig.bbox
    texts = fig.text_extents
    assert sum(text == names[long[0]] for text, _ in texts) == 8  # x and y ticks of 4 panels
    assert sum(text.startswith("run ") for text, _ in texts) == 4  # the titles
    for text, e in texts:
        assert e.x0 >= box.x0 - 1 and e.y0 >= box.y0 - 1 and e.x1 <= box.x1 + 1 and e.y1 <= box.y1 + 1, text


def test_correlation_scale_shows_differences_near_one(tmp_path, monkeypatch):
    """A 4x4 map whose off-diagonal values are all 0.6..0.9 (CLIP text rows) gets a colour scale from its
    lowest off-diagonal value to 1, said on its colour bar; a map with negative values keeps -1..1."""
    rng = np.random.default_rng(0)
    alike = np.ones((4, 64)) + 0.6 * rng.normal(size=(4, 64))
    sim = P._normalize_rows(alike) @ P._normalize_rows(alike).T
    low = sim[~np.eye(4, dtype=bool)].min()
    assert 0.5 < low < 0.95
    figs = _drawn_figure(monkeypatch)
    P.plot_correlation([("alike", alike)], list("abcd"), tmp_path / "s.png", classes=None)
    images = [ax.images[0] for ax in figs[0].axes if ax.images]
    vmin, vmax = images[0].norm.vmin, images[0].norm.vmax
    assert vmax == 1.0 and low - 0.001 <= vmin <= low
    labels = [ax.get_ylabel() for ax in figs[0].axes if not ax.images and ax.get_ylabel()]
    assert labels == [f"cosine similarity, {vmin:.3f} (lowest off-diagonal) to 1"]
    # several panels share one scale (issue 24, item 15): a panel of alike rows is not drawn as varied as the
    # others; with a negative value anywhere it is -1..1 for all
    figs.clear()
    P.plot_correlation([("alike", alike), ("random", rng.normal(size=(4, 64)))], list("abcd"), tmp_path / "s2.png",
                       classes=None)
    images = [ax.images[0] for ax in figs[0].axes if ax.images]
    assert [(im.norm.vmin, im.norm.vmax) for im in images] == [(-1.0, 1.0)] * 2
    closer = np.ones((4, 64)) + 0.2 * rng.normal(size=(4, 64))
    figs.clear()
    P.plot_correlation([("alike", alike), ("closer", closer)], list("abcd"), tmp_path / "s3.png", classes=None)
    images = [ax.images[0] for ax in figs[0].axes if ax.images]
    assert images[0].norm.vmin == images[1].norm.vmin == vmin
    labels = [ax.get_ylabel() for ax in figs[0].axes if not ax.images and ax.get_ylabel()]
    assert labels == [f"cosine similarity, {vmin:.3f} (lowest off-diagonal) to 1, one scale for all panels"] * 2
    assert P.similarity_scale(np.eye(1)) == (-1.0, 1.0, "RdBu_r")


def test_bars_reference_is_named(tmp_path, monkeypatch):
    figs = _drawn_figure(monkeypatch)
    P.plot_bars({"a": 60.0, "b": 40.0}, tmp_path / "z.png", "top-1 (%)", "Zero-shot (dashed: chance)",
                reference=50, reference_label="chance")
    legend = figs[0].axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["chance (50)"]
