"""open_clip model families beyond OpenAI's CLIP: SigLIP/SigLIP2, EVA-CLIP, MetaCLIP, DFN, MobileCLIP.

All of them are built by open_clip itself (`CLIP` or `CustomTextCLIP`, timm image towers where the
config names one); this module only holds what text4vis needs around them:

  * `build`: an fp32 model from an open_clip config dict (`custom_text` chooses the class, as open_clip's
    `create_model` does; timm/HF tower weights are never downloaded: the weights come from the file);
  * `preprocess_of`: the family's preprocessing (mean/std, interpolation, resize mode, input size), from
    the pretrained tag, the folder's `open_clip_config.json`, or the tags of the architecture when they
    agree (a `MODEL:/path` file has no tag of its own);
  * tokenizers: open_clip's `HFTokenizer` (SigLIP's sentencepiece, SigLIP2's Gemma, ...) built from the
    model's `text_cfg` (context length, `clean`, mode), from a folder or the Hub cache; its files are kept
    in text4vis checkpoints as uint8 tensors `tokenizer.<file name>` so a checkpoint loads offline;
  * `load_local_dir`: open_clip's own `local-dir:` folders (open_clip_config.json + weights + tokenizer,
    what `open_clip.push_to_hf_hub.save_for_hf` writes and what `hf-hub:` repositories hold).

Sigmoid models (SigLIP) carry a `logit_bias`: their pretraining score is sigmoid(scale * cos + bias) per
(image, text) pair. Classification in text4vis stays a softmax over the label set, where a bias added to
every class's logit cancels; the bias is kept with the towers (`Towers.logit_bias`, and in checkpoints) for
`api.Recognizer.sigmoid_scores`, the per-label independent score.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import tempfile
from typing import Any

import torch

from ..errors import WeightsError, first_line

TOKENIZER_PREFIX = "tokenizer."        # checkpoint tensors holding the tokenizer's files (uint8 bytes)
OPEN_CLIP_CONFIG = "open_clip_config.json"
LOCAL_DIR = "local-dir:"
PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


# ----------------------------------------------------------------------------- building

def is_custom_text(cfg: dict[str, Any]) -> bool:
    """open_clip's rule (factory.create_model): CustomTextCLIP for `custom_text` configs and HF text towers."""
    return bool(cfg.get("custom_text")) or "hf_model_name" in cfg.get("text_cfg", {})


def build(cfg: dict[str, Any]) -> torch.nn.Module:
    """An fp32 open_clip model with random weights from a config dict (text4vis keeps `custom_text` in it)."""
    from . import open_clip_lite
    cfg = copy.deepcopy(cfg)
    custom = is_custom_text(cfg)
    cfg.pop("custom_text", None)
    if "timm_model_name" in cfg.get("vision_cfg", {}):
        cfg["vision_cfg"]["timm_model_pretrained"] = False     # the weights come from the file, never the Hub
    if "hf_model_name" in cfg.get("text_cfg", {}):
        cfg["text_cfg"]["hf_model_pretrained"] = False
    return open_clip_lite.clip_class(cfg, custom_text=custom)(**cfg).float().eval()


def logit_bias(clip: torch.nn.Module) -> float | None:
    """A sigmoid model's learned logit bias (SigLIP), None for softmax-trained CLIPs."""
    bias = getattr(clip, "logit_bias", None)
    return float(bias.detach().flatten()[0]) if isinstance(bias, torch.Tensor) else None


# ----------------------------------------------------------------------------- preprocessing

def preprocess_of(name: str, tag: str | None, extra: dict | None = None) -> dict[str, Any]:
    """The preprocessing of open_clip architecture `name` with pretrained `tag` (None: a local file):
    the tag's own; else `extra` (a folder's preprocess_cfg); else what every tag of the architecture says
    (they agree for SigLIP, EVA, MetaCLIP, DFN ...); else OpenAI CLIP's."""
    import open_clip
    from ..transforms import OPENAI_MEAN, OPENAI_STD
    out: dict[str, Any] = {"mean": tuple(OPENAI_MEAN), "std": tuple(OPENAI_STD), "interpolation": "bicubic",
                           "resize_mode": "shortest"}
    found: dict[str, Any] = {}
    if tag:
        found = open_clip.get_pretrained_cfg(name, tag) or {}
    elif extra:
        found = extra
    elif name:
        tags = [open_clip.get_pretrained_cfg(name, t) or {} for t in open_clip.list_pretrained_tags_by_model(name)]
        seen = {json.dumps({k: list(t[k]) if isinstance(t.get(k), tuple) else t.get(k) for k in PREPROCESS_KEYS})
                for t in tags}
        if len(seen) == 1:
            found = tags[0]
    for k in PREPROCESS_KEYS:
        if found.get(k) is not None:
            out[k] = tuple(found[k]) if k in ("mean", "std") else found[k]
    return out


# ----------------------------------------------------------------------------- open_clip local-dir folders

def is_local_dir(spec: str) -> bool:
    return spec.startswith(LOCAL_DIR) or (os.path.isdir(spec) and os.path.isfile(os.path.join(spec, OPEN_CLIP_CONFIG)))


def load_local_dir(spec: str, make_towers):
    """Towers from an open_clip folder (`local-dir:/path` or the folder itself): its config, weights,
    preprocessing and tokenizer files. `make_towers(clip, cfg, **fields)` builds the Towers."""
    folder = spec[len(LOCAL_DIR):] if spec.startswith(LOCAL_DIR) else spec
    path = os.path.join(folder, OPEN_CLIP_CONFIG)
    if not os.path.isfile(path):
        raise WeightsError(f"clip={spec!r}: no {OPEN_CLIP_CONFIG} in {folder} (an open_clip folder holds it, its "
                           f"weights and tokenizer files)")
    try:
        with open(path, encoding="utf-8") as f:
            full = json.load(f)
        cfg = full["model_cfg"]
    except Exception as exc:
        raise WeightsError(f"clip={spec!r}: {path} is not an open_clip config ({first_line(exc, 120)})") from None
    weights = next((os.path.join(folder, n) for n in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
                    if os.path.isfile(os.path.join(folder, n))), None)
    if weights is None:
        raise WeightsError(f"clip={spec!r}: {folder} holds no open_clip_model.safetensors or "
                           f"open_clip_pytorch_model.bin")
    return from_file(cfg, weights, spec, make_towers, preprocess_of("", None, full.get("preprocess_cfg") or {}),
                     tokenizer_dir=folder if cfg.get("text_cfg", {}).get("hf_tokenizer_name") is not None else None)


def from_file(cfg: dict, weights: str, source: str, make_towers, preprocess: dict, tokenizer_dir: str | None = None):
    """Towers of open_clip config `cfg` with the weights of file `weights` (open_clip's loader, weights only)."""
    import open_clip
    clip = build(cfg)
    try:
        open_clip.load_checkpoint(clip, weights, strict=True, weights_only=True)
    except Exception as exc:
        raise WeightsError(f"clip={source!r}: weights do not fit the model ({first_line(exc, 160)})") from None
    files = read_tokenizer_dir(tokenizer_dir) if tokenizer_dir else None
    tok = cfg.get("text_cfg", {}).get("hf_tokenizer_name")
    # an open_clip folder holds its tokenizer (its config may leave hf_tokenizer_name empty: "the folder")
    return make_towers(clip.float().eval(), cfg, source=source, tokenizer_name=tok or (source if files else "openai"),
                       mean=tuple(preprocess["mean"]), std=tuple(preprocess["std"]),
                       preprocess={k: preprocess[k] for k in ("interpolation", "resize_mode")},
                       tokenizer_files=files)


# ----------------------------------------------------------------------------- tokenizers

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "spiece.model",
                   "tokenizer.model", "vocab.json", "merges.txt", "vocab.txt", "added_tokens.json", "config.json")


def read_tokenizer_dir(folder: str) -> dict[str, bytes]:
    """The tokenizer files of a folder (a save_pretrained'd tokenizer), as bytes by file name."""
    files = {}
    for name in TOKENIZER_FILES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                files[name] = f.read()
    if "tokenizer_config.json" not in files:
        raise WeightsError(f"{folder}: no tokenizer_config.json (the text tower's tokenizer files are missing)")
    return files


def materialize(files: dict[str, bytes]) -> str:
    """A folder holding these tokenizer files (under the text4vis cache, by content hash; written once)."""
    cache = os.environ.get("TEXT4VIS_CACHE", os.path.expanduser("~/.cache/text4vis"))   # as classifiers.CACHE_DIR
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name])
    folder = os.path.join(cache, "tokenizers", h.hexdigest()[:24])
    if not os.path.isfile(os.path.join(folder, "tokenizer_config.json")):
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tok-", dir=os.path.dirname(folder))
        for name, data in files.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process wrote it first
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def hf_tokenizer(towers, hub_access=contextlib.nullcontext):
    """open_clip's HFTokenizer for these towers, with the text config's context length, `clean` and mode:
    from the files kept with the towers, else from the Hub cache (`hf_tokenizer_name`, read inside
    `hub_access()`: towers.hub_access, which fails at once when the Hub cannot be reached)."""
    from open_clip.tokenizer import HFTokenizer
    text_cfg = towers.config.get("text_cfg", {})
    kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
    source = materialize(towers.tokenizer_files) if towers.tokenizer_files else towers.tokenizer_name
    try:
        if towers.tokenizer_files:
            return HFTokenizer(source, context_length=towers.context_length,
                               tokenizer_mode=text_cfg.get("tokenizer_mode"), **kwargs)
        with hub_access():
            return HFTokenizer(source, context_length=towers.context_length,
                               tokenizer_mode=text_cfg.get("tokenizer_mode"), **kwargs)
    except Exception as exc:
        raise WeightsError(f"clip={towers.source!r}: its tokenizer {towers.tokenizer_name!r} cannot be loaded "
                           f"({first_line(exc, 120, with_type=True)}); download it where there is network "
                           f"(huggingface-cli download {towers.tokenizer_name}) or pass an open_clip folder "
                           f"holding its files as clip='local-dir:/path'") from None


def tokenizer_files_of(towers) -> dict[str, bytes] | None:
    """The tokenizer's files for a checkpoint (None: CLIP's BPE, which ships with open_clip)."""
    if towers.tokenizer_name == "openai":
        return None
    if towers.tokenizer_files:
        return towers.tokenizer_files
    if towers._tokenizer is None:
        towers.tokenize(["a"])          # builds the tokenizer as the towers do (Hub cache, bounded)
    tok = towers._tokenizer
    inner = getattr(tok, "tokenizer", None)
    if inner is None or not hasattr(inner, "save_pretrained"):
        return None
    with tempfile.TemporaryDirectory(prefix="text4vis-tok-") as folder:
        inner.save_pretrained(folder)
        towers.tokenizer_files = read_tokenizer_dir(folder)
    return towers.tokenizer_files


def to_tensors(files: dict[str, bytes] | None) -> dict[str, torch.Tensor]:
    if not files:
        return {}
    return {TOKENIZER_PREFIX + name: torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()
            for name, data in files.items() if data}


def from_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, bytes] | None:
    files = {k[len(TOKENIZER_PREFIX):]: bytes(v.numpy().tobytes()) for k, v in tensors.items()
             if k.startswith(TOKENIZER_PREFIX)}
    return files or None


# ----------------------------------------------------------------------------- sigmoid scores

def sigmoid_scores(embeddings: torch.Tensor, classifier: torch.Tensor, scale: float, bias: float) -> torch.Tensor:
    """Independent per-label scores sigmoid(scale * cos + bias) [N, C] of normalised embeddings against
    classifier rows: a sigmoid model's (SigLIP's) pretraining score, each label on its own (alerts,
    multi-label tags), unlike the softmax over the label set that classification uses. `scale` is the
    towers' logit_scale.exp() and `bias` their logit_bias, as pretrained."""
    w = torch.nn.functional.normalize(classifier.detach().float().cpu(), dim=-1)
    cos = torch.nn.functional.normalize(embeddings.detach().float().cpu(), dim=-1) @ w.t()
    return torch.sigmoid(scale * cos + bias)
