"""Where a video file becomes frames.

Decoding is frame-accurate: frame indices always refer to the N frames that actually decode,
in presentation order, counted by this module (container headers are often missing or wrong).
Only the frames that are asked for are converted to RGB. Frames come out upright (the display
rotation is applied), from the container's default video stream.

Long videos are read in one streaming pass: `probe` (a demux-only scan: frame times from the
timestamps) then `stream_frames` (each frame decoded at most once, only wanted frames converted),
on the same decoding loop as the clip reader's frame-skipping path.

Frame folders (the original Text4Vis "dir num_frames label" lists) and frame zips (`text4vis prepare`'s
output) are read here too.
"""
from __future__ import annotations

from . import remote
from .errors import VideoError, first_line

import io
import json
import os
import re
import zipfile
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
    return first_line(exc).split("; last error log:")[0]


# What FFmpeg may open in a file that a user did not choose (server uploads, `index build --untrusted`):
# only demuxers that hold their media in the file itself, chosen by probing the content (never by the
# file's name). Playlists and references (HLS, DASH, concat, image sequences, ...) read other files
# or URLs, so they are not on the list; the protocol is the local file alone; MOV data references
# (`enable_drefs`) stay off.
MEDIA_DEMUXERS = ("mov", "matroska", "avi", "gif", "mpegts", "mpeg", "flv", "asf", "ogg", "ivf",
                  "h264", "hevc", "m4v", "mpegvideo", "nut")
MEDIA_CONTAINERS = ("MP4/MOV, Matroska/WebM, AVI, GIF, MPEG-TS/PS, FLV, ASF/WMV, Ogg, IVF, NUT and raw "
                    "H.264/HEVC/MPEG video")
MEDIA_FILES_ONLY_ENV = "TEXT4VIS_MEDIA_FILES_ONLY"


def media_files_only(enabled: bool = True) -> None:
    """Open every video of this process, and of the processes it starts (DataLoader workers, decode
    workers), as a file a user did not choose: a self-contained media container from MEDIA_DEMUXERS
    or nothing, so that a playlist or reference file cannot make FFmpeg read any other file.
    Process-wide on purpose: it is set by processes whose every input is untrusted (the server's
    decode workers; `index build --untrusted`)."""
    os.environ[MEDIA_FILES_ONLY_ENV] = "1" if enabled else "0"


def _open_options() -> dict[str, str]:
    if os.environ.get(MEDIA_FILES_ONLY_ENV) != "1":
        return {}
    return {"format_whitelist": ",".join(MEDIA_DEMUXERS), "protocol_whitelist": "file", "enable_drefs": "0"}


def _open(path: str):
    if av is None:
        raise VideoError(f"{path}: cannot decode videos: PyAV is not installed (pip install av)")
    source = path
    if remote.is_remote(path):  # s3://, gs://, az://, http(s)://: a seekable file read with ranged requests
        source = remote.open_video(path)
    elif not os.path.exists(path):
        raise VideoError(f"{path}: no such file")
    elif os.path.isdir(path):
        raise VideoError(f"{path}: is a directory, not a video")
    elif os.path.getsize(path) == 0:
        raise VideoError(f"{path}: empty file (0 bytes)")
    options = _open_options()
    try:
        container = av.open(source, metadata_errors="ignore", options=options)
    except Exception as exc:  # PyAV raises many types (InvalidDataError, OSError, ...)
        if options and isinstance(exc, av.ArgumentError):  # FFmpeg's "format not on whitelist" (EINVAL)
            raise VideoError(f"{path}: not a readable video (only self-contained video files are opened here: "
                             f"{MEDIA_CONTAINERS}; playlists and reference files are refused)") from None
        raise VideoError(f"{path}: not a readable video ({_short(exc)})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream")
    problem = not_a_video(container)
    if problem:
        container.close()
        raise VideoError(f"{path}: {problem}")
    return container


# FFmpeg demuxers that draw pictures of text or raw data (ANSI art, BIN/XBIN/ADF/IDF), and the
# decoders that do the drawing: what they give is not footage
RENDERING_DEMUXERS = {"tty", "bin", "xbin", "adf", "idf"}
RENDERING_CODECS = {"ansi", "bintext", "xbin", "idf"}


def not_a_video(container) -> str | None:
    """Why an opened file is not a video (None when it is one): text or data that FFmpeg renders as
    pictures, or a still image (FFmpeg's image demuxers: `image2`, `png_pipe`, `jpeg_pipe`, ...;
    a GIF is a video). Still images are refused rather than read as 1-frame videos (README, Decoding)."""
    fmt = container.format.name or ""
    codecs = {s.codec_context.name for s in container.streams.video}
    if fmt in RENDERING_DEMUXERS or codecs & RENDERING_CODECS:
        return (f"not a video: text or data rendered as pictures (FFmpeg demuxer {fmt!r}, "
                f"{container.format.long_name})")
    if fmt in ("image2", "image2pipe") or (fmt.endswith("_pipe") and fmt != "gif_pipe"):
        return (f"a still image (FFmpeg demuxer {fmt!r}, {container.format.long_name}), not a video; "
                f"text4vis reads videos, frame folders and GIFs")
    return None


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


def _scan_packets(container, stream, path: str, corrupt: list | None = None) -> tuple[int, list | None]:
    """(number of packets with data, their pts in decode order or None when some pts are missing).
    `corrupt` (optional) receives the pts of packets the demuxer flags as corrupt (a packet cut by the end
    of a truncated file)."""
    n, pts = 0, []
    try:
        for packet in container.demux(stream):
            if packet.size:
                n += 1
                pts.append(packet.pts)
                if corrupt is not None and packet.is_corrupt:
                    corrupt.append(packet.pts)
    except Exception as exc:
        if n == 0:
            raise VideoError(f"{path}: cannot read video packets ({_short(exc)})") from None
    usable = all(p is not None for p in pts) and len(set(pts)) == len(pts)
    return n, (pts if usable else None)


def _set_threads(stream, threads: int) -> None:
    """Slice threads only, never FFmpeg's frame threading ("FRAME"/"AUTO"): on a damaged H.264
    stream frame threading can deadlock (the process then waits forever in futex_wait); slice
    threads have no hand-off between frames (they finish within each frame's decode).
    threads=0 lets FFmpeg choose how many."""
    stream.thread_type = "SLICE"
    stream.codec_context.thread_count = threads


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


def _decoded(container, stream, order: dict | None, wanted: set | None, skip_corrupt: bool = False):
    """One sequential decoding pass: (frame index, PyAV frame) for each frame out of the decoder.

    `order` maps a pts to its frame index (presentation order; a frame whose pts it lacks gets None);
    without it frames are counted as they come. With `order` and `wanted`, packets of unwanted frames
    are decoded with skip_frame=NONREF, so the decoder drops them unless other frames reference them.
    `skip_corrupt`: packets flagged corrupt are not decoded (the end of a file cut short, see `probe`).
    Decoding errors propagate to the caller."""
    ctx = stream.codec_context
    n = 0
    try:
        for packet in container.demux(stream):
            if skip_corrupt and packet.size and packet.is_corrupt:
                continue
            if order is not None and wanted is not None and packet.size:
                ctx.skip_frame = "DEFAULT" if order.get(packet.pts) in wanted else "NONREF"
            for frame in packet.decode():
                yield (order.get(frame.pts) if order is not None else n), frame
                n += 1
    finally:
        ctx.skip_frame = "DEFAULT"


def _decode_skipping(container, stream, wanted: Sequence[int], pts: list) -> dict[int, np.ndarray]:
    """Fast path: frame i is the packet with the i-th smallest pts; packets of unwanted frames are
    skipped by the decoder where possible (`_decoded`). Returns the wanted frames it got (the caller
    falls back to a full decode for any missing)."""
    order = {p: i for i, p in enumerate(sorted(pts))}
    wanted_set = set(int(i) for i in wanted)
    kept: dict[int, np.ndarray] = {}
    container.seek(0)
    frames = _decoded(container, stream, order, wanted_set)
    try:
        for i, frame in frames:
            if i in wanted_set and i not in kept:
                kept[i] = _to_rgb(frame)
            if len(kept) == len(wanted_set):
                break  # everything asked for is here: the rest of the stream is not needed
    except Exception:
        pass
    finally:
        frames.close()
    return kept


def read_frames(path: str, choose: Callable[[int], Sequence[int]], threads: int = 0) -> tuple[np.ndarray, int]:
    """Decode the frames of `path` that `choose(num_frames)` asks for.

    `choose` receives N, the true number of frames, and returns indices in 0..N-1 (repeats allowed,
    any order). Returns (frames uint8 [len(indices), H, W, 3] in the order asked, N).
    `threads`: 0 lets FFmpeg use slice threads (as many as it likes); 1 decodes in this thread only
    (best inside DataLoader workers, and it enables skipping unneeded frames). Frame threading is
    never used: it can deadlock on damaged H.264 streams.
    """
    if path.endswith(FRAME_ZIP_SUFFIX):  # `text4vis prepare` output: packed, resized JPEG frames
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
        _set_threads(stream, threads)
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


FRAME_ZIP_SUFFIX = ".frames.zip"


def read_frame_zip(path: str, choose) -> tuple[np.ndarray, int]:
    """The chosen frames of a .frames.zip (indices in 0..N-1, N from meta.json)."""
    try:
        with zipfile.ZipFile(path) as z:
            n = int(json.loads(z.read("meta.json"))["num_frames"])
            indices = [int(i) for i in choose(n)]
            cache: dict[int, np.ndarray] = {}
            for i in indices:
                if i not in cache:
                    with Image.open(io.BytesIO(z.read(f"{i:06d}.jpg"))) as im:
                        im.draft("RGB", im.size)  # decode straight to RGB in libjpeg
                        cache[i] = np.asarray(im.convert("RGB"))
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, RuntimeError) as exc:
        raise VideoError(f"{path}: damaged prepared frames file ({first_line(exc, 160)})") from None
    return np.stack([cache[i] for i in indices]), n


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


def count_frame_files(directory: str, image_tmpl: str = "img_{:05d}.jpg", index_bias: int = 1) -> int:
    """Frames in an extracted-frames folder: how many of `image_tmpl.format(index_bias + i)`, i = 0, 1, ...
    exist one after another. The names are looked up in the folder's listing, never as glob
    patterns (HMDB51 folder names hold `[`, `]`, `!`); other files in the folder do not count."""
    try:
        names = set(os.listdir(directory))
    except OSError as exc:
        raise VideoError(f"{directory}: cannot list the frame folder ({_short(exc)})") from None
    n = 0
    while n < len(names) and image_tmpl.format(n + index_bias) in names:
        n += 1
    return n


def read_frame_folder(directory: str, choose: Callable[[int], Sequence[int]], num_frames: int,
                      image_tmpl: str = "img_{:05d}.jpg", index_bias: int = 1) -> tuple[np.ndarray, int]:
    """Frames of an extracted-frames folder (original Text4Vis lists): index i reads
    `image_tmpl.format(i + index_bias)`. The frames are those the folder holds (counted as the
    reference counts them), whatever `num_frames` (the list line's count, which may be 0 or stale)
    says; returns (frames, the folder's frame count)."""
    if not os.path.isdir(directory):
        raise VideoError(f"{directory}: no such frame folder")
    found = count_frame_files(directory, image_tmpl, index_bias)
    if found == 0:
        raise VideoError(f"{directory}: holds no frames named like {image_tmpl.format(index_bias)!r} "
                         f"(the list line says {num_frames})")
    num_frames = found
    indices = [int(i) for i in choose(num_frames)]
    frames = []
    cache: dict[int, np.ndarray] = {}
    for i in indices:
        if i not in cache:
            name = os.path.join(directory, image_tmpl.format(i + index_bias))
            try:
                cache[i] = _read_image(name)
            except FileNotFoundError:
                raise VideoError(f"{name}: frame missing (frame {i} of the {num_frames} the folder holds)") from None
            except Exception as exc:
                raise VideoError(f"{name}: not a readable image ({_short(exc)})") from None
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


def list_inputs(paths) -> list[tuple[str, bool]]:
    """`find_videos`, keeping track of the inputs: (path, is_empty_folder) in input order, each folder walked
    once. A list file (`remote.read_list_file`: .txt/.lst/.list, .csv with a `path` column; local or a URL)
    stands for its entries, each a file, folder or URL. A folder or list given as an input that holds no
    video is one (it, True) item, so that a caller can report it as a failed input in its place."""
    items: list[tuple[str, bool]] = []
    for p in [paths] if isinstance(paths, (str, os.PathLike)) else list(paths):
        if remote.is_list_file(p):
            found = find_videos(remote.read_list_file(os.fspath(p)))
            items.extend([(f, False) for f in found] or [(os.fspath(p), True)])
            continue
        found = find_videos([p])
        items.extend([(os.fspath(p), True)] if os.path.isdir(p) and not found else [(f, False) for f in found])
    return items


def empty_input_error(path: str) -> str:
    """The error of a `list_inputs` item marked empty: a folder or a list file that names no video."""
    return ("a list without video files" if os.fspath(path).lower().endswith(remote.LIST_EXTENSIONS)
            else "a folder without video files")


# ----------------------------------------------------------------------------- streaming (long videos)

class VideoInfo:
    """What a demux-only scan says about a video's default stream: its frames' presentation times.

    `times[i]` is the time in seconds of frame i (presentation order, the first frame at 0), from the
    packets' presentation timestamps (so variable-frame-rate videos are right), or i / frame rate
    when the container has no usable timestamps. `duration` is the last frame's time plus one frame.
    `header_duration` is the length the container's header declares when it declares more frames than
    the file holds (a file cut short: a faststart MP4 whose header says 12 s with 6 s of data), else None.
    """

    def __init__(self, path: str, times: np.ndarray, duration: float, fps: float, pts: list | None,
                 header_duration: float | None = None):
        self.path, self.times, self.duration, self.fps, self.pts = path, times, duration, fps, pts
        self.header_duration = header_duration

    @property
    def num_frames(self) -> int:
        return int(len(self.times))


FRAME_FOLDER_RATE = 25.0  # frames per second of a frame folder (images carry no timestamps)


def _probe_folder(path: str) -> VideoInfo:
    names = frame_files(path)
    if not names:
        raise VideoError(f"{path}: a folder without video files or frame images")
    n = len(names)
    return VideoInfo(path, np.arange(n, dtype=np.float64) / FRAME_FOLDER_RATE, round(n / FRAME_FOLDER_RATE, 6),
                     FRAME_FOLDER_RATE, None)


def _folder_frames(path: str, wanted: Sequence[int] | None, stats: DecodeStats | None = None):
    """(i, RGB image) of a frame folder for the indices `wanted` (all when None), in order."""
    names = frame_files(path)
    for i in (range(len(names)) if wanted is None else sorted(set(int(i) for i in wanted))):
        rgb = np.array(_read_image(os.path.join(path, names[i])))  # writable: torch.from_numpy shares it
        if stats is not None:
            stats.decoded, stats.converted, stats.last_index = stats.decoded + 1, stats.converted + 1, i
        yield i, rgb


def probe(path: str) -> VideoInfo:
    """Scan the packets of `path`'s default video stream (no decoding): frame times, duration, fps. A frame
    folder (images, no video) is read as a video at FRAME_FOLDER_RATE frames per second, in frame order."""
    if os.path.isdir(path):
        return _probe_folder(path)
    container = _open(path)
    try:
        stream = _default_stream(container)
        corrupt: list = []
        n, pts = _scan_packets(container, stream, path, corrupt)
        rate = float(stream.average_rate) if stream.average_rate else 0.0
        base = float(stream.time_base) if stream.time_base else 0.0
        declared = int(stream.frames or 0)  # the header's frame count (MP4/MOV), 0 when unknown
        header = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
    finally:
        container.close()
    cut_short = declared > n + END_SLACK
    if cut_short and corrupt and pts is not None:  # the packet cut by the file's end is not a frame
        pts = [p for p in pts if p not in set(corrupt)]
        n = len(pts)
    if n == 0:
        raise VideoError(f"{path}: video stream has no frames")
    if pts is not None and base > 0:
        order = np.sort(np.asarray(pts, dtype=np.int64))
        times = (order - order[0]).astype(np.float64) * base
        step = float(np.median(np.diff(times))) if n > 1 else (1.0 / rate if rate else 0.04)
    else:
        step = 1.0 / rate if rate else 0.04
        times = np.arange(n, dtype=np.float64) * step
    duration = round(float(times[-1] + (step if step > 0 else 0.04)), 6)
    cut = cut_short and header is not None and header > duration + step  # the data ends early
    return VideoInfo(path, times, duration, n / duration, pts, round(header, 6) if cut else None)


class DecodeStats:
    """What one streaming pass did: frames out of the decoder, frames converted to RGB, the index of
    the last frame that came out, and why the stream broke off early (None when it did not)."""

    def __init__(self):
        self.decoded = 0
        self.converted = 0
        self.last_index = -1
        self.broken: str | None = None


END_SLACK = 3  # frames a decoder may drop at the very end of a stream (edit lists, flushing)


def stream_frames(path: str, wanted: Sequence[int], info: VideoInfo | None = None, threads: int = 0,
                  stats: DecodeStats | None = None):
    """One sequential pass over `path`: yields (i, RGB frame) for the indices i of `wanted` (frame
    indices in presentation order, as in `probe`), in increasing order, each at most once.

    Each frame is decoded at most once and only wanted frames are converted to RGB; packets of
    unwanted frames are skipped by the decoder where the codec allows (`_decoded`). Frames are
    identified by their timestamps; a wanted frame that never comes out of the decoder (an edit
    list dropped it) is served by the next frame that does, or, within END_SLACK frames of the end,
    by the last one. A stream that breaks off earlier ends the pass there: the indices after the
    break are not yielded and `stats.broken` says why (VideoError when no frame decodes at all).
    """
    info = info or probe(path)
    todo = sorted(set(int(i) for i in wanted))
    if not todo:
        return
    if os.path.isdir(path):  # a frame folder: each wanted image read once
        yield from _folder_frames(path, todo, stats)
        return
    order = {p: i for i, p in enumerate(sorted(info.pts))} if info.pts is not None else None
    stats = stats if stats is not None else DecodeStats()
    container = _open(path)
    try:
        stream = _default_stream(container)
        _set_threads(stream, threads)
        frames = _decoded(container, stream, order, set(todo), info.header_duration is not None)  # skip_corrupt
        pos, last_frame = 0, None
        try:
            for i, frame in frames:
                i = stats.last_index + 1 if i is None else i  # a frame without a known pts: the next one
                stats.decoded += 1
                stats.last_index = max(stats.last_index, i)
                last_frame = frame
                if pos < len(todo) and todo[pos] <= i:
                    rgb = _to_rgb(frame)
                    stats.converted += 1
                    while pos < len(todo) and todo[pos] <= i:
                        yield todo[pos], rgb
                        pos += 1
                if pos == len(todo):
                    return  # everything asked for is out: the rest of the stream is not needed
        except VideoError:
            raise
        except Exception as exc:  # a damaged stream: the pass ends where it broke
            stats.broken = _short(exc)
        finally:
            frames.close()
        if last_frame is None:
            reason = f" ({stats.broken})" if stats.broken else ""
            raise VideoError(f"{path}: video stream has no decodable frames{reason}")
        if stats.broken is None and stats.last_index >= info.num_frames - 1 - END_SLACK:
            rgb = _to_rgb(last_frame)
            stats.converted += 1
            for i in todo[pos:]:
                yield i, rgb
        elif stats.broken is None:
            stats.broken = f"frames after {stats.last_index + 1} of {info.num_frames} do not decode"
    finally:
        container.close()


def iter_all_frames(path: str, threads: int = 0):
    """Every frame of the default video stream, upright, in presentation order, as (time in seconds,
    RGB frame), times from the timestamps (a frame folder: FRAME_FOLDER_RATE). For writing annotated
    copies; stops where a stream breaks."""
    if os.path.isdir(path):
        for i, rgb in _folder_frames(path, None):
            yield i / FRAME_FOLDER_RATE, rgb
        return
    container = _open(path)
    try:
        stream = _default_stream(container)
        _set_threads(stream, threads)
        first = None
        rate = float(stream.average_rate) if stream.average_rate else 25.0
        n = 0
        try:
            for _, frame in _decoded(container, stream, None, None):
                if frame.pts is not None and frame.time_base:
                    t = float(frame.pts * frame.time_base)
                    first = t if first is None else first
                    t -= first
                else:
                    t = n / rate
                n += 1
                yield t, _to_rgb(frame)
        except Exception as exc:
            if n == 0:
                raise VideoError(f"{path}: video stream does not decode ({_short(exc)})") from None
    finally:
        container.close()
