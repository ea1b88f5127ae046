"""The files of an index folder: index.json, the shards (embeddings .npy + Parquet rows), the merged
tables, and the tag Parquet file. Everything is written atomically (temporary file, fsync, rename)."""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from ..errors import VideoIndexError, first_line

FORMAT = "text4vis-index"
VERSION = 1
INDEX_JSON = "index.json"
SHARDS = "shards"
LOCK = ".lock"
ENTRIES = "entries.parquet"
VECTORS = "vectors.npy"
FAISS_FILE = "vectors.faiss"
DTYPES = ("float32", "float16")
COLUMNS = ("path", "size", "mtime", "start", "end", "duration", "status", "error")


def require_arrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise VideoIndexError("the video index needs pyarrow: pip install 'text4vis[index]'") from None
    return pa, pq


# ----------------------------------------------------------------------------- small file helpers

def fsync_replace(tmp: str, path: str) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: str, obj: dict) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True, allow_nan=False)   # standard JSON only
    fsync_replace(tmp, path)


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
        fsync_replace(self.tmp, self.path)


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


# ----------------------------------------------------------------------------- shards

def shard_name(group) -> str:
    return "shard-" + hashlib.sha1(json.dumps(group).encode()).hexdigest()[:20]


def shard_dir(out: str) -> str:
    return os.path.join(out, SHARDS)


def finished_shards(out: str) -> list[str]:
    """Names of the shards whose Parquet file (written last) and embeddings are both complete."""
    d = shard_dir(out)
    if not os.path.isdir(d):
        return []
    names = sorted(f[:-len(".parquet")] for f in os.listdir(d) if f.endswith(".parquet"))
    return [n for n in names if os.path.isfile(os.path.join(d, n + ".npy"))]


def read_shard_table(out: str, name: str):
    _, pq = require_arrow()
    table = pq.read_table(os.path.join(shard_dir(out), name + ".parquet"))
    meta = json.loads((table.schema.metadata or {}).get(b"text4vis_shard", b"{}"))
    return table, int(meta.get("seq", 0))


def write_shard(out: str, name: str, rows: list[dict], embeddings: np.ndarray, seq: int, dtype: str) -> None:
    """One shard, atomically: embeddings first, then the Parquet file that marks it finished."""
    pa, pq = require_arrow()
    d = shard_dir(out)
    npy = os.path.join(d, name + ".npy")
    writer = NpyWriter(npy, len(embeddings), embeddings.shape[1], dtype)
    writer.write(embeddings)
    writer.close()
    table = pa.table({c: [r.get(c) for r in rows] for c in COLUMNS}, schema=entry_schema(pa))
    table = table.replace_schema_metadata({"text4vis_shard": json.dumps({"seq": seq, "rows": len(embeddings)})})
    path = os.path.join(d, name + ".parquet")
    tmp = f"{path}.tmp{os.getpid()}"
    pq.write_table(table, tmp)
    fsync_replace(tmp, path)


# ----------------------------------------------------------------------------- videos in flight (crash record)

INFLIGHT = ".inflight-"   # shards/.inflight-<rank>.json: the video a build process is embedding in-process now


def take_inflight(out: str) -> dict[tuple, int]:
    """Before a build embeds anything (under the lock, so their writers are gone): the videos that earlier
    build processes were embedding in-process when they died (SIGKILL, the OOM killer, a native crash),
    as (path, size, mtime) -> how many builds died on it in a row. The records are removed."""
    d, died = shard_dir(out), {}
    if not os.path.isdir(d):
        return died
    for f in os.listdir(d):
        if f.startswith(INFLIGHT) and f.endswith(".json"):
            try:
                with open(os.path.join(d, f)) as fh:
                    for v in json.load(fh)["videos"]:
                        died[(v["video"], v["size"], v["mtime"])] = int(v["deaths"]) + 1
            except (OSError, ValueError, KeyError, TypeError):
                pass
            os.remove(os.path.join(d, f))
    return died


class InFlight:
    """The record of the videos this process is decoding and embedding in-process now (a window video, or a
    batch with workers=0): written before, removed after, so that it survives only a death of the process
    (`take_inflight`)."""

    def __init__(self, out: str, rank: int):
        self.path = os.path.join(shard_dir(out), f"{INFLIGHT}{rank}.json")

    def enter(self, videos) -> None:
        """`videos`: (path, size, mtime, deaths so far) each."""
        tmp = f"{self.path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump({"videos": [{"video": p, "size": size, "mtime": mtime, "deaths": n}
                                  for p, size, mtime, n in videos]}, f, allow_nan=False)
        os.replace(tmp, self.path)

    def leave(self) -> None:
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass


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
        for order, r in enumerate(table.to_pylist()):
            ok = r["status"] == "ok"
            if best[r["path"]] == (seq, names[si]):
                rows.append(dict(r, _shard=si, _local=local if ok else -1, _order=order))
            local += ok
    rows.sort(key=lambda r: (r["path"], -1.0 if r["start"] is None else r["start"]))
    return rows, names



def compact_shards(out: str) -> int:
    """After a merge: shards whose entries were all replaced by newer ones (a changed video embedded again)
    are deleted, and a shard with some replaced entries is rewritten with its live entries only, under the
    name of the videos it keeps. The new shard is finished (its Parquet file written) before the old one
    goes, so a kill in between leaves two shards with the same entries and seq, of which the merge takes
    one and the next build removes the other. Returns the number of shards removed or rewritten."""
    rows, names = live_entries(out)
    live: dict[int, list[dict]] = {}
    for r in rows:
        live.setdefault(r["_shard"], []).append(r)
    d, changed = shard_dir(out), 0
    for si, name in enumerate(names):
        table, seq = read_shard_table(out, name)
        keep = live.get(si, [])
        if len(keep) == table.num_rows:
            continue
        if keep:
            keep.sort(key=lambda r: r["_order"])
            videos = list(dict.fromkeys((r["path"], r["size"], r["mtime"]) for r in keep))
            new = shard_name([list(v) for v in videos])
            if os.path.exists(os.path.join(d, new + ".parquet")) or os.path.exists(os.path.join(d, new + ".npy")):
                continue
            reader = RowReader(os.path.join(d, name + ".npy"))
            try:
                dtype = reader.dtype.name
                emb = reader.take([r["_local"] for r in keep if r["_local"] >= 0])
            finally:
                reader.close()
            write_shard(out, new, keep, emb if len(emb) else np.zeros((0, reader.dim), np.float32), seq, dtype)
        os.remove(os.path.join(d, name + ".parquet"))        # no longer a finished shard
        os.remove(os.path.join(d, name + ".npy"))
        changed += 1
    return changed


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



TAGS_KEY = b"text4vis_tags"       # Parquet schema metadata that marks a tag table written by text4vis


def is_tag_file(path: str) -> bool:
    """A Parquet file that `write_tags` wrote (its schema metadata says so)."""
    _, pq = require_arrow()
    return TAGS_KEY in (pq.read_schema(path).metadata or {})


def check_tags_output(path, overwrite: bool = False) -> str:
    """The output rule for a tag table, before any tag is computed: `path` ends in .parquet, its folder can be
    created, and an existing file is replaced only if it is a tag table text4vis wrote (or `overwrite`).
    Returns the path as a str; OutputError naming `out=` otherwise."""
    from ..errors import check_bool
    from ..files import check_output_file
    path = os.fspath(path)
    check_output_file(path, "out", (".parquet",), "a tag table", is_tag_file, check_bool("overwrite", overwrite))
    return path


def write_tags(records, path, overwrite: bool = False) -> int:
    """Tag records (from VideoIndex.iter_tags) -> a Parquet file: video, start, end, labels, scores. The output
    is checked first (`check_tags_output`), so with a lazy `records` (iter_tags) nothing is computed for an
    output that would be refused; a missing parent folder is created. Written whole or not at all."""
    path = check_tags_output(path, overwrite)
    pa, pq = require_arrow()
    schema = pa.schema([("video", pa.string()), ("start", pa.float64()), ("end", pa.float64()),
                        ("labels", pa.list_(pa.string())), ("scores", pa.list_(pa.float64()))],
                       metadata={TAGS_KEY: json.dumps({"format": "text4vis-tags", "version": 1}).encode()})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
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
