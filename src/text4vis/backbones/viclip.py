"""ViCLIP (InternVid, Wang et al. 2023): a video-native backbone, from its published architecture.

The video tower is a CLIP ViT whose patch tokens of all T frames attend to each other: a (1, p, p) 3-D
patch embedding (`conv1`), the class token and spatial positional embedding per frame, a learned temporal
positional embedding added to the patch tokens, then ONE sequence [cls, frame-1 patches ... frame-T
patches] through the transformer (QuickGELU, sequence-first attention), `ln_post` on the class token and
the projection `proj`. The text tower is CLIP's (causal, end-token pooling, QuickGELU) with a context of 32.
The published checkpoint (`ViClip-InternVid-10M-FLT.pth`, a torch.save'd {"model": state dict}) holds
`vision_encoder.*`, `text_encoder.*` and `temp` (the contrastive temperature, logit scale = 1 / temp);
`from_published` reads those key names (vision_encoder.* -> visual.*, the only renaming).

In text4vis the video tower replaces "image tower + temporal head": `VideoTower.forward` takes the B*T
frames with the clip length T and returns the clip's embedding for each of its T frames, so the `mean`
head gives exactly the video embedding. `--frames T` is the clip length the tower sees (the published
model was trained with 8; other T interpolate the temporal embedding linearly, as the reference's
loader does for checkpoints of another length; T = 1 adds its mean, as the reference does); `--views CxK`
scores C clips x K crops, each one clip of T frames, and averages as for any backbone. Preprocessing:
ImageNet mean/std (the InternVid demo's), 224 px.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WeightsError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def is_viclip(sd: dict[str, torch.Tensor]) -> bool:
    """A published ViCLIP state dict (vision_encoder.* with a 3-D patch embedding, text_encoder.*)."""
    w = sd.get("vision_encoder.conv1.weight")
    return w is not None and w.dim() == 5 and "text_encoder.token_embedding.weight" in sd


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    """Pre-norm residual attention block with CLIP's parameter names (attn, ln_1, mlp.c_fc, mlp.c_proj, ln_2)."""

    def __init__(self, width: int, heads: int, causal_length: int | None = None):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, width * 4)), ("gelu", QuickGELU()),
                                              ("c_proj", nn.Linear(width * 4, width))]))
        self.ln_2 = nn.LayerNorm(width)
        mask = None
        if causal_length:
            mask = torch.full((causal_length, causal_length), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:       # (n, b, d), sequence first
        h = self.ln_1(x)
        mask = self.attn_mask.to(x.dtype) if self.attn_mask is not None else None
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, causal_length: int | None = None):
        super().__init__()
        self.resblocks = nn.ModuleList([Block(width, heads, causal_length) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class VideoTower(nn.Module):
    """ViCLIP's vision encoder. forward(frames [B*T, 3, S, S], T) -> [B*T, D]: each clip's embedding, repeated
    for its T frames (see the module docstring)."""

    video_native = True      # VideoModel passes the clip length

    def __init__(self, image_size: int, patch_size: int, width: int, layers: int, heads: int, output_dim: int,
                 num_frames: int = 8):
        super().__init__()
        self.image_size = (image_size, image_size)
        self.conv1 = nn.Conv3d(3, width, (1, patch_size, patch_size), (1, patch_size, patch_size), bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((image_size // patch_size) ** 2 + 1, width))
        self.temporal_positional_embedding = nn.Parameter(torch.zeros(1, num_frames, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def temporal(self, t: int) -> torch.Tensor:
        """The temporal embedding for clips of t frames [1, t, width]."""
        emb = self.temporal_positional_embedding
        if t == emb.shape[1]:
            return emb
        if t == 1:
            return emb.mean(1, keepdim=True)
        return F.interpolate(emb.permute(0, 2, 1), size=t, mode="linear", align_corners=False).permute(0, 2, 1)

    def encode_clips(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, S, S] (normalised) -> [B, D] video embeddings."""
        x = self.conv1(x)                                            # (b, w, t, h, w')
        b, c, t, h, w = x.shape
        x = x.permute(0, 2, 3, 4, 1).reshape(b, t, h * w, c)         # (b, t, n, c)
        x = x + self.positional_embedding[1:].to(x.dtype)            # spatial, per frame
        x = x + self.temporal(t).to(x.dtype).unsqueeze(2)            # temporal, per patch position
        x = x.permute(0, 2, 1, 3).reshape(b, h * w * t, c)           # (b, n*t, c): patch-major, frames inner
        cls = (self.class_embedding + self.positional_embedding[0]).to(x.dtype).expand(b, 1, c)
        x = self.ln_pre(torch.cat([cls, x], dim=1))
        x = self.transformer(x.permute(1, 0, 2))                     # (n*t+1, b, c)
        return self.ln_post(x[0]) @ self.proj

    def forward(self, frames: torch.Tensor, num_frames: int = 1) -> torch.Tensor:
        bt, c, s1, s2 = frames.shape
        b = bt // num_frames
        clips = frames.view(b, num_frames, c, s1, s2).permute(0, 2, 1, 3, 4)     # (b, 3, t, s, s)
        emb = self.encode_clips(clips)                                            # (b, d)
        return emb.repeat_interleave(num_frames, dim=0)                           # (b*t, d)


class TextTower(nn.Module):
    """ViCLIP's text encoder (CLIP's, context 32): tokens [N, L] -> [N, D], pooled at the end token."""

    def __init__(self, embed_dim: int, context_length: int, vocab_size: int, width: int, heads: int, layers: int):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width).normal_(std=0.01))
        self.transformer = Transformer(width, layers, heads, causal_length=context_length)
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, embed_dim).normal_(std=width ** -0.5))

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(text) + self.positional_embedding
        x = self.ln_final(self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2))
        return x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection


class ViCLIP(nn.Module):
    """Both towers under text4vis's names: visual.* (the published vision_encoder.*), text_encoder.*, logit_scale."""

    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        v, t = cfg["vision_cfg"], cfg["text_cfg"]
        self.visual = VideoTower(v["image_size"], v["patch_size"], v["width"], v["layers"], v["heads"],
                                 cfg["embed_dim"], v["num_frames"])
        self.text_encoder = TextTower(cfg["embed_dim"], t["context_length"], t["vocab_size"], t["width"], t["heads"],
                                      t["layers"])
        self.logit_scale = nn.Parameter(torch.tensor(4.6052))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(tokens.long())


def config_of(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The architecture of a published ViCLIP state dict, from its tensor shapes (heads = width // 64)."""
    conv = sd["vision_encoder.conv1.weight"]                         # (width, 3, 1, p, p)
    width, patch = conv.shape[0], conv.shape[-1]
    grid = round((sd["vision_encoder.positional_embedding"].shape[0] - 1) ** 0.5)
    tw = sd["text_encoder.ln_final.weight"].shape[0]

    def layers(prefix):
        return len({k.split(".")[3] for k in sd if k.startswith(prefix + ".transformer.resblocks.")})

    return {"family": "viclip", "embed_dim": int(sd["vision_encoder.proj"].shape[1]),
            "vision_cfg": {"image_size": int(grid * patch), "patch_size": int(patch), "width": int(width),
                           "layers": layers("vision_encoder"), "heads": int(width) // 64,
                           "num_frames": int(sd["vision_encoder.temporal_positional_embedding"].shape[1])},
            "text_cfg": {"context_length": int(sd["text_encoder.positional_embedding"].shape[0]),
                         "vocab_size": int(sd["text_encoder.token_embedding.weight"].shape[0]), "width": int(tw),
                         "heads": int(tw) // 64, "layers": layers("text_encoder")}}


def build(cfg: dict[str, Any]) -> ViCLIP:
    return ViCLIP(cfg).float().eval()


def from_published(sd: dict[str, torch.Tensor], source: str, make_towers):
    """Towers of a published ViCLIP state dict (key names as released)."""
    cfg = config_of(sd)
    model = build(cfg)
    state = {("visual." + k[len("vision_encoder."):]) if k.startswith("vision_encoder.") else k: v.float()
             for k, v in sd.items() if k.startswith(("vision_encoder.", "text_encoder."))}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "logit_scale"]
    if missing or unexpected:
        raise WeightsError(f"{source}: not a ViCLIP checkpoint of the published layout (missing {missing[:2]}, "
                           f"unexpected {unexpected[:2]})")
    if "temp" in sd:                                                  # logits = sim / temp
        model.logit_scale.data.fill_(float(-torch.log(sd["temp"].float())))
    return make_towers(model, cfg, source=source, tokenizer_name="openai", mean=IMAGENET_MEAN, std=IMAGENET_STD,
                       preprocess={"interpolation": "bilinear", "resize_mode": "shortest"})
