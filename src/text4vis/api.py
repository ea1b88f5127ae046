"""The public API: `load(...)` returns a `Recognizer` with `predict(paths)` and `encode_video(frames)`.

    import text4vis
    rec = text4vis.load(clip="ViT-B/16", labels="k400")                     # zero-shot CLIP
    rec = text4vis.load(checkpoint="k400-vitb-16-f8.pt", clip="ViT-B/16")   # original Text4Vis zoo
    rec = text4vis.load(checkpoint="runs/x/best.safetensors")               # text4vis: self-contained
    rec.predict(["clip.mp4"], topk=5, views="4x3")
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from . import checkpoints, classifiers, engine
from .checkpoints import DEFAULT_CLIP, load_video_model
from .classifiers import Classifier, ClassifierError
from .datasets import FrameReader, Sample, TestDataset
from .decoders.gpu import resolve_decode_device
from .devices import pick_device, precision_name
from .errors import Text4VisWarning, UsageError
from .labels import load_labels
from .model import VideoModel
from .records import top_labels
from .sampling import parse_views
from .towers import Towers, WeightsError
from .video import empty_input_error, list_inputs

DEFAULT_LABELS = "k400"
__all__ = ["load", "Recognizer", "pick_device", "DEFAULT_CLIP", "DEFAULT_LABELS"]


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
    video_backend: Any = None                  # runs the video model instead of `model` (onnx_runtime.OnnxVideoModel)

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
                f"build one for them with classifiers.lm_classifier (the `classifier build` command, type lm, "
                f"language model {self.classifier_meta.get('source') or 'NAME'}), save it and pass the file as "
                f"classifier='new.safetensors'")
        if kind not in ("text", None):
            raise ClassifierError(
                f"{self.source}: was trained against {'an' if kind[:1] in 'aeiou' else 'a'} {kind} classifier, whose "
                f"rows carry no meaning for other class "
                f"names; new labels need a model trained against a text (or lm) classifier")
        if self.towers is None:
            raise WeightsError(f"{self.source}: has no text tower to build a classifier for new labels; pass the CLIP "
                               f"towers it was trained from as clip=")
        self.set_classifier(classifiers.text_classifier(self.towers, labels, prompts))

    @torch.no_grad()
    def encode_video(self, frames) -> torch.Tensor:
        """RGB frames -> L2-normalised video embeddings [B, D] (fp32, on the model's device).

        frames: a numpy array or torch tensor [T, H, W, 3] or [T, 3, H, W] (one video) or [B, T, ...] (a batch),
        uint8 0..255 or float 0..1. Frames of the model's input size are used as they are; others are resized
        and centre-cropped as `predict` does."""
        frames = frames_to_tensor(frames, self.input_size)
        if self.video_backend is not None:
            return self.video_backend.encode_video(frames)
        limit = self.model.max_frames
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
        tops = top_labels(scores, self.labels, topk)
        return tops[0] if single else tops

    def sigmoid_scores(self, frames) -> list[dict[str, float]]:
        """Per-label independent scores of a sigmoid model (SigLIP): sigmoid(scale x cosine + bias) with the
        towers' pretrained logit_scale and logit_bias, one {label: score} per video (frames as in
        `encode_video`). Labels do not compete (several may be near 1, or none), unlike `classify`'s softmax.
        Meaningful zero-shot (the towers' calibration); a model fine-tuned with a softmax loss keeps the
        bias but not that calibration. WeightsError for models without a logit bias (CLIP)."""
        from .backbones.families import sigmoid_scores
        bias = self.towers.logit_bias if self.towers is not None else None
        if bias is None:
            raise WeightsError(f"{self.source}: not a sigmoid model (no logit_bias: CLIP is trained with a softmax); "
                               f"use classify() for scores over the label set")
        scale = float(self.towers.clip.logit_scale.detach().flatten()[0].exp())
        scores = sigmoid_scores(self.encode_video(frames), self.model.classifier, scale, bias)
        return [{label: round(float(v), 6) for label, v in zip(self.labels, row)} for row in scores]

    def predict(self, paths, topk: int = 5, views: str = "1x1", batch_size: int = 4, workers: int | None = None,
                progress: bool = False, with_embedding: bool = False, decoder: str = "auto",
                decode_device: str = "cpu") -> list[dict]:
        """One record per input video, in input order: {"video", "top": [{"label", "score"}]} or
        {"video", "error"}. `paths`: one path or a list (str or os.PathLike). Folders are searched
        recursively for video files; a folder holding images and no videos is one video (its frames); a
        folder that holds neither is one record with an error. See `predict_iter` to get each record as
        soon as it is done. `decoder`: the video reader (decoders/choose.py); decode_device="cuda" decodes
        with NVDEC (frames stay on the GPU; without a GPU or NVDEC a warning says so and the CPU decodes)."""
        return list(self.predict_iter(paths, topk, views, batch_size, workers, progress, with_embedding,
                                      decoder, decode_device))

    def predict_iter(self, paths, topk: int = 5, views: str = "1x1", batch_size: int = 4,
                     workers: int | None = None, progress: bool = False, with_embedding: bool = False,
                     decoder: str = "auto", decode_device: str = "cpu"):
        """`predict`, one record at a time: each record is yielded as soon as it and every record before
        it are done, in input order (so a consumer that stops early keeps a prefix of the answer)."""
        clips, crops = check_arguments(topk=topk, views=views, batch_size=batch_size, workers=workers)
        items = list_inputs(paths)                   # (path, is an empty folder) in input order
        files = [p for p, empty in items if not empty]
        decode_device = resolve_decode_device(decode_device, files[0] if files else None, self.device)
        workers = 0 if decode_device == "cuda" else workers  # NVDEC in this process: frames stay on the GPU
        ds = TestDataset([Sample(p, -1, None, p) for p in files], self.num_frames, self.input_size, clips, crops,
                         reader=FrameReader(decoder=decoder, decode_device=decode_device))
        weight = self.model.classifier
        k = min(topk, len(self.labels))
        done: dict[int, dict] = {}                   # file index -> record, until its turn comes
        position, next_file = 0, 0                   # next item to yield; index of the file it would be

        def ready():
            nonlocal position, next_file
            while position < len(items):
                path, empty = items[position]
                if empty:
                    yield {"video": path, "error": empty_input_error(path)}
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
            tops = top_labels(engine.scores_from_embeddings(emb, weight), self.labels, k) if len(indices) else None
            for row, i in enumerate(indices):
                rec = {"video": files[i], "top": tops[row]}
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
                checkpoint's exported model.onnx (deploy.export_onnx); scoring is unchanged; "onnx-int8":
                the same on its int8 model.int8.onnx (`export --quantize int8`). An exported model whose
                recorded weights hash is not the checkpoint's is refused (stale: re-export).
    """
    checkpoint, clip, classifier, labels = (os.fspath(v) if isinstance(v, os.PathLike) else v
                                            for v in (checkpoint, clip, classifier, labels))
    check_arguments(frames=frames)
    dev = pick_device(device)
    from .onnx_runtime import RUNTIMES
    if runtime not in RUNTIMES:
        from .errors import UsageError
        raise UsageError(f"runtime={runtime!r}: choose {', '.join(RUNTIMES)}")
    spec = checkpoint
    prompts = list(prompts) if prompts else list(classifiers.DEFAULT_PROMPTS)
    names = load_labels(labels, "labels") if isinstance(labels, str) else (list(labels) if labels else None)
    if checkpoint:  # a file, a converted folder or hf-hub:ORG/NAME[@REVISION] -> a local file
        checkpoint = checkpoints.resolve_checkpoint(checkpoint)
    loaded = load_video_model(checkpoint, clip, head)
    if clip and loaded.labels is not None and (classifier or names is None or names == loaded.labels):
        warnings.warn(Text4VisWarning(
            f"clip={clip} is ignored: {checkpoint} is self-contained (its own towers and classifier); clip= "
            f"only replaces its text tower, to build a classifier for new labels (labels=)"), stacklevel=2)
    model = loaded.model
    rec = Recognizer(model, loaded.labels or [], loaded.towers, frames or loaded.num_frames or 8,
                     loaded.classifier_meta, loaded.source, dev, loaded.image_size)
    if loaded.labels is None and names is None and classifier is None:
        names = load_labels(DEFAULT_LABELS)
    precision_name(dev, precision)  # an unknown value is a ValueError before any work
    rec.precision = precision
    if model.max_frames is not None and rec.num_frames > model.max_frames:
        raise WeightsError(f"{rec.source}: its transf head takes at most {model.max_frames} frames per clip, "
                           f"not frames={rec.num_frames}")
    model.to(dev).eval()
    if rec.towers is not None:
        rec.towers.clip.to(dev).eval()
    if isinstance(classifier, Classifier) or classifier:
        rec.set_classifier(classifier if isinstance(classifier, Classifier) else classifiers.load_classifier(classifier))
    elif names is not None and names != rec.labels:  # a checkpoint's own classifier is kept for its own labels
        rec.use_labels(names, prompts)
    if runtime != "torch":
        from . import onnx_runtime
        from .files import sha256_file
        if not spec:
            raise WeightsError(f"runtime={runtime!r} needs checkpoint= (whose exported model.onnx runs the video model)")
        path = onnx_runtime.onnx_path(spec, int8=runtime == "onnx-int8")
        rec.video_backend = onnx_runtime.OnnxVideoModel(path, weights_sha256=sha256_file(checkpoint))
    return rec
