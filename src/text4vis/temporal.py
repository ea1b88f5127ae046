"""Temporal heads: frame embeddings [B, T, D] -> video embedding [B, D].

`mean`   average over time.
`transf` the paper's head ("Transf"): learned frame position embeddings (77 x D) added to the
         frames, a 6-layer residual Transformer of width D (heads: the CLIP text tower's width // 64, as the
         reference builds it; that is D // 64 for every ViT CLIP, 8 instead of 16 for RN50; blocks
         x + attn(ln_1(x)), x + mlp(ln_2(x)); MLP D -> 4D -> D with QuickGELU; LayerNorm eps 1e-12
         in float32), added back to its input, then averaged over time.

Parameter names are the original Text4Vis ones (frame_position_embeddings.weight,
transformer.resblocks.{i}.attn.in_proj_weight, ...), so its checkpoints load without renaming.
Attention runs through F.scaled_dot_product_attention (fused kernels on GPUs).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

HEADS = ("mean", "transf")
MAX_FRAMES = 77   # frame positions the transf head learns (the original's); the mean head takes any number


class LayerNorm(nn.LayerNorm):
    """LayerNorm with eps 1e-12, computed in float32 and cast back (as the reference, at any precision)."""

    def __init__(self, width: int):
        super().__init__(width, eps=1e-12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps).to(x.dtype)


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class SelfAttention(nn.Module):
    """Multi-head self-attention with nn.MultiheadAttention's parameter names, batch first."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)  # nn.MultiheadAttention's own initialisation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)            # (b, t, 3d)
        q, k, v = qkv.view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 3 x (b, h, t, hd)
        y = F.scaled_dot_product_attention(q, k, v)                          # (b, h, t, hd)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))


class ResidualBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = SelfAttention(width, heads)
        self.ln_1 = LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, width * 4)),
            ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(width * 4, width)),
        ]))
        self.ln_2 = LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.Sequential(*[ResidualBlock(width, heads) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x)


class MeanHead(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, t, d) -> (b, d)
        return x.mean(dim=1)


class TransfHead(nn.Module):
    def __init__(self, width: int, layers: int = 6, max_frames: int = MAX_FRAMES, heads: int | None = None):
        super().__init__()
        self.heads = heads or max(1, width // 64)
        if width % self.heads:
            raise ValueError(f"transf head: width {width} is not divisible by {self.heads} attention heads")
        self.frame_position_embeddings = nn.Embedding(max_frames, width)
        self.transformer = Transformer(width, layers, heads=self.heads)
        self.apply(_init_weights)

    @property
    def max_frames(self) -> int:
        """The most frames per clip: one learned position each."""
        return self.frame_position_embeddings.num_embeddings

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # (b, t, d) -> (b, d)
        t = x.shape[1]
        if t > self.max_frames:
            raise ValueError(f"transf head takes at most {self.max_frames} frames, got {t}")
        pos = self.frame_position_embeddings.weight[:t].to(x.dtype)          # (t, d)
        y = self.transformer(x + pos)
        return (y.to(x.dtype) + x).mean(dim=1)


def _init_weights(module: nn.Module) -> None:
    """The reference's initialisation: normal(0, 0.02) weights for Linear and Embedding, zero
    biases, unit LayerNorm (attention in-projections keep nn.MultiheadAttention's xavier init)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        module.bias.data.zero_()
    if isinstance(module, nn.LayerNorm):
        module.weight.data.fill_(1.0)
        module.bias.data.zero_()


def build_head(kind: str, width: int, heads: int | None = None) -> nn.Module:
    """`heads` (transf only): attention heads; default width // 64."""
    if kind == "mean":
        return MeanHead()
    if kind == "transf":
        return TransfHead(width, heads=heads)
    raise ValueError(f"unknown temporal head {kind!r}: choose one of {', '.join(HEADS)}")


def head_max_frames(kind: str) -> int | None:
    """The most frames per clip a head of this kind, as `build_head` builds it, takes (None: no limit)."""
    return MAX_FRAMES if kind == "transf" else None


def head_from_state_dict(keys) -> str:
    """Head type of an original Text4Vis checkpoint: 'transf' when its fusion_model weights are there."""
    return "transf" if any(k.startswith("fusion_model.") for k in keys) else "mean"
