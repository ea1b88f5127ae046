"""`text4vis bench`: measured speed of text4vis against a faithful re-implementation of the
reference (original Text4Vis) computation, in the same process, on random weights.

Model benchmark (`--mode infer|train`): image tower + `transf` head on [B, T, 3, S, S] clips.
  text4vis   batch-first open_clip tower, fused attention (scaled_dot_product_attention through
             nn.MultiheadAttention), bf16 autocast on GPUs (fp32 on CPU), optional torch.compile,
             fused AdamW for training, no checkpointing.
  reference  OpenAI CLIP's sequence-first layout with nn.MultiheadAttention(batch_first=False),
             fp32-upcasting LayerNorm, the reference Transf head; inference in fp32 (as shipped) and
             with fp16 autocast; training with fp16 autocast + GradScaler + AdamW and activation
             checkpointing in every block.
Data benchmark (`--data`): clips per second per CPU core for the reference's frame-folder loader
(JPEGs with PIL, resize, crop, stack) and for text4vis reading the video file, plus a plain
sequential PyAV decode of the whole clip.
"""
from __future__ import annotations

import copy
import os
import tempfile
import time
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..devices import device_name, precision_name
from ..errors import check_numbers, first_line
from ..model import VideoModel
from ..temporal import MAX_FRAMES, head_max_frames
from ..towers import OPENAI_NAMES, build_clip

# dense bf16/fp16 tensor-core peaks (TFLOP/s), for "percent of peak"
PEAK_TFLOPS = {"H200": 790.0, "H100": 790.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "RTX 4090": 165.0}


BENCH_MODELS = [n for n in OPENAI_NAMES if n.startswith("ViT")]  # ResNet towers (RN50) are not benchmarked


def model_config(name: str) -> dict:
    """open_clip config of an OpenAI name (ViT-B/16, ...) or open_clip name, with QuickGELU."""
    import open_clip
    cfg = open_clip.get_model_config(OPENAI_NAMES.get(name, name))
    supported = ", ".join(BENCH_MODELS)
    if cfg is None:
        raise ValueError(f"model={name!r}: unknown architecture (bench supports {supported}, "
                         f"or an open_clip ViT name such as ViT-B-16)")
    if not isinstance(cfg.get("vision_cfg", {}).get("patch_size"), int) or isinstance(
            cfg["vision_cfg"].get("layers"), (list, tuple)):
        raise ValueError(f"model={name!r}: bench measures ViT image towers only (the reference computation it "
                         f"compares with is a ViT); use {supported}, or an open_clip ViT name")
    cfg = copy.deepcopy(cfg)
    cfg["quick_gelu"] = True
    return cfg


def flops_per_video(cfg: dict, frames: int) -> float:
    """Matmul FLOPs (2 per multiply-add) of one video: ViT tower per frame + 6-layer transf head."""
    v = cfg["vision_cfg"]
    size, patch, width, layers = v["image_size"], v["patch_size"], v["width"], v["layers"]
    n = (size // patch) ** 2 + 1
    per_layer = 2 * (4 * n * width * width + 8 * n * width * width + 2 * n * n * width)
    embed = 2 * (n - 1) * 3 * patch * patch * width
    proj = 2 * width * cfg["embed_dim"]
    d = cfg["embed_dim"]
    head = 6 * 2 * (12 * frames * d * d + 2 * frames * frames * d)
    return frames * (layers * per_layer + embed + proj) + head


# ----------------------------------------------------------------------------- the reference's computation

class RefLayerNorm(nn.LayerNorm):
    """OpenAI CLIP's LayerNorm: computed in fp32, cast back."""

    def forward(self, x):
        return super().forward(x.float()).to(x.dtype)


class RefTFLayerNorm(nn.Module):
    """The reference head's TF-style LayerNorm (eps 1e-12), in the input dtype."""

    def __init__(self, width):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(width)), nn.Parameter(torch.zeros(width))

    def forward(self, x):
        u = x.mean(-1, keepdim=True)
        s = (x - u).pow(2).mean(-1, keepdim=True)
        return self.weight * ((x - u) / torch.sqrt(s + 1e-12)) + self.bias


class RefBlock(nn.Module):
    def __init__(self, width, heads, norm=RefLayerNorm):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)  # sequence first (L, N, D)
        self.ln_1, self.ln_2 = norm(width), norm(width)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, 4 * width)), ("gelu", _QuickGELU()),
                                              ("c_proj", nn.Linear(4 * width, width))]))

    def forward(self, x):
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class _QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class RefVideoModel(nn.Module):
    """OpenAI ViT tower (sequence-first) + the reference Transf head; optional checkpointing per block."""

    def __init__(self, cfg: dict, checkpointing: bool = False):
        super().__init__()
        v, d = cfg["vision_cfg"], cfg["embed_dim"]
        w, p = v["width"], v["patch_size"]
        n = (v["image_size"] // p) ** 2 + 1
        self.checkpointing = checkpointing
        self.conv1 = nn.Conv2d(3, w, p, p, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(w))
        self.positional_embedding = nn.Parameter(torch.zeros(n, w))
        self.ln_pre, self.ln_post = RefLayerNorm(w), RefLayerNorm(w)
        self.blocks = nn.ModuleList(RefBlock(w, w // 64) for _ in range(v["layers"]))
        self.proj = nn.Parameter(torch.zeros(w, d))
        self.frame_position_embeddings = nn.Embedding(MAX_FRAMES, d)
        heads = cfg["text_cfg"]["width"] // 64  # the reference: text width // 64
        self.head = nn.ModuleList(RefBlock(d, heads, RefTFLayerNorm) for _ in range(6))

    def _run(self, blocks, x):
        for blk in blocks:
            x = checkpoint(blk, x, use_reentrant=False) if self.checkpointing and self.training else blk(x)
        return x

    def forward(self, frames):                                        # (b, t, 3, s, s) normalised
        b, t = frames.shape[:2]
        x = self.conv1(frames.flatten(0, 1)).flatten(2).transpose(1, 2)  # (bt, n-1, w)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = self.ln_pre(torch.cat([cls, x], 1) + self.positional_embedding.to(x.dtype))
        x = self._run(self.blocks, x.permute(1, 0, 2)).permute(1, 0, 2)   # NLD -> LND -> NLD
        x = (self.ln_post(x[:, 0]) @ self.proj).view(b, t, -1)
        y = x + self.frame_position_embeddings.weight[:t].to(x.dtype)
        y = self._run(self.head, y.permute(1, 0, 2)).permute(1, 0, 2)
        return (y.to(x.dtype) + x).mean(1)

    def load_from(self, ours: VideoModel) -> RefVideoModel:
        """Copy the weights of a text4vis VideoModel (same names as OpenAI/Text4Vis)."""
        sd = {k[len("visual."):]: v for k, v in ours.state_dict().items() if k.startswith("visual.")}
        mine = {}
        for k, v in sd.items():
            k = k.replace("transformer.resblocks.", "blocks.")
            mine[k] = v
        for k, v in ours.fusion_model.state_dict().items():
            mine[k.replace("transformer.resblocks.", "head.")] = v
        missing, unexpected = self.load_state_dict(mine, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"reference weights do not line up: {missing[:3]} {unexpected[:3]}")
        return self


# ----------------------------------------------------------------------------- timing

def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(fn, device, iters: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / iters


MIN_ITERS, MIN_TIMED_S = 5, 1.0  # below these, one run's ratios are mostly noise (seen: 0.22x at 2, 0.97x at 6)


def reliability_warnings(iters: int, timed_seconds: list[float]) -> list[str]:
    """Sentences saying why a run's figures are unreliable: too few timed iterations, or too little time."""
    out = []
    if iters < MIN_ITERS:
        out.append(f"only {iters} timed iteration{'s' * (iters != 1)}: figures from fewer than {MIN_ITERS} are "
                   f"unreliable (ratios of one run can be off by several times); time more iterations (--iters)")
    if timed_seconds and min(timed_seconds) < MIN_TIMED_S:
        out.append(f"a case was timed for {min(timed_seconds):.2f} s in all: under {MIN_TIMED_S:g} s, timer and "
                   f"warm-up effects dominate; time more iterations (--iters)")
    return out


def _peak(device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def _amp(device, dtype):
    if dtype == torch.float32:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


def bench_model(name: str, frames: int, batch: int, mode: str, device: torch.device, iters: int = 10,
                warmup: int = 3, compile_model: bool = False, cfg: dict | None = None) -> dict:
    """Videos/s of text4vis and the reference on the same random weights and inputs."""
    check_numbers(("frames", frames, 1, head_max_frames("transf")))
    cfg = cfg or model_config(name)
    torch.manual_seed(0)
    clip = build_clip(cfg)
    ours = VideoModel(clip.visual, cfg["embed_dim"], "transf", head_heads=cfg["text_cfg"]["width"] // 64).to(device)
    ref = RefVideoModel(cfg).load_from(ours).to(device)
    size = cfg["vision_cfg"]["image_size"]
    x = torch.randn(batch, frames, 3, size, size, device=device)
    fast = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision_name(device)]
    flops = flops_per_video(cfg, frames) * (3 if mode == "train" else 1)
    peak = _peak(device)
    out: dict = {"model": name, "frames": frames, "batch": batch, "mode": mode, "device": device_name(device),
                 "gflop_per_video": flops / 1e9, "cases": {}}

    timed: list[float] = []
    if not peak:  # fields that cannot be measured here are left out, and said why once
        out.setdefault("not_measured", {})["percent_of_peak"] = "no peak TFLOP/s known for this device"
    if device.type != "cuda":
        out.setdefault("not_measured", {})["peak_memory_gb"] = "measured on CUDA devices only"

    def record(case: str, seconds: float, dtype: torch.dtype, mem: float | None):
        vps = batch / seconds
        tf = vps * flops / 1e12
        timed.append(seconds * iters)
        out["cases"][case] = {"videos_per_s": vps, "tflops": tf, "dtype": str(dtype).replace("torch.", "")}
        if peak:
            out["cases"][case]["percent_of_peak"] = 100 * tf / peak
        if mem is not None:
            out["cases"][case]["peak_memory_gb"] = mem

    def mem_reset():
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)

    def mem_peak():
        return torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None

    embed, out["compiled"] = ours.embed, False
    if compile_model:
        embed, out["compiled"], fallback = compiled_or_eager(ours.embed, x[:1], device, fast)
        if fallback:
            out["compile_fallback"] = fallback

    def run(fn, inputs, dtype):
        with _amp(device, dtype):
            return fn(inputs)

    if mode == "infer":
        ours.eval()
        ref.eval()
        with torch.inference_mode():
            mem_reset()
            record("text4vis", time_it(lambda: run(embed, x, fast), device, iters, warmup), fast, mem_peak())
            mem_reset()
            record("reference_fp32", time_it(lambda: run(ref, x, torch.float32), device, iters, warmup),
                   torch.float32, mem_peak())
            if device.type == "cuda":
                mem_reset()
                record("reference_fp16", time_it(lambda: run(ref, x, torch.float16), device, iters, warmup),
                       torch.float16, mem_peak())
            a = F.normalize(run(embed, x[:2], fast).float(), dim=-1)
            b = F.normalize(run(ref, x[:2], torch.float32).float(), dim=-1)
            out["max_abs_diff_vs_fp32"] = float((a - b).abs().max())
    else:
        classes = F.normalize(torch.randn(400, cfg["embed_dim"], device=device), dim=-1)
        labels = torch.randint(0, 400, (batch,), device=device)
        ours.set_classifier(classes)
        opt = torch.optim.AdamW(ours.parameters(), lr=1e-5, fused=device.type == "cuda")
        ref.checkpointing = True
        ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-5)
        scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
        ours.train()
        ref.train()

        def step_ours():
            with _amp(device, fast):
                loss = F.cross_entropy(ours.logits(embed(x)), labels)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        def step_ref():
            with _amp(device, torch.float16 if device.type == "cuda" else torch.float32):
                emb = F.normalize(ref(x), dim=-1)
                loss = F.cross_entropy(100 * emb @ classes.t(), labels)
            scaler.scale(loss).backward()
            scaler.step(ref_opt)
            scaler.update()
            ref_opt.zero_grad(set_to_none=True)

        mem_reset()
        record("text4vis", time_it(step_ours, device, iters, warmup), fast, mem_peak())
        mem_reset()
        ref_dtype = torch.float16 if device.type == "cuda" else torch.float32
        record(f"reference_{'fp16' if device.type == 'cuda' else 'fp32'}", time_it(step_ref, device, iters, warmup),
               ref_dtype, mem_peak())
    base = out["cases"].get("reference_fp16") or out["cases"].get("reference_fp32")
    for case in out["cases"].values():
        case["ratio_vs_reference"] = case["videos_per_s"] / base["videos_per_s"]
    if warn := reliability_warnings(iters, timed):
        out["warnings"] = warn
    return out


def compiled_or_eager(fn, example, device, dtype):
    """torch.compile(fn), tried once on `example`; where compilation is unavailable (no compiler,
    unsupported platform, ...) the eager function, with the reason."""
    try:
        compiled = torch.compile(fn)
        with torch.no_grad(), _amp(device, dtype):
            compiled(example)
        return compiled, True, None
    except Exception as exc:
        return fn, False, first_line(exc, 160, with_type=True)


# ----------------------------------------------------------------------------- data loading

def make_test_clip(folder: str, seconds: float = 10.0, fps: int = 25, width: int = 426, height: int = 320) -> dict:
    """A 10 s, 25 fps, 426x320 H.264 clip with moving content, and its frames as a JPEG folder
    (the reference's input format)."""
    import av
    from PIL import Image
    n = int(seconds * fps)
    video = os.path.join(folder, "clip.mp4")
    frames_dir = os.path.join(folder, "frames")
    os.makedirs(frames_dir, exist_ok=True)
    # camera-like content: smooth shapes, some texture and sensor noise, moving across the frame
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height * 2, 0:width * 2].astype(np.float32)
    base = np.stack([np.sin(xx / (17 + 9 * c)) * np.cos(yy / (23 + 7 * c)) for c in range(3)], -1) * 90 + 128
    base += rng.normal(0, 6, base.shape)
    base = np.clip(base, 0, 255).astype(np.uint8)
    with av.open(video, "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        for i in range(n):
            img = np.ascontiguousarray(base[i % height:i % height + height, (2 * i) % width:(2 * i) % width + width])
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
            Image.fromarray(img).save(os.path.join(frames_dir, f"img_{i + 1:05d}.jpg"), quality=90)
        for pkt in s.encode():
            out.mux(pkt)
    return {"video": video, "frames": frames_dir, "num_frames": n}


def bench_data(frames: int = 8, iters: int = 10, input_size: int = 224, rounds: int = 3) -> dict:
    """Clips/s on ONE core: reference frame-folder loader vs text4vis on the video file vs a full decode."""
    import av
    from PIL import Image
    from torchvision import transforms as T

    from .. import sampling, transforms
    from ..video import read_frames
    torch.set_num_threads(1)
    mean, std = transforms.OPENAI_MEAN, transforms.OPENAI_STD
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_test_clip(tmp)
        n = clip["num_frames"]
        rng = np.random.default_rng(0)
        ref_tf = T.Compose([T.Resize(256), T.RandomResizedCrop(input_size), T.ToTensor(), T.Normalize(mean, std)])

        def reference():
            idx = sampling.segment_indices(n, frames, rng)
            imgs = [Image.open(os.path.join(clip["frames"], f"img_{i + 1:05d}.jpg")).convert("RGB") for i in idx]
            return torch.stack([ref_tf(im) for im in imgs])

        train_tf = transforms.TrainTransform(input_size)
        gen = torch.Generator().manual_seed(0)

        def ours_video():
            arr = read_frames(clip["video"], lambda m: sampling.segment_indices(m, frames, rng), threads=1)[0]
            return transforms.normalize(train_tf(transforms.to_tensor(arr), gen))

        from ..prepare import convert_video
        from ..video import read_frame_zip
        prepared = os.path.join(tmp, "clip.mp4.frames.zip")
        convert_video(clip["video"], prepared)

        def ours_prepared():
            arr = read_frame_zip(prepared, lambda m: sampling.segment_indices(m, frames, rng))[0]
            return transforms.normalize(train_tf(transforms.to_tensor(arr), gen))

        def full_decode():  # one thread, like the loaders (per-core figures)
            with av.open(clip["video"]) as c:
                c.streams.video[0].codec_context.thread_count = 1
                for _ in c.decode(video=0):
                    pass

        result = {"frames": frames, "clip": "10 s, 25 fps, 426x320 H.264", "cases": {},
                  "prepared_mb_per_hour": os.path.getsize(prepared) / 1e6 * 360,
                  "video_mb_per_hour": os.path.getsize(clip["video"]) / 1e6 * 360}
        cases = (("reference_jpeg_folder", reference), ("text4vis_video", ours_video),
                 ("text4vis_prepared_frames", ours_prepared), ("pyav_full_decode", full_decode))
        best = {case: float("inf") for case, _ in cases}
        for _ in range(rounds):  # interleaved rounds, best of each: robust to a busy machine
            for case, fn in cases:
                best[case] = min(best[case], time_it(fn, torch.device("cpu"), iters, 1))
        for case, _ in cases:
            result["cases"][case] = {"clips_per_s_per_core": 1.0 / best[case]}
        base = result["cases"]["reference_jpeg_folder"]["clips_per_s_per_core"]
        for c in result["cases"].values():
            c["ratio_vs_reference"] = c["clips_per_s_per_core"] / base
        if warn := reliability_warnings(iters, [best[case] * iters for case, _ in cases]):
            result["warnings"] = warn
    return result
