"""Frame-index rules (training segments, dense, test views), crops and the training transform,
checked against the rules written out here and through the whole decoding path."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from conftest import decode_index
from text4vis import sampling, transforms
from text4vis import datasets
from text4vis.datasets import Sample

NS = [1, 2, 3, 5, 7, 8, 9, 16, 17, 31, 50, 64, 100, 129, 280, 1001]
TS = [1, 2, 3, 4, 8, 16, 32]
CS = [1, 2, 3, 4, 10]


def reference_test_views(n: int, t: int, c: int) -> list[list[int]]:
    """The original Text4Vis test-time rule, written out."""
    tick = n / float(t)
    starts = np.linspace(0, tick - 1, c).astype(int)
    return [[int(s + tick * i) % n for i in range(t)] for s in starts]


# ----------------------------------------------------------------------------- index rules

def test_test_view_indices_rule():
    for n in NS:
        for t in TS:
            for c in CS:
                got = sampling.view_indices(n, t, c)
                assert got == reference_test_views(n, t, c), (n, t, c)
                assert len(got) == c and all(len(v) == t for v in got)
                assert all(0 <= i < n for v in got for i in v)


def test_test_view_indices_hand_values():
    # N=50, T=8: tick 6.25; C=4 starts linspace(0, 5.25, 4) = 0, 1.75, 3.5, 5.25 -> 0, 1, 3, 5
    assert sampling.view_indices(50, 8, 4) == [
        [0, 6, 12, 18, 25, 31, 37, 43],
        [1, 7, 13, 19, 26, 32, 38, 44],
        [3, 9, 15, 21, 28, 34, 40, 46],
        [5, 11, 17, 23, 30, 36, 42, 48],
    ]
    # N < T: frames repeat, in order
    assert sampling.view_indices(3, 8, 1) == [[0, 0, 0, 1, 1, 1, 2, 2]]


def test_segment_indices_one_per_segment():
    rng = np.random.default_rng(0)
    for n in NS:
        for t in TS:
            for _ in range(5):
                idx = sampling.segment_indices(n, t, rng)
                assert len(idx) == t and all(isinstance(i, int) for i in idx)
                assert idx == sorted(idx) and all(0 <= i < n for i in idx)
                if n > t:
                    for k, i in enumerate(idx):  # segment k spans [k*n//t, (k+1)*n//t)
                        assert k * n // t <= i < (k + 1) * n // t, (n, t, k, i)
                else:  # every frame once, plus random repeats
                    assert set(idx) == set(range(n)), (n, t, idx)


def test_segment_indices_cover_each_segment_and_are_seeded():
    rng = np.random.default_rng(1)
    draws = np.array([sampling.segment_indices(40, 4, rng) for _ in range(400)])
    for k in range(4):
        assert set(draws[:, k].tolist()) == set(range(10 * k, 10 * k + 10))  # every position reachable
    a = sampling.segment_indices(100, 8, np.random.default_rng(7))
    b = sampling.segment_indices(100, 8, np.random.default_rng(7))
    assert a == b


def test_dense_indices_stride():
    rng = np.random.default_rng(0)
    for n in NS:
        for t in [1, 2, 4, 8, 16, 32]:
            stride = 128 // t
            for _ in range(5):
                idx = sampling.dense_indices(n, t, rng)
                start = idx[0]
                assert idx == [(start + i * stride) % n for i in range(t)], (n, t)
                if n <= 128:
                    assert start == 0
                else:
                    assert 0 <= start <= n - 128 - 1
    starts = {sampling.dense_indices(300, 8, rng)[0] for _ in range(500)}
    assert min(starts) == 0 and max(starts) > 150  # spread over 0..171


def test_dense_view_indices_stride_and_spread():
    views = sampling.dense_view_indices(300, 8, 4)
    assert len(views) == 4
    for v in views:
        assert [(b - a) % 300 for a, b in zip(v, v[1:])] == [16] * 7
    starts = [v[0] for v in views]
    assert starts[0] == 0 and starts == sorted(starts) and starts[-1] <= 300 - 128


def test_uniform_indices():
    assert sampling.uniform_indices(50, 8) == [0, 6, 12, 18, 25, 31, 37, 43]
    assert sampling.uniform_indices(3, 5) == [0, 0, 1, 1, 2]


@pytest.mark.parametrize("text,expected", [("1x1", (1, 1)), ("4x3", (4, 3)), ("2X1", (2, 1))])
def test_parse_views(text, expected):
    assert sampling.parse_views(text) == expected


@pytest.mark.parametrize("text", ["2x2", "0x1", "4", "x3", "ax1", "1x1x1"])
def test_parse_views_rejects(text):
    with pytest.raises(ValueError):
        sampling.parse_views(text)


# ----------------------------------------------------------------------------- through decoding

def test_test_dataset_4x1_frames_are_the_rule(square_index_video):
    ds = datasets.TestDataset([Sample(square_index_video, -1)], num_frames=8, input_size=64, clips=4, crops=1)
    index, views, error = ds[0]
    assert index == 0 and error is None
    assert views.shape == (4, 8, 3, 64, 64) and views.dtype == torch.uint8
    got = [[decode_index(f.numpy()) for f in v] for v in views]
    assert got == reference_test_views(40, 8, 4)


def test_test_dataset_resized_frames(square_index_video):
    # input 32: frames are resized 64 -> 32 before the crop; the index still reads back
    ds = datasets.TestDataset([Sample(square_index_video, -1)], num_frames=5, input_size=32, clips=2, crops=1)
    _, views, error = ds[0]
    assert error is None and views.shape == (2, 5, 3, 32, 32)
    assert [[decode_index(f.numpy()) for f in v] for v in views] == reference_test_views(40, 5, 2)


def _bits_in_crop(frame: np.ndarray, x0: int) -> dict[int, int]:
    """Bits of index_frames' 8x16px blocks fully inside a crop that starts at x0 of the 128-wide frame."""
    out = {}
    for b in range(8):
        left, right = b * 16 - x0, (b + 1) * 16 - x0
        if left >= 0 and right <= frame.shape[1]:
            out[b] = int(frame[16:48, left + 4:right - 4].mean() > 127)
    return out


def test_test_dataset_three_crops_positions(index_video):
    """index_video is 64x128: at input 64 the 3 crops start at x = 0, 64, 32 (ws = 16)."""
    ds = datasets.TestDataset([Sample(index_video, -1)], num_frames=4, input_size=64, clips=2, crops=3)
    _, views, error = ds[0]
    assert error is None and views.shape == (6, 4, 3, 64, 64)
    expected = reference_test_views(50, 4, 2)
    for k in range(2):
        for j, x0 in enumerate((0, 64, 32)):
            for i, frame in enumerate(views[k * 3 + j].permute(0, 2, 3, 1).numpy()):
                idx = expected[k][i]
                bits = _bits_in_crop(frame, x0)
                assert len(bits) == 4
                assert bits == {b: (idx >> b) & 1 for b in bits}, (k, j, i)


def test_test_dataset_broken_file_is_an_error_record(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("nope")
    ds = datasets.TestDataset([Sample(str(bad), -1)], num_frames=4, input_size=32)
    index, views, error = ds[0]
    assert index == 0 and views is None and str(bad) in error and "\n" not in error


# ----------------------------------------------------------------------------- crops

@pytest.mark.parametrize("h,w,crop", [(256, 340, 224), (340, 256, 224), (256, 256, 224), (225, 301, 224),
                                      (64, 128, 64), (300, 200, 200), (227, 229, 224)])
def test_crop_offsets_rule(h, w, crop):
    ws, hs = (w - crop) // 4, (h - crop) // 4
    assert transforms.three_crop_offsets(h, w, crop) == [(0, 2 * hs), (4 * ws, 2 * hs), (2 * ws, 2 * hs)]
    assert transforms.center_crop_offsets(h, w, crop) == (int(round((w - crop) / 2)), int(round((h - crop) / 2)))


def test_crop_offsets_hand_values():
    assert transforms.three_crop_offsets(256, 340, 224) == [(0, 16), (116, 16), (58, 16)]
    assert transforms.three_crop_offsets(340, 256, 224) == [(0, 58), (32, 58), (16, 58)]
    assert transforms.center_crop_offsets(256, 340, 224) == (58, 16)
    assert transforms.center_crop_offsets(340, 256, 224) == (16, 58)


def coordinate_clip(h: int, w: int, t: int = 3) -> torch.Tensor:
    """uint8 [T, 3, H, W]: R = x % 256, G = y % 256, B = x // 256 + 16 * (y // 256) + frame."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x % 256, y % 256, x // 256 + 16 * (y // 256)], 0).astype(np.uint8)
    clip = np.stack([img] * t).copy()
    clip[:, 2] += np.arange(t, dtype=np.uint8)[:, None, None]
    return torch.from_numpy(clip)


def _origin(view: torch.Tensor) -> tuple[int, int]:
    r, g, b = (int(v) for v in view[0, :, 0, 0])
    return r + 256 * (b % 16), g + 256 * (b // 16)


@pytest.mark.parametrize("h,w,size", [(256, 340, 224), (340, 256, 224), (200, 300, 200), (301, 200, 200)])
def test_test_views_crop_positions(h, w, size):
    """A clip already at the short side is not resized: crops start exactly at the rule's offsets."""
    assert transforms.resize_size(size) == min(h, w)
    clip = coordinate_clip(h, w)
    (center,) = transforms.test_views(clip, size, 1)
    assert center.shape == (3, 3, size, size)
    assert _origin(center) == transforms.center_crop_offsets(h, w, size)
    # and the centre crop is torchvision's
    torch.testing.assert_close(center, TF.center_crop(clip, [size, size]), rtol=0, atol=0)
    three = transforms.test_views(clip, size, 3)
    assert [_origin(v) for v in three] == transforms.three_crop_offsets(h, w, size)
    for v in three:  # every frame cropped at the same place, frames kept in order
        assert v.shape == (3, 3, size, size)
        assert torch.equal(v[:, :2], v[:1, :2].expand(3, -1, -1, -1))
        assert [int(f[2, 0, 0]) - int(v[0, 2, 0, 0]) for f in v] == [0, 1, 2]


def test_test_views_resize_short_side():
    # 224 input: short side to 256 first (256/224), long side int(long * 256 / short)
    clip = torch.zeros(2, 3, 240, 320, dtype=torch.uint8)
    assert transforms.resize_short(clip, 256).shape[-2:] == (256, 341)
    clip = torch.zeros(2, 3, 568, 320, dtype=torch.uint8)
    assert transforms.resize_short(clip, 256).shape[-2:] == (454, 256)
    assert transforms.resize_size(224) == 256 and transforms.resize_size(336) == 336
    views = transforms.test_views(torch.zeros(2, 3, 240, 320, dtype=torch.uint8), 224, 3)
    assert [v.shape for v in views] == [torch.Size([2, 3, 224, 224])] * 3
    # a 4000x16 frame: short side 16 -> 32, long 8000; crops stay 32x32
    views = transforms.test_views(torch.zeros(1, 3, 16, 4000, dtype=torch.uint8), 32, 3)
    assert [tuple(v.shape) for v in views] == [(1, 3, 32, 32)] * 3


def test_resize_is_the_reference_pil_bicubic():
    from PIL import Image
    yy, xx = np.mgrid[0:90, 0:160]
    smooth = np.stack([127 + 100 * np.sin(xx / 7 + c) * np.cos(yy / 5) for c in range(3)], -1).astype(np.uint8)
    clip = torch.from_numpy(np.stack([smooth, smooth[::-1].copy()])).permute(0, 3, 1, 2).contiguous()
    ours = transforms.resize_short(clip, 64)
    assert ours.shape == (2, 3, 64, 113)
    assert torch.equal(ours, TF.resize(clip, 64, interpolation=TF.InterpolationMode.BICUBIC, antialias=True))
    pil = np.asarray(Image.fromarray(smooth).resize((113, 64), Image.BICUBIC))   # the reference's GroupScale
    diff = np.abs(ours[0].permute(1, 2, 0).numpy().astype(int) - pil.astype(int))
    assert diff.mean() < 1.0 and diff.max() <= 3, (diff.mean(), diff.max())
    bilinear = np.asarray(Image.fromarray(smooth).resize((113, 64), Image.BILINEAR)).astype(int)
    assert np.abs(bilinear - pil.astype(int)).mean() > diff.mean()       # the check tells the two apart


def test_normalize_uses_clip_mean_std():
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = transforms.normalize(x)
    expected = [(1 - m) / s for m, s in zip(transforms.OPENAI_MEAN, transforms.OPENAI_STD)]
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor(expected))


# ----------------------------------------------------------------------------- training transform

def asymmetric_clip(t: int = 4, h: int = 96, w: int = 128) -> torch.Tensor:
    """Identical frames: a red left part, a green-blue gradient right part."""
    frame = torch.zeros(3, h, w, dtype=torch.uint8)
    frame[0, :, : w // 2] = 220
    frame[1, :, w // 2:] = torch.linspace(40, 250, w - w // 2).to(torch.uint8)
    frame[2] = torch.linspace(0, 200, h).to(torch.uint8)[:, None]
    return frame.expand(t, -1, -1, -1).contiguous()


def test_train_transform_shape_and_seed():
    tr = transforms.TrainTransform(48)
    clip = asymmetric_clip()
    a = tr(clip, torch.Generator().manual_seed(3))
    b = tr(clip, torch.Generator().manual_seed(3))
    assert a.shape == (4, 3, 48, 48) and a.dtype == torch.uint8
    assert torch.equal(a, b)
    outs = [tr(clip, torch.Generator().manual_seed(s)) for s in range(8)]
    assert len({o.numpy().tobytes() for o in outs}) == 8  # different draws, different clips


def test_train_transform_same_for_every_frame():
    """One draw per clip: identical input frames stay identical (crop, flip, grayscale)."""
    tr = transforms.TrainTransform(48, grayscale=0.5)
    clip = asymmetric_clip()
    for s in range(12):
        out = tr(clip, torch.Generator().manual_seed(s))
        for f in out[1:]:
            assert torch.equal(f, out[0]), s


def test_train_transform_flip_and_grayscale():
    clip = asymmetric_clip()
    plain = transforms.TrainTransform(48, flip=False, grayscale=0.0)
    flipping = transforms.TrainTransform(48, flip=True, grayscale=0.0)
    flips = 0
    for s in range(40):
        base = plain(clip, torch.Generator().manual_seed(s))
        out = flipping(clip, torch.Generator().manual_seed(s))  # the crop draws come first: same box
        if torch.equal(out, base):
            continue
        assert torch.equal(out, TF.horizontal_flip(base)), s
        flips += 1
    assert 8 <= flips <= 32  # p = 0.5

    gray = transforms.TrainTransform(48, flip=False, grayscale=1.0)
    for s in range(5):
        out = gray(clip, torch.Generator().manual_seed(s))
        assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
        base = plain(clip, torch.Generator().manual_seed(s))
        assert torch.equal(out, TF.rgb_to_grayscale(base, num_output_channels=3))
    never = transforms.TrainTransform(48, flip=False, grayscale=0.0)
    out = never(clip, torch.Generator().manual_seed(0))
    assert not torch.equal(out[:, 0], out[:, 1])


def test_train_crop_box_within_frame_and_scaled():
    tr = transforms.TrainTransform(224)
    for s in range(30):
        for h, w in [(240, 320), (568, 320), (16, 4000)]:
            top, left, ch, cw = tr.crop_box(h, w, torch.Generator().manual_seed(s))
            assert 0 <= top and 0 <= left and ch >= 1 and cw >= 1
            assert top + ch <= h + 1 and left + cw <= w + 1, (s, h, w, top, left, ch, cw)
            # area between 8% and 100% of the frame (Inception scale), up to rounding
            assert ch * cw <= h * w * 1.05
            if w < 1000:
                assert ch * cw >= 0.07 * h * w and 0.7 <= cw / ch <= 1.4, (s, h, w, ch, cw)


def test_train_crop_box_reference_rule():
    """Both orientations occur (the reference swaps width and height with p=0.5), and a crop that
    cannot fit in 10 tries becomes a square of the short side at a random position."""
    tr = transforms.TrainTransform(224)
    shapes = [tr.crop_box(256, 256, torch.Generator().manual_seed(s))[2:] for s in range(200)]
    tall = sum(ch > cw for ch, cw in shapes)
    wide = sum(cw > ch for ch, cw in shapes)
    assert 60 < tall < 140 and 60 < wide < 140, (tall, wide)
    whole = transforms.TrainTransform(224, scale=(0.99, 1.0))   # ~all of a 4:3 frame: almost never fits
    boxes = [whole.crop_box(240, 320, torch.Generator().manual_seed(s)) for s in range(40)]
    squares = [b for b in boxes if b[2] == b[3] == 240]
    assert len(squares) >= 30 and len({b[1] for b in squares}) > 5       # random horizontal offsets
    assert all(b[0] == 0 and 0 <= b[1] <= 80 for b in squares)
