"""`text4vis prepare`: convert a dataset to packed, resized frames for fast training loaders.

Each video becomes one `<name>.frames.zip`: an uncompressed ZIP of JPEG frames already resized to a
short side of 256 (`000000.jpg`, `000001.jpg`, ...) plus `meta.json` (frame count, fps, source).
Reading a clip then decodes only the T sampled JPEGs, instead of the whole video stream: a frame
folder in one file (no millions of small files), readable with any ZIP tool. The prepared list file
has the same "path label" format and points at the .frames.zip files, so it is a drop-in
`data.train_list`.

Conversion runs in parallel processes with a progress bar and is resumable: a finished output is
written under a temporary name and renamed, so existing outputs are skipped on the next run.
"""
from __future__ import annotations

import io
import json
import os
import sys
import zipfile
from concurrent.futures import ProcessPoolExecutor

from PIL import Image
from tqdm import tqdm

from .errors import DataError, first_line
from .files import atomic_write, check_output_folder
from .video import FRAME_ZIP_SUFFIX as SUFFIX
from .video import VideoError, frame_rate, read_all_frames


def convert_video(src: str, dst: str, short_side: int = 256, quality: int = 90) -> dict:
    """One video -> one .frames.zip (skipped when dst exists). Returns {frames, bytes, seconds}."""
    if os.path.isfile(dst):
        with zipfile.ZipFile(dst) as z:
            meta = json.loads(z.read("meta.json"))
        return {"frames": meta["num_frames"], "bytes": os.path.getsize(dst), "seconds": meta.get("seconds", 0.0),
                "skipped": True}
    frames = read_all_frames(src)  # first: its checks give the one-line errors (missing, empty, ...)
    fps = frame_rate(src)
    n, h, w = frames.shape[:3]
    scale = short_side / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    meta = {"num_frames": int(n), "fps": fps, "seconds": n / fps, "source": os.path.basename(src),
            "short_side": short_side}

    def write(tmp: str) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
            for i, f in enumerate(frames):
                buf = io.BytesIO()
                img = Image.fromarray(f)
                if scale != 1:
                    img = img.resize(size, Image.BILINEAR, reducing_gap=None)
                img.save(buf, format="JPEG", quality=quality)
                z.writestr(f"{i:06d}.jpg", buf.getvalue())
            z.writestr("meta.json", json.dumps(meta))
    atomic_write(dst, write)
    return {"frames": int(n), "bytes": os.path.getsize(dst), "seconds": n / fps, "skipped": False}


def ignore_interrupts() -> None:
    """A worker process's initializer: Ctrl-C reaches the whole process group; only the parent handles it
    (it stops the work and says what was done), so the workers print no tracebacks of their own."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _job(args):
    src, dst, short_side, quality = args
    try:
        return src, convert_video(src, dst, short_side, quality), None
    except VideoError as exc:
        return src, None, str(exc)
    except Exception as exc:
        return src, None, f"{src}: {type(exc).__name__}: {first_line(exc) if str(exc).strip() else ''}"


def is_prepared_list(path: str) -> bool:
    """A list file `prepare` wrote: every entry points at a .frames.zip (an empty one too)."""
    with open(path, encoding="utf-8") as f:
        return all(line.split()[0].endswith(SUFFIX) for line in f if line.strip())


def prepare_list(list_file: str, root: str, out_dir: str, short_side: int = 256, quality: int = 90,
                 workers: int | None = None, progress: bool = True, overwrite: bool = False) -> dict:
    """Convert every video of a "path label" list; writes out_dir/<list name> pointing at the outputs.
    Bad arguments and an output list that would replace the input list are DataErrors, raised
    before any work; so is an existing out_dir/<list name> that `prepare` did not write (a user's list),
    unless `overwrite`. Rerunning into the same folder resumes (finished videos are skipped)."""
    from .datasets import read_list, same_file, write_list_atomic
    if isinstance(short_side, bool) or not isinstance(short_side, int) or short_side < 1:
        raise DataError(f"short_side= must be a whole number of pixels, at least 1 (not {short_side!r})")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise DataError(f"quality= must be a JPEG quality from 1 to 100 (not {quality!r})")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise DataError(f"workers= must be 0 (one per CPU) or more (not {workers!r})")
    out_list = os.path.join(out_dir, os.path.basename(list_file))
    if same_file(out_list, list_file):
        raise DataError(f"out_dir={out_dir!r}: the prepared list {out_list} would replace the input list; "
                        f"choose another output folder")
    check_output_folder(out_dir, "out_dir", f"a list of prepared videos ({os.path.basename(list_file)})",
                        lambda _: is_prepared_list(out_list), overwrite, files=(os.path.basename(list_file),))
    samples = read_list(list_file, root)
    jobs, lines = [], []
    for s in samples:
        if s.num_frames is not None:
            raise VideoError(f"{s.source}: frame-folder lists are already frames; prepare converts video lists")
        rel = os.path.relpath(s.path, root) if root else s.path.lstrip("/")
        dst = os.path.join(out_dir, rel + SUFFIX)
        jobs.append((s.path, dst, short_side, quality))
        lines.append((rel + SUFFIX, s.label, s.path))
    os.makedirs(out_dir, exist_ok=True)  # an unusable output folder fails here, once, not once per video
    totals = {"videos": len(jobs), "converted": 0, "skipped": 0, "failed": 0, "bytes": 0, "seconds": 0.0}
    ok = set()
    pool = ProcessPoolExecutor(workers or os.cpu_count() or 1, initializer=ignore_interrupts)
    try:
        for src, info, err in tqdm(pool.map(_job, jobs, chunksize=2), total=len(jobs), desc="prepare", unit="video",
                                  disable=not progress):
            if err:
                totals["failed"] += 1
                tqdm.write(f"failed: {err}", file=sys.stderr)
                continue
            ok.add(src)
            totals["skipped" if info["skipped"] else "converted"] += 1
            totals["bytes"] += info["bytes"]
            totals["seconds"] += info["seconds"]
    except KeyboardInterrupt:
        pool.shutdown(cancel_futures=True)   # the videos in flight finish (and are kept), no new ones start
        raise
    pool.shutdown()
    write_list_atomic(out_list, [f"{rel} {label}\n" for rel, label, src in lines if src in ok])
    hours = totals["seconds"] / 3600
    totals["gb_per_hour"] = (totals["bytes"] / 1e9 / hours) if hours else None
    totals["list"] = out_list
    return totals
