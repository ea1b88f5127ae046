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
              nearest its centre (`window_parts`: two overlapping windows meet halfway between
              their centres, moved into their overlap when a short last window puts it outside),
              so these parts tile [0, duration] whenever stride <= window; consecutive windows
              with the same label merge into one segment, scored by the mean of their smoothed
              scores. With stride > window the time between windows is a gap.
"""
from __future__ import annotations

import os
import queue
import threading
from fractions import Fraction
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import engine, sampling, transforms, video
from .errors import check_float, check_int
from .errors import UsageError, VideoError
from .records import window_records

DEFAULT_WINDOW, DEFAULT_STRIDE = 4.0, 2.0


# ----------------------------------------------------------------------------- which frames each window takes

def plan_windows(info: video.VideoInfo, window: float, stride: float, num_frames: int) -> list[dict]:
    """The windows of a probed video: [{"start", "end", "frames": [T frame indices]}].

    Window [start, end) holds the frames whose time is in it (the last window every frame up to
    the end); a window that holds no frame (a long frame of a variable-rate video, or a gap)
    takes the frame shown at its start. T indices follow the test-time rule over its frames; on a
    variable-frame-rate video (`sampling.is_variable_rate`) over its time instead
    (`sampling.time_view_indices`), so a burst of fast frames does not take all T samples."""
    try:
        spans = sampling.window_spans(info.duration, window, stride)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    times, n = info.times, info.num_frames
    variable = sampling.is_variable_rate(times)  # then T frames are spread over each window's time
    out = []
    for k, (start, end) in enumerate(spans):
        lo = int(np.searchsorted(times, start - 1e-9, "left"))
        hi = n if k == len(spans) - 1 and end >= info.duration - 1e-9 else int(np.searchsorted(times, end - 1e-9, "left"))
        if hi <= lo:
            lo = max(0, min(n - 1, int(np.searchsorted(times, start + 1e-9, "right")) - 1))
            hi = lo + 1
        if variable and hi - lo > 1:
            indices = sampling.time_view_indices(times, lo, hi, start, end, num_frames)
        else:
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

MAX_SMOOTH = 10_000  # windows on each side: more than any video has at a useful stride


def check_timeline_args(window=DEFAULT_WINDOW, stride=DEFAULT_STRIDE, frames=None, topk=5, min_score=0.0,
                        smooth=1, batch_size=8) -> dict:
    """The numeric parameters of `timeline`/`embed_windows`, checked before any work with the functions of
    `errors` (the CLI calls this too, so both refuse the same values): window and stride finite seconds
    (`sampling.check_window_times`), frames None or at least 1, topk and batch_size at least 1, min_score a
    probability, smooth 0..MAX_SMOOTH. Returns them as plain ints and floats; UsageError naming `name=value`."""
    window, stride = sampling.check_window_times(window, stride)
    return {"window": window, "stride": stride, "frames": check_int("frames", frames, 1, optional=True),
            "topk": check_int("topk", topk, 1), "min_score": check_float("min_score", min_score, 0.0, 1.0),
            "smooth": check_int("smooth", smooth, 0, MAX_SMOOTH), "batch_size": check_int("batch_size", batch_size, 1)}


def _num_frames(recognizer, frames: int | None) -> int:
    t = recognizer.num_frames if frames is None else frames  # frames: checked by check_timeline_args
    limit = recognizer.model.max_frames
    if limit is not None and t > limit:
        raise UsageError(f"frames={t}: this model's transf head takes at most {limit} frames per clip")
    return t


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
    line); a file cut short (its header declares more than it holds) is analysed as far as it goes and
    adds "warning" (one line). Raises VideoError for a file that cannot be decoded, UsageError for bad
    window/stride/frames/batch_size (`check_timeline_args`) or a stride far below the video's frame
    interval (`sampling.check_stride_for_video`).
    """
    args = check_timeline_args(window, stride, frames, batch_size=batch_size)
    window, stride, batch_size = args["window"], args["stride"], args["batch_size"]
    t = _num_frames(recognizer, args["frames"])
    stats = stats if stats is not None else video.DecodeStats()
    info = video.probe(str(path))
    sampling.check_stride_for_video(stride, info.duration, info.num_frames, str(path))
    plan = plan_windows(info, window, stride, t)
    model, device = recognizer.video_backend or recognizer.model, recognizer.device  # ONNX Runtime: runtime='onnx'
    model.eval()
    rows: dict[int, np.ndarray] = {}
    clips = window_clips(str(path), info, plan, recognizer.input_size, stats=stats, held=held)
    bar = tqdm(total=len(plan), unit="window", desc=os.path.basename(str(path)), disable=not progress, leave=False)
    for ks, batch in _batches(clips, batch_size):
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
    if info.header_duration is not None:  # a file cut short: analysed as far as its frames go, and said
        out["warning"] = (f"{path}: the file is cut short: its header says {clock(info.header_duration)}, "
                          f"its frames end at {clock(info.duration)}; analysed up to there")
    if len(rows) < len(plan):  # the stream broke off: keep the windows before the break, say so
        at = info.times[min(max(stats.last_index, 0), info.num_frames - 1)]
        out["error"] = (f"{path}: video stream breaks off at {clock(at)} ({stats.broken}); "
                        f"{len(plan) - len(rows)} of {len(plan)} windows after it are left out")
    return out


def smooth_scores(scores: np.ndarray, radius: int) -> np.ndarray:
    """Mean of each window's scores with `radius` windows on each side (fewer at the ends)."""
    if radius <= 0 or len(scores) < 2:
        return scores
    radius = min(int(radius), len(scores))  # a wider radius averages the same windows
    c = np.cumsum(np.vstack([np.zeros((1, scores.shape[1])), scores]), axis=0)
    idx = np.arange(len(scores))
    lo, hi = np.maximum(0, idx - radius), np.minimum(len(scores), idx + radius + 1)
    return (c[hi] - c[lo]) / (hi - lo)[:, None]


def window_parts(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The part of the video each window stands for: from the boundary with the previous window to the
    boundary with the next. Two overlapping (or touching) windows meet at the point halfway between their
    centres, moved into their overlap when it falls outside (a short last window has its centre close to
    the previous one's), so the parts of overlapping windows tile them with no gap; windows that do not
    overlap (stride > window) keep their own ends, and the time between them stays a gap."""
    parts = []
    left = spans[0][0] if spans else 0.0
    for k, (s, e) in enumerate(spans):
        if k + 1 < len(spans):
            ns, ne = spans[k + 1]
            if ns <= e:  # overlapping or touching: one shared boundary inside the overlap
                right = min(max((s + e + ns + ne) / 4, ns), e)
                parts.append((left, right))
                left = right
            else:  # a gap between the windows
                parts.append((left, e))
                left = ns
        else:
            parts.append((left, e))
    return parts


def segments(spans: list[tuple[float, float]], scores: np.ndarray, labels: list[str], min_score: float = 0.0,
             smooth: int = 1) -> list[dict]:
    """Labelled segments [{"label", "start", "end", "score"}] from window scores [W, C] (see the module
    docstring for the rule): ordered, not overlapping, inside [0, last window's end]; with overlapping
    windows and no gap (min_score 0) they tile [first start, last end], and two consecutive segments never
    have the same label unless a gap lies between them."""
    if not spans:
        return []
    sm = smooth_scores(np.asarray(scores, dtype=np.float64), smooth)
    top, val = sm.argmax(1), sm.max(1)
    out: list[dict] = []
    runs: list[list[float]] = []  # the smoothed scores of each segment's windows
    open_run = False              # the last segment can still grow (no gap window since)
    for k, (left, right) in enumerate(window_parts(spans)):
        if right - left < 1e-9:  # a part of no length (rounding): it neither adds nor breaks a segment
            continue
        if val[k] < min_score:
            open_run = False
            continue
        label = labels[int(top[k])]
        if open_run and out[-1]["label"] == label and abs(out[-1]["end"] - left) < 1e-6:
            out[-1]["end"] = right
            runs[-1].append(float(val[k]))
        else:
            out.append({"label": label, "start": left, "end": right})
            runs.append([float(val[k])])
            open_run = True
    for seg, run in zip(out, runs):
        seg["start"], seg["end"] = round(seg["start"], 6), round(seg["end"], 6)
        seg["score"] = round(float(np.mean(run)), 6)
    return out


def timeline_scores(recognizer, path: str, window: float = DEFAULT_WINDOW, stride: float = DEFAULT_STRIDE,
                    frames: int | None = None, topk: int = 5, min_score: float = 0.0, smooth: int = 1,
                    batch_size: int = 8, stats: video.DecodeStats | None = None, held: Held | None = None,
                    progress: bool = False) -> tuple[dict, np.ndarray]:
    """`timeline`'s record and the scores it was made from: float32 [windows, classes], every class of
    every window (the record keeps `topk` of them; `plot_timeline` draws these)."""
    args = check_timeline_args(window, stride, frames, topk, min_score, smooth, batch_size)
    emb = embed_windows(recognizer, path, args["window"], args["stride"], args["frames"], args["batch_size"],
                        stats, held, progress)
    vectors = torch.from_numpy(np.stack([w["embedding"] for w in emb["windows"]]))
    scores = engine.scores_from_embeddings(vectors, recognizer.model.classifier).numpy()
    k = min(args["topk"], len(recognizer.labels))
    spans = [(w["start"], w["end"]) for w in emb["windows"]]
    record = {"video": str(path), "duration": emb["duration"], "fps": emb["fps"],
              "windows": window_records(spans, scores, recognizer.labels, k),
              "segments": segments(spans, scores, recognizer.labels, args["min_score"], args["smooth"])}
    for key in ("warning", "error"):
        if key in emb:
            record[key] = emb[key]
    return record, scores


def timeline(recognizer, path: str, window: float = DEFAULT_WINDOW, stride: float = DEFAULT_STRIDE,
             frames: int | None = None, topk: int = 5, min_score: float = 0.0, smooth: int = 1,
             batch_size: int = 8, stats: video.DecodeStats | None = None, held: Held | None = None,
             progress: bool = False) -> dict:
    """The timeline record of one video: {"video", "duration", "fps", "windows": [{"start", "end",
    "top": [{"label", "score"}]}], "segments": [{"label", "start", "end", "score"}]}, plus "error" when the
    stream broke off part-way (the windows before the break are kept) and "warning" when the file is cut
    short. Every numeric parameter is checked first (`check_timeline_args`): UsageError naming `name=value`."""
    return timeline_scores(recognizer, path, window, stride, frames, topk, min_score, smooth, batch_size,
                           stats, held, progress)[0]


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
ANNOTATE_TIME_BASE = Fraction(1, 90000)  # annotated copies: MPEG's 90 kHz clock
TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)


def is_annotated_copy(path: str) -> bool:
    """An MP4 that `annotate_video` wrote (its comment tag says so)."""
    import av
    with av.open(path) as c:
        return str(c.metadata.get("comment", "")).startswith(ANNOTATED_TAG)


ANNOTATED_TAG = "text4vis timeline annotated copy"


def check_plot_path(path: str, overwrite: bool = False) -> None:
    """Before any work: `path` can take a timeline plot (README's output rule: a .png name; an existing file
    is replaced only if it is a PNG text4vis wrote, or with overwrite=True). OutputError naming `plot=`."""
    from .files import check_output_file
    from .plots import is_text4vis_png
    check_output_file(path, "plot", (".png",), "a PNG plot", is_text4vis_png, overwrite)


def check_annotate_path(path: str, overwrite: bool = False) -> None:
    """Before any work: `path` can take an annotated copy (a .mp4 name; an existing file is replaced only if
    it is an annotated copy text4vis wrote, or with overwrite=True). OutputError naming `annotate=`."""
    from .files import check_output_file
    check_output_file(path, "annotate", (".mp4",), "an annotated copy", is_annotated_copy, overwrite)


def _curves(record: dict, classes: list[str], scores, labels) -> tuple[dict, str]:
    """class -> score per window: the model's scores of every class when given ([windows, classes]), else
    the record's top-k lists with NaN (a gap in the line) where a class is not among a window's top-k."""
    windows = record["windows"]
    if scores is not None and labels is not None and len(scores) == len(windows) and set(classes) <= set(labels):
        return {c: np.asarray(scores, dtype=np.float64)[:, list(labels).index(c)] for c in classes}, "score"
    return ({c: np.array([next((t["score"] for t in w["top"] if t["label"] == c), np.nan) for w in windows])
             for c in classes}, "score (gaps: not in the window's top-k)")


def _fit_labels(fig, bars, segs: list[dict], texts: list[str], families: list[str]) -> None:
    """Each segment's label centred on its bar, shortened with an ellipsis to fit inside it (3 px padding on
    each side), left out when not even two characters fit: labels never overlap, whatever the number of
    segments."""
    fig.canvas.draw()  # the layout is final: pixel widths are known
    renderer = fig.canvas.get_renderer()
    to_px = bars.transData.transform
    for seg, text in zip(segs, texts):
        room = to_px((seg["end"], 0))[0] - to_px((seg["start"], 0))[0] - 6
        if room < 8:  # narrower than any two characters: no label (and no text to measure)
            continue
        t = bars.text((seg["start"] + seg["end"]) / 2, 0.5, text, ha="center", va="center", fontsize=7,
                      fontfamily=families, clip_on=True)

        def width(n: int, t=t, text=text) -> float:
            t.set_text(text if n >= len(text) else text[:n].rstrip() + "\u2026")
            return t.get_window_extent(renderer).width

        full = width(len(text))
        if full <= room:
            continue
        n = min(len(text) - 1, int(len(text) * room / full))  # about as many characters as fit
        while n >= 2 and width(n) > room:
            n -= 1
        if n < 2:
            t.remove()


def plot_timeline(record: dict, path: str, max_classes: int = 8, scores=None, labels=None,
                  overwrite: bool = False) -> None:
    """PNG of one timeline record: scores over time of the most frequent classes (at most `max_classes`
    curves: top-1 in most windows first), the segments as coloured bars below with their labels fitted
    (shortened or left out where a bar is too narrow). `scores` [windows, classes] with `labels`
    (`timeline_scores`): the curves are the model's scores of those classes in every window; without them
    the record's top-k lists are drawn, with a gap where a class is outside a window's top-k. The legend
    sits right of the curves; names in any script render with an installed font that has them
    (`plots.fonts_for`). Time ticks are h:mm:ss at a round step (at most ~10). `path` follows the output
    rule (`check_plot_path`)."""
    check_plot_path(path, overwrite)
    from . import plots  # matplotlib, Agg backend
    windows, segs = record["windows"], record["segments"]
    counts: dict[str, int] = {}
    for name in [seg["label"] for seg in segs] + [w["top"][0]["label"] for w in windows]:
        counts[name] = counts.get(name, 0) + 1
    classes = sorted(counts, key=lambda c: -counts[c])[:max_classes]
    curves, ylabel = _curves(record, classes, scores, labels)
    title = f"{os.path.basename(record['video'])}: {len(windows)} window{'s' if len(windows) != 1 else ''}, " \
            f"{clock(record['duration'], 0)}"
    families, texts = plots.fonts_for([title, *classes, *[seg["label"] for seg in segs]])
    title, names, seg_texts = texts[0], dict(zip(classes, texts[1:1 + len(classes)])), texts[1 + len(classes):]
    with plots.quiet_matplotlib():
        _draw_timeline(record, path, classes, curves, ylabel, title, names, seg_texts, families)


def _draw_timeline(record: dict, path: str, classes: list[str], curves: dict, ylabel: str, title: str,
                   names: dict, seg_texts: list[str], families: list[str]) -> None:
    from . import plots
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MultipleLocator
    plt = plots.plt
    windows, segs = record["windows"], record["segments"]
    centres = np.array([(w["start"] + w["end"]) / 2 for w in windows])
    palette = [plt.get_cmap("tab10")(i) for i in range(10) if i != 7]  # tab10 without its grey: grey is "other"
    colours = {c: palette[i % len(palette)] for i, c in enumerate(classes)}
    fig, (ax, bars) = plt.subplots(2, 1, figsize=(14, 5.5), sharex=True, layout="constrained",
                                   gridspec_kw={"height_ratios": [4, 1]})
    for c in classes:
        ax.plot(centres, curves[c], color=colours[c], lw=1.4, label=names[c], marker="." if len(windows) < 60 else None)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontfamily=families)
    ax.grid(alpha=0.3)
    handles = ax.get_legend_handles_labels()[0]
    if any(seg["label"] not in colours for seg in segs):
        handles.append(Patch(color=OTHER, label="other classes"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), framealpha=0.8,
              prop={"family": families, "size": 8})  # outside the axes: never over a curve
    duration = max(record["duration"], 1e-3)
    spans_of: dict = {}  # colour -> bars: one call per colour (a 2-hour video has thousands of segments)
    for seg in segs:
        spans_of.setdefault(colours.get(seg["label"], OTHER), []).append((seg["start"], seg["end"] - seg["start"]))
    for colour, spans in spans_of.items():
        bars.broken_barh(spans, (0, 1), color=colour)
    bars.set_yticks([])
    bars.set_ylabel("segments")
    step = next((s for s in TICK_STEPS if duration / s <= 10), TICK_STEPS[-1])
    bars.set_xlim(0, duration)
    bars.xaxis.set_major_locator(MultipleLocator(step))
    bars.xaxis.set_major_formatter(FuncFormatter(lambda x, _: clock(x, 0)))
    bars.set_xlabel("time (h:mm:ss)")
    _fit_labels(fig, bars, segs, seg_texts, families)
    plots._save(fig, path)


# ----------------------------------------------------------------------------- annotated copy

def annotate_video(record: dict, path: str, out_path: str, overwrite: bool = False) -> int:
    """Write `out_path`, an H.264 MP4 copy of `path` with the current segment's label and score (and
    the time) drawn on every frame; audio is dropped. Every frame keeps its own timestamp (a variable
    frame rate stays variable, so the time drawn is the time the frame is shown). The file is written
    whole or not at all, tagged as text4vis's (`is_annotated_copy`); `out_path` follows the output rule
    (`check_annotate_path`). Returns the number of frames written."""
    check_annotate_path(out_path, overwrite)
    from .files import atomic_write
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    written = 0

    def write(tmp: str) -> None:
        nonlocal written
        import av
        with av.open(tmp, "w", format="mp4") as out:
            out.metadata["comment"] = ANNOTATED_TAG
            stream = None
            last = -1
            for t, rgb in video.iter_all_frames(path):
                if stream is None:
                    stream, draw = _annotated_stream(out, record, path, rgb)
                frame = draw(rgb, t)
                last = frame.pts = max(last + 1, round(t / ANNOTATE_TIME_BASE))  # the frame's own time
                frame.time_base = ANNOTATE_TIME_BASE
                out.mux(stream.encode(frame))
                written += 1
            if stream is None:
                raise VideoError(f"{path}: video stream has no decodable frames")
            out.mux(stream.encode(None))

    atomic_write(out_path, write)
    return written


def _annotated_stream(out, record: dict, path: str, first: np.ndarray):
    """The H.264 stream of an annotated copy, sized from the first frame, and the function that draws the
    label box on a frame (RGB, time) -> av.VideoFrame."""
    import av
    from PIL import Image, ImageDraw, ImageFont
    h, w = first.shape[0] // 2 * 2, first.shape[1] // 2 * 2
    if h < 2 or w < 2:
        raise VideoError(f"{path}: frames of {first.shape[1]}x{first.shape[0]} are too small to encode")
    rate = Fraction(record["fps"] or 25.0).limit_denominator(1001)  # the average rate: a hint for players
    stream = out.add_stream("libx264", rate=rate, options={"crf": "23", "preset": "veryfast"})
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    stream.codec_context.time_base = ANNOTATE_TIME_BASE
    try:
        font = ImageFont.load_default(size=max(10, h // 18))
    except TypeError:  # Pillow < 10.1: one small bitmap font
        font = ImageFont.load_default()
    segs = record["segments"]

    def draw(rgb: np.ndarray, t: float):
        image = Image.fromarray(np.ascontiguousarray(rgb[:h, :w]))
        seg = label_at(segs, t)
        text = f"{seg['label']}  {100 * seg['score']:.0f}%" if seg else "-"
        pen = ImageDraw.Draw(image)
        box = pen.textbbox((0, 0), f"{text}\n{clock(t)}", font=font)
        pad = max(2, h // 100)
        pen.rectangle((0, 0, box[2] + 2 * pad, box[3] + 2 * pad), fill=(0, 0, 0))
        pen.text((pad, pad), f"{text}\n{clock(t)}", fill=(255, 255, 255), font=font)
        return av.VideoFrame.from_image(image)

    return stream, draw


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
