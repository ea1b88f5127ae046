"""`text4vis bench --decode`: the video readers side by side on text4vis's three access patterns.

    predict_t8 / predict_t16  T frames spread over the video (`sampling.view_indices`, one clip)
    predict_4x3               the 4 temporal clips of 4x3 views, T = 8 (one read: 32 indices)
    train                     a random frame per segment, T = 8 (`sampling.segment_indices`), 4 clips
                              per video, each read opening the file again (the DataLoader pattern)
    timeline                  windows of 4 s every 2 s, 8 frames each (`timeline.plan_windows`, built
                              on `sampling.window_spans`), all in one sequential pass

Every reader decodes on one thread. Figures are clips per CPU-second of this process (user + sys,
all threads: "per core"), best of interleaved rounds (each round runs every reader once per case,
in a rotated order), so ratios hold on a busy machine. A clip is one read: one video's T frames
(predict_4x3: its 4 clips), one training clip, or one timeline window.

Frames decoded: counted for the PyAV readers (frames out of the decoder); for the peers an estimate
from the keyframe positions (torchcodec and decord seek to the keyframe at or before a wanted frame
unless it is reachable by decoding forward, then decode every frame up to it; OpenCV decodes every
frame up to the last wanted one).

Agreement: each reader's frames against text4vis's for the same indices (those of predict_4x3 for
text4vis's N): what N each reader counts, whether shapes match, max and mean absolute difference.
"""
from __future__ import annotations

import math
import os
import time

import numpy as np

from .. import sampling, video
from ..errors import UsageError
from . import readers as R

PATTERNS = ("predict_t8", "predict_t16", "predict_4x3", "train", "timeline")
TRAIN_CLIPS_PER_VIDEO = 4
DEFAULT_SECONDS = 60.0
# the generated videos: (name, height, GOP in frames) at 25 fps, H.264 (libx264, B-frames)
GENERATED = (("720p_gop25", 720, 25), ("720p_gop250", 720, 250), ("1080p_gop25", 1080, 25),
             ("1080p_gop250", 1080, 250))
QUICK_GENERATED = (("240p_gop25", 240, 25), ("240p_gop250", 240, 250))


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "text4vis", "decode-bench")


def make_video(folder: str, name: str, height: int, gop: int, seconds: float, fps: int = 25) -> str:
    """A camera-like H.264 clip (smooth texture, noise, panning), cached in `folder` by its settings."""
    import av
    width = int(round(height * 16 / 9 / 2)) * 2
    path = os.path.join(folder, f"{name}_{seconds:g}s.mp4")
    if os.path.exists(path):
        return path
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height + 64, 0:width + 256].astype(np.float32)
    base = np.stack([np.sin(xx / (17 + 9 * c)) * np.cos(yy / (23 + 7 * c)) for c in range(3)], -1) * 90 + 128
    base = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    tmp = path + ".part.mp4"
    n = int(round(seconds * fps))
    with av.open(tmp, "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {"preset": "veryfast", "crf": "23",
                     "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=3"}
        for i in range(n):
            dy, dx = (i * 3) % 64, (i * 5) % 256
            img = np.ascontiguousarray(base[dy:dy + height, dx:dx + width])
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    os.replace(tmp, path)
    return path


def default_videos_dir() -> str | None:
    """The repository's real test clips (H.264, XviD, VP9, GIF, rotated, VFR), when run from a clone."""
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tests", "data", "videos")
    return os.path.normpath(here) if os.path.isdir(here) else None


def real_clips(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        raise UsageError(f"videos_dir={folder!r}: no such folder")
    found = video.find_videos([folder])
    if not found:
        raise UsageError(f"videos_dir={folder!r}: holds no video files")
    return found


# ----------------------------------------------------------------------------- what each pattern reads

def pattern_reads(pattern: str, path: str, n: int) -> list[list[int]]:
    """The reads (lists of frame indices) one case makes on one video of N frames (text4vis's N)."""
    if pattern == "predict_t8":
        return [sampling.view_indices(n, 8, 1)[0]]
    if pattern == "predict_t16":
        return [sampling.view_indices(n, 16, 1)[0]]
    if pattern == "predict_4x3":
        return [[i for clip in sampling.view_indices(n, 8, 4) for i in clip]]
    if pattern == "train":
        rng = np.random.default_rng(0)
        return [sampling.segment_indices(n, 8, rng) for _ in range(TRAIN_CLIPS_PER_VIDEO)]
    raise ValueError(pattern)


def timeline_plan(path: str) -> tuple[list[int], int]:
    """(sorted distinct frame indices every window needs, number of windows) of `timeline`'s defaults."""
    from ..timeline import plan_windows
    plan = plan_windows(video.probe(path), 4.0, 2.0, 8)
    return sorted({i for w in plan for i in w["frames"]}), len(plan)


def estimate_decoded(keys: list[int], wanted, n: int, reader: str) -> int:
    """Frames a peer decodes for `wanted` (see the module doc): a model from keyframe positions."""
    if reader == "opencv":
        return max(wanted) + 1
    if reader == "pyav_full":
        return n
    return R.seek_cost(keys, wanted)


def counted_decoded(reader: str, path: str, wanted, n: int, keys) -> int:
    if reader == "pyav":
        stats = video.DecodeStats()
        for _ in video.stream_frames(path, sorted(set(wanted)), threads=1, stats=stats):
            pass
        return stats.decoded
    if reader == "pyav_seek":
        st = R.SeekStats()
        R.read_pyav_seek(path, lambda m: list(wanted), 1, st)
        return counted_decoded("pyav", path, wanted, n, keys) if st.forward else st.decoded
    return estimate_decoded(keys, wanted, n, reader)


# ----------------------------------------------------------------------------- agreement

def _rotation(path: str) -> int:
    import av
    with av.open(path) as c:
        s = video._default_stream(c)
        for frame in c.decode(s):
            return int(getattr(frame, "rotation", 0) or 0) % 360
    return 0


def agreement(path: str, readers: list[str]) -> dict:
    """Each reader's N and frames against text4vis's (`pyav`) for predict_4x3's indices."""
    ref, n = video.read_frames(path, lambda m: [i for c in sampling.view_indices(m, 8, 4) for i in c], threads=1)
    indices = [i for c in sampling.view_indices(n, 8, 4) for i in c]
    rotation = _rotation(path)
    out = {}
    for name in readers:
        if name == "pyav":
            out[name] = {"num_frames": n, "same_shape": True, "max_abs_diff": 0, "mean_abs_diff": 0.0}
            continue
        seen: dict = {}
        try:
            frames, m = R.read(name, path, lambda k, seen=seen: (seen.setdefault("n", k), [i for i in indices if i < k])[1], 1)
        except Exception as exc:
            out[name] = {"num_frames": seen.get("n"), "error": str(exc).replace(path + ": ", "")}
            continue
        rec = {"num_frames": m, "same_shape": frames.shape == ref.shape}
        if rec["same_shape"]:
            d = np.abs(frames.astype(np.int16) - ref.astype(np.int16))
            rec["max_abs_diff"], rec["mean_abs_diff"] = int(d.max()), round(float(d.mean()), 3)
        else:
            rec["shape"] = list(frames.shape)
            if rotation in (90, 270) and frames.shape[1:3] == ref.shape[2:0:-1]:
                rec["rotation_applied"] = False
        out[name] = rec
    return out


def same_frames(rec: dict, n: int) -> bool:
    """A reader gives text4vis's frames: the same N, shapes, and pixels within 1 level on average
    (colour conversion rounding), never a different picture (max difference 64)."""
    return ("error" not in rec and rec.get("num_frames") == n and rec.get("same_shape")
            and rec.get("mean_abs_diff", 99) <= 1.0 and rec.get("max_abs_diff", 999) <= 64)


# ----------------------------------------------------------------------------- timing

def _time(fn, min_cpu: float) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, calls): `fn` called until it has used `min_cpu` CPU-seconds (at least once)."""
    c0, w0, calls = time.process_time(), time.perf_counter(), 0
    while True:
        fn()
        calls += 1
        if time.process_time() - c0 >= min_cpu or calls >= 50:
            return time.process_time() - c0, time.perf_counter() - w0, calls


def bench_decode(videos_dir: str | None = None, quick: bool = False, seconds: float | None = None,
                 rounds: int | None = None, readers: list[str] | None = None, min_cpu: float | None = None,
                 only: list[str] | None = None, log=None) -> dict:
    """Clips per CPU-second, frames decoded and agreement of each available reader (see the module doc).

    videos_dir  real clips (every video under it); default: none
    quick       small generated videos (240p, 3 s) and 1 round, for tests and a first look
    seconds     length of the generated videos (default 60, quick 3); 0 generates none
    rounds      interleaved rounds (default 3, quick 1); each case's best round counts
    readers     which readers (default all of readers.READERS that are available)
    min_cpu     CPU-seconds each case runs for at least, per round (default 0.3, quick 0)
    only        video sets to run ("real", "720p_gop25", ...; default all)
    log         a callable taking one line (skipped readers, progress), or None
    """
    log = log or (lambda line: None)
    rounds = rounds or (1 if quick else 3)
    min_cpu = (0.0 if quick else 0.3) if min_cpu is None else min_cpu
    seconds = (3.0 if quick else DEFAULT_SECONDS) if seconds is None else float(seconds)
    usable, skipped = [], {}
    for name in readers or R.READERS:
        why = R.missing(name)
        if why:
            skipped[name] = why
            log(f"skipping {name}: {why}")
        else:
            usable.append(name)
    if "pyav" not in usable:
        raise R.VideoError("the decode bench needs PyAV (pip install av): text4vis's own reader")
    generated = QUICK_GENERATED if quick else GENERATED
    known = ["real"] + [g[0] for g in generated]
    bad = [s for s in only or [] if s not in known]
    if bad:
        raise UsageError(f"only={bad[0]!r}: not a video set of this run (choose from {', '.join(known)})")
    sets: dict[str, list[str]] = {}
    if videos_dir and (not only or "real" in only):
        sets["real"] = real_clips(videos_dir)
    if seconds > 0:
        for name, height, gop in generated:
            if only and name not in only:
                continue
            log(f"generating {name} ({seconds:g} s, cached in {cache_dir()})")
            sets[name] = [make_video(cache_dir(), name, height, gop, seconds)]

    # what each case reads, from text4vis's N (peers get the same indices: frames compared like for like)
    info = {}
    for paths in sets.values():
        for p in paths:
            keys, n = R.keyframe_indices(p)
            tl, windows = timeline_plan(p)
            info[p] = {"n": n, "keys": keys, "timeline": tl, "windows": windows}

    def case(reader, pattern, paths):
        if pattern == "timeline":
            return (lambda: [R.read_sorted(reader, p, info[p]["timeline"], 1) for p in paths],
                    sum(info[p]["windows"] for p in paths))
        reads = [(p, idx) for p in paths for idx in pattern_reads(pattern, p, info[p]["n"])]
        return (lambda: [R.read(reader, p, (lambda m, idx=idx: idx), 1) for p, idx in reads]), len(reads)

    failed: dict[tuple, str] = {}
    best: dict[tuple, list] = {}
    for r in range(rounds):
        log(f"round {r + 1} of {rounds}")
        for set_name, paths in sets.items():
            for pattern in PATTERNS:
                order = usable[r % len(usable):] + usable[:r % len(usable)]
                for reader in order:
                    key = (pattern, set_name, reader)
                    if key in failed:
                        continue
                    fn, clips = case(reader, pattern, paths)
                    try:
                        cpu, wall, calls = _time(fn, min_cpu)
                    except Exception as exc:
                        failed[key] = str(exc)
                        continue
                    prev = best.get(key)
                    if prev is None or cpu / calls < prev[0]:
                        best[key] = [cpu / calls, wall / calls, clips]

    agree = {p: agreement(p, usable) for paths in sets.values() for p in paths}
    same = {reader: all(same_frames(agree[p][reader], agree[p]["pyav"]["num_frames"]) for p in agree)
            for reader in usable}
    out: dict = {"readers": usable, "skipped": skipped, "rounds": rounds, "min_cpu_s_per_case": min_cpu,
                 "threads_per_reader": 1,
                 "unit": "clips per CPU-second (one thread each)", "generated_seconds": seconds,
                 "sets": {k: [os.path.basename(p) for p in v] for k, v in sets.items()},
                 "counts": {r: R.COUNTS[r] for r in usable}, "rotation": {r: R.ROTATION[r] for r in usable},
                 "same_frames_as_text4vis": same, "patterns": {}, "agreement": {}}
    for p, recs in agree.items():
        out["agreement"][os.path.basename(p)] = recs
    for pattern in PATTERNS:
        per_set: dict = {}
        for set_name, paths in sets.items():
            row = {}
            for reader in usable:
                key = (pattern, set_name, reader)
                if key in failed:
                    row[reader] = {"error": failed[key][:200]}
                    continue
                cpu, wall, clips = best[key]
                if pattern == "timeline":
                    decoded = sum(counted_decoded(reader, p, info[p]["timeline"], info[p]["n"], info[p]["keys"])
                                  for p in paths)
                else:
                    decoded = sum(counted_decoded(reader, p, idx, info[p]["n"], info[p]["keys"])
                                  for p in paths for idx in pattern_reads(pattern, p, info[p]["n"]))
                row[reader] = {"clips_per_s_per_core": clips / max(cpu, 1e-9),
                               "wall_clips_per_s": clips / max(wall, 1e-9), "clips": clips,
                               "frames_decoded_per_clip": round(decoded / clips, 1),
                               "frames_decoded": "counted" if reader.startswith("pyav") else "estimated"}
            per_set[set_name] = row
        out["patterns"][pattern] = {"sets": per_set, **_compare(per_set, usable, same, pattern)}
    return out


def default_reader(pattern: str) -> str:
    """The reader text4vis uses by default for a pattern (decoders/choose.py's auto; timelines stream with pyav)."""
    from .choose import AUTO
    return "pyav" if pattern == "timeline" else AUTO["train" if pattern == "train" else "predict"]


def _compare(per_set: dict, usable: list[str], same: dict, pattern: str) -> dict:
    """text4vis's default reader for the pattern, and its plain PyAV reader, against the fastest peer
    that gives the same frames (clips/s per core over clips/s per core)."""
    default = default_reader(pattern)
    vs, fastest, plain_vs = {}, {}, {}
    for set_name, row in per_set.items():
        speed = {r: v["clips_per_s_per_core"] for r, v in row.items() if "error" not in v}
        peers = {r: s for r, s in speed.items() if r in R.PEERS and same.get(r)}
        if default in speed and peers:
            top = max(peers, key=peers.get)
            fastest[set_name] = top
            vs[set_name] = round(speed[default] / peers[top], 3)
            if "pyav" in speed:
                plain_vs[set_name] = round(speed["pyav"] / peers[top], 3)
    res = {"default_reader": default, "fastest_peer": fastest, "text4vis_vs_fastest_peer": vs,
           "pyav_vs_fastest_peer": plain_vs}
    if vs:
        res["text4vis_vs_fastest_peer_geomean"] = round(math.exp(sum(math.log(v) for v in vs.values()) / len(vs)), 3)
    return res


def format_table(result: dict) -> list[str]:
    """The human-readable table: per pattern and video set, clips/s per core (frames decoded per clip)."""
    lines = []
    readers = result["readers"]
    width = max(12, *(len(r) for r in readers))
    for pattern, res in result["patterns"].items():
        lines.append(f"{pattern}: clips/s per core (frames decoded per clip)")
        lines.append("  " + f"{'set':<14}" + "".join(f"{r:>{width + 10}}" for r in readers)
                     + f"   {res['default_reader']} (default) / fastest peer with the same frames")
        for set_name, row in res["sets"].items():
            cells = []
            for r in readers:
                v = row.get(r, {})
                cells.append(f"{'failed':>{width + 10}}" if "error" in v else
                             f"{v['clips_per_s_per_core']:>{width + 1}.1f} ({v['frames_decoded_per_clip']:>5.0f})")
            ratio = res["text4vis_vs_fastest_peer"].get(set_name)
            peer = res["fastest_peer"].get(set_name, "-")
            lines.append("  " + f"{set_name:<14}" + "".join(cells) + (f"   {ratio:.2f}x {peer}" if ratio else "   -"))
    lines.append("same frames as text4vis on every video (N, shape, pixels): " +
                 ", ".join(f"{r}={'yes' if ok else 'no'}" for r, ok in result["same_frames_as_text4vis"].items()))
    for name, recs in result["agreement"].items():
        diffs = []
        for r, rec in recs.items():
            if r == "pyav":
                continue
            if "error" in rec:
                diffs.append(f"{r}: {rec['error'][:60]}")
            elif not rec["same_shape"]:
                diffs.append(f"{r}: N={rec['num_frames']} shape {rec['shape'][1:3]}")
            elif rec["max_abs_diff"] or rec["num_frames"] != recs["pyav"]["num_frames"]:
                diffs.append(f"{r}: N={rec['num_frames']} max {rec['max_abs_diff']} mean {rec['mean_abs_diff']}")
        if diffs:
            lines.append(f"  {name} (N={recs['pyav']['num_frames']}): " + "; ".join(diffs))
    for r, why in result["skipped"].items():
        lines.append(f"skipped {r}: {why}")
    return lines
