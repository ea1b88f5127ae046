"""Checkpoints: text4vis's own self-contained format, and the original Text4Vis model zoo.

text4vis format: ONE safetensors file.
  tensors   model.*   the video model (visual.*, fusion_model.*, logit_scale, classifier, proj)
            text.*    the CLIP text tower (so new label sets work offline; optional)
            train.*   optimiser / scaler / RNG tensors (only in `last` checkpoints, for resume)
  metadata  "text4vis": JSON with the towers' architecture, head, label names, prompts,
            preprocessing and sampling settings, the resolved training config, and the
            non-tensor part of the training state.
Writes are atomic: temporary file, fsync, rename; a kill at any moment leaves the previous file.

Original Text4Vis checkpoints: a torch.save'd dict {epoch, model_state_dict, optimizer_state_dict},
keys possibly prefixed `module.`, holding visual.*, fusion_model.* (the Transf head) and
logit_scale; read with torch.load(weights_only=True). The text tower comes from `clip=`.

`load_video_model` is the one place that turns a checkpoint of any format into a video model.

A checkpoint may also be named by a converted folder (model.safetensors + config.json + README.md,
see zoo.py) or by `hf-hub:ORG/NAME[@REVISION]`: `resolve_checkpoint` turns either into a local file.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from . import towers as towers_mod
from .errors import first_line
from .files import atomic_write
from .model import VideoModel
from .temporal import HEADS, head_from_state_dict
from .towers import WeightsError, safe_load, unwrap_state_dict

FORMAT_VERSION = 1
META_KEY = "text4vis"
MODEL_FILE = "model.safetensors"   # the checkpoint inside a converted folder / hub repository
HUB_PREFIX = "hf-hub:"


# ----------------------------------------------------------------------------- where a checkpoint is

def resolve_checkpoint(spec: str, filename: str = MODEL_FILE) -> str:
    """The local file behind a `checkpoint=` value: a file is itself; a folder gives its `filename`
    (model.safetensors); `hf-hub:ORG/NAME[@REVISION]` gives that file of the repository, through
    huggingface_hub (downloaded once into its cache; HF_HUB_OFFLINE=1 reads the cache only)."""
    if spec.startswith(HUB_PREFIX):
        from .hub import hub_download
        return hub_download(spec, filename)
    if os.path.isdir(spec):
        path = os.path.join(spec, filename)
        if not os.path.isfile(path):
            raise WeightsError(f"checkpoint={spec}: a folder, not a weights file, and not a converted folder "
                               f"either (a folder without {filename}; `convert` writes {MODEL_FILE}, config.json "
                               f"and README.md)")
        return path
    if not os.path.exists(spec):
        raise WeightsError(f"{spec}: no such checkpoint file")
    return spec


# ----------------------------------------------------------------------------- nested state <-> tensors

def pack(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor inside nested dicts/lists by {"__tensor__": key}, collecting tensors."""
    if isinstance(obj, torch.Tensor):
        key = prefix.rstrip(".")
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[pack(k, f"{prefix}k{i}.", tensors), pack(v, f"{prefix}{i}.", tensors)]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [pack(v, f"{prefix}{i}.", tensors) for i, v in enumerate(obj)],
                "tuple": isinstance(obj, tuple)}
    if hasattr(obj, "tolist") and not isinstance(obj, (int, float, str, bool)):  # numpy arrays / scalars
        import numpy as np
        arr = np.asarray(obj)
        return {"__numpy__": arr.tolist(), "dtype": str(arr.dtype)}
    return obj


def unpack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {unpack(k, tensors): unpack(v, tensors) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            items = [unpack(v, tensors) for v in obj["__list__"]]
            return tuple(items) if obj.get("tuple") else items
        if "__numpy__" in obj:
            import numpy as np
            return np.asarray(obj["__numpy__"], dtype=obj["dtype"])
    return obj


# ----------------------------------------------------------------------------- writing

def atomic_save(tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={META_KEY: json.dumps(meta)}), durable=True)


def save_checkpoint(path: str, model, towers, *, labels: list[str], classifier_meta: dict, settings: dict,
                    config: dict | None = None, train_state: dict | None = None, include_text: bool = True) -> None:
    """Write a self-contained text4vis checkpoint (see the module docstring)."""
    tensors: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        tensors["model." + k] = v.detach().cpu().contiguous()
    if include_text:
        for k, v in towers.clip.state_dict().items():
            if not k.startswith("visual.") and k not in ("logit_scale", "logit_bias"):
                tensors["text." + k] = v.detach().cpu().contiguous()
        from .backbones import families  # a sentencepiece/HF tokenizer's files travel with the text tower (offline)
        tensors.update(families.to_tensors(families.tokenizer_files_of(towers)))
    meta = {
        "format_version": FORMAT_VERSION,
        "clip": {"config": towers.config, "source": towers.source, "tokenizer": towers.tokenizer_name,
                 "mean": list(towers.mean), "std": list(towers.std),
                 "preprocess": dict(getattr(towers, "preprocess", {}) or {}),
                 "logit_scale": float(towers.clip.logit_scale.detach().flatten()[0]),
                 "logit_bias": getattr(towers, "logit_bias", None)},   # the towers' own (sigmoid scores)
        "head": model.head_type,
        "head_heads": model.head_heads,
        "embed_dim": model.embed_dim,
        "learn_classifier": bool(model.learn_classifier),
        "labels": list(labels),
        "classifier": classifier_meta,
        "settings": settings,
        "config": config or {},
        "has_text_tower": include_text,
    }
    if train_state is not None:
        meta["train"] = pack(train_state, "train.", tensors)
    atomic_save(tensors, meta, path)


# ----------------------------------------------------------------------------- reading

def is_text4vis_checkpoint(path: str) -> bool:
    try:
        with safe_open(path, "pt") as f:
            return META_KEY in (f.metadata() or {})
    except Exception:
        return False


def stored_labels(path: str) -> list[str] | None:
    """The class names a text4vis checkpoint was trained on (from its metadata alone); None for other files."""
    if not is_text4vis_checkpoint(path):
        return None
    with safe_open(path, "pt") as f:
        labels = json.loads(f.metadata()[META_KEY]).get("labels")
    return list(labels) if isinstance(labels, list) else None


def read_text4vis(path: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(metadata, tensors) of a text4vis checkpoint; the metadata a model needs is checked."""
    try:
        with safe_open(path, "pt") as f:
            meta = json.loads(f.metadata()[META_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise WeightsError(f"{path}: damaged text4vis checkpoint ({first_line(exc, 160)})") from None
    problem = None
    if not isinstance(meta, dict):
        problem = "its metadata is not a mapping"
    elif missing := [k for k in ("clip", "head", "embed_dim", "labels", "settings") if k not in meta]:
        problem = f"its metadata lacks {missing[0]!r}"
    elif not isinstance(meta["clip"], dict) or "config" not in meta["clip"]:
        problem = "its metadata lacks the towers' configuration"
    elif meta["head"] not in HEADS:
        problem = f"unknown temporal head {meta['head']!r}"
    if problem:
        raise WeightsError(f"{path}: damaged text4vis checkpoint ({problem})")
    check_finite(tensors, path)
    return meta, tensors


def check_finite(tensors: dict[str, torch.Tensor], source: str) -> None:
    """Every floating-point tensor holds finite numbers; WeightsError naming the first that does not
    (a diverged or damaged run would otherwise predict NaN scores without a word)."""
    for name, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise WeightsError(f"{source}: tensor {name} holds {bad} non-finite value(s) (NaN or Inf) of "
                               f"{value.numel()}; the file is damaged or was saved from a diverged run")


def load_video_weights(model, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a video model's weights (image tower, temporal head, logit_scale, projection): every one
    must be there, in its shape, or the checkpoint is reported as not fitting."""
    missing, unexpected = load_state_or_explain(model, state, source)
    missing = [k for k in missing if k.startswith(("visual.", "fusion_model.")) or k == "proj.weight"]
    unexpected = [k for k in unexpected if k.startswith(VIDEO_KEYS)]
    if missing or unexpected:
        raise WeightsError(f"{source}: weights do not fit ({len(missing)} missing, e.g. {missing[:1]}; "
                           f"{len(unexpected)} unexpected, e.g. {unexpected[:1]})")


def load_state_or_explain(module, state: dict[str, torch.Tensor], source: str):
    """module.load_state_dict(state, strict=False) -> (missing, unexpected); tensors of another shape
    are a one-line WeightsError naming the first of them (not torch's line per tensor)."""
    try:
        return module.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln]
        first = lines[0] if lines else first_line(exc, 160)
        raise WeightsError(f"{source}: weights do not fit this model ({len(lines) or 'some'} of another shape, "
                           f"e.g. {first})") from None


def split_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def read_original(path: str) -> dict[str, torch.Tensor]:
    """The model state of an original Text4Vis checkpoint (module. prefix removed)."""
    sd = unwrap_state_dict(safe_load(path))
    if is_clip_towers(sd):
        raise WeightsError(f"{path}: this is a CLIP model file (image and text towers, no video head), not a video "
                           f"model checkpoint; pass it as clip='{path}'")
    if not any(k.startswith("visual.") for k in sd):
        raise WeightsError(f"{path}: neither a text4vis checkpoint nor an original Text4Vis one (no visual.* weights)")
    check_finite(sd, path)
    return sd


VIDEO_KEYS = ("visual.", "fusion_model.", "logit_scale")
CLIP_TEXT_KEYS = ("token_embedding.weight", "text_projection", "transformer.resblocks.0.attn.in_proj_weight")


def is_clip_towers(sd: dict[str, torch.Tensor]) -> bool:
    """A CLIP model's weights (its text tower is there) without a video head: a --clip file, not a checkpoint."""
    return any(k in sd for k in CLIP_TEXT_KEYS) and not any(k.startswith("fusion_model.") for k in sd)


def video_weights(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The image tower, temporal head and logit_scale of a model state, in fp32 (what a video model loads)."""
    return {k: v.float() for k, v in sd.items() if k.startswith(VIDEO_KEYS)}


def check_visual_fits(sd: dict[str, torch.Tensor], visual_state: dict[str, torch.Tensor], ckpt: str, clip: str) -> None:
    """Clear error when a checkpoint's image tower does not match the architecture of the towers `clip`."""
    ck = {k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")}
    for k, v in ck.items():
        if k not in visual_state:
            raise WeightsError(f"checkpoint={ckpt!r} does not fit clip={clip!r}: image tower weight visual.{k} "
                               f"has no counterpart in {clip}")
        if tuple(v.shape) != tuple(visual_state[k].shape):
            raise WeightsError(f"checkpoint={ckpt!r} does not fit clip={clip!r}: visual.{k} is "
                               f"{tuple(v.shape)} in the checkpoint but {tuple(visual_state[k].shape)} in {clip}")
    missing = [k for k in visual_state if k not in ck]
    if missing:
        raise WeightsError(f"checkpoint={ckpt!r} does not fit clip={clip!r}: it lacks visual.{missing[0]}")


# ----------------------------------------------------------------------------- any checkpoint -> a video model

DEFAULT_CLIP = "ViT-B/16"


@dataclass
class LoadedModel:
    """What `load_video_model` found: the model, the text tower for new label sets, and what the checkpoint says."""
    model: Any                                  # VideoModel (on the CPU, fp32)
    towers: Any                                 # Towers, or None when a checkpoint has no text tower (and no clip=)
    source: str                                 # the checkpoint, or the CLIP towers of a zero-shot model
    labels: list[str] | None = None             # the checkpoint's classes (its classifier rows), if it has them
    classifier_meta: dict = field(default_factory=dict)
    num_frames: int | None = None               # frames per clip the checkpoint was trained with
    image_size: int = 0                         # its crop size (0: the towers' own)


def load_video_model(checkpoint: str | None = None, clip: str | None = None, head: str | None = None) -> LoadedModel:
    """Any checkpoint into a video model (this is the one place that knows checkpoint formats):

    checkpoint=None        zero-shot CLIP: the towers `clip` (default ViT-B/16) with the `head` (default mean)
    a text4vis file        self-contained; `clip` only replaces its text tower (for new label sets)
    an original Text4Vis   the published zoo's .pt: image tower and head from the file, towers from `clip`
    """
    if checkpoint is None:
        towers = towers_mod.load_towers(clip or DEFAULT_CLIP)
        model = VideoModel(towers.clip.visual, towers.embed_dim, head or "mean", head_heads=towers.head_heads,
                           logit_scale=float(towers.clip.logit_scale.detach()), mean=towers.mean, std=towers.std)
        return LoadedModel(model, towers, clip or DEFAULT_CLIP)
    if not os.path.exists(checkpoint):
        raise WeightsError(f"{checkpoint}: no such checkpoint file")
    if is_text4vis_checkpoint(checkpoint):
        return _load_text4vis(checkpoint, clip)
    return _load_original(checkpoint, clip or DEFAULT_CLIP)


def _load_text4vis(checkpoint: str, clip: str | None) -> LoadedModel:
    meta, tensors = read_text4vis(checkpoint)
    cfg = meta["clip"]
    with_text = bool(meta.get("has_text_tower", True))
    visual = {"visual." + k: v for k, v in split_prefix(tensors, "model.visual.").items()}
    from .backbones.families import from_tensors
    towers = towers_mod.towers_from_config(cfg["config"], {**split_prefix(tensors, "text."), **visual}, checkpoint,
                                           cfg.get("tokenizer", "openai"), cfg["mean"], cfg["std"], with_text,
                                           cfg.get("preprocess"), from_tensors(tensors))
    for name in ("logit_scale", "logit_bias"):  # the towers' own, kept in the metadata (not the video model's)
        if cfg.get(name) is not None and isinstance(getattr(towers.clip, name, None), torch.Tensor):
            getattr(towers.clip, name).data.fill_(float(cfg[name]))
    towers.source = cfg["source"]
    image_size = int(meta.get("settings", {}).get("input_size") or 0) or towers.input_size  # whatever clip= says
    if clip:  # an explicit clip= replaces the stored text tower (for new label sets)
        other = towers_mod.load_towers(clip)
        if other.embed_dim != towers.embed_dim:
            raise WeightsError(f"checkpoint={checkpoint!r} has embedding width {towers.embed_dim} but clip={clip!r} "
                               f"has {other.embed_dim}")
        other.clip.visual = towers.clip.visual
        towers = other
    model = VideoModel(towers.clip.visual, meta["embed_dim"], meta["head"], mean=towers.mean, std=towers.std,
                       head_heads=meta.get("head_heads"))  # absent in older files: embed_dim // 64
    model_state = split_prefix(tensors, "model.")
    rows = model_state.pop("classifier", None)
    if "proj.weight" in model_state:
        model.set_classifier(torch.zeros(1, model_state["proj.weight"].shape[0]))
    load_video_weights(model, model_state, checkpoint)
    if rows is not None and rows.shape[0] != len(meta["labels"]):
        raise WeightsError(f"{checkpoint}: damaged text4vis checkpoint ({rows.shape[0]} classifier rows "
                           f"but {len(meta['labels'])} label names)")
    if rows is not None:
        model.set_classifier(rows)
    return LoadedModel(model, towers if with_text or clip else None, checkpoint, list(meta["labels"]),
                       meta.get("classifier", {}), int(meta["settings"].get("num_frames", 8)), image_size)


def _load_original(checkpoint: str, clip: str) -> LoadedModel:
    sd = read_original(checkpoint)  # first: a damaged or refused file is reported as such, not as missing towers
    towers = towers_mod.load_towers(clip)
    check_visual_fits(sd, towers.clip.visual.state_dict(), checkpoint, clip)
    pos = sd.get("fusion_model.frame_position_embeddings.weight")
    if pos is not None and pos.shape[1] != towers.embed_dim:
        raise WeightsError(f"checkpoint={checkpoint!r} has embedding width {pos.shape[1]} but clip={clip!r} "
                           f"has {towers.embed_dim}")
    model = VideoModel(towers.clip.visual, towers.embed_dim, head_from_state_dict(sd), mean=towers.mean,
                       std=towers.std, head_heads=towers.head_heads)
    load_video_weights(model, video_weights(sd), checkpoint)
    return LoadedModel(model, towers, checkpoint)


def read_classifier_rows(path: str):
    """(rows, labels, classifier metadata) stored in a text4vis checkpoint; rows None when it has none."""
    meta, tensors = read_text4vis(path)
    return tensors.get("model.classifier"), meta.get("labels"), dict(meta.get("classifier", {}))
