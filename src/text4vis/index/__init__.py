"""A searchable video collection (`text4vis index`): embed every video once, then search it with any sentence
(or a video) and tag it with any label set, without decoding it again.

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

The package, by role: inputs.py (what to index), embedding.py (the model and its identity record,
videos or windows -> embeddings), storage.py (the files of an index folder), vectors.py (FAISS),
build.py (plan, lock, ranks, merge: `build_index`, `BuildSettings`), search.py (`VideoIndex`),
bench.py (`bench_index`).
"""
from __future__ import annotations

from .bench import bench_index
from .build import BuildLock, BuildSettings, build_index
from .embedding import QUERY_LABEL, load_model
from .inputs import expand_inputs, read_list_file
from .search import VideoIndex
from .storage import read_info, write_tags

__all__ = ["BuildLock", "BuildSettings", "QUERY_LABEL", "VideoIndex", "bench_index", "build_index", "expand_inputs",
           "load_model", "read_info", "read_list_file", "write_tags"]
