"""`index build --engine ray`: the embedding of a build as a Ray Data pipeline, so that decoding (CPU) and
the model (GPU) scale apart, on one machine or a cluster whose nodes come and go.

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

import logging
import math
import os
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError, VideoIndexError
from .embedding import chunk_bounds


@dataclass
class RaySettings:
    """How a build runs on Ray (Ray's own terms)."""
    address: str | None = None       # a cluster (ray://HOST:10001, HOST:6379, auto); None: RAY_ADDRESS or a local Ray
    num_cpus: float = 1.0            # CPUs per decode task
    decode_concurrency: int | None = None   # decode tasks at a time (default: as many as the CPUs allow)
    concurrency: int = 1             # embedding actors (each holds the model)
    num_gpus: float | None = None    # GPUs per embedding actor (default: 1 when the cluster has GPUs, else 0)
    max_retries: int = 3             # retries of a decode task or an actor's batch whose process died
    max_restarts: int = 3            # restarts of an embedding actor that died

    def check(self) -> None:
        if not (isinstance(self.num_cpus, (int, float)) and self.num_cpus > 0):
            raise UsageError(f"ray_num_cpus= must be a positive number of CPUs (got {self.num_cpus!r})")
        if self.num_gpus is not None and not (isinstance(self.num_gpus, (int, float)) and self.num_gpus >= 0):
            raise UsageError(f"ray_num_gpus= must be 0 or more GPUs (got {self.num_gpus!r})")
        for name, least in (("concurrency", 1), ("decode_concurrency", 1), ("max_retries", 0), ("max_restarts", 0)):
            value = getattr(self, name)
            if value is None and name == "decode_concurrency":
                continue
            if not (isinstance(value, int) and value >= least):
                raise UsageError(f"ray_{name}= must be a whole number of at least {least} (got {value!r})")


def require_ray():
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data is the [data] extra of ray)
    except ImportError:
        raise VideoIndexError("engine='ray' needs Ray Data: pip install 'text4vis[ray]'") from None
    return ray


def _quiet_data_context(ray) -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False          # the build has its own progress bar
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def connect(address: str | None) -> bool:
    """Ray for this build: the running one, the cluster at `address` (or RAY_ADDRESS), else a local Ray
    started here. True when this call started it (so the build shuts it down)."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, include_dashboard=False,
                 configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise VideoIndexError(f"ray_address={address!r}: cannot connect to Ray ({str(exc).splitlines()[0]})") \
            from None
    return True


def _decode(row: dict, num_frames: int, input_size: int, media_files_only: bool) -> dict:
    """A decode task: the batch's videos sampled as `predict --views 1x1` (embedding._Videos); with
    `media_files_only`, opened as the driver opens them (`video.media_files_only`, `--untrusted`)."""
    from ..video import media_files_only as only_media
    from .embedding import _Videos
    if media_files_only:
        only_media()
    videos = _Videos(list(row["paths"]), num_frames, input_size)
    ok, views, errors, durations = [], [], [], []
    for i in range(len(videos)):
        _, v, error, duration = videos[i]               # a video that does not decode: its error, no raise
        errors.append(error or "")
        durations.append(math.nan if duration is None else float(duration))
        if v is not None:
            ok.append(i)
            views.append(v.numpy())
    shape = views[0].shape if views else (0,)
    return {"batch": row["batch"], "ok": np.asarray(ok, np.int64), "errors": errors,
            "durations": np.asarray(durations, np.float64),
            "views": np.stack(views) if views else np.zeros((0, *shape), np.float32)}


class _Embed:
    """An embedding actor: loads the model once, embeds one decoded batch per call."""

    def __init__(self, model_args: dict):
        from .embedding import load_model
        self.rec = load_model(**model_args)
        (self.rec.video_backend or self.rec.model).eval()

    def __call__(self, row: dict) -> dict:
        import torch

        from .embedding import embed_views
        views = row.pop("views")
        if len(row["ok"]):
            with torch.no_grad():
                row["emb"] = embed_views(self.rec, torch.from_numpy(np.ascontiguousarray(views)))
        else:
            row["emb"] = np.zeros((0, 0), np.float32)
        return row


def _embedder(model_args: dict):
    """_Embed with its model arguments carried by the class (a restarted actor builds itself again)."""
    class Embed(_Embed):
        def __init__(self):
            super().__init__(model_args)
    return Embed


def embed_video_groups_ray(rec, groups, batch_size: int, model_args: dict, settings: RaySettings, on_group,
                           bar=None) -> None:
    """`embedding.embed_video_groups` on Ray: the same batches and the same `on_group(g, items)` calls
    (in the order the shards finish, not in shard order)."""
    ray = require_ray()
    settings.check()
    flat = [p for g in groups for p, _, _ in g]
    if not flat:
        return
    batches = chunk_bounds(groups, batch_size)
    owner = np.repeat(np.arange(len(groups)), [len(g) for g in groups])        # video -> its shard
    starts = np.cumsum([0] + [len(g) for g in groups])
    left = {gi: sum(1 for b in batches if owner[b[0]] == gi) for gi in range(len(groups))}
    started = connect(settings.address)
    try:
        _quiet_data_context(ray)
        gpus = settings.num_gpus
        if gpus is None:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 and model_args.get("device") != "cpu" else 0
        items = [{"batch": k, "paths": [flat[i] for i in b]} for k, b in enumerate(batches)]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        with warnings.catch_warnings():
            # Ray 2.60 deprecates retry options as remote arguments and names no replacement; its defaults
            # (actors restarted without end) would loop forever on a video that kills its process
            warnings.simplefilter("ignore", DeprecationWarning)
            from ..video import MEDIA_FILES_ONLY_ENV
            untrusted = os.environ.get(MEDIA_FILES_ONLY_ENV) == "1"        # the driver's rule, on every node
            ds = ds.map(_decode, fn_kwargs={"num_frames": rec.num_frames, "input_size": rec.input_size,
                                            "media_files_only": untrusted},
                        num_cpus=settings.num_cpus, max_retries=settings.max_retries,
                        compute=ray.data.TaskPoolStrategy(size=settings.decode_concurrency)
                        if settings.decode_concurrency else None)
            ds = ds.map(_embedder(model_args), compute=ray.data.ActorPoolStrategy(size=settings.concurrency),
                        num_gpus=gpus, max_restarts=settings.max_restarts, max_task_retries=settings.max_retries)
        _collect(ds, batches, owner, starts, left, on_group, bar)
    except (ray.exceptions.RayError, ray.data.exceptions.UserCodeException) as exc:
        cause = " ".join(str(exc).split())[-300:]
        raise VideoIndexError(f"engine='ray': the pipeline stopped ({type(exc).__name__}: ...{cause}); the "
                              f"finished shards are kept, so the same build again resumes") from None
    finally:
        if started:
            ray.shutdown()


def _collect(ds, batches, owner, starts, left, on_group, bar) -> None:
    """The driver's side: each embedded batch into its shard's items; `on_group` once a shard is whole."""
    done: dict[int, tuple] = {}
    for row in ds.iter_rows():
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
