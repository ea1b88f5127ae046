"""Figures for evaluation reports (matplotlib, Agg backend, PNG output).

Every function creates the parent folder of ``path``, saves a PNG at
:data:`DPI` dots per inch and closes its figure. Figure sizes are in inches,
so a saved image is ``figsize * DPI`` pixels (``bbox_inches`` is not used, so
the size is exact).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import Normalize, PowerNorm  # noqa: E402
import numpy as np  # noqa: E402
from scipy.cluster.hierarchy import leaves_list, linkage  # noqa: E402
from scipy.spatial.distance import squareform  # noqa: E402

DPI = 120
MAX_INCHES = 16.0
MAX_LABELLED = 60  # per-class tick labels only up to this many classes


def _prepare(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


SOFTWARE = "text4vis"  # the PNG's Software field: how an existing file is known as one of our plots


def is_text4vis_png(path: str) -> bool:
    """A PNG that text4vis wrote (its Software field says so)."""
    from PIL import Image
    with Image.open(path) as im:
        return im.format == "PNG" and str(im.info.get("Software", "")).startswith(SOFTWARE)


def _save(fig: plt.Figure, path: str | Path) -> None:
    from .files import atomic_write
    path = _prepare(path)
    try:  # written whole or not at all: a failed save never leaves half a PNG or replaces the old one
        atomic_write(str(path), lambda tmp: fig.savefig(tmp, dpi=DPI, format="png", metadata={"Software": SOFTWARE}))
    finally:
        plt.close(fig)


@contextlib.contextmanager
def quiet_matplotlib():
    """matplotlib's own warnings and log lines (layout, fonts) kept off stderr while a figure is drawn: the
    caller has dealt with what they would say (`fonts_for`); text4vis's own warnings still pass."""
    log = logging.getLogger("matplotlib")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"matplotlib\.")
            yield
    finally:
        log.setLevel(level)


MISSING_GLYPH = "\u25a1"  # WHITE SQUARE, in DejaVu Sans: stands for a character no installed font has
_CHARMAPS: dict[str, set] = {}


def _charmap(fname: str) -> set:
    if fname not in _CHARMAPS:
        from matplotlib.ft2font import FT2Font
        try:
            _CHARMAPS[fname] = set(FT2Font(fname).get_charmap())
        except Exception:  # a font file FreeType cannot read
            _CHARMAPS[fname] = set()
    return _CHARMAPS[fname]


def fonts_for(texts: Sequence[str]) -> tuple[list[str], list[str]]:
    """(font families, texts) for drawing `texts` without missing glyphs: matplotlib's default font first,
    then, for characters it lacks (CJK class names, say), the installed fonts that have them (matplotlib
    falls back along the list). A character no installed font has becomes MISSING_GLYPH in the texts
    returned, with one Text4VisWarning naming what to install, instead of matplotlib's warning per glyph."""
    from matplotlib import font_manager
    from .errors import Text4VisWarning
    default = font_manager.findfont(font_manager.FontProperties(family=plt.rcParams["font.family"]))
    need = {ord(c) for t in texts for c in str(t) if c.isprintable()} - _charmap(default)
    families = [font_manager.FontProperties(fname=default).get_name()]
    if need:
        for entry in font_manager.fontManager.ttflist:
            if entry.name.startswith("Last Resort"):  # one placeholder box per Unicode block: not the glyphs
                continue
            have = need & _charmap(entry.fname)
            if have and entry.name not in families:
                families.append(entry.name)
                need -= have
            if not need:
                break
    if not need:
        return families, [str(t) for t in texts]
    missing = "".join(sorted(chr(c) for c in need))[:20]
    warnings.warn(Text4VisWarning(
        f"no installed font has the characters {missing!r}; the plot draws them as {MISSING_GLYPH} (install a font "
        f"that has them, e.g. Noto Sans CJK for Chinese, Japanese and Korean names)"), stacklevel=3)
    return families, ["".join(MISSING_GLYPH if ord(c) in need else c for c in str(t)) for t in texts]


def _square_size(c: int) -> float:
    """Side of a square heatmap figure in inches: grows with C, 6..16."""
    return float(min(MAX_INCHES, max(6.0, 4.0 + 0.2 * c)))


def _normalize_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def cluster_order(matrix: np.ndarray) -> np.ndarray:
    """Order of classes so that related classes sit together.

    ``matrix`` is a ``(C, C)`` similarity or count matrix. It is symmetrised,
    shifted/scaled to ``[0, 1]`` (min-max over the off-diagonal entries), turned
    into the distance ``1 - similarity`` (zero diagonal), clustered with
    average linkage and ordered by ``leaves_list``. Identity for ``C <= 2`` or
    a constant matrix.
    """
    m = np.asarray(matrix, dtype=np.float64)
    c = m.shape[0]
    if c <= 2:
        return np.arange(c)
    sim = (m + m.T) / 2.0
    off = ~np.eye(c, dtype=bool)
    lo, hi = sim[off].min(), sim[off].max()
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return np.arange(c)
    sim = (sim - lo) / (hi - lo)
    dist = np.clip(1.0 - sim, 0.0, None)
    np.fill_diagonal(dist, 0.0)
    z = linkage(squareform(dist, checks=False), method="average")
    return np.asarray(leaves_list(z), dtype=np.int64)


def plot_confusion(
    conf: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    title: str = "Confusion matrix",
) -> None:
    """Row-normalised confusion heatmap (rows true, columns predicted).

    Classes are ordered by :func:`cluster_order` of the symmetrised,
    row-normalised confusion. Tick labels carry class names when
    ``C <= 60``; otherwise there are no per-class ticks and the title says
    the ordering and that the most confused pairs are in confused_pairs.csv.
    Colour scale 0..1, linear up to 60 classes, square-root (``PowerNorm(0.5)``)
    above so that small off-diagonal fractions stay visible. Figure is square,
    side ``min(16, max(6, 4 + 0.2 C))`` inches.
    """
    conf = np.asarray(conf, dtype=np.float64)
    c = conf.shape[0]
    rows = conf.sum(axis=1, keepdims=True)
    norm = conf / np.where(rows > 0, rows, 1.0)
    order = cluster_order(norm + norm.T)
    shown = norm[np.ix_(order, order)]

    side = _square_size(c)
    fig, ax = plt.subplots(figsize=(side, side))
    # Above 60 classes most cells are tiny fractions: a square-root colour
    # scale keeps off-diagonal confusions visible.
    norm_c = Normalize(0.0, 1.0) if c <= MAX_LABELLED else PowerNorm(0.5, 0.0, 1.0)
    im = ax.imshow(shown, cmap="viridis", norm=norm_c, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    if c <= MAX_LABELLED:
        names = [str(class_names[i]) for i in order]
        ax.set_xticks(range(c))
        ax.set_yticks(range(c))
        fs = 8 if c <= 30 else 6
        ax.set_xticklabels(names, rotation=90, fontsize=fs)
        ax.set_yticklabels(names, fontsize=fs)
        ax.set_title(title)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(
            f"{title} ({c} classes, ordered by hierarchical clustering of confusion;\n"
            "most confused pairs are listed in confused_pairs.csv)"
        )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    _save(fig, path)


def similarity_scale(sim: np.ndarray) -> tuple[float, float, str]:
    """(vmin, vmax, colour map) of one similarity map: -1..1 (diverging) when some off-diagonal value is
    negative; otherwise from the lowest off-diagonal value (rounded down to 0.001) to 1, so that rows that are
    all alike (a text classifier of few classes saturates near 1) still show their differences."""
    off = sim[~np.eye(len(sim), dtype=bool)]
    if off.size == 0 or off.min() < 0:
        return -1.0, 1.0, "RdBu_r"
    low = float(np.floor(off.min() * 1000) / 1000)
    return min(low, 0.999), 1.0, "viridis"


def plot_correlation(
    classifiers: list[tuple[str, np.ndarray]],
    class_names: Sequence[str],
    path: str | Path,
    classes: int | list[int] | None = 20,
    seed: int = 0,
) -> list[int]:
    """Side-by-side class-by-class cosine-similarity maps of classifiers.

    For each ``(title, weights (C, D))`` the rows are L2-normalised and the
    cosine similarity of the chosen classes is shown. ``classes`` is a list
    of class ids, or an int ``n`` (``n`` distinct random ids drawn with
    ``np.random.default_rng(seed)``, all classes when ``n >= C``), or None for
    all classes. All panels use the order from :func:`cluster_order` of the
    FIRST classifier's similarity. Each panel has its own colour bar, whose
    range :func:`similarity_scale` chooses (stated in its label). Class names
    label the axes when at most 60 classes are shown. A panel is
    ``min(16, max(5, 3 + 0.15 n))`` inches high and wide (plus 1 inch), grown
    when the longest class name and the title would leave the map less than
    0.6 of that (total width capped at 48), so that nothing is clipped.

    Returns the class ids shown, in plot order.
    """
    if not classifiers:
        raise ValueError("need at least one classifier")
    c = np.asarray(classifiers[0][1]).shape[0]
    if classes is None:
        ids = np.arange(c)
    elif isinstance(classes, (int, np.integer)):
        if classes < 1:
            raise ValueError(f"need at least 1 class to plot (got {classes})")
        n = min(int(classes), c)
        ids = np.sort(np.random.default_rng(seed).choice(c, size=n, replace=False))
    else:
        ids = np.asarray(list(classes), dtype=np.int64)
        if ids.size == 0:
            raise ValueError("need at least 1 class to plot (got an empty list)")
    sims = []
    for _, w in classifiers:
        wn = _normalize_rows(np.asarray(w)[ids])
        sims.append(wn @ wn.T)
    order = cluster_order(sims[0])
    shown_ids = [int(i) for i in ids[order]]
    n = len(shown_ids)

    labelled = n <= MAX_LABELLED
    names = [str(class_names[i]) for i in shown_ids]
    fs = 8 if n <= 30 else 5
    # room for tick labels (inches, from the longest name) and the title lines, so nothing is clipped
    label_in = (max(len(t) for t in names) * fs * 0.5 / 72 + 0.3) if labelled else 0.3
    title_in = 0.3 * max(str(t).count("\n") + 1 for t, _ in classifiers) + 0.3
    panel = float(min(MAX_INCHES, max(5.0, 3.0 + 0.15 * n)))
    k = len(classifiers)
    side = 0.6 * panel  # the smallest map worth drawing: the figure grows when labels would leave less
    width = min(3 * MAX_INCHES, max(panel * k + 1.0, k * (side + label_in + 0.8) + 0.5))
    height = max(panel, side + label_in + title_in + 0.2)
    fig, axes = plt.subplots(1, k, figsize=(width, height), squeeze=False, layout="constrained")
    for ax, (title, _), sim in zip(axes[0], classifiers, sims):
        vmin, vmax, cmap = similarity_scale(sim)
        im = ax.imshow(sim[np.ix_(order, order)], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(str(title), fontsize=10)
        if labelled:
            ax.set_xticks(range(n))
            ax.set_yticks(range(n))
            ax.set_xticklabels(names, rotation=90, fontsize=fs)
            ax.set_yticklabels(names, fontsize=fs)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
        scale = "-1 to 1" if cmap == "RdBu_r" else f"{vmin:.3f} (lowest off-diagonal) to 1"
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).set_label(f"cosine similarity, {scale}", fontsize=8)
    _save(fig, path)
    return shown_ids


def nearest_classes(
    classifier: np.ndarray, class_names: Sequence[str], k: int = 5
) -> list[dict]:
    """For each class: ``{"id", "name", "neighbours": [{"id", "name", "similarity"}]}``.

    Neighbours are the ``k`` other classes (itself excluded) with the highest
    cosine similarity of L2-normalised rows, best first, ties by lower id.
    """
    if int(k) < 1:
        raise ValueError(f"k must be at least 1 (got {k})")
    w = _normalize_rows(classifier)
    c = w.shape[0]
    sim = w @ w.T
    np.fill_diagonal(sim, -np.inf)
    k = min(int(k), max(c - 1, 0))
    order = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    out = []
    for i in range(c):
        out.append(
            {
                "id": i,
                "name": str(class_names[i]),
                "neighbours": [
                    {"id": int(j), "name": str(class_names[j]), "similarity": float(sim[i, j])}
                    for j in order[i]
                ],
            }
        )
    return out


def plot_curves(
    series: dict[str, list[tuple[float, float]]],
    path: str | Path,
    xlabel: str,
    ylabel: str,
    title: str,
) -> None:
    """Line plot, one line per named series of ``(x, y)`` points; legend, grid. 8x5 in."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, pts in series.items():
        if len(pts) == 0:
            continue
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker="o" if len(pts) <= 30 else None, label=str(name))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend()
    fig.tight_layout()
    _save(fig, path)


def save_image_strip(
    clips: list[tuple[str, np.ndarray]],
    path: str | Path,
    frames_per_clip: int = 8,
) -> None:
    """Grid of frames: one row per clip, its title on the left.

    Each clip is ``(T, H, W, 3)`` uint8; ``min(frames_per_clip, T)`` evenly
    spaced frames (``np.linspace(0, T - 1, n)`` rounded) are shown. Figure is
    ``(1.5 * frames_per_clip + 2) x (1.5 * rows)`` inches.
    """
    rows = max(len(clips), 1)
    cols = max(int(frames_per_clip), 1)
    fig, axes = plt.subplots(
        rows, cols + 1, figsize=(1.5 * cols + 2.0, 1.5 * rows), squeeze=False,
        gridspec_kw={"width_ratios": [2.0 / 1.5] + [1.0] * cols},
    )
    for r in range(rows):
        for ax in axes[r]:
            ax.axis("off")
    for r, (title, frames) in enumerate(clips):
        frames = np.asarray(frames)
        t = frames.shape[0]
        n = min(cols, t)
        idx = np.round(np.linspace(0, t - 1, n)).astype(int) if n else []
        axes[r, 0].text(
            0.95, 0.5, str(title), ha="right", va="center", fontsize=9, wrap=True,
            transform=axes[r, 0].transAxes,
        )
        for j, fi in enumerate(idx):
            axes[r, j + 1].imshow(frames[fi])
    fig.subplots_adjust(left=0.01, right=0.99, top=0.99, bottom=0.01, wspace=0.05, hspace=0.05)
    _save(fig, path)


def plot_bars(
    values: dict[str, float],
    path: str | Path,
    ylabel: str,
    title: str,
    reference: float | None = None,
    reference_label: str = "reference",
) -> None:
    """Bar chart of named values, optional dashed horizontal ``reference`` line, named
    ``reference_label`` in the legend (e.g. "chance").

    Width ``min(16, max(6, 1 + 0.5 * len(values)))`` inches, height 5.
    """
    names = [str(k) for k in values]
    vals = [float(v) for v in values.values()]
    width = float(min(MAX_INCHES, max(6.0, 1.0 + 0.5 * len(names))))
    fig, ax = plt.subplots(figsize=(width, 5))
    ax.bar(range(len(names)), vals, color="tab:blue")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center")
    if reference is not None:
        ax.axhline(float(reference), color="k", linestyle="--", linewidth=1, label=f"{reference_label} ({reference:g})")
        ax.legend()
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
