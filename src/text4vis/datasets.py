"""Datasets: list files, class folders and CSVs -> samples -> clip tensors.

Sources of samples
  * the original Text4Vis list files, both kinds:
      frames  "relative/dir num_frames label"  (images read through image_tmpl, index_bias)
      videos  "relative/path.mp4 label"
  * a folder per class (root/<class name>/<video>), classes sorted by name;
  * a CSV "path,label" (label = a class id or a class name; a header line is optional).

Training clips are decoded in DataLoader workers; every random draw comes from a generator seeded
by (seed, epoch, index), so a run is reproducible whatever the number of workers, and a resumed
run sees the same clips. A sample that fails to decode is replaced by another one and reported.
"""
from __future__ import annotations

from .files import atomic_write_text
from .errors import DataError, DataWarning, first_line

import csv
import io
import math
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info

from . import remote, sampling, transforms
from .decoders.choose import check_decoder, read_frames as decode_frames
from .video import VIDEO_EXTENSIONS, VideoError, read_frame_folder




@dataclass
class Sample:
    path: str                     # absolute path of the video file or frame folder
    label: int                    # class id (-1: unknown, for prediction)
    num_frames: int | None = None  # frame folders only (from the list line)
    source: str = ""              # "list.txt:12", for error messages


# ----------------------------------------------------------------------------- reading lists

def _not_text(path: str, exc: UnicodeDecodeError) -> DataError:
    return DataError(f"{path}: not a text file (byte {exc.start} is not UTF-8: {exc.reason})")


def same_file(a: str, b: str) -> bool:
    """Whether paths `a` and `b` name the same file (also through links); for outputs that must
    never replace an input list."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def write_list_atomic(path: str, lines: list[str]) -> None:
    """Write a list file whole or not at all (temporary file, then rename): a kill never leaves half a list."""
    atomic_write_text(path, "".join(lines))


def unparsable(problems: list[str], what: str) -> DataError:
    """One DataError for every line that cannot be parsed (the first 10 shown, one per line)."""
    if len(problems) == 1:
        return DataError(problems[0])
    shown = "\n".join(f"  {p}" for p in problems[:10])
    more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
    return DataError(f"{what}: {len(problems)} lines cannot be parsed:\n{shown}{more}")


def _join(root: str, path: str) -> str:
    """An entry's path: a URL as it is; else joined to `root`, itself a folder or a URL prefix (remote.py)."""
    if remote.is_remote(path) or not root:
        return path
    if remote.is_remote(root):
        return path if path.startswith("/") else root.rstrip("/") + "/" + path
    return os.path.join(root, path)


def _list_text(path: str, what: str) -> str:
    """The text of a list or CSV file on disk or at a URL (s3://, gs://, az://, http(s)://: remote.py)."""
    try:
        if remote.is_remote(path):
            try:
                return remote.read_text(path)
            except VideoError as exc:
                raise DataError(str(exc)) from None
        if not os.path.isfile(path):
            raise DataError(f"{path}: {what} not found")
        with open(path, newline="", encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as exc:
        raise _not_text(path, exc) from None


def read_list(list_file: str, root: str = "", bad: list | None = None) -> list[Sample]:
    """Original Text4Vis list file (frames or videos), paths joined to `root`. Lines that cannot be parsed
    are all reported in one DataError; with `bad` (a list), they are appended to it as ("list:line",
    message) and the rest is returned."""
    lines = _list_text(list_file, "list file").splitlines()
    out = []
    problems: list[tuple[str, str]] = []
    for lineno, line in enumerate(lines, start=1):
        parts = line.strip().split()
        if not parts:
            continue
        where = f"{list_file}:{lineno}"
        try:
            if len(parts) >= 3:  # frames: dir num_frames label (dir may not contain spaces, as in the reference)
                path, n, label = " ".join(parts[:-2]), int(parts[-2]), int(parts[-1])
                if remote.is_remote(_join(root, path)):
                    problems.append((where, f"{where}: {_join(root, path)} is a frame folder at a URL; frame "
                                            f"folders are read from disk only (videos may be URLs)"))
                    continue
                out.append(Sample(_join(root, path), label, n, where))
            elif len(parts) == 2:
                out.append(Sample(_join(root, parts[0]), int(parts[1]), None, where))
            else:
                raise ValueError
        except ValueError:
            problems.append((where, f"{where}: cannot parse {line.strip()!r}: expected 'path label' or "
                                    f"'dir num_frames label' with integer numbers"))
    out = _parsed(out, problems, bad, list_file, "list file")
    zero = [s for s in out if s.num_frames is not None and s.num_frames <= 0]
    if zero:  # e.g. the original HMDB51 zero-shot list (its generator globbed folder names holding `[`)
        warnings.warn(DataWarning(f"{list_file}: {len(zero)} entries say 0 frames (first: {zero[0].source}); "
                                  f"the frames in their folders are counted instead"), stacklevel=2)
    return out


def _parsed(out: list[Sample], problems: list, bad: list | None, path: str, kind: str) -> list[Sample]:
    if bad is not None:
        bad.extend(problems)
    elif problems:
        raise unparsable([msg for _, msg in problems], path)
    if not out and not problems:
        raise DataError(f"{path}: {kind} has no entries")
    return out


def read_csv(csv_file: str, labels: list[str], root: str = "", bad: list | None = None) -> list[Sample]:
    """CSV of `path,label` (label = id or class name); a first line `path,label` is a header. Bad lines as
    in read_list."""
    text = _list_text(csv_file, "CSV file")
    index = {n: i for i, n in enumerate(labels)}
    out = []
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:  # e.g. a NUL byte
        raise DataError(f"{csv_file}: not a CSV file ({exc})") from None
    problems: list[tuple[str, str]] = []
    for lineno, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip():
            continue
        if lineno == 1 and [c.strip().lower() for c in row[:2]] == ["path", "label"]:
            continue
        where = f"{csv_file}:{lineno}"
        if len(row) < 2:
            problems.append((where, f"{where}: expected 'path,label', got {','.join(row)!r}"))
            continue
        path, lab = row[0].strip(), ",".join(row[1:]).strip()
        if lab in index:
            label = index[lab]
        else:
            try:
                label = int(lab)
            except ValueError:
                problems.append((where, f"{where}: label {lab!r} is neither a class id nor a class name"))
                continue
        out.append(Sample(_join(root, path), label, None, where))
    return _parsed(out, problems, bad, csv_file, "CSV")


def read_class_folders(root: str) -> tuple[list[Sample], list[str]]:
    """root/<class>/<video files>; classes are the sorted folder names."""
    if not os.path.isdir(root):
        raise DataError(f"{root}: folder not found")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    samples = []
    for i, c in enumerate(classes):
        for dirpath, dirs, files in os.walk(os.path.join(root, c)):
            dirs.sort()
            for name in sorted(files):
                if os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS:
                    samples.append(Sample(os.path.join(dirpath, name), i, None, os.path.join(dirpath, name)))
    if not samples:
        raise DataError(f"{root}: no videos in class folders")
    return samples, classes


def check_labels_in_range(samples: list[Sample], num_classes: int) -> None:
    for s in samples:
        if not 0 <= s.label < num_classes:
            raise DataError(f"{s.source}: label id {s.label} is outside the label list (0..{num_classes - 1})")


def drop_short(samples: list[Sample], min_frames: int, source: str = "the list") -> list[Sample]:
    """The entries a training run keeps under `min_frames` (data.min_frames): frame-folder entries
    whose list count is below it are dropped, as the reference drops training entries under 8
    frames by the list's count; video entries (no count in the list) are all kept."""
    kept = [s for s in samples if s.num_frames is None or s.num_frames >= min_frames]
    if samples and not kept:
        raise DataError(f"{source}: every entry of it has fewer than {min_frames} frames (data.min_frames)")
    return kept


def few_shot(samples: list[Sample], shot: int, seed: int, num_classes: int) -> list[Sample]:
    """K random videos per class, seeded (identical on every rank), in list order."""
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for i, s in enumerate(samples):
        by_class.setdefault(s.label, []).append(i)
    keep = []
    for c in range(num_classes):
        idx = by_class.get(c, [])
        if idx:
            keep.extend(rng.choice(idx, size=min(shot, len(idx)), replace=False).tolist())
    return [samples[i] for i in sorted(keep)]


# ----------------------------------------------------------------------------- reading clips

def check_image_tmpl(tmpl) -> None:
    """DataError unless `tmpl` names frame files by one integer field ("img_{:05d}.jpg"): without
    a field every frame would be the same file, a bad field would fail on every read."""
    hint = "it needs one integer field for the frame number, such as 'img_{:05d}.jpg'"
    if not isinstance(tmpl, str):
        raise DataError(f"data.image_tmpl {tmpl!r}: not a text template; {hint}")
    try:
        first, second = tmpl.format(1), tmpl.format(2)
    except (IndexError, KeyError, ValueError, TypeError, AttributeError) as exc:
        reason = f"unknown field {exc}" if isinstance(exc, (KeyError, AttributeError)) else str(exc) or type(exc).__name__
        raise DataError(f"data.image_tmpl {tmpl!r}: not a valid template ({reason}); {hint}") from None
    if first == second:
        raise DataError(f"data.image_tmpl {tmpl!r}: has no field for the frame number; {hint}")


@dataclass
class FrameReader:
    """Reads chosen frames of a sample: a video file, or a frame folder through `image_tmpl`."""
    image_tmpl: str = "img_{:05d}.jpg"
    index_bias: int = 1
    decoder: str = "auto"      # which video reader (decoders/choose.py; auto: the fastest giving these frames)
    decode_device: str = "cpu"  # "cuda": NVDEC, frames stay on the GPU (resolved by decoders.gpu beforehand)

    def __post_init__(self):
        check_image_tmpl(self.image_tmpl)
        check_decoder(self.decoder)

    def __call__(self, sample: Sample, choose) -> np.ndarray:
        if sample.num_frames is not None:
            frames, _ = read_frame_folder(sample.path, choose, sample.num_frames, self.image_tmpl, self.index_bias)
        else:
            # one decoding thread per DataLoader worker (workers are the parallelism); FFmpeg's own
            # (slice) threads when decoding in the main process
            frames, _ = decode_frames(sample.path, choose, threads=1 if get_worker_info() else 0,
                                      decoder=self.decoder, decode_device=self.decode_device)
        return frames


class TrainDataset(Dataset):
    """Training clips: uint8 [T, 3, S, S], label. Index with (epoch, i) tuples (see TrainBatchSampler)."""

    def __init__(self, samples: list[Sample], num_frames: int, transform: transforms.TrainTransform,
                 reader: FrameReader | None = None, dense: bool = False, random_shift: bool = True,
                 seed: int = 0, max_retries: int = 10):
        self.samples, self.num_frames, self.transform = samples, num_frames, transform
        self.reader = reader or FrameReader()
        self.dense, self.random_shift, self.seed, self.max_retries = dense, random_shift, seed, max_retries

    def __len__(self) -> int:
        return len(self.samples)

    def _choose(self, rng: np.random.Generator):
        t = self.num_frames
        if self.dense:
            return lambda n: sampling.dense_indices(n, t, rng)
        if self.random_shift:
            return lambda n: sampling.segment_indices(n, t, rng)
        return lambda n: sampling.uniform_indices(n, t)

    def __getitem__(self, key):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        failed: list[str] = []
        for attempt in range(self.max_retries):
            rng = np.random.default_rng([self.seed, epoch, index, attempt])
            sample = self.samples[index]
            try:
                frames = self.reader(sample, self._choose(rng))
            except VideoError as exc:
                failed.append(str(exc))
                index = int(rng.integers(0, len(self.samples)))  # replace by another sample
                continue
            clip_seed = int(rng.integers(0, 2 ** 62))
            gen = torch.Generator().manual_seed(clip_seed)
            # RandAugment draws from the global generator: seed it per clip too, without touching
            # the caller's state, so clips do not depend on the number of workers or on resuming
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(clip_seed)
                clip = self.transform(transforms.to_tensor(frames), gen)
            return clip, sample.label, failed
        raise DataError(f"{self.max_retries} videos in a row failed to decode (last: {failed[-1]}); "
                        f"run `text4vis check-data` and fix the lists")


def train_collate(batch):
    clips = torch.stack([b[0] for b in batch])
    labels = torch.tensor([b[1] for b in batch], dtype=torch.long)
    failed = [f for b in batch for f in b[2]]
    return clips, labels, failed


class TrainBatchSampler(Sampler):
    """Training batches of (epoch, index) keys for one process of `world`.

    Each epoch draws one permutation of the dataset from (seed, epoch), the same on every rank;
    rank r takes every world-th index of it starting at r. So in an epoch the ranks see disjoint
    samples that together cover the dataset exactly once: no padding with repeats, no drops.
    Every rank yields the same number of batches (DistributedDataParallel needs that): when the
    shares differ by one video and that would cost the shorter share a batch, its videos are spread
    over the same number of (slightly smaller) batches. Only with batch_size 1 and a dataset size
    not divisible by world does the shorter share repeat one of its videos.

    `start_batch` skips the first batches of the current epoch (resuming mid-epoch, same order).
    """

    def __init__(self, num_samples: int, batch_size: int, world: int = 1, rank: int = 0, seed: int = 0,
                 shuffle: bool = True):
        if num_samples < 1 or batch_size < 1 or not 0 <= rank < world:
            raise ValueError(f"TrainBatchSampler: bad arguments ({num_samples} samples, batch {batch_size}, "
                             f"rank {rank} of {world})")
        self.num_samples, self.batch_size, self.world, self.rank = num_samples, batch_size, world, rank
        self.seed, self.shuffle = seed, shuffle
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(math.ceil(self.num_samples / self.world) / self.batch_size)

    def indices(self) -> list[int]:
        """This rank's share of the epoch, in order."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=g).tolist()
        else:
            order = list(range(self.num_samples))
        return order[self.rank::self.world]

    def batches(self) -> list[list[int]]:
        mine, n = self.indices(), self.batches_per_epoch
        if len(mine) < n:  # batch_size 1, shorter share: repeat one video (the only repeat ever)
            mine = mine + mine[:n - len(mine)]
        if len(mine) > (n - 1) * self.batch_size:
            return [mine[i:i + self.batch_size] for i in range(0, len(mine), self.batch_size)]
        return [part.tolist() for part in np.array_split(np.asarray(mine), n)]

    def __iter__(self):
        for batch in self.batches()[self.start_batch:]:
            yield [(self.epoch, i) for i in batch]

    def __len__(self) -> int:
        return self.batches_per_epoch


class TestDataset(Dataset):
    """Test-time views of each sample: uint8 [clips * crops, T, 3, S, S], or an error line."""

    __test__ = False  # not a pytest test class

    def __init__(self, samples: list[Sample], num_frames: int, input_size: int, clips: int = 1, crops: int = 1,
                 reader: FrameReader | None = None, dense: bool = False):
        self.samples, self.num_frames, self.input_size = samples, num_frames, input_size
        self.clips, self.crops, self.dense = clips, crops, dense
        self.reader = reader or FrameReader()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        t, c = self.num_frames, self.clips
        view_fn = sampling.dense_view_indices if self.dense else sampling.view_indices
        try:
            frames = self.reader(sample, lambda n: [i for clip in view_fn(n, t, c) for i in clip])
        except VideoError as exc:
            return index, None, str(exc)
        except Exception as exc:  # a decoder crash on one file must not stop the batch
            return index, None, f"{sample.path}: {first_line(exc, with_type=True)}"
        clip = transforms.to_tensor(frames)                           # (c*t, 3, h, w)
        views = []
        for k in range(c):
            views.extend(transforms.test_views(clip[k * t:(k + 1) * t], self.input_size, self.crops))
        return index, torch.stack(views), None                        # (c*crops, t, 3, s, s)


def test_collate(batch):
    ok = [b for b in batch if b[1] is not None]
    views = torch.stack([b[1] for b in ok]) if ok else None
    return [b[0] for b in ok], views, [(b[0], b[2]) for b in batch if b[1] is None]


def _name_key(name: str) -> str:
    return " ".join(name.replace("_", " ").replace("-", " ").split()).casefold()


def match_class_folders(folders: list[str], labels: list[str], source: str) -> dict[str, int]:
    """Folder name -> label index: the exact name first, else the same words ignoring case and `_`/`-`."""
    exact = {n: i for i, n in enumerate(labels)}
    loose: dict[str, int] = {}
    for i, n in enumerate(labels):
        loose.setdefault(_name_key(n), i)
    index, unknown = {}, []
    for f in folders:
        i = exact.get(f, loose.get(_name_key(f)))
        if i is None:
            unknown.append(f)
        else:
            index[f] = i
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise DataError(f"{source}: class folder(s) {shown} match no name of the {len(labels)} labels "
                        f"(compared ignoring case and _/-); rename the folder or give labels that name it")
    return index


def load_split(source: str, root: str = "", labels: list[str] | None = None) -> tuple[list[Sample], list[str] | None]:
    """Samples of one split from a list file, a CSV (path,label) or a folder per class.

    Returns (samples, class names): names come from `labels` or, for class folders, the folders. Class
    folders are matched to `labels` by name, ignoring case and `_`/`-` against spaces (`arm_wrestling` is
    the class `arm wrestling`); a folder that matches no label is a DataError naming it."""
    if os.path.isdir(source):
        samples, names = read_class_folders(source)
        if labels is not None:
            index = match_class_folders(names, labels, source)
            for s in samples:
                s.label = index[names[s.label]]
            names = labels
        return samples, names
    if source.lower().endswith(".csv"):
        if labels is None:
            raise DataError(f"{source}: a CSV list needs data.labels (class names for its labels)")
        samples = read_csv(source, labels, root)
    else:
        samples = read_list(source, root)
    if labels is not None:
        check_labels_in_range(samples, len(labels))
    return samples, labels
