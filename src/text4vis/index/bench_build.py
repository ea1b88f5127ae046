"""`text4vis bench --index-build --engine local|ray`: `index build` over copies of a generated clip, with 1
and 2 decode workers, on the local engine (DataLoader worker processes) or on Ray (decode tasks at a time,
one embedding actor; a local Ray started once for the benchmark). The model is a tiny random-weight CLIP
unless a CLIP file is given, so the figures are decoding and the engine's own cost, not the model's."""
from __future__ import annotations

import logging
import os
import tempfile
import time

from ..errors import UsageError, VideoIndexError
from .build import build_index
from .ray_engine import RaySettings, connect, require_ray

TINY_CLIP = dict(embed_dim=64, vision_cfg=dict(layers=2, width=64, patch_size=8, image_size=32),
                 text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=1, layers=1), quick_gelu=True)


def _tiny_clip(path: str) -> str:
    import torch
    from open_clip.model import CLIP
    torch.manual_seed(0)
    sd = CLIP(**TINY_CLIP).state_dict()
    sd.pop("attn_mask", None)
    torch.save(sd, path)
    return path


def bench_index_build(engine: str = "local", videos: int = 32, workers=(1, 2), clip: str | None = None,
                      frames: int = 8, seconds: float = 4.0, batch_size: int = 4, ray_address: str | None = None) -> dict:
    """Per decode-worker count, two builds (into new folders): over 2 * batch_size videos and over `videos`.
    The difference gives the time per video once running (`per_video_ms`, `steady_videos_per_s`), the rest
    is start-up (`startup_s`: worker processes, actors, the model). Ray's start (ray.init) is timed apart,
    once. Shards and batches are `batch_size` videos. `load_average`: 1/5/15 minutes, before and after."""
    if engine not in ("local", "ray"):
        raise UsageError(f"engine={engine!r}: choose local or ray")
    small = 2 * batch_size
    if videos <= small:
        raise UsageError(f"videos= must be more than {small} (the small build's size) (got {videos})")
    from ..bench.model import make_test_clip
    load = list(os.getloadavg())
    result = {"engine": engine, "videos": [small, videos], "frames": frames, "clip_seconds": seconds,
              "batch_size": batch_size, "cases": {}}
    with tempfile.TemporaryDirectory(prefix="text4vis-bench-build-") as tmp:
        data = open(make_test_clip(tmp, seconds=seconds)["video"], "rb").read()
        paths = [os.path.join(tmp, f"v{i:04d}.mp4") for i in range(videos)]
        for p in paths:
            with open(p, "wb") as f:
                f.write(data)
        clip = clip or _tiny_clip(os.path.join(tmp, "tiny_clip.pt"))
        started = False
        if engine == "ray":
            ray = require_ray()
            t0 = time.perf_counter()
            if ray_address or ray.is_initialized():
                started = connect(ray_address)
            else:   # decode slots for the largest case plus one CPU for the embedding actor
                ray.init(num_cpus=max(workers) + 1, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)
                started = True
            result["ray_init_s"] = round(time.perf_counter() - t0, 2)
            result["ray_cpus"] = ray.cluster_resources().get("CPU")

        def options(w: int) -> dict:
            common = dict(clip=clip, frames=frames, device="cpu", shard_size=batch_size, batch_size=batch_size)
            if engine == "ray":
                return dict(common, engine="ray", ray=RaySettings(decode_concurrency=w))
            return dict(common, workers=w)

        try:
            # an untimed warm-up build first: imports, Ray's worker processes
            build_index(paths[:batch_size], os.path.join(tmp, "index-warm-up"), **options(workers[0]))
            for w in workers:
                wall = {}
                for n in (small, videos):
                    t0 = time.perf_counter()
                    report = build_index(paths[:n], os.path.join(tmp, f"index-{w}-{n}"), **options(w))
                    wall[n] = time.perf_counter() - t0
                    if report["failed"]:
                        raise VideoIndexError(f"the benchmark's clip failed: {report['failed'][0]['error']}")
                per_video = (wall[videos] - wall[small]) / (videos - small)
                result["cases"][f"workers={w}"] = {
                    f"seconds_{small}": round(wall[small], 2), f"seconds_{videos}": round(wall[videos], 2),
                    "per_video_ms": round(1000 * per_video, 1),
                    "steady_videos_per_s": round(1 / per_video, 2) if per_video > 0 else None,
                    "startup_s": round(wall[small] - small * per_video, 2)}
        finally:
            if started:
                require_ray().shutdown()
    result["load_average"] = [round(x, 2) for x in load + list(os.getloadavg())]
    result["cpus"] = os.cpu_count()
    return result
