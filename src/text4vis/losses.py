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


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels)


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate x from every rank; gradients flow into this rank's part."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
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
