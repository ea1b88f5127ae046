"""Decoding on the GPU: NVDEC through torchcodec's CUDA device, frames left on the GPU for the model.

`resolve_decode_device("cuda", path)` checks once that this process can decode on the GPU (a CUDA
device, torchcodec installed and loadable, NVDEC decoding the first input) and otherwise warns in
one line and answers "cpu", so the CPU reader runs instead. `read_frames_cuda` gives uint8
[T, H, W, 3] on the GPU for frame indices, as the CPU readers do on the host.
"""
from __future__ import annotations

import warnings

from ..errors import Text4VisWarning, UsageError, VideoError, first_line

DECODE_DEVICES = ("cpu", "cuda")


def cuda_problem(path: str | None = None, device: str = "cuda") -> str | None:
    """Why frames cannot be decoded on `device` here (None when they can): no CUDA GPU, no torchcodec,
    or NVDEC failing on `path` (when given)."""
    import torch
    if not torch.cuda.is_available():
        return "no CUDA GPU here (torch.cuda.is_available() is False)"
    from .readers import missing
    why = missing("torchcodec")
    if why:
        return why
    if path is not None:
        try:
            from torchcodec.decoders import VideoDecoder
            VideoDecoder(path, device=device, seek_mode="approximate").get_frame_at(0)
        except Exception as exc:  # no NVDEC, a codec NVDEC lacks, a torchcodec build without CUDA, ...
            return f"torchcodec cannot decode {path} on {device} ({first_line(exc, 160)})"
    return None


def resolve_decode_device(decode_device: str, path: str | None = None, device="cuda") -> str:
    """"cuda" when decoding on the GPU works here (checked on `path`) and the model runs on a GPU
    (`device`), else "cpu" with a one-line warning."""
    if decode_device not in DECODE_DEVICES:
        raise UsageError(f"decode_device={decode_device!r}: choose cpu or cuda")
    if decode_device == "cpu":
        return "cpu"
    device = str(device)
    why = (f"the model runs on {device}, not on a GPU" if not device.startswith("cuda")
           else cuda_problem(path, device))
    if why:
        warnings.warn(f"decode_device='cuda': {why}; decoding on the CPU", Text4VisWarning, stacklevel=2)
        return "cpu"
    return "cuda"


def read_frames_cuda(path: str, choose, device: str = "cuda", cpu_read=None):
    """(uint8 torch tensor [T, H, W, 3] on `device`, N): NVDEC through torchcodec, the default video
    stream, frame indices as text4vis counts them (torchcodec's exact mode scans the packets).
    An input NVDEC cannot decode (a GIF, a frame folder or zip, a codec the GPU lacks) is read by
    `cpu_read()` (same contract as video.read_frames) and copied to the GPU, so every clip of a batch
    is on the same device."""
    import torch

    from .readers import read_torchcodec
    try:
        frames, n = read_torchcodec(path, choose, threads=1, device=device)
        if frames.ndim != 4:
            raise VideoError(f"{path}: NVDEC gave frames of shape {tuple(frames.shape)}")
        return frames, n
    except VideoError:
        if cpu_read is None:
            raise
    frames, n = cpu_read()
    return torch.from_numpy(frames).to(device), n
