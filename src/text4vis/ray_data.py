"""Batch inference over many videos as a Ray Data pipeline, so that decoding (CPU) and the model (GPU)
scale apart, on one machine or a cluster whose nodes come and go: `index build --engine ray`
(index/ray_engine.py) and `predict --engine ray` (`predict_iter` here) share it.

    batches of paths -> decode (tasks: num_cpus each, retried up to max_retries times when a worker dies)
                     -> embed  (actors holding the model: `concurrency` of them, num_gpus each,
                                restarted up to max_restarts times, their batches retried)
                     -> the driver, which takes each batch's results as they come

Each batch is a fixed list of videos, decoded and embedded alone, so its numbers are those of the local
engine's batch of the same videos. A video that fails to decode is a recorded failure (its one-line error
travels with the batch), never a failed task: only a dead process makes Ray retry.
"""
from __future__ import annotations

import json
import logging
import math
import os
import warnings
from dataclasses import dataclass
from functools import partial

import numpy as np

from .errors import UsageError


@dataclass
class RaySettings:
    """How a pipeline runs on Ray (Ray's own terms)."""
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


def require_ray(error=UsageError):
    """The `ray` module with Ray Data; `error` (one line saying how to install it) without them."""
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data is the [data] extra of ray)
    except ImportError:
        raise error("engine='ray' needs Ray Data: pip install 'text4vis[ray]'") from None
    return ray


def _quiet_data_context(ray) -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False          # the commands have their own progress bars
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)   # "Progress bars disabled"


def connect(address: str | None, error=UsageError) -> bool:
    """Ray for this run: the running one, the cluster at `address` (or RAY_ADDRESS), else a local Ray
    started here. True when this call started it (so the caller shuts it down)."""
    ray = require_ray(error)
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False, include_dashboard=False,
                 configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise error(f"ray_address={address!r}: cannot connect to Ray ({str(exc).splitlines()[0]})") from None
    return True


def _decode(row: dict, make_dataset, media_files_only: bool) -> dict:
    """A decode task: the batch's videos as `make_dataset(paths)[i]` gives them, (index, views, error) or
    (index, views, error, duration); with `media_files_only`, opened as the driver opens them
    (`video.media_files_only`, untrusted inputs)."""
    from .video import media_files_only as only_media
    if media_files_only:
        only_media()
    paths = list(row["paths"])
    videos = make_dataset(paths)
    ok, views, errors, durations = [], [], [], []
    for i in range(len(paths)):
        item = videos[i]                              # a video that does not decode: its error, no raise
        v, error = item[1], item[2]
        duration = item[3] if len(item) > 3 else None
        errors.append(error or "")
        durations.append(math.nan if duration is None else float(duration))
        if v is not None:
            ok.append(i)
            views.append(v.numpy())
    shape = views[0].shape if views else (0,)
    return {"batch": row["batch"], "paths": paths, "ok": np.asarray(ok, np.int64), "errors": errors,
            "durations": np.asarray(durations, np.float64),
            "views": np.stack(views) if views else np.zeros((0, *shape), np.float32)}


class _Embed:
    """An embedding actor: `load(**load_args)` once; for each decoded batch, row["emb"] = embed(rec, views)
    of its videos that decoded, then `finish(rec, row)` when given (what the driver receives)."""

    def __init__(self, load, load_args: dict, embed, finish=None):
        self.rec = load(**load_args)
        (self.rec.video_backend or self.rec.model).eval()
        self.embed, self.finish = embed, finish

    def __call__(self, row: dict) -> dict:
        import torch
        views = row.pop("views")
        if len(row["ok"]):
            with torch.no_grad():
                row["emb"] = self.embed(self.rec, torch.from_numpy(np.ascontiguousarray(views)))
        else:
            row["emb"] = np.zeros((0, 0), np.float32)
        return self.finish(self.rec, row) if self.finish is not None else row


def _embedder(load, load_args: dict, embed, finish):
    """_Embed with its arguments carried by the class, not passed to the constructor: a restarted actor
    builds itself again (Ray warns that constructor arguments in the object store may be gone by then)."""
    class Embed(_Embed):
        def __init__(self):
            super().__init__(load, load_args, embed, finish)
    return Embed


def run(batches: list[list[str]], make_dataset, load, load_args: dict, embed, settings: RaySettings,
        finish=None, error=UsageError, stopped_note: str = ""):
    """The pipeline over `batches` (lists of video paths): yields each batch's row from the embedding
    actors ({"batch": its position, ...}), in the order they finish. A Ray Data failure (a task out of
    retries, an actor out of restarts) is `error`, one line ending in `stopped_note`."""
    ray = require_ray(error)
    settings.check()
    if not batches:
        return
    started = connect(settings.address, error)
    try:
        _quiet_data_context(ray)
        gpus = settings.num_gpus
        if gpus is None:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 and load_args.get("device") != "cpu" else 0
        items = [{"batch": k, "paths": list(b)} for k, b in enumerate(batches)]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        with warnings.catch_warnings():
            # Ray 2.60 deprecates retry options as remote arguments and names no replacement; its defaults
            # (actors restarted without end) would loop forever on a video that kills its process
            warnings.simplefilter("ignore", DeprecationWarning)
            from .video import MEDIA_FILES_ONLY_ENV
            untrusted = os.environ.get(MEDIA_FILES_ONLY_ENV) == "1"        # the driver's rule, on every node
            ds = ds.map(_decode, fn_kwargs={"make_dataset": make_dataset, "media_files_only": untrusted},
                        num_cpus=settings.num_cpus, max_retries=settings.max_retries,
                        compute=ray.data.TaskPoolStrategy(size=settings.decode_concurrency)
                        if settings.decode_concurrency else None)
            ds = ds.map(_embedder(load, load_args, embed, finish),
                        compute=ray.data.ActorPoolStrategy(size=settings.concurrency),
                        num_gpus=gpus, max_restarts=settings.max_restarts, max_task_retries=settings.max_retries)
        yield from ds.iter_rows()
    except (ray.exceptions.RayError, ray.data.exceptions.UserCodeException) as exc:
        cause = " ".join(str(exc).split())[-300:]
        raise error(f"engine='ray': the pipeline stopped ({type(exc).__name__}: ...{cause}){stopped_note}") \
            from None
    finally:
        if started:
            ray.shutdown()


# ----------------------------------------------------------------------------- predict on Ray

def _test_dataset(paths, num_frames: int, input_size: int, clips: int, crops: int):
    from .datasets import Sample, TestDataset
    return TestDataset([Sample(p, -1, None, p) for p in paths], num_frames, input_size, clips, crops)


def _embed_views(rec, views):
    from . import engine
    return engine.embed_batch(rec.video_backend or rec.model, views, rec.device, rec.precision)


def _records(rec, row: dict, topk: int, with_embedding: bool) -> dict:
    """An embedded batch as predict's records (JSON text, one per video, in the batch's order)."""
    from . import engine
    from .records import top_labels
    emb = row["emb"]
    ok = [int(i) for i in row["ok"]]
    tops = top_labels(engine.scores_from_embeddings(emb, rec.model.classifier), rec.labels,
                      min(topk, len(rec.labels))) if ok else []
    out = []
    for j, path in enumerate(row["paths"]):
        if j in ok:
            r = ok.index(j)
            record = {"video": path, "top": tops[r]}
            if with_embedding:
                record["embedding"] = [round(float(x), 6) for x in emb[r].tolist()]
        else:
            record = {"video": path, "error": row["errors"][j]}
        out.append(json.dumps(record))
    return {"batch": row["batch"], "records": out}


def predict_iter(rec, load_args: dict, paths, topk: int = 5, views: str = "1x1", batch_size: int = 4,
                 settings: RaySettings | None = None, with_embedding: bool = False, progress: bool = False):
    """`Recognizer.predict_iter` on Ray: the same records in the same (input) order, each yielded once it
    and every record before it are done. `rec` is the driver's Recognizer (loaded with `load(**load_args)`,
    which each embedding actor calls again); the batches are the local engine's (`batch_size` videos in
    input order), so labels are the same and scores equal to float rounding."""
    from tqdm import tqdm

    from .api import check_arguments
    from .video import empty_input_error, list_inputs
    clips, crops = check_arguments(topk=topk, views=views, batch_size=batch_size)
    settings = settings or RaySettings()
    settings.check()
    items = list_inputs(paths)                       # (path, is an empty folder or list) in input order
    files = [p for p, empty in items if not empty]
    batches = [files[i:i + batch_size] for i in range(0, len(files), batch_size)]
    make = partial(_test_dataset, num_frames=rec.num_frames, input_size=rec.input_size, clips=clips, crops=crops)
    finish = partial(_records, topk=topk, with_embedding=with_embedding)
    done: dict[int, dict] = {}
    position, next_file = 0, 0
    bar = tqdm(total=len(files), desc="videos", unit="video", disable=not progress, leave=False)
    try:
        for row in run(batches, make, _load, load_args, _embed_views, settings, finish):
            start = int(row["batch"]) * batch_size
            for j, text in enumerate(row["records"]):
                done[start + j] = json.loads(text)
            bar.update(len(row["records"]))
            while position < len(items):
                path, empty = items[position]
                if empty:
                    yield {"video": path, "error": empty_input_error(path)}
                elif next_file in done:
                    yield done.pop(next_file)
                    next_file += 1
                else:
                    break
                position += 1
        for path, _ in items[position:]:             # empty inputs after the last video
            yield {"video": path, "error": empty_input_error(path)}
    finally:
        bar.close()


def _load(**load_args):
    from .api import load
    return load(**load_args)
