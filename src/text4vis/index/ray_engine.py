"""`index build --engine ray`: the embedding of a build as a Ray Data pipeline (the library's ray_data.py,
shared with `predict --engine ray`), so that decoding (CPU) and the model (GPU) scale apart, on one
machine or a cluster whose nodes come and go.

    batches of paths -> decode (tasks: num_cpus each, retried up to max_retries times when a worker dies)
                     -> embed  (actors holding the model: `concurrency` of them, num_gpus each,
                                restarted up to max_restarts times, their batches retried)
                     -> the driver, which writes each shard when its last batch arrives

The batches are those of the local engine (`chunk_bounds`: `batch_size` videos, never straddling two
shards) and each is embedded alone, so every shard, and hence the merged index, is the local engine's
byte for byte on the same device. A video that fails to decode is a recorded failure (its one-line
error travels with the batch), never a failed task: only a dead process makes Ray retry. Shards are
written by the driver (embeddings are a few KB a video), so the index folder needs to be on the driver's
disk only; a rerun after a killed driver plans again and skips the shards that are finished.
"""
from __future__ import annotations

import math
from functools import partial

import numpy as np

from .. import ray_data
from ..errors import VideoIndexError
from ..ray_data import RaySettings  # noqa: F401  (index.build's engine settings)
from .embedding import chunk_bounds


def require_ray():
    return ray_data.require_ray(VideoIndexError)


def connect(address: str | None) -> bool:
    return ray_data.connect(address, VideoIndexError)


def _videos(paths, num_frames: int, input_size: int):
    from .embedding import _Videos
    return _Videos(paths, num_frames, input_size)


def _load(**model_args):
    from .embedding import load_model
    return load_model(**model_args)


def _embed(rec, views):
    from .embedding import embed_views
    return embed_views(rec, views)


def embed_video_groups_ray(rec, groups, batch_size: int, model_args: dict, settings: RaySettings, on_group,
                           bar=None) -> None:
    """`embedding.embed_video_groups` on Ray: the same batches and the same `on_group(g, items)` calls
    (in the order the shards finish, not in shard order)."""
    flat = [p for g in groups for p, _, _ in g]
    if not flat:
        require_ray()
        settings.check()
        return
    batches = chunk_bounds(groups, batch_size)
    owner = np.repeat(np.arange(len(groups)), [len(g) for g in groups])        # video -> its shard
    starts = np.cumsum([0] + [len(g) for g in groups])
    left = {gi: sum(1 for b in batches if owner[b[0]] == gi) for gi in range(len(groups))}
    rows = ray_data.run([[flat[i] for i in b] for b in batches],
                        partial(_videos, num_frames=rec.num_frames, input_size=rec.input_size), _load, model_args,
                        _embed, settings, error=VideoIndexError,
                        stopped_note="; the finished shards are kept, so the same build again resumes")
    _collect(rows, batches, owner, starts, left, on_group, bar)


def _collect(rows, batches, owner, starts, left, on_group, bar) -> None:
    """The driver's side: each embedded batch into its shard's items; `on_group` once a shard is whole."""
    done: dict[int, tuple] = {}
    for row in rows:
        b = batches[int(row["batch"])]
        emb = iter(np.asarray(row["emb"], np.float32))
        ok = set(int(i) for i in row["ok"])
        for j, i in enumerate(b):
            duration = float(row["durations"][j])
            done[i] = ((next(emb)[None], None, None if math.isnan(duration) else duration, None) if j in ok
                       else (None, row["errors"][j], None, None))
        if bar is not None:
            bar.update(len(b))
        gi = int(owner[b[0]])
        left[gi] -= 1
        if left[gi] == 0:
            on_group(gi, [done.pop(i) for i in range(starts[gi], starts[gi + 1])])
