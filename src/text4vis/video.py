"""Where a video file becomes frames.

Decoding is frame-accurate: frame indices always refer to the N frames that actually decode,
in presentation order, counted by this module (container headers are often missing or wrong).
Only the frames that are asked for are converted to RGB. Frames come out upright (the display
rotation is applied), from the container's default video stream.

Frame folders (the original Text4Vis "dir num_frames label" lists) are read here too.
"""
from __future__ import annotations

from .errors import VideoError  # noqa: F401  (re-exported: the error family lives in errors.py)

import os
import re
from typing import Callable, Sequence

import numpy as np
from PIL import Image

VIDEO_EXTENSIONS = {
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".gif", ".mpg", ".mpeg", ".wmv", ".flv",
    ".3gp", ".ts", ".mts", ".ogv",
}

try:
    import av
    av.logging.set_level(av.logging.PANIC)  # FFmpeg's own chatter would bypass our one-line errors
except ImportError:  # decoding needs PyAV; the rest of text4vis (e.g. `bench` on a bare GPU box) does not
    av = None




def _short(exc: BaseException) -> str:
    """The reason alone, for "PATH: problem (reason)" messages. For FFmpeg/OS errors that is the
    strerror: str() of those repeats the file name, adds an errno and, with PyAV, FFmpeg's "last
    error log", which is process-global and may be about another file."""
    reason = getattr(exc, "strerror", None)
    if isinstance(exc, OSError) or (av is not None and isinstance(exc, av.FFmpegError)):
        if isinstance(reason, str) and reason.strip():
            return reason.strip()
    text = str(exc).strip().splitlines()
    if not text:
        return type(exc).__name__
    return text[0].split("; last error log:")[0]


def _open(path: str):
    if av is None:
        raise VideoError(f"{path}: cannot decode videos: PyAV is not installed (pip install av)")
    if not os.path.exists(path):
        raise VideoError(f"{path}: no such file")
    if os.path.isdir(path):
        raise VideoError(f"{path}: is a directory, not a video")
    if os.path.getsize(path) == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    try:
        container = av.open(path, metadata_errors="ignore")
    except Exception as exc:  # PyAV raises many types (InvalidDataError, OSError, ...)
        raise VideoError(f"{path}: not a readable video ({_short(exc)})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream")
    return container


def _default_stream(container):
    """The container's default video stream: the first one flagged "default", else the first one
    (which need not be stream 0: phones often store audio first)."""
    videos = list(container.streams.video)
    for s in videos:
        if int(s.disposition) & int(av.stream.Disposition.default):
            return s
    return videos[0]


def frame_rate(path: str, default: float = 25.0) -> float:
    """Average frame rate of the default video stream (`default` when the container has none)."""
    container = _open(path)
    try:
        rate = _default_stream(container).average_rate
        return float(rate) if rate else default
    finally:
        container.close()


def count_frames(path: str) -> int:
    """Number of frames in the default video stream, by demuxing (no decoding)."""
    container = _open(path)
    try:
        return _scan_packets(container, _default_stream(container), path)[0]
    finally:
        container.close()


def _scan_packets(container, stream, path: str) -> tuple[int, list | None]:
    """(number of packets with data, their pts in decode order or None when some pts are missing)."""
    n, pts = 0, []
    try:
        for packet in container.demux(stream):
            if packet.size:
                n += 1
                pts.append(packet.pts)
    except Exception as exc:
        if n == 0:
            raise VideoError(f"{path}: cannot read video packets ({_short(exc)})") from None
    usable = all(p is not None for p in pts) and len(set(pts)) == len(pts)
    return n, (pts if usable else None)


def _to_rgb(frame) -> np.ndarray:
    image = frame.to_ndarray(format="rgb24")  # handles yuv420p/10-bit/gray/bgra (GIF) alike
    rotation = int(getattr(frame, "rotation", 0) or 0)
    if rotation % 360:
        # PyAV reports the display matrix angle (counter-clockwise); rot90 with k turns CCW by k*90
        image = np.ascontiguousarray(np.rot90(image, k=round(rotation / 90) % 4))
    return image


def _decode_selected(container, stream, wanted: Sequence[int], path: str) -> tuple[dict[int, np.ndarray], int]:
    """Decode the whole stream once, keep RGB copies of the wanted frame indices.

    Returns the kept frames and the number of frames that decoded. A stream that breaks part-way
    keeps what decoded before the break.
    """
    wanted_set = set(int(i) for i in wanted)
    kept: dict[int, np.ndarray] = {}
    n = 0
    container.seek(0)
    try:
        for frame in container.decode(stream):
            if n in wanted_set:
                kept[n] = _to_rgb(frame)
            n += 1
    except Exception as exc:
        if n == 0:
            raise VideoError(f"{path}: video stream does not decode ({_short(exc)})") from None
    return kept, n


def _decode_skipping(container, stream, wanted: Sequence[int], pts: list) -> dict[int, np.ndarray]:
    """Fast path: frame i is the packet with the i-th smallest pts; packets of unwanted frames are
    decoded with skip_frame=NONREF, so the decoder drops them unless other frames reference them.
    Returns the wanted frames it got (the caller falls back to a full decode for any missing)."""
    order = {p: i for i, p in enumerate(sorted(pts))}
    wanted_set = set(int(i) for i in wanted)
    ctx = stream.codec_context
    kept: dict[int, np.ndarray] = {}
    container.seek(0)
    try:
        for packet in container.demux(stream):
            if packet.size:
                ctx.skip_frame = "DEFAULT" if order.get(packet.pts) in wanted_set else "NONREF"
            for frame in packet.decode():
                i = order.get(frame.pts)
                if i in wanted_set and i not in kept:
                    kept[i] = _to_rgb(frame)
            if len(kept) == len(wanted_set):
                break  # everything asked for is here: the rest of the stream is not needed
    except Exception:
        pass
    finally:
        ctx.skip_frame = "DEFAULT"
    return kept


def read_frames(path: str, choose: Callable[[int], Sequence[int]], threads: int = 0) -> tuple[np.ndarray, int]:
    """Decode the frames of `path` that `choose(num_frames)` asks for.

    `choose` receives N, the true number of frames, and returns indices in 0..N-1 (repeats allowed,
    any order). Returns (frames uint8 [len(indices), H, W, 3] in the order asked, N).
    `threads`: 0 lets FFmpeg use slice threads (as many as it likes); 1 decodes in this thread only
    (best inside DataLoader workers, and it enables skipping unneeded frames). Frame threading is
    never used: it can deadlock on damaged H.264 streams.
    """
    if path.endswith(".frames.zip"):  # `text4vis prepare` output: packed, resized JPEG frames
        from .prepare import read_frame_zip
        return read_frame_zip(path, choose)
    if os.path.isdir(path):  # a frame folder (see find_videos): its images in name order are the frames
        return read_image_folder(path, choose)
    container = _open(path)
    try:
        stream = _default_stream(container)
        n, pts = _scan_packets(container, stream, path)
        if n == 0:
            raise VideoError(f"{path}: video stream has no frames")
        indices = [int(i) for i in choose(n)]
        kept: dict[int, np.ndarray] = {}
        # Slice threads only, never FFmpeg's frame threading ("FRAME"/"AUTO"): on a damaged H.264
        # stream frame threading can deadlock (the process then waits forever in futex_wait); slice
        # threads have no hand-off between frames (they finish within each frame's decode).
        stream.thread_type = "SLICE"
        stream.codec_context.thread_count = threads
        if threads == 1 and pts is not None:
            kept = _decode_skipping(container, stream, indices, pts)
        if not all(i in kept for i in indices):
            kept, decoded = _decode_selected(container, stream, indices, path)
            if decoded == 0:
                raise VideoError(f"{path}: video stream has no decodable frames")
            if decoded != n:
                # Packets and frames disagree (truncated or damaged stream): sample again on what decoded.
                n = decoded
                indices = [int(i) for i in choose(n)]
                if not all(i in kept for i in indices):
                    kept, _ = _decode_selected(container, stream, indices, path)
        missing = [i for i in indices if i not in kept]
        if missing:
            raise VideoError(f"{path}: frame {missing[0]} of {n} did not decode")
    finally:
        container.close()
    return _stack([kept[i] for i in indices], path), n


def read_all_frames(path: str) -> np.ndarray:
    """Every frame of the default video stream, upright, as uint8 [N, H, W, 3]."""
    frames, _ = read_frames(path, lambda n: range(n))
    return frames


def _stack(frames: list[np.ndarray], path: str) -> np.ndarray:
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:  # resolution changes mid-stream: bring every frame to the first one's size
        h, w = frames[0].shape[:2]
        frames = [f if f.shape[:2] == (h, w) else np.asarray(Image.fromarray(f).resize((w, h))) for f in frames]
    return np.stack(frames)


def read_frame_folder(directory: str, choose: Callable[[int], Sequence[int]], num_frames: int,
                      image_tmpl: str = "img_{:05d}.jpg", index_bias: int = 1) -> tuple[np.ndarray, int]:
    """Frames of an extracted-frames folder (original Text4Vis lists): index i reads
    `image_tmpl.format(i + index_bias)`."""
    if not os.path.isdir(directory):
        raise VideoError(f"{directory}: no such frame folder")
    if num_frames <= 0:
        raise VideoError(f"{directory}: list says it has {num_frames} frames")
    indices = [int(i) for i in choose(num_frames)]
    frames = []
    cache: dict[int, np.ndarray] = {}
    for i in indices:
        if i not in cache:
            name = os.path.join(directory, image_tmpl.format(i + index_bias))
            try:
                cache[i] = _read_image(name)
            except FileNotFoundError:
                raise VideoError(f"{name}: frame missing (folder has fewer frames than its list line says?)") from None
        frames.append(cache[i])
    return _stack(frames, directory), num_frames


IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png"}


def _read_image(name: str) -> np.ndarray:
    try:
        with Image.open(name) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise VideoError(f"{name}: not a readable image ({_short(exc)})") from None


def _frame_order(name: str) -> list:
    """Natural order of frame file names: frame_2.jpg before frame_10.jpg."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def frame_files(directory: str) -> list[str]:
    """The image files (JPEG/PNG) directly in `directory`, in frame order (names compared by their numbers)."""
    try:
        names = os.listdir(directory)
    except OSError as exc:
        raise VideoError(f"{directory}: cannot list the folder ({exc.strerror or exc})") from None
    return sorted((n for n in names if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS
                   and os.path.isfile(os.path.join(directory, n))), key=_frame_order)


def read_image_folder(directory: str, choose: Callable[[int], Sequence[int]]) -> tuple[np.ndarray, int]:
    """Frames of a frame folder given as one video (predict): its images in frame order, N = how many."""
    names = frame_files(directory)
    if not names:
        raise VideoError(f"{directory}: a folder without video files or frame images")
    indices = [int(i) for i in choose(len(names))]
    cache: dict[int, np.ndarray] = {}
    for i in indices:
        if i not in cache:
            cache[i] = _read_image(os.path.join(directory, names[i]))
    return _stack([cache[i] for i in indices], directory), len(names)


def is_frame_folder(directory: str, files: Sequence[str]) -> bool:
    """A folder holding image files and no video files (directly) is one video: its frames."""
    exts = {os.path.splitext(f)[1].lower() for f in files}
    return bool(exts & IMAGE_EXTENSIONS) and not exts & VIDEO_EXTENSIONS


def find_videos(paths: Sequence[str]) -> list[str]:
    """Expand files and folders (recursively, by video extension) into a list of inputs, in order.
    A folder that holds image files (JPEG/PNG) and no video files is one input, a frame folder (its
    subfolders are not searched). Paths that do not exist are kept, so that the caller reports them
    as failed inputs."""
    out: list[str] = []
    for p in map(os.fspath, paths):
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                if is_frame_folder(root, files):
                    out.append(root)
                    dirs.clear()
                    continue
                out.extend(os.path.join(root, f) for f in sorted(files)
                           if os.path.splitext(f)[1].lower() in VIDEO_EXTENSIONS)
        else:
            out.append(p)
    return out
