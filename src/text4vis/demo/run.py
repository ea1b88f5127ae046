"""`text4vis demo`: the paper's findings in miniature, offline, on the built-in synthetic video benchmark.

No GPU, no downloaded CLIP and no dataset are needed. In a few minutes on a laptop CPU the demo

1. renders the synthetic "shapes in motion" benchmark (text4vis.synthetic): classes are sentences
   "{shape} {motion}"; a few shape x motion combinations are held out for zero-shot testing;
2. **pretrains** the starting point the paper stands on, at toy scale (text4vis.demo.pretrain): a small
   ViT image tower is aligned with language on single captioned frames ("a small red circle in the top
   left") against the frozen MiniLM language model (locked-text tuning); for the vision-only contrast
   the same tower is pretrained on the same frames with word labels instead. Both are cached in
   DIR/pretrain/ (keyed by their settings), so a rerun skips them;
3. transfers the pretrained tower to the videos with the library's own `train()`, in the paper's arms,
   each on full data and 2-shot, over several seeds, and measures zero-shot accuracy on the held-out
   classes:
     (a) Transf head + frozen text classifier (MiniLM through the pretraining's text head)  = vision-text
     (b) Transf head + learned linear classifier                                            = vision-only
     (c) Transf head + frozen random orthogonal classifier
     (d) mean head   + frozen text classifier
     (e) Transf head + frozen LDA classifier (fitted on the pretrained tower's features)
     (f) vision-only *pretrained* tower + Transf head + learned linear
     (g) Transf head + frozen MiniLM rows that the pretraining never aligned (learned projection)
   and (z) the pretrained tower with no video training at all (mean of frames, text classifier);
4. predicts a freshly rendered clip with the vision-text model;
5. writes DIR/report.md (the paper's two ablation tables with the demo's numbers beside them, and which
   claims the toy reproduces), DIR/results.json and PNG figures (text4vis.demo.report).

Everything is seeded; the numbers in the report are whatever the runs measured.
"""
from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import platform
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import TrainError, UsageError

__all__ = ["DemoSettings", "FULL", "QUICK", "ARMS", "run_demo"]


# ----------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class DemoSettings:
    """Everything that sizes the demo (the benchmark, the model, the pretraining and the transfer)."""
    shapes: tuple[str, ...]
    motions: tuple[str, ...]
    train_per_class: int
    val_per_class: int
    zeroshot_per_class: int
    size: int                      # rendered frame side = model input side (pixels)
    video_frames: int              # frames rendered per video
    num_frames: int                # frames per clip seen by the model (T)
    width: int                     # ViT width (heads = width // 64)
    layers: int                    # ViT layers
    patch: int                     # ViT patch size
    embed_dim: int                 # CLIP embedding width (the temporal head works at this width)
    epochs: int                    # full-data transfer runs
    fewshot_epochs: int            # 2-shot runs (each epoch has about as many steps as a full epoch)
    pretrain_frames: int           # captioned frames of the pretraining
    pretrain_steps: int            # pretraining optimiser steps (batch 256)
    seeds: int = 3                 # transfer seeds (initialisation, data order, the 2-shot videos)
    caption_words: tuple[str, ...] = ("size", "colour", "position")   # besides the shape
    object_scale: float = 1.5      # objects 1.5x the benchmark's default size: the tower is tiny
    shot: int = 2
    batch_size: int = 8
    lr: float = 1e-3               # temporal head, projection and learned classifier
    clip_ratio: float = 0.1        # the pretrained image tower fine-tunes at lr * 0.1, as in the paper
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    lda_fraction: float = 1.0      # LDA: fraction of the training videos embedded to fit it
    vision_only_pretraining: bool = True   # arm (f): also pretrain the tower without language
    unaligned_lm: bool = True      # arm (g): MiniLM rows the pretraining never saw (full data only)
    processes: int = 2             # transfer runs in parallel (one torch thread each)


# Classes: a subset of the benchmark's grid with two temporal-order pairs (moving left/right,
# growing/shrinking). Held out for zero-shot (synthetic.default_heldout): one class per shape,
# "circle moving left", "square growing", "triangle moving right".
FULL = DemoSettings(
    shapes=("circle", "square", "triangle"),
    motions=("moving left", "moving right", "growing", "shrinking"),
    train_per_class=48, val_per_class=20, zeroshot_per_class=20,
    size=32, video_frames=8, num_frames=4, width=96, layers=2, patch=8, embed_dim=64,
    epochs=4, fewshot_epochs=1, pretrain_frames=12000, pretrain_steps=500, seeds=3,
)
# Quick (tests, about a minute): two shapes moving left, right or growing. Seen: "circle moving right",
# "circle growing", "triangle moving left", "triangle moving right"; held out: "circle moving left" and
# "triangle growing" (each motion, and each shape, is seen in some trained class).
QUICK = DemoSettings(
    shapes=("circle", "triangle"),
    motions=("moving left", "moving right", "growing"),
    train_per_class=60, val_per_class=15, zeroshot_per_class=20,
    size=32, video_frames=4, num_frames=4, width=64, layers=1, patch=8, embed_dim=64,
    epochs=3, fewshot_epochs=1, pretrain_frames=4000, pretrain_steps=300, seeds=1,
    caption_words=("size", "position"), vision_only_pretraining=False, unaligned_lm=False,
)


@dataclass(frozen=True)
class Arm:
    key: str
    head: str
    classifier: str                # text | linear | orthogonal | lda | lm
    title: str
    tower: str = "text"            # which pretraining the image tower comes from: text | labels
    fewshot: bool = True

    @property
    def label(self) -> str:
        return f"({self.key}) {self.title}"


ARMS = (
    Arm("a", "transf", "text", "Transf + frozen text classifier"),
    Arm("b", "transf", "linear", "Transf + learned linear"),
    Arm("c", "transf", "orthogonal", "Transf + frozen orthogonal"),
    Arm("d", "mean", "text", "mean + frozen text classifier"),
    Arm("e", "transf", "lda", "Transf + frozen LDA"),
    Arm("f", "transf", "linear", "vision-only pretraining + learned linear", tower="labels"),
    Arm("g", "transf", "lm", "Transf + frozen unaligned MiniLM", fewshot=False),
)
ARMS_BY_KEY = {a.key: a for a in ARMS}
TEXT_CLASSIFIERS = ("text", "lm")  # classifiers that can name classes never trained on
MARKER = ".text4vis-demo"      # marks a report folder as the demo's own (its data/ and work/ are replaced)
REVERSE = {"moving left": "moving right", "moving right": "moving left", "moving up": "moving down",
           "moving down": "moving up", "growing": "shrinking", "shrinking": "growing",
           "rotating clockwise": "rotating counterclockwise", "rotating counterclockwise": "rotating clockwise"}


def active_arms(s: DemoSettings) -> list[Arm]:
    return [a for a in ARMS if (a.tower != "labels" or s.vision_only_pretraining)
            and (a.classifier != "lm" or s.unaligned_lm)]


def check_settings(s: DemoSettings, seed: int) -> None:
    """UsageError for values that cannot work (named as the API's parameters)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"seed= must be a whole number of at least 0 (got {seed!r})")
    for name in ("seeds", "processes", "epochs", "fewshot_epochs", "pretrain_steps", "train_per_class", "shot"):
        value = getattr(s, name)
        if not isinstance(value, int) or value < 1:
            raise UsageError(f"settings.{name} must be a whole number of at least 1 (got {value!r})")
    if s.shot > s.train_per_class:
        raise UsageError(f"settings.shot ({s.shot}) must not exceed settings.train_per_class ({s.train_per_class})")


# ----------------------------------------------------------------------------- small helpers

class _Stages:
    def __init__(self, total: int):
        self.total, self.n, self.t0 = total, 0, time.perf_counter()

    def __call__(self, title: str) -> None:
        self.n += 1
        print(f"\n=== [{self.n}/{self.total}] {title}  (t = {time.perf_counter() - self.t0:.0f}s)", flush=True)


def _pct(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _read_metrics(path: Path) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(val top-1 per epoch, train loss per logged step) from a run's metrics.jsonl."""
    val, loss = [], []
    if not path.is_file():
        return val, loss
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            if "val_top1" in r:
                val.append((float(r["epoch"]), float(r["val_top1"])))
            elif "loss" in r:
                loss.append((float(r["epoch"]), float(r["loss"])))
    return val, loss


@contextlib.contextmanager
def _quiet(log_path: Path):
    """Send library printouts (progress lines, evaluation summaries) to a log file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        yield


def order_partners(names: list[str]) -> dict[int, int]:
    """Class id -> id of the class with the same shape and the reverse motion, where both exist."""
    index = {n: i for i, n in enumerate(names)}
    partner = {}
    for i, n in enumerate(names):
        shape, _, motion = n.partition(" ")
        rev = REVERSE.get(motion)
        if rev and f"{shape} {rev}" in index:
            partner[i] = index[f"{shape} {rev}"]
    return partner


def order_confusion(scores: np.ndarray, labels: np.ndarray, names: list[str]) -> float | None:
    """Among val videos whose class has its temporal reverse among the classes (moving left <->
    moving right, growing <-> shrinking, ...), the fraction predicted as that reverse class."""
    partner = order_partners(names)
    keep = [k for k, y in enumerate(labels) if int(y) in partner]
    if not keep:
        return None
    pred = scores.argmax(1)
    return float(np.mean([pred[k] == partner[int(labels[k])] for k in keep]))


def clip_config(s: DemoSettings) -> dict:
    """open_clip CLIP(**cfg) arguments of the demo's small CLIP (OpenAI format, QuickGELU). The text
    tower is minimal (1 layer, width 64) but keeps CLIP's vocabulary so the format and tokenizer work;
    the demo never uses it (its text side is MiniLM)."""
    return dict(embed_dim=s.embed_dim,
                vision_cfg=dict(layers=s.layers, width=s.width, patch_size=s.patch, image_size=s.size),
                text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=1, layers=1),
                quick_gelu=True)


# ----------------------------------------------------------------------------- stages

def _prepare_output(out: Path) -> None:
    """Claim `out` for the demo: refuse folders someone else wrote, clear the demo's own data/work."""
    marker = out / MARKER
    data_dir, work = out / "data", out / "work"
    if not marker.exists():
        taken = [str(p) for p in (data_dir, work) if p.exists()]
        if taken:
            one = len(taken) == 1
            raise UsageError(f"{' and '.join(taken)} {'exists' if one else 'exist'} but {'was' if one else 'were'} "
                             f"not written by `text4vis demo`; choose another out= folder")
    for p in (data_dir, work):                             # a fresh run: train() appends to metrics.jsonl
        if p.exists():
            shutil.rmtree(p)
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text("written by `text4vis demo`; its data/ and work/ folders are replaced on every run, "
                      "pretrain/ is a cache\n")


def _render(out: Path, s: DemoSettings, seed: int, progress: bool) -> dict:
    from .. import synthetic
    t0 = time.perf_counter()
    info = synthetic.make_benchmark(out / "data", seed=seed, shapes=s.shapes, motions=s.motions,
                                    train_per_class=s.train_per_class, val_per_class=s.val_per_class,
                                    zeroshot_per_class=s.zeroshot_per_class, num_frames=s.video_frames,
                                    size=s.size, progress=progress, object_scale=s.object_scale)
    info["seconds"] = time.perf_counter() - t0
    print(f"{len(info['classes'])} seen classes ({info['num_train']} training / {info['num_val']} val videos), "
          f"{len(info['heldout_classes'])} held-out classes for zero-shot ({info['num_zeroshot']} videos): "
          f"{', '.join(info['heldout_classes'])}; rendered in {info['seconds']:.1f}s")
    return info


def _pretrain_job(job: dict) -> dict:
    """One pretraining (its own process when run in parallel)."""
    import torch

    from .pretrain import pretrain
    torch.set_num_threads(1)
    with _quiet(Path(job["log"])) if job["quiet"] else contextlib.nullcontext():
        return pretrain(job["out"], job["clip_cfg"], job["settings"], job["mode"], job["seed"],
                        progress=not job["quiet"], threads=job["threads"])


def _pretrain(out: Path, s: DemoSettings, seed: int, progress: bool) -> dict[str, dict]:
    """The text (and vision-only) pretraining, cached under out/pretrain/."""
    from .pretrain import PretrainSettings
    p = PretrainSettings(frames=s.pretrain_frames, steps=s.pretrain_steps, attributes=s.caption_words,
                         object_scale=s.object_scale)
    modes = ["text"] + (["labels"] if s.vision_only_pretraining else [])
    parallel = len(modes) > 1 and s.processes > 1
    jobs = [dict(out=str(out / "pretrain"), clip_cfg=clip_config(s), settings=p, mode=m, seed=seed,
                 quiet=parallel or not progress, threads=1,
                 log=str(out / "pretrain" / f"{m}.log")) for m in modes]
    print(f"image tower: ViT {s.layers} layer(s) x width {s.width}, patch {s.patch}, {s.size}px input, embedding "
          f"{s.embed_dim}; {s.pretrain_frames} captioned frames, {s.pretrain_steps} steps of 256"
          + (" (text and vision-only pretraining side by side)" if parallel else ""), flush=True)
    results = _map(_pretrain_job, jobs, min(len(jobs), s.processes))
    towers = dict(zip(modes, results))
    for m, info in towers.items():
        what = "locked-text (MiniLM)" if m == "text" else "vision-only (word labels)"
        state = "reused from the cache" if info["cached"] else f"{info['seconds']:.0f}s"
        print(f"{what} pretraining: shape of held-out frames {_pct(info['heldout_shape_top1'])} "
              f"(chance {_pct(info['heldout_shape_chance'])}); {state} -> {info['dir']}")
    return towers


def _text_classifier_files(work: Path, text_head: str, seen: list[str], held: list[str], unaligned: bool) -> dict:
    """Classifier files the runs load: the text classifier (MiniLM through the pretraining's text
    head) for the seen and the held-out names; raw MiniLM rows for arm (g)."""
    from .. import classifiers
    from .pretrain import text_rows
    files = {}
    for split, names in (("seen", seen), ("heldout", held)):
        if not names:
            continue
        cls = classifiers.Classifier(text_rows(text_head, names), list(names),
                                     {"type": "text", "source": "MiniLM + the demo pretraining's text head"})
        files[f"text_{split}"] = str(work / "classifiers" / f"text_{split}.safetensors")
        classifiers.save_classifier(cls, files[f"text_{split}"])
        if unaligned:
            files[f"lm_{split}"] = str(work / "classifiers" / f"lm_{split}.safetensors")
            classifiers.save_classifier(classifiers.lm_classifier(list(names)), files[f"lm_{split}"])
    return files


def make_config(s: DemoSettings, info: dict, clip_path: str, arm: Arm, seed: int, shot: int | None,
                cls_file: str | None):
    """The training config of one transfer run, built in code (same budget for every arm)."""
    from ..train.config import Config, check
    cfg = Config()
    d = cfg.data
    d.train_list, d.train_root = str(info["train_list"]), str(info["root"])
    d.val_list, d.val_root = str(info["val_list"]), str(info["root"])
    d.labels = str(info["labels_csv"])
    d.num_frames, d.input_size = s.num_frames, s.size
    d.flip = False                     # "moving left" flipped is "moving right"
    d.grayscale, d.crop_scale = 0.0, 1.0   # colour separates the object from the background; keep it whole
    d.batch_size, d.workers = s.batch_size, 0
    d.shot = shot
    cfg.model.clip, cfg.model.head = clip_path, arm.head
    cfg.classifier.type = {"text": "lm"}.get(arm.classifier, arm.classifier)
    cfg.classifier.file = cls_file
    cfg.classifier.seed, cfg.classifier.lda_fraction = seed, s.lda_fraction
    o = cfg.optim
    o.lr, o.clip_ratio, o.weight_decay = s.lr, s.clip_ratio, s.weight_decay
    o.epochs = s.fewshot_epochs if shot else s.epochs
    o.warmup_epochs = min(s.warmup_epochs, max(0.0, o.epochs - 1))
    o.precision = "fp32"
    t = cfg.training
    t.seed, t.eval_freq, t.print_freq = 1000 + seed, 1, 10
    t.checkpoint_text_tower = False    # the CLIP text tower is random and unused: keep checkpoints small
    cfg.evaluation.batch_size = 32
    check(cfg)
    return cfg


def _jobs(s: DemoSettings, info: dict, towers: dict, files: dict, work: Path) -> list[dict]:
    """Every transfer run: arm x seed x (full, 2-shot), longest first."""
    jobs = []
    held = list(info["heldout_classes"])
    for k in range(s.seeds):
        for arm in active_arms(s):
            clip_path = str(Path(towers[arm.tower]["dir"]) / "clip.pt")
            seen_file = files.get(f"{arm.classifier}_seen") if arm.classifier in TEXT_CLASSIFIERS else None
            zs_file = files.get(f"{arm.classifier}_heldout") if arm.classifier in TEXT_CLASSIFIERS else None
            for shot in [None] + ([s.shot] if arm.fewshot else []):
                mode = "full" if shot is None else f"{shot}shot"
                jobs.append(dict(
                    arm=arm.key, seed=k, mode=mode, run_dir=str(work / "runs" / f"seed{k}" / f"{arm.key}_{mode}"),
                    config=make_config(s, info, clip_path, arm, k, shot, seen_file),
                    val_list=str(info["val_list"]), zs_list=str(info["zeroshot_list"]), root=str(info["root"]),
                    seen=list(info["classes"]), held=held, zs_file=zs_file if shot is None else None,
                    keep_rows=k == 0 and shot is None))
    return sorted(jobs, key=lambda j: j["mode"] != "full")


def _run_job(job: dict) -> dict:
    """One transfer run (in a worker process): train, then evaluate the final model on val and, for
    classifiers made from text, on the held-out classes."""
    import torch
    torch.set_num_threads(1)
    from ..api import load
    from ..classifiers import load_classifier
    from ..datasets import load_split
    from ..train import train
    from ..train.evaluate import run_eval
    from ..train.runs import CHECKPOINT_LAST
    run_dir = Path(job["run_dir"])
    r: dict = {"arm": job["arm"], "seed": job["seed"], "mode": job["mode"]}
    with _quiet(run_dir / "log.txt"):
        t0 = time.perf_counter()
        summary = train(job["config"], str(run_dir), progress=False)
        r["seconds"] = time.perf_counter() - t0
        curve, loss = _read_metrics(run_dir / "metrics.jsonl")
        r.update(val_curve=curve, loss_curve=loss, steps=int(summary.get("steps", 0)),
                 final_top1=curve[-1][1] if curve else float("nan"),
                 first_epoch_top1=curve[0][1] if curve else float("nan"),
                 mean_curve_top1=float(np.mean([v for _, v in curve])) if curve else float("nan"))
        r["checkpoint"] = str(run_dir / CHECKPOINT_LAST)
        if job["mode"] != "full":
            return r
        rec = load(checkpoint=r["checkpoint"], device="cpu")
        val_samples = load_split(job["val_list"], job["root"], job["seen"])[0]
        run_eval(rec, val_samples, job["seen"], out=str(run_dir / "val_eval"), workers=0, batch_size=32,
                 progress=False)
        pred = np.load(run_dir / "val_eval" / "predictions.npz")
        r["order_confusion"] = order_confusion(pred["scores"], pred["labels"], job["seen"])
        if job["keep_rows"]:
            r["classifier_rows"] = rec.model.classifier.detach().float().cpu().numpy()
        if job["zs_file"] and job["held"]:
            rec.set_classifier(load_classifier(job["zs_file"]))
            zs_samples = load_split(job["zs_list"], job["root"], job["held"])[0]
            zs = run_eval(rec, zs_samples, job["held"], out=str(run_dir / "zeroshot_eval"), workers=0,
                          batch_size=32, progress=False, zero_shot=True)
            r["zeroshot_top1"] = float(zs.get("top1") or 0.0)
    return r


def _map(fn, jobs: list[dict], processes: int, on_done=None) -> list[dict]:
    """fn over jobs, in `processes` spawned worker processes (in this process when 1); results in job
    order. A failed job stops the demo with a TrainError naming it and its log."""
    def fail(job, exc):
        where = job.get("run_dir") or job.get("log") or ""
        from ..errors import first_line
        return TrainError(f"demo run {job.get('arm', job.get('mode'))} ({where}) failed: {first_line(exc)}")

    results: list = [None] * len(jobs)
    if processes <= 1:
        for i, job in enumerate(jobs):
            try:
                results[i] = fn(job)
            except Exception as exc:
                raise fail(job, exc) from exc
            if on_done:
                on_done(results[i])
        return results
    with ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(fn, job): i for i, job in enumerate(jobs)}
        from concurrent.futures import as_completed
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                results[i] = fut.result()
            except Exception as exc:
                for other in futures:
                    other.cancel()
                raise fail(jobs[i], exc) from exc
            if on_done:
                on_done(results[i])
    return results


def _transfer(s: DemoSettings, info: dict, towers: dict, files: dict, work: Path) -> list[dict]:
    jobs = _jobs(s, info, towers, files, work)
    done = [0]
    t0 = time.perf_counter()

    def report(r: dict) -> None:
        done[0] += 1
        zs = f", zero-shot {_pct(r['zeroshot_top1'])}" if "zeroshot_top1" in r else ""
        print(f"[{done[0]:2d}/{len(jobs)}] seed {r['seed']} {ARMS_BY_KEY[r['arm']].label:<52} {r['mode']:<5} "
              f"final val top-1 {_pct(r['final_top1'])}{zs}  ({r['seconds']:.0f}s; t = {time.perf_counter() - t0:.0f}s)",
              flush=True)

    print(f"{len(jobs)} runs ({len(active_arms(s))} arms x {s.seeds} seed(s) x full/{s.shot}-shot), "
          f"{s.processes} at a time; each: {s.epochs} epochs on all training videos ({s.fewshot_epochs} for "
          f"{s.shot}-shot), batch {s.batch_size}, lr {s.lr:g} (tower x{s.clip_ratio:g}), {s.num_frames} frames per clip; "
          f"logs in {work / 'runs'}/", flush=True)
    return _map(_run_job, jobs, s.processes, report)


def _no_transfer(s: DemoSettings, info: dict, towers: dict, files: dict, work: Path) -> dict:
    """(z): the pretrained tower alone, frames averaged, text classifier; no video training at all."""
    from ..api import load
    from ..datasets import load_split
    from ..train.evaluate import run_eval
    clip = str(Path(towers["text"]["dir"]) / "clip.pt")
    out = {}
    for split, names, list_file in (("seen", info["classes"], info["val_list"]),
                                    ("heldout", info["heldout_classes"], info["zeroshot_list"])):
        if not names:
            continue
        rec = load(clip=clip, classifier=files[f"text_{split}"], head="mean", frames=s.num_frames, device="cpu")
        samples = load_split(str(list_file), str(info["root"]), list(names))[0]
        with _quiet(work / "logs" / "no_transfer.log"):
            r = run_eval(rec, samples, list(names), out=str(work / "no_transfer" / split), workers=0, batch_size=32,
                         progress=False, zero_shot=True)
        out[f"{split}_top1"] = float(r.get("top1") or 0.0)
    return out


def _predict_new_clip(out: Path, s: DemoSettings, seen: list[str], checkpoint: str, seed: int) -> dict:
    from .. import synthetic
    from ..api import load
    rng = np.random.default_rng([seed, 4242])
    true_name = seen[int(rng.integers(len(seen)))]
    shape, motion = synthetic.parse_class_name(true_name)
    frames, _ = synthetic.render_clip(shape, motion, rng, s.video_frames, s.size, s.object_scale)
    new_clip = out / "new_clip.mp4"
    synthetic.write_video(new_clip, frames, fps=8)
    record = load(checkpoint=checkpoint, device="cpu").predict([str(new_clip)], topk=3, workers=0)[0]
    top3 = record.get("top", [])
    print(f"new clip {new_clip} (true class: '{true_name}'), classified by {ARMS_BY_KEY['a'].label}:")
    for k, t in enumerate(top3, start=1):
        print(f"  {k}. {t['label']:<28} {100 * t['score']:6.2f}%" + ("  <- correct" if t["label"] == true_name else ""))
    if "error" in record:
        print(f"  error: {record['error']}")
    return {"video": str(new_clip), "true": true_name, "arm": "a", "top3": top3}


# ----------------------------------------------------------------------------- summary over seeds

def _mean_std(values: list[float]) -> dict:
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return {"mean": None, "std": None, "n": 0, "values": []}
    return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "n": len(v),
            "values": [float(x) for x in v]}


def summarize(runs: list[dict], s: DemoSettings, chance_zs: float) -> dict:
    """Per arm: mean and std over seeds of every measured number, plus the per-seed curves."""
    arms = {}
    for arm in active_arms(s):
        full = [r for r in runs if r["arm"] == arm.key and r["mode"] == "full"]
        few = [r for r in runs if r["arm"] == arm.key and r["mode"] != "full"]
        a = {"key": arm.key, "title": arm.title, "head": arm.head, "classifier": arm.classifier, "tower": arm.tower,
             "final_top1": _mean_std([r["final_top1"] for r in full]),
             "first_epoch_top1": _mean_std([r["first_epoch_top1"] for r in full]),
             "mean_curve_top1": _mean_std([r["mean_curve_top1"] for r in full]),
             "fewshot_top1": _mean_std([r["final_top1"] for r in few]),
             "order_confusion": _mean_std([r.get("order_confusion") for r in full]),
             "seconds": float(sum(r["seconds"] for r in full + few)),
             "val_curves": [r["val_curve"] for r in sorted(full, key=lambda r: r["seed"])],
             "loss_curves": [r["loss_curve"] for r in sorted(full, key=lambda r: r["seed"])]}
        if arm.classifier in TEXT_CLASSIFIERS:
            a["zeroshot_top1"] = _mean_std([r.get("zeroshot_top1") for r in full])
            a["zeroshot_by_construction"] = False
        else:   # a learned, orthogonal or LDA classifier has no rows for classes it never saw
            a["zeroshot_top1"] = {"mean": chance_zs, "std": 0.0, "n": 0, "values": []}
            a["zeroshot_by_construction"] = True
        arms[arm.key] = a
    return arms


# ----------------------------------------------------------------------------- the demo

def run_demo(out: str | os.PathLike = "demo-report", quick: bool = False, seed: int = 0,
             progress: bool = True, settings: DemoSettings | None = None, seeds: int | None = None) -> dict:
    """Run the whole demo into `out`; returns the results dict (also written to results.json).
    `seeds` overrides the settings' number of transfer seeds. Runs go to spawned worker processes
    (settings.processes): call this from a script under `if __name__ == "__main__":`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")          # everything the demo needs is local
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    s = settings or (QUICK if quick else FULL)
    if seeds is not None:
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise UsageError(f"seeds= must be a whole number of at least 1 (got {seeds!r})")
        s = replace(s, seeds=seeds)
    check_settings(s, seed)
    _quiet_hf()
    t_start = time.perf_counter()
    out = Path(out)
    _prepare_output(out)
    work = out / "work"
    stage = _Stages(6)
    mode = "quick" if quick else "full"
    print(f"text4vis demo ({mode}): everything offline on the CPU; report in {out}/", flush=True)

    stage("Rendering the synthetic benchmark (classes are sentences: '{shape} {motion}')")
    info = _render(out, s, seed, progress)
    seen, held = list(info["classes"]), list(info["heldout_classes"])

    stage("Pretraining the image tower on captioned frames (cached in pretrain/)")
    t0 = time.perf_counter()
    towers = _pretrain(out, s, seed, progress)
    files = _text_classifier_files(work, towers["text"]["text_head"], seen, held, s.unaligned_lm)
    t_pretrain = time.perf_counter() - t0

    stage("Transfer to video: the paper's arms, full data and 2-shot, several seeds")
    t0 = time.perf_counter()
    runs = _transfer(s, info, towers, files, work)
    no_transfer = _no_transfer(s, info, towers, files, work)
    t_transfer = time.perf_counter() - t0
    chance_seen, chance_zs = 1.0 / len(seen), 1.0 / max(1, len(held))

    stage("Predicting a freshly rendered clip with the vision-text model (a)")
    best_a = next(r for r in runs if r["arm"] == "a" and r["mode"] == "full" and r["seed"] == 0)
    prediction = _predict_new_clip(out, s, seen, best_a["checkpoint"], seed)

    stage("Writing the report: tables, figures, report.md, results.json")
    from . import report
    results = {
        "mode": mode, "seed": seed, "settings": asdict(s), "seen_classes": seen, "heldout_classes": held,
        "num_train": info["num_train"], "num_val": info["num_val"], "num_zeroshot": info["num_zeroshot"],
        "chance_seen": chance_seen, "chance_zeroshot": chance_zs, "clip": clip_config(s),
        "pretraining": {m: {k: v for k, v in t.items() if k != "loss_curve"} | {"loss_curve": t.get("loss_curve", [])}
                        for m, t in towers.items()},
        "arms": summarize(runs, s, chance_zs), "no_transfer": no_transfer, "prediction": prediction,
        "paper": report.PAPER,
        "seconds": {"data": info["seconds"], "pretrain": t_pretrain, "transfer": t_transfer},
        "machine": {"cpus": os.cpu_count(), "processes": s.processes, "python": platform.python_version(),
                    "torch": _torch_version(), "platform": platform.platform()},
    }
    rows = {r["arm"]: r["classifier_rows"] for r in runs if "classifier_rows" in r}
    results["figures"] = report.figures(out, results, rows, info)
    results["seconds"]["total"] = time.perf_counter() - t_start
    results["claims"] = report.claims(results)
    (out / "results.json").write_text(json.dumps(_no_nan(results), indent=1, default=_json_default) + "\n")
    (out / "report.md").write_text(report.report_markdown(results))
    print("\n" + report.paper_tables(results))
    stage("Done")
    print(f"wall time {results['seconds']['total']:.0f}s; report: {out / 'report.md'}; numbers: {out / 'results.json'}")
    return results


def _quiet_hf() -> None:
    try:  # the language model is loaded several times: no weight-loading bars each time
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
    except Exception:  # transformers missing or changed: the lm classifier reports it itself
        pass


def _torch_version() -> str:
    import torch
    return torch.__version__


def _no_nan(o):
    """NaN (a number that could not be measured) -> None, so results.json is strict JSON."""
    if isinstance(o, float) and math.isnan(o):
        return None
    if isinstance(o, dict):
        return {k: _no_nan(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_no_nan(v) for v in o]
    return o


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
