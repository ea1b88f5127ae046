"""A searchable video collection: embed every video once, then search it with any sentence (or a video)
and tag it with any label set, without decoding it again.

Layout of an index folder DIR:
  index.json                 the model (checkpoint path + sha256, towers, head, frames, width, prompts),
                             the entry settings (per video, or windows), the vector index settings and,
                             once a build finished, the merged folder that holds the searchable index
  shards/shard-<hash>.npy    embeddings of one shard of videos (rows: the shard's embedded entries)
  shards/shard-<hash>.parquet  one row per entry: path, size, mtime, start, end, duration, status, error
  merged-<token>/            entries.parquet (every live entry, sorted by path and start; `row` is the
                             entry's row in vectors.npy, -1 for a failed video), vectors.npy, vectors.faiss
  .lock                      held (fcntl.flock) by the one process building into DIR

A shard is a fixed group of `shard_size` videos; its name is a hash of its videos (path, size, mtime),
so the same work always makes the same shard whatever process or rank makes it. Shards are written
atomically (temporary file, fsync, rename; the Parquet file last); a rerun skips every video that a
finished shard holds with the same size and mtime, so a killed build resumes, and a new or changed
video is embedded alone. The merged index is a function of the live entries only (the newest shard
holding each path), so it does not depend on how the work was split, interrupted or distributed.

Under torchrun each rank embeds shards rank, rank + world, ...; ranks meet only at the end, where
rank 0 merges.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from .files import sha256_file  # noqa: F401  (also text4vis.index.sha256_file)
from .errors import UsageError, VideoError, VideoIndexError, first_line

FORMAT = "text4vis-index"
VERSION = 1
INDEX_JSON = "index.json"
SHARDS = "shards"
LOCK = ".lock"
ENTRIES = "entries.parquet"
VECTORS = "vectors.npy"
FAISS_FILE = "vectors.faiss"
LIST_EXTENSIONS = (".txt", ".csv", ".lst", ".list")
DEFAULT_SHARD_SIZE = 1000
EXACT_BELOW = 100_000          # auto: exact search for smaller collections, IVF above
RERANK = 4                     # compressed indexes fetch k x RERANK candidates, re-scored exactly
VECTOR_INDEXES = ("auto", "flat", "ivf-sq8", "ivf-pq")
DTYPES = ("float32", "float16")
QUERY_LABEL = "video"           # a one-class classifier: loading a model for embedding needs some labels
COLUMNS = ("path", "size", "mtime", "start", "end", "duration", "status", "error")


def _faiss():
    try:
        import faiss
    except ImportError:
        raise VideoIndexError("the video index needs FAISS: pip install 'text4vis[index]'") from None
    return faiss


def _arrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise VideoIndexError("the video index needs pyarrow: pip install 'text4vis[index]'") from None
    return pa, pq


# ----------------------------------------------------------------------------- small file helpers

def _fsync_replace(tmp: str, path: str) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_json(path: str, obj: dict) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    _fsync_replace(tmp, path)


class NpyWriter:
    """Writes a [rows, dim] .npy file chunk by chunk (no memory map: written pages are not this
    process's memory), to a temporary name renamed into place by `close()`."""

    def __init__(self, path: str, rows: int, dim: int, dtype: str):
        self.path, self.tmp = path, f"{path}.tmp{os.getpid()}"
        self.rows, self.dtype, self.written = rows, np.dtype(dtype), 0
        self.f = open(self.tmp, "wb")
        np.lib.format.write_array_header_1_0(self.f, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                      "fortran_order": False, "shape": (rows, dim)})

    def write(self, chunk: np.ndarray) -> None:
        self.f.write(np.ascontiguousarray(chunk, dtype=self.dtype).tobytes())
        self.written += len(chunk)

    def close(self) -> None:
        self.f.close()
        if self.written != self.rows:
            os.remove(self.tmp)
            raise RuntimeError(f"{self.path}: wrote {self.written} of {self.rows} rows")
        _fsync_replace(self.tmp, self.path)


class RowReader:
    """Rows of a 2-D .npy file read with pread: any rows (re-ranking), or chunks in order (tagging).
    Nothing is memory-mapped, so reading does not grow the process's resident memory."""

    def __init__(self, path: str):
        self.path = path
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            self.offset = f.tell()
        if len(shape) != 2 or fortran:
            raise VideoIndexError(f"{path}: not a 2-D embedding file")
        self.rows, self.dim = shape
        self.dtype = np.dtype(dtype)
        self.row_bytes = self.dim * self.dtype.itemsize
        self.fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.rows

    def read(self, start: int, stop: int) -> np.ndarray:
        n = max(0, min(stop, self.rows) - start)
        data = os.pread(self.fd, n * self.row_bytes, self.offset + start * self.row_bytes)
        return np.frombuffer(data, self.dtype).reshape(n, self.dim).astype(np.float32)

    def take(self, rows) -> np.ndarray:
        return np.stack([self.read(int(r), int(r) + 1)[0] for r in rows]) if len(rows) else \
            np.zeros((0, self.dim), np.float32)

    def chunks(self, size: int = 16384):
        for start in range(0, self.rows, size):
            yield start, self.read(start, start + size)

    def close(self) -> None:
        os.close(self.fd)


# ----------------------------------------------------------------------------- inputs

def read_list_file(path: str) -> list[str]:
    """Paths of a list file: one per line (blank lines and # comments skipped), or a CSV with a `path`
    column. Relative paths are relative to the list file's folder."""
    base = os.path.dirname(os.path.abspath(path))
    try:
        with open(path, newline="", encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        raise VideoIndexError(f"{path}: not a text list of videos (byte {exc.start} is not UTF-8)") from None
    except OSError as exc:
        raise VideoIndexError(f"{path}: cannot read this list of videos ({exc.strerror or exc})") from None
    if path.lower().endswith(".csv"):
        if not text.strip():
            return []
        reader = csv.reader(text.splitlines())
        header = [h.strip() for h in next(reader)]
        if "path" not in header:
            raise VideoIndexError(f"{path}: a CSV list of videos needs a `path` column (its columns: "
                                  f"{', '.join(header)})")
        col = header.index("path")
        names = [row[col].strip() for row in reader if len(row) > col]
    else:
        names = [ln.strip() for ln in text.splitlines()]
    return [os.path.join(base, n) for n in names if n and not n.startswith("#")]


def expand_inputs(inputs) -> tuple[list[str], list[str]]:
    """(video paths, absolute and without repeats, in input order; input folders that hold no video).

    Inputs are video files, folders (searched recursively) and list files (.txt/.csv/.lst/.list).
    A path that does not exist is kept: the build records it as a failed video."""
    from .video import find_videos
    out, seen, empty = [], set(), []
    for item in [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs):
        item = os.fspath(item)
        if os.path.isfile(item) and item.lower().endswith(LIST_EXTENSIONS):
            paths = find_videos(read_list_file(item))
        elif os.path.isdir(item):
            paths = find_videos([item])
            if not paths:
                empty.append(item)
        else:
            paths = [item]
        for p in paths:
            p = os.path.abspath(p)
            if p not in seen:
                seen.add(p)
                out.append(p)
    return out, empty


def file_stat(path: str) -> tuple[int, float]:
    try:
        st = os.stat(path)
        return int(st.st_size), float(st.st_mtime)
    except OSError:
        return -1, -1.0


# ----------------------------------------------------------------------------- the model

def _local_checkpoint(checkpoint):
    """A converted folder or hf-hub:ORG/NAME checkpoint as the local file it names (what is hashed and recorded)."""
    from .checkpoints import resolve_checkpoint
    return os.path.abspath(resolve_checkpoint(os.fspath(checkpoint))) if checkpoint else checkpoint


def load_model(checkpoint=None, clip=None, frames=None, device="auto", precision="auto", labels=None,
               prompts=None, classifier=None, runtime="torch"):
    """A Recognizer for embedding (a one-class classifier unless `labels`/`classifier` are given);
    runtime='onnx' embeds on ONNX Runtime (the checkpoint's exported model.onnx), as in `load`."""
    from .api import load
    from .checkpoints import is_text4vis_checkpoint
    if labels is None and classifier is None and not (checkpoint and is_text4vis_checkpoint(checkpoint)):
        labels = [QUERY_LABEL]
    return load(checkpoint=checkpoint, clip=clip, labels=labels, prompts=prompts, classifier=classifier,
                frames=frames, device=device, precision=precision, runtime=runtime)


def embedding_width(rec) -> int:
    proj = getattr(rec.model, "proj", None)
    return int(proj.out_features) if proj is not None else int(rec.model.embed_dim)


def model_record(rec, checkpoint, clip, prompts, known: dict | None = None) -> dict:
    """What index.json says about the model that built the index (and what identifies it). A file
    that `known` (an earlier record) names, unchanged (same path, size and mtime), keeps its recorded
    hash instead of being hashed again."""
    record = {"checkpoint": None, "checkpoint_sha256": None, "checkpoint_size": None, "checkpoint_mtime": None,
              "clip": clip, "clip_sha256": None, "clip_size": None, "clip_mtime": None, "source": rec.source,
              "towers": rec.towers.source if rec.towers is not None else None, "head": rec.model.head_type,
              "frames": int(rec.num_frames), "input_size": int(rec.input_size), "embedding_width": embedding_width(rec),
              "prompts": list(prompts or rec.classifier_meta.get("prompts") or _default_prompts())}
    for name, path in (("checkpoint", checkpoint), ("clip", clip)):
        if not path or not os.path.isfile(path):
            continue
        path = os.path.abspath(path)
        size, mtime = file_stat(path)
        k = known or {}
        same = k.get(name) == path and (k.get(f"{name}_size"), k.get(f"{name}_mtime")) == (size, mtime)
        record.update({name: path, f"{name}_size": size, f"{name}_mtime": mtime,
                       f"{name}_sha256": k[f"{name}_sha256"] if same and k.get(f"{name}_sha256") else sha256_file(path)})
    return record


def _default_prompts():
    from .classifiers import DEFAULT_PROMPTS
    return DEFAULT_PROMPTS


IDENTITY = ("checkpoint_sha256", "clip", "head", "frames", "input_size", "embedding_width")


def _identity(record: dict) -> dict:
    """The fields that tell models apart; a local CLIP file is known by its hash, not its path."""
    ident = {k: record.get(k) for k in IDENTITY}
    if record.get("clip_sha256"):
        ident["clip"] = record["clip_sha256"]
    return ident


def check_same_model(recorded: dict, other: dict, where: str) -> None:
    """VideoIndexError when `other` is not the model that built the index at `where`."""
    a, b = _identity(recorded), _identity(other)
    for key in IDENTITY:
        if a[key] != b[key]:
            built = recorded.get("checkpoint") or recorded.get("clip") or recorded.get("source")
            raise VideoIndexError(f"{where} was built with another model ({key} {a[key]} there, {b[key]} here); "
                                  f"use the model that built it ({built})")


# ----------------------------------------------------------------------------- shards

@dataclass
class Plan:
    groups: list[list[tuple[str, int, float]]]   # pending shards: (path, size, mtime) per video
    names: list[str]
    seq: int
    skipped: int


def shard_name(group) -> str:
    return "shard-" + hashlib.sha1(json.dumps(group).encode()).hexdigest()[:20]


def _shard_dir(out: str) -> str:
    return os.path.join(out, SHARDS)


def finished_shards(out: str) -> list[str]:
    """Names of the shards whose Parquet file (written last) and embeddings are both complete."""
    d = _shard_dir(out)
    if not os.path.isdir(d):
        return []
    names = sorted(f[:-len(".parquet")] for f in os.listdir(d) if f.endswith(".parquet"))
    return [n for n in names if os.path.isfile(os.path.join(d, n + ".npy"))]


def read_shard_table(out: str, name: str):
    _, pq = _arrow()
    table = pq.read_table(os.path.join(_shard_dir(out), name + ".parquet"))
    meta = json.loads((table.schema.metadata or {}).get(b"text4vis_shard", b"{}"))
    return table, int(meta.get("seq", 0))


def write_shard(out: str, name: str, rows: list[dict], embeddings: np.ndarray, seq: int, dtype: str) -> None:
    """One shard, atomically: embeddings first, then the Parquet file that marks it finished."""
    pa, pq = _arrow()
    d = _shard_dir(out)
    npy = os.path.join(d, name + ".npy")
    writer = NpyWriter(npy, len(embeddings), embeddings.shape[1], dtype)
    writer.write(embeddings)
    writer.close()
    table = pa.table({c: [r.get(c) for r in rows] for c in COLUMNS}, schema=entry_schema(pa))
    table = table.replace_schema_metadata({"text4vis_shard": json.dumps({"seq": seq, "rows": len(embeddings)})})
    path = os.path.join(d, name + ".parquet")
    tmp = f"{path}.tmp{os.getpid()}"
    pq.write_table(table, tmp)
    _fsync_replace(tmp, path)


def entry_schema(pa, with_row: bool = False):
    fields = [("path", pa.string()), ("size", pa.int64()), ("mtime", pa.float64()), ("start", pa.float64()),
              ("end", pa.float64()), ("duration", pa.float64()), ("status", pa.string()), ("error", pa.string())]
    if with_row:
        fields.append(("row", pa.int64()))
    return pa.schema(fields)


def live_entries(out: str):
    """Every live entry of the finished shards: the newest shard (highest seq) holding each path wins.
    Returns (rows as a list of dicts, sorted by path and start; the shard names). Each row has `_shard`
    (index in the names) and `_local` (row in that shard's embeddings, -1 for a failure)."""
    names = finished_shards(out)
    best: dict[str, tuple[int, str]] = {}
    tables = []
    for si, name in enumerate(names):
        table, seq = read_shard_table(out, name)
        tables.append((si, seq, table))
        for p in set(table.column("path").to_pylist()):
            if p not in best or (seq, name) > best[p]:
                best[p] = (seq, name)
    rows = []
    for si, seq, table in tables:
        local = 0
        for r in table.to_pylist():
            ok = r["status"] == "ok"
            if best[r["path"]] == (seq, names[si]):
                rows.append(dict(r, _shard=si, _local=local if ok else -1))
            local += ok
    rows.sort(key=lambda r: (r["path"], -1.0 if r["start"] is None else r["start"]))
    return rows, names


def make_plan(out: str, videos: list[str], shard_size: int) -> Plan:
    """Which videos still need embedding (not in a finished shard with the same size and mtime), grouped
    into shards of `shard_size` in input order."""
    done: dict[str, tuple[int, tuple]] = {}
    seq = 0
    for name in finished_shards(out):
        table, s = read_shard_table(out, name)
        seq = max(seq, s)
        for p, size, mtime in zip(*(table.column(c).to_pylist() for c in ("path", "size", "mtime"))):
            if p not in done or s > done[p][0]:
                done[p] = (s, (size, mtime))
    pending = []
    for p in videos:
        size, mtime = file_stat(p)
        if p in done and done[p][1] == (size, mtime):
            continue
        pending.append((p, size, mtime))
    groups = [pending[i:i + shard_size] for i in range(0, len(pending), shard_size)]
    return Plan(groups, [shard_name(g) for g in groups], seq + 1, len(videos) - len(pending))


# ----------------------------------------------------------------------------- embedding shards

class _Videos:
    """Dataset of whole videos sampled as `predict --views 1x1`, with each video's duration."""

    def __init__(self, paths: list[str], num_frames: int, input_size: int):
        from .datasets import Sample, TestDataset
        self.paths = paths
        self.ds = TestDataset([Sample(p, -1, None, p) for p in paths], num_frames, input_size, 1, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        index, views, error = self.ds[i]
        return index, views, error, (video_duration(self.paths[i]) if error is None else None)


def _collate(batch):
    import torch
    ok = [b for b in batch if b[1] is not None]
    views = torch.stack([b[1] for b in ok]) if ok else None
    return [b[0] for b in ok], views, [(b[0], b[2]) for b in batch if b[1] is None], {b[0]: b[3] for b in ok}


def video_duration(path: str) -> float | None:
    """Seconds of the default video stream from the container's header (None when it does not say)."""
    try:
        import av

        from .video import _default_stream
        with av.open(path, metadata_errors="ignore") as c:
            s = _default_stream(c)
            if s.duration is not None and s.time_base:
                return round(float(s.duration * s.time_base), 6)
            return round(c.duration / 1e6, 6) if c.duration else None
    except Exception:
        return None


def _error_text(path: str, exc: BaseException) -> str:
    if isinstance(exc, VideoError):
        return first_line(exc)
    return f"{path}: {type(exc).__name__}: {first_line(exc)}"


def embed_video_groups(rec, groups, batch_size: int, workers, on_group, bar=None) -> None:
    """Embed whole videos, shard by shard: `on_group(g, items)` receives, for shard g, one
    (embeddings [n, D] or None, error or None, duration, spans or None) per video, in order.
    Batches never straddle two shards, so a shard's numbers do not depend on its neighbours."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from . import engine
    flat = [p for g in groups for p, _, _ in g]
    if not flat:
        return
    batches, start = [], 0
    for g in groups:
        batches.extend(list(range(i, min(i + batch_size, start + len(g)))) for i in range(start, start + len(g), batch_size))
        start += len(g)
    workers = engine.default_workers(len(flat)) if workers is None else workers
    loader = DataLoader(_Videos(flat, rec.num_frames, rec.input_size), batch_sampler=batches, num_workers=workers,
                        collate_fn=_collate, prefetch_factor=4 if workers else None)
    model = rec.video_backend or rec.model      # ONNX Runtime when runtime='onnx'
    model.eval()
    done: dict[int, tuple] = {}
    gi, pos = 0, 0
    with torch.no_grad():
        for indices, views, failed, durations in loader:
            if views is not None:
                b, v = views.shape[:2]
                with engine.autocast(rec.device, rec.precision):
                    emb = model.embed(views.to(rec.device).flatten(0, 1))
                emb = F.normalize(emb.float().view(b, v, -1).mean(1), dim=-1).cpu().numpy()   # predict's rule
                for i, e in zip(indices, emb):
                    done[i] = (e[None], None, durations[i], None)
            for i, msg in failed:
                done[i] = (None, msg, None, None)
            if bar is not None:
                bar.update(len(indices) + len(failed))
            while gi < len(groups) and all(j in done for j in range(pos, pos + len(groups[gi]))):
                on_group(gi, [done.pop(j) for j in range(pos, pos + len(groups[gi]))])
                pos += len(groups[gi])
                gi += 1


def embed_window_groups(rec, groups, window: float, stride: float, batch_size: int, on_group, bar=None) -> None:
    """Embed the time windows of each video (`timeline.embed_windows`, as `text4vis timeline` windows
    them), shard by shard. A stream that breaks off part-way keeps the windows before the break and
    is recorded as failed too (its one-line error)."""
    from .timeline import embed_windows
    for gi, g in enumerate(groups):
        items = []
        for p, _, _ in g:
            try:
                r = embed_windows(rec, p, window, stride, batch_size=batch_size)
                emb = np.stack([w["embedding"] for w in r["windows"]]).astype(np.float32)
                items.append((emb, r.get("error"), r["duration"], [(w["start"], w["end"]) for w in r["windows"]]))
            except UsageError:
                raise
            except Exception as exc:  # one video never stops the build
                items.append((None, _error_text(p, exc), None, None))
            if bar is not None:
                bar.update(1)
        on_group(gi, items)


def shard_rows(group, items, dim: int) -> tuple[list[dict], np.ndarray]:
    """Metadata rows and embeddings of one shard: a row per embedded entry, and a row with status
    "error" for a video that failed (or broke off part-way)."""
    rows, embs = [], []
    for (path, size, mtime), (emb, error, duration, spans) in zip(group, items):
        base = {"path": path, "size": size, "mtime": mtime, "duration": duration}
        for k, e in enumerate(emb if emb is not None else []):
            start, end = spans[k] if spans else (None, None)
            rows.append(dict(base, start=start, end=end, status="ok", error=None))
            embs.append(e)
        if error is not None:
            rows.append(dict(base, start=None, end=None, status="error", error=error))
    return rows, (np.stack(embs).astype(np.float32) if embs else np.zeros((0, dim), np.float32))


# ----------------------------------------------------------------------------- the vector index (FAISS)

def default_nlist(n: int) -> int:
    """IVF cells: about sqrt(N), with at least 39 training vectors per cell (FAISS's rule)."""
    return max(1, min(int(n ** 0.5), n // 39))


def default_nprobe(nlist: int) -> int:
    return max(1, min(nlist, max(8, nlist // 64)))


def resolve_kind(kind: str, n: int, exact_below: int) -> str:
    if kind == "auto":
        return "flat" if n < exact_below else "ivf-sq8"
    return kind


def _sample_rows(reader: RowReader, size: int, seed: int) -> np.ndarray:
    """`size` rows chosen at random (seeded), read chunk by chunk."""
    n = len(reader)
    if size >= n:
        return np.concatenate([c for _, c in reader.chunks()]) if n else np.zeros((0, reader.dim), np.float32)
    pick = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
    parts = []
    for start, chunk in reader.chunks():
        sel = pick[(pick >= start) & (pick < start + len(chunk))] - start
        parts.append(chunk[sel])
    return np.concatenate(parts)


def build_vector_index(reader: RowReader, kind: str = "auto", exact_below: int = EXACT_BELOW,
                       nlist: int | None = None, nprobe: int | None = None, seed: int = 0):
    """A FAISS inner-product index over the rows of `reader` (L2-normalised embeddings): exact (flat)
    below `exact_below` rows, else IVF with 8-bit scalar-quantised vectors (ivf-sq8) or product codes
    (ivf-pq). Returns (index, settings)."""
    faiss = _faiss()
    n, dim = len(reader), reader.dim
    kind = resolve_kind(kind, n, exact_below)
    if kind == "flat" or n == 0:
        index = faiss.IndexFlatIP(dim)
        settings = {"type": "flat"}
    else:
        nlist = max(1, min(int(nlist or default_nlist(n)), n))
        quantizer = faiss.IndexFlatIP(dim)
        if kind == "ivf-sq8":
            index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                                  faiss.METRIC_INNER_PRODUCT)
            train = min(n, max(40 * nlist, 20000))
        elif kind == "ivf-pq":
            m = next(m for m in (dim // 8, dim // 4, dim // 2, dim, 1) if m >= 1 and dim % m == 0)
            bits = max(1, min(8, int(np.log2(max(2, n // 39)))))
            index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, bits, faiss.METRIC_INNER_PRODUCT)
            train = min(n, max(40 * nlist, 64 * 2 ** bits, 20000))
        else:
            raise UsageError(f"vector_index={kind!r}: choose one of {', '.join(VECTOR_INDEXES)}")
        index.cp.spherical = True          # centroids on the unit sphere, as the vectors
        index.cp.seed = seed
        index.train(_sample_rows(reader, train, seed))
        settings = {"type": kind, "nlist": nlist, "nprobe": int(nprobe or default_nprobe(nlist)), "rerank": RERANK}
    for _, chunk in reader.chunks():
        index.add(chunk)
    return index, settings


def read_vector_index(path: str):
    """The FAISS index at `path`, memory-mapped (its vectors or codes stay on disk until touched)."""
    faiss = _faiss()
    for flag in (faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY, 0):
        try:
            return faiss.read_index(path, flag)
        except RuntimeError:
            if flag == 0:
                raise
    raise AssertionError("unreachable")


def search_vectors(index, reader: RowReader, queries: np.ndarray, k: int, settings: dict,
                   nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k rows by inner product for each query [q, D]: (scores [q, k], rows [q, k], -1 past the end).
    A compressed index proposes k x rerank candidates that are re-scored with the stored embeddings,
    so the scores returned are exact cosines. One query runs on one thread (it scans a few cells or a
    small matrix: more threads would mostly wait for each other, worst on a busy machine)."""
    faiss = _faiss()
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    k = max(1, min(int(k), max(1, index.ntotal)))
    threads = faiss.omp_get_max_threads()
    if len(queries) == 1:
        faiss.omp_set_num_threads(1)
    try:
        if settings.get("type", "flat") == "flat":
            return index.search(queries, k)
        ivf = faiss.extract_index_ivf(index)
        ivf.nprobe = int(nprobe or settings.get("nprobe") or default_nprobe(ivf.nlist))
        _, cand = index.search(queries, min(index.ntotal, k * int(settings.get("rerank", RERANK))))
    finally:
        faiss.omp_set_num_threads(threads)
    scores = np.full((len(queries), k), -np.inf, np.float32)
    rows = np.full((len(queries), k), -1, np.int64)
    for q, ids in enumerate(cand):
        ids = np.sort(ids[ids >= 0])
        exact = reader.take(ids) @ queries[q]
        best = np.argsort(-exact, kind="stable")[:k]
        scores[q, :len(best)], rows[q, :len(best)] = exact[best], ids[best]
    return scores, rows


# ----------------------------------------------------------------------------- merging shards

def merge(out: str, info: dict) -> dict:
    """Rank 0, at the end of a build: the live entries of all shards -> merged-<token>/ (entries.parquet,
    vectors.npy, vectors.faiss); index.json then points at it (atomically) and older merged folders go."""
    pa, pq = _arrow()
    faiss = _faiss()
    rows, names = live_entries(out)
    dim, dtype, vi = info["model"]["embedding_width"], info["dtype"], info["vector_index"]
    token = hashlib.sha1(json.dumps([names, dtype, vi], sort_keys=True).encode()).hexdigest()[:16]
    folder = f"merged-{token}"
    tmp = os.path.join(out, f"{folder}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    ok = [r for r in rows if r["status"] == "ok"]
    writer = NpyWriter(os.path.join(tmp, VECTORS), len(ok), dim, dtype)
    for start in range(0, len(ok), 65536):
        chunk = ok[start:start + 65536]
        cache: dict[int, np.ndarray] = {}
        for r in chunk:
            if r["_shard"] not in cache:
                rd = RowReader(os.path.join(_shard_dir(out), names[r["_shard"]] + ".npy"))
                cache[r["_shard"]] = rd.read(0, len(rd))
                rd.close()
        writer.write(np.stack([cache[r["_shard"]][r["_local"]] for r in chunk]))
    writer.close()
    row = 0
    for r in rows:
        r["row"] = row if r["status"] == "ok" else -1
        row += r["status"] == "ok"
    table = pa.table({c: [r[c] for r in rows] for c in (*COLUMNS, "row")}, schema=entry_schema(pa, True))
    pq.write_table(table, os.path.join(tmp, ENTRIES))
    reader = RowReader(os.path.join(tmp, VECTORS))
    index, settings = build_vector_index(reader, vi["type"], vi["exact_below"], vi.get("nlist"), vi.get("nprobe"))
    reader.close()
    faiss.write_index(index, os.path.join(tmp, FAISS_FILE))
    del index
    final = os.path.join(out, folder)
    if os.path.isdir(final):
        shutil.rmtree(final)
    os.replace(tmp, final)
    videos = {r["path"] for r in rows}
    failed = [r for r in rows if r["status"] != "ok"]
    current = {"folder": folder, "entries": len(rows), "embedded": len(ok), "videos": len(videos),
               "failed": len(failed), "vector_index": settings, "shards": len(names)}
    info = dict(info, current=current)
    _write_json(os.path.join(out, INDEX_JSON), info)
    for f in os.listdir(out):
        if f.startswith("merged-") and f != folder:
            shutil.rmtree(os.path.join(out, f), ignore_errors=True)
    return current


# ----------------------------------------------------------------------------- building

class BuildLock:
    """An exclusive fcntl.flock on DIR/.lock: a second process building into DIR is refused, and the
    lock goes with the process that holds it (a killed build leaves no stale lock)."""

    def __init__(self, out: str):
        import fcntl
        self.path = os.path.join(out, LOCK)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            raise VideoIndexError(f"{out}: another process (pid {holder}) is building into this index now; "
                                  f"wait for it to finish, or build into another folder") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)   # closing the descriptor drops the flock
            self.fd = None


def read_info(directory: str) -> dict:
    """index.json of an index folder; VideoIndexError for a folder that is not a text4vis index."""
    path = os.path.join(directory, INDEX_JSON)
    if not os.path.isdir(directory):
        raise VideoIndexError(f"{directory}: no such index folder")
    if not os.path.isfile(path):
        raise VideoIndexError(f"{directory}: not a text4vis index (no {INDEX_JSON})")
    try:
        with open(path) as f:
            info = json.load(f)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise VideoIndexError(f"{path}: damaged index description ({first_line(exc)})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise VideoIndexError(f"{directory}: not a text4vis index ({INDEX_JSON} is another program's file)")
    if info.get("version") != VERSION:
        raise VideoIndexError(f"{directory}: index format version {info.get('version')}, this text4vis reads {VERSION}")
    return info


def _prepare_dir(out: str) -> dict | None:
    """The existing index at `out` (None for a new or empty folder); refuses other folders."""
    if os.path.lexists(out) and not os.path.isdir(out):
        raise VideoIndexError(f"out={out}: exists and is not a folder")
    if not os.path.isdir(out):
        os.makedirs(out, exist_ok=True)
        return None
    if os.path.isfile(os.path.join(out, INDEX_JSON)):
        return read_info(out)
    if set(os.listdir(out)) - {LOCK, SHARDS}:
        raise VideoIndexError(f"out={out}: a folder that holds other files and no text4vis index; "
                              f"build into a new or empty folder")
    return None


def _check_settings(old: dict, new: dict, out: str) -> None:
    check_same_model(old["model"], new["model"], out)
    for key, what in (("entries", "entries (window=, stride=)"), ("dtype", "dtype=")):
        if old.get(key) != new.get(key):
            raise VideoIndexError(f"{out}: was built with {what} {old.get(key)}, not {new.get(key)}; "
                                  f"build into another folder for other settings")


def _dist_setup() -> tuple[int, int, object]:
    """Under torchrun: a gloo group for the few messages of a build (the model itself needs none)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, None
    import datetime

    import torch.distributed as dist
    if not dist.is_initialized():
        # ranks wait for each other only at the end; a rank with slower shards must not time the others out
        dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
        group = dist.group.WORLD
        own = True
    else:
        group = dist.new_group(backend="gloo", timeout=datetime.timedelta(days=7))
        own = False
    return dist.get_rank(), dist.get_world_size(), (group, own)


def _broadcast(obj, group):
    if group is None:
        return obj
    import torch.distributed as dist
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=group[0])
    return box[0]


def check_build_args(shard_size, batch_size, workers, dtype, vector_index, exact_below, nlist, nprobe,
                     window, stride) -> tuple[float | None, float | None]:
    for name, value, least in (("shard_size", shard_size, 1), ("batch_size", batch_size, 1),
                               ("workers", workers, 0), ("exact_below", exact_below, 0), ("nlist", nlist, 1),
                               ("nprobe", nprobe, 1)):
        if value is not None and not (isinstance(value, int) and value >= least):
            raise UsageError(f"{name}= must be a whole number of at least {least} (got {value!r})")
    if dtype not in DTYPES:
        raise UsageError(f"dtype={dtype!r}: choose one of {', '.join(DTYPES)}")
    if vector_index not in VECTOR_INDEXES:
        raise UsageError(f"vector_index={vector_index!r}: choose one of {', '.join(VECTOR_INDEXES)}")
    if window is None:
        if stride is not None:
            raise UsageError("stride= needs window= (the window length in seconds)")
        return None, None
    stride = window if stride is None else stride
    from .sampling import window_spans
    try:
        window_spans(1.0, float(window), float(stride))
    except (TypeError, ValueError):
        raise UsageError(f"window= and stride= must be positive seconds (got {window!r}, {stride!r})") from None
    return float(window), float(stride)


def build_index(inputs, out: str, *, checkpoint=None, clip=None, frames=None, prompts=None, device="auto",
                precision="auto", window=None, stride=None, shard_size=DEFAULT_SHARD_SIZE, batch_size=8,
                workers=None, dtype="float32", vector_index="auto", exact_below=EXACT_BELOW, nlist=None,
                nprobe=None, progress=False, runtime="torch") -> dict:
    """Embed `inputs` (video files, folders, list files) into the index folder `out`; see VideoIndex.build.
    runtime='onnx': the videos are embedded on ONNX Runtime (the index records the model, not the runtime)."""
    window, stride = check_build_args(shard_size, batch_size, workers, dtype, vector_index, exact_below, nlist,
                                      nprobe, window, stride)
    checkpoint = _local_checkpoint(checkpoint)
    out = os.path.abspath(out)
    rank, world, group = _dist_setup()
    lock = None
    try:
        setup = None
        if rank == 0:
            try:
                lock, setup = _setup_build(inputs, out, checkpoint, clip, frames, prompts, device, precision,
                                           window, stride, shard_size, dtype, vector_index, exact_below, nlist, nprobe,
                                           runtime)
            except Exception as exc:
                _broadcast(("error", type(exc).__name__, str(exc)), group)
                raise
            rec = setup.pop("rec")
            _broadcast(("ok", setup), group)
        else:
            msg = _broadcast(None, group)
            if msg[0] == "error":
                raise VideoIndexError(f"rank 0 stopped the build: {msg[2]}")
            setup = msg[1]
            rec = load_model(checkpoint, clip, frames, device, precision, runtime=runtime)
        plan: Plan = setup["plan"]
        mine = [g for g in range(len(plan.groups)) if g % world == rank]
        groups = [plan.groups[g] for g in mine]
        dim = setup["info"]["model"]["embedding_width"]

        def on_group(k: int, items) -> None:
            rows, emb = shard_rows(groups[k], items, dim)
            write_shard(out, plan.names[mine[k]], rows, emb, plan.seq, dtype)

        bar = None
        if progress and rank == 0:
            from tqdm import tqdm
            bar = tqdm(total=sum(len(g) for g in groups), desc="index", unit="video", leave=False)
        if window is None:
            embed_video_groups(rec, groups, batch_size, workers, on_group, bar)
        else:
            embed_window_groups(rec, groups, window, stride, batch_size, on_group, bar)
        if bar is not None:
            bar.close()
        if group is not None:
            import torch.distributed as dist
            dist.barrier(group=group[0])          # every rank's shards are written
        report = None
        if rank == 0:
            current = merge(out, setup["info"])
            report = _report(out, setup, plan, current)
        return _broadcast(report, group)
    finally:
        if lock is not None:
            lock.release()
        if group is not None and group[1]:
            import torch.distributed as dist
            dist.destroy_process_group()


def _setup_build(inputs, out, checkpoint, clip, frames, prompts, device, precision, window, stride, shard_size,
                 dtype, vector_index, exact_below, nlist, nprobe, runtime="torch"):
    _arrow()
    _faiss()
    old = _prepare_dir(out)
    lock = BuildLock(out)
    try:
        os.makedirs(_shard_dir(out), exist_ok=True)
        for f in os.listdir(_shard_dir(out)):           # what a killed build was writing
            if ".tmp" in f:
                os.remove(os.path.join(_shard_dir(out), f))
        for f in os.listdir(out):
            if f.startswith("merged-") and ".tmp" in f:
                shutil.rmtree(os.path.join(out, f), ignore_errors=True)
        videos, empty = expand_inputs(inputs)
        if not videos:
            raise UsageError(f"no videos found in {' '.join(map(str, [inputs] if isinstance(inputs, str) else inputs))}")
        rec = load_model(checkpoint, clip, frames, device, precision, runtime=runtime)
        info = {"format": FORMAT, "version": VERSION, "model": model_record(rec, checkpoint, clip, prompts,
                                                                known=old["model"] if old else None),
                "entries": {"window": window, "stride": stride}, "dtype": dtype,
                "vector_index": {"type": vector_index, "exact_below": exact_below, "nlist": nlist, "nprobe": nprobe}}
        if old is not None:
            _check_settings(old, info, out)
            info["current"] = old.get("current")
        _write_json(os.path.join(out, INDEX_JSON), info)
        plan = make_plan(out, videos, shard_size)
    except BaseException:
        lock.release()
        raise
    return lock, {"info": info, "plan": plan, "videos": videos, "empty": empty, "rec": rec}


def _report(out: str, setup: dict, plan: Plan, current: dict) -> dict:
    """What a build did, and which of its inputs are recorded as failed (now or by an earlier build)."""
    _, pq = _arrow()
    table = pq.read_table(os.path.join(out, current["folder"], ENTRIES), columns=["path", "status", "error"])
    wanted = set(setup["videos"])
    failed = [{"video": p, "error": e} for p, s, e in zip(*(table.column(c).to_pylist() for c in ("path", "status", "error")))
              if s != "ok" and p in wanted]
    return {"out": out, "videos": len(setup["videos"]), "embedded_now": sum(len(g) for g in plan.groups),
            "already_indexed": plan.skipped, "failed": failed, "empty_folders": setup["empty"],
            "index": current}


# ----------------------------------------------------------------------------- opening and searching

class VideoIndex:
    """A built video index, opened for search and tagging (the FAISS index memory-mapped).

        idx = VideoIndex.open("my-index")
        idx.search("someone flipping a pancake", k=10)    # {"query", "results": [{"video", "start", "end", "score"}]}
        idx.like("clip.mp4", k=10)                        # videos like this one
        idx.tag(["juggling", "cooking"], topk=1)          # [{"video", "top": [{"label", "score"}]}, ...]

    The model that built the index is loaded on first need (text queries, `like`, `tag`); `checkpoint=` /
    `clip=` point at it when its file moved; another model is a VideoIndexError.
    """

    def __init__(self, directory: str, info: dict, checkpoint=None, clip=None, device="auto", precision="auto",
                 nprobe=None):
        _, pq = _arrow()
        self.directory, self.info = directory, info
        current = info.get("current")
        if not current:
            raise VideoIndexError(f"{directory}: no finished build yet (a build was interrupted or is running); "
                                  f"build it again to finish it")
        folder = os.path.join(directory, current["folder"])
        try:
            self.entries = pq.read_table(os.path.join(folder, ENTRIES))
            self.vectors = RowReader(os.path.join(folder, VECTORS))
            self.index = read_vector_index(os.path.join(folder, FAISS_FILE))
        except (OSError, RuntimeError, ValueError) as exc:
            raise VideoIndexError(f"{directory}: damaged index ({first_line(exc)})") from None
        self.ok = self.entries.filter(self._status_ok()).sort_by("row")
        if not (len(self.ok) == len(self.vectors) == self.index.ntotal == current["embedded"]):
            raise VideoIndexError(f"{directory}: damaged index ({len(self.ok)} entries, {len(self.vectors)} "
                                  f"embeddings, {self.index.ntotal} indexed vectors)")
        self.settings = current["vector_index"]
        self.nprobe = nprobe
        self._overrides = {"checkpoint": _local_checkpoint(checkpoint), "clip": clip, "device": device, "precision": precision}
        self._model = None

    def _status_ok(self):
        import pyarrow.compute as pc
        return pc.equal(self.entries.column("status"), "ok")

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def open(cls, directory: str, *, checkpoint: str | None = None, clip: str | None = None, device: str = "auto",
             precision: str = "auto", nprobe: int | None = None) -> "VideoIndex":
        return cls(directory, read_info(directory), checkpoint, clip, device, precision, nprobe)

    @classmethod
    def build(cls, inputs, out: str, **options) -> "VideoIndex":
        """Embed `inputs` (video files, folders searched recursively, list files: one path per line or a
        CSV with a `path` column) into the index folder `out`, then open it. Options: the model
        (checkpoint=, clip=, frames=, prompts=, device=, precision=), window= / stride= (seconds: one
        entry per time window instead of per video), shard_size=, batch_size=, workers=, dtype=
        (float32 or float16 embeddings), vector_index= (auto, flat, ivf-sq8, ivf-pq), exact_below=,
        nlist=, nprobe=, progress=, runtime= (torch or onnx). Resumable and incremental (see the module
        docstring); under torchrun every rank calls it. `.build_report` says what was embedded and what failed."""
        report = build_index(inputs, out, **options)
        opened = cls.open(out, checkpoint=options.get("checkpoint"), clip=options.get("clip"),
                          device=options.get("device", "auto"), precision=options.get("precision", "auto"))
        opened.build_report = report
        return opened

    def __len__(self) -> int:
        return len(self.ok)

    def close(self) -> None:
        self.vectors.close()

    # -- the model ---------------------------------------------------------------------------------
    def _model_args(self) -> dict:
        m, o = self.info["model"], self._overrides
        checkpoint, clip = o["checkpoint"] or m.get("checkpoint"), o["clip"] or m.get("clip")
        for name, path, given in (("checkpoint", checkpoint, o["checkpoint"]), ("clip", clip, o["clip"])):
            if path and (m.get(f"{name}_sha256") or given) and not os.path.isfile(path):
                raise VideoIndexError(f"{self.directory}: the {name} that built it, {path}, is not there; pass "
                                      f"{name}= with its new location")
        return {"checkpoint": checkpoint, "clip": clip, "frames": m["frames"], "device": o["device"],
                "precision": o["precision"]}

    def _check_model(self, rec, args: dict) -> None:
        m = self.info["model"]
        check_same_model(m, model_record(rec, args["checkpoint"], args["clip"], m["prompts"], known=m), self.directory)

    @property
    def model(self):
        """The Recognizer that built the index (loaded once)."""
        if self._model is None:
            args = self._model_args()
            rec = load_model(**args)
            self._check_model(rec, args)
            self._model = rec
        return self._model

    def embed_text(self, text: str, prompts=None) -> np.ndarray:
        """A sentence's embedding: the model's text tower on each prompt template, averaged, normalised."""
        import torch
        rec = self.model
        if rec.towers is None:
            raise VideoIndexError(f"{self.directory}: the model that built it has no text tower for text queries; "
                                  f"pass clip= for one, or search with a video")
        from .classifiers import check_prompts
        prompts = check_prompts(prompts or self.info["model"]["prompts"])
        with torch.no_grad():
            emb = rec.towers.encode_text([p.format(text) for p in prompts]).float().mean(0)
        return (emb / emb.norm().clamp_min(1e-12)).cpu().numpy()

    def embed_video(self, path: str) -> np.ndarray:
        """A video's embedding, sampled as `predict --views 1x1` (VideoError if it does not decode)."""
        rec = self.model
        items = []
        embed_video_groups(rec, [[(os.path.abspath(path), 0, 0.0)]], 1, 0, lambda g, it: items.extend(it))
        emb, error, _, _ = items[0]
        if emb is None:
            raise VideoError(error)
        return emb[0]

    # -- search and tag ----------------------------------------------------------------------------------
    def search(self, query, k: int = 10, prompts=None, nprobe: int | None = None) -> dict:
        """The k entries closest to `query` (a sentence, or an embedding), best first:
        {"query", "results": [{"video", "start", "end", "score"}]} with score = cosine similarity."""
        if isinstance(query, str):
            vec, shown = self.embed_text(query, prompts), query
        else:
            vec, shown = np.asarray(getattr(query, "detach", lambda: query)(), dtype=np.float32).reshape(-1), None
        return self._results(vec, k, shown, nprobe)

    def like(self, video: str, k: int = 10, nprobe: int | None = None) -> dict:
        """The k entries closest to a video (embedded with the index's model), best first."""
        return self._results(self.embed_video(video), k, video, nprobe)

    def _results(self, vec: np.ndarray, k: int, shown, nprobe) -> dict:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise UsageError(f"k= must be a whole number of at least 1 (got {k!r})")
        dim = self.info["model"]["embedding_width"]
        if vec.shape != (dim,) or not np.all(np.isfinite(vec)):
            raise VideoIndexError(f"{self.directory}: a query embedding must be {dim} finite numbers "
                                  f"(got shape {tuple(vec.shape)})")
        vec = vec / max(float(np.linalg.norm(vec)), 1e-12)
        if len(self) == 0:
            return {"query": shown, "results": []}
        scores, rows = search_vectors(self.index, self.vectors, vec[None], k, self.settings, nprobe or self.nprobe)
        keep = rows[0] >= 0
        hits = self.ok.take(rows[0][keep]).select(["path", "start", "end"]).to_pylist()
        return {"query": shown, "results": [{"video": h["path"], "start": h["start"], "end": h["end"],
                                             "score": round(float(s), 6)} for h, s in zip(hits, scores[0][keep])]}

    def iter_tags(self, labels=None, topk: int = 5, prompts=None, classifier: str | None = None, chunk: int = 65536):
        """Top-k labels of every indexed entry from the stored embeddings alone, in index order: the
        numbers `predict --views 1x1` gives for the same model, labels and prompts. Yields
        {"video", "top": [{"label", "score"}]} (plus "start", "end" for window entries)."""
        import torch

        from .api import load
        from .engine import scores_from_embeddings
        args = self._model_args()
        rec = load(checkpoint=args["checkpoint"], clip=args["clip"], labels=labels, prompts=prompts,
                   classifier=classifier, frames=args["frames"], device=args["device"], precision=args["precision"])
        self._check_model(rec, args)
        weight = rec.model.classifier.detach().float().cpu()
        k = min(int(topk), len(rec.labels))
        windowed = self.info["entries"].get("window") is not None
        paths = self.ok.column("path").to_pylist()
        starts, ends = self.ok.column("start").to_pylist(), self.ok.column("end").to_pylist()
        for start, emb in self.vectors.chunks(chunk):
            top = torch.topk(scores_from_embeddings(torch.from_numpy(emb), weight), k)
            for j, (vals, ids) in enumerate(zip(top.values.tolist(), top.indices.tolist())):
                r = {"video": paths[start + j]}
                if windowed:
                    r.update(start=starts[start + j], end=ends[start + j])
                r["top"] = [{"label": rec.labels[i], "score": round(float(v), 6)} for v, i in zip(vals, ids)]
                yield r

    def tag(self, labels=None, topk: int = 5, prompts=None, classifier: str | None = None) -> list[dict]:
        """`iter_tags` as a list."""
        return list(self.iter_tags(labels, topk, prompts, classifier))

    # -- what is in it -----------------------------------------------------------------------------------
    def failures(self) -> list[dict]:
        import pyarrow.compute as pc
        bad = self.entries.filter(pc.invert(self._status_ok())).select(["path", "error"]).to_pylist()
        return [{"video": r["path"], "error": r["error"]} for r in bad]

    def summary(self) -> dict:
        """Counts, model, settings and failures (what `text4vis index info` shows)."""
        current = self.info["current"]
        size = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(self.directory)
                   for f in files)
        return {"index": self.directory, "videos": current["videos"], "entries": current["entries"],
                "embedded": current["embedded"], "failed": current["failed"], "shards": current["shards"],
                "entries_per": "window" if self.info["entries"].get("window") is not None else "video",
                "window": self.info["entries"].get("window"), "stride": self.info["entries"].get("stride"),
                "dtype": self.info["dtype"], "vector_index": current["vector_index"], "model": self.info["model"],
                "disk_bytes": size, "failures": self.failures()}


# ----------------------------------------------------------------------------- benchmark

def synthetic_vectors(n: int, dim: int, centres: np.ndarray, seed: int, cos: float = 0.7, chunk: int = 16384):
    """Chunks of n unit vectors clustered like real embeddings: a random centre plus noise, cosine to
    the centre about `cos`. The same (n, seed) gives the same vectors, chunk by chunk."""
    for start in range(0, n, chunk):
        rng = np.random.default_rng([seed, start])
        m = min(chunk, n - start)
        noise = rng.standard_normal((m, dim)).astype(np.float32)
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        x = cos * centres[rng.integers(0, len(centres), m)] + np.sqrt(1 - cos * cos) * noise
        yield start, x / np.linalg.norm(x, axis=1, keepdims=True)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_index(n: int, dim: int = 512, queries: int = 1000, k: int = 10, kind: str = "auto",
                exact_below: int = EXACT_BELOW, nlist: int | None = None, nprobe: int | None = None,
                dtype: str = "float32", recall_queries: int = 200, clusters: int = 1000, seed: int = 0) -> dict:
    """`text4vis bench --index N`: build the vector index of N synthetic embeddings (written and read
    in chunks, as `index build` does), reopen it memory-mapped, time one query at a time, and measure
    recall@k against exact search computed chunk by chunk over the same vectors. Search times are
    wall clock and, as `search_cpu_*`, the CPU time of the searching thread (what the query costs
    without other work competing for the cores); `load_average` is the machine's 1/5/15-minute load
    before and after."""
    if n < 1 or dim < 2:
        raise UsageError(f"the index benchmark needs n >= 1 and dim >= 2 (got n={n}, dim={dim})")
    faiss = _faiss()
    load = list(os.getloadavg())          # other work on the machine stretches every wall-clock figure
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    qs = next(synthetic_vectors(queries, dim, centres, seed + 1, chunk=queries))[1].astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="text4vis-bench-index-") as tmp:
        t0 = time.perf_counter()
        writer = NpyWriter(os.path.join(tmp, VECTORS), n, dim, dtype)
        for _, chunk in synthetic_vectors(n, dim, centres, seed):
            writer.write(chunk)
        writer.close()
        reader = RowReader(os.path.join(tmp, VECTORS))
        index, settings = build_vector_index(reader, kind, exact_below, nlist, nprobe, seed)
        faiss.write_index(index, os.path.join(tmp, FAISS_FILE))
        build_s = time.perf_counter() - t0
        del index
        index = read_vector_index(os.path.join(tmp, FAISS_FILE))
        for q in qs[:20]:                                        # warm-up
            search_vectors(index, reader, q[None], k, settings)
        times, cpu, found = [], [], []
        for q in qs:
            t, c = time.perf_counter(), time.thread_time()
            found.append(search_vectors(index, reader, q[None], k, settings)[1][0])
            times.append((time.perf_counter() - t) * 1000)
            cpu.append((time.thread_time() - c) * 1000)
        # exact top-k of the first recall_queries queries, chunk by chunk, on the stored vectors
        rq = qs[:recall_queries]
        best_s = np.full((len(rq), k), -np.inf, np.float32)
        best_i = np.full((len(rq), k), -1, np.int64)
        for start, chunk in reader.chunks():
            s = rq @ chunk.T
            cat_s = np.concatenate([best_s, s], 1)
            cat_i = np.concatenate([best_i, np.broadcast_to(np.arange(start, start + len(chunk)), s.shape)], 1)
            top = np.argpartition(-cat_s, k - 1, axis=1)[:, :k] if cat_s.shape[1] > k else np.argsort(-cat_s, 1)
            best_s = np.take_along_axis(cat_s, top, 1)
            best_i = np.take_along_axis(cat_i, top, 1)
        kk = min(k, n)
        recall = np.mean([len(set(found[q][:kk].tolist()) & set(best_i[q][:kk].tolist())) / kk
                          for q in range(len(rq))])
        reader.close()
        load += list(os.getloadavg())
        disk = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp))
    return {"n": n, "dim": dim, "vector_index": settings, "dtype": dtype, "build_s": round(build_s, 3),
            "search_p50_ms": round(float(np.percentile(times, 50)), 3),
            "search_p99_ms": round(float(np.percentile(times, 99)), 3),
            "search_cpu_p50_ms": round(float(np.percentile(cpu, 50)), 3),
            "search_cpu_p99_ms": round(float(np.percentile(cpu, 99)), 3), "k": k, "queries": len(qs),
            "recall_at_10" if k == 10 else f"recall_at_{k}": round(float(recall), 4), "recall_queries": len(rq),
            "rss_mb": round(_peak_rss_mb(), 1), "disk_mb": round(disk / 2 ** 20, 1),
            "faiss_threads": faiss.omp_get_max_threads(), "load_average": [round(x, 2) for x in load],
            "cpus": os.cpu_count()}


def write_tags(records, path: str) -> int:
    """Tag records (from VideoIndex.iter_tags) -> a Parquet file: video, start, end, labels, scores."""
    pa, pq = _arrow()
    schema = pa.schema([("video", pa.string()), ("start", pa.float64()), ("end", pa.float64()),
                        ("labels", pa.list_(pa.string())), ("scores", pa.list_(pa.float64()))])
    tmp = f"{path}.tmp{os.getpid()}"
    n = 0
    writer = pq.ParquetWriter(tmp, schema)
    try:
        batch = []
        for r in records:
            batch.append({"video": r["video"], "start": r.get("start"), "end": r.get("end"),
                          "labels": [t["label"] for t in r["top"]], "scores": [t["score"] for t in r["top"]]})
            if len(batch) == 65536:
                writer.write_table(pa.Table.from_pylist(batch, schema))
                n, batch = n + len(batch), []
        if batch or n == 0:
            writer.write_table(pa.Table.from_pylist(batch, schema))
            n += len(batch)
        writer.close()
        os.replace(tmp, path)
    except BaseException:
        writer.close()
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return n
