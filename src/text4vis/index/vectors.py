"""The vector index (FAISS): exact below `exact_below` rows, IVF (sq8 or pq) above, re-ranked exactly."""
from __future__ import annotations

import numpy as np

from ..errors import UsageError, VideoIndexError
from .storage import RowReader

EXACT_BELOW = 100_000          # auto: exact search for smaller collections, IVF above
RERANK = 4                     # compressed indexes fetch k x RERANK candidates, re-scored exactly
VECTOR_INDEXES = ("auto", "flat", "ivf-sq8", "ivf-pq")


def require_faiss():
    try:
        import faiss
    except ImportError:
        raise VideoIndexError("the video index needs FAISS: pip install 'text4vis[index]'") from None
    return faiss


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
    faiss = require_faiss()
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
    faiss = require_faiss()
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
    faiss = require_faiss()
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

