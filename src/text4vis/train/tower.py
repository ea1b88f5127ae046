"""The image tower's training-time options, applied to open_clip's VisionTransformer without renaming a
weight (checkpoints stay loadable either way):

    model.grad_checkpointing  activation checkpointing in every residual block (open_clip's own, as the
                              original training uses), trading compute for memory
    model.drop_path           stochastic depth: each residual branch dropped per sample with a rate rising
                              linearly from 0 at the first block to model.drop_path at the last (timm's rule)
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError


def set_grad_checkpointing(visual: nn.Module, on: bool = True) -> None:
    if not hasattr(visual, "set_grad_checkpointing"):
        raise ConfigError(f"model.grad_checkpointing: the image tower ({type(visual).__name__}) has no activation "
                          f"checkpointing (the ViT towers have)")
    visual.set_grad_checkpointing(on)


def drop_path(x: torch.Tensor, rate: float) -> torch.Tensor:
    """Zero whole samples (dim 0) of a residual branch with probability `rate`, scaling the rest by
    1 / (1 - rate) so the expectation is unchanged."""
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


def add_drop_path(visual: nn.Module, rate: float) -> list[float]:
    """Stochastic depth on the tower's residual branches (their layer-scale outputs, `ls_1` and `ls_2`), in
    training mode only; returns the rate of each block. Forward hooks: no weight is renamed."""
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if blocks is None or not all(hasattr(b, "ls_1") and hasattr(b, "ls_2") for b in blocks):
        raise ConfigError(f"model.drop_path: the image tower ({type(visual).__name__}) has no residual blocks it "
                          f"applies to (the ViT towers have)")
    rates = torch.linspace(0, rate, len(blocks)).tolist()
    for block, r in zip(blocks, rates):
        if r > 0:
            for branch in (block.ls_1, block.ls_2):
                branch.register_forward_hook(lambda mod, args, out, r=r: drop_path(out, r) if mod.training else out)
    return rates
