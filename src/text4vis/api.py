"""The public API: `load(...)` returns a `Recognizer` with `predict(paths)` and `encode_video(frames)`.

    import text4vis
    rec = text4vis.load(clip="ViT-B/16", labels="k400")                     # zero-shot CLIP
    rec = text4vis.load(checkpoint="k400-vitb-16-f8.pt", clip="ViT-B/16")   # original Text4Vis zoo
    rec = text4vis.load(checkpoint="runs/x/best.safetensors")               # text4vis: self-contained
    rec.predict(["clip.mp4"], topk=5, views="4x3")
"""
from __future__ import annotations

from .errors import DeviceError, Text4VisWarning, UsageError  # noqa: F401  (re-exported: the error family lives in errors.py)

import os
import warnings
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

# The least value of each numeric parameter of load/predict/classify; the CLI checks its flags with the same
# rule (check_arguments with flag names), so API and CLI refuse the same values.
AT_LEAST = {"topk": 1, "batch_size": 1, "workers": 0, "frames": 1}


def check_arguments(name=lambda param: f"{param}=", **values) -> tuple[int, int] | None:
    """UsageError naming the first value out of range (`name` maps a parameter to how the caller spells it:
    `topk=` in the API, `--topk` on the command line). None values are skipped. With views=, returns its
    (clips, crops)."""
    for param, value in values.items():
        if value is None or param == "views":
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{name(param)} must be a whole number (got {value!r})")
        if value < AT_LEAST[param]:
            raise UsageError(f"{name(param)} must be at least {AT_LEAST[param]} (got {value})")
    if values.get("views") is None:
        return None
    try:
        return parse_views(values["views"], name("views"))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


FRAME_LAYOUTS = "[T, H, W, 3] or [T, 3, H, W], optionally batched [B, T, ...]"


def frames_to_tensor(frames, size: int) -> torch.Tensor:
    """numpy or torch RGB frames in FRAME_LAYOUTS, uint8 0..255 or float 0..1 -> uint8 [B, T, 3, size, size].

    Frames already size x size are used as they are; others are resized (short side) and centre-cropped as
    `predict` does. Anything else is a one-line UsageError naming the expected shape and dtype."""
    import numpy as np
    if isinstance(frames, np.ndarray):
        if frames.dtype.kind not in "uif" or frames.dtype.kind == "f" and frames.dtype.itemsize > 8:
            raise UsageError(f"frames: expected a uint8 or float array, got dtype {frames.dtype}")
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if not isinstance(frames, torch.Tensor):
        raise UsageError(f"frames: expected a numpy array or torch tensor {FRAME_LAYOUTS}, got {type(frames).__name__}")
    shape = tuple(frames.shape)
    if frames.dim() == 4:
        frames = frames.unsqueeze(0)
    if frames.dim() != 5 or 3 not in (frames.shape[2], frames.shape[4]) or 0 in frames.shape:
        raise UsageError(f"frames: expected RGB frames {FRAME_LAYOUTS}, got shape {shape}")
    if frames.shape[2] != 3:  # channels last
        frames = frames.permute(0, 1, 4, 2, 3)
    if frames.is_floating_point():
        low, high = float(frames.min()), float(frames.max())
        if not (0.0 <= low and high <= 1.0):  # also NaN
            raise UsageError(f"frames: float frames must be in 0..1 (got {low:.3g}..{high:.3g}); "
                             f"pass uint8 0..255 frames or divide by 255")
        frames = (frames.float() * 255.0).round_().to(torch.uint8)
    elif frames.dtype != torch.uint8:
        raise UsageError(f"frames: expected uint8 (0..255) or float (0..1) frames, got {frames.dtype}")
    if frames.shape[-2:] == (size, size):
        return frames
    from .transforms import test_views
    return torch.stack([test_views(clip, size, 1)[0] for clip in frames.cpu()])


def _top(scores: torch.Tensor, labels: list[str], k: int) -> list[dict]:
    top = torch.topk(scores, min(k, len(labels)))
    return [{"label": labels[j], "score": round(float(v), 6)} for v, j in zip(top.values.tolist(), top.indices.tolist())]


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
        kind = self.classifier_meta.get("type", "text")
        if kind == "lm":
            raise ClassifierError(
                f"{self.source}: was trained against a language-model (lm) classifier, so new labels need one too: "
                f"build it with `text4vis classifier build --type lm --lm {self.classifier_meta.get('source') or 'NAME'} "
                f"--labels LABELS --out new.safetensors` and pass it as classifier= (--classifier new.safetensors)")
        if kind not in ("text", None):
            raise ClassifierError(
                f"{self.source}: was trained against {'an' if kind[:1] in 'aeiou' else 'a'} {kind} classifier, whose "
                f"rows carry no meaning for other class "
                f"names; new labels need a model trained against a text (or lm) classifier")
        if self.towers is None:
            raise WeightsError(f"{self.source}: has no text tower to build a classifier for new labels; pass the CLIP "
                               f"towers it was trained from as clip= (--clip)")
        self.set_classifier(classifiers.text_classifier(self.towers, labels, prompts))

    @torch.no_grad()
    def encode_video(self, frames) -> torch.Tensor:
        """RGB frames -> L2-normalised video embeddings [B, D] (fp32, on the model's device).

        frames: a numpy array or torch tensor [T, H, W, 3] or [T, 3, H, W] (one video) or [B, T, ...] (a batch),
        uint8 0..255 or float 0..1. Frames of the model's input size are used as they are; others are resized
        and centre-cropped as `predict` does."""
        frames = frames_to_tensor(frames, self.input_size)
        limit = getattr(getattr(self.model.fusion_model, "frame_position_embeddings", None), "num_embeddings", None)
        if limit is not None and frames.shape[1] > limit:
            raise UsageError(f"frames: {frames.shape[1]} frames per video, but this model's transf head takes at "
                             f"most {limit}")
        self.model.eval()
        with engine.autocast(self.device, self.precision):
            return self.model.encode_video(frames.to(self.device)).float()

    def classify(self, frames, topk: int = 5):
        """The in-memory call from frames to scores: top-k [{"label", "score"}] (softmax of 100 x cosine, as
        `predict`). frames as in `encode_video`; one video gives one list, a batch [B, T, ...] a list per video."""
        check_arguments(topk=topk)
        single = getattr(frames, "ndim", 0) == 4
        scores = engine.scores_from_embeddings(self.encode_video(frames).cpu(), self.model.classifier)
        tops = [_top(row, self.labels, topk) for row in scores]
        return tops[0] if single else tops

    def predict(self, paths, topk: int = 5, views: str = "1x1", batch_size: int = 4, workers: int | None = None,
                progress: bool = False, with_embedding: bool = False) -> list[dict]:
        """One record per input video, in input order: {"video", "top": [{"label", "score"}]} or
        {"video", "error"}. `paths`: one path or a list (str or os.PathLike). Folders are searched
        recursively for video files; a folder holding images and no videos is one video (its frames)."""
        clips, crops = check_arguments(topk=topk, views=views, batch_size=batch_size, workers=workers)
        files = find_videos([paths] if isinstance(paths, (str, os.PathLike)) else list(paths))
        ds = TestDataset([Sample(p, -1, None, p) for p in files], self.num_frames,
                         self.input_size, clips, crops)
        result = engine.embed_dataset(self.model, ds, self.device, batch_size=batch_size, workers=workers,
                                      progress=progress, precision=self.precision)
        scores = engine.scores_from_embeddings(result.embeddings, self.model.classifier)
        records: list[dict] = []
        row = {idx: r for r, idx in enumerate(result.indices)}
        errors = dict(result.errors)
        for i, p in enumerate(files):
            if i in errors:
                records.append({"video": p, "error": errors[i]})
                continue
            rec = {"video": p, "top": _top(scores[row[i]], self.labels, topk)}
            if with_embedding:
                rec["embedding"] = [round(float(x), 6) for x in result.embeddings[row[i]].tolist()]
            records.append(rec)
        return records


def load(checkpoint: str | None = None, clip: str | None = None, labels: str | list[str] | None = None,
         prompts=None, classifier: str | None = None, head: str | None = None, frames: int | None = None,
         device: str = "auto", precision: str = "auto") -> Recognizer:
    """Build a Recognizer.

    checkpoint  a text4vis checkpoint (self-contained), an original Text4Vis checkpoint (needs
                --clip for the text tower and architecture), or None for zero-shot CLIP.
    clip        --clip value (see towers.py); default ViT-B/16 when nothing else says.
    labels      built-in name, label file, or a list of names; default: the checkpoint's labels, else k400.
    prompts     prompt templates for a text classifier (default "a video of a person {}.").
    classifier  a stored classifier file (overrides labels/prompts).
    head        temporal head for zero-shot CLIP (default mean); checkpoints say their own.
    frames      frames per clip T (default: the checkpoint's, else 8).
    precision   GPU autocast: auto (bf16 where supported), bf16, fp16, or fp32 (the reference's test
                precision); the CPU computes in fp32.
    """
    checkpoint, clip, classifier, labels = (os.fspath(v) if isinstance(v, os.PathLike) else v
                                            for v in (checkpoint, clip, classifier, labels))
    check_arguments(frames=frames)
    dev = pick_device(device)
    prompts = list(prompts) if prompts else list(classifiers.DEFAULT_PROMPTS)
    names = load_labels(labels) if isinstance(labels, str) else (list(labels) if labels else None)
    if checkpoint and not os.path.exists(checkpoint):
        raise WeightsError(f"{checkpoint}: no such checkpoint file")

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
            if classifier or names is None or names == list(meta["labels"]):
                warnings.warn(Text4VisWarning(
                    f"clip={clip} is ignored: {checkpoint} is self-contained (its own towers and classifier); clip= "
                    f"only replaces its text tower to build a classifier for new labels="), stacklevel=2)
            else:
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
    return rec
