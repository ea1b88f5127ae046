"""The evaluation loop: embedding the videos of a dataset (every video exactly once, also under torchrun).

The training loop lives in train/loop.py; device, precision and process-group helpers in devices.py.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from .datasets import test_collate
from .devices import autocast, rank_world

TEST_SCALE = 100.0  # the reference's test rule: softmax(100 x cosine)


def default_workers(n_items: int) -> int:
    if n_items <= 2:
        return 0
    return max(0, min(8, (os.cpu_count() or 1) - 1, n_items))


@dataclass
class Embedded:
    """Result of embedding a dataset: rows in `indices` order (dataset indices), failures apart."""
    indices: list[int]
    embeddings: torch.Tensor                    # [n, D] L2-normalised, fp32, CPU
    errors: list[tuple[int, str]] = field(default_factory=list)
    seconds_waiting: float = 0.0                # main process waiting for decoded clips
    seconds_model: float = 0.0                  # forward passes (synchronised)
    seconds_total: float = 0.0


@torch.no_grad()
def iter_embeddings(model, dataset, device: torch.device, batch_size: int = 4, workers: int | None = None,
                    progress: bool = False, desc: str = "videos", precision: str = "auto", timing: dict | None = None):
    """Embed a TestDataset batch by batch, in dataset order: yields (indices, embeddings [b, D], failures)
    as soon as each batch is done. An embedding is the mean of the raw embeddings over the sample's views,
    L2-normalised. Under torch.distributed each rank takes indices rank, rank + world, ... (no padding).
    `timing` (a dict) receives seconds_waiting / seconds_model as the batches go."""
    rank, world = rank_world()
    mine = list(range(rank, len(dataset), world))
    workers = default_workers(len(mine)) if workers is None else workers
    loader = DataLoader(torch.utils.data.Subset(dataset, mine), batch_size=batch_size, shuffle=False,
                        num_workers=workers, collate_fn=test_collate,
                        pin_memory=device.type == "cuda" and getattr(dataset, "reader", None) is not None
                        and getattr(dataset.reader, "decode_device", "cpu") == "cpu",  # NVDEC frames: on the GPU already
                        prefetch_factor=4 if workers else None, persistent_workers=False)
    model.eval()
    timing = {} if timing is None else timing
    timing.setdefault("seconds_waiting", 0.0)
    timing.setdefault("seconds_model", 0.0)
    dim = model.proj.out_features if getattr(model, "proj", None) is not None else model.embed_dim
    bar = tqdm(total=len(mine), desc=desc, unit="video", disable=not progress or rank != 0, leave=False)
    try:
        t0 = time.perf_counter()
        for indices, views, failed in loader:
            timing["seconds_waiting"] += time.perf_counter() - t0
            emb = torch.zeros(0, dim)
            if views is not None:
                t1 = time.perf_counter()
                emb = embed_batch(model, views, device, precision)
                timing["seconds_model"] += time.perf_counter() - t1
            bar.update(len(indices) + len(failed))
            yield list(indices), emb, list(failed)     # TestDataset reports dataset indices
            t0 = time.perf_counter()
    finally:
        bar.close()


def embed_batch(model, views: torch.Tensor, device: torch.device, precision: str = "auto") -> torch.Tensor:
    """Views [b, v, T, 3, H, W] of b videos -> their embeddings [b, D] on the CPU: the mean of the raw
    embeddings over each video's views, L2-normalised (predict's rule; the caller holds no_grad)."""
    b, v = views.shape[:2]
    with autocast(device, precision):
        emb = model.embed(views.to(device, non_blocking=True).flatten(0, 1))  # (b*v, d)
    return F.normalize(emb.float().view(b, v, -1).mean(1), dim=-1).cpu()     # mean over views


def embed_dataset(model, dataset, device: torch.device, batch_size: int = 4, workers: int | None = None,
                  progress: bool = False, desc: str = "videos", precision: str = "auto") -> Embedded:
    """Embed every sample of a TestDataset (see iter_embeddings); under torch.distributed the results are
    gathered on every rank, so each video is counted exactly once."""
    rank, world = rank_world()
    start = time.perf_counter()
    timing: dict = {}
    idx_out, emb_out, errors = [], [], []
    for indices, emb, failed in iter_embeddings(model, dataset, device, batch_size, workers, progress, desc,
                                                precision, timing):
        errors.extend(failed)
        if len(indices):
            emb_out.append(emb)
            idx_out.extend(indices)
    dim = model.proj.out_features if getattr(model, "proj", None) is not None else model.embed_dim
    embeddings = torch.cat(emb_out) if emb_out else torch.zeros(0, dim)
    result = Embedded(idx_out, embeddings, errors, timing["seconds_waiting"], timing["seconds_model"],
                      time.perf_counter() - start)
    if world > 1:
        parts = [None] * world
        dist.all_gather_object(parts, (result.indices, result.embeddings, result.errors))
        order = sorted((i, r, j) for r, (ids, _, _) in enumerate(parts) for j, i in enumerate(ids))
        result.indices = [i for i, _, _ in order]
        result.embeddings = torch.stack([parts[r][1][j] for _, r, j in order]) if order else result.embeddings
        result.errors = sorted(e for p in parts for e in p[2])
    else:
        order = sorted(range(len(result.indices)), key=lambda j: result.indices[j])
        result.indices = [result.indices[j] for j in order]
        result.embeddings = result.embeddings[order] if order else result.embeddings
        result.errors.sort()
    return result


def scores_from_embeddings(embeddings: torch.Tensor, classifier: torch.Tensor, scale: float = TEST_SCALE) -> torch.Tensor:
    """softmax(scale x cosine) of normalised video embeddings [N, D] against classifier rows [C, D]."""
    w = F.normalize(classifier.detach().float().cpu(), dim=-1)
    return (scale * F.normalize(embeddings.float(), dim=-1) @ w.t()).softmax(dim=-1)
