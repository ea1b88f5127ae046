"""The demo's report: the paper's two ablation tables with the demo's numbers beside them, the claims
the toy does and does not reproduce (derived from the measured numbers, nothing fixed in advance),
figures, report.md. Used by text4vis.demo."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

# The paper's numbers (Text4Vis, AAAI 2023; Kinetics-400 top-1, %), for direction only: a toy on
# synthetic shapes is not expected to match their size.
PAPER = {
    "vision_only_vs_text": {            # setting -> (vision-only, vision-text)
        "zero-shot": (0.2, 54.2), "2-shot": (43.6, 66.4), "full": (75.27, 80.13)},
    "frozen_classifiers": {             # classifier source -> top-1 (full data)
        "random": 59.3, "orthogonal": 59.4, "LDA": 80.8, "DistilBERT": 81.4, "CLIP text": 81.5},
}
WORDS = {"higher": "clearly higher than", "lower": "clearly lower than", "same": "within the noise of"}
SHORT = {"higher": "clearly higher", "lower": "clearly lower", "same": "no clear difference"}


# ----------------------------------------------------------------------------- numbers and noise

def _pct(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def _pm(st: dict | None) -> str:
    """'81.2 ± 3.4' (percent) from a {mean, std, n} summary; one seed: no ±."""
    if not st or st.get("mean") is None:
        return "n/a"
    if st.get("n", 0) > 1:
        return f"{100 * st['mean']:.1f} ± {100 * st['std']:.1f}"
    return f"{100 * st['mean']:.1f}"


def _se(st: dict, n_eval: int) -> float:
    """Standard error of a mean accuracy: seed-to-seed spread / sqrt(seeds), plus the sampling error of
    a fixed evaluation set of n_eval videos."""
    p = st["mean"]
    k = max(1, st.get("n", 0))
    seed_var = (st.get("std") or 0.0) ** 2 / k
    return math.sqrt(seed_var + max(p * (1 - p), 1e-12) / max(n_eval, 1))


def compare(a: dict, b: dict, n_eval: int) -> str:
    """'higher', 'lower' or 'same': summary a vs summary b, with a 2-standard-error margin."""
    if not a or not b or a.get("mean") is None or b.get("mean") is None:
        return "same"
    noise = 2 * math.sqrt(_se(a, n_eval) ** 2 + _se(b, n_eval) ** 2)
    d = a["mean"] - b["mean"]
    return "higher" if d > noise else "lower" if -d > noise else "same"


def versus_chance(a: dict, chance: float, n_eval: int) -> str:
    return compare(a, {"mean": chance, "std": 0.0, "n": 0}, n_eval)


# ----------------------------------------------------------------------------- tables

def _table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


def vision_table(results: dict) -> str:
    """The paper's vision-only vs vision-text table, the demo's arms beside it."""
    a = results["arms"]
    paper = PAPER["vision_only_vs_text"]
    head = ["setting", "paper: vision-only", "paper: vision-text", "demo (b) vision-only: learned linear",
            "demo (a) vision-text: frozen text"]
    if "f" in a:
        head.append("demo (f) vision-only pretraining + linear")
    chance = f" (chance {_pct(results['chance_zeroshot'])})"
    rows = []
    for setting, field in (("zero-shot", "zeroshot_top1"), (f"{results['settings']['shot']}-shot", "fewshot_top1"),
                           ("full", "final_top1")):
        p = paper["2-shot" if setting.endswith("-shot") and setting != "zero-shot" else setting]
        cells = [setting, f"{p[0]}", f"{p[1]}"]
        for key in ("b", "a", "f"):
            if key not in a:
                continue
            st = a[key][field]
            text = _pm(st)
            if field == "zeroshot_top1" and a[key]["zeroshot_by_construction"]:
                text = f"{_pct(st['mean'])} by construction"
            elif field == "zeroshot_top1":
                text += chance
            cells.append(text)
        rows.append(cells)
    return _table(head, rows)


def classifier_table(results: dict) -> str:
    """The paper's frozen-classifier table (full data), the demo's arms beside it."""
    a = results["arms"]
    paper = PAPER["frozen_classifiers"]
    rows = [["random", f"{paper['random']}", "(not run: orthogonal stands in, the paper finds them equal)", "", ""]]
    for name, key in (("orthogonal", "c"), ("LDA", "e"), ("DistilBERT (a language model never aligned with the "
                                                          "images)", "g"), ("CLIP text (aligned by pretraining)", "a")):
        p = paper[name.split(" ")[0]] if name.split(" ")[0] in paper else paper["CLIP text"]
        if key not in a:
            rows.append([name, f"{p}", "(not run in this mode)", "", ""])
            continue
        r = a[key]
        demo_name = {"c": "(c) random orthogonal", "e": "(e) LDA of pretrained features",
                     "g": "(g) MiniLM, learned projection", "a": "(a) MiniLM through the pretrained text head"}[key]
        few = _pm(r["fewshot_top1"]) if r["fewshot_top1"]["n"] else "n/a"
        zs = f"{_pct(r['zeroshot_top1']['mean'])} by construction" if r["zeroshot_by_construction"] else _pm(r["zeroshot_top1"])
        rows.append([name, f"{p}", f"{demo_name}: {_pm(r['final_top1'])}", few, zs])
    return _table(["frozen classifier", "paper: top-1 (full)", "demo: top-1 (full)",
                   f"demo: {results['settings']['shot']}-shot", "demo: zero-shot"], rows)


def arms_table(results: dict) -> str:
    rows = []
    for k, r in results["arms"].items():
        zs = (f"{_pct(r['zeroshot_top1']['mean'])} (by construction)" if r["zeroshot_by_construction"]
              else _pm(r["zeroshot_top1"]))
        oc = _pm(r["order_confusion"]) if r["order_confusion"]["n"] else "n/a"
        rows.append([f"({k}) {r['title']}", _pm(r["final_top1"]), _pm(r["fewshot_top1"]) if r["fewshot_top1"]["n"] else "n/a",
                     zs, _pm(r["first_epoch_top1"]), _pm(r["mean_curve_top1"]), oc, f"{r['seconds']:.0f}s"])
    z = results.get("no_transfer", {})
    if z:
        rows.append(["(z) pretrained tower, no video training (mean, text)", _pct(z.get("seen_top1")), "n/a",
                     _pct(z.get("heldout_top1")), "", "", "", ""])
    return _table(["arm", "full top-1", f"{results['settings']['shot']}-shot top-1", "zero-shot top-1",
                   "top-1 after epoch 1", "area under val curve", "order confusions", "train time (all seeds)"], rows)


def paper_tables(results: dict) -> str:
    """Both paper-style tables as console text."""
    return ("Vision-only vs vision-text (top-1 %, mean ± std over seeds):\n" + vision_table(results)
            + "\n\nFrozen classifier sources:\n" + classifier_table(results))


# ----------------------------------------------------------------------------- claims

def _claim(claim: str, paper: str, demo: str, verdict: str) -> dict:
    return {"claim": claim, "paper": paper, "demo": demo, "verdict": verdict}


def _vision_claims(results: dict) -> list[dict]:
    a, n_val, n_zs = results["arms"], results["num_val"], results["num_zeroshot"]
    shot = results["settings"]["shot"]
    out = []
    vt, vo = a["a"], a["b"]
    if results["heldout_classes"]:
        v = versus_chance(vt["zeroshot_top1"], results["chance_zeroshot"], n_zs)
        out.append(_claim("Zero-shot: a text classifier names classes never trained on; a vision-only one cannot",
                          "vision-text 54.2 vs vision-only 0.2 (chance)",
                          f"(a) {_pm(vt['zeroshot_top1'])} vs chance {_pct(results['chance_zeroshot'])} "
                          f"({WORDS[v]} chance)", "reproduced" if v == "higher" else "not reproduced"))
    for name, field, paper in ((f"{shot}-shot", "fewshot_top1", "66.4 vs 43.6"), ("full data", "final_top1", "80.13 vs 75.27")):
        v = compare(vt[field], vo[field], n_val)
        out.append(_claim(f"{name.capitalize()}: vision-text beats vision-only", f"vision-text {paper}",
                          f"(a) {_pm(vt[field])} vs (b) {_pm(vo[field])}: {SHORT[v]}",
                          {"higher": "reproduced", "lower": "opposite"}.get(v, "not shown (within noise)")))
    if "f" in a:
        for name, field in ((f"{shot}-shot", "fewshot_top1"), ("full data", "final_top1")):
            v = compare(vt[field], a["f"][field], n_val)
            out.append(_claim(f"{name.capitalize()}: language in pretraining and classifier beats vision-only "
                              "pretraining with a learned classifier", "(the paper's vision-only rows)",
                              f"(a) {_pm(vt[field])} vs (f) {_pm(a['f'][field])}: {SHORT[v]}",
                              {"higher": "reproduced", "lower": "opposite"}.get(v, "not shown (within noise)")))
    return out


def _classifier_claims(results: dict) -> list[dict]:
    a, n_val = results["arms"], results["num_val"]
    out = []
    if "c" in a and "e" in a:
        v = compare(a["e"]["final_top1"], a["c"]["final_top1"], n_val)
        out.append(_claim("A frozen classifier with structure (LDA) beats one without (random/orthogonal)",
                          "LDA 80.8 vs orthogonal 59.4", f"(e) {_pm(a['e']['final_top1'])} vs (c) "
                          f"{_pm(a['c']['final_top1'])}: {SHORT[v]}",
                          {"higher": "reproduced", "lower": "opposite"}.get(v, "not shown (within noise)")))
    if "c" in a:
        v = compare(a["a"]["final_top1"], a["c"]["final_top1"], n_val)
        out.append(_claim("The text classifier beats the random orthogonal one", "CLIP text 81.5 vs orthogonal 59.4",
                          f"(a) {_pm(a['a']['final_top1'])} vs (c) {_pm(a['c']['final_top1'])}: {SHORT[v]}",
                          {"higher": "reproduced", "lower": "opposite"}.get(v, "not shown (within noise)")))
    for key, name, paper in (("e", "LDA", "CLIP text 81.5 vs LDA 80.8"),
                             ("g", "an unaligned language model", "CLIP text 81.5 vs DistilBERT 81.4")):
        if key in a:
            v = compare(a["a"]["final_top1"], a[key]["final_top1"], n_val)
            above = all(versus_chance(a[k]["final_top1"], results["chance_seen"], n_val) == "higher" for k in ("a", key))
            verdict = ("reproduced" if v == "same" and above else "not shown (within noise)" if v == "same"
                       else f"not reproduced ((a) {SHORT[v]})")
            out.append(_claim(f"The text classifier is about as good as {name} with full data (both above chance)",
                              paper, f"(a) {_pm(a['a']['final_top1'])} vs ({key}) {_pm(a[key]['final_top1'])}: "
                              f"{SHORT[v]}", verdict))
    return out


def _other_claims(results: dict) -> list[dict]:
    a, n_val = results["arms"], results["num_val"]
    vt, vo = a["a"], a["b"]
    v1 = compare(vt["first_epoch_top1"], vo["first_epoch_top1"], n_val)
    va = compare(vt["mean_curve_top1"], vo["mean_curve_top1"], n_val)
    both = "reproduced" if "higher" in (v1, va) and "lower" not in (v1, va) else (
        "opposite" if "lower" in (v1, va) and "higher" not in (v1, va) else "not shown (within noise)")
    out = [_claim("The frozen text classifier converges faster than a learned one", "faster convergence (a figure "
                  "in the paper)", f"after epoch 1: (a) {_pm(vt['first_epoch_top1'])} vs (b) "
                  f"{_pm(vo['first_epoch_top1'])} ({SHORT[v1]}); area under the val curve {_pm(vt['mean_curve_top1'])} "
                  f"vs {_pm(vo['mean_curve_top1'])} ({SHORT[va]})", both)]
    if "d" in a:
        v = compare(vt["final_top1"], a["d"]["final_top1"], n_val)
        out.append(_claim("A temporal head (Transf) beats averaging frames", "Transf above mean pooling",
                          f"(a) Transf {_pm(vt['final_top1'])} vs (d) mean {_pm(a['d']['final_top1'])}: {SHORT[v]}",
                          {"higher": "reproduced", "lower": "opposite"}.get(v, "not shown (within noise)")))
    return out


def claims(results: dict) -> list[dict]:
    """Each of the paper's claims the demo tests: what the paper reports, what the demo measured,
    and the verdict (a difference counts only beyond two standard errors)."""
    return _vision_claims(results) + _classifier_claims(results) + _other_claims(results)


# ----------------------------------------------------------------------------- figures

def _errorbar_panel(ax, groups: list[str], series: dict[str, list], chance: list[float | None]) -> list:
    """Grouped bars with std whiskers; returns legend handles (plain colours, whatever the hatching)."""
    from matplotlib.patches import Patch
    handles = []
    width = 0.8 / max(1, len(series))
    for i, (name, stats) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        means = [100 * (st["mean"] or 0.0) for st in stats]
        errs = [100 * (st["std"] or 0.0) for st in stats]
        bars = ax.bar(xs, means, width, yerr=errs, capsize=3, label=name)
        for bar, st in zip(bars, stats):
            if st.get("n", 0) == 0:      # chance by construction (no rows for unseen classes), not measured
                bar.set_hatch("//")
                bar.set_alpha(0.4)
        handles.append(Patch(facecolor=bars[0].get_facecolor()[:3], label=name))
    for g, c in enumerate(chance):
        if c is not None:
            ax.hlines(100 * c, g - 0.45, g + 0.45, colors="k", linestyles="--", linewidth=1)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.set_ylim(0, 100)
    ax.grid(True, axis="y", alpha=0.3)
    return handles


def _paper_figure(out: Path, results: dict) -> str:
    """Two panels in the layout of the paper's two ablation tables (bars: mean, whiskers: std)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    a, shot = results["arms"], results["settings"]["shot"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]})
    groups = ["zero-shot", f"{shot}-shot", "full"]
    fields = ["zeroshot_top1", "fewshot_top1", "final_top1"]
    series = {"(b) vision-only: learned linear": [a["b"][f] for f in fields],
              "(a) vision-text: frozen text": [a["a"][f] for f in fields]}
    if "f" in a:
        series["(f) vision-only pretraining + linear"] = [a["f"][f] for f in fields]
    chance = [results["chance_zeroshot"], results["chance_seen"], results["chance_seen"]]
    handles = _errorbar_panel(left, groups, series, chance)
    left.set_ylabel("top-1 (%)")
    left.set_title("Vision-only vs vision-text (dashed: chance; hatched: chance by construction)")
    left.legend(handles=handles, fontsize=8, loc="upper left")
    keys = [k for k in ("c", "e", "g", "a") if k in a]
    names = {"c": "orthogonal", "e": "LDA", "g": "MiniLM,\nunaligned", "a": "text head\n(aligned)"}
    means = [100 * a[k]["final_top1"]["mean"] for k in keys]
    errs = [100 * a[k]["final_top1"]["std"] for k in keys]
    right.bar(range(len(keys)), means, 0.6, yerr=errs, capsize=3, color="tab:green")
    right.axhline(100 * results["chance_seen"], color="k", linestyle="--", linewidth=1)
    right.set_xticks(range(len(keys)))
    right.set_xticklabels([f"({k}) {names[k]}" for k in keys])
    right.set_ylim(0, 100)
    right.grid(True, axis="y", alpha=0.3)
    right.set_title("Frozen classifier sources, full data")
    fig.tight_layout()
    fig.savefig(out / "paper_tables.png", dpi=100)
    plt.close(fig)
    return "paper_tables.png"


def _curve_figure(out: Path, results: dict) -> str:
    """Val top-1 per epoch: mean over seeds per arm, a band for the spread."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 5.5))
    markers = "osD^v<>"
    top = 0.0
    for i, (k, r) in enumerate(results["arms"].items()):
        curves = [c for c in r["val_curves"] if c]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        xs = [e for e, _ in curves[0][:n]]
        ys = 100 * np.array([[v for _, v in c[:n]] for c in curves])
        top = max(top, float(ys.max()))
        line, = ax.plot(xs, ys.mean(0), marker=markers[i % len(markers)], label=f"({k}) {r['title']}")
        if len(curves) > 1:
            ax.fill_between(xs, ys.min(0), ys.max(0), color=line.get_color(), alpha=0.12)
    ax.axhline(100 * results["chance_seen"], color="k", linestyle="--", linewidth=1, label="chance")
    ax.set_xlabel("epoch")
    ax.set_ylabel("val top-1 (%)")
    ax.set_ylim(0, min(100.0, max(top, 100 * results["chance_seen"]) + 20))   # room for the legend
    seeds = results["settings"]["seeds"]
    ax.set_title(f"Val top-1 per epoch on the seen classes (mean of {seeds} seed(s); band: min-max)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(out / "curves_val_top1.png", dpi=100)
    plt.close(fig)
    return "curves_val_top1.png"


def _pretrain_figure(out: Path, results: dict) -> str:
    from .. import plots
    series = {f"{m} pretraining ({'contrastive vs frozen MiniLM' if m == 'text' else 'word labels'})":
              [(float(s), float(v)) for s, v in t.get("loss_curve", [])] for m, t in results["pretraining"].items()}
    plots.plot_curves(series, out / "pretrain_loss.png", "step", "training loss",
                      "Pretraining on captioned frames: loss per step")
    return "pretrain_loss.png"


def figures(out: Path, results: dict, rows: dict, info: dict) -> dict:
    """All figures of the report; returns {name: file name}."""
    from .. import plots, synthetic
    from ..train import metrics
    seen, held = results["seen_classes"], results["heldout_classes"]
    figs = {"paper_tables": _paper_figure(out, results), "curves_val_top1": _curve_figure(out, results),
            "pretrain_loss": _pretrain_figure(out, results)}
    panels = [(t, rows[k]) for k, t in (("a", "text classifier (frozen)"), ("b", "linear classifier learned in (b)"),
                                        ("e", "LDA classifier (frozen)"), ("c", "random orthogonal (frozen)")) if k in rows]
    if panels:
        plots.plot_correlation([("\n" + t, w) for t, w in panels], seen, out / "classifier_correlation.png",
                               classes=None, seed=results["seed"])
        figs["classifier_correlation"] = "classifier_correlation.png"
    pred = np.load(out / "work" / "runs" / "seed0" / "a_full" / "val_eval" / "predictions.npz")
    conf = metrics.confusion_matrix(pred["labels"], metrics.predictions(pred["scores"]), len(seen))
    plots.plot_confusion(conf, seen, out / "confusion_a.png", title="Confusion on val, (a) vision-text, seed 0")
    figs["confusion_a"] = "confusion_a.png"
    if held:
        values = {f"({k})" + ("*" if r["zeroshot_by_construction"] else ""): 100 * r["zeroshot_top1"]["mean"]
                  for k, r in results["arms"].items()}
        if results.get("no_transfer"):
            values["(z)"] = 100 * results["no_transfer"]["heldout_top1"]
        plots.plot_bars(values, out / "zeroshot_top1.png", "top-1 on held-out classes (%)",
                        f"Zero-shot, {len(held)} held-out classes (* chance by construction)",
                        reference=round(100 / len(held), 1), reference_label="chance")
        figs["zeroshot_top1"] = "zeroshot_top1.png"
    figs["sample_clips"] = _sample_clips(out, results, info, plots, synthetic)
    return figs


def _sample_clips(out: Path, results: dict, info: dict, plots, synthetic) -> str:
    root = Path(info["root"])

    def first_videos(list_file) -> dict[int, str]:
        first: dict[int, str] = {}
        for line in Path(list_file).read_text().splitlines():
            if line.strip():
                path, label = line.rsplit(" ", 1)
                first.setdefault(int(label), path)
        return first

    seen, held = results["seen_classes"], results["heldout_classes"]
    val_first = first_videos(info["val_list"])
    zs_first = first_videos(info["zeroshot_list"]) if held else {}
    clips = [(name, synthetic.read_video(root / val_first[i])) for i, name in enumerate(seen[:8])]
    clips += [(name + "\n(held out)", synthetic.read_video(root / zs_first[i])) for i, name in enumerate(held[:2])]
    plots.save_image_strip(clips, out / "sample_clips.png", frames_per_clip=min(8, results["settings"]["video_frames"]))
    return "sample_clips.png"


# ----------------------------------------------------------------------------- report.md

def _header(results: dict) -> list[str]:
    s, sec = results["settings"], results["seconds"]
    return [
        "# text4vis demo: the paper's findings in miniature",
        "",
        f"Generated by `text4vis demo{' --quick' if results['mode'] == 'quick' else ''} --seed {results['seed']}` in "
        f"{sec['total']:.0f} s on {results['machine']['cpus']} CPU cores (pretraining {sec['pretrain']:.0f} s"
        f"{', reused from the cache' if all(t.get('cached') for t in results['pretraining'].values()) else ''}; "
        f"transfer {sec['transfer']:.0f} s; torch {results['machine']['torch']}, no GPU, no downloads). "
        f"{s['seeds']} transfer seed(s): numbers are mean ± standard deviation over seeds.",
        "",
        "The paper (Text4Vis, *Revisiting Classifier*, AAAI 2023) transfers a pretrained CLIP to video and "
        "replaces the learned linear classifier by a **frozen** one whose rows are text embeddings of the class "
        "names. It reports that this helps where labelled data is scarce (few-shot), where classes were never "
        "seen (zero-shot), and in how fast training converges; and that, among frozen classifiers, rows with "
        "structure (LDA, a language model, CLIP's text tower) are far better than random ones. This demo reruns "
        "both of the paper's ablations end to end at toy scale: it first **pretrains** a small image tower "
        "against a frozen language model on captioned frames (the image-text alignment CLIP brings), then "
        "transfers it to synthetic videos in the paper's arms.",
        "",
    ]


def _setup(results: dict) -> list[str]:
    s = results["settings"]
    seen, held = results["seen_classes"], results["heldout_classes"]
    pt = results["pretraining"]["text"]
    lines = [
        "## Setup",
        "",
        f"* **Videos**: the built-in synthetic benchmark (`text4vis synth`): one shape moving over a random "
        f"textured background, {s['video_frames']} frames of {s['size']}x{s['size']} pixels (objects at "
        f"{s['object_scale']:g}x the benchmark's default size). Classes are sentences '{{shape}} {{motion}}' "
        f"({', '.join(s['shapes'])} x {', '.join(s['motions'])}): {len(seen)} classes are trained on "
        f"({results['num_train']} training, {results['num_val']} val videos); {len(held)} are held out for "
        f"zero-shot ({results['num_zeroshot']} videos): {', '.join(held) or 'none'}.",
        f"* **Pretraining** (`text4vis.demo.pretrain`, cached in `pretrain/`): {s['pretrain_frames']} single frames "
        f"of the same renderer (all six shapes, random colours, sizes and positions), each with a caption that "
        f"names the shape and, each with probability 1/2, its {', '.join(s['caption_words'])}, e.g. "
        f"{', '.join(repr(c) for c in pt.get('example_captions', [])[:3])}. A ViT of {s['layers']} layer(s), "
        f"width {s['width']}, patch {s['patch']}, embedding {s['embed_dim']} is trained for "
        f"{s['pretrain_steps']} steps of 256 frames with CLIP's contrastive loss against the **frozen** MiniLM "
        f"sentence embeddings of the captions, through a learned linear text head (384 -> {s['embed_dim']}): "
        f"locked-text tuning. Afterwards it picks the right shape name for "
        f"{_pct(pt['heldout_shape_top1'])} of held-out frames (chance {_pct(pt['heldout_shape_chance'])}).",
    ]
    if "labels" in results["pretraining"]:
        pl = results["pretraining"]["labels"]
        lines.append(f"* **Vision-only pretraining** (for arm (f)): the same tower, frames and budget, trained to "
                     f"classify the caption's words (shape, colour, ...) with one linear head each, no language "
                     f"(like ImageNet pretraining); shape of held-out frames {_pct(pl['heldout_shape_top1'])}.")
    lines += [
        f"* **Transfer** (the library's `train()`, same settings for every arm): {s['epochs']} epochs, batch "
        f"{s['batch_size']}, AdamW lr {s['lr']:g} for the head and classifier, the pretrained tower at "
        f"{s['clip_ratio']:g}x that (as the paper fine-tunes CLIP), {s['num_frames']} frames per clip, no "
        f"horizontal flip. {s['shot']}-shot runs keep {s['shot']} random training videos per class (a different "
        f"draw per seed) for {s['fewshot_epochs']} epoch(s) of about as many steps as a full epoch. Seeds vary the "
        f"initialisation of the head and classifier, the data order and the few-shot videos; the pretrained "
        f"tower and the benchmark stay the same (as one CLIP and one dataset do in the paper).",
        "* **Text classifier**: the MiniLM embeddings of the class names, through the pretraining's text head "
        "(so rows and video embeddings share a width and a space). **Zero-shot**: the model trained on the seen "
        "classes gets the text classifier of the held-out names. Learned, orthogonal and LDA classifiers have "
        "no rows for classes they never saw: their zero-shot accuracy is chance by construction (not run).",
        "",
    ]
    return lines


def _results_section(results: dict) -> list[str]:
    s = results["settings"]
    f = results["figures"]
    n_val, n_zs = results["num_val"], results["num_zeroshot"]
    return [
        "## The paper's tables, with the demo's numbers",
        "",
        "The paper's numbers are Kinetics-400 top-1 (%) with a pretrained CLIP ViT-B; the demo's are top-1 (%) on "
        "the toy benchmark. Compare **directions**, not sizes.",
        "",
        "**Vision-only vs vision-text** (the paper's Table on text knowledge):",
        "",
        vision_table(results),
        "",
        "**Frozen classifier sources** (the paper's classifier table; demo: full data, and its other settings):",
        "",
        classifier_table(results),
        "",
        f"![the two tables as bars]({f['paper_tables']})",
        "",
        f"Chance: {_pct(results['chance_seen'])} on the {len(results['seen_classes'])} seen classes, "
        f"{_pct(results['chance_zeroshot'])} on the {len(results['heldout_classes'])} held-out classes. Val has "
        f"{n_val} videos (one standard error is about {_pct(math.sqrt(0.25 / n_val))} at 50%), the zero-shot set "
        f"{n_zs}. A difference counts below only when it exceeds two standard errors (seed spread and the "
        f"evaluation set's sampling error together).",
        "",
        "**Every arm** (mean ± std over seeds; 'area under val curve' is the val top-1 averaged over the "
        f"{s['epochs']} epochs; 'order confusions': of the val videos whose class has its temporal reverse among "
        "the classes, the fraction predicted as that reverse):",
        "",
        arms_table(results),
        "",
    ]


def _claims_section(results: dict) -> list[str]:
    lines = ["## What the toy reproduces, and what it does not", "",
             "| the paper's claim | paper | demo | verdict |", "|---|---|---|---|"]
    for c in results["claims"]:
        lines.append(f"| {c['claim']} | {c['paper']} | {c['demo']} | **{c['verdict']}** |")
    z = results.get("no_transfer") or {}
    verdicts = [c["verdict"] for c in results["claims"]]
    lines += [
        "",
        f"{verdicts.count('reproduced')} of {len(verdicts)} directions reproduced, "
        f"{verdicts.count('opposite')} opposite, the rest not shown at this scale. ",
        "",
        _no_transfer_line(results, z),
        "* **Caveats**: a toy. A tiny image tower pretrained for a minute or two on synthetic frames, small "
        "evaluation sets, few seeds. The held-out classes differ from each other in shape and in motion, so a "
        "model can name them from either; motion is learned from the videos only (frames carry none). Run with "
        "another `--seed` to see how much the numbers move.",
        "",
    ]
    return lines


def _no_transfer_line(results: dict, z: dict) -> str:
    n_val, n_zs = results["num_val"], results["num_zeroshot"]
    seen = versus_chance({"mean": z.get("seen_top1", 0.0), "std": 0.0, "n": 1}, results["chance_seen"], n_val)
    held = versus_chance({"mean": z.get("heldout_top1", 0.0), "std": 0.0, "n": 1}, results["chance_zeroshot"], n_zs)
    text = (f"* (z) Before any video training, the pretrained tower alone (frames averaged, text classifier) reaches "
            f"{_pct(z.get('seen_top1'))} on the seen classes (chance {_pct(results['chance_seen'])}: {SHORT[seen]}) "
            f"and {_pct(z.get('heldout_top1'))} on the held-out ones (chance {_pct(results['chance_zeroshot'])}: "
            f"{SHORT[held]}). ")
    if "higher" in (seen, held):
        return text + "What the pretraining aligned with words (shapes, sizes, positions) already names some classes."
    return text + ("At this scale the pretraining alone does not name the classes: its frames carry no motion and "
                   "its tower learned shapes only weakly (see Setup).")


def _figures_section(results: dict) -> list[str]:
    f = results["figures"]
    lines = ["## Figures", "", "Convergence: val top-1 per epoch of every arm (mean over seeds):", "",
             f"![val top-1 per epoch]({f['curves_val_top1']})", "",
             "Pretraining loss (contrastive against the frozen language model; vision-only: word labels):", "",
             f"![pretraining loss]({f['pretrain_loss']})", ""]
    if "zeroshot_top1" in f:
        lines += ["Zero-shot top-1 on the held-out classes (mean over seeds; dashed: chance; * : no rows for unseen "
                  "classes, chance by construction; (z): the pretrained tower without video training):", "",
                  f"![zero-shot top-1]({f['zeroshot_top1']})", ""]
    if "classifier_correlation" in f:
        lines += ["Class-by-class cosine similarity of the classifier rows: the text rows carry the structure of the "
                  "names (same shape or same motion: similar); LDA rows the structure of the pretrained features; "
                  "learned rows whatever training put there; orthogonal rows none:", "",
                  f"![classifier correlation]({f['classifier_correlation']})", ""]
    lines += ["Confusion matrix of (a), seed 0, on val:", "", f"![confusion matrix]({f['confusion_a']})", "",
              "Sample clips (one val clip per class, and held-out classes):", "", f"![sample clips]({f['sample_clips']})", ""]
    return lines


def _tail(results: dict) -> list[str]:
    p = results["prediction"]
    lines = ["## A new clip", "",
             f"A clip of '{p['true']}' rendered with a fresh seed (`{Path(p['video']).name}`), classified by (a), seed 0:", ""]
    for k, t in enumerate(p["top3"], start=1):
        lines.append(f"{k}. {t['label']}: {100 * t['score']:.1f}%" + ("  (correct)" if t["label"] == p["true"] else ""))
    lines += [
        "",
        "## Files",
        "",
        "* `results.json`: every number above (per seed too), the settings, the curves and the claims.",
        "* `pretrain/<mode>-<key>/`: the pretrained towers (`clip.pt`, OpenAI format), the text head, "
        "`pretrain.json`; reused by the next run with the same settings.",
        "* `data/`: the benchmark; `work/classifiers/`: the text classifiers; `work/runs/seed<k>/<arm>_<full|2shot>/`: "
        "each transfer run (config.yaml, metrics.jsonl, log.txt, checkpoints, val and zero-shot evaluations).",
        "* Reproduce one run by hand: `text4vis train --config work/runs/seed0/a_full/config.yaml --output runs/x`; "
        "predict with `text4vis predict new_clip.mp4 --checkpoint work/runs/seed0/a_full/last.safetensors`.",
        "",
    ]
    return lines


def report_markdown(results: dict) -> str:
    return "\n".join(_header(results) + _claims_section(results) + _results_section(results) + _setup(results)
                     + _figures_section(results) + _tail(results))
