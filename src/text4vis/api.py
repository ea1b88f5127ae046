"""The public API: `load(...)` returns a `Recognizer` with `predict(paths)` and `encode_video(frames)`.

    import text4vis
    rec = text4vis.load(clip="ViT-B/16", labels="k400")                     # zero-shot CLIP
    rec = text4vis.load(checkpoint="k400-vitb-16-f8.pt", clip="ViT-B/16")   # original Text4Vis zoo
    rec = text4vis.load(checkpoint="runs/x/best.safetensors")               # text4vis: self-contained
    rec.predict(["clip.mp4"], topk=5, views="4x3")
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch

from . import checkpoints, classifiers, engine
from .checkpoints import DEFAULT_CLIP, load_video_model
from .classifiers import Classifier, ClassifierError
from .datasets import Sample, TestDataset
from .devices import pick_device, precision_name
from .errors import DeviceError  # noqa: F401  (re-exported: the error family lives in errors.py)
from .labels import load_labels
from .model import VideoModel
from .sampling import parse_views
from .towers import Towers, WeightsError, load_towers  # noqa: F401  (load_towers re-exported)
from .video import find_videos

DEFAULT_LABELS = "k400"
__all__ = ["load", "Recognizer", "pick_device", "DEFAULT_CLIP", "DEFAULT_LABELS"]


@dataclass
class Recognizer:
    model: VideoModel
    labels: list[str]
    towers: Towers | None                      # None when a checkpoint carries no text tower
    num_frames: int = 8
    classifier_meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    device: torch.device = torch.device("cpu")
    image_size: int = 0                        # crop size the model was trained at (0: the towers' own)
    precision: str = "auto"                    # GPU autocast: auto (bf16 where supported), bf16, fp16, fp32
    video_backend: Any = None                  # runs the video model instead of `model` (deploy.OnnxVideoModel)

    @property
    def input_size(self) -> int:
        if self.image_size:
            return int(self.image_size)
        return self.towers.input_size if self.towers else int(self.classifier_meta.get("input_size", 224))

    def set_classifier(self, cls: Classifier) -> None:
        if cls.dim != self.model.embed_dim and self.model.proj is None:
            raise ClassifierError(f"classifier width {cls.dim} differs from the video embedding width "
                                  f"{self.model.embed_dim} and this model has no projection for it")
        if self.model.proj is not None and cls.dim != self.model.proj.out_features:
            raise ClassifierError(f"classifier width {cls.dim} differs from this model's classifier width "
                                  f"{self.model.proj.out_features}")
        self.model.set_classifier(cls.weight.to(self.device))
        self.labels, self.classifier_meta = list(cls.labels), dict(cls.meta)

    def use_labels(self, labels: list[str], prompts=classifiers.DEFAULT_PROMPTS) -> None:
        """Swap in a CLIP-text classifier for another label set (zero-shot)."""
        if self.towers is None:
            raise WeightsError(f"{self.source}: has no text tower to build a classifier for new labels; pass clip=")
        self.set_classifier(classifiers.text_classifier(self.towers, labels, prompts))

    @torch.no_grad()
    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [B, T, 3, S, S] (or [T, 3, S, S]) -> L2-normalised video embeddings [B, D]."""
        if frames.dim() == 4:
            frames = frames.unsqueeze(0)
        if self.video_backend is not None:
            return self.video_backend.encode_video(frames)
        self.model.eval()
        with engine.autocast(self.device, self.precision):
            return self.model.encode_video(frames.to(self.device)).float()

    def predict(self, paths, topk: int = 5, views: str = "1x1", batch_size: int = 4, workers: int | None = None,
                progress: bool = False, with_embedding: bool = False) -> list[dict]:
        """One record per input video, in input order: {"video", "top": [{"label", "score"}]} or
        {"video", "error"}. Folders are searched recursively for video files; a folder that holds none
        is one record with an error. See `predict_iter` to get each record as soon as it is done."""
        return list(self.predict_iter(paths, topk, views, batch_size, workers, progress, with_embedding))

    def predict_iter(self, paths, topk: int = 5, views: str = "1x1", batch_size: int = 4,
                     workers: int | None = None, progress: bool = False, with_embedding: bool = False):
        """`predict`, one record at a time: each record is yielded as soon as it and every record before
        it are done, in input order (so a consumer that stops early keeps a prefix of the answer)."""
        clips, crops = parse_views(views)
        inputs = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        items: list[tuple[str, bool]] = []           # (path, is an empty folder) in input order
        for p in inputs:
            found = find_videos([p])
            items.extend([(str(p), True)] if os.path.isdir(p) and not found else [(f, False) for f in found])
        files = [p for p, empty in items if not empty]
        ds = TestDataset([Sample(p, -1, None, p) for p in files], self.num_frames, self.input_size, clips, crops)
        weight = self.model.classifier
        k = min(topk, len(self.labels))
        done: dict[int, dict] = {}                   # file index -> record, until its turn comes
        position, next_file = 0, 0                   # next item to yield; index of the file it would be

        def ready():
            nonlocal position, next_file
            while position < len(items):
                path, empty = items[position]
                if empty:
                    yield {"video": path, "error": "a folder without video files"}
                elif next_file in done:
                    yield done.pop(next_file)
                    next_file += 1
                else:
                    return
                position += 1

        model = self.video_backend or self.model     # ONNX Runtime when runtime="onnx"
        for indices, emb, failed in engine.iter_embeddings(model, ds, self.device, batch_size, workers,
                                                           progress, precision=self.precision):
            for i, error in failed:
                done[i] = {"video": files[i], "error": error}
            scores = engine.scores_from_embeddings(emb, weight) if len(indices) else None
            for row, i in enumerate(indices):
                top = torch.sort(scores[row], descending=True, stable=True)  # ties: the lower class id first
                rec = {"video": files[i], "top": [{"label": self.labels[j], "score": round(float(v), 6)}
                                                  for v, j in zip(top.values[:k].tolist(), top.indices[:k].tolist())]}
                if with_embedding:
                    rec["embedding"] = [round(float(x), 6) for x in emb[row].tolist()]
                done[i] = rec
            yield from ready()
        yield from ready()


    def embed_windows(self, path, window: float = 4.0, stride: float = 2.0, frames: int | None = None,
                      batch_size: int = 8) -> dict:
        """Normalised embeddings of the time windows of one video (see `timeline.embed_windows`):
        {"duration", "fps", "num_frames", "windows": [{"start", "end", "embedding": float32 [D]}]}."""
        from .timeline import embed_windows
        return embed_windows(self, str(path), window, stride, frames, batch_size)

    def timeline(self, path, window: float = 4.0, stride: float = 2.0, frames: int | None = None, topk: int = 5,
                 min_score: float = 0.0, smooth: int = 1, batch_size: int = 8, progress: bool = False) -> dict:
        """What happens when in one video of any length: {"video", "duration", "fps", "windows": [{"start",
        "end", "top"}], "segments": [{"label", "start", "end", "score"}]} (see `timeline.timeline`)."""
        from .timeline import timeline
        return timeline(self, str(path), window, stride, frames, topk, min_score, smooth, batch_size,
                        progress=progress)


def load(checkpoint: str | None = None, clip: str | None = None, labels: str | list[str] | None = None,
         prompts=None, classifier: str | Classifier | None = None, head: str | None = None,
         frames: int | None = None, device: str = "auto", precision: str = "auto", runtime: str = "torch") -> Recognizer:
    """Build a Recognizer.

    checkpoint  a text4vis checkpoint (self-contained), an original Text4Vis checkpoint (needs
                `clip` for the text tower and architecture), a converted folder (zoo.convert), an
                `hf-hub:ORG/NAME[@REVISION]` repository holding one, or None for zero-shot CLIP.
    clip        CLIP towers (see towers.py); default ViT-B/16 when nothing else says.
    labels      built-in name, label file, or a list of names; default: the checkpoint's labels, else k400.
    prompts     prompt templates for a text classifier (default "a video of a person {}.").
    classifier  a stored classifier (a file, or a Classifier already read); overrides labels/prompts.
    head        temporal head for zero-shot CLIP (default mean); checkpoints say their own.
    frames      frames per clip T (default: the checkpoint's, else 8).
    device      auto (this process's GPU, else the CPU), cpu, cuda, cuda:1, mps.
    precision   GPU autocast: auto (bf16 where supported), bf16, fp16, or fp32 (the reference's test
                precision); the CPU computes in fp32.
    runtime     "torch", or "onnx": the video model runs on ONNX Runtime's CPU provider from the
                checkpoint's exported model.onnx (deploy.export_onnx); scoring is unchanged.
    """
    dev = pick_device(device)
    if runtime not in ("torch", "onnx"):
        from .errors import UsageError
        raise UsageError(f"runtime={runtime!r}: choose torch or onnx")
    spec = checkpoint
    prompts = list(prompts) if prompts else list(classifiers.DEFAULT_PROMPTS)
    names = load_labels(labels, "labels") if isinstance(labels, str) else (list(labels) if labels else None)
    if checkpoint:  # a file, a converted folder or hf-hub:ORG/NAME[@REVISION] -> a local file
        checkpoint = checkpoints.resolve_checkpoint(checkpoint)
    loaded = load_video_model(checkpoint, clip, head)
    model = loaded.model
    rec = Recognizer(model, loaded.labels or [], loaded.towers, frames or loaded.num_frames or 8,
                     loaded.classifier_meta, loaded.source, dev, loaded.image_size)
    if loaded.labels is None and names is None and classifier is None:
        names = load_labels(DEFAULT_LABELS)
    precision_name(dev, precision)  # an unknown value is a ValueError before any work
    rec.precision = precision
    limit = getattr(getattr(model.fusion_model, "frame_position_embeddings", None), "num_embeddings", None)
    if limit is not None and rec.num_frames > limit:
        raise WeightsError(f"{rec.source}: its transf head takes at most {limit} frames per clip, "
                           f"not frames={rec.num_frames}")
    model.to(dev).eval()
    if rec.towers is not None:
        rec.towers.clip.to(dev).eval()
    if isinstance(classifier, Classifier) or classifier:
        rec.set_classifier(classifier if isinstance(classifier, Classifier) else classifiers.load_classifier(classifier))
    elif names is not None and names != rec.labels:  # a checkpoint's own classifier is kept for its own labels
        rec.use_labels(names, prompts)
    if runtime == "onnx":
        from . import deploy
        if not spec:
            raise WeightsError("runtime='onnx' needs checkpoint= (whose exported model.onnx runs the video model)")
        rec.video_backend = deploy.OnnxVideoModel(deploy.onnx_path(spec))
    return rec
