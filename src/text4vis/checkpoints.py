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
logit_scale; read with torch.load(weights_only=True). The text tower comes from --clip.
"""
from __future__ import annotations

import json
import os
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .temporal import HEADS
from .towers import WeightsError, safe_load, unwrap_state_dict

FORMAT_VERSION = 1
META_KEY = "text4vis"


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
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        save_file(tensors, tmp, metadata={META_KEY: json.dumps(meta)})
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):  # the previous checkpoint at `path` is untouched
            os.remove(tmp)
        raise
    try:  # make the rename itself durable
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    except OSError:
        pass


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
    meta = {
        "format_version": FORMAT_VERSION,
        "clip": {"config": towers.config, "source": towers.source, "tokenizer": towers.tokenizer_name,
                 "mean": list(towers.mean), "std": list(towers.std)},
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


def read_text4vis(path: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(metadata, tensors) of a text4vis checkpoint; the metadata a model needs is checked."""
    try:
        with safe_open(path, "pt") as f:
            meta = json.loads(f.metadata()[META_KEY])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise WeightsError(f"{path}: damaged text4vis checkpoint ({str(exc).splitlines()[0][:120]})") from None
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
        first = lines[0] if lines else (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise WeightsError(f"{source}: weights do not fit this model ({len(lines) or 'some'} of another shape, "
                           f"e.g. {first})") from None


def split_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def read_original(path: str) -> dict[str, torch.Tensor]:
    """The model state of an original Text4Vis checkpoint (module. prefix removed)."""
    sd = unwrap_state_dict(safe_load(path))
    if not any(k.startswith("visual.") for k in sd):
        raise WeightsError(f"{path}: neither a text4vis checkpoint nor an original Text4Vis one (no visual.* weights)")
    check_finite(sd, path)
    return sd


VIDEO_KEYS = ("visual.", "fusion_model.", "logit_scale")


def video_weights(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The image tower, temporal head and logit_scale of a model state, in fp32 (what a video model loads)."""
    return {k: v.float() for k, v in sd.items() if k.startswith(VIDEO_KEYS)}


def check_visual_fits(sd: dict[str, torch.Tensor], visual_state: dict[str, torch.Tensor], ckpt: str, clip: str) -> None:
    """Clear error when a checkpoint's image tower does not match the --clip architecture."""
    ck = {k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")}
    for k, v in ck.items():
        if k not in visual_state:
            raise WeightsError(f"checkpoint {ckpt} does not fit --clip {clip}: image tower weight visual.{k} "
                               f"has no counterpart in {clip}")
        if tuple(v.shape) != tuple(visual_state[k].shape):
            raise WeightsError(f"checkpoint {ckpt} does not fit --clip {clip}: visual.{k} is "
                               f"{tuple(v.shape)} in the checkpoint but {tuple(visual_state[k].shape)} in {clip}")
    missing = [k for k in visual_state if k not in ck]
    if missing:
        raise WeightsError(f"checkpoint {ckpt} does not fit --clip {clip}: it lacks visual.{missing[0]}")
