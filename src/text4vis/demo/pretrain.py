"""The demo's pretraining stage: a small image tower aligned with language on captioned frames.

The paper transfers a *pretrained* CLIP, whose image features already match text. The demo builds
that starting point at toy scale by locked-text tuning (LiT): single synthetic frames
(`synthetic.render_captioned_frames`: "a small red circle in the top left", "a blue square", ...)
are embedded by a small ViT, their captions by the **frozen** MiniLM language model followed by a
learned linear text head (384 -> the CLIP embedding width), and both are trained with CLIP's
symmetric contrastive loss (captions that are the same sentence count as positives for each other).
Only the image tower and the text head learn; the language model stays as it ships.

The vision-only contrast (`mode="labels"`) trains the same tower on the same frames with the same
budget, but supervised: one classification head per caption word (shape, colour, size, position;
like ImageNet pretraining), no language involved.

Outputs, in one folder per setting (`cache_key`), so a rerun with the same settings skips the work:
  clip.pt             an OpenAI-format CLIP state dict (loads with `model.clip=`); its image tower is
                      the pretrained one, its text tower random and unused
  text_head.pt        (text mode) the learned text head: weight [embed_dim, 384], a plain tensor file
  pretrain.json       settings, loss curve, held-out frame accuracy, seconds
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["PretrainSettings", "cache_key", "pretrain", "text_rows", "MODES"]

MODES = ("text", "labels")
ATTRIBUTES = ("size", "colour", "position")
VERSION = 1                       # bump when the pretraining code changes what it produces


@dataclass(frozen=True)
class PretrainSettings:
    """Everything that changes what the pretraining produces."""
    frames: int                   # captioned frames rendered (the "web data")
    steps: int                    # optimiser steps
    batch: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.05
    attributes: tuple[str, ...] = ATTRIBUTES    # caption words besides the shape
    keep: float = 0.5             # probability that a caption names each attribute
    heldout_frames: int = 600     # frames kept out of training to measure what was learned
    object_scale: float = 1.0     # object size (synthetic.render_clip); the demo's benchmark uses the same


def cache_key(p: PretrainSettings, clip_cfg: dict, mode: str, seed: int) -> str:
    """A short hash of everything that affects the pretrained tower."""
    blob = json.dumps({"v": VERSION, "p": asdict(p), "clip": clip_cfg, "mode": mode, "seed": seed},
                      sort_keys=True, default=str)
    return f"{mode}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


# ----------------------------------------------------------------------------- data

def _data(p: PretrainSettings, size: int, seed: int):
    from .. import synthetic
    rng = np.random.default_rng([seed, 777])
    return synthetic.render_captioned_frames(p.frames + p.heldout_frames, rng, size, attributes=p.attributes,
                                             keep=p.keep, object_scale=p.object_scale)


def _labels(named: list[dict]) -> tuple[np.ndarray, list[list[str]]]:
    """Per word group (shape, then each caption attribute) the index of the frame's word; -1 where
    its caption does not name that attribute (the labels say what the captions say, no more)."""
    groups = ["shape"] + sorted({k for d in named for k in d} - {"shape"})
    vocabs = [sorted({d[g] for d in named if g in d}) for g in groups]
    out = np.full((len(named), len(groups)), -1, np.int64)
    for i, d in enumerate(named):
        for j, g in enumerate(groups):
            if g in d:
                out[i, j] = vocabs[j].index(d[g])
    return out, vocabs


def _embed_captions(captions: list[str], threads: int) -> tuple[dict[str, int], np.ndarray]:
    """Unique captions -> rows of frozen MiniLM embeddings (normalised, 384-d)."""
    import torch

    from ..classifiers import DEFAULT_LM, load_sentence_model
    unique = sorted(set(captions))
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        st = load_sentence_model(DEFAULT_LM)
        with torch.no_grad():
            emb = st.encode(unique, batch_size=128, convert_to_numpy=True, normalize_embeddings=True,
                            show_progress_bar=False)
    finally:
        torch.set_num_threads(old)
    return {c: i for i, c in enumerate(unique)}, np.asarray(emb, np.float32)


# ----------------------------------------------------------------------------- training

def _normalize(frames_u8, mean, std):
    import torch
    x = torch.from_numpy(frames_u8).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - mean) / std


def _contrastive_loss(img, txt, ids, scale):
    """CLIP's symmetric InfoNCE; pairs with the same caption are positives for each other."""
    import torch.nn.functional as F
    logits = scale * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).t()
    same = (ids[:, None] == ids[None, :]).float()
    target = same / same.sum(1, keepdim=True)
    loss_i = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
    loss_t = -(target * F.log_softmax(logits.t(), dim=1)).sum(1).mean()
    return (loss_i + loss_t) / 2, logits


def _train_loop(visual, heads, x, batch_fn, p: PretrainSettings, seed: int, progress: bool, extra_params=()):
    """The optimiser loop shared by both modes: AdamW, warmup then cosine; returns the loss curve."""
    import torch

    from ..train.setup import lr_lambda
    params = list(visual.parameters()) + [q for h in heads for q in h.parameters()] + list(extra_params)
    opt = torch.optim.AdamW(params, lr=p.lr, weight_decay=p.weight_decay)
    warm = max(1, p.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(p.steps, warm))   # the training loop's schedule
    g = torch.Generator().manual_seed(seed)
    curve = []
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=p.steps, desc="pretraining", unit="step")
    n = x.shape[0]
    for step in range(p.steps):
        idx = torch.randint(0, n, (p.batch,), generator=g)
        loss = batch_fn(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 10 == 0 or step == p.steps - 1:
            curve.append((step + 1, float(loss.detach())))
        if bar is not None:
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    if bar is not None:
        bar.close()
    return curve


def pretrain(out_dir: str | Path, clip_cfg: dict, p: PretrainSettings, mode: str = "text", seed: int = 0,
             progress: bool = True, threads: int = 1) -> dict:
    """Pretrain the image tower of a CLIP built from `clip_cfg` (open_clip CLIP keyword arguments)
    on captioned frames; cached under `out_dir/<cache_key>/`. Returns the pretraining's info dict
    (with "dir", "clip", "text_head" paths and "cached": whether it was reused)."""
    import torch
    from open_clip.model import CLIP

    from ..errors import UsageError
    from ..transforms import OPENAI_MEAN, OPENAI_STD

    if mode not in MODES:
        raise UsageError(f"pretrain mode={mode!r} is not one of {', '.join(MODES)}")
    folder = Path(out_dir) / cache_key(p, clip_cfg, mode, seed)
    info_path = folder / "pretrain.json"
    if info_path.is_file() and (folder / "clip.pt").is_file():
        info = json.loads(info_path.read_text())
        info.update(cached=True, dir=str(folder))
        return info
    t0 = time.perf_counter()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        size = int(clip_cfg["vision_cfg"]["image_size"])
        frames, captions, named = _data(p, size, seed)
        torch.manual_seed(seed)
        model = CLIP(**clip_cfg)
        visual = model.visual
        mean = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
        x = _normalize(frames, mean, std)
        n_train = p.frames
        info = {"mode": mode, "settings": asdict(p), "seed": seed, "num_frames": int(p.frames),
                "example_captions": captions[:8], "num_captions_unique": len(set(captions))}
        if mode == "text":
            info.update(_pretrain_text(visual, x, captions, n_train, p, seed, progress, threads, clip_cfg, folder))
        else:
            info.update(_pretrain_labels(visual, x, named, n_train, p, seed, progress, clip_cfg))
        folder.mkdir(parents=True, exist_ok=True)
        sd = {k: v.detach().clone() for k, v in model.state_dict().items() if k != "attn_mask"}
        sd["logit_scale"] = torch.tensor(math.log(float(info.get("logit_scale", 30.0))))
        torch.save(sd, str(folder / "clip.pt"))
    finally:
        torch.set_num_threads(old_threads)
    info["seconds"] = time.perf_counter() - t0
    info_path.write_text(json.dumps(info, indent=1) + "\n")
    info.update(cached=False, dir=str(folder))
    return info


def _pretrain_text(visual, x, captions, n_train, p, seed, progress, threads, clip_cfg, folder) -> dict:
    """Locked-text tuning: image tower + text head against frozen MiniLM caption embeddings."""
    import torch
    from torch import nn
    t0 = time.perf_counter()
    index, emb = _embed_captions(captions, threads)
    t_embed = time.perf_counter() - t0
    ids = torch.tensor([index[c] for c in captions])
    emb_t = torch.from_numpy(emb)
    dim = int(clip_cfg["embed_dim"])
    head = nn.Linear(emb.shape[1], dim, bias=False)
    nn.init.normal_(head.weight, std=emb.shape[1] ** -0.5)
    log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def batch_loss(idx):
        img = visual(x[idx])
        txt = head(emb_t[ids[idx]])
        loss, _ = _contrastive_loss(img, txt, ids[idx], log_scale.exp().clamp(max=100.0))
        return loss

    visual.train()
    curve = _train_loop(visual, [head], x[:n_train], batch_loss, p, seed, progress, extra_params=[log_scale])
    visual.eval()
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"weight": head.weight.detach().clone()}, str(folder / "text_head.pt"))
    # what was learned, on held-out frames: pick the right shape word among all shapes ("a circle", ...)
    from .. import synthetic
    with torch.no_grad():
        img = torch.nn.functional.normalize(visual(x[n_train:]), dim=-1)
        held_caps = captions[n_train:]
        shapes = list(synthetic.SHAPES)
        _, shape_emb = _embed_captions([f"a {s}" for s in shapes], threads)
        rows = torch.nn.functional.normalize(head(torch.from_numpy(shape_emb)), dim=-1)
        pred = (img @ rows.t()).argmax(1).numpy()
        truth = np.array([next(shapes.index(w) for w in c.split() if w in shapes) for c in held_caps])
    return {"loss_curve": curve, "caption_embed_seconds": t_embed, "logit_scale": float(log_scale.detach().exp().clamp(max=100.0)),
            "heldout_shape_top1": float(np.mean(pred == truth)), "heldout_shape_chance": 1 / len(shapes),
            "text_head": str(folder / "text_head.pt")}


def _pretrain_labels(visual, x, named, n_train, p, seed, progress, clip_cfg) -> dict:
    """Vision-only pretraining: one linear classification head per caption word group."""
    import torch
    import torch.nn.functional as F
    from torch import nn
    labels, vocabs = _labels(named)
    y = torch.from_numpy(labels)
    dim = int(clip_cfg["embed_dim"])
    heads = nn.ModuleList(nn.Linear(dim, len(v)) for v in vocabs)

    def batch_loss(idx):
        f = visual(x[idx])
        total = 0.0
        for j, h in enumerate(heads):
            t = y[idx, j]
            if (t >= 0).any():
                total = total + F.cross_entropy(h(f), t, ignore_index=-1)
        return total

    visual.train()
    curve = _train_loop(visual, list(heads), x[:n_train], batch_loss, p, seed, progress)
    visual.eval()
    with torch.no_grad():
        pred = heads[0](visual(x[n_train:])).argmax(1)
    truth = y[n_train:, 0]
    return {"loss_curve": curve, "logit_scale": 30.0,
            "heldout_shape_top1": float((pred == truth).float().mean()), "heldout_shape_chance": 1 / len(vocabs[0])}


def text_rows(text_head: str | Path, names: list[str], threads: int = 1):
    """Classifier rows for class names through the pretraining's text head: frozen MiniLM
    embeddings of the names, projected to the image tower's width, L2-normalised. [C, D] tensor."""
    import torch
    import torch.nn.functional as F

    from ..classifiers import readable
    weight = torch.load(str(text_head), weights_only=True)["weight"]
    _, emb = _embed_captions([readable(n) for n in names], threads)
    index = {c: i for i, c in enumerate(sorted(set(readable(n) for n in names)))}
    rows = torch.from_numpy(emb[[index[readable(n)] for n in names]]) @ weight.t()
    return F.normalize(rows, dim=-1)
