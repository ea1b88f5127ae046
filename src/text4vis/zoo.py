"""The model zoo: the published Text4Vis checkpoints, converted folders and the Hugging Face Hub.

A converted folder (what `convert` writes and `push_to_hub` uploads) is a Hugging Face-style model
repository:
  model.safetensors  a self-contained text4vis checkpoint (image tower, temporal head, classifier,
                     CLIP text tower; see checkpoints.py)
  config.json        architecture, head, frames, input size, preprocessing, labels, prompts, the
                     source file and its SHA-256, the published accuracy when the source is known
  README.md          the model card: what it is, published accuracy with protocol and source,
                     recipe, licence, how to load it, the eval command that reproduces the number
  model.onnx         optional, from `deploy.export_onnx`
Everything that takes a checkpoint takes such a folder or `hf-hub:ORG/NAME[@REVISION]`
(checkpoints.resolve_checkpoint).

ZOO lists the published checkpoints: facts from the Text4Vis repository's README ("Model Zoo"),
its configs and its README history (for the file names of the OneDrive downloads).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from .hub import _hub
from .files import atomic_write_text, sha256_file
from .errors import OutputError, UsageError, WeightsError, check_numbers, first_line

SOURCE_REPO = "https://github.com/whwu95/Text4Vis"
ARXIV = "https://arxiv.org/abs/2207.01297"
CITATION = """@inproceedings{wu2023revisiting,
  title={Revisiting Classifier: Transferring Vision-Language Models for Video Recognition},
  author={Wu, Wenhao and Sun, Zhun and Ouyang, Wanli},
  booktitle={Proceedings of the AAAI Conference on Artificial Intelligence},
  volume={37}, number={3}, pages={2847--2855}, year={2023}
}"""
# The Hub's names for the OpenAI CLIP weights text4vis builds on (model-card `base_model`)
BASE_MODELS = {"ViT-B/32": "openai/clip-vit-base-patch32", "ViT-B/16": "openai/clip-vit-base-patch16",
               "ViT-L/14": "openai/clip-vit-large-patch14", "ViT-L/14-336px": "openai/clip-vit-large-patch14-336"}
HUB_DATASETS = {"k400": "kinetics-400", "anet": "activitynet", "ucf101": "ucf101", "hmdb51": "hmdb51"}
SOURCE_ZOO = SOURCE_REPO + "#model-zoo"
RELEASE_URL = SOURCE_REPO + "/releases/download/v1/"
CARD_FILES = ("model.safetensors", "config.json", "README.md")


@dataclass(frozen=True)
class ZooEntry:
    name: str              # the converted folder / suggested hub name
    file: str | None       # the original file name (None: not stated by the source)
    dataset: str           # k400, anet, ucf101, hmdb51
    labels: str            # built-in label set
    clip: str              # --clip (OpenAI name)
    frames: int
    crops: int
    clips: int
    metric: str            # "top-1" or "mAP"
    value: float           # published, in percent
    text4vis_config: str   # configs/*.yaml of this repository (data paths, eval views)
    original_config: str   # the config in the Text4Vis repository
    download: str          # where the original file was published
    recipe: str
    sha256: str | None = None  # SHA-256 of the published file; None: not on record (a number is then not claimed)

    @property
    def views(self) -> str:
        """text4vis --views CxK: temporal clips x spatial crops."""
        return f"{self.clips}x{self.crops}"

    @property
    def protocol(self) -> str:
        return f"{self.frames}x{self.crops}x{self.clips} (frames x spatial crops x temporal clips)"


def _k400_recipe(batch: int, accum: int, size: int) -> str:
    return (f"Kinetics-400 train split, CLIP initialisation, Transf head, frozen CLIP-text classifier "
            f"(\"a video of a person {{}}.\"), AdamW lr 5e-5 (betas 0.9/0.98), weight decay 0.2, 30 epochs, "
            f"5 warm-up epochs then cosine, RandAugment N=2 M=9, input {size}px; batch {batch} per GPU x 8 GPUs "
            f"x {accum} gradient accumulation step(s)")


def _ft_recipe(dataset: str, batch: int, accum: int, base: str) -> str:
    return (f"fine-tuned on {dataset} (split 1) from a Kinetics-400 {base} 16-frame Text4Vis model, frozen "
            f"CLIP-text classifier, AdamW lr 5e-5, weight decay 0.2, 30 epochs, 5 warm-up epochs then cosine; "
            f"batch {batch} per GPU x 8 GPUs x {accum} gradient accumulation step(s)")


_ONEDRIVE = "OneDrive folder linked from the Text4Vis README (link expired at times)"
ZOO: tuple[ZooEntry, ...] = (
    ZooEntry("text4vis-k400-vitb32-f8", "k400-vitb-32-f8.pt", "k400", "k400", "ViT-B/32", 8, 3, 4, "top-1", 80.0,
             "configs/k400_vitb32_f8.yaml", "configs/k400/k400_train_rgb_vitb-32-f8.yaml",
             RELEASE_URL + "k400-vitb-32-f8.pt", _k400_recipe(32, 1, 224)),
    ZooEntry("text4vis-k400-vitb32-f16", "k400-vitb-32-f16.pt", "k400", "k400", "ViT-B/32", 16, 3, 4, "top-1", 80.5,
             "configs/k400_vitb32_f16.yaml", "configs/k400/k400_train_rgb_vitb-32-f16.yaml",
             RELEASE_URL + "k400-vitb-32-f16.pt", _k400_recipe(32, 1, 224)),
    ZooEntry("text4vis-k400-vitb16-f8", "k400-vitb-16-f8.pt", "k400", "k400", "ViT-B/16", 8, 3, 4, "top-1", 82.9,
             "configs/k400_vitb16_f8.yaml", "configs/k400/k400_train_rgb_vitb-16-f8.yaml",
             RELEASE_URL + "k400-vitb-16-f8.pt", _k400_recipe(32, 1, 224)),
    ZooEntry("text4vis-k400-vitb16-f16", "k400-vitb-16-f16.pt", "k400", "k400", "ViT-B/16", 16, 3, 4, "top-1", 83.6,
             "configs/k400_vitb16_f16.yaml", "configs/k400/k400_train_rgb_vitb-16-f16.yaml",
             RELEASE_URL + "k400-vitb-16-f16.pt", _k400_recipe(16, 2, 224)),
    ZooEntry("text4vis-k400-vitl14-f8", "k400-vitl-14-f8.pt", "k400", "k400", "ViT-L/14", 8, 3, 4, "top-1", 86.4,
             "configs/k400_vitl14_f8.yaml", "configs/k400/k400_train_rgb_vitl-14-f8.yaml", _ONEDRIVE,
             _k400_recipe(8, 2, 224)),
    ZooEntry("text4vis-k400-vitl14-336-f8", "k400-vitl-14-336-f8.pt", "k400", "k400", "ViT-L/14-336px", 8, 3, 4,
             "top-1", 87.1, "configs/k400_vitl14_336_f8.yaml", "configs/k400/k400_train_rgb_vitl-14-336-f8.yaml",
             _ONEDRIVE, _k400_recipe(2, 4, 336)),
    ZooEntry("text4vis-k400-vitl14-336-f32", "k400-vitl-14-336-f32.pt", "k400", "k400", "ViT-L/14-336px", 32, 3, 1,
             "top-1", 87.8, "configs/k400_vitl14_336_f32.yaml", "configs/k400/k400_train_rgb_vitl-14-336-f32.yaml",
             _ONEDRIVE, _k400_recipe(1, 8, 336)),
    ZooEntry("text4vis-anet-vitl14-f16", None, "anet", "anet", "ViT-L/14", 16, 1, 1, "mAP", 96.5,
             "configs/anet_k400_finetune.yaml", "configs/anet/anet_k400_finetune.yaml", _ONEDRIVE,
             _ft_recipe("ActivityNet-1.3", 4, 2, "ViT-L/14")),
    ZooEntry("text4vis-anet-vitl14-336-f16", None, "anet", "anet", "ViT-L/14-336px", 16, 1, 1, "mAP", 96.9,
             "configs/anet_k400_finetune.yaml", "configs/anet/anet_k400_finetune_336.yaml", _ONEDRIVE,
             _ft_recipe("ActivityNet-1.3", 1, 8, "ViT-L/14-336px")),
    ZooEntry("text4vis-ucf101-vitl14-f16", "ucf-vitl-14-f16.pt", "ucf101", "ucf101", "ViT-L/14", 16, 1, 1, "top-1",
             98.1, "configs/ucf101_k400_finetune.yaml", "configs/ucf101/ucf_k400_finetune.yaml", _ONEDRIVE,
             _ft_recipe("UCF-101", 4, 2, "ViT-L/14")),
    ZooEntry("text4vis-hmdb51-vitl14-f16", "hmdb-vitl-14-f16.pt", "hmdb51", "hmdb51", "ViT-L/14", 16, 1, 1, "top-1",
             81.3, "configs/hmdb51_k400_finetune.yaml", "configs/hmdb51/hmdb_k400_finetune.yaml", _ONEDRIVE,
             _ft_recipe("HMDB-51", 4, 2, "ViT-L/14")),
)
DATASETS = {"k400": "Kinetics-400", "anet": "ActivityNet-1.3", "ucf101": "UCF-101", "hmdb51": "HMDB-51"}


def find_entry(source: str | None = None, name: str | None = None) -> ZooEntry | None:
    """The zoo entry named `name` (entry name or original file name), else the one whose original
    file name is `source`'s base name; None when neither matches."""
    if name:
        for e in ZOO:
            if name in (e.name, e.file):
                return e
        raise UsageError(f"zoo={name!r}: not a published Text4Vis checkpoint (known: "
                         f"{', '.join(e.name for e in ZOO)})")
    base = os.path.basename(source or "").lower()
    return next((e for e in ZOO if e.file and e.file.lower() == base), None)


# ----------------------------------------------------------------------------- convert

def convert(source: str, out: str, clip: str | None = None, labels: str | None = None, frames: int | None = None,
            prompts=None, zoo: str | None = None, hub_id: str | None = None) -> dict:
    """Turn a checkpoint (original Text4Vis .pt with `clip=` for the text tower, or a text4vis file)
    into a converted folder `out` (model.safetensors, config.json, README.md). `clip`, `labels` and
    `frames` default to the zoo entry's when `source` is a published file (or `zoo=` names one).
    `out` may be new, empty, or a converted folder (its own files are replaced; converting a folder into
    itself keeps the record of the file it was first converted from). Returns config.json's content."""
    from . import checkpoints
    from .api import load
    check_numbers(("frames", frames, 1))    # the most: the head's (load)
    previous = _own_folder(out)
    resolved = checkpoints.resolve_checkpoint(source)
    in_place = previous is not None and os.path.realpath(resolved) == os.path.realpath(
        os.path.join(out, checkpoints.MODEL_FILE))
    first = previous["source"] if in_place else None  # the file this folder was first converted from
    entry = find_entry(first["file"] if first else source, zoo)
    original = not checkpoints.is_text4vis_checkpoint(resolved)
    clip = clip or (entry.clip if entry and original else None)
    labels = labels or (entry.labels if entry else None)
    frames = frames or (entry.frames if entry else None)
    rec = load(checkpoint=source, clip=clip, labels=labels, prompts=prompts, frames=frames, device="cpu")
    if rec.towers is None:
        raise WeightsError(f"{source}: has no text tower to store; pass clip= (the CLIP it was trained from)")
    source_info = first or {"file": os.path.basename(resolved), "sha256": sha256_file(resolved),
                            "format": "original Text4Vis (torch.save dict)" if original else "text4vis safetensors"}
    os.makedirs(out, exist_ok=True)
    model_path = os.path.join(out, checkpoints.MODEL_FILE)
    settings = {"num_frames": rec.num_frames, "input_size": rec.input_size}
    checkpoints.save_checkpoint(model_path, rec.model, rec.towers, labels=rec.labels,
                                classifier_meta=rec.classifier_meta, settings=settings, include_text=True)
    config = folder_config(rec, entry, source_info, labels_spec=labels, clip=clip or rec.towers.source,
                           model_sha256=sha256_file(model_path))
    atomic_write_text(os.path.join(out, "config.json"), json.dumps(config, indent=1) + "\n")
    atomic_write_text(os.path.join(out, "README.md"), model_card(config, entry, out, hub_id))
    return config


def _own_folder(out: str) -> dict | None:
    """config.json of the converted folder `out` (None: new or empty). OutputError for anything that is
    not text4vis's own: a file, a folder holding other files, a user's own README.md or config.json."""
    if not os.path.exists(out):
        return None
    if not os.path.isdir(out):
        raise OutputError(f"out={out}: exists and is not a folder")
    names = set(os.listdir(out))
    if names - set(FOLDER_FILES):
        raise OutputError(f"out={out}: a folder holding other files; give a new or a converted folder")
    config = None
    if "config.json" in names:
        try:
            with open(os.path.join(out, "config.json"), encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, ValueError):
            config = None
        if not isinstance(config, dict) or config.get("library_name") != "text4vis" or "source" not in config:
            raise OutputError(f"out={out}: its config.json was not written by text4vis convert; give a new folder")
    if "README.md" in names:
        with open(os.path.join(out, "README.md"), encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
        if not head.startswith("---\n") or "\nlibrary_name: text4vis\n" not in head.split("\n---", 1)[0] + "\n":
            raise OutputError(f"out={out}: its README.md is not a text4vis model card (yours would be replaced); "
                              f"give a new folder")
    return config


def folder_config(rec, entry: ZooEntry | None, source: dict, labels_spec, clip: str, model_sha256: str) -> dict:
    """config.json of a converted folder (descriptive: loading reads model.safetensors' own metadata)."""
    from . import __version__
    from .labels import BUILTIN
    towers, model = rec.towers, rec.model
    # a published number (and the published licence) belongs to this file only when its hash is the published file's
    verified = entry is not None and entry.sha256 == source["sha256"]
    size = int(rec.input_size)     # a plain int (rec.input_size may be a ViewSize: not YAML)
    return {
        "library_name": "text4vis",
        "library_version": __version__,
        "format": "text4vis-safetensors",
        "format_version": 1,
        "task": "video-classification",
        "architecture": {
            "clip": clip,
            "clip_config": towers.config,
            "embed_dim": model.embed_dim,
            "classifier_dim": model.proj.out_features if model.proj is not None else model.embed_dim,
            "head": model.head_type,
            "head_heads": model.head_heads,
            "head_layers": len(model.fusion_model.transformer.resblocks) if model.head_type == "transf" else 0,
        },
        "num_frames": rec.num_frames,
        "input_size": size,
        "preprocessing": {
            "input": "RGB frames uint8 [B, T, 3, S, S]",
            "frame_sampling": "T segments, the middle frame of each (test); views: clip starts linspace(0, N/T - 1, C)",
            "resize_mode": rec.resize_mode,   # shortest: resize_short_side, then crop; squash, longest: no crop
            "resize_short_side": (256 if size == 224 else size) if rec.resize_mode == "shortest" else None,
            "resize_interpolation": "bicubic, antialiased",
            "crop": size,
            "mean": list(towers.mean),
            "std": list(towers.std),
        },
        "labels": {"set": labels_spec if isinstance(labels_spec, str) and labels_spec in BUILTIN else None,
                   "num_classes": len(rec.labels), "names": list(rec.labels)},
        "prompts": list(rec.classifier_meta.get("prompts") or []),
        "classifier": {k: v for k, v in rec.classifier_meta.items() if k != "prompts"},
        "source": dict(source, zoo_entry=entry.name if entry else None),
        "published": None if entry is None else {
            "dataset": DATASETS[entry.dataset], "metric": entry.metric, "value": entry.value,
            "views": entry.protocol, "text4vis_views": entry.views, "source": SOURCE_ZOO,
            "original_file": entry.file, "original_config": f"{SOURCE_REPO}/blob/main/{entry.original_config}",
            "download": entry.download,
            "verified": verified},
        "license": "mit" if verified else "unknown",
        "files": {"model.safetensors": {"sha256": model_sha256}},
    }


def packaged_config(entry: ZooEntry) -> str:
    """The text of text4vis's config for a zoo entry (shipped in the package: text4vis/configs/)."""
    from importlib import resources
    return resources.files("text4vis").joinpath(entry.text4vis_config).read_text(encoding="utf-8")


def eval_command(config: dict, entry: ZooEntry | None, checkpoint: str) -> str:
    """The `text4vis eval` line that measures this model (by the published protocol for a zoo entry)."""
    cfg = os.path.basename(entry.text4vis_config) if entry else "YOUR_CONFIG.yaml"
    views = entry.views if entry else "1x1"
    name = entry.name if entry else os.path.basename(os.path.normpath(checkpoint))
    return (f"text4vis eval --config {cfg} --checkpoint {checkpoint} --views {views} --precision fp32 "
            f"--out eval/{name}")


def describe_clip(config: dict) -> str:
    """The CLIP named in config.json, as a card says it: an architecture name, or the file it came from."""
    arch = config["architecture"]
    spec = str(arch["clip"])
    if os.path.isfile(spec) or os.path.splitext(spec)[1] in (".pt", ".pth", ".bin", ".safetensors"):
        vision = (arch.get("clip_config") or {}).get("vision_cfg") or {}
        shape = ", ".join(f"{k} {vision[k]}" for k in ("layers", "width", "patch_size", "image_size") if k in vision)
        return f"CLIP from the file `{os.path.basename(spec)}`" + (f" (vision tower: {shape})" if shape else "")
    return f"CLIP {spec}"


def card_metadata(config: dict, entry: ZooEntry | None) -> dict:
    """The model card's YAML header: what the Hub indexes (licence, base model, datasets, task, results)."""
    published = config.get("published") or {}
    meta = {"license": config["license"], "library_name": "text4vis", "pipeline_tag": "video-classification",
            "tags": ["video-classification", "action-recognition", "clip", "text4vis", "arxiv:2207.01297"]}
    base = BASE_MODELS.get(str(config["architecture"]["clip"]))
    if base:
        meta["base_model"] = base
    if entry:
        meta["datasets"] = [HUB_DATASETS[entry.dataset]]
    if published.get("verified"):
        meta["model-index"] = [{"name": entry.name, "results": [{
            "task": {"type": "video-classification", "name": "Video Classification"},
            "dataset": {"type": HUB_DATASETS[entry.dataset], "name": DATASETS[entry.dataset], "split": "validation"},
            "metrics": [{"type": "accuracy" if entry.metric == "top-1" else "mAP", "name": entry.metric,
                         "value": entry.value}],
            "source": {"name": "Text4Vis model zoo", "url": SOURCE_ZOO}}]}]
    return meta


def model_card(config: dict, entry: ZooEntry | None, folder: str, hub_id: str | None = None) -> str:
    """README.md of a converted folder, with the Hub's YAML header. A published number and licence are
    stated as this file's only when its SHA-256 is the published file's; a file recognised by name alone
    is said to be so, its accuracy unverified; a file of unknown origin gets no number and no licence."""
    import yaml
    arch = config["architecture"]
    ckpt = f"hf-hub:{hub_id}" if hub_id else folder.rstrip("/") + "/"
    title = entry.name if entry else os.path.basename(os.path.normpath(folder))
    dataset = DATASETS[entry.dataset] if entry else "the label set below"
    src = config["source"]
    verified = bool((config.get("published") or {}).get("verified"))
    header = yaml.safe_dump(card_metadata(config, entry), sort_keys=False, allow_unicode=True, width=1000)
    lines = ["---", header.rstrip("\n"), "---", "",
             f"# {title}", "", "## What it is", "",
             f"A video classifier in the text4vis format: the image tower of {describe_clip(config)} applied to each of "
             f"{config['num_frames']} frames ({config['input_size']}px), a `{arch['head']}` temporal head, and a frozen "
             f"classifier of {config['labels']['num_classes']} {dataset} classes made from the class names by the "
             f"CLIP text tower (Text4Vis: Wu, Sun, Ouyang, \"Revisiting Classifier: Transferring Vision-Language "
             f"Models for Video Recognition\", AAAI 2023, [arXiv:2207.01297]({ARXIV})). `model.safetensors` is "
             f"self-contained: image tower, head, classifier and text tower (so other label sets work offline); "
             f"loading it runs no code.", "",
             f"Converted by text4vis {config['library_version']} from `{src['file']}` "
             f"({src['format']}, SHA-256 `{src['sha256']}`).", "", "## Published accuracy", ""]
    protocol = (f"{entry.metric} {entry.value:.1f}% on {dataset}, views {entry.protocol}, "
                f"[Text4Vis model zoo]({SOURCE_ZOO})" if entry else "")
    if verified:
        lines += ["| dataset | metric | value | protocol | source |", "|---|---|---|---|---|",
                  f"| {dataset} (validation{', split 1' if entry.dataset in ('ucf101', 'hmdb51') else ''}) | "
                  f"{entry.metric} | {entry.value:.1f}% | {entry.protocol} | [Text4Vis model zoo]({SOURCE_ZOO}) |",
                  "", f"The number is the authors' for this very file (its SHA-256 is the published "
                  f"`{entry.file}`'s, from: {entry.download}); this conversion did not re-measure it. "
                  f"The command below measures it with text4vis on your copy of the validation set."]
    elif entry:
        lines += [f"This file was recognised by its name as the published `{entry.file or entry.name}` "
                  f"({protocol}), but text4vis has no record that its SHA-256 is the published file's, so that "
                  f"accuracy is unverified for this file. Measure it with the command below."]
    else:
        lines += ["This checkpoint is not one of the published Text4Vis checkpoints: no published number."]
    if entry:
        lines += ["", "## Recipe", "", entry.recipe + f" (original config: [{entry.original_config}]"
                  f"({SOURCE_REPO}/blob/main/{entry.original_config}))."]
    lines += ["", "## Licence", "",
              ("MIT, as the published Text4Vis weights (" + SOURCE_REPO + "/blob/main/LICENSE); the CLIP weights "
               "inside are OpenAI's (MIT).") if verified else
              "Not known to text4vis: it is the licence of the weights that were converted (and of the CLIP "
              "weights they were trained from); check with whoever trained them before publishing.", "",
              "## Load it with text4vis", "", "```python", "import text4vis",
              f"rec = text4vis.load(checkpoint=\"{ckpt}\")",
              "rec.predict([\"clip.mp4\"], topk=5, views=\"" + (entry.views if entry else "1x1") + "\")", "```", "",
              "```", f"text4vis predict clip.mp4 --checkpoint {ckpt}", "```", ""]
    if entry:
        name = os.path.basename(entry.text4vis_config)
        lines += ["## Reproduce the number", "", "```", eval_command(config, entry, ckpt), "```", "",
                  f"`{name}` is text4vis's config for this dataset (shipped with text4vis as "
                  f"`text4vis/{entry.text4vis_config}`, and below): save it, point its `data.val_list` / `data.val_root` "
                  f"at your copy (or add `--set data.val_list=... --set data.val_root=...`). `--views {entry.views}` = "
                  f"{entry.clips} temporal clip(s) x {entry.crops} spatial crop(s) of {entry.frames} frames, as "
                  f"published; `--precision fp32` is the reference test precision.", "",
                  "<details><summary>" + name + "</summary>", "", "```yaml", packaged_config(entry).rstrip("\n"),
                  "```", "", "</details>", ""]
    else:
        lines += ["## Evaluate it", "", "```", eval_command(config, entry, ckpt), "```", "",
                  "with a text4vis or original Text4Vis config naming your validation list (`text4vis eval --help`).", ""]
    lines += ["## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the Hub

# What push_to_hub uploads from a converted folder: the files text4vis writes there (convert: the card
# files; export: the ONNX model and its int8 variant). Anything else (tokens, logs, a rejected export)
# goes up only when named with include=.
FOLDER_FILES = CARD_FILES + ("model.onnx", "model.int8.onnx")


def upload_list(folder: str, include=()) -> tuple[list[str], list[str]]:
    """(files push_to_hub uploads, files it leaves out) of a converted folder, sorted relative paths: the
    files text4vis writes there (FOLDER_FILES) and those matching an `include` pattern (glob, relative to
    the folder, as huggingface_hub's allow_patterns)."""
    import fnmatch

    from .checkpoints import MODEL_FILE
    if not os.path.isdir(folder):
        raise UsageError(f"folder={folder}: not a folder")
    if not os.path.isfile(os.path.join(folder, MODEL_FILE)) or not os.path.isfile(os.path.join(folder, "config.json")):
        raise UsageError(f"folder={folder}: not a converted folder (needs {MODEL_FILE} and config.json)")
    include = [include] if isinstance(include, str) else list(include or ())
    for pattern in include:
        if os.path.isabs(pattern) or ".." in pattern.replace("\\", "/").split("/"):
            raise UsageError(f"include={pattern!r}: a pattern relative to the folder, inside it")
    present = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(dirs)
        present += [os.path.relpath(os.path.join(root, n), folder).replace(os.sep, "/") for n in names]
    chosen = [f for f in present if f in FOLDER_FILES or any(fnmatch.fnmatchcase(f, p) for p in include)]
    for pattern in include:
        if not any(fnmatch.fnmatchcase(f, pattern) for f in present):
            raise UsageError(f"include={pattern!r}: matches no file in {folder}")
    return sorted(chosen), sorted(set(present) - set(chosen))


def check_repo_id(repo_id: str) -> str:
    """A Hub repository id as huggingface_hub accepts it (ORG/NAME; its own validator when installed)."""
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise UsageError(f"repo_id={repo_id!r}: a Hub repository id is ORG/NAME")
    try:
        from huggingface_hub.utils import HFValidationError, validate_repo_id
    except ImportError:  # the upload itself needs it and says so; a dry run checks the shape only
        return repo_id
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise UsageError(f"repo_id={repo_id!r}: not a valid Hub repository id ORG/NAME "
                         f"({first_line(exc).split(':')[0]})") from None
    return repo_id


def push_to_hub(folder: str, repo_id: str, private: bool = False, revision: str | None = None,
                dry_run: bool = False, token: str | None = None, commit_message: str | None = None,
                include=()) -> dict:
    """Upload a converted folder to the hub repository `repo_id` (created when missing; `private`),
    on branch `revision` (default main): the files text4vis wrote there (FOLDER_FILES) and those
    matching an `include` glob; the others are listed as "left_out". `dry_run` only lists."""
    check_repo_id(repo_id)
    files, left_out = upload_list(folder, include)
    result = {"repo_id": repo_id, "private": private, "revision": revision or "main", "files": files,
              "bytes": sum(os.path.getsize(os.path.join(folder, f)) for f in files), "left_out": left_out,
              "dry_run": dry_run}
    if dry_run:
        return result
    api = _hub().HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=folder, revision=revision,
                                 allow_patterns=files, commit_message=commit_message or "text4vis push-to-hub")
    except Exception as exc:
        raise WeightsError(f"push to {repo_id} failed ({first_line(exc, 160, with_type=True)})") from None
    result["commit"] = getattr(info, "oid", None) or str(info)
    return result


def zoo_table() -> list[dict]:
    """The published checkpoints as rows (for the README table and `text4vis convert --list`)."""
    return [dict(asdict(e), views=e.views) for e in ZOO]
