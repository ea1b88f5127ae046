"""The video readers text4vis can decode with, behind one call: frames for frame indices.

Every reader answers `read(path, choose, threads) -> (uint8 [len(indices), H, W, 3] RGB, N)` where
`choose(N)` returns the indices wanted (repeats and any order allowed), exactly as
`video.read_frames`, and `read_sorted(path, indices, threads)` for one sequential pass over known
indices (the `timeline` pattern). What N counts and how display rotation is handled differ between
readers; each reader says so in `counts` and `rotation`.

    pyav        text4vis's own reader (`video.read_frames`): N = packets of the default video
                stream (demuxed, resampled on what decodes); one thread skips the non-reference
                frames no wanted frame needs and stops after the last wanted one.
    pyav_seek   text4vis's PyAV reader with seeking (this module): the same N and frames, but it
                jumps to the keyframe before each wanted frame that lies past the next keyframe,
                instead of decoding every reference frame from the start, when that saves at least
                half of the decoding (else it reads forward as `pyav` does). decoder="auto" uses it.
    pyav_full   PyAV decoding every frame of the stream (the plain PyAV loop; converts only the
                wanted frames).
    torchcodec  `VideoDecoder(seek_mode="exact").get_frames_at` on the CPU: N from its own scan of
                the packets; its "best" video stream (text4vis passes the default stream's index).
    decord      decord2/decord `VideoReader.get_batch`: N from its packet index; the "best" stream.
    opencv      `cv2.VideoCapture` reading forward (`grab` for unwanted frames): N from
                CAP_PROP_FRAME_COUNT (the container header or duration x fps, not a count).

The peers are optional (`pip install text4vis[decode]`); `missing(name)` says in one line why one
cannot be used here.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence

import numpy as np

from .. import video
from ..errors import UsageError, VideoError, first_line

PEERS = ("pyav_full", "torchcodec", "decord", "opencv")
READERS = ("pyav", "pyav_seek") + PEERS
CHOICES = ("auto",) + READERS  # the values of `decoder=`

# what N counts, and rotation, per reader (the bench prints these next to its figures)
COUNTS = {
    "pyav": "packets of the default video stream (demux), resampled on the frames that decode",
    "pyav_seek": "as pyav",
    "pyav_full": "as pyav (the same packet count; frames that decode when they differ)",
    "torchcodec": "its own packet scan (seek_mode='exact'); frames of the stream it is given",
    "decord": "its packet index of the 'best' video stream (av_find_best_stream)",
    "opencv": "CAP_PROP_FRAME_COUNT: the container's frame count or duration x fps (an estimate)",
}
ROTATION = {
    "pyav": "applied (display matrix)", "pyav_seek": "applied (display matrix)",
    "pyav_full": "applied (display matrix)", "torchcodec": "applied", "decord": "applied (decord2)",
    "opencv": "applied (CAP_PROP_ORIENTATION_AUTO)",
}
_MODULES = {"torchcodec": "torchcodec", "decord": "decord", "opencv": "cv2"}


def missing(name: str) -> str | None:
    """Why reader `name` cannot be used here (None when it can): not installed, or not loadable."""
    if name not in READERS:
        raise UsageError(f"decoder={name!r}: unknown reader (choose from {', '.join(CHOICES)})")
    if name.startswith("pyav"):
        return None if video.av is not None else "PyAV is not installed (pip install av)"
    module = _MODULES[name]
    if importlib.util.find_spec(module) is None:
        return f"{name} is not installed (pip install 'text4vis[decode]')"
    try:
        if name == "torchcodec":
            from torchcodec.decoders import VideoDecoder  # noqa: F401  (loads the FFmpeg libraries)
        else:
            importlib.import_module(module)
    except Exception as exc:  # torchcodec without FFmpeg's shared libraries, a broken wheel, ...
        return f"{name} does not load ({first_line(exc, 160, with_type=True)})"
    return None


def read(name: str, path: str, choose: Callable[[int], Sequence[int]], threads: int = 1) -> tuple[np.ndarray, int]:
    """Frames `choose(N)` of `path` with reader `name` (see the module doc): (uint8 [T, H, W, 3], N)."""
    if name == "pyav":
        return video.read_frames(path, choose, threads=threads)
    fn = {"pyav_seek": read_pyav_seek, "pyav_full": read_pyav_full, "torchcodec": read_torchcodec,
          "decord": read_decord, "opencv": read_opencv}[name]
    why = missing(name)
    if why:
        raise UsageError(f"decoder={name!r}: {why}")
    return fn(path, choose, threads)


def read_sorted(name: str, path: str, indices: Sequence[int], threads: int = 1) -> np.ndarray:
    """One pass over increasing, distinct `indices` (the `timeline` pattern): uint8 [len, H, W, 3].
    text4vis streams them (`video.stream_frames`); the peers get them in one call of their own API."""
    if name == "pyav":
        got = dict(video.stream_frames(path, indices, threads=threads))
        return np.stack([got[i] for i in indices])
    return read(name, path, lambda n: indices, threads)[0]


def _check(path: str, n: int, indices: list[int], reader: str) -> None:
    if n <= 0:
        raise VideoError(f"{path}: {reader} finds no frames")
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise VideoError(f"{path}: frame {bad[0]} is outside the {n} frames {reader} counts")


# ----------------------------------------------------------------------------- PyAV

def _pyav_open(path: str, threads: int):
    container = video._open(path)
    stream = video._default_stream(container)
    n, pts = video._scan_packets(container, stream, path)
    if n == 0:
        container.close()
        raise VideoError(f"{path}: video stream has no frames")
    video._set_threads(stream, threads)
    return container, stream, n, pts


def read_pyav_full(path: str, choose, threads: int = 1) -> tuple[np.ndarray, int]:
    """Decode every frame (no skipping, no early stop); convert the wanted ones."""
    container, stream, n, _ = _pyav_open(path, threads)
    try:
        indices = [int(i) for i in choose(n)]
        _check(path, n, indices, "PyAV")
        kept, decoded = video._decode_selected(container, stream, indices, path)
        missing_ = [i for i in indices if i not in kept]
        if missing_:
            raise VideoError(f"{path}: frame {missing_[0]} of {n} did not decode ({decoded} decoded)")
    finally:
        container.close()
    return video._stack([kept[i] for i in indices], path), n


def keyframe_indices(path: str) -> tuple[list[int], int]:
    """(presentation indices of the keyframes of the default video stream, N), by demuxing only."""
    container = video._open(path)
    try:
        stream = video._default_stream(container)
        pts, keys = [], []
        for packet in container.demux(stream):
            if packet.size:
                pts.append(packet.pts)
                keys.append(bool(packet.is_keyframe))
    finally:
        container.close()
    if not pts or any(p is None for p in pts) or len(set(pts)) != len(pts):
        return [0], len(pts)
    order = {p: i for i, p in enumerate(sorted(pts))}
    return sorted(order[p] for p, k in zip(pts, keys) if k), len(pts)


def seek_cost(keys: list[int], wanted, n: int | None = None) -> int:
    """Frames decoded to get `wanted` by seeking (a model from keyframe positions, in presentation order):
    a wanted frame reachable by decoding forward (no keyframe after the current position up to it) costs
    the frames up to it; otherwise a seek to the keyframe at or before it, and the frames from there."""
    total, pos = 0, -1
    for t in sorted(set(wanted)):
        k = keys[int(np.searchsorted(keys, t, "right")) - 1] if keys else 0
        total += t - pos if pos < t and k <= pos + 1 else t - k + 1
        pos = t
    return total


SEEK_GAIN = 0.5  # seek only when that decodes at most half the frames a forward pass decodes


class SeekStats:
    """What a seeking read did: seeks made, frames out of the decoder, and whether it read forward instead."""

    def __init__(self):
        self.seeks = 0
        self.decoded = 0
        self.forward = False


def read_pyav_seek(path: str, choose, threads: int = 1, stats: SeekStats | None = None) -> tuple[np.ndarray, int]:
    """text4vis's reader with seeking: frame i is the packet with the i-th smallest pts (as the
    one-thread reader); wanted frames are visited in increasing order, and when the next one lies
    beyond the next keyframe the demuxer seeks to the keyframe at or before it instead of decoding
    everything in between. Packets of frames no wanted frame needs are skipped by the decoder
    (skip_frame=NONREF), as in `video.read_frames`. Falls back to `video.read_frames` (the same
    frames) when timestamps are missing or a seek does not land where it should."""
    stats = stats if stats is not None else SeekStats()
    stats.forward = False
    container = video._open(path)
    try:
        stream = video._default_stream(container)
        pts, keyflags = [], []
        try:
            for packet in container.demux(stream):
                if packet.size:
                    pts.append(packet.pts)
                    keyflags.append(bool(packet.is_keyframe))
        except Exception:
            pts = [None]  # a damaged stream: the plain reader handles it
        n = len(pts)
        usable = n > 0 and all(p is not None for p in pts) and len(set(pts)) == n
        kept, indices = None, None
        if usable:
            indices = [int(i) for i in choose(n)]
            usable = all(0 <= i < n for i in indices)  # else video.read_frames says what is wrong
        if usable:
            video._set_threads(stream, threads)
            kept = _seek_decode(container, stream, indices, pts, keyflags, stats)
    finally:
        container.close()
    if kept is None or not all(i in kept for i in indices):
        return video.read_frames(path, (lambda m: indices if m == n else choose(m)) if indices else choose,
                                 threads=threads)
    return video._stack([kept[i] for i in indices], path), n


def _seek_decode(container, stream, indices: list[int], pts: list, keyflags: list, stats: SeekStats) -> dict | None:
    """The wanted frames by seeking (None when the stream does not allow it), or by one forward pass
    (`video`'s frame-skipping loop) when seeking would not save at least half the decoding."""
    sorted_pts = sorted(pts)
    order = {p: i for i, p in enumerate(sorted_pts)}
    keys = sorted(order[p] for p, k in zip(pts, keyflags) if k)
    if not keys or keys[0] != 0:
        return None
    wanted = sorted(set(indices))
    if seek_cost(keys, wanted) > SEEK_GAIN * (wanted[-1] + 1):
        stats.forward = True
        return video._decode_skipping(container, stream, indices, pts)
    kept: dict[int, np.ndarray] = {}
    ctx = stream.codec_context

    def key_before(i):
        return keys[int(np.searchsorted(keys, i, "right")) - 1]

    pos = None  # index of the last frame out of the decoder since the last seek
    w = 0
    try:
        while w < len(wanted):
            target = wanted[w]
            if stats.seeks > len(wanted) + 1:
                return None  # seeks that do not land where they should
            container.seek(int(sorted_pts[key_before(target)]), stream=stream, backward=True, any_frame=False)
            stats.seeks += 1
            pos = None
            ahead = set(wanted[w:])
            for packet in container.demux(stream):  # forward until the next wanted frame is cheaper by a seek
                if packet.size:
                    ctx.skip_frame = "DEFAULT" if order.get(packet.pts) in ahead else "NONREF"
                for frame in packet.decode():
                    stats.decoded += 1
                    i = order.get(frame.pts)
                    if i is None or (pos is None and i > wanted[w]):
                        return None  # unknown timestamp, or the seek landed past the wanted frame
                    pos = i
                    if i in ahead and i not in kept:
                        kept[i] = video._to_rgb(frame)
                while w < len(wanted) and wanted[w] in kept:
                    w += 1
                if w == len(wanted) or (pos is not None and (pos >= wanted[w] or key_before(wanted[w]) > pos + 1)):
                    break
            else:
                if w < len(wanted):
                    return None  # the stream ended first
    except Exception:
        return None
    finally:
        ctx.skip_frame = "DEFAULT"
    return kept


# ----------------------------------------------------------------------------- peers

def _default_stream_index(path: str) -> int | None:
    """The index (among all streams) of text4vis's default video stream, for peers that take one."""
    try:
        container = video._open(path)
    except VideoError:
        return None
    try:
        return int(video._default_stream(container).index)
    finally:
        container.close()


def read_torchcodec(path: str, choose, threads: int = 1, device: str = "cpu", same_stream: bool = True):
    """torchcodec `VideoDecoder.get_frames_at` (exact seek mode); frames on `device` (a torch tensor
    there for CUDA, numpy on the CPU)."""
    from torchcodec.decoders import VideoDecoder
    stream_index = _default_stream_index(path) if same_stream else None
    try:
        dec = VideoDecoder(path, stream_index=stream_index, dimension_order="NHWC", num_ffmpeg_threads=threads,
                           device=device, seek_mode="exact")
        n = len(dec)
        indices = [int(i) for i in choose(n)]
        _check(path, n, indices, "torchcodec")
        frames = dec.get_frames_at(indices=indices).data
    except VideoError:
        raise
    except Exception as exc:
        raise VideoError(f"{path}: torchcodec cannot decode it ({first_line(exc, 160)})") from None
    return (frames.numpy() if device == "cpu" else frames), n


def read_decord(path: str, choose, threads: int = 1):
    """decord2/decord `VideoReader.get_batch` on the CPU."""
    import decord
    try:
        vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=threads)
        n = len(vr)
        indices = [int(i) for i in choose(n)]
        _check(path, n, indices, "decord")
        frames = vr.get_batch(indices).asnumpy()
    except VideoError:
        raise
    except Exception as exc:
        raise VideoError(f"{path}: decord cannot decode it ({first_line(exc, 160)})") from None
    return frames, n


def read_opencv(path: str, choose, threads: int = 1):
    """cv2.VideoCapture read forward: `grab` for frames not wanted, `retrieve` + BGR->RGB for wanted ones."""
    import cv2
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])
    try:
        if not cap.isOpened():
            raise VideoError(f"{path}: OpenCV cannot open it")
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        indices = [int(i) for i in choose(n)]
        _check(path, n, indices, "OpenCV")
        wanted, kept = set(indices), {}
        for i in range(max(indices) + 1):
            if not cap.grab():
                raise VideoError(f"{path}: OpenCV stops at frame {i} of the {n} it counts")
            if i in wanted:
                ok, bgr = cap.retrieve()
                if not ok:
                    raise VideoError(f"{path}: OpenCV cannot convert frame {i}")
                kept[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()
    return np.stack([kept[i] for i in indices]), n
