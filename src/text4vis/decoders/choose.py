"""`decoder=`: which reader a read of video frames uses.

    auto        the fastest reader that gives text4vis's frames for the access pattern, as measured by
                `text4vis bench --decode` (README, Decoding): `pyav_seek` (text4vis's PyAV reader with
                seeking) for predict/eval/index views and training clips. No peer reader is chosen by
                auto: none was faster on a pattern while giving the same frames on every test clip.
    pyav        text4vis's own reader (`video.read_frames`), always available
    pyav_seek, pyav_full, torchcodec, decord, opencv   that reader (see readers.py); a peer that is not
                installed is an error naming it

Timelines (`video.stream_frames`, one sequential pass) are not affected: no reader was faster there.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

CHOICES = ("auto", "pyav", "pyav_seek", "pyav_full", "torchcodec", "decord", "opencv")
AUTO = {"predict": "pyav_seek", "train": "pyav_seek"}  # access pattern -> reader, from the bench


def resolve(decoder: str, pattern: str = "predict") -> str:
    """The reader `decoder` means for `pattern` ("predict" or "train")."""
    if decoder not in CHOICES:
        from ..errors import UsageError
        raise UsageError(f"decoder={decoder!r}: choose from {', '.join(CHOICES)}")
    return AUTO.get(pattern, "pyav") if decoder == "auto" else decoder


def check_decoder(decoder: str) -> None:
    """UsageError for a reader that is unknown or, named explicitly, not usable here (not installed)."""
    name = resolve(decoder)
    if decoder != "auto":
        from .readers import missing
        why = missing(name)
        if why:
            from ..errors import UsageError
            raise UsageError(f"decoder={decoder!r}: {why}")


def read_frames(path: str, choose: Callable[[int], Sequence[int]], threads: int = 0, decoder: str = "auto",
                pattern: str = "predict", decode_device: str = "cpu"):
    """`video.read_frames` through the reader `decoder` chooses: (frames [T, H, W, 3] uint8, N).
    With decode_device="cuda" (already resolved by gpu.resolve_decode_device) the frames are a torch
    tensor on the GPU, decoded by NVDEC."""
    import os

    from .. import video
    if decode_device == "cuda":
        from .gpu import read_frames_cuda
        return read_frames_cuda(path, choose, cpu_read=lambda: read_frames(path, choose, threads, decoder, pattern))
    if path.endswith(video.FRAME_ZIP_SUFFIX) or os.path.isdir(path):
        return video.read_frames(path, choose, threads=threads)  # frame zips and folders: video.py's readers
    from .readers import read
    return read(resolve(decoder, pattern), path, choose, threads)
