"""Scores -> records: the one place class scores become `[{"label", "score"}, ...]`.

predict (`api.Recognizer`), timeline windows, `index tag` and the HTTP service all call `top_labels`, so
they agree on the order: best first, and equal scores in label order (the lower class id first: a stable
sort, as `metrics.ranking` ranks).
"""
from __future__ import annotations

import json
import os

import numpy as np


def _rows(scores) -> np.ndarray:
    """[N, C] or [C] scores (numpy, or a torch tensor on any device) as a float32 numpy array [N, C]."""
    if hasattr(scores, "detach"):
        scores = scores.detach().float().cpu().numpy()
    scores = np.asarray(scores, dtype=np.float32)
    return scores[None] if scores.ndim == 1 else scores


def top_labels(scores, labels: list[str], k: int) -> list[list[dict]]:
    """The k best classes of each row of `scores` [N, C] (or of one row [C]): one list per row of
    {"label", "score"} (score rounded to 6 decimals), best first, ties in label order."""
    rows = _rows(scores)
    k = max(0, min(int(k), len(labels), rows.shape[1]))
    best = np.argsort(-rows, axis=1, kind="stable")[:, :k]
    return [[{"label": labels[j], "score": round(float(row[j]), 6)} for j in ids] for row, ids in zip(rows, best)]


def window_records(spans, scores, labels: list[str], k: int) -> list[dict]:
    """The windows of a timeline record: {"start", "end", "top": top_labels} per window span and score row."""
    return [{"start": start, "end": end, "top": top}
            for (start, end), top in zip(spans, top_labels(scores, labels, k) if len(spans) else [])]


# ----------------------------------------------------------------------------- predict's records in a file

RECORD_FILES = (".jsonl", ".parquet")         # `predict --out`: JSON Lines, or Parquet (one row per record)
PARQUET_KIND = {b"text4vis": b"predict"}      # the schema metadata that marks a Parquet file of records


def require_pyarrow(path: str):
    """pyarrow (the [index] extra), or OutputError naming the file that needs it."""
    from .errors import OutputError
    try:
        import pyarrow as pa
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise OutputError(f"out={path!r}: writing Parquet needs pyarrow: pip install 'text4vis[index]'") from None
    return pa


def _parquet_schema():
    import pyarrow as pa
    top = pa.list_(pa.struct([("label", pa.string()), ("score", pa.float64())]))
    return pa.schema([("video", pa.string()), ("top", top), ("error", pa.string()),
                      ("embedding", pa.list_(pa.float32()))], metadata=PARQUET_KIND)


def is_records_file(path: str) -> bool:
    """A file `write_records` wrote (so replacing it loses nothing of someone else's): a Parquet file with
    text4vis's predict metadata, or a JSON Lines file whose first line is a record (or an empty one)."""
    if path.lower().endswith(".parquet"):
        import pyarrow.parquet as pq
        return (pq.read_schema(path).metadata or {}).get(b"text4vis") == b"predict"
    with open(path, encoding="utf-8") as f:
        first = f.readline()
    if not first.strip():
        return os.path.getsize(path) == 0
    r = json.loads(first)
    return isinstance(r, dict) and "video" in r and ("top" in r or "error" in r)


def write_records(path: str, records, on_record=None, rows_per_group: int = 1024) -> int:
    """Write predict's records (dicts, as they come) to `path`, JSON Lines (.jsonl) or Parquet (.parquet:
    video, top [{label, score}], error, embedding), whole or not at all (`files.atomic_write`: the file
    appears when the last record is written). `on_record(r)` is called after each. Returns the count."""
    from .files import atomic_write
    count = 0

    def each():
        nonlocal count
        for r in records:
            yield r
            count += 1
            if on_record is not None:
                on_record(r)

    def write_jsonl(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            for r in each():
                f.write(json.dumps(r) + "\n")

    def write_parquet(tmp: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq
        schema = _parquet_schema()
        rows: list[dict] = []
        with pq.ParquetWriter(tmp, schema) as out:
            for r in each():
                rows.append({name: r.get(name) for name in schema.names})
                if len(rows) == rows_per_group:
                    out.write_table(pa.Table.from_pylist(rows, schema))
                    rows = []
            out.write_table(pa.Table.from_pylist(rows, schema))

    atomic_write(path, write_parquet if path.lower().endswith(".parquet") else write_jsonl)
    return count
