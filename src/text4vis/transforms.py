"""Spatial transforms of a clip: resize, crops (1 or 3), random resized crop, flip, grayscale.

Clips are uint8 tensors [T, 3, H, W]; the same spatial transform applies to every frame of a clip.
Normalisation (CLIP mean/std) happens on the model's device, in `VideoModel.normalize`, so loaders
move 4x fewer bytes. The test-time views call torch's interpolate as torchvision's resize does (the
same values), so predicting never imports torchvision, whose import costs a second (it imports
torch._dynamo); training imports it for its augmentations.
"""
from __future__ import annotations

import math

import numpy as np
import torch

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 [T, H, W, 3] (numpy, or a torch tensor: frames decoded on the GPU) -> uint8 [T, 3, H, W] (torch)."""
    if isinstance(frames, torch.Tensor):
        return frames.permute(0, 3, 1, 2).contiguous()
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous()


def resize_size(input_size: int) -> int:
    """Short side before cropping: 256 for 224 inputs (the reference's 256/224 ratio), else the input size."""
    return 256 if input_size == 224 else input_size


def resize_short(clip: torch.Tensor, short: int) -> torch.Tensor:
    """Resize so the short side is `short` (long side = int(long * short / short_in), as torchvision),
    bicubic with antialiasing: the reference's test-time GroupScale uses PIL's bicubic."""
    h, w = clip.shape[-2:]
    if min(h, w) == short:
        return clip
    if h <= w:
        size = [short, max(1, int(w * short / h))]
    else:
        size = [max(1, int(h * short / w)), short]
    return _resize_bicubic(clip, size)


def _resize_bicubic(clip: torch.Tensor, size: list[int]) -> torch.Tensor:
    """torchvision.transforms.v2.functional.resize(clip, size, BICUBIC, antialias=True) (torchvision 0.17+):
    the same call of torch's interpolate, on uint8 natively on the CPU, else in fp32, clamped and
    rounded back to uint8 (tests/test_startup.py compares the two)."""
    shape = clip.shape
    x = clip.reshape(-1, *shape[-3:])
    cast = not (x.dtype in (torch.float32, torch.float64) or (x.dtype == torch.uint8 and x.device.type == "cpu"))
    if cast:
        x = x.to(torch.float32)
    x = torch.nn.functional.interpolate(x, size=list(size), mode="bicubic", align_corners=False, antialias=True)
    if cast:
        if clip.dtype == torch.uint8:
            x = x.clamp_(min=0, max=255)
        if not clip.dtype.is_floating_point:
            x = x.round_()
        x = x.to(clip.dtype)
    return x.reshape(*shape[:-2], *x.shape[-2:])

def _pad_to(clip: torch.Tensor, crop: int) -> torch.Tensor:
    """Zero-pad (centred) a clip that is smaller than the crop in one dimension (e.g. 4000x16 inputs
    resized to short side 256 are never smaller; this only guards degenerate sizes)."""
    h, w = clip.shape[-2:]
    if h >= crop and w >= crop:
        return clip
    ph, pw = max(0, crop - h), max(0, crop - w)
    return torch.nn.functional.pad(clip, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])  # left, right, top, bottom


def center_crop_offsets(h: int, w: int, crop: int) -> tuple[int, int]:
    """(x, y) of the centre crop: round((W - crop) / 2), round((H - crop) / 2)."""
    return int(round((w - crop) / 2.0)), int(round((h - crop) / 2.0))


def three_crop_offsets(h: int, w: int, crop: int) -> list[tuple[int, int]]:
    """(x, y) of the reference's three crops: (0, 2hs), (4ws, 2hs), (2ws, 2hs), ws = (W-crop)//4, hs = (H-crop)//4."""
    ws, hs = (w - crop) // 4, (h - crop) // 4
    return [(0, 2 * hs), (4 * ws, 2 * hs), (2 * ws, 2 * hs)]


def test_views(clip: torch.Tensor, input_size: int, crops: int) -> list[torch.Tensor]:
    """Test-time spatial views of one clip: resize the short side, then 1 centre crop or 3 crops."""
    clip = _pad_to(resize_short(clip, resize_size(input_size)), input_size)
    h, w = clip.shape[-2:]
    offsets = [center_crop_offsets(h, w, input_size)] if crops == 1 else three_crop_offsets(h, w, input_size)
    return [clip[..., y:y + input_size, x:x + input_size] for x, y in offsets]


class TrainTransform:
    """Training augmentation, one draw per clip: random resized crop (the reference's Inception-style
    rule, measured on the short-side-resized frame), horizontal flip, grayscale p=0.2, optional
    RandAugment (torchvision's; one op sequence for the whole clip, see README "Choices"), optional
    Gaussian blur (sigma ~ U(0.1, 2.0)) and solarization (threshold 128), each with a probability
    per clip, as the transforms listed in the published training logs."""

    def __init__(self, input_size: int = 224, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip: bool = True,
                 grayscale: float = 0.2, randaug: tuple[int, int] | None = None, blur: float = 0.0,
                 solarize: float = 0.0):
        self.input_size = input_size
        self.blur, self.solarize = blur, solarize  # probabilities (the published logs' GroupGaussianBlur / GroupSolarization)
        self.scale, self.ratio = scale, ratio
        self.flip, self.grayscale = flip, grayscale
        v2, _ = _torchvision()
        self.randaug = v2.RandAugment(num_ops=randaug[0], magnitude=randaug[1]) if randaug else None

    def crop_box(self, h: int, w: int, gen: torch.Generator) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the random resized crop, in input-frame coordinates.

        The reference's rule (its GroupRandomSizedCrop), drawn on the frame as if resized to short
        side 256 (the reference resizes first) and mapped back, so each frame is resized only once:
        up to 10 tries of area ~ U(scale) x frame area, aspect ~ U(ratio), width and height swapped
        with p=0.5, kept when it fits; otherwise a square of the short side at a random position."""
        s = resize_size(self.input_size) / min(h, w)
        rh, rw = h * s, w * s
        area = rh * rw

        def uniform(lo, hi):
            return float(torch.empty(1).uniform_(lo, hi, generator=gen))

        def randint(hi):  # 0..hi inclusive
            return int(torch.randint(0, int(hi) + 1, (1,), generator=gen))

        for _ in range(10):
            target, aspect = area * uniform(*self.scale), uniform(*self.ratio)
            cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if uniform(0.0, 1.0) < 0.5:
                cw, ch = ch, cw
            if 0 < cw <= rw and 0 < ch <= rh:
                top, left = randint(rh - ch), randint(rw - cw)
                break
        else:
            side = min(rh, rw)
            ch = cw = side
            top, left = randint(rh - side), randint(rw - side)
        return (int(top / s), int(left / s), max(1, int(round(ch / s))), max(1, int(round(cw / s))))

    def __call__(self, clip: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        v2, F = _torchvision()
        h, w = clip.shape[-2:]
        top, left, ch, cw = self.crop_box(h, w, gen)
        clip = F.resized_crop(clip, top, left, ch, cw, [self.input_size, self.input_size],
                              interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
        if self.flip and float(torch.rand(1, generator=gen)) < 0.5:
            clip = F.horizontal_flip(clip)
        if self.grayscale and float(torch.rand(1, generator=gen)) < self.grayscale:
            clip = F.rgb_to_grayscale(clip, num_output_channels=3)
        if self.randaug is not None:
            clip = self.randaug(clip)  # one op sequence for the whole clip ([T, 3, H, W] is one batch)
        if self.blur and float(torch.rand(1, generator=gen)) < self.blur:
            sigma = 0.1 + 1.9 * float(torch.rand(1, generator=gen))  # U(0.1, 2.0) pixels, one for the whole clip
            k = 2 * math.ceil(3 * sigma) + 1
            clip = F.gaussian_blur(clip, [k, k], [sigma, sigma])
        if self.solarize and float(torch.rand(1, generator=gen)) < self.solarize:
            clip = F.solarize(clip, 128)  # values >= 128 become 255 - value, as PIL's ImageOps.solarize
        return clip


def _torchvision():
    """torchvision.transforms.v2 and its functional module (imported here, for training only)."""
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional
    return v2, functional


def normalize(frames: torch.Tensor, mean=OPENAI_MEAN, std=OPENAI_STD) -> torch.Tensor:
    """uint8 [..., 3, H, W] in 0..255 -> float normalised with CLIP mean/std (on the tensor's device)."""
    x = frames.float()
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(3, 1, 1) * 255.0
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(3, 1, 1) * 255.0
    return x.sub_(m).div_(s)  # (x / 255 - mean) / std, in two in-place passes
