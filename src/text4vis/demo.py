"""`text4vis demo`: an offline, end-to-end demonstration on the built-in synthetic video benchmark.

No GPU, no pretrained CLIP and no dataset are needed. In a few minutes on a laptop CPU the demo

1. renders the synthetic "shapes in motion" benchmark (text4vis.synthetic): classes are sentences
   "{shape} {motion}"; a few shape x motion combinations are held out for zero-shot testing;
2. builds a small randomly initialised CLIP in OpenAI format (the image tower is trained from
   scratch) and trains it with the library's own `train()` in four arms with the same budget:
     (a) Transf head + frozen MiniLM classifier    (the paper's recipe, with a language model)
     (b) Transf head + learned linear classifier   (the usual vision-only baseline)
     (c) Transf head + frozen random orthogonal classifier
     (d) mean head   + frozen MiniLM classifier    (no temporal modelling)
   each also in a 2-shot version, and measures zero-shot accuracy on the held-out classes;
3. predicts a freshly rendered clip with the best model;
4. writes DIR/report.md (table, figures, what the numbers mean), DIR/results.json and PNG figures.

Everything is seeded; the numbers in the report are whatever the runs measured.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["DemoSettings", "FULL", "QUICK", "ARMS", "run_demo"]


# ----------------------------------------------------------------------------- settings

@dataclass(frozen=True)
class DemoSettings:
    """Everything that sizes the demo (the benchmark, the model and the training budget)."""
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
    epochs: int                    # full-data runs
    fewshot_epochs: int            # 2-shot runs (each epoch has about as many steps as a full epoch)
    shot: int = 2
    batch_size: int = 16
    lr: float = 1e-3               # from scratch: much higher than fine-tuning's 5e-5
    clip_ratio: float = 1.0        # the image tower is not pretrained: same lr as the head
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    logit_scale: float = 30.0      # initial exp(logit_scale) of the random CLIP; CLIP's own 1/0.07 = 14.3
                                   # left the from-scratch tower stuck at chance in our trials
    grayscale: float = 0.0         # colour is what separates the object from the background
    crop_scale: float = 1.0        # random resized crop keeps the whole frame (the object is small)
    workers: int = 1               # decoding processes (2 cores: one decodes, one computes)
    threads: int = 1               # torch threads for the training process


# Classes: a subset of the benchmark's grid that keeps two temporal-order pairs (moving left/right,
# growing/shrinking). Held out for zero-shot (synthetic.default_heldout): one class per shape, e.g.
# "circle moving left", "square growing", "triangle moving right" for the full demo.
FULL = DemoSettings(
    shapes=("circle", "square", "triangle"),
    motions=("moving left", "moving right", "growing", "shrinking"),
    train_per_class=133, val_per_class=16, zeroshot_per_class=20,
    size=32, video_frames=8, num_frames=8, width=96, layers=2, patch=8, embed_dim=96,
    epochs=12, fewshot_epochs=2, batch_size=8,
)
# Quick (tests, about a minute): two shapes moving left or right, 4 frames per clip. The two seen
# classes are "circle moving right" and "triangle moving left"; the two held-out ones swap the motions.
QUICK = DemoSettings(
    shapes=("circle", "triangle"),
    motions=("moving left", "moving right"),
    train_per_class=200, val_per_class=20, zeroshot_per_class=20,
    size=32, video_frames=4, num_frames=4, width=64, layers=2, patch=8, embed_dim=64,
    epochs=6, fewshot_epochs=1, batch_size=8,
)


@dataclass(frozen=True)
class Arm:
    key: str
    head: str
    classifier: str
    title: str

    @property
    def label(self) -> str:
        return f"({self.key}) {self.title}"

    @property
    def short(self) -> str:
        words = {"lm": "MiniLM", "linear": "linear", "orthogonal": "orthogonal"}[self.classifier]
        return f"({self.key}) {words}" + (", mean" if self.head == "mean" else "")


ARMS = (
    Arm("a", "transf", "lm", "Transf + frozen MiniLM"),
    Arm("b", "transf", "linear", "Transf + learned linear"),
    Arm("c", "transf", "orthogonal", "Transf + frozen orthogonal"),
    Arm("d", "mean", "lm", "mean + frozen MiniLM"),
)
ARMS_BY_KEY = {a.key: a for a in ARMS}
MARKER = ".text4vis-demo"      # marks a report folder as the demo's own (its data/ and work/ are replaced)
CLASSIFIER_WORDS = {"lm": "frozen MiniLM (text)", "linear": "learned linear", "orthogonal": "frozen random orthogonal"}
REVERSE = {"moving left": "moving right", "moving right": "moving left", "moving up": "moving down",
           "moving down": "moving up", "growing": "shrinking", "shrinking": "growing",
           "rotating clockwise": "rotating counterclockwise", "rotating counterclockwise": "rotating clockwise"}


# ----------------------------------------------------------------------------- small helpers

class _Stages:
    def __init__(self, total: int):
        self.total, self.n, self.t0 = total, 0, time.perf_counter()

    def __call__(self, title: str) -> None:
        self.n += 1
        elapsed = time.perf_counter() - self.t0
        print(f"\n=== [{self.n}/{self.total}] {title}  (t = {elapsed:.0f}s)", flush=True)


def _pct(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _read_metrics(path: Path) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(val top-1 per epoch, train loss per logged step) from a run's metrics.jsonl."""
    val, loss = [], []
    if not path.is_file():
        return val, loss
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        if "val_top1" in r:
            val.append((float(r["epoch"]), float(r["val_top1"])))
        elif "loss" in r:
            loss.append((float(r["epoch"]), float(r["loss"])))
    return val, loss


@contextlib.contextmanager
def _quiet_stdout(log_path: Path):
    """Send library printouts (evaluation summaries) to a log file instead of the console."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as f, contextlib.redirect_stdout(f):
        yield


@contextlib.contextmanager
def _torch_threads(n: int):
    import torch
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def build_init_clip(path: Path, s: DemoSettings, seed: int) -> dict:
    """A random-initialised CLIP in OpenAI's state-dict format (loads with `--clip path`).

    The image tower is a small ViT; the text tower is minimal (1 layer, width 64) but keeps CLIP's
    vocabulary so the checkpoint format and tokenizer work; the demo never trains it."""
    import torch
    from open_clip.model import CLIP
    cfg = dict(embed_dim=s.embed_dim,
               vision_cfg=dict(layers=s.layers, width=s.width, patch_size=s.patch, image_size=s.size),
               text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=1, layers=1),
               quick_gelu=True)
    torch.manual_seed(seed)
    model = CLIP(**cfg)
    sd = {k: v.detach().clone() for k, v in model.state_dict().items() if k != "attn_mask"}
    sd["logit_scale"] = torch.tensor(math.log(s.logit_scale))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, str(path))
    visual = sum(v.numel() for k, v in sd.items() if k.startswith("visual."))
    return {"config": cfg, "visual_parameters": int(visual), "logit_scale_init": s.logit_scale}


def make_config(s: DemoSettings, info: dict, clip_path: Path, arm: Arm, seed: int, shot: int | None = None):
    """The training config of one arm, built in code (same budget and settings for every arm)."""
    from .config import Config, check
    cfg = Config()
    d = cfg.data
    d.train_list, d.train_root = str(info["train_list"]), str(info["root"])
    d.val_list, d.val_root = str(info["val_list"]), str(info["root"])
    d.labels = str(info["labels_csv"])
    d.num_frames, d.input_size = s.num_frames, s.size
    d.flip = False                     # "moving left" flipped is "moving right"
    d.grayscale, d.crop_scale = s.grayscale, s.crop_scale
    d.batch_size, d.workers = s.batch_size, s.workers
    d.shot = shot
    cfg.model.clip, cfg.model.head = str(clip_path), arm.head
    cfg.classifier.type, cfg.classifier.seed = arm.classifier, seed
    o = cfg.optim
    o.lr, o.clip_ratio, o.weight_decay = s.lr, s.clip_ratio, s.weight_decay
    o.epochs = s.fewshot_epochs if shot else s.epochs
    o.warmup_epochs = min(s.warmup_epochs, max(0.0, o.epochs - 1))
    o.precision = "fp32"
    t = cfg.training
    t.seed, t.eval_freq, t.print_freq = 1000 + seed, 1, 10
    t.checkpoint_text_tower = False    # the text tower is random and unused: keep checkpoints small
    cfg.evaluation.batch_size = 32
    check(cfg)
    return cfg


def heldout_classifier(arm: Arm, names: list[str], dim: int, seed: int):
    """A classifier for classes the model never saw, of the arm's own type.

    lm: the language model embeds the new names (zero-shot transfer is possible); linear and
    orthogonal: there is nothing to build rows from, so new random/orthogonal rows (chance level)."""
    from . import classifiers
    if arm.classifier == "lm":
        return classifiers.lm_classifier(names)
    if arm.classifier == "orthogonal":
        return classifiers.orthogonal_classifier(names, dim, seed + 1)
    cls = classifiers.random_classifier(names, dim, seed + 1)
    cls.meta["type"] = "linear (untrained rows for unseen classes)"
    return cls


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


def order_pair_cosine(rows: np.ndarray, names: list[str]) -> float | None:
    """Mean cosine similarity of the classifier rows of temporal-reverse class pairs."""
    partner = order_partners(names)
    if not partner:
        return None
    w = rows / np.linalg.norm(rows, axis=1, keepdims=True).clip(1e-12)
    return float(np.mean([w[i] @ w[j] for i, j in partner.items()]))


# ----------------------------------------------------------------------------- the demo

def run_demo(out: str | os.PathLike = "demo-report", quick: bool = False, seed: int = 0,
             progress: bool = True, settings: DemoSettings | None = None) -> dict:
    """Run the whole demo into `out`; returns the results dict (also written to results.json)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")          # everything the demo needs is local
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    try:  # the language model is loaded several times: no weight-loading bars each time
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
    except Exception:  # transformers missing or changed: the lm classifier reports it itself
        pass

    from . import classifiers, plots, synthetic
    from .api import load
    from .datasets import load_split
    from .evaluate import run_eval
    from .train import CHECKPOINT_BEST, train

    s = settings or (QUICK if quick else FULL)
    t_start = time.perf_counter()
    out = Path(out)
    data_dir, work = out / "data", out / "work"
    marker = out / MARKER
    if not marker.exists():
        taken = [str(p) for p in (data_dir, work) if p.exists()]
        if taken:
            from .cli import UsageError
            raise UsageError(f"{' and '.join(taken)} {'exists' if len(taken) == 1 else 'exist'} but "
                             f"{'was' if len(taken) == 1 else 'were'} not written by `text4vis demo`; choose "
                             f"another --out")
    for p in (data_dir, work):                             # a fresh run: train() appends to metrics.jsonl
        if p.exists():
            shutil.rmtree(p)
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text("written by `text4vis demo`; its data/ and work/ folders are replaced on every run\n")
    log_path = work / "logs" / "evaluation.log"
    stage = _Stages(5)
    mode = "quick" if quick else "full"
    print(f"text4vis demo ({mode}): everything offline on the CPU; report in {out}/", flush=True)

    # 1. the benchmark ----------------------------------------------------------------------------
    stage("Rendering the synthetic benchmark (classes are sentences: '{shape} {motion}')")
    t0 = time.perf_counter()
    info = synthetic.make_benchmark(data_dir, seed=seed, shapes=s.shapes, motions=s.motions,
                                    train_per_class=s.train_per_class, val_per_class=s.val_per_class,
                                    zeroshot_per_class=s.zeroshot_per_class, num_frames=s.video_frames,
                                    size=s.size, progress=progress)
    seen, held = list(info["classes"]), list(info["heldout_classes"])
    t_data = time.perf_counter() - t0
    print(f"{len(seen)} seen classes ({info['num_train']} training / {info['num_val']} val videos), "
          f"{len(held)} held-out classes for zero-shot ({info['num_zeroshot']} videos): {', '.join(held)}")
    print(f"{s.video_frames} frames of {s.size}x{s.size} pixels per video; rendered in {t_data:.1f}s")

    # 2. the model and the four arms --------------------------------------------------------------
    stage("Training a small CLIP image tower from scratch in four arms (same budget each)")
    clip_path = work / "init_clip.pt"
    clip_info = build_init_clip(clip_path, s, seed)
    print(f"random CLIP: ViT {s.layers} layers x width {s.width}, patch {s.patch}, {s.size}px input, "
          f"embedding {s.embed_dim} ({clip_info['visual_parameters'] / 1e6:.2f}M image-tower parameters) "
          f"-> {clip_path}")
    print(f"each arm: {s.epochs} epochs on all training videos, then {s.fewshot_epochs} epochs with "
          f"{s.shot} videos per class; batch {s.batch_size}, lr {s.lr:g}, {s.num_frames} frames per clip")
    val_samples = load_split(str(info["val_list"]), str(info["root"]), seen)[0]
    zs_samples = load_split(str(info["zeroshot_list"]), str(info["root"]), held)[0]
    chance_seen, chance_zs = 1.0 / len(seen), 1.0 / max(1, len(held))

    arms: dict[str, dict] = {}
    with _torch_threads(s.threads):
        for arm in ARMS:
            r: dict = {"key": arm.key, "title": arm.title, "head": arm.head, "classifier": arm.classifier}
            run_dir = work / "runs" / f"{arm.key}_{arm.head}_{arm.classifier}"
            print(f"\n--- arm {arm.label}: head {arm.head}, classifier {CLASSIFIER_WORDS[arm.classifier]}",
                  flush=True)
            t0 = time.perf_counter()
            summary = train(make_config(s, info, clip_path, arm, seed), str(run_dir / "full"), progress=progress)
            r["train_seconds"] = time.perf_counter() - t0
            curve, loss = _read_metrics(run_dir / "full" / "metrics.jsonl")
            r["val_curve"], r["loss_curve"] = curve, loss
            r["final_top1"] = curve[-1][1] if curve else float("nan")
            r["best_top1"] = float(summary.get("best_top1", float("nan")))
            r["first_epoch_top1"] = curve[0][1] if curve else float("nan")
            r["mean_curve_top1"] = float(np.mean([v for _, v in curve])) if curve else float("nan")
            r["steps"] = int(summary.get("steps", 0))
            best = run_dir / "full" / CHECKPOINT_BEST
            r["checkpoint"] = str(best)

            print(f"--- arm {arm.label}: 2-shot run ({s.shot} videos per class)", flush=True)
            t0 = time.perf_counter()
            few = train(make_config(s, info, clip_path, arm, seed, shot=s.shot), str(run_dir / "2shot"),
                        progress=progress)
            r["fewshot_seconds"] = time.perf_counter() - t0
            few_curve, _ = _read_metrics(run_dir / "2shot" / "metrics.jsonl")
            r["fewshot_curve"] = few_curve
            r["fewshot_top1"] = few_curve[-1][1] if few_curve else float("nan")
            r["fewshot_steps"] = int(few.get("steps", 0))

            # evaluation of the best checkpoint: seen classes (val) and held-out classes (zero-shot)
            rec = load(checkpoint=str(best), device="cpu")
            with _quiet_stdout(log_path):
                val = run_eval(rec, val_samples, seen, out=str(run_dir / "val_eval"), workers=0,
                               batch_size=32, progress=False, info={"arm": arm.key})
            pred = np.load(run_dir / "val_eval" / "predictions.npz")
            r["best_val_top1"] = float(val.get("top1", float("nan")))
            r["best_val_mean_class_accuracy"] = float(val.get("mean_class_accuracy", float("nan")))
            r["order_confusion"] = order_confusion(pred["scores"], pred["labels"], seen)
            r["classifier_rows"] = rec.model.classifier.detach().float().cpu().numpy()
            if held:
                cls = heldout_classifier(arm, held, int(rec.model.classifier.shape[1]), seed)
                rec.set_classifier(cls)
                with _quiet_stdout(log_path):
                    zs = run_eval(rec, zs_samples, held, out=str(run_dir / "zeroshot_eval"), workers=0,
                                  batch_size=32, progress=False, info={"arm": arm.key, "protocol": "held-out"})
                r["zeroshot_top1"] = float(zs.get("top1", float("nan")))
            else:
                r["zeroshot_top1"] = float("nan")
            r["zeroshot_chance"] = chance_zs
            print(f"--- arm {arm.label}: final val top-1 {_pct(r['final_top1'])} (best {_pct(r['best_top1'])}), "
                  f"2-shot {_pct(r['fewshot_top1'])}, zero-shot {_pct(r['zeroshot_top1'])} "
                  f"(chance {_pct(chance_zs)}); {r['train_seconds'] + r['fewshot_seconds']:.0f}s", flush=True)
            arms[arm.key] = r

    # 3. predict a new clip -----------------------------------------------------------------------
    stage("Predicting a freshly rendered clip with the best model")
    best_key = max(arms, key=lambda k: (arms[k]["best_val_top1"], -ord(k)))
    rng = np.random.default_rng([seed, 4242])
    true_name = seen[int(rng.integers(len(seen)))]
    shape, motion = synthetic.parse_class_name(true_name)
    frames, _ = synthetic.render_clip(shape, motion, rng, s.video_frames, s.size)
    new_clip = out / "new_clip.mp4"
    synthetic.write_video(new_clip, frames, fps=8)
    rec = load(checkpoint=arms[best_key]["checkpoint"], device="cpu")
    record = rec.predict([str(new_clip)], topk=3, workers=0)[0]
    print(f"best arm: {ARMS_BY_KEY[best_key].label}; new clip {new_clip} (true class: '{true_name}')")
    top3 = record.get("top", [])
    for k, t in enumerate(top3, start=1):
        mark = "  <- correct" if t["label"] == true_name else ""
        print(f"  {k}. {t['label']:<28} {100 * t['score']:6.2f}%{mark}")
    if "error" in record:
        print(f"  error: {record['error']}")
    prediction = {"video": str(new_clip), "true": true_name, "arm": best_key, "top3": top3}

    # 4. figures, table, report -------------------------------------------------------------------
    stage("Writing the report: figures, results table, report.md, results.json")
    figures = _figures(out, s, seen, held, arms, best_key, info, seed, classifiers, plots, synthetic)
    wall = time.perf_counter() - t_start
    results = {
        "mode": mode, "seed": seed, "settings": asdict(s), "seen_classes": seen, "heldout_classes": held,
        "num_train": info["num_train"], "num_val": info["num_val"], "num_zeroshot": info["num_zeroshot"],
        "chance_seen": chance_seen, "chance_zeroshot": chance_zs, "clip": clip_info,
        "arms": {k: {kk: vv for kk, vv in v.items() if kk != "classifier_rows"} for k, v in arms.items()},
        "best_arm": best_key, "prediction": prediction, "figures": figures,
        "lm_order_pair_cosine": order_pair_cosine(arms["a"]["classifier_rows"], seen) if "a" in arms else None,
        "seconds": {"data": t_data, "total": wall},
        "machine": {"cpus": os.cpu_count(), "torch_threads": s.threads, "workers": s.workers,
                    "python": platform.python_version(), "torch": torch.__version__,
                    "platform": platform.platform()},
    }
    table = results_table(results)
    print("\n" + table)
    (out / "results.json").write_text(json.dumps(_no_nan(results), indent=1, default=_json_default) + "\n")
    (out / "report.md").write_text(report_markdown(results, table))

    stage("Done")
    print(f"wall time {wall:.0f}s; report: {out / 'report.md'}; numbers: {out / 'results.json'}")
    return results


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
    if isinstance(o, Path):
        return str(o)
    return str(o)


# ----------------------------------------------------------------------------- figures

def _figures(out: Path, s: DemoSettings, seen, held, arms, best_key, info, seed, classifiers, plots, synthetic) -> dict:
    figs: dict[str, str] = {}
    # training curves: val top-1 per epoch, train loss per step (x in epochs)
    series = {ARMS_BY_KEY[k].label: [(e, 100 * v) for e, v in r["val_curve"]] for k, r in arms.items()}
    epochs = [e for r in arms.values() for e, _ in r["val_curve"]]
    if epochs:
        series[f"chance ({100 / len(seen):.1f}%)"] = [(min(epochs), 100 / len(seen)), (max(epochs), 100 / len(seen))]
    plots.plot_curves(series, out / "curves_val_top1.png", "epoch", "val top-1 (%)",
                      f"Val top-1 on the {len(seen)} seen classes (chance {100 / len(seen):.1f}%)")
    figs["curves_val_top1"] = "curves_val_top1.png"
    series = {ARMS_BY_KEY[k].label: _epoch_means(r["loss_curve"]) for k, r in arms.items()}
    plots.plot_curves(series, out / "curves_train_loss.png", "epoch", "training loss (cross-entropy)",
                      "Training loss (mean of the logged batches of each epoch)")
    figs["curves_train_loss"] = "curves_train_loss.png"
    # classifier correlation maps: MiniLM rows, learned linear rows (arm b), orthogonal rows
    panels = []
    if "a" in arms:
        panels.append(("MiniLM text classifier (frozen)", arms["a"]["classifier_rows"]))
    if "b" in arms:
        panels.append(("linear classifier learned in arm (b)", arms["b"]["classifier_rows"]))
    if "c" in arms:
        panels.append(("random orthogonal classifier (frozen)", arms["c"]["classifier_rows"]))
    # (a leading blank title line: plot_correlation's fixed-height figure clips the top of one-line titles)
    plots.plot_correlation([("\n" + t, w) for t, w in panels], seen, out / "classifier_correlation.png",
                           classes=None, seed=seed)
    figs["classifier_correlation"] = "classifier_correlation.png"

    # confusion of the best arm on val
    from . import metrics
    run_dir = Path(arms[best_key]["checkpoint"]).parent.parent
    pred = np.load(run_dir / "val_eval" / "predictions.npz")
    conf = metrics.confusion_matrix(pred["labels"], metrics.predictions(pred["scores"]), len(seen))
    plots.plot_confusion(conf, seen, out / "confusion_best.png",
                         title=f"Confusion on val, best arm {ARMS_BY_KEY[best_key].label}")
    figs["confusion_best"] = "confusion_best.png"

    # zero-shot accuracies with the chance level
    if held:
        values = {ARMS_BY_KEY[k].short: 100 * r["zeroshot_top1"] for k, r in arms.items()}
        plots.plot_bars(values, out / "zeroshot_top1.png", "top-1 on held-out classes (%)",
                        f"Zero-shot on {len(held)} held-out classes (dashed: chance)",
                        reference=round(100 / len(held), 1), reference_label="chance")
        figs["zeroshot_top1"] = "zeroshot_top1.png"

    # sample clips: one val clip for each of several classes (temporal pairs side by side), held-out ones
    root = Path(info["root"])

    def first_videos(list_file) -> dict[int, str]:
        first: dict[int, str] = {}
        for line in Path(list_file).read_text().splitlines():
            if line.strip():
                path, label = line.rsplit(" ", 1)
                first.setdefault(int(label), path)
        return first

    val_first, zs_first = first_videos(info["val_list"]), first_videos(info["zeroshot_list"]) if held else {}
    shown = _pair_pick(seen, 8)
    clips = [(name, synthetic.read_video(root / val_first[seen.index(name)])) for name in shown]
    clips += [(name + "\n(held out)", synthetic.read_video(root / zs_first[i])) for i, name in enumerate(held[:2])]
    plots.save_image_strip(clips, out / "sample_clips.png", frames_per_clip=min(8, s.video_frames))
    figs["sample_clips"] = "sample_clips.png"
    return figs


def _epoch_means(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Mean of the logged (epoch, value) points within each epoch, placed at the epoch's end."""
    groups: dict[int, list[float]] = {}
    for e, v in points:
        groups.setdefault(max(1, math.ceil(e - 1e-9)), []).append(v)
    return [(float(e), float(np.mean(vs))) for e, vs in sorted(groups.items())]


def _pair_pick(names: list[str], n: int) -> list[str]:
    """Up to n class names, temporal-order partners next to each other."""
    out: list[str] = []
    for name in names:
        if name in out:
            continue
        shape, _, motion = name.partition(" ")
        partner = f"{shape} {REVERSE.get(motion, '')}"
        group = [name] + ([partner] if partner in names and partner not in out else [])
        if len(out) + len(group) <= n:
            out.extend(group)
        if len(out) >= n:
            break
    return out


# ----------------------------------------------------------------------------- table and report

def results_table(results: dict) -> str:
    head = ["arm", "head", "classifier", "final top-1", f"{results['settings']['shot']}-shot top-1",
            "zero-shot top-1 (chance)", "train time"]
    rows = []
    for k, r in results["arms"].items():
        zs = f"{_pct(r['zeroshot_top1'])} ({_pct(r['zeroshot_chance'])})" if results["heldout_classes"] else "n/a"
        rows.append([f"({k}) {r['title']}", r["head"], CLASSIFIER_WORDS[r["classifier"]], _pct(r["final_top1"]),
                     _pct(r["fewshot_top1"]), zs, f"{r['train_seconds'] + r['fewshot_seconds']:.0f}s"])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep] + [line(r) for r in rows])


def _se(p: float, n: int) -> float:
    """Standard error of an accuracy p measured on n videos."""
    return math.sqrt(max(p * (1 - p), 1e-12) / max(n, 1))


def _compare(a: float, b: float, n: int) -> str:
    """'higher', 'lower' or 'same': a vs b, each measured on n videos, with a 2-standard-error margin."""
    if any(isinstance(x, float) and math.isnan(x) for x in (a, b)):
        return "same"
    noise = 2 * math.sqrt(_se(a, n) ** 2 + _se(b, n) ** 2)
    if a - b > noise:
        return "higher"
    if b - a > noise:
        return "lower"
    return "same"


def _versus_chance(a: float, chance: float, n: int) -> str:
    """'higher', 'lower' or 'same': accuracy a on n videos vs a known chance level (2 standard errors)."""
    if isinstance(a, float) and math.isnan(a):
        return "same"
    noise = 2 * _se(chance, n)
    return "higher" if a - chance > noise else "lower" if chance - a > noise else "same"


WORDS = {"higher": "clearly higher than", "lower": "clearly lower than", "same": "within the noise of"}
SHORT = {"higher": "clearly higher", "lower": "clearly lower", "same": "no clear difference"}


def report_markdown(results: dict, table: str) -> str:
    a = results["arms"]
    s = results["settings"]
    n_val, n_zs = results["num_val"], results["num_zeroshot"]
    seen, held = results["seen_classes"], results["heldout_classes"]
    pct = _pct
    lines = [
        "# text4vis demo: a frozen text classifier for video recognition, at toy scale",
        "",
        f"Generated by `text4vis demo{' --quick' if results['mode'] == 'quick' else ''} --seed {results['seed']}` "
        f"in {results['seconds']['total']:.0f} s on {results['machine']['cpus']} CPU cores "
        f"(torch {results['machine']['torch']}, no GPU, no pretrained weights, no downloads).",
        "",
        "The paper (Text4Vis, *Revisiting Classifier*, AAAI 2023) replaces the learned linear classifier of a "
        "video model by a **frozen** one whose rows are text embeddings of the class names, and reports that "
        "this helps most where labelled data is scarce (few-shot), where classes were never seen (zero-shot) and "
        "in how fast training converges. This demo reruns that comparison end to end on a synthetic benchmark "
        "small enough for a CPU, with an image tower trained from scratch.",
        "",
        "## Setup",
        "",
        f"* **Data**: the built-in synthetic benchmark (`text4vis synth`): one shape moving over a random textured "
        f"background, {s['video_frames']} frames of {s['size']}x{s['size']} pixels. Class names are sentences "
        f"'{{shape}} {{motion}}' with shapes {', '.join(s['shapes'])} and motions {', '.join(s['motions'])}. "
        f"{len(seen)} classes are trained on ({results['num_train']} training videos, {n_val} val videos); "
        f"{len(held)} are held out for zero-shot testing ({n_zs} videos): {', '.join(held) or 'none'}. Several "
        "classes differ only in temporal order (moving left vs right, growing vs shrinking).",
        f"* **Model**: a random-initialised CLIP in OpenAI format (`work/init_clip.pt`): ViT image tower with "
        f"{s['layers']} layers of width {s['width']}, patch {s['patch']}, embedding {s['embed_dim']} "
        f"({results['clip']['visual_parameters'] / 1e6:.2f}M parameters), trained from scratch.",
        f"* **Training**: the library's `train()` with the same settings for every arm: {s['epochs']} epochs, "
        f"batch {s['batch_size']}, AdamW lr {s['lr']:g} (image tower at the same lr: clip_ratio {s['clip_ratio']:g}), "
        f"{s['num_frames']} frames per clip, no horizontal flip (it would turn 'left' into 'right'), fp32 on the CPU. "
        f"The {s['shot']}-shot runs keep {s['shot']} random training videos per class and train "
        f"{s['fewshot_epochs']} epoch(s), each with about as many steps as a full-data epoch.",
        "* **Arms**: (a) the paper's recipe: Transf temporal head + frozen classifier from the MiniLM language "
        "model (`classifier.type=lm`; its rows are 384-d, so a learned projection maps the video embedding to "
        "them); (b) Transf + learned linear classifier (the vision-only baseline); (c) Transf + frozen random "
        "orthogonal classifier (frozen, but without any semantics); (d) mean pooling over frames + MiniLM.",
        "* **Zero-shot**: the best checkpoint of each arm gets a classifier for the held-out names of its own "
        "type: MiniLM embeds the new names; a linear or orthogonal classifier has no rows for classes it never "
        "trained on, so new random rows are used (chance level by construction).",
        "",
        "## Results",
        "",
        table,
        "",
        f"Chance: {pct(results['chance_seen'])} on the {len(seen)} seen classes, "
        f"{pct(results['chance_zeroshot'])} on the {len(held)} held-out classes. 'final top-1' is the val top-1 "
        f"after the last epoch; val has {n_val} videos, so one standard error is about "
        f"{pct(_se(0.5, n_val))} at 50% accuracy; the zero-shot set has {n_zs} videos "
        f"(standard error about {pct(_se(results['chance_zeroshot'], n_zs))} at chance). Single seed.",
        "",
        "| arm | best val top-1 | top-1 after epoch 1 | mean val top-1 over epochs | order confusions |",
        "|---|---|---|---|---|",
    ]
    for k, r in a.items():
        oc = pct(r["order_confusion"]) if r["order_confusion"] is not None else "n/a"
        lines.append(f"| ({k}) {r['title']} | {pct(r['best_val_top1'])} | {pct(r['first_epoch_top1'])} | "
                     f"{pct(r['mean_curve_top1'])} | {oc} |")
    lines += [
        "",
        "'order confusions': of the val videos whose class has a temporal reverse among the classes "
        "(e.g. 'circle moving left' and 'circle moving right'), the fraction predicted as the reverse class.",
        "",
        "## What it means",
        "",
    ]
    lines += _interpretation(results)
    f = results["figures"]
    lines += [
        "",
        "## Figures",
        "",
        "Validation top-1 per epoch (convergence) and training loss:",
        "",
        f"![val top-1 per epoch]({f['curves_val_top1']})",
        "",
        f"![training loss]({f['curves_train_loss']})",
        "",
    ]
    if "zeroshot_top1" in f:
        lines += ["Zero-shot top-1 on the held-out classes:", "", f"![zero-shot top-1]({f['zeroshot_top1']})", ""]
    lines += [
        "Class-by-class cosine similarity of the classifier rows. The MiniLM rows carry the structure of the "
        "names (same shape, or same motion, means similar); the learned linear rows carry whatever training "
        "put there; the orthogonal rows are, by construction, unrelated to each other:",
        "",
        f"![classifier correlation]({f['classifier_correlation']})",
        "",
        f"Confusion matrix of the best arm ({ARMS_BY_KEY[results['best_arm']].label}) on val:",
        "",
        f"![confusion matrix]({f['confusion_best']})",
        "",
        "Sample clips (evenly spaced frames; one val clip per class, and held-out classes):",
        "",
        f"![sample clips]({f['sample_clips']})",
        "",
        "## A new clip",
        "",
    ]
    p = results["prediction"]
    lines.append(f"A clip of '{p['true']}' rendered with a fresh seed (`{Path(p['video']).name}`), classified by "
                 f"the best arm ({ARMS_BY_KEY[p['arm']].label}):")
    lines.append("")
    for k, t in enumerate(p["top3"], start=1):
        lines.append(f"{k}. {t['label']}: {100 * t['score']:.1f}%" + ("  (correct)" if t["label"] == p["true"] else ""))
    lines += [
        "",
        "## Files",
        "",
        "* `results.json`: every number above, the settings and the per-epoch curves.",
        "* `data/`: the benchmark (videos, list files, label CSVs); `work/init_clip.pt`: the random CLIP.",
        "* `work/runs/<arm>/{full,2shot}/`: each training run (config.yaml, metrics.jsonl, TensorBoard logs, "
        "best/last checkpoints); `val_eval/` and `zeroshot_eval/`: evaluation outputs (per-class accuracy, "
        "predictions).",
        "* Reproduce one arm by hand: `text4vis train --config work/runs/<arm>/full/config.yaml --output runs/x`; "
        "predict with `text4vis predict new_clip.mp4 --checkpoint work/runs/<arm>/full/best.safetensors`.",
        "",
    ]
    return "\n".join(lines)


def _interpretation(results: dict) -> list[str]:
    """Plain statements derived from the measured numbers (nothing here is fixed in advance).

    A difference counts only when it exceeds two standard errors of the evaluation set."""
    a = results["arms"]
    s = results["settings"]
    n_val, n_zs = results["num_val"], results["num_zeroshot"]
    pct = _pct
    out: list[str] = []
    lm, lin, orth, mean = a.get("a"), a.get("b"), a.get("c"), a.get("d")
    noise = f"(differences below about {pct(2 * math.sqrt(2) * _se(0.5, n_val))} on val are noise)"

    if results["heldout_classes"] and lm:
        chance = results["chance_zeroshot"]
        v = _versus_chance(lm["zeroshot_top1"], chance, n_zs)
        text = (f"* **Zero-shot** (the held-out classes were never trained on): the MiniLM arm reached "
                f"{pct(lm['zeroshot_top1'])} against a chance level of {pct(chance)} ({SHORT[v]} on "
                f"{n_zs} videos). ")
        if v == "higher":
            text += ("The model recognises classes it never saw because their *names* are embedded by the "
                     "language model, and the shape and motion words in them also occur in trained classes.")
        else:
            text += ("At this scale the transfer from seen to unseen names did not show clearly in this run; "
                     "it needs the image tower to have learned shape and motion well on the seen classes first.")
        others = [f"{name} {pct(r['zeroshot_top1'])}" for name, r in (("linear", lin), ("orthogonal", orth)) if r]
        if others:
            text += (f" The learned linear and the orthogonal classifiers ({', '.join(others)}) have no rows for "
                     "unseen classes: new random rows are all they can offer, so they are at chance by "
                     "construction (any distance from chance there is sampling noise). Only a classifier made "
                     "from language can name classes it was not trained on.")
        if mean:
            vm = _versus_chance(mean["zeroshot_top1"], chance, n_zs)
            text += (f" With the mean head the MiniLM classifier reached {pct(mean['zeroshot_top1'])} "
                     f"({'no clear difference from' if vm == 'same' else SHORT[vm] + ' than'} chance).")
        out.append(text)
    if lm and lin:
        v = _compare(lm["fewshot_top1"], lin["fewshot_top1"], n_val)
        text = (f"* **Few-shot** ({s['shot']} videos per class): MiniLM {pct(lm['fewshot_top1'])}, learned linear "
                f"{pct(lin['fewshot_top1'])}" + (f", orthogonal {pct(orth['fewshot_top1'])}" if orth else "")
                + f"; MiniLM is {WORDS[v]} the learned classifier. ")
        if v == "higher":
            text += ("With a handful of videos a learned classifier has to be fitted from almost nothing, while the "
                     "frozen rows are in place from the first step.")
        else:
            text += ("The paper's few-shot gains come from a pretrained CLIP image tower whose features already "
                     "match the text embeddings; an image tower trained from scratch on a few videos per class "
                     "learns little whatever the classifier, so at this scale the benefit does not show.")
        out.append(text)
        v1 = _compare(lm["first_epoch_top1"], lin["first_epoch_top1"], n_val)
        vm = _compare(lm["mean_curve_top1"], lin["mean_curve_top1"], n_val)
        text = (f"* **Convergence**: after the first epoch MiniLM {pct(lm['first_epoch_top1'])} vs linear "
                f"{pct(lin['first_epoch_top1'])} ({SHORT[v1]}); averaged over all epochs (the area under the "
                f"val curve) {pct(lm['mean_curve_top1'])} vs {pct(lin['mean_curve_top1'])} ({SHORT[vm]}). ")
        if "higher" in (v1, vm):
            text += "The frozen text classifier gave the tower a useful target earlier."
        elif "lower" in (v1, vm):
            text += ("Here the learned classifier got going sooner: its rows move towards the video features "
                     "while a frozen classifier waits for the tower to reach them.")
        else:
            text += "No convergence difference shows at this scale."
        out.append(text)
        vf = _compare(lm["final_top1"], lin["final_top1"], n_val)
        text = (f"* **Full training on the seen classes**: final top-1 MiniLM {pct(lm['final_top1'])}, learned "
                f"linear {pct(lin['final_top1'])}" + (f", orthogonal {pct(orth['final_top1'])}" if orth else "")
                + f"; MiniLM is {WORDS[vf]} linear. ")
        if vf == "higher":
            text += "The frozen text classifier also helped with all the training data."
        else:
            text += ("This is where a frozen text classifier is not expected to help much: with labelled videos "
                     "for every class, a learned classifier can fit them too.")
            pair_cos = results.get("lm_order_pair_cosine")
            if pair_cos is not None:
                text += (f" And the language model's rows for classes that differ only in temporal order (say "
                         f"'circle moving left' and 'circle moving right') are very similar (mean cosine "
                         f"{pair_cos:.2f}; see the correlation map), which makes exactly those classes harder to "
                         "pull apart than with orthogonal rows.")
        if orth:
            vo = _compare(orth["final_top1"], lm["final_top1"], n_val)
            text += (f" The frozen orthogonal classifier (frozen, but without semantics) is {WORDS[vo]} MiniLM "
                     "on the seen classes, and useless for unseen ones: what brings zero-shot is the language, "
                     "not the freezing.")
        out.append(text)
    if lm and mean:
        v = _compare(lm["final_top1"], mean["final_top1"], n_val)
        oc_t, oc_m = lm.get("order_confusion"), mean.get("order_confusion")
        text = (f"* **Temporal head**: with the same MiniLM classifier, the Transf head reached "
                f"{pct(lm['final_top1'])} and mean pooling {pct(mean['final_top1'])} "
                f"({'no clear difference' if v == 'same' else 'Transf ' + SHORT[v]}).")
        if oc_t is not None and oc_m is not None:
            text += (f" A class mistaken for its temporal reverse: Transf {pct(oc_t)} of such videos, mean "
                     f"{pct(oc_m)}. Averaging frame embeddings discards their order, so to the mean head 'moving "
                     "left' and 'moving right' look the same on average; no classifier can recover what the "
                     "video embedding does not contain.")
            if oc_m <= oc_t:
                text += (" In this run the Transf head had not learned temporal order either (it is the slowest "
                         "thing to learn from scratch).")
        out.append(text)
    out.append(f"* **Caveats**: a toy: a tiny image tower trained from scratch for a few minutes, synthetic data, "
               f"small evaluation sets, a single seed {noise}. Run with another `--seed` to see how much the "
               "numbers move. The paper's large gains rely on a pretrained CLIP whose image features are already "
               "aligned with text.")
    return out
