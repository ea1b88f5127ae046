"""Does decoding keep the model fed? Videos/s end to end (decode + views + model), as `predict` runs.

Three cases on the same random-weight model (ViT image tower + transf head, the precision rule of
`devices`), real clips, 1x1 view, T frames, batch B:

    model_alone          the model on ready uint8 clips already on its device
    cpu_decode           `engine.iter_embeddings` over the clips: DataLoader workers decoding on the
                         CPU (all cores by default), one thread each, text4vis's default reader
    nvdec                the same, frames decoded by NVDEC (torchcodec, decode_device="cuda") in the
                         main process, staying on the GPU; measured only where it works, else the
                         reason is given under "not_measured" (one line)

`fed` = cpu_decode (or nvdec) over model_alone: 1.0 means decoding keeps up with the model.
"""
from __future__ import annotations

import os
import time
import warnings

import torch

from .. import video
from ..datasets import FrameReader, Sample, TestDataset
from ..errors import UsageError
from .gpu import cuda_problem


def bench_end_to_end(model: str = "ViT-B/16", frames: int = 8, batch: int = 32, device: str = "auto",
                     videos_dir: str | None = None, videos: int = 256, workers: int | None = None,
                     cfg: dict | None = None) -> dict:
    """Videos/s of the three cases (see the module doc). `videos`: clips timed per case (the real clips
    of `videos_dir` repeated); `workers`: CPU decoding processes (default: every core); `cfg`: an
    open_clip model config instead of `model`'s (tests use a tiny one)."""
    from .. import engine
    from ..bench.model import model_config
    from ..devices import pick_device
    from ..model import VideoModel
    from ..towers import build_clip
    from .bench import default_videos_dir

    folder = videos_dir or default_videos_dir()
    if not folder or not os.path.isdir(folder):
        raise UsageError(f"videos_dir={folder!r}: no folder of real clips")
    clips = [p for p in video.find_videos([folder]) if os.path.isfile(p)]
    if not clips:
        raise UsageError(f"videos_dir={folder!r}: holds no video files")
    dev = pick_device(device)
    cfg = cfg or model_config(model)
    torch.manual_seed(0)
    clip_model = build_clip(cfg)
    net = VideoModel(clip_model.visual, cfg["embed_dim"], "transf",
                     head_heads=max(1, cfg["text_cfg"]["width"] // 64)).to(dev).eval()
    size = cfg["vision_cfg"]["image_size"]
    samples = [Sample(clips[i % len(clips)], -1, None, clips[i % len(clips)]) for i in range(videos)]
    workers = (os.cpu_count() or 1) if workers is None else workers
    out: dict = {"model": model, "frames": frames, "batch": batch, "device": str(dev), "videos": videos,
                 "clips": [os.path.basename(c) for c in clips], "cpu_decode_workers": workers,
                 "cases": {}, "not_measured": {}}

    def run(reader: FrameReader, n_workers: int) -> float:
        ds = TestDataset(samples, frames, size, 1, 1, reader=reader)
        warm = TestDataset(samples[:batch], frames, size, 1, 1, reader=reader)
        for _ in engine.iter_embeddings(net, warm, dev, batch, n_workers):
            pass
        _sync(dev)
        t0 = time.perf_counter()
        for _ in engine.iter_embeddings(net, ds, dev, batch, n_workers):
            pass
        _sync(dev)
        return videos / (time.perf_counter() - t0)

    # the model alone: uint8 clips already on the device, as iter_embeddings hands them over
    x = torch.randint(0, 256, (batch, frames, 3, size, size), dtype=torch.uint8, device=dev)
    with torch.inference_mode(), engine.autocast(dev, "auto"):
        net.embed(x)
        _sync(dev)
        t0 = time.perf_counter()
        steps = max(1, videos // batch)
        for _ in range(steps):
            net.embed(x)
        _sync(dev)
    out["cases"]["model_alone"] = {"videos_per_s": steps * batch / (time.perf_counter() - t0)}
    out["cases"]["cpu_decode"] = {"videos_per_s": run(FrameReader(), workers)}
    why = cuda_problem(clips[0]) if dev.type == "cuda" else f"the model runs on {dev}, not on a GPU"
    if why:
        out["not_measured"]["nvdec"] = why
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["cases"]["nvdec"] = {"videos_per_s": run(FrameReader(decode_device="cuda"), 0)}
    alone = out["cases"]["model_alone"]["videos_per_s"]
    for case in ("cpu_decode", "nvdec"):
        if case in out["cases"]:
            out["cases"][case]["fed"] = round(out["cases"][case]["videos_per_s"] / alone, 3)
    return out


def _sync(dev) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
