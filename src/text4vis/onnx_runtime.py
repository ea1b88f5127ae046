"""ONNX Runtime as a Recognizer's video-embedding backend (`load(runtime="onnx")`).

`OnnxVideoModel` runs a model.onnx written by `deploy.export_onnx` on ONNX Runtime's CPU provider, with the
part of VideoModel's interface that embedding uses; uint8 frames are normalised with the model's mean/std
first, as VideoModel does, and classifier scoring stays in PyTorch, so every output is unchanged.
"""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from .errors import UsageError, WeightsError, first_line

if TYPE_CHECKING:
    import torch

ONNX_FILE = "model.onnx"
# runtime= of load() (here, in a module that imports no torch at its top, so the CLI's parsers can list them): PyTorch, or ONNX Runtime on the exported model (fp32 model.onnx, or its int8
# dynamically quantised model.int8.onnx from `export --quantize int8`)
RUNTIMES = ("torch", "onnx", "onnx-int8")


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise UsageError("runtime='onnx' needs ONNX Runtime: pip install 'text4vis[onnx]'") from None
    return onnxruntime


def onnx_path(checkpoint: str, int8: bool = False) -> str:
    """Where a checkpoint's ONNX model lives: model.onnx in a converted folder or hub repository,
    <name>.onnx beside a checkpoint file; `int8`: the quantised model.int8.onnx / <name>.int8.onnx."""
    from .checkpoints import HUB_PREFIX, resolve_checkpoint
    name = int8_path(ONNX_FILE) if int8 else ONNX_FILE
    if checkpoint.startswith(HUB_PREFIX):
        return resolve_checkpoint(checkpoint, name)
    if os.path.isdir(checkpoint):
        return os.path.join(checkpoint, name)
    path = os.path.splitext(checkpoint)[0] + ".onnx"
    return int8_path(path) if int8 else path


def int8_path(path: str) -> str:
    """model.onnx -> model.int8.onnx (where `export --quantize int8` writes the quantised model)."""
    return os.path.splitext(path)[0] + ".int8.onnx"


class OnnxVideoModel:
    """An ONNX Runtime CPU session with the part of VideoModel's interface that embedding uses
    (embed, encode_video, eval, proj, embed_dim), so Recognizer and engine.embed_dataset run on it."""

    proj = None

    def __init__(self, path: str, threads: int | None = None, ort=None, weights_sha256: str | None = None):
        """`weights_sha256`: the SHA-256 of the checkpoint file this model must have been exported from;
        a model exported from other weights (a retrained or re-converted checkpoint) is refused."""
        import torch
        ort = ort or import_onnxruntime()
        if not os.path.isfile(path):
            raise WeightsError(f"{path}: no ONNX model there; export one first with deploy.export_onnx(checkpoint) "
                               f"(the `export` command)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise WeightsError(f"{path}: not a loadable ONNX model ({first_line(exc, 160)})") from None
        self.path = path
        self.meta = json.loads(self.session.get_modelmeta().custom_metadata_map.get("text4vis", "{}"))
        if "mean" not in self.meta:
            raise WeightsError(f"{path}: not an ONNX model exported by text4vis (no text4vis metadata)")
        if weights_sha256 is not None and self.meta.get("weights_sha256") != weights_sha256:
            source = self.meta.get("checkpoint", "the checkpoint")
            reason = ("records no hash of the weights it was exported from" if "weights_sha256" not in self.meta
                      else "was exported from other weights than the checkpoint's now")
            raise WeightsError(f"{path}: stale: it {reason} ({source}); re-export it with "
                               f"deploy.export_onnx(checkpoint) (the `export` command)")
        self.mean = torch.tensor(self.meta["mean"], dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(self.meta["std"], dtype=torch.float32).view(3, 1, 1)
        self.embed_dim = int(self.session.get_outputs()[0].shape[-1])

    def eval(self) -> OnnxVideoModel:
        return self

    def _run(self, frames: torch.Tensor, output: str) -> torch.Tensor:
        import torch
        if frames.dim() == 4:
            frames = frames.unsqueeze(0)
        limit = self.meta.get("max_frames")
        if limit and frames.shape[1] > limit:
            raise UsageError(f"{self.path}: the transf head takes at most {limit} frames per clip, not {frames.shape[1]}")
        if frames.dtype == torch.uint8:  # as VideoModel.normalize
            frames = (frames.cpu().float().div_(255.0) - self.mean) / self.std
        x = frames.detach().cpu().float().contiguous().numpy()
        return torch.from_numpy(self.session.run([output], {"frames": x})[0])

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, T, 3, S, S] (uint8, or normalised float) -> raw video embeddings [B, D]."""
        return self._run(frames, "raw_embedding")

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, T, 3, S, S] -> L2-normalised video embeddings [B, D]."""
        return self._run(frames, "embedding")
