"""CPU deployment: the video model as ONNX, run by ONNX Runtime's CPU provider.

export_onnx(checkpoint)   writes model.onnx next to the checkpoint (in a converted folder, or
                          <file>.onnx beside a file): normalised float frames [B, T, 3, S, S] ->
                          `embedding` (L2-normalised video embedding [B, D]) and `raw_embedding`
                          (before normalisation: what multi-view averaging needs). Batch and T are
                          dynamic (T up to the head's 77 positions). The export is checked against
                          PyTorch on a real clip (cosine >= 0.9999) before it is kept.
OnnxVideoModel            the session as a Recognizer's video-embedding backend (load(runtime="onnx")):
                          uint8 frames are normalised with the model's mean/std first, as VideoModel
                          does; classifier scoring stays in PyTorch, so every output is unchanged.
bench_onnx                PyTorch eager vs ONNX Runtime (optionally int8 dynamic quantisation) on the
                          same weights, inputs and thread count.

The exporter is torch.onnx's TorchScript one (dynamo=False): on torch 2.14 it exports the open_clip
towers in under a second for tiny models, where the dynamo exporter takes ~15 s (both agree with PyTorch).
"""
from __future__ import annotations

import json
import os
import tempfile
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .errors import UsageError, WeightsError, check_numbers
from .onnx_runtime import ONNX_FILE, OnnxVideoModel, import_onnxruntime, int8_path, onnx_path

PARITY_MIN_COS = 0.9999
OPSET = 17


class EmbeddingGraph(nn.Module):
    """What is exported: normalised frames -> (normalised embedding, raw embedding)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor):
        raw = self.model.embed(frames)
        return F.normalize(raw, dim=-1), raw


def _export(model, path: str, tmp: str, frames: int, size: int, meta: dict) -> None:
    """Export to `tmp` (named `path` in messages); the caller moves it into place once it passes parity."""
    import onnx
    example = torch.zeros(2, frames, 3, size, size)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    # nn.MultiheadAttention's inference fast path (no grad, even head count) is one fused op the
    # exporter cannot translate: trace the plain computation
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # tracer notes on shape arithmetic, the exporter's deprecation note
                torch.onnx.export(EmbeddingGraph(model).eval(), (example,), tmp, input_names=["frames"],
                                  output_names=["embedding", "raw_embedding"], opset_version=OPSET, dynamo=False,
                                  dynamic_axes={"frames": {0: "batch", 1: "time"}, "embedding": {0: "batch"},
                                                "raw_embedding": {0: "batch"}})
        except Exception as exc:  # an operator the exporter cannot translate, ...: one line, not its traceback
            from .errors import first_line
            raise WeightsError(f"{path}: ONNX export failed ({type(exc).__name__}: {first_line(exc, 200)})") from None
        proto = onnx.load(tmp, load_external_data=False)
        entry = proto.metadata_props.add()
        entry.key, entry.value = "text4vis", json.dumps(meta)
        onnx.save(proto, tmp)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)


def parity_views(rec, video: str | None, clips: int = 2) -> tuple[torch.Tensor, str]:
    """uint8 views [clips, T, 3, S, S] of a real clip (`video`), or of a rendered synthetic one."""
    from .datasets import Sample, TestDataset
    if video is None:
        from . import synthetic
        rng = synthetic.np.random.default_rng(0)
        frames, _ = synthetic.render_clip("circle", "moving right", rng, num_frames=4 * rec.num_frames, size=256)
        with tempfile.TemporaryDirectory(prefix="text4vis-parity-") as tmpdir:
            path = os.path.join(tmpdir, "synthetic_circle_moving_right.mp4")
            synthetic.write_video(path, frames)
            views, _ = parity_views(rec, path, clips)
        return views, "a rendered synthetic clip (circle moving right)"
    _, views, err = TestDataset([Sample(video, -1, None, video)], rec.num_frames, rec.input_size, clips, 1)[0]
    if views is None:
        raise UsageError(f"video={video}: cannot be used for the parity check ({err})")
    return views, video


def export_onnx(checkpoint: str, out: str | None = None, clip: str | None = None, frames: int | None = None,
                video: str | None = None, quantize: str | None = None) -> dict:
    """Export a checkpoint's video model to ONNX (see the module docstring) and check it against
    PyTorch on `video` (a real clip; default: a rendered synthetic clip). `quantize="int8"` also
    writes <out>.int8.onnx (dynamic quantisation) and reports its cosine to PyTorch.
    Returns {"path", "video", "cosine_min", "seconds", ...}.

    The file is written only once it passes the parity check (a failed export, or a `video` that does
    not decode, leaves an existing model.onnx as it was). Its metadata records the SHA-256 of the
    checkpoint file it was exported from, and `load(runtime="onnx")` refuses it once they differ."""
    from .api import load
    from .checkpoints import resolve_checkpoint
    from .files import sha256_file
    ort = import_onnxruntime()
    rec = load(checkpoint=checkpoint, clip=clip, frames=frames, device="cpu")
    out = out or onnx_path(checkpoint)
    if checkpoint.startswith("hf-hub:") and out == onnx_path(checkpoint):
        raise UsageError(f"checkpoint={checkpoint}: give out= (a hub snapshot is read-only)")
    views, used = parity_views(rec, video)  # before any file is written: a bad clip changes nothing
    model = rec.model.eval()
    meta = {"input": "normalised float32 frames [B, T, 3, S, S] (uint8 / 255, minus mean, divided by std)",
            "mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist(), "num_frames": rec.num_frames,
            "input_size": rec.input_size, "max_frames": model.max_frames,
            "checkpoint": os.path.basename(os.path.normpath(checkpoint)), "labels": len(rec.labels),
            "weights_sha256": sha256_file(resolve_checkpoint(checkpoint))}
    tmp = f"{out}.tmp{os.getpid()}"
    try:
        t0 = time.perf_counter()
        _export(model, out, tmp, rec.num_frames, rec.input_size, meta)
        seconds = time.perf_counter() - t0
        result = {"path": out, "video": used, "frames": rec.num_frames, "input_size": rec.input_size,
                  "seconds": round(seconds, 1), "bytes": os.path.getsize(tmp)}
        cos = parity(model, OnnxVideoModel(tmp, ort=ort), views)
        result["cosine_min"] = cos
        if cos < PARITY_MIN_COS:
            os.replace(tmp, out + ".rejected")
            raise WeightsError(f"{out}: the ONNX model disagrees with PyTorch on {used} (cosine {cos:.6f} < "
                               f"{PARITY_MIN_COS}); not written (kept as {out}.rejected for inspection)")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    if quantize:
        qpath = quantize_int8(out)
        result["int8_path"], result["int8_bytes"] = qpath, os.path.getsize(qpath)
        result["int8_cosine_min"] = parity(model, OnnxVideoModel(qpath, ort=ort), views)
    return result


@torch.no_grad()
def parity(model, backend: OnnxVideoModel, views: torch.Tensor) -> float:
    """Smallest cosine between PyTorch's and the ONNX model's embeddings of the views (one batch)."""
    ref = model.encode_video(views)
    got = backend.encode_video(views)
    return float(F.cosine_similarity(ref, got, dim=-1).min())


def quantize_int8(path: str) -> str:
    """ONNX Runtime dynamic quantisation (int8 weights, activations quantised on the fly) -> <path>.int8.onnx."""
    import_onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic
    import logging
    out = int8_path(path)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to run shape pre-processing first is printed on the root logger
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(path, out, weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    return out


# ----------------------------------------------------------------------------- bench

def _synthetic_views(frames: int, size: int, count: int) -> torch.Tensor:
    """uint8 [count, T, 3, S, S]: rendered synthetic clips, a different shape / motion each."""
    from . import synthetic
    views = []
    for i in range(count):
        rng = synthetic.np.random.default_rng(i)
        shape = synthetic.SHAPES[i % len(synthetic.SHAPES)]
        motion = synthetic.MOTIONS[(i * 5) % len(synthetic.MOTIONS)]
        clip, _ = synthetic.render_clip(shape, motion, rng, num_frames=frames, size=size)
        views.append(torch.from_numpy(clip).permute(0, 3, 1, 2))
    return torch.stack(views)


@torch.no_grad()
def bench_onnx(name: str, frames: int, batch: int, iters: int = 10, warmup: int = 3, quantize: str | None = None,
               cfg: dict | None = None, rounds: int = 3, clips: int = 16) -> dict:
    """Videos/s of PyTorch eager and ONNX Runtime (CPU provider; with quantize="int8" also its dynamic
    int8 model) for the video model of architecture `name` (random weights, transf head): same
    weights, same inputs, same thread count, interleaved `rounds` (best of each). Agreement of the
    ONNX models with PyTorch: cosine of the embeddings of `clips` rendered synthetic clips and top-1
    agreement under a random 400-class classifier."""
    from .bench.model import model_config, time_it
    from .devices import device_name
    from .temporal import head_max_frames
    check_numbers(("frames", frames, 1, head_max_frames("transf")))
    from .model import VideoModel
    from .towers import build_clip
    import_onnxruntime()
    cfg = cfg or model_config(name)
    torch.manual_seed(0)
    model = VideoModel(build_clip(cfg).visual, cfg["embed_dim"], "transf",
                       head_heads=cfg["text_cfg"]["width"] // 64).eval()
    size = cfg["vision_cfg"]["image_size"]
    meta = {"mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist(), "num_frames": frames,
            "input_size": size, "max_frames": model.max_frames}
    with tempfile.TemporaryDirectory(prefix="text4vis-bench-onnx-") as folder:  # sessions hold the model in memory
        path = os.path.join(folder, ONNX_FILE)
        t0 = time.perf_counter()
        _export(model, path, path, frames, size, meta)
        out: dict = {"model": name, "frames": frames, "batch": batch, "mode": "infer", "runtime": "onnx",
                     "device": device_name(torch.device("cpu")), "threads": torch.get_num_threads(),
                     "export_s": round(time.perf_counter() - t0, 1), "cases": {}}
        backends = {"onnxruntime_fp32": OnnxVideoModel(path)}
        if quantize:
            backends["onnxruntime_int8"] = OnnxVideoModel(quantize_int8(path))
    x = torch.randn(batch, frames, 3, size, size)
    cpu = torch.device("cpu")
    fns = {"pytorch_eager": lambda: model.embed(x), **{k: (lambda b=b: b.embed(x)) for k, b in backends.items()}}
    best = {k: float("inf") for k in fns}
    for r in range(rounds):  # interleaved: a load change on the shared machine hits every case alike
        for case, fn in fns.items():
            best[case] = min(best[case], time_it(fn, cpu, iters, warmup if r == 0 else 1))
    for case, seconds in best.items():
        out["cases"][case] = {"videos_per_s": batch / seconds, "ratio_vs_pytorch": best["pytorch_eager"] / seconds}
    out["pytorch_videos_per_s"] = out["cases"]["pytorch_eager"]["videos_per_s"]
    out["onnx_videos_per_s"] = out["cases"]["onnxruntime_fp32"]["videos_per_s"]
    out["ratio"] = out["cases"]["onnxruntime_fp32"]["ratio_vs_pytorch"]
    # agreement on rendered clips, scored like predict (100 x cosine against unit class rows)
    views = _synthetic_views(frames, size, clips)
    classes = F.normalize(torch.randn(400, model.embed_dim, generator=torch.Generator().manual_seed(1)), dim=-1)
    ref = model.encode_video(views)
    for case, backend in backends.items():
        got = backend.encode_video(views)
        tag = case.replace("onnxruntime_", "")
        out[f"{tag}_cosine_min"] = float(F.cosine_similarity(ref, got, dim=-1).min())
        out[f"{tag}_top1_agreement"] = float(((ref @ classes.t()).argmax(1) == (got @ classes.t()).argmax(1)).float().mean())
    if quantize:
        out["ratio_int8"] = out["cases"]["onnxruntime_int8"]["ratio_vs_pytorch"]
    out["agreement_clips"] = clips
    return out
