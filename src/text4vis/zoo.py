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

from .hub import _hub, hub_download, parse_hub_spec  # noqa: F401  (hub_download: re-exported)
from .files import sha256_file
from .errors import OutputError, UsageError, WeightsError, first_line

SOURCE_REPO = "https://github.com/whwu95/Text4Vis"
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
    Returns config.json's content."""
    from . import checkpoints
    from .api import load
    entry = find_entry(source, zoo)
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputError(f"out={out}: exists and is not a folder")
    if os.path.isdir(out) and set(os.listdir(out)) - set(FOLDER_FILES):
        raise OutputError(f"out={out}: a folder holding other files; give a new or a converted folder")
    original = not checkpoints.is_text4vis_checkpoint(checkpoints.resolve_checkpoint(source))
    clip = clip or (entry.clip if entry and original else None)
    labels = labels or (entry.labels if entry else None)
    frames = frames or (entry.frames if entry else None)
    rec = load(checkpoint=source, clip=clip, labels=labels, prompts=prompts, frames=frames, device="cpu")
    if rec.towers is None:
        raise WeightsError(f"{source}: has no text tower to store; pass clip= (the CLIP it was trained from)")
    os.makedirs(out, exist_ok=True)
    model_path = os.path.join(out, checkpoints.MODEL_FILE)
    settings = {"num_frames": rec.num_frames, "input_size": rec.input_size}
    checkpoints.save_checkpoint(model_path, rec.model, rec.towers, labels=rec.labels,
                                classifier_meta=rec.classifier_meta, settings=settings, include_text=True)
    resolved = checkpoints.resolve_checkpoint(source)
    config = folder_config(rec, entry, source=resolved, labels_spec=labels, clip=clip or rec.towers.source,
                           model_sha256=sha256_file(model_path), original=original)
    _write_text(os.path.join(out, "config.json"), json.dumps(config, indent=1) + "\n")
    _write_text(os.path.join(out, "README.md"), model_card(config, entry, out, hub_id))
    return config


def _write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def folder_config(rec, entry: ZooEntry | None, source: str, labels_spec, clip: str, model_sha256: str,
                  original: bool) -> dict:
    """config.json of a converted folder (descriptive: loading reads model.safetensors' own metadata)."""
    from . import __version__
    from .labels import BUILTIN
    towers, model = rec.towers, rec.model
    size = rec.input_size
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
            "resize_short_side": 256 if size == 224 else size,
            "resize_interpolation": "bicubic, antialiased",
            "crop": size,
            "mean": list(towers.mean),
            "std": list(towers.std),
        },
        "labels": {"set": labels_spec if isinstance(labels_spec, str) and labels_spec in BUILTIN else None,
                   "num_classes": len(rec.labels), "names": list(rec.labels)},
        "prompts": list(rec.classifier_meta.get("prompts") or []),
        "classifier": {k: v for k, v in rec.classifier_meta.items() if k != "prompts"},
        "source": {"file": os.path.basename(source), "sha256": sha256_file(source),
                   "format": "original Text4Vis (torch.save dict)" if original else "text4vis safetensors",
                   "zoo_entry": entry.name if entry else None},
        "published": None if entry is None else {
            "dataset": DATASETS[entry.dataset], "metric": entry.metric, "value": entry.value,
            "views": entry.protocol, "text4vis_views": entry.views, "source": SOURCE_ZOO,
            "original_file": entry.file, "original_config": f"{SOURCE_REPO}/blob/main/{entry.original_config}",
            "download": entry.download},
        "license": "mit",
        "files": {"model.safetensors": {"sha256": model_sha256}},
    }


def eval_command(config: dict, entry: ZooEntry | None, checkpoint: str) -> str:
    """The `text4vis eval` line that measures this model by the published protocol."""
    cfg = entry.text4vis_config if entry else "CONFIG.yaml"
    views = entry.views if entry else "1x1"
    name = entry.name if entry else os.path.basename(os.path.normpath(checkpoint))
    return (f"text4vis eval --config {cfg} --checkpoint {checkpoint} --views {views} --precision fp32 "
            f"--out eval/{name}")


def model_card(config: dict, entry: ZooEntry | None, folder: str, hub_id: str | None = None) -> str:
    """README.md of a converted folder, with the Hub's YAML header."""
    arch = config["architecture"]
    ckpt = f"hf-hub:{hub_id}" if hub_id else folder.rstrip("/") + "/"
    title = entry.name if entry else os.path.basename(os.path.normpath(folder))
    dataset = DATASETS[entry.dataset] if entry else "the label set below"
    src = config["source"]
    clip = entry.clip if entry else arch["clip"]
    lines = ["---", "license: mit", "library_name: text4vis", "pipeline_tag: video-classification",
             "tags: [video-classification, action-recognition, clip, text4vis]", "---", "",
             f"# {title}", "", "## What it is", "",
             f"A video classifier in the text4vis format: CLIP {clip} image tower applied to each of "
             f"{config['num_frames']} frames ({config['input_size']}px), a `{arch['head']}` temporal head, and a frozen "
             f"classifier of {config['labels']['num_classes']} {dataset} classes made from the class names by the "
             f"CLIP text tower (Text4Vis: Wu, Sun, Ouyang, \"Revisiting Classifier: Transferring Vision-Language "
             f"Models for Video Recognition\", AAAI 2023). `model.safetensors` is self-contained: image tower, head, "
             f"classifier and text tower (so other label sets work offline); loading it runs no code.", "",
             f"Converted by text4vis {config['library_version']} from `{src['file']}` "
             f"({src['format']}, SHA-256 `{src['sha256']}`).", "", "## Published accuracy", ""]
    if entry:
        lines += ["| dataset | metric | value | protocol | source |", "|---|---|---|---|---|",
                  f"| {dataset} (validation{', split 1' if entry.dataset in ('ucf101', 'hmdb51') else ''}) | "
                  f"{entry.metric} | {entry.value:.1f}% | {entry.protocol} | [Text4Vis model zoo]({SOURCE_ZOO}) |",
                  "", f"The number is the authors' (published with the original file "
                  f"`{entry.file or 'name not stated'}`, downloaded from: {entry.download}); this conversion did not re-measure it. "
                  f"The command below measures it with text4vis on your copy of the validation set."]
    else:
        lines += ["This checkpoint is not one of the published Text4Vis checkpoints: no published number. "
                  "Measure it with the command below."]
    lines += ["", "## Recipe", "", (entry.recipe + f" (original config: [{entry.original_config}]"
                                    f"({SOURCE_REPO}/blob/main/{entry.original_config})).") if entry else
              "Unknown to text4vis (see the source checkpoint's own documentation).",
              "", "## Licence", "",
              "MIT, as the published Text4Vis weights (" + SOURCE_REPO + "/blob/main/LICENSE); the CLIP weights "
              "inside are OpenAI's (MIT).", "",
              "## Load it with text4vis", "", "```python", "import text4vis",
              f"rec = text4vis.load(checkpoint=\"{ckpt}\")",
              "rec.predict([\"clip.mp4\"], topk=5, views=\"" + (entry.views if entry else "1x1") + "\")", "```", "",
              "```", f"text4vis predict clip.mp4 --checkpoint {ckpt}", "```", "",
              "## Reproduce the number", "", "```", eval_command(config, entry, ckpt), "```", ""]
    if entry:
        lines += [f"`{entry.text4vis_config}` is text4vis's config for this dataset: point its `data.val_list` / "
                  f"`data.val_root` at your copy (or add `--set data.val_list=... --set data.val_root=...`). "
                  f"`--views {entry.views}` = {entry.clips} temporal clip(s) x {entry.crops} spatial crop(s) of "
                  f"{entry.frames} frames, as published; `--precision fp32` is the reference test precision.", ""]
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
