"""The public API: `load(...)` returns a `Recognizer` with `predict(paths)` and `encode_video(frames)`.

    import text4vis
    rec = text4vis.load(clip="ViT-B/16", labels="k400")                     # zero-shot CLIP
    rec = text4vis.load(checkpoint="k400-vitb-16-f8.pt", clip="ViT-B/16")   # original Text4Vis zoo
    rec = text4vis.load(checkpoint="runs/x/best.safetensors")               # text4vis: self-contained
    rec.predict(["clip.mp4"], topk=5, views="4x3")
"""
from __future__ import annotations

from .errors import DeviceError  # noqa: F401  (re-exported: the error family lives in errors.py)

import os
from dataclasses import dataclass, field
from typing import Any

import torch

from . import checkpoints, classifiers, engine
from .classifiers import Classifier, ClassifierError
from .datasets import Sample, TestDataset
from .labels import load_labels
from .model import VideoModel
from .sampling import parse_views
from .temporal import head_from_state_dict
from .towers import Towers, WeightsError, load_towers, towers_from_config
from .video import find_videos

DEFAULT_CLIP = "ViT-B/16"
DEFAULT_LABELS = "k400"




def pick_device(device: str = "auto") -> torch.device:
    if device in (None, "auto"):
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")  # torchrun: one GPU per process
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise DeviceError(f"--device {device}: not a device name (cpu, cuda, cuda:1, ... or auto)") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"--device {device}: no CUDA GPU is usable on this machine (use --device cpu)")
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"--device {device}: this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"--device {device}: Apple MPS is not available on this machine (use --device cpu)")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"--device {device}: text4vis runs on cpu, cuda or mps")
    return dev


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
            raise WeightsError(f"{self.source}: has no text tower to build a classifier for new labels; pass --clip")
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
        {"video", "error"}. Folders are searched recursively for video files."""
        clips, crops = parse_views(views)
        files = find_videos([paths] if isinstance(paths, (str, os.PathLike)) else list(paths))
        ds = TestDataset([Sample(p, -1, None, p) for p in files], self.num_frames,
                         self.input_size, clips, crops)
        result = engine.embed_dataset(self.video_backend or self.model, ds, self.device, batch_size=batch_size,
                                      workers=workers, progress=progress, precision=self.precision)
        scores = engine.scores_from_embeddings(result.embeddings, self.model.classifier)
        records: list[dict] = []
        row = {idx: r for r, idx in enumerate(result.indices)}
        errors = dict(result.errors)
        k = min(topk, len(self.labels))
        for i, p in enumerate(files):
            if i in errors:
                records.append({"video": p, "error": errors[i]})
                continue
            s = scores[row[i]]
            top = torch.topk(s, k)
            rec = {"video": p, "top": [{"label": self.labels[j], "score": round(float(v), 6)}
                                       for v, j in zip(top.values.tolist(), top.indices.tolist())]}
            if with_embedding:
                rec["embedding"] = [round(float(x), 6) for x in result.embeddings[row[i]].tolist()]
            records.append(rec)
        return records


def load(checkpoint: str | None = None, clip: str | None = None, labels: str | list[str] | None = None,
         prompts=None, classifier: str | None = None, head: str | None = None, frames: int | None = None,
         device: str = "auto", precision: str = "auto", runtime: str = "torch") -> Recognizer:
    """Build a Recognizer.

    checkpoint  a text4vis checkpoint (self-contained), an original Text4Vis checkpoint (needs
                --clip for the text tower and architecture), a converted folder (zoo.convert), an
                `hf-hub:ORG/NAME[@REVISION]` repository holding one, or None for zero-shot CLIP.
    clip        --clip value (see towers.py); default ViT-B/16 when nothing else says.
    labels      built-in name, label file, or a list of names; default: the checkpoint's labels, else k400.
    prompts     prompt templates for a text classifier (default "a video of a person {}.").
    classifier  a stored classifier file (overrides labels/prompts).
    head        temporal head for zero-shot CLIP (default mean); checkpoints say their own.
    frames      frames per clip T (default: the checkpoint's, else 8).
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
    names = load_labels(labels) if isinstance(labels, str) else (list(labels) if labels else None)
    if checkpoint:  # a file, a converted folder or hf-hub:ORG/NAME[@REVISION] -> a local file
        checkpoint = checkpoints.resolve_checkpoint(checkpoint)

    if checkpoint and checkpoints.is_text4vis_checkpoint(checkpoint):
        meta, tensors = checkpoints.read_text4vis(checkpoint)
        cfg = meta["clip"]
        image_size = int(meta.get("settings", {}).get("input_size") or 0)
        with_text = bool(meta.get("has_text_tower", True))
        towers = towers_from_config(cfg["config"], {**checkpoints.split_prefix(tensors, "text."),
                                                    **{"visual." + k: v for k, v in checkpoints.split_prefix(tensors, "model.visual.").items()}},
                                    checkpoint, cfg.get("tokenizer", "openai"), cfg["mean"], cfg["std"], with_text)
        towers.source = cfg["source"]
        image_size = image_size or towers.input_size  # the checkpoint's image tower, whatever --clip says
        if clip:  # an explicit --clip replaces the stored text tower (for new label sets)
            other = load_towers(clip)
            if other.embed_dim != towers.embed_dim:
                raise WeightsError(f"checkpoint {checkpoint} has embedding width {towers.embed_dim} but --clip {clip} "
                                   f"has {other.embed_dim}")
            other.clip.visual = towers.clip.visual
            towers = other
        model = VideoModel(towers.clip.visual, meta["embed_dim"], meta["head"], mean=towers.mean, std=towers.std,
                           head_heads=meta.get("head_heads"))  # absent in older files: embed_dim // 64
        model_state = checkpoints.split_prefix(tensors, "model.")
        cls_rows = model_state.pop("classifier", None)
        if "proj.weight" in model_state:
            model.set_classifier(torch.zeros(1, model_state["proj.weight"].shape[0]))
        checkpoints.load_video_weights(model, model_state, checkpoint)
        if cls_rows is not None and cls_rows.shape[0] != len(meta["labels"]):
            raise WeightsError(f"{checkpoint}: damaged text4vis checkpoint ({cls_rows.shape[0]} classifier rows "
                               f"but {len(meta['labels'])} label names)")
        rec = Recognizer(model, list(meta["labels"]), towers if meta.get("has_text_tower", True) or clip else None,
                         frames or int(meta["settings"].get("num_frames", 8)), meta.get("classifier", {}),
                         checkpoint, dev, image_size)
        if cls_rows is not None:
            model.set_classifier(cls_rows)
    else:
        # read the checkpoint first: a damaged or refused file is reported as such, not as missing --clip weights
        sd = checkpoints.read_original(checkpoint) if checkpoint else None
        towers = load_towers(clip or DEFAULT_CLIP)
        if checkpoint:
            checkpoints.check_visual_fits(sd, towers.clip.visual.state_dict(), checkpoint, clip or DEFAULT_CLIP)
            kind = head_from_state_dict(sd)
            pos = sd.get("fusion_model.frame_position_embeddings.weight")
            if pos is not None and pos.shape[1] != towers.embed_dim:
                raise WeightsError(f"checkpoint {checkpoint} has embedding width {pos.shape[1]} but --clip "
                                   f"{clip or DEFAULT_CLIP} has {towers.embed_dim}")
            model = VideoModel(towers.clip.visual, towers.embed_dim, kind, mean=towers.mean, std=towers.std,
                               head_heads=towers.head_heads)
            checkpoints.load_video_weights(model, checkpoints.video_weights(sd), checkpoint)
        else:
            model = VideoModel(towers.clip.visual, towers.embed_dim, head or "mean", head_heads=towers.head_heads,
                               logit_scale=float(towers.clip.logit_scale.detach()), mean=towers.mean, std=towers.std)
        rec = Recognizer(model, [], towers, frames or 8, {}, checkpoint or (clip or DEFAULT_CLIP), dev)
        if names is None and classifier is None:
            names = load_labels(DEFAULT_LABELS)

    engine.precision_name(dev, precision)  # an unknown value is a ValueError before any work
    rec.precision = precision
    limit = getattr(getattr(model.fusion_model, "frame_position_embeddings", None), "num_embeddings", None)
    if limit is not None and rec.num_frames > limit:
        raise WeightsError(f"{rec.source}: its transf head takes at most {limit} frames per clip, "
                           f"not {rec.num_frames} (--frames)")
    model.to(dev).eval()
    if rec.towers is not None:
        rec.towers.clip.to(dev).eval()
    if classifier:
        rec.set_classifier(classifiers.load_classifier(classifier))
    elif names is not None and names != rec.labels:  # a checkpoint's own classifier is kept for its own labels
        rec.use_labels(names, prompts)
    if runtime == "onnx":
        from . import deploy
        if not spec:
            raise WeightsError("runtime='onnx' needs checkpoint= (whose exported model.onnx runs the video model)")
        rec.video_backend = deploy.OnnxVideoModel(deploy.onnx_path(spec))
    return rec
