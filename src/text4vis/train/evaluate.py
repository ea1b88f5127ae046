"""`text4vis eval`: the paper's evaluation protocols, with files anyone can recompute them from.

Every video is scored once from its aggregated views (mean of raw embeddings over C clips x K
crops, L2-normalised, softmax of 100 x cosine). Outputs in the folder `out`:
  results.json        every metric, the protocol, views, frames, checkpoint, label set, counts,
                      failed videos
  predictions.npz     videos (N paths), labels (N ids), scores (N x C), embeddings (N x D),
                      classifier (C x D): enough to recompute everything
  per_class.csv       accuracy, support and AP per class, worst first
  confusion.png       confusion matrix ordered by clustering; confused_pairs.csv the top pairs
"""
from __future__ import annotations

import csv
import json
import math
import os
import time

import numpy as np

from .. import engine
from ..datasets import FrameReader, TestDataset, check_labels_in_range, load_split
from ..devices import is_dist, precision_name, process_group, rank_world
from ..errors import OutputError
from ..files import check_output_folder
from ..labels import load_labels, resolve_labels
from ..sampling import parse_views
from . import metrics


def recompute(npz_path: str) -> dict:
    """The metrics of results.json, recomputed from predictions.npz alone."""
    data = np.load(npz_path, allow_pickle=False)
    return metrics.summarize(data["scores"], data["labels"])


def run_eval(rec, samples, names: list[str], *, views: str = "1x1", dense: bool = False,
             reader: FrameReader | None = None, batch_size: int = 8, workers: int | None = None,
             zero_shot: bool = False, splits: list[tuple[str, list[str]]] | None = None,
             out: str | None = None, info: dict | None = None, progress: bool = True) -> dict:
    """Evaluate a Recognizer on samples whose labels index `names`. Writes outputs on rank 0."""
    clips, crops = parse_views(views)
    check_labels_in_range(samples, len(names))
    ds = TestDataset(samples, rec.num_frames, rec.input_size, clips, crops, reader, dense)
    t0 = time.perf_counter()
    emb = engine.embed_dataset(rec.model, ds, rec.device, batch_size=batch_size, workers=workers,
                               progress=progress, desc="eval", precision=rec.precision)
    wall = time.perf_counter() - t0
    classifier = rec.model.classifier.detach().float().cpu()
    scores = engine.scores_from_embeddings(emb.embeddings, classifier).numpy()
    labels = np.array([samples[i].label for i in emb.indices], dtype=np.int64)
    videos = np.array([samples[i].path for i in emb.indices])
    results: dict = dict(info or {})
    results.update({
        "protocol": "zero-shot" if zero_shot else "standard",
        "views": views, "frames": rec.num_frames, "precision": precision_name(rec.device, rec.precision), "input_size": rec.input_size, "dense": dense,
        "num_classes": len(names), "num_videos": int(len(labels)), "num_failed": len(emb.errors),
        "failed": [{"video": samples[i].path, "error": msg} for i, msg in emb.errors],
    })
    if len(labels):
        results.update(metrics.summarize(scores, labels))
    else:
        results.update(top1=None, top5=None, mean_class_accuracy=None, mAP=None, num_videos=0)  # nothing scored
    e = emb.embeddings.numpy()
    c = classifier.numpy()
    if zero_shot and len(labels):
        results["half_classes"] = metrics.half_classes_protocol(e, labels, c)
    if splits and len(labels):
        index = {n: i for i, n in enumerate(names)}
        ids = []
        for split_name, split_names in splits:
            missing = [n for n in split_names if n not in index]
            if missing:
                raise ValueError(f"split {split_name}: class {missing[0]!r} is not in the label list")
            ids.append(np.array([index[n] for n in split_names]))
        results["class_splits"] = metrics.split_protocol(e, labels, c, ids)
        results["class_splits"]["names"] = [s for s, _ in splits]
    results["speed"] = {"videos_per_s": len(samples) / max(wall, 1e-9), "seconds": wall,
                        "seconds_waiting_for_decode": emb.seconds_waiting, "seconds_model": emb.seconds_model}
    rank, _ = rank_world()
    if out and rank == 0:
        write_outputs(out, results, videos, labels, scores, e, c, names)
    if rank == 0:
        print(summary_text(results, names))
    return results


REPORT_FILES = ("results.json", "predictions.npz", "per_class.csv", "confusion.png", "confused_pairs.csv")


def earlier_eval_list(out: str) -> str | None:
    """The val list an earlier `text4vis eval` report in `out` evaluated (None: the folder holds none)."""
    try:
        with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
            r = json.load(f)
    except (OSError, ValueError):
        return None
    if isinstance(r, dict) and {"protocol", "views", "num_videos", "speed"} <= set(r):
        return str(r.get("val_list"))
    return None


def check_eval_out(out: str, val_list: str, overwrite: bool = False) -> None:
    """Before the evaluation: `out` is new or empty, or holds an earlier report of the same val list (which
    is replaced); a folder holding anything else (a user's results.json, a dataset) or an earlier report of
    another list is refused unless `overwrite`."""
    earlier = earlier_eval_list(out) if os.path.isdir(out) and not overwrite else None
    if earlier is not None and os.path.abspath(earlier) != os.path.abspath(val_list) and earlier != val_list:
        raise OutputError(f"out={out!r}: holds the report of an earlier eval of another list ({earlier}); nothing "
                          f"written (choose another folder, or overwrite=True to replace it)")
    check_output_folder(out, "out", "an eval report", lambda p: earlier is not None, overwrite)


def write_outputs(out, results, videos, labels, scores, embeddings, classifier, names) -> None:
    from .. import plots
    os.makedirs(out, exist_ok=True)
    np.savez_compressed(os.path.join(out, "predictions.npz"), videos=videos.astype(str), labels=labels,
                        scores=scores.astype(np.float32), embeddings=embeddings.astype(np.float32),
                        classifier=classifier.astype(np.float32))
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(json_safe(results), f, indent=1, allow_nan=False)
    if not len(labels):
        return
    with open(os.path.join(out, "per_class.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "name", "support", "accuracy", "ap"], lineterminator="\n")
        w.writeheader()
        w.writerows(metrics.per_class_report(scores, labels, names))
    conf = metrics.confusion_matrix(labels, metrics.predictions(scores), len(names))
    # the figure shows the classes that have videos (a 400-class label set evaluated on 32 would draw 368
    # empty rows); predictions into the other classes are in per_class.csv and confused_pairs.csv
    present = np.flatnonzero(conf.sum(axis=1) > 0)
    title = "Confusion matrix" if len(present) == len(names) else \
        f"Confusion matrix: the {len(present)} of {len(names)} classes that have videos"
    plots.plot_confusion(conf[np.ix_(present, present)], [names[i] for i in present],
                         os.path.join(out, "confusion.png"), title=title)
    with open(os.path.join(out, "confused_pairs.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["true", "predicted", "count", "fraction_of_true"], lineterminator="\n")
        w.writeheader()
        w.writerows(metrics.most_confused_pairs(conf, names, top=100))


def json_safe(value):
    """Plain JSON: numpy scalars as numbers, undefined values (NaN: e.g. the mAP of a split whose
    classes have no videos) as null, which strict JSON readers accept."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def summary_text(r: dict, names: list[str]) -> str:
    pct = lambda x: "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.2f}%"  # noqa: E731
    lines = [f"{r['num_videos']} videos, {r['num_classes']} classes, views {r['views']}, {r['frames']} frames"
             + (f", {r['num_failed']} failed to decode (excluded)" if r["num_failed"] else "")]
    if r["num_videos"]:
        lines.append(f"top-1 {pct(r['top1'])}   top-5 {pct(r['top5'])}   mean class acc {pct(r['mean_class_accuracy'])}"
                     f"   mAP {pct(r['mAP'])}")
    for key, title in (("half_classes", "zero-shot, half classes (10 splits)"), ("class_splits", "class splits")):
        if key in r:
            z = r[key]
            lines.append(f"{title}: top-1 {pct(z['top1_mean'])} ± {pct(z['top1_std'])}   "
                         f"top-5 {pct(z['top5_mean'])} ± {pct(z['top5_std'])}")
    s = r["speed"]
    lines.append(f"speed: {s['videos_per_s']:.1f} videos/s; waiting for decoding {s['seconds_waiting_for_decode']:.1f}s, "
                 f"model {s['seconds_model']:.1f}s of {s['seconds']:.1f}s")
    return "\n".join(lines)


def eval_from_config(cfg, *, checkpoint: str | None = None, clip: str | None = None, labels: str | None = None,
                     prompts=None, classifier: str | None = None, frames: int | None = None, device: str = "auto",
                     precision: str | None = None, val_list: str | None = None, val_root: str = "",
                     views: str | None = None, zero_shot: bool = False, splits: list[str] | None = None,
                     out: str | None = None, batch_size: int | None = None, workers: int | None = None,
                     progress: bool = True, decode_device: str = "cpu", overwrite: bool = False) -> dict:
    """Evaluate on the config's val list (or `val_list`); the model from `checkpoint`/`clip` as in `load()`;
    arguments left None take the config's values. Joins torchrun's process group when launched under it.
    decode_device="cuda" decodes with NVDEC in this process (frames stay on the GPU); without a GPU or NVDEC
    a warning says so and the CPU decodes (decoders/gpu.py). `out` is refused when it holds anything but an
    earlier report of the same list (`overwrite`: written anyway)."""
    from ..api import load
    from ..checkpoints import is_text4vis_checkpoint, resolve_checkpoint, stored_labels
    from ..classifiers import check_same_labels, load_classifier
    from ..decoders.gpu import DECODE_DEVICES, resolve_decode_device
    from ..errors import ConfigError, LabelsError, UsageError, check_numbers
    if checkpoint:  # a file, a converted folder or hf-hub:ORG/NAME[@REVISION] -> a local file
        checkpoint = resolve_checkpoint(checkpoint)
    names = resolve_labels(("labels", labels), ("data.labels", cfg.data.labels))
    stored = load_classifier(classifier) if classifier else None   # read once, used below
    if names is None:  # the model's own classes: a classifier file's, else a text4vis checkpoint's
        names = list(stored.labels) if stored is not None else (stored_labels(checkpoint) if checkpoint else None)
    source = val_list or cfg.data.val_list
    if not source:
        raise ConfigError("no data.val_list in the config (nor val_list=)")
    samples, names = load_split(source, val_root if val_list else cfg.data.val_root, names)
    if names is None:
        raise ConfigError("data.labels is not set (a label set name or file), and the model names no classes of "
                          "its own (an original Text4Vis checkpoint or zero-shot CLIP needs labels)")
    views = views or cfg.evaluation.views
    try:
        parse_views(views)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    check_numbers(("batch_size", batch_size, 1), ("workers", workers, 0), ("frames", frames, 1))
    if decode_device not in DECODE_DEVICES:
        raise UsageError(f"decode_device={decode_device!r}: choose cpu or cuda")
    k600_splits = zero_shot and not splits     # asked for here: Kinetics-600 has its own three splits
    zero_shot = zero_shot or cfg.evaluation.zero_shot
    if zero_shot and len(names) < 2:
        raise UsageError(f"zero_shot=True: the half-classes protocol needs at least 2 classes ({len(names)} given)")
    if out and rank_world()[0] == 0:
        check_eval_out(out, source, overwrite)       # before the evaluation, not after it
    subsets = []
    for path in splits or []:
        split_names = load_labels(path, "splits")
        missing = [n for n in split_names if n not in names]
        if missing:
            raise LabelsError(f"splits={path!r}: class {missing[0]!r} is not in the label list")
        subsets.append((os.path.basename(path), split_names))
    if stored is not None:  # its rows must be the dataset's classes, in the dataset's order
        check_same_labels(stored, names, classifier)
    # a text4vis checkpoint carries its own towers and frames; an original Text4Vis checkpoint does
    # not: the config's model.clip and data.num_frames describe it (as in the reference's test.py)
    self_contained = bool(checkpoint) and is_text4vis_checkpoint(checkpoint)
    import logging
    logging.getLogger("text4vis").info("%d videos in %s; loading the model (%s)", len(samples), source,
                                       checkpoint or f"clip={clip or cfg.model.clip}")
    with process_group():
        rec = load(checkpoint=checkpoint, clip=clip or (None if self_contained else cfg.model.clip),
                   labels=names, prompts=prompts or cfg.classifier.prompts, classifier=stored,
                   frames=frames or (None if self_contained else cfg.data.num_frames), device=device,
                   head=None, precision=precision or cfg.evaluation.precision)
        if k600_splits and list(names) == load_labels("k600"):
            subsets = [(f"k600_zs_split{i}", load_labels(f"k600_zs_split{i}")) for i in (1, 2, 3)]
        info = {"checkpoint": checkpoint, "clip": clip, "labels": labels or cfg.data.labels or (
                    "the classifier file's" if stored is not None else "the checkpoint's"),
                "label_names": list(names), "val_list": source, "val_root": val_root if val_list else cfg.data.val_root}
        first = next((s.path for s in samples if s.num_frames is None), None)   # a video file, for the NVDEC check
        decode_device = resolve_decode_device(decode_device, first, rec.device)
        workers = 0 if decode_device == "cuda" else workers   # NVDEC in this process: frames stay on the GPU
        results = run_eval(rec, samples, names, views=views, dense=cfg.data.dense,
                           reader=FrameReader(cfg.data.image_tmpl, cfg.data.index_bias, decode_device=decode_device),
                           batch_size=batch_size if batch_size is not None else cfg.evaluation.batch_size,
                           workers=workers, zero_shot=zero_shot, splits=subsets, out=out, info=info,
                           progress=progress)
        if is_dist():
            # every rank exits with the same code; wait until rank 0 has written the report, or
            # torchrun stops it when another rank exits first with 1 (some video failed)
            import torch.distributed as dist
            dist.barrier()
    return results
