"""`text4vis bench --towers ARCH`: CPU/GPU throughput of one backbone's towers, random weights.

ARCH is an open_clip architecture name (ViT-B-16, ViT-B-16-SigLIP, ViT-B-16-SigLIP2, EVA02-B-16,
MobileCLIP-S1, ...), built by open_clip with random weights (nothing downloaded), `ViCLIP-L-14` (viclip.py,
random weights; a batch is one clip of `batch` frames), or any `--clip` value (then its own weights). Measured, best of interleaved rounds, in this process:

  image tower   frames per second: batches of `batch` frames at the tower's input size (what a video model
                runs T times per clip: videos/s = frames/s / T)
  text tower    prompts per second: batches of 64 prompts of random tokens at the context length
"""
from __future__ import annotations

import time

import torch


# ViCLIP-L/14 as InternVid released it (viclip.py; random weights here)
VICLIP_L14 = {"family": "viclip", "embed_dim": 768,
              "vision_cfg": {"image_size": 224, "patch_size": 14, "width": 1024, "layers": 24, "heads": 16,
                             "num_frames": 8},
              "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 768, "heads": 12, "layers": 12}}


def _towers(spec: str):
    import open_clip
    from ..towers import Towers, load_towers
    if spec == "ViCLIP-L-14":
        from ..backbones import viclip
        torch.manual_seed(0)
        return Towers(clip=viclip.build(VICLIP_L14), config=VICLIP_L14, source=f"{spec} (random weights)",
                      mean=viclip.IMAGENET_MEAN, std=viclip.IMAGENET_STD)
    cfg = open_clip.get_model_config(spec)
    if cfg is None:
        return load_towers(spec)
    from ..backbones.families import build, preprocess_of
    torch.manual_seed(0)
    pre = preprocess_of(spec, None)
    return Towers(clip=build(cfg), config=cfg, source=f"{spec} (random weights)", mean=pre["mean"], std=pre["std"],
                  preprocess={k: pre[k] for k in ("interpolation", "resize_mode")})


def _best(fn, rounds: int, iters: int) -> float:
    fn()                                        # warm-up (allocations, kernels)
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(iters):
            fn()
        best = min(best, (time.perf_counter() - t) / iters)
    return best


@torch.no_grad()
def bench_towers(spec: str, batch: int = 8, iters: int = 2, rounds: int = 2, device: str = "cpu") -> dict:
    towers = _towers(spec)
    clip = towers.clip.to(device).eval()
    size = towers.input_size
    frames = torch.randn(batch, 3, size, size, device=device)
    if getattr(clip.visual, "video_native", False):      # a video tower: the batch is one clip of `batch` frames
        image_s = _best(lambda: clip.visual(frames, batch), rounds, iters)
    else:
        image_s = _best(lambda: clip.visual(frames), rounds, iters)
    vocab = int(towers.config.get("text_cfg", {}).get("vocab_size") or 1000)
    ids = torch.randint(1, min(vocab, 30000), (64, towers.context_length), device=device)
    text_s = _best(lambda: clip.encode_text(ids), rounds, iters)
    params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    visual = params(clip.visual)
    return {"towers": spec, "input_size": size, "embed_dim": towers.embed_dim, "context_length": towers.context_length,
            "image_params_m": round(visual / 1e6, 1), "text_params_m": round((params(clip) - visual) / 1e6, 1),
            "device": device, "threads": torch.get_num_threads(), "batch": batch,
            "image_frames_per_s": round(batch / image_s, 2), "text_prompts_per_s": round(64 / text_s, 1),
            "videos_per_s_at_8_frames": round(batch / image_s / 8, 2)}
