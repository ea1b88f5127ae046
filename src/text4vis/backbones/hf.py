"""Hugging Face `transformers` image-text models as text4vis towers: CLIPModel, SiglipModel, Siglip2Model
(and XCLIPModel's frame and text towers).

`--clip` accepts a folder written by `save_pretrained` (config.json, model weights, tokenizer files,
preprocessor_config.json) or `hf:ORG/NAME[@REVISION]` (read from the Hugging Face cache, downloaded once
where there is network). The models are transformers' own classes; `HFClip` only splits one into the
parts text4vis uses, under stable names:

    visual.*          the image tower: vision_model (+ visual_projection for CLIP) -> get_image_features
    text_model.*, text_projection.*   the text tower -> get_text_features
    logit_scale, logit_bias           the pretraining temperature (and SigLIP's bias)

so the video model, its checkpoints (`visual.*` in the video model, the rest as `text.*`) and training
treat them as they treat open_clip towers. The config stored in text4vis checkpoints is
{"family": "hf", "class", "hf_config" (the model's config as a dict), "embed_dim", "vision_cfg": {image_size},
"text_cfg": {context_length, width}}, and the tokenizer's files are kept with it (families.py), so a
checkpoint loads with no network. `transformers` is imported only when such a model is loaded.

X-CLIP (XCLIPModel) is a video tower (get_video_features: frame tower, then its multi-frame integration
transformer `mit` over the clip's T frames, T = the model's own frame count) and its text tower
(get_text_features). Its video-conditioned prompt generator is not used: it makes every class's text
embedding depend on the video being scored, which a frozen classifier [C, D] built once from the class
names cannot express (the paper's recipe); see the README.

SigLIP2 (NaFlex) takes patches, not images: a square frame of side S is cut into (S/p)^2 patches in the
processor's order, with its spatial shape and a full attention mask (what Siglip2ImageProcessor gives a
square image at that size).
"""
from __future__ import annotations

import json
import os
from typing import Any

import torch
from torch import nn

from ..errors import WeightsError, first_line

PREFIX = "hf:"
MODEL_TYPES = {"clip": "CLIPModel", "siglip": "SiglipModel", "siglip2": "Siglip2Model", "xclip": "XCLIPModel"}
RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def is_hf_spec(spec: str) -> bool:
    """An `hf:` id, or a folder holding a transformers config.json (no transformers import)."""
    if spec.startswith(PREFIX):
        return True
    if not (os.path.isdir(spec) and os.path.isfile(os.path.join(spec, "config.json"))):
        return False
    try:
        return bool(_model_type(spec))      # a transformers config names its model type
    except (OSError, ValueError, AttributeError):
        return False


def _model_type(folder: str) -> str:
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        return str(json.load(f).get("model_type", ""))


# ----------------------------------------------------------------------------- the wrapper

class HFVisual(nn.Module):
    """The image tower: frames [N, 3, S, S] (normalised) -> image features [N, D], as get_image_features.
    With X-CLIP's `mit` it is a video tower (video_native, as viclip.VideoTower): frames [B*T, ...] and T ->
    get_video_features of each clip, repeated for its T frames."""

    def __init__(self, vision_model: nn.Module, projection: nn.Module | None, patch: int | None = None,
                 mit: nn.Module | None = None):
        super().__init__()
        self.vision_model = vision_model
        self.visual_projection = projection
        self.mit = mit                          # X-CLIP's multi-frame integration transformer
        self.video_native = mit is not None     # VideoModel passes the clip length
        self.patch = patch                      # SigLIP2: frames are cut into patches of this side
        vc = vision_model.config
        size = int(getattr(vc, "image_size", 0) or round(getattr(vc, "num_patches", 256) ** 0.5) * vc.patch_size)
        self.image_size = (size, size)          # as open_clip's towers say theirs (train reads it)

    def forward(self, x: torch.Tensor, num_frames: int = 1) -> torch.Tensor:
        feats = self.frame_features(x)
        if self.mit is None:
            return feats
        frames = self.mit.position_embedding.shape[1]
        if num_frames != frames:
            raise WeightsError(f"X-CLIP's video tower takes clips of exactly {frames} frames (its multi-frame "
                               f"transformer's positions), not frames={num_frames}")
        video = self.mit(feats.view(-1, num_frames, feats.shape[-1])).pooler_output      # (b, d)
        return video.repeat_interleave(num_frames, dim=0)                                 # (b*t, d)

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.patch:                          # Siglip2: (n, 3, h, w) -> (n, nh*nw, p*p*3), as its processor
            n, c, h, w = x.shape
            p = self.patch
            nh, nw = h // p, w // p
            patches = x.reshape(n, c, nh, p, nw, p).permute(0, 2, 4, 3, 5, 1).reshape(n, nh * nw, p * p * c)
            out = self.vision_model(pixel_values=patches,
                                    pixel_attention_mask=torch.ones(n, nh * nw, dtype=torch.long, device=x.device),
                                    spatial_shapes=torch.tensor([[nh, nw]] * n, device=x.device))
        else:
            out = self.vision_model(pixel_values=x)
        feats = out.pooler_output
        return self.visual_projection(feats) if self.visual_projection is not None else feats


class HFClip(nn.Module):
    """A transformers image-text model split into the towers text4vis uses (see the module docstring)."""

    def __init__(self, model: nn.Module, kind: str):
        super().__init__()
        self.kind = kind
        patch = model.config.vision_config.patch_size if kind == "Siglip2Model" else None
        self.visual = HFVisual(model.vision_model, getattr(model, "visual_projection", None), patch,
                               getattr(model, "mit", None))
        self.text_model = model.text_model
        self.text_projection = getattr(model, "text_projection", None)
        self.logit_scale = model.logit_scale
        self.logit_bias = getattr(model, "logit_bias", None)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens -> text features [N, D], as get_text_features(**tokenizer(texts, padding="max_length")):
        ids [N, L], or ids and attention mask stacked [N, 2, L] where the tokenizer gives a mask."""
        ids, mask = (tokens[:, 0], tokens[:, 1]) if tokens.dim() == 3 else (tokens, None)
        feats = self.text_model(input_ids=ids, attention_mask=mask).pooler_output
        return self.text_projection(feats) if self.text_projection is not None else feats


def build(cfg: dict[str, Any]) -> HFClip:
    """Random-weight towers of a stored config (the weights come from a text4vis checkpoint)."""
    import transformers
    cls = getattr(transformers, cfg["class"])
    config = cls.config_class.from_dict(cfg["hf_config"])
    return HFClip(cls(config), cfg["class"]).float().eval()


# ----------------------------------------------------------------------------- loading

def _resolve(spec: str, hub_access) -> str:
    """The local folder behind a spec: itself, or the Hub cache's snapshot of hf:ORG/NAME[@REV]."""
    if not spec.startswith(PREFIX):
        return spec
    repo, _, rev = spec[len(PREFIX):].partition("@")
    from huggingface_hub import snapshot_download
    try:
        with hub_access():
            return snapshot_download(repo, revision=rev or None,
                                     allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"])
    except Exception as exc:
        cmd = f"hf download {repo}" + (f" --revision {rev}" if rev else "")
        raise WeightsError(f"clip={spec!r}: not in the Hugging Face cache and not downloadable here "
                           f"({first_line(exc, 100, with_type=True)}); run `{cmd}` where there is network, "
                           f"or pass the save_pretrained folder as clip='/path/to/folder'") from None


def preprocess_of(folder: str, kind: str) -> dict[str, Any]:
    """mean, std, interpolation and resize mode from the folder's preprocessor_config.json (the model's
    defaults where it has none: OpenAI's statistics for CLIP, 0.5 for SigLIP)."""
    from ..transforms import OPENAI_MEAN, OPENAI_STD
    clip = kind in ("CLIPModel", "XCLIPModel")
    out = {"mean": tuple(OPENAI_MEAN) if clip else (0.5, 0.5, 0.5), "std": tuple(OPENAI_STD) if clip else (0.5, 0.5, 0.5),
           "interpolation": "bicubic" if clip else "bilinear", "resize_mode": "shortest" if clip else "squash"}
    path = os.path.join(folder, "preprocessor_config.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            pre = json.load(f)
        out["mean"] = tuple(pre.get("image_mean", out["mean"]))
        out["std"] = tuple(pre.get("image_std", out["std"]))
        out["interpolation"] = RESAMPLE.get(pre.get("resample"), out["interpolation"])
        out["resize_mode"] = "shortest" if pre.get("do_center_crop") else "squash"
    return out


def load(spec: str, make_towers, hub_access):
    """Towers (`make_towers`: towers.Towers) of a transformers CLIP/SigLIP/SigLIP2 folder or `hf:` id (read
    inside `hub_access()`: towers.hub_access)."""
    from .families import read_tokenizer_dir
    folder = _resolve(spec, hub_access)
    kind = MODEL_TYPES.get(_model_type(folder))
    if kind is None:
        raise WeightsError(f"clip={spec!r}: a transformers model of type {_model_type(folder)!r}; text4vis reads "
                           f"{', '.join(MODEL_TYPES.values())}")
    import transformers
    try:
        model = getattr(transformers, kind).from_pretrained(folder, dtype=torch.float32)
    except Exception as exc:
        raise WeightsError(f"clip={spec!r}: transformers cannot load {folder} ({first_line(exc, 160)})") from None
    clip = HFClip(model.float().eval(), kind).eval()
    vc, tc = model.config.vision_config, model.config.text_config
    if kind in ("CLIPModel", "XCLIPModel"):
        embed_dim = model.config.projection_dim
    else:
        embed_dim = vc.hidden_size
    size = clip.visual.image_size[0]
    cfg = {"family": "hf", "class": kind, "hf_config": model.config.to_dict(), "embed_dim": int(embed_dim),
           "vision_cfg": {"image_size": size}, "text_cfg": {"context_length": int(tc.max_position_embeddings),
                                                             "width": int(tc.hidden_size)}}
    pre = preprocess_of(folder, kind)
    files = read_tokenizer_dir(folder)
    # AutoTokenizer picks the class from the model type as it does for the folder (siglip2 -> Siglip2Tokenizer)
    files["config.json"] = json.dumps({"model_type": _model_type(folder)}).encode()
    return make_towers(clip=clip, config=json.loads(json.dumps(cfg, default=str)), source=spec,
                  tokenizer_name=spec, mean=pre["mean"], std=pre["std"],
                  preprocess={k: pre[k] for k in ("interpolation", "resize_mode")}, tokenizer_files=files)


class Tokenizer:
    """texts -> token ids [N, context] padded to the model's length (the processors' padding="max_length"),
    with the attention mask ([N, 2, context]) where the tokenizer gives one."""

    def __init__(self, tokenizer, context_length: int):
        self.tokenizer, self.context_length = tokenizer, context_length
        self.clean_fn = None

    def __call__(self, texts: list[str]) -> torch.Tensor:
        out = self.tokenizer(list(texts), padding="max_length", max_length=self.context_length, truncation=True,
                             return_tensors="pt")
        if "attention_mask" in out:     # what the model gets from its tokenizer: [N, 2, L] ids and mask
            return torch.stack([out["input_ids"], out["attention_mask"]], dim=1)
        return out["input_ids"]


def tokenizer(towers) -> Tokenizer:
    from transformers import AutoTokenizer
    from .families import materialize
    if not towers.tokenizer_files:
        raise WeightsError(f"clip={towers.source!r}: its tokenizer files are missing")
    return Tokenizer(AutoTokenizer.from_pretrained(materialize(towers.tokenizer_files)), towers.context_length)
