"""`text4vis check-data`: scan a config's train and val lists before a long run.

Every entry is opened and fully decoded in parallel: missing files, videos that do not decode,
frame counts that differ from the list line, and label ids outside the label list are reported;
cleaned list files (broken entries removed) can be written.

A video counts as broken when fewer than MIN_DECODED (90 %) of its stored frames (packets) decode:
`read_frames` would silently sample from the part that decodes, so training would see a fraction
of the video. (Healthy files decode every packet; a truncated last packet costs one frame.)
"""
from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor

from PIL import Image
from tqdm import tqdm

from ..datasets import DataError, Sample, check_image_tmpl, read_csv, read_list, same_file, write_list_atomic
from .. import remote
from ..errors import first_line
from ..labels import resolve_labels
from ..video import VideoError, count_frames, read_frames
from .config import Config

MIN_DECODED = 0.9  # a video is broken when fewer than this fraction of its packets decode to frames


def check_sample(args: tuple[Sample, str, int, int]) -> tuple[str, str | None, int | None]:
    """(kind, message, actual frames): kind is ok | missing | broken | frames | label."""
    sample, tmpl, bias, num_classes = args
    if num_classes and not 0 <= sample.label < num_classes:
        return "label", f"{sample.source}: label id {sample.label} outside 0..{num_classes - 1}", None
    if not (remote.stat(sample.path)[0] >= 0 if remote.is_remote(sample.path) else os.path.exists(sample.path)):
        return "missing", f"{sample.source}: {sample.path} not found", None
    if sample.num_frames is not None:  # frame folder: count the frames the template can read
        if not os.path.isdir(sample.path):
            return "broken", f"{sample.source}: {sample.path} is not a frame folder", 0
        try:
            limit = len(os.listdir(sample.path))  # bounds the count whatever the template
        except OSError as exc:
            return "broken", f"{sample.source}: {sample.path}: cannot list the folder ({exc.strerror or exc})", 0
        n = 0
        while n < limit and os.path.isfile(os.path.join(sample.path, tmpl.format(n + bias))):
            n += 1
        if n == 0:
            return "broken", f"{sample.source}: {sample.path} has no {tmpl} frames (index_bias {bias})", 0
        for i in sorted({0, n - 1}):  # the first and last frames must be readable images
            name = os.path.join(sample.path, tmpl.format(i + bias))
            try:
                with Image.open(name) as im:
                    im.load()
            except Exception as exc:
                return "broken", f"{sample.source}: {name} is not a readable image ({type(exc).__name__})", n
        if n != sample.num_frames:
            return "frames", f"{sample.source}: list says {sample.num_frames} frames, folder has {n}", n
        return "ok", None, n
    where = "" if sample.source == sample.path else f"{sample.source}: "
    try:
        _, n = read_frames(sample.path, lambda n: [0, n - 1])
        stored = n if sample.path.endswith(".frames.zip") else count_frames(sample.path)
    except VideoError as exc:  # its message starts with the path
        return "broken", f"{where}{exc}", None
    except Exception as exc:  # a decoder crash on one file must not stop the scan
        return "broken", f"{where}{sample.path}: {first_line(exc, with_type=True)}", None
    if n < MIN_DECODED * stored:
        return "broken", f"{where}{sample.path}: decodes {n} of {stored} frames (damaged or cut stream)", n
    return "ok", None, n


def _read_any(path: str, root: str, labels: list[str] | None, bad: list) -> list[Sample]:
    """The samples of a list; lines of a list file that cannot be parsed go to `bad` (broken entries). In a
    CSV, labels that are no class name point at the wrong label list: all are reported in one DataError."""
    if path.lower().endswith(".csv"):
        return read_csv(path, labels or [], root)
    return read_list(path, root, bad)


def check_config(cfg: Config, workers: int | None = None, clean_dir: str | None = None, progress: bool = True) -> dict:
    """Check every entry of the train and val lists; print one line per problem (stderr) and a
    summary per split (stdout). With `clean_dir`, write each list without its broken entries
    (frame counts that differ from the folder are corrected instead). `progress`: a bar (rate, ETA) on stderr."""
    labels = resolve_labels(("data.labels", cfg.data.labels))
    report: dict = {"problems": 0, "splits": {}}
    splits = [(split, path, root) for split, path, root in (("train", cfg.data.train_list, cfg.data.train_root),
                                                          ("val", cfg.data.val_list, cfg.data.val_root)) if path]
    if not splits:
        raise DataError("the config names no data.train_list or data.val_list")
    if workers is not None and workers < 0:
        raise DataError(f"workers= must be 0 (one per CPU) or more, not {workers}")
    check_image_tmpl(cfg.data.image_tmpl)
    basenames = [os.path.basename(path) for _, path, _ in splits]
    clean_paths: dict[str, str] = {}
    if clean_dir:  # before any work: never overwrite an input list, and fail early on an unusable folder
        for split, path, _ in splits:
            if not os.path.isdir(path):
                name = os.path.basename(path)
                clean_paths[split] = os.path.join(clean_dir, name if basenames.count(name) == 1 else f"{split}_{name}")
        for _split, out in clean_paths.items():
            for _, path, _ in splits:
                if same_file(out, path):
                    raise DataError(f"clean_dir={clean_dir!r}: would overwrite the input list {path}; "
                                    f"write the cleaned lists to another folder")
        os.makedirs(clean_dir, exist_ok=True)
    for split, path, root in splits:
        if os.path.isdir(path):
            print(f"{split}: {path} is a class-folder tree; checking its videos", file=sys.stderr)
            from ..datasets import read_class_folders
            samples, _ = read_class_folders(path)
        unparsed: list[tuple[str, str]] = []  # every line that cannot be parsed is listed with the other problems
        if not os.path.isdir(path):
            samples = _read_any(path, root, labels, unparsed)
        for _, msg in unparsed:
            print(f"unparsable: {msg}", file=sys.stderr)
        jobs = [(s, cfg.data.image_tmpl, cfg.data.index_bias, len(labels) if labels else 0) for s in samples]
        n_workers = max(1, workers or os.cpu_count() or 1)
        counts = {"ok": 0, "missing": 0, "broken": 0, "frames": 0, "label": 0}
        bad_lines: set[str] = {where for where, _ in unparsed}
        fixed_counts: dict[str, int] = {}
        pool = ProcessPoolExecutor(n_workers) if n_workers > 1 else None
        try:
            results = pool.map(check_sample, jobs, chunksize=4) if pool else map(check_sample, jobs)
            for s, (kind, msg, n) in tqdm(zip(samples, results), total=len(samples), desc=f"checking {split}",
                                          unit="video", disable=not progress):
                counts[kind] += 1
                if msg:
                    tqdm.write(f"{kind}: {msg}", file=sys.stderr)
                if kind == "frames":
                    fixed_counts[s.source] = n
                elif kind != "ok":
                    bad_lines.add(s.source)
        finally:
            if pool is not None:
                pool.shutdown()
        problems = len(samples) - counts["ok"] + len(unparsed)
        report["problems"] += problems
        report["splits"][split] = dict(counts, total=len(samples) + len(unparsed))
        if unparsed:
            report["splits"][split]["unparsable"] = len(unparsed)
        print(f"{split}: {len(samples) + len(unparsed)} entries, {counts['ok']} ok, {counts['missing']} missing, "
              f"{counts['broken']} do not decode, {counts['frames']} frame counts differ, "
              f"{counts['label']} labels out of range" + (f", {len(unparsed)} lines cannot be parsed" if unparsed else ""))
        if split in clean_paths:
            out = clean_paths[split]
            written = _write_clean(path, out, {s.source for s in samples}, bad_lines, fixed_counts)
            report["splits"][split]["clean_list"] = out
            print(f"{split}: cleaned list ({written} entries, {len(bad_lines)} removed, "
                  f"{len(fixed_counts)} frame counts corrected) written to {out}")
    return report


def _write_clean(path: str, out: str, sources: set[str], bad_lines: set[str], fixed_counts: dict[str, int]) -> int:
    """Write `path` without its bad lines to `out`, atomically. Returns the number of entries written."""
    with open(path, encoding="utf-8") as src:
        lines = src.readlines()
    kept, written = [], 0
    for lineno, line in enumerate(lines, start=1):
        where = f"{path}:{lineno}"
        if where in bad_lines:
            continue
        if where in fixed_counts:  # "dir num_frames label": the folder's true count
            parts = line.split()
            parts[-2] = str(fixed_counts[where])
            line = " ".join(parts) + "\n"
        kept.append(line)
        written += where in sources
    write_list_atomic(out, kept)
    return written
