"""The video model: frames -> image tower per frame -> temporal head -> video embedding -> logits.

    frames uint8 [B, T, 3, H, W]
      -> normalize (CLIP mean/std, on the model's device)
      -> visual tower on B*T frames            [B*T, D]
      -> temporal head                         [B, T, D] -> [B, D]
      -> (optional learned projection to the classifier's width, when widths differ)
      -> logits = logit_scale.exp() * cos(video, classifier rows)   [B, C]

The classifier is a frozen buffer (rows L2-normalised) unless `learn_classifier` is set (the paper's
vision-only "linear" baseline), in which case it is a parameter trained with the towers.
Parameter names follow the original Text4Vis model (visual.*, fusion_model.*, logit_scale).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .temporal import build_head
from .transforms import OPENAI_MEAN, OPENAI_STD


class VideoModel(nn.Module):
    def __init__(self, visual: nn.Module, embed_dim: int, head: str = "transf",
                 classifier: torch.Tensor | None = None, learn_classifier: bool = False,
                 logit_scale: float = math.log(100.0), mean=OPENAI_MEAN, std=OPENAI_STD,
                 head_heads: int | None = None):
        super().__init__()
        self.visual = visual
        self.head_type = head
        self.embed_dim = embed_dim
        self.fusion_model = build_head(head, embed_dim, head_heads)
        self.head_heads = getattr(self.fusion_model, "heads", None)
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale)))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(3, 1, 1), persistent=False)
        self.proj: nn.Linear | None = None
        self.classifier: torch.Tensor | None = None
        self.learn_classifier = learn_classifier
        if classifier is not None:
            self.set_classifier(classifier, learn=learn_classifier)

    # -- the classifier ------------------------------------------------------------------------
    def set_classifier(self, rows: torch.Tensor, learn: bool = False) -> None:
        """Install a [C, Dc] classifier. Rows are L2-normalised. When Dc differs from the video
        embedding width, a learned linear projection D -> Dc is added (or kept, if it fits)."""
        rows = rows.detach().float()
        norms = rows.norm(dim=-1, keepdim=True)
        if not torch.allclose(norms, torch.ones_like(norms), rtol=0, atol=1e-6):
            # (rows that are already unit length are kept bit for bit, so a saved classifier reloads exactly)
            rows = rows / norms.clamp_min(1e-12)
        width = rows.shape[1]
        if width != self.embed_dim:
            if self.proj is None or self.proj.out_features != width:
                self.proj = nn.Linear(self.embed_dim, width, bias=False)
                nn.init.normal_(self.proj.weight, std=self.embed_dim ** -0.5)
        else:
            self.proj = None
        device = self.logit_scale.device
        for table in (self._parameters, self._buffers, self.__dict__):
            table.pop("classifier", None)
        self.learn_classifier = learn
        if learn:
            self.classifier = nn.Parameter(rows.to(device))
        else:
            self.register_buffer("classifier", rows.to(device))
        if self.proj is not None:
            self.proj.to(device)

    @property
    def max_frames(self) -> int | None:
        """The most frames per clip its temporal head takes (the transf head's learned positions; None: any)."""
        return getattr(self.fusion_model, "max_frames", None)

    @property
    def num_classes(self) -> int:
        return 0 if self.classifier is None else int(self.classifier.shape[0])

    # -- frames to embeddings ------------------------------------------------------------------
    def normalize(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (0..255) -> normalised float. Float input is taken as already normalised."""
        if frames.dtype != torch.uint8:
            return frames
        x = frames.to(self.mean.device, non_blocking=True).float().div_(255.0)
        return (x - self.mean) / self.std

    def frame_embeddings(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, T, 3, H, W] -> [B, T, D] per-frame image-tower embeddings."""
        b, t = frames.shape[:2]
        x = self.normalize(frames).flatten(0, 1)                 # (b*t, 3, h, w)
        if getattr(self.visual, "video_native", False):         # a video tower (viclip.py) sees each clip whole:
            return self.visual(x, t).view(b, t, -1)              # its clip embedding, once per frame
        return self.visual(x).view(b, t, -1)                     # (b, t, d)

    def embed(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, T, 3, H, W] -> [B, Dc] raw (not normalised) video embedding in the classifier's space."""
        v = self.fusion_model(self.frame_embeddings(frames))     # (b, d)
        return self.proj(v) if self.proj is not None else v

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """[B, T, 3, H, W] -> [B, Dc] L2-normalised video embedding."""
        return F.normalize(self.embed(frames), dim=-1)

    # -- embeddings to logits ------------------------------------------------------------------
    def logits(self, video_emb: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        """Scaled cosine similarity of video embeddings [B, Dc] with the classifier rows -> [B, C].
        `scale` defaults to the learned logit_scale.exp() (training); the test rule uses 100."""
        if self.classifier is None:
            raise RuntimeError("no classifier installed: call set_classifier() first")
        v = F.normalize(video_emb.float(), dim=-1)
        w = F.normalize(self.classifier.float(), dim=-1)
        s = self.logit_scale.exp() if scale is None else scale
        return s * v @ w.t()

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Training forward: frames -> logits with the learned temperature."""
        return self.logits(self.embed(frames))
