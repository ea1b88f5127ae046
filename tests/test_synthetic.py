"""Tests for the procedural synthetic benchmark (text4vis.synthetic)."""

from __future__ import annotations

import csv
from pathlib import Path

import av
import numpy as np
import pytest

from text4vis import synthetic as S

SEEDS = (0, 1, 2)


def render(name: str, seed: int, num_frames: int = 16, size: int = 64):
    shape, motion = S.parse_class_name(name)
    return S.render_clip(shape, motion, np.random.default_rng(seed), num_frames=num_frames, size=size)


def fg_mask(frames: np.ndarray, gt: dict) -> np.ndarray:
    """Foreground mask measured from pixels: pixels close to the object colour.

    The renderer keeps every background colour >= 120 RGB units from the
    foreground colour and pixel noise is small, so a threshold of 60 separates them.
    """
    fg = np.asarray(gt["fg_color"], np.float32)
    return np.linalg.norm(frames.astype(np.float32) - fg, axis=-1) < 60.0


def centroids(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0 : mask.shape[1], 0 : mask.shape[2]]
    area = mask.sum(axis=(1, 2)).astype(np.float64)
    assert (area > 0).all(), "object not visible in some frame"
    return (mask * xs).sum(axis=(1, 2)) / area, (mask * ys).sum(axis=(1, 2)) / area


def estimated_rotation(m0: np.ndarray, m1: np.ndarray, cx: float, cy: float) -> float:
    """Angle (deg, clockwise on screen) that best maps mask m0 onto m1 about (cx, cy)."""
    h, w = m0.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    dx, dy = xs - cx, ys - cy
    best, best_err = 0.0, np.inf
    for a in np.arange(-35.0, 35.5, 1.0):
        r = np.deg2rad(a)
        # Inverse-rotate output pixel positions to sample m0 (y down: +a is clockwise).
        sx = np.rint(cx + np.cos(r) * dx + np.sin(r) * dy).astype(int)
        sy = np.rint(cy - np.sin(r) * dx + np.cos(r) * dy).astype(int)
        inside = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
        warped = np.zeros_like(m0)
        warped[inside] = m0[sy[inside], sx[inside]]
        err = np.count_nonzero(warped != m1)
        if err < best_err:
            best, best_err = a, err
    return best


# --------------------------------------------------------------------------- #
# Class names and held-out split
# --------------------------------------------------------------------------- #
def test_class_names_grid():
    names = S.class_names()
    assert len(names) == len(S.DEFAULT_SHAPES) * len(S.DEFAULT_MOTIONS)
    assert "circle moving left" in names and "star rotating counterclockwise" in names
    assert len(set(names)) == len(names)
    assert S.class_names(["star"], ["growing", "shrinking"]) == ["star growing", "star shrinking"]
    assert len(S.class_names(S.SHAPES, S.MOTIONS)) == len(S.SHAPES) * len(S.MOTIONS)
    for name in names:
        assert S.parse_class_name(name) == tuple(name.split(" ", 1))
        assert " " not in S.class_slug(name)
    with pytest.raises(ValueError):
        S.class_names(["hexagon"])
    with pytest.raises(ValueError):
        S.class_names(motions=["jumping"])


def test_default_benchmark_needs_temporal_order():
    names = set(S.class_names())
    for a, b in [("moving left", "moving right"), ("moving up", "moving down"),
                 ("growing", "shrinking"), ("rotating clockwise", "rotating counterclockwise")]:
        assert any(f"{s} {a}" in names and f"{s} {b}" in names for s in S.DEFAULT_SHAPES)


@pytest.mark.parametrize(
    "shapes,motions",
    [(None, None), (["circle", "square", "triangle"], ["moving left", "moving right", "growing", "rotating clockwise"]),
     (["star", "cross"], ["moving up", "moving down"])],
)
def test_default_heldout_is_zero_shot_plausible(shapes, motions):
    grid = S.class_names(shapes, motions)
    held = S.default_heldout(shapes, motions)
    assert held == S.default_heldout(shapes, motions)  # deterministic
    assert 1 <= len(held) <= 4 and set(held) <= set(grid)
    seen = [c for c in grid if c not in held]
    seen_shapes = {S.parse_class_name(c)[0] for c in seen}
    seen_motions = {S.parse_class_name(c)[1] for c in seen}
    for c in held:
        shape, motion = S.parse_class_name(c)
        assert shape in seen_shapes and motion in seen_motions
    assert S.default_heldout(["circle"], ["growing", "shrinking"]) == []


# --------------------------------------------------------------------------- #
# Rendering: determinism, format, labels
# --------------------------------------------------------------------------- #
def test_render_format_and_gt():
    frames, gt = render("triangle bouncing", 0, num_frames=12, size=48)
    assert frames.dtype == np.uint8 and frames.shape == (12, 48, 48, 3)
    assert gt["label"] == "triangle bouncing"
    for key in ("x", "y", "scale", "radius", "angle"):
        assert np.asarray(gt[key]).shape == (12,)
    # The object stays inside the frame.
    r = np.asarray(gt["radius"])
    assert (gt["x"] - r >= 0).all() and (gt["x"] + r <= 47).all()
    assert (gt["y"] - r >= 0).all() and (gt["y"] + r <= 47).all()
    with pytest.raises(ValueError):
        S.render_clip("hexagon", "growing", np.random.default_rng(0))
    with pytest.raises(ValueError):
        S.render_clip("circle", "jumping", np.random.default_rng(0))


def test_render_deterministic():
    for name in ("star moving left", "square rotating clockwise", "circle bouncing"):
        a, gta = render(name, 7)
        b, gtb = render(name, 7)
        c, _ = render(name, 8)
        assert np.array_equal(a, b)
        assert np.array_equal(gta["x"], gtb["x"]) and gta["fg_color"] == gtb["fg_color"]
        assert not np.array_equal(a, c)


def test_clip_rng_per_video():
    def draw(*key):
        return S.clip_rng(*key).integers(0, 2**62, size=4)

    assert np.array_equal(draw(0, "train", "star growing", 3), draw(0, "train", "star growing", 3))
    base = draw(0, "train", "star growing", 3)
    for other in [(1, "train", "star growing", 3), (0, "val", "star growing", 3),
                  (0, "train", "star shrinking", 3), (0, "train", "star growing", 4)]:
        assert not np.array_equal(base, draw(*other))


def test_nuisance_factors_vary():
    fgs, textures, sizes = set(), set(), set()
    for seed in range(12):
        _, gt = render("square moving right", seed)
        fgs.add(gt["fg_color"])
        textures.add(gt["texture"])
        sizes.add(round(float(gt["radius"][0]), 3))
    assert len(fgs) == 12 and len(sizes) == 12 and len(textures) >= 3


@pytest.mark.parametrize("shape", S.SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_translation_labels_from_pixels(shape, seed):
    for motion, axis, sign in [("moving left", "x", -1), ("moving right", "x", 1),
                               ("moving up", "y", -1), ("moving down", "y", 1)]:
        frames, gt = render(f"{shape} {motion}", seed)
        # Ground truth: strictly monotonic along the axis, constant on the other.
        other = "y" if axis == "x" else "x"
        assert (sign * np.diff(gt[axis]) > 0).all(), motion
        assert np.ptp(gt[other]) == 0
        # Pixels: the measured centroid moves the same way, by the same amount.
        cx, cy = centroids(fg_mask(frames, gt))
        c = cx if axis == "x" else cy
        assert (sign * np.diff(c) > 0).all(), f"{shape} {motion}: {c}"
        assert abs((c[-1] - c[0]) - (gt[axis][-1] - gt[axis][0])) < 1.0
        assert abs(sign * (c[-1] - c[0])) > 10  # clearly visible motion


@pytest.mark.parametrize("shape", S.SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_scale_labels_from_pixels(shape, seed):
    for motion, sign in [("growing", 1), ("shrinking", -1)]:
        frames, gt = render(f"{shape} {motion}", seed)
        assert (sign * np.diff(gt["scale"]) > 0).all()
        area = fg_mask(frames, gt).sum(axis=(1, 2)).astype(np.float64)
        assert (sign * np.diff(area) > 0).all(), f"{shape} {motion}: {area}"
        ratio = area[-1] / area[0]
        assert (ratio > 2.0) if sign > 0 else (ratio < 0.5)
        # Centre stays put.
        cx, cy = centroids(fg_mask(frames, gt))
        assert np.ptp(gt["x"]) == 0 and np.ptp(gt["y"]) == 0


@pytest.mark.parametrize("shape", S.SHAPES)
@pytest.mark.parametrize("seed", SEEDS)
def test_rotation_labels(shape, seed):
    for motion, sign in [("rotating clockwise", 1), ("rotating counterclockwise", -1)]:
        frames, gt = render(f"{shape} {motion}", seed)
        # Ground truth: angle (clockwise positive) strictly monotonic.
        assert (sign * np.diff(gt["angle"]) > 0).all()
        assert np.ptp(gt["x"]) == 0 and np.ptp(gt["scale"]) == 0
        # Pixels: the rotation that best maps frame t onto t+2 has the right sign.
        mask = fg_mask(frames, gt)
        x, y = float(gt["x"][0]), float(gt["y"][0])
        est = np.array([estimated_rotation(mask[t], mask[t + 2], x, y) for t in range(0, 14, 3)])
        assert (sign * est > 0).mean() >= 0.8, f"{shape} {motion}: {est}"


@pytest.mark.parametrize("seed", SEEDS)
def test_bouncing(seed):
    frames, gt = render("star bouncing", seed)
    y = np.asarray(gt["y"])
    assert np.ptp(gt["x"]) == 0 and np.ptp(y) > 8
    # At least one floor contact: the vertical velocity flips from down to up.
    dy = np.diff(y)
    assert any(dy[i] > 0 and dy[i + 1] < 0 for i in range(len(dy) - 1))
    _, cy = centroids(fg_mask(frames, gt))
    assert np.corrcoef(cy, y)[0, 1] > 0.99


# --------------------------------------------------------------------------- #
# Video I/O
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("codec", sorted(S.CODEC_EXTENSIONS))
def test_write_video_roundtrip(tmp_path, codec):
    frames, _ = render("triangle moving right", 0, num_frames=9)
    path = tmp_path / f"clip{S.CODEC_EXTENSIONS[codec]}"
    S.write_video(path, frames, fps=8, codec=codec)
    decoded = S.read_video(path)
    assert decoded.shape == frames.shape
    # The content survives compression (noise and chroma subsampling aside).
    assert np.abs(decoded.astype(np.float32) - frames).mean() < 10


def test_write_video_reproducible(tmp_path):
    """Same frames -> same video, also between other encodes (x264 mbtree regression)."""
    clips = [render(n, 3, num_frames=8, size=48)[0] for n in ("circle moving right", "star shrinking")]
    seen: list[set[bytes]] = [set(), set()]
    for _ in range(8):
        for k, frames in enumerate(clips):
            S.write_video(tmp_path / "v.mp4", frames)
            seen[k].add((tmp_path / "v.mp4").read_bytes())
    assert [len(s) for s in seen] == [1, 1]


def test_write_video_odd_size(tmp_path):
    frames, _ = render("circle growing", 0, num_frames=5, size=33)
    S.write_video(tmp_path / "odd.mp4", frames)
    assert S.read_video(tmp_path / "odd.mp4").shape == (5, 34, 34, 3)
    with pytest.raises(ValueError):
        S.write_video(tmp_path / "bad.mp4", frames.astype(np.float32))


# --------------------------------------------------------------------------- #
# Benchmark on disk
# --------------------------------------------------------------------------- #
SMALL = dict(
    shapes=["circle", "square", "triangle"],
    motions=["moving left", "moving right", "growing", "rotating clockwise"],
    train_per_class=2,
    val_per_class=2,
    num_frames=8,
    size=48,
    progress=False,
)


def read_labels(path: Path) -> list[str]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "name"]
    assert [int(r[0]) for r in rows[1:]] == list(range(len(rows) - 1))
    return [r[1] for r in rows[1:]]


def read_list(path: Path) -> list[tuple[str, int]]:
    out = []
    for line in path.read_text().splitlines():
        rel, label = line.split(" ")
        out.append((rel, int(label)))
    return out


@pytest.fixture(scope="module")
def small_benchmark(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    return S.make_benchmark(root, seed=3, **SMALL)


def test_make_benchmark_files(small_benchmark):
    info = small_benchmark
    root = Path(info["root"])
    for key in ("train_list", "val_list", "zeroshot_list", "labels_csv", "zeroshot_labels_csv"):
        assert Path(info[key]).is_file(), key
    assert (root / "labels.csv") == Path(info["labels_csv"])
    assert (root / "zeroshot_labels.csv") == Path(info["zeroshot_labels_csv"])

    seen = read_labels(root / "labels.csv")
    held = read_labels(root / "zeroshot_labels.csv")
    grid = S.class_names(SMALL["shapes"], SMALL["motions"])
    assert seen == info["classes"] and held == info["heldout_classes"]
    assert held and not set(held) & set(seen)  # held-out classes never in labels.csv
    assert sorted(seen + held) == sorted(grid)

    expected = {"train_list": (seen, 2, info["num_train"]), "val_list": (seen, 2, info["num_val"]),
                "zeroshot_list": (held, 2, info["num_zeroshot"])}
    for key, (names, per_class, num) in expected.items():
        entries = read_list(Path(info[key]))
        assert len(entries) == num == len(names) * per_class
        for rel, label in entries:
            assert 0 <= label < len(names)
            assert not Path(rel).is_absolute() and (root / rel).is_file()
            assert Path(rel).parent.name == S.class_slug(names[label])
        assert {label for _, label in entries} == set(range(len(names)))


def test_make_benchmark_videos_decode(small_benchmark):
    root = Path(small_benchmark["root"])
    for key in ("train_list", "val_list", "zeroshot_list"):
        for rel, _ in read_list(Path(small_benchmark[key])):
            with av.open(str(root / rel)) as container:
                frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
            assert len(frames) == SMALL["num_frames"], rel
            assert all(f.shape == (SMALL["size"], SMALL["size"], 3) for f in frames)


def test_make_benchmark_videos_match_per_video_seed(small_benchmark):
    """Each video can be regenerated on its own from (seed, split, class, index)."""
    root = Path(small_benchmark["root"])
    split_of = {"train_list": "train", "val_list": "val", "zeroshot_list": "zeroshot"}
    for key, split in split_of.items():
        names = small_benchmark["classes"] if split != "zeroshot" else small_benchmark["heldout_classes"]
        rel, label = read_list(Path(small_benchmark[key]))[-1]
        index = int(Path(rel).stem)
        shape, motion = S.parse_class_name(names[label])
        frames, _ = S.render_clip(shape, motion, S.clip_rng(3, split, names[label], index),
                                  num_frames=SMALL["num_frames"], size=SMALL["size"])
        decoded = S.read_video(root / rel)
        assert np.abs(decoded.astype(np.float32) - frames).mean() < 10


def test_make_benchmark_deterministic(tmp_path, small_benchmark):
    again = S.make_benchmark(tmp_path / "again", seed=3, **SMALL)
    other = S.make_benchmark(tmp_path / "other", seed=4, **SMALL)
    for key in ("train_list", "val_list", "zeroshot_list"):
        assert Path(again[key]).read_text() == Path(small_benchmark[key]).read_text()
    rels = [rel for rel, _ in read_list(Path(again["train_list"]))[:3]]
    for rel in rels:
        a = S.read_video(Path(small_benchmark["root"]) / rel)
        assert np.array_equal(a, S.read_video(Path(again["root"]) / rel))
        assert not np.array_equal(a, S.read_video(Path(other["root"]) / rel))


def test_make_benchmark_heldout_options(tmp_path):
    cfg = dict(SMALL, train_per_class=1, val_per_class=1)
    info = S.make_benchmark(tmp_path / "explicit", heldout=["square growing"], **cfg)
    assert info["heldout_classes"] == ["square growing"] and info["num_zeroshot"] == 1
    assert "square growing" not in read_labels(Path(info["labels_csv"]))

    none = S.make_benchmark(tmp_path / "none", heldout=[], **cfg)
    assert none["heldout_classes"] == [] and none["num_zeroshot"] == 0
    assert Path(none["zeroshot_list"]).read_text() == ""
    assert read_labels(Path(none["zeroshot_labels_csv"])) == []

    with pytest.raises(ValueError):
        S.make_benchmark(tmp_path / "bad", heldout=["star growing"], **cfg)
