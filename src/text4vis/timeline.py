"""Untrimmed videos: what happens when, by scoring time windows of a video of any length.

    windows   start at 0, stride, 2*stride, ... seconds and last `window` seconds
              (`sampling.window_spans`: the last one ends at the video's end; a video shorter
              than one window is one window). Times come from the frames' presentation timestamps.
    sampling  each window holds the frames whose time falls in [start, end); T of them are taken
              with the test-time rule (`sampling.view_indices`, one clip), each frame is resized
              (short side) and centre-cropped as `predict` does, and the clip is scored exactly
              as `predict` scores a clip: softmax(100 x cosine) against the classifier.
    decoding  one sequential pass (`video.stream_frames`): every frame is decoded at most once,
              only frames some window samples are converted, each converted frame is cropped once
              and shared by the windows that sample it, and it is dropped as soon as the last
              window that needs it has been handed to the model. Decoding runs in a thread that
              feeds batches of windows to the model, so decoding and the model overlap.
    segments  the window scores are smoothed over neighbouring windows (mean over `smooth` windows
              on each side); each window's label is its smoothed top-1 class, or a gap when that
              smoothed score is under `min_score`. A window stands for the part of the video
              nearest its centre (from halfway to the previous window's centre to halfway to the
              next one's, never outside the window itself), so these parts tile [0, duration]
              when stride <= window; consecutive windows with the same label merge into one
              segment, scored by the mean of their smoothed scores.
"""
from __future__ import annotations

import os
import queue
import threading
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import engine, sampling, transforms, video
from .errors import UsageError, VideoError
from .records import window_records

DEFAULT_WINDOW, DEFAULT_STRIDE = 4.0, 2.0


# ----------------------------------------------------------------------------- which frames each window takes

def plan_windows(info: video.VideoInfo, window: float, stride: float, num_frames: int) -> list[dict]:
    """The windows of a probed video: [{"start", "end", "frames": [T frame indices]}].

    Window [start, end) holds the frames whose time is in it (the last window every frame up to
    the end); a window that holds no frame (a long frame of a variable-rate video, or a gap)
    takes the frame shown at its start. T indices follow the test-time rule over its frames."""
    try:
        spans = sampling.window_spans(info.duration, window, stride)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    times, n = info.times, info.num_frames
    out = []
    for k, (start, end) in enumerate(spans):
        lo = int(np.searchsorted(times, start - 1e-9, "left"))
        hi = n if k == len(spans) - 1 and end >= info.duration - 1e-9 else int(np.searchsorted(times, end - 1e-9, "left"))
        if hi <= lo:
            lo = max(0, min(n - 1, int(np.searchsorted(times, start + 1e-9, "right")) - 1))
            hi = lo + 1
        indices = [lo + i for i in sampling.view_indices(hi - lo, num_frames, 1)[0]]
        out.append({"start": start, "end": end, "frames": indices})
    return out


# ----------------------------------------------------------------------------- decoding thread

class Held:
    """How many cropped frames the decoding side holds at once (for tests and `bench`)."""

    def __init__(self):
        self.now = 0
        self.peak = 0


def window_clips(path: str, info: video.VideoInfo, plan: list[dict], input_size: int,
                 stats: video.DecodeStats | None = None, held: Held | None = None,
                 threads: int = 0) -> Iterator[tuple[int, torch.Tensor]]:
    """(k, uint8 clip [T, 3, S, S]) for every window k of `plan`, as soon as its last frame decodes.

    Only the crops of frames that some unfinished window still needs are kept."""
    held = held if held is not None else Held()
    users: dict[int, list[tuple[int, int]]] = {}  # frame index -> [(window, slot)]
    for k, w in enumerate(plan):
        for slot, i in enumerate(w["frames"]):
            users.setdefault(i, []).append((k, slot))
    remaining = {i: len({k for k, _ in u}) for i, u in users.items()}  # windows still needing frame i
    slots: dict[int, list] = {}
    for i, rgb in video.stream_frames(path, sorted(users), info, threads=threads, stats=stats):
        crop = transforms.test_views(transforms.to_tensor(rgb[None]), input_size, 1)[0][0].clone()
        held.now += 1
        held.peak = max(held.peak, held.now)
        for k, slot in users[i]:
            clip = slots.setdefault(k, [None] * len(plan[k]["frames"]))
            clip[slot] = crop
            if all(c is not None for c in clip):
                del slots[k]
                yield k, torch.stack(clip)
                for j in set(plan[k]["frames"]):
                    remaining[j] -= 1
                    if remaining[j] == 0:
                        held.now -= 1


def _put(out: queue.Queue, item, stop: threading.Event) -> bool:
    """Put `item` unless the consumer has stopped (then False)."""
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _producer(clips, out: queue.Queue, stop: threading.Event) -> None:
    try:
        for item in clips:
            if not _put(out, item, stop):
                return
        _put(out, None, stop)
    except BaseException as exc:  # handed to the consumer, which raises it
        _put(out, exc, stop)
    finally:
        clips.close()  # closes the video file now, also when the consumer stopped early


def _batches(clips: Iterator, batch_size: int) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Batches of windows from a decoding thread (a bounded queue: memory stays bounded)."""
    q: queue.Queue = queue.Queue(maxsize=2 * batch_size)
    stop = threading.Event()
    worker = threading.Thread(target=_producer, args=(clips, q, stop), daemon=True, name="text4vis-decode")
    worker.start()
    ks, items = [], []
    try:
        while True:
            item = q.get()
            if isinstance(item, BaseException):
                raise item
            if item is not None:
                ks.append(item[0])
                items.append(item[1])
            if items and (item is None or len(items) == batch_size):
                yield ks, torch.stack(items)
                ks, items = [], []
            if item is None:
                return
    finally:
        stop.set()
        worker.join(timeout=10)


# ----------------------------------------------------------------------------- embeddings and scores

def _num_frames(recognizer, frames: int | None) -> int:
    t = int(frames or recognizer.num_frames)
    if t < 1:
        raise UsageError(f"frames={frames}: need at least 1 frame per window")
    limit = recognizer.model.max_frames
    if limit is not None and t > limit:
        raise UsageError(f"frames={t}: this model's transf head takes at most {limit} frames per clip")
    return t


def _check_times(window: float, stride: float) -> None:
    if not (window > 0 and stride > 0):
        raise UsageError(f"window={window}, stride={stride}: both must be positive seconds")


@torch.no_grad()
def embed_windows(recognizer, path: str, window: float = DEFAULT_WINDOW, stride: float = DEFAULT_STRIDE,
                  frames: int | None = None, batch_size: int = 8, stats: video.DecodeStats | None = None,
                  held: Held | None = None, progress: bool = False) -> dict:
    """Normalised video embeddings of the time windows of `path`, in one decoding pass.

    Returns {"duration", "fps", "num_frames", "windows": [{"start", "end", "embedding"}]}, with
    `embedding` a float32 numpy vector of unit length: the embedding `predict` computes for a clip
    (mean of one view, L2-normalised). `frames`: T per window (default: the recognizer's).
    `stats`/`held` (optional) receive the decoding counts and the most cropped frames held at once.
    A stream that breaks off part-way keeps the windows before the break and adds "error" (one
    line). Raises VideoError for a file that cannot be decoded, UsageError for bad window/stride/frames.
    """
    _check_times(window, stride)
    t = _num_frames(recognizer, frames)
    stats = stats if stats is not None else video.DecodeStats()
    info = video.probe(str(path))
    plan = plan_windows(info, window, stride, t)
    model, device = recognizer.video_backend or recognizer.model, recognizer.device  # ONNX Runtime: runtime='onnx'
    model.eval()
    rows: dict[int, np.ndarray] = {}
    clips = window_clips(str(path), info, plan, recognizer.input_size, stats=stats, held=held)
    bar = tqdm(total=len(plan), unit="window", desc=os.path.basename(str(path)), disable=not progress, leave=False)
    for ks, batch in _batches(clips, max(1, int(batch_size))):
        with engine.autocast(device, recognizer.precision):
            emb = model.embed(batch.to(device, non_blocking=True))
        emb = F.normalize(emb.float(), dim=-1).cpu().numpy().astype(np.float32)  # predict's rule (1 view)
        rows.update(zip(ks, emb))
        bar.update(len(ks))
    bar.close()
    if not rows:
        raise VideoError(f"{path}: video stream does not decode ({stats.broken or 'no window complete'})")
    windows = [{"start": w["start"], "end": w["end"], "embedding": rows[k]} for k, w in enumerate(plan) if k in rows]
    out = {"duration": round(info.duration, 6), "fps": round(info.fps, 6), "num_frames": info.num_frames,
           "windows": windows}
    if len(rows) < len(plan):  # the stream broke off: keep the windows before the break, say so
        at = info.times[min(max(stats.last_index, 0), info.num_frames - 1)]
        out["error"] = (f"{path}: video stream breaks off at {clock(at)} ({stats.broken}); "
                        f"{len(plan) - len(rows)} of {len(plan)} windows after it are left out")
    return out


def smooth_scores(scores: np.ndarray, radius: int) -> np.ndarray:
    """Mean of each window's scores with `radius` windows on each side (fewer at the ends)."""
    if radius <= 0 or len(scores) < 2:
        return scores
    c = np.cumsum(np.vstack([np.zeros((1, scores.shape[1])), scores]), axis=0)
    idx = np.arange(len(scores))
    lo, hi = np.maximum(0, idx - radius), np.minimum(len(scores), idx + radius + 1)
    return (c[hi] - c[lo]) / (hi - lo)[:, None]


def segments(spans: list[tuple[float, float]], scores: np.ndarray, labels: list[str], min_score: float = 0.0,
             smooth: int = 1) -> list[dict]:
    """Labelled segments [{"label", "start", "end", "score"}] from window scores [W, C] (see the module
    docstring for the rule): ordered, not overlapping, inside [0, last window's end]."""
    if not spans:
        return []
    sm = smooth_scores(np.asarray(scores, dtype=np.float64), smooth)
    top, val = sm.argmax(1), sm.max(1)
    centres = [(s + e) / 2 for s, e in spans]
    out: list[dict] = []
    run: list[int] = []
    for k, (s, e) in enumerate(spans):
        left = s if k == 0 else max(s, (centres[k - 1] + centres[k]) / 2)
        right = e if k == len(spans) - 1 else min(e, (centres[k] + centres[k + 1]) / 2)
        if val[k] < min_score or right <= left:
            continue
        label = labels[int(top[k])]
        if out and out[-1]["label"] == label and abs(out[-1]["end"] - left) < 1e-6 and run and run[-1] == k - 1:
            out[-1]["end"] = right
            run.append(k)
            out[-1]["score"] = float(np.mean(val[run]))
        else:
            out.append({"label": label, "start": left, "end": right, "score": float(val[k])})
            run = [k]
    for seg in out:
        seg["start"], seg["end"], seg["score"] = round(seg["start"], 6), round(seg["end"], 6), round(seg["score"], 6)
    return out


def timeline(recognizer, path: str, window: float = DEFAULT_WINDOW, stride: float = DEFAULT_STRIDE,
             frames: int | None = None, topk: int = 5, min_score: float = 0.0, smooth: int = 1,
             batch_size: int = 8, stats: video.DecodeStats | None = None, held: Held | None = None,
             progress: bool = False) -> dict:
    """The timeline record of one video: {"video", "duration", "fps", "windows": [{"start", "end",
    "top": [{"label", "score"}]}], "segments": [{"label", "start", "end", "score"}]}, plus "error" when the
    stream broke off part-way (the windows before the break are kept)."""
    if not 0.0 <= min_score <= 1.0:
        raise UsageError(f"min_score={min_score}: a probability, between 0 and 1")
    if smooth < 0:
        raise UsageError(f"smooth={smooth}: the number of neighbouring windows on each side, at least 0")
    emb = embed_windows(recognizer, path, window, stride, frames, batch_size, stats, held, progress)
    vectors = torch.from_numpy(np.stack([w["embedding"] for w in emb["windows"]]))
    scores = engine.scores_from_embeddings(vectors, recognizer.model.classifier).numpy()
    k = min(max(1, int(topk)), len(recognizer.labels))
    spans = [(w["start"], w["end"]) for w in emb["windows"]]
    record = {"video": str(path), "duration": emb["duration"], "fps": emb["fps"],
              "windows": window_records(spans, scores, recognizer.labels, k),
              "segments": segments(spans, scores, recognizer.labels, min_score, smooth)}
    if "error" in emb:
        record["error"] = emb["error"]
    return record


def label_at(segs: list[dict], t: float) -> dict | None:
    """The segment that covers time t, or None in a gap."""
    for seg in segs:
        if seg["start"] <= t < seg["end"]:
            return seg
    return None


def clock(t: float, decimals: int = 1) -> str:
    """Seconds as h:mm:ss(.s): 3725.5 -> "1:02:05.5"."""
    t = max(0.0, float(t))
    h, rest = divmod(t, 3600)
    m, s = divmod(rest, 60)
    sec = f"{s:0{3 + decimals if decimals else 2}.{decimals}f}"
    if sec.startswith("60"):  # rounding up to the next minute
        return clock(round(t), decimals)
    return f"{int(h)}:{int(m):02d}:{sec}"


# ----------------------------------------------------------------------------- plot

OTHER = (0.75, 0.75, 0.75, 1.0)  # segments of classes without a curve
TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)


def plot_timeline(record: dict, path: str, max_classes: int = 8) -> None:
    """PNG of one timeline record: the scores of the most frequent classes over time (at most
    `max_classes` curves: top-1 in most windows first), the segments as coloured labelled bars below.
    Time ticks are h:mm:ss at a round step (at most ~10 ticks), so a 2-hour video reads as well as
    a 20-second one."""
    from . import plots  # matplotlib, Agg backend
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MultipleLocator
    plt = plots.plt
    windows = record["windows"]
    centres = np.array([(w["start"] + w["end"]) / 2 for w in windows])
    counts: dict[str, int] = {}
    for seg in record["segments"]:
        counts[seg["label"]] = counts.get(seg["label"], 0) + 1
    for w in windows:
        counts[w["top"][0]["label"]] = counts.get(w["top"][0]["label"], 0) + 1
    classes = sorted(counts, key=lambda c: -counts[c])[:max_classes]
    palette = [plt.get_cmap("tab10")(i) for i in range(10) if i != 7]  # tab10 without its grey: grey is "other"
    colours = {c: palette[i % len(palette)] for i, c in enumerate(classes)}
    fig, (ax, bars) = plt.subplots(2, 1, figsize=(14, 5.5), sharex=True, gridspec_kw={"height_ratios": [4, 1]})
    for c in classes:
        ys = [next((t["score"] for t in w["top"] if t["label"] == c), 0.0) for w in windows]
        ax.plot(centres, ys, color=colours[c], lw=1.4, label=c, marker="." if len(windows) < 60 else None)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("score (window top-k)")
    ax.set_title(f"{os.path.basename(record['video'])}: {len(windows)} windows, {clock(record['duration'], 0)}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8, ncol=2, framealpha=0.8)
    duration = max(record["duration"], 1e-3)
    for seg in record["segments"]:
        width = seg["end"] - seg["start"]
        bars.broken_barh([(seg["start"], width)], (0, 1), color=colours.get(seg["label"], OTHER))
        if width > duration / 40:
            bars.text(seg["start"] + width / 2, 0.5, seg["label"], ha="center", va="center", fontsize=7,
                      clip_on=True)
    bars.set_yticks([])
    bars.set_ylabel("segments")
    if any(seg["label"] not in colours for seg in record["segments"]):
        bars.legend(handles=[Patch(color=OTHER, label="other classes")], loc="upper right",
                    fontsize=7, framealpha=0.8)
    step = next((s for s in TICK_STEPS if duration / s <= 10), TICK_STEPS[-1])
    bars.set_xlim(0, duration)
    bars.xaxis.set_major_locator(MultipleLocator(step))
    bars.xaxis.set_major_formatter(FuncFormatter(lambda x, _: clock(x, 0)))
    bars.set_xlabel("time (h:mm:ss)")
    fig.tight_layout()
    plots._save(fig, path)


# ----------------------------------------------------------------------------- annotated copy

def annotate_video(record: dict, path: str, out_path: str) -> int:
    """Write `out_path`, an H.264 MP4 copy of `path` with the current segment's label and score (and
    the time) drawn on every frame; audio is dropped. Frames are written at the average frame rate.
    Returns the number of frames written."""
    import av
    from fractions import Fraction
    from PIL import Image, ImageDraw, ImageFont
    segs = record["segments"]
    rate = Fraction(record["fps"] or 25.0).limit_denominator(1001)
    written = 0
    tmp = out_path + ".part.mp4"
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    try:
        with av.open(tmp, "w") as out:
            stream = font = None
            for t, rgb in video.iter_all_frames(path):
                if stream is None:
                    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
                    if h < 2 or w < 2:
                        raise VideoError(f"{path}: frames of {rgb.shape[1]}x{rgb.shape[0]} are too small to encode")
                    stream = out.add_stream("libx264", rate=rate, options={"crf": "23", "preset": "veryfast"})
                    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                    try:
                        font = ImageFont.load_default(size=max(10, h // 18))
                    except TypeError:  # Pillow < 10.1: one small bitmap font
                        font = ImageFont.load_default()
                image = Image.fromarray(np.ascontiguousarray(rgb[:h, :w]))
                seg = label_at(segs, t)
                text = f"{seg['label']}  {100 * seg['score']:.0f}%" if seg else "-"
                draw = ImageDraw.Draw(image)
                box = draw.textbbox((0, 0), f"{text}\n{clock(t)}", font=font)
                pad = max(2, h // 100)
                draw.rectangle((0, 0, box[2] + 2 * pad, box[3] + 2 * pad), fill=(0, 0, 0))
                draw.text((pad, pad), f"{text}\n{clock(t)}", fill=(255, 255, 255), font=font)
                frame = av.VideoFrame.from_image(image)
                frame.pts, frame.time_base = written, 1 / rate
                out.mux(stream.encode(frame))
                written += 1
            if stream is None:
                raise VideoError(f"{path}: video stream has no decodable frames")
            out.mux(stream.encode(None))
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return written


# ----------------------------------------------------------------------------- bench

def plain_decode(path: str, threads: int = 0) -> int:
    """One plain sequential PyAV decode of `path`'s default video stream, with the same decoder
    settings as the timeline (slice threads), converting nothing. Returns the number of frames."""
    container = video._open(path)
    try:
        stream = video._default_stream(container)
        video._set_threads(stream, threads)
        return sum(1 for _ in container.decode(stream))
    finally:
        container.close()


def bench_timeline(recognizer, path: str, window: float = DEFAULT_WINDOW, stride: float = DEFAULT_STRIDE,
                   batch_size: int = 8, rounds: int = 2) -> dict:
    """Time of the whole timeline computation of `path` (probe, decoding, crops, model, segments) against
    one plain sequential decode of the same file, in this process, as ratios of wall-clock time and of
    CPU time (all threads of the process: robust to other work on the machine), best of `rounds`
    interleaved rounds; plus the process's peak RSS, the frames decoded/converted and the most cropped
    frames held at once."""
    import resource
    import time

    def timed(fn):
        wall, cpu = time.perf_counter(), time.process_time()
        value = fn()
        return value, time.perf_counter() - wall, time.process_time() - cpu

    best = {"plain": [float("inf")] * 2, "timeline": [float("inf")] * 2}
    for _ in range(max(1, rounds)):  # interleaved rounds, best of each: robust to a busy machine
        n, *plain = timed(lambda: plain_decode(path))
        stats, held = video.DecodeStats(), Held()
        record, *tl_times = timed(lambda: timeline(recognizer, path, window, stride, batch_size=batch_size,
                                                   stats=stats, held=held))  # noqa: B023 (called at once)
        best["plain"] = [min(a, b) for a, b in zip(best["plain"], plain)]
        best["timeline"] = [min(a, b) for a, b in zip(best["timeline"], tl_times)]
    (pw, pc), (tw, tc) = best["plain"], best["timeline"]
    return {"video": path, "frames": n, "duration_s": record["duration"], "windows": len(record["windows"]),
            "segments": len(record["segments"]), "window": window, "stride": stride,
            "frames_per_window": recognizer.num_frames, "input_size": recognizer.input_size,
            "device": str(recognizer.device), "rounds": max(1, rounds),
            "plain_decode_s": round(pw, 3), "timeline_s": round(tw, 3),
            "ratio_vs_plain_decode": round(tw / pw, 3) if pw > 0 else None,
            "plain_decode_cpu_s": round(pc, 3), "timeline_cpu_s": round(tc, 3),
            "cpu_ratio_vs_plain_decode": round(tc / pc, 3) if pc > 0 else None,
            "frames_decoded": stats.decoded, "frames_converted": stats.converted, "peak_frames_held": held.peak,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
