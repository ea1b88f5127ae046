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

        for indices, emb, failed in engine.iter_embeddings(self.model, ds, self.device, batch_size, workers,
                                                           progress, precision=self.precision):
            for i, error in failed:
                done[i] = {"video": files[i], "error": error}
            scores = engine.scores_from_embeddings(emb, weight) if len(indices) else None
            for row, i in enumerate(indices):
                top = torch.topk(scores[row], k)
                rec = {"video": files[i], "top": [{"label": self.labels[j], "score": round(float(v), 6)}
                                                  for v, j in zip(top.values.tolist(), top.indices.tolist())]}
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
