"""A procedural synthetic action-recognition benchmark ("shapes in motion").

Every class is a short natural-language description ``"{shape} {motion}"``, for
example ``"circle moving left"`` or ``"star rotating clockwise"``, so the class
names can be embedded by a text encoder exactly like real action labels
("playing guitar", ...). The benchmark is meant for offline demos and tests:
a tiny image tower can be trained on it from scratch on a CPU in minutes, and
zero-shot transfer to unseen shape x motion combinations can be measured.

What a clip looks like
----------------------
One filled shape moves over a static textured background for ``num_frames``
frames. Several motion pairs differ *only in temporal order* (moving left vs
moving right, up vs down, growing vs shrinking, clockwise vs counterclockwise),
so a model that averages frames without order cannot separate them. Bouncing is
a vertical bounce off an invisible floor (parabolic arcs, at least one contact).

Nuisance factors, all drawn per clip from a :class:`numpy.random.Generator`:
foreground colour (kept far from the background colours), background colours
and texture (gradient, stripes, checker, blobs), object size, start position,
static orientation, speed (translation distance, angular speed, growth range,
bounce period) and additive Gaussian pixel noise. Rendering is deterministic
given the generator state.

Rotation must be visible: every shape but the circle has an orientation, and the
circle carries a small notch in its rim. The angular speed (<= 14 deg/frame) is
below half of every shape's symmetry period (square/cross 90, star 72 deg), so
the direction of rotation is unambiguous frame to frame.

Coordinates
-----------
Ground truth uses pixel coordinates: ``x`` is the column and ``y`` the row, the
centre of pixel ``(row, col)`` is at ``(x=col, y=row)``, and *y points down*
(so "moving up" means ``y`` decreases). ``angle`` is in degrees and increases
for a rotation that is clockwise *on screen*.

On disk (:func:`make_benchmark`)
--------------------------------
::

    out_dir/
      videos/{train,val,zeroshot}/<class_slug>/<index>.mp4
      labels.csv            id,name  (seen classes, used for training)
      zeroshot_labels.csv   id,name  (held-out classes, never trained on)
      train.txt val.txt     "<relative/path.mp4> <label id>" (ids into labels.csv)
      zeroshot_val.txt      same, ids into zeroshot_labels.csv
      benchmark.json        the generation config and class lists

Each video is rendered from its own generator, seeded by
``(seed, split, class name, index)`` (:func:`clip_rng`), so any single video can
be regenerated independently of the others.
"""

from __future__ import annotations

import csv
import json
import os
import zlib
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Sequence

import av
import numpy as np
from PIL import Image, ImageDraw

from .files import check_output_folder

__all__ = [
    "SHAPES",
    "MOTIONS",
    "DEFAULT_SHAPES",
    "DEFAULT_MOTIONS",
    "CODEC_EXTENSIONS",
    "class_names",
    "class_slug",
    "parse_class_name",
    "default_heldout",
    "clip_rng",
    "render_clip",
    "write_video",
    "read_video",
    "make_benchmark",
    "COLOUR_NAMES",
    "frame_attributes",
    "caption",
    "render_captioned_frames",
]

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "diamond")
MOTIONS: tuple[str, ...] = (
    "moving left",
    "moving right",
    "moving up",
    "moving down",
    "rotating clockwise",
    "rotating counterclockwise",
    "growing",
    "shrinking",
    "bouncing",
)
# Default benchmark: 4 shapes x 9 motions = 36 classes (32 seen + 4 held out).
DEFAULT_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
DEFAULT_MOTIONS: tuple[str, ...] = MOTIONS

# Container extension for each supported codec name.
CODEC_EXTENSIONS: dict[str, str] = {
    "libx264": ".mp4",
    "h264": ".mp4",
    "mpeg4": ".mp4",
    "libvpx-vp9": ".webm",
    "mjpeg": ".avi",
}

SPLITS: tuple[str, ...] = ("train", "val", "zeroshot")

_SUPERSAMPLE = 4  # shapes are drawn at 4x resolution and box-filtered (anti-aliasing)
_TEXTURES: tuple[str, ...] = ("gradient", "stripes", "checker", "blobs")


# --------------------------------------------------------------------------- #
# Class names
# --------------------------------------------------------------------------- #
def class_names(
    shapes: Sequence[str] | None = None, motions: Sequence[str] | None = None
) -> list[str]:
    """All ``"{shape} {motion}"`` names of the grid, shape-major order.

    Defaults to :data:`DEFAULT_SHAPES` x :data:`DEFAULT_MOTIONS`.
    """
    shapes = list(DEFAULT_SHAPES if shapes is None else shapes)
    motions = list(DEFAULT_MOTIONS if motions is None else motions)
    for s in shapes:
        if s not in SHAPES:
            raise ValueError(f"unknown shape {s!r}; choose from {SHAPES}")
    for m in motions:
        if m not in MOTIONS:
            raise ValueError(f"unknown motion {m!r}; choose from {MOTIONS}")
    return [f"{s} {m}" for s in shapes for m in motions]


def parse_class_name(name: str) -> tuple[str, str]:
    """Split ``"star moving left"`` into ``("star", "moving left")``."""
    shape, _, motion = name.strip().partition(" ")
    if shape not in SHAPES or motion not in MOTIONS:
        raise ValueError(f"not a synthetic class name: {name!r}")
    return shape, motion


def class_slug(name: str) -> str:
    """Directory-safe form of a class name: ``"star moving left"`` -> ``"star_moving_left"``."""
    return name.strip().replace(" ", "_")


def default_heldout(
    shapes: Sequence[str] | None = None, motions: Sequence[str] | None = None
) -> list[str]:
    """A deterministic handful of held-out (zero-shot) classes for a grid.

    Up to 4 classes with pairwise distinct shapes and pairwise distinct motions,
    so every held-out shape and every held-out motion still appears in some seen
    class (zero-shot transfer through language is plausible). Shape ``i`` gets
    motion ``2*i`` (mod the number of motions, next free one on collision); for
    the default grid this holds out "circle moving left", "square moving up",
    "triangle rotating clockwise" and "star growing" -- one class of each
    temporal-order pair. Returns ``[]`` if the grid has < 2 shapes or motions.
    """
    shapes = list(DEFAULT_SHAPES if shapes is None else shapes)
    motions = list(DEFAULT_MOTIONS if motions is None else motions)
    class_names(shapes, motions)  # validates
    if len(shapes) < 2 or len(motions) < 2:
        return []
    n = min(4, len(shapes), len(motions))
    used: set[int] = set()
    out: list[str] = []
    for i in range(n):
        j = (2 * i) % len(motions)
        while j in used:
            j = (j + 1) % len(motions)
        used.add(j)
        out.append(f"{shapes[i]} {motions[j]}")
    # Return in grid order so label ids are stable and readable.
    order = {c: k for k, c in enumerate(class_names(shapes, motions))}
    return sorted(out, key=order.__getitem__)


# --------------------------------------------------------------------------- #
# Seeding
# --------------------------------------------------------------------------- #
def clip_rng(seed: int, split: str, class_name: str, index: int) -> np.random.Generator:
    """Generator for one video, derived from ``(seed, split, class, index)``.

    Uses CRC32 of the strings (stable across processes, unlike ``hash``) as
    extra SeedSequence entropy, so any video can be regenerated on its own.
    """
    key = [
        int(seed),
        zlib.crc32(split.encode("utf-8")),
        zlib.crc32(class_name.encode("utf-8")),
        int(index),
    ]
    return np.random.default_rng(key)


# --------------------------------------------------------------------------- #
# Rendering
# --------------------------------------------------------------------------- #
def _unit_polygon(shape: str) -> np.ndarray:
    """Vertices (N, 2) of ``shape`` with circumradius ~1, centred at 0, angle 0.

    Coordinates are (x, y) with y pointing down; the triangle and star point up.
    """
    if shape == "circle":
        # Circle with a notch in the rim at angle 0 so rotation is visible.
        ang = np.deg2rad(np.arange(0.0, 360.0, 5.0))
        r = np.ones_like(ang)
        d = np.abs((np.rad2deg(ang) + 180.0) % 360.0 - 180.0)  # distance from 0 deg
        r = np.where(d <= 12.0, 1.0 - 0.5 * (1.0 - d / 12.0), r)
        return np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)
    if shape == "square":
        ang = np.deg2rad(np.array([45.0, 135.0, 225.0, 315.0]))
        return np.stack([np.cos(ang), np.sin(ang)], axis=1)
    if shape == "triangle":
        ang = np.deg2rad(-90.0 + 120.0 * np.arange(3))
        return np.stack([np.cos(ang), np.sin(ang)], axis=1)
    if shape == "star":
        ang = np.deg2rad(-90.0 + 36.0 * np.arange(10))
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)
    if shape == "cross":
        a, b = 0.32, 1.0  # arm half-width, arm length
        return np.array(
            [(a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b),
             (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a), (-a, -b)],
            dtype=np.float64,
        )
    if shape == "diamond":
        # An elongated rhombus, so it stays distinct from a rotated square.
        return np.array([(0.0, -1.0), (0.6, 0.0), (0.0, 1.0), (-0.6, 0.0)])
    raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")


def _background(rng: np.random.Generator, size: int, textures: Sequence[str] = _TEXTURES) -> tuple[np.ndarray, dict]:
    """Static textured background (H, W, 3) float32 and its description.

    Every pixel is a convex combination of two colours c1, c2, so the foreground
    colour can be chosen far from the whole segment c1--c2.
    """
    c1 = rng.uniform(0.0, 255.0, size=3)
    c2 = np.clip(c1 + rng.normal(0.0, 50.0, size=3), 0.0, 255.0)
    texture = textures[int(rng.integers(len(textures)))]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    theta = rng.uniform(0.0, np.pi)
    proj = xx * np.cos(theta) + yy * np.sin(theta)
    if texture == "gradient":
        w = (proj - proj.min()) / max(np.ptp(proj), 1e-6)
    elif texture == "stripes":
        period = rng.uniform(6.0, 16.0)
        w = 0.5 + 0.5 * np.sin(2.0 * np.pi * proj / period + rng.uniform(0.0, 2.0 * np.pi))
    elif texture == "checker":
        p = rng.uniform(4.0, 12.0)
        w = ((np.floor(xx / p) + np.floor(yy / p)) % 2).astype(np.float64)
    else:  # blobs: smooth low-frequency noise
        low = (rng.random((5, 5)) * 255.0).astype(np.uint8)
        w = np.asarray(Image.fromarray(low).resize((size, size), Image.Resampling.BICUBIC), np.float64) / 255.0
    w = w[..., None]
    bg = (1.0 - w) * c1 + w * c2
    return bg.astype(np.float32), {"texture": texture, "c1": c1, "c2": c2}


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of points p (N, 3) to the segment a--b."""
    ab = b - a
    t = np.clip(((p - a) @ ab) / max(float(ab @ ab), 1e-9), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1)


def _foreground_colour(rng: np.random.Generator, c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """A random colour at RGB distance >= 120 from every background colour (if possible)."""
    cand = rng.uniform(0.0, 255.0, size=(64, 3))
    dist = _segment_distance(cand, c1, c2)
    ok = np.flatnonzero(dist >= 120.0)
    return cand[ok[0]] if ok.size else cand[int(np.argmax(dist))]


def _trajectory(
    motion: str, rng: np.random.Generator, num_frames: int, size: int, object_scale: float = 1.0
) -> dict[str, np.ndarray | float]:
    """Per-frame centre x, y, scale and angle (degrees, clockwise) for a motion."""
    T = num_frames
    t = np.arange(T, dtype=np.float64)
    u = t / max(T - 1, 1)  # 0 .. 1 over the clip
    radius = rng.uniform(0.11, 0.17) * size * object_scale  # base circumradius in pixels
    angle0 = rng.uniform(0.0, 360.0)

    scale = np.ones(T)
    if motion in ("growing", "shrinking"):
        small, big = rng.uniform(0.55, 0.75), rng.uniform(1.25, 1.5)
        scale = small + (big - small) * u
        if motion == "shrinking":
            scale = scale[::-1].copy()
    margin = radius * scale.max() + 1.0  # keep the whole object inside the frame
    lo, hi = margin, size - 1.0 - margin

    angle = np.full(T, angle0)
    if motion.startswith("rotating"):
        omega = rng.uniform(6.0, 14.0)  # deg/frame, < half of every symmetry period
        angle = angle0 + (omega if motion == "rotating clockwise" else -omega) * t

    # Default: a fixed random position.
    x = np.full(T, rng.uniform(lo, hi))
    y = np.full(T, rng.uniform(lo, hi))
    if motion.startswith("moving"):
        dist = min(rng.uniform(0.3, 0.5) * size, hi - lo)  # total travel (speed nuisance)
        # (min/max: when the travel is capped at hi - lo, rounding must not leave an empty range)
        start = (rng.uniform(min(lo + dist, hi), hi) if motion in ("moving left", "moving up")
                 else rng.uniform(lo, max(lo, hi - dist)))
        sign = -1.0 if motion in ("moving left", "moving up") else 1.0
        path = start + sign * dist * u
        if motion in ("moving left", "moving right"):
            x = path
        else:
            y = path
    elif motion == "bouncing":
        # Parabolic arcs above a floor; >= 1 bounce (floor contact) inside the clip.
        floor = rng.uniform(hi - 0.1 * size, hi)
        height = min(rng.uniform(0.3, 0.5) * size, floor - lo)
        bounces = rng.uniform(1.2, 2.2)
        phase = rng.uniform(0.0, 1.0)
        w = (bounces * u + phase) % 1.0
        y = floor - height * 4.0 * w * (1.0 - w)
    return {"x": x, "y": y, "scale": scale, "angle": angle, "radius": radius}


def render_clip(
    shape: str,
    motion: str,
    rng: np.random.Generator,
    num_frames: int = 16,
    size: int = 64,
    object_scale: float = 1.0,
) -> tuple[np.ndarray, dict]:
    """Render one clip of ``"{shape} {motion}"``.

    ``object_scale`` multiplies the object's size (1.0: a circumradius of 11-17% of the frame side;
    at most 1.5, so that a growing object still fits in the frame with room to move).

    Returns ``(frames, gt)``: ``frames`` is uint8 ``(T, H, W, 3)`` RGB and ``gt``
    holds ``label``, ``shape``, ``motion``, per-frame float arrays ``x``, ``y``
    (object centre, pixels, y down), ``scale`` (relative size), ``radius``
    (circumradius in pixels = base radius * scale), ``angle`` (degrees, grows
    clockwise on screen), plus the nuisance values ``fg_color``, ``bg_colors``,
    ``texture`` and ``noise_std``. Deterministic given the state of ``rng``.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; choose from {MOTIONS}")
    if num_frames < 1 or size < 8:
        raise ValueError("need num_frames >= 1 and size >= 8")
    if not 0.25 <= object_scale <= 1.5:
        raise ValueError(f"object_scale must be between 0.25 and 1.5 (got {object_scale})")

    bg, bg_info = _background(rng, size)
    fg = _foreground_colour(rng, bg_info["c1"], bg_info["c2"])
    traj = _trajectory(motion, rng, num_frames, size, object_scale)
    noise_std = rng.uniform(0.0, 6.0)
    poly = _unit_polygon(shape)

    # Anti-aliased coverage mask per frame: draw at SS x resolution, box-filter down.
    ss = _SUPERSAMPLE
    alpha = np.empty((num_frames, size, size), np.float32)
    for i in range(num_frames):
        a = np.deg2rad(traj["angle"][i])
        c, s = np.cos(a), np.sin(a)
        # [[c, -s], [s, c]] with y down turns clockwise on screen for a > 0.
        pts = poly @ np.array([[c, s], [-s, c]]) * (traj["radius"] * traj["scale"][i])
        pts = pts + np.array([traj["x"][i], traj["y"][i]])
        # Low-res pixel centre k maps to high-res coordinate (k + 0.5) * ss - 0.5.
        pts = (pts + 0.5) * ss - 0.5
        img = Image.new("L", (size * ss, size * ss), 0)
        ImageDraw.Draw(img).polygon([tuple(p) for p in pts.tolist()], fill=255)
        alpha[i] = np.asarray(img.resize((size, size), Image.Resampling.BOX), np.float32) / 255.0

    alpha = alpha[..., None]
    frames = bg[None] * (1.0 - alpha) + fg.astype(np.float32) * alpha
    if noise_std > 0:
        frames = frames + rng.normal(0.0, noise_std, size=frames.shape).astype(np.float32)
    frames = np.clip(np.rint(frames), 0, 255).astype(np.uint8)

    gt = {
        "label": f"{shape} {motion}",
        "shape": shape,
        "motion": motion,
        "x": traj["x"],
        "y": traj["y"],
        "scale": traj["scale"],
        "radius": traj["radius"] * traj["scale"],
        "angle": traj["angle"],
        "fg_color": tuple(float(v) for v in fg),
        "bg_colors": (tuple(float(v) for v in bg_info["c1"]), tuple(float(v) for v in bg_info["c2"])),
        "texture": bg_info["texture"],
        "noise_std": float(noise_std),
    }
    return frames, gt


# --------------------------------------------------------------------------- #
# Captions: what a single frame shows, in words (for image-text pretraining)
# --------------------------------------------------------------------------- #
# Reference RGB of each colour word; a foreground colour is named by the nearest one.
COLOUR_NAMES: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 30), "orange": (240, 140, 20), "yellow": (235, 225, 40), "green": (40, 175, 50),
    "cyan": (40, 205, 215), "blue": (35, 65, 215), "purple": (135, 45, 185), "pink": (240, 125, 190),
    "white": (245, 245, 245), "black": (15, 15, 15), "gray": (128, 128, 128), "brown": (125, 80, 35),
}


def frame_attributes(gt: dict, index: int, size: int, object_scale: float = 1.0) -> dict[str, str]:
    """Words for what frame ``index`` of a rendered clip shows: ``shape``, ``colour`` (nearest of
    :data:`COLOUR_NAMES`), ``size`` (small / medium / large by circumradius relative to the frame)
    and ``position`` (which third of the frame the centre is in: "in the top left", "in the centre",
    "on the right" ...). ``gt`` is the ground truth :func:`render_clip` returned (with
    ``object_scale``: sizes are relative to that scale)."""
    fg = np.asarray(gt["fg_color"], np.float64)
    names = list(COLOUR_NAMES)
    ref = np.asarray([COLOUR_NAMES[n] for n in names], np.float64)
    colour = names[int(np.argmin(np.linalg.norm(ref - fg, axis=1)))]
    r = float(np.asarray(gt["radius"])[index]) / (size * object_scale)
    size_word = "small" if r < 0.1 else "large" if r > 0.16 else "medium"
    col = min(2, int(3 * float(gt["x"][index]) / size))
    row = min(2, int(3 * float(gt["y"][index]) / size))
    vertical, horizontal = ("top", "", "bottom")[row], ("left", "", "right")[col]
    if vertical and horizontal:
        position = f"in the {vertical} {horizontal}"
    elif vertical or horizontal:
        position = f"{'at the' if vertical else 'on the'} {vertical or horizontal}"
    else:
        position = "in the centre"
    return {"shape": gt["shape"], "colour": colour, "size": size_word, "position": position}


def caption(attributes: dict[str, str], include: Iterable[str]) -> str:
    """A short caption naming the shape and those of ``include`` (size, colour, position):
    ``"a small red circle in the top left"``, ``"a blue square"``, ``"a triangle on the right"``."""
    include = set(include)
    words = [attributes[k] for k in ("size", "colour") if k in include] + [attributes["shape"]]
    if "position" in include:
        words.append(attributes["position"])
    return ("an " if words[0][0] in "aeiou" else "a ") + " ".join(words)


def render_captioned_frames(
    n: int,
    rng: np.random.Generator,
    size: int = 32,
    shapes: Sequence[str] = SHAPES,
    attributes: Sequence[str] = ("size", "colour", "position"),
    keep: float = 0.5,
    object_scale: float = 1.0,
) -> tuple[np.ndarray, list[str], list[dict]]:
    """``n`` single frames with a caption each, for image-text pretraining.

    Each frame is the first frame of a clip of a random shape (of ``shapes``) and a random motion
    (so positions and sizes vary as in the videos); its caption always names the shape and each
    of ``attributes`` with probability ``keep`` (web captions say some of what an image shows,
    not all). Returns uint8 frames ``(n, size, size, 3)``, the captions, and per frame the
    attributes its caption names (``{"shape": ..., "colour": ...}``)."""
    frames = np.empty((n, size, size, 3), np.uint8)
    captions, named = [], []
    for i in range(n):
        shape = shapes[int(rng.integers(len(shapes)))]
        motion = MOTIONS[int(rng.integers(len(MOTIONS)))]
        clip, gt = render_clip(shape, motion, rng, 1, size, object_scale)
        frames[i] = clip[0]
        chosen = [a for a in attributes if rng.random() < keep]
        attrs = frame_attributes(gt, 0, size, object_scale)
        captions.append(caption(attrs, chosen))
        named.append({k: v for k, v in attrs.items() if k == "shape" or k in chosen})
    return frames, captions, named


# --------------------------------------------------------------------------- #
# Video I/O
# --------------------------------------------------------------------------- #
def _codec_settings(codec: str) -> tuple[str, dict[str, str], int | None]:
    """(pix_fmt, encoder options, bit_rate) that keep small synthetic frames sharp."""
    if codec in ("libx264", "h264"):
        # mbtree=0: x264's macroblock-tree rate control (on by default with crf)
        # was observed to make the output depend on uninitialised memory, i.e.
        # the same frames gave different videos; without it encoding is
        # reproducible. threads=1 is plenty at 64x64.
        return "yuv420p", {"crf": "18", "preset": "veryfast", "threads": "1", "x264-params": "mbtree=0"}, None
    if codec == "mpeg4":
        return "yuv420p", {"qmin": "1", "qmax": "4"}, 4_000_000
    if codec == "libvpx-vp9":
        return "yuv420p", {"crf": "20", "b": "0", "deadline": "realtime", "cpu-used": "8"}, None
    if codec == "mjpeg":
        return "yuvj420p", {"qmin": "1", "qmax": "3"}, None
    raise ValueError(f"unsupported codec {codec!r}; choose from {sorted(CODEC_EXTENSIONS)}")


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float = 8,
    codec: str = "libx264",
    options: dict[str, str] | None = None,
) -> None:
    """Encode uint8 RGB frames ``(T, H, W, 3)`` to ``path`` with PyAV.

    The container follows the file extension (use :data:`CODEC_EXTENSIONS`:
    ``.mp4`` for libx264/mpeg4, ``.webm`` for libvpx-vp9, ``.avi`` for mjpeg).
    Odd heights/widths are padded by edge replication to even sizes (needed by
    yuv420p). The encoder is flushed so that decoding yields exactly T frames.
    ``options`` override the default encoder options (e.g. ``{"crf": "23"}``).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 (T, H, W, 3) frames, got {frames.dtype} {frames.shape}")
    if frames.shape[0] == 0:
        raise ValueError("cannot write a video with zero frames")
    _, h, w, _ = frames.shape
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        h, w = frames.shape[1:3]

    pix_fmt, opts, bit_rate = _codec_settings(codec)
    opts.update(options or {})
    rate = Fraction(fps).limit_denominator(1001)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=rate, options=opts)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        for i, arr in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            frame.pts = i
            frame.time_base = 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))  # flush delayed (B-)frames


def read_video(path: str | Path) -> np.ndarray:
    """Decode every frame of a video to uint8 RGB ``(T, H, W, 3)``."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not frames:
        raise ValueError(f"no frames decoded from {path}")
    return np.stack(frames)


# --------------------------------------------------------------------------- #
# Benchmark generation
# --------------------------------------------------------------------------- #
def _write_labels(path: Path, names: Iterable[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["id", "name"])
        for i, name in enumerate(names):
            writer.writerow([i, name])


def _is_benchmark(folder: str) -> bool:
    """`folder` holds a benchmark make_benchmark wrote (its benchmark.json), or part of one (interrupted
    before benchmark.json: only its names, videos/ holding only its split folders)."""
    if not os.path.isfile(os.path.join(folder, "benchmark.json")):
        ours = {"videos", "train.txt", "val.txt", "zeroshot_val.txt", "labels.csv", "zeroshot_labels.csv"}
        return set(os.listdir(folder)) <= ours and set(os.listdir(os.path.join(folder, "videos"))) <= set(SPLITS)
    with open(os.path.join(folder, "benchmark.json"), encoding="utf-8") as f:
        return {"seed", "shapes", "motions", "classes"} <= set(json.load(f))


def make_benchmark(
    out_dir: str | Path,
    *,
    seed: int = 0,
    shapes: Sequence[str] | None = None,
    motions: Sequence[str] | None = None,
    heldout: Sequence[str] | None = None,
    train_per_class: int = 12,
    val_per_class: int = 4,
    zeroshot_per_class: int | None = None,
    num_frames: int = 16,
    size: int = 64,
    fps: int = 8,
    codec: str = "libx264",
    progress: bool = True,
    object_scale: float = 1.0,
    overwrite: bool = False,
) -> dict:
    """Render and write the synthetic benchmark under ``out_dir`` (layout: module docstring).

    ``heldout`` lists class names withheld from training (zero-shot split);
    ``None`` uses :func:`default_heldout`, ``[]`` disables the zero-shot split.
    ``zeroshot_per_class`` defaults to ``val_per_class``. Seen classes get ids
    in grid order in ``labels.csv``; held-out classes get their own ids in
    ``zeroshot_labels.csv``.

    Returns a dict with ``root``, ``classes`` (seen names, by id),
    ``heldout_classes``, ``train_list``, ``val_list``, ``zeroshot_list``,
    ``labels_csv``, ``zeroshot_labels_csv`` (paths are :class:`pathlib.Path`)
    and ``num_train``, ``num_val``, ``num_zeroshot``. ``out_dir``: new, empty or an earlier benchmark (else ``overwrite``).
    """
    # argument checks first: nothing is written and no progress bar starts for values that cannot work
    if num_frames < 1 or size < 8:
        raise ValueError(f"need num_frames >= 1 and size >= 8 (got num_frames={num_frames}, size={size})")
    for what, n in (("train_per_class", train_per_class), ("val_per_class", val_per_class),
                    ("zeroshot_per_class", zeroshot_per_class)):
        if n is not None and n < 0:
            raise ValueError(f"{what} must be at least 0 (got {n})")
    if not 0.25 <= object_scale <= 1.5:
        raise ValueError(f"object_scale must be between 0.25 and 1.5 (got {object_scale})")
    shapes = list(DEFAULT_SHAPES if shapes is None else shapes)
    motions = list(DEFAULT_MOTIONS if motions is None else motions)
    grid = class_names(shapes, motions)
    heldout_set = set(default_heldout(shapes, motions) if heldout is None else heldout)
    unknown = heldout_set - set(grid)
    if unknown:
        raise ValueError(f"held-out classes not in the grid: {sorted(unknown)}")
    seen = [c for c in grid if c not in heldout_set]
    held = [c for c in grid if c in heldout_set]
    if not seen:
        raise ValueError("every class is held out; nothing to train on")
    if codec not in CODEC_EXTENSIONS:
        raise ValueError(f"unsupported codec {codec!r}; choose from {sorted(CODEC_EXTENSIONS)}")
    ext = CODEC_EXTENSIONS[codec]
    zs_per_class = val_per_class if zeroshot_per_class is None else zeroshot_per_class

    check_output_folder(str(out_dir), "out_dir", "a synthetic benchmark", _is_benchmark, overwrite)
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    # (split, list file, classes of the split, videos per class)
    plan = [
        ("train", "train.txt", seen, train_per_class),
        ("val", "val.txt", seen, val_per_class),
        ("zeroshot", "zeroshot_val.txt", held, zs_per_class),
    ]
    jobs = [
        (split, label, name, idx)
        for split, _, names, n in plan
        for label, name in enumerate(names)
        for idx in range(n)
    ]

    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(jobs), desc="synthetic videos", unit="video")
        except ImportError:  # tqdm is optional here
            bar = None

    lines: dict[str, list[str]] = {split: [] for split in SPLITS}
    try:
        for split, label, name, idx in jobs:
            shape, motion = parse_class_name(name)
            frames, _ = render_clip(shape, motion, clip_rng(seed, split, name, idx), num_frames, size, object_scale)
            rel = Path("videos") / split / class_slug(name) / f"{idx:04d}{ext}"
            write_video(root / rel, frames, fps=fps, codec=codec)
            lines[split].append(f"{rel.as_posix()} {label}")
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    for split, fname, _, _ in plan:
        (root / fname).write_text("".join(line + "\n" for line in lines[split]))
    _write_labels(root / "labels.csv", seen)
    _write_labels(root / "zeroshot_labels.csv", held)
    config = {
        "seed": seed, "shapes": shapes, "motions": motions, "classes": seen,
        "heldout_classes": held, "train_per_class": train_per_class,
        "val_per_class": val_per_class, "zeroshot_per_class": zs_per_class,
        "num_frames": num_frames, "size": size, "fps": fps, "codec": codec, "object_scale": object_scale,
    }
    (root / "benchmark.json").write_text(json.dumps(config, indent=2) + "\n")

    return {
        "root": root,
        "classes": seen,
        "heldout_classes": held,
        "train_list": root / "train.txt",
        "val_list": root / "val.txt",
        "zeroshot_list": root / "zeroshot_val.txt",
        "labels_csv": root / "labels.csv",
        "zeroshot_labels_csv": root / "zeroshot_labels.csv",
        "num_train": len(lines["train"]),
        "num_val": len(lines["val"]),
        "num_zeroshot": len(lines["zeroshot"]),
    }
