"""Where the loss is computed.

classification_loss  cross-entropy of logit_scale.exp() * cos(video, classifier rows) (the paper).
contrastive_loss     symmetric InfoNCE between videos and the text embeddings of their labels (the
                     paper's contrastive baseline); several videos of one class in a batch are all
                     positives for that class's text, and optionally embeddings from every GPU are
                     gathered first ("batch gather").
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate x (along dim 0) from every rank, in rank order; gradients flow into this rank's part.

    The ranks' batches may differ in size (the last batches of an epoch): sizes are exchanged
    first and shorter parts padded for the collective, then trimmed."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    world, rank = dist.get_world_size(), dist.get_rank()
    size = torch.tensor([x.shape[0]], dtype=torch.long, device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s) for s in sizes]
    longest = max(sizes)
    local = x.detach()
    if local.shape[0] < longest:
        local = torch.cat([local, local.new_zeros((longest - local.shape[0], *local.shape[1:]))])
    parts = [torch.zeros_like(local) for _ in range(world)]
    dist.all_gather(parts, local.contiguous())
    parts = [p[:n] for p, n in zip(parts, sizes)]
    parts[rank] = x
    return torch.cat(parts)


def contrastive_loss(video: torch.Tensor, labels: torch.Tensor, class_text: torch.Tensor, classes: torch.Tensor,
                     scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE.

    video       [B, D] video embeddings (any norm)
    labels      [B] class ids of the videos
    class_text  [U, D] text embeddings of the distinct classes `classes` [U] present in the batch
    scale       the temperature (logit_scale.exp())
    video -> text: cross-entropy towards its class's text; text -> video: -log of the softmax mass
    on all videos of that class (every one of them is a positive).
    """
    v = F.normalize(video.float(), dim=-1)
    t = F.normalize(class_text.float(), dim=-1)
    logits = scale * v @ t.t()                                             # (b, u)
    target = (labels.unsqueeze(1) == classes.unsqueeze(0))                 # (b, u) one True per row
    v2t = F.cross_entropy(logits, target.float().argmax(dim=1))
    lt = logits.t()                                                        # (u, b)
    pos = target.t()
    t2v = (torch.logsumexp(lt, dim=1) - torch.logsumexp(lt.masked_fill(~pos, float("-inf")), dim=1)).mean()
    return (v2t + t2v) / 2
