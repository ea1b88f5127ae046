"""`text4vis bench --index N`: the vector index on N synthetic embeddings (build, search latency, recall)."""
from __future__ import annotations

import os
import resource
import tempfile
import time

import numpy as np

from ..errors import UsageError
from .storage import FAISS_FILE, VECTORS, NpyWriter, RowReader
from .vectors import EXACT_BELOW, build_vector_index, read_vector_index, require_faiss, search_vectors

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
    faiss = require_faiss()
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

