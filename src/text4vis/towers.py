"""CLIP image and text towers: names, open_clip, OpenAI-format files, safe loading.

`--clip` accepts
  * the OpenAI names of the paper: RN50, ViT-B/32, ViT-B/16, ViT-L/14, ViT-L/14-336px
    (looked up first in ~/.cache/clip/, where OpenAI's own loader and the reference code keep
    them, then through open_clip's `openai` tag);
  * any open_clip `MODEL:PRETRAINED` pair (`ViT-B-16:laion2b_s34b_b88k`), or `MODEL:/path/file`;
  * an `hf-hub:org/repo` id, or an open_clip folder (`local-dir:/path`, or the folder itself: its
    open_clip_config.json, weights and tokenizer files; backbones/families.py: SigLIP, EVA, MetaCLIP, DFN ...);
  * a Hugging Face transformers model (CLIPModel, SiglipModel, Siglip2Model, XCLIPModel): a
    `save_pretrained` folder or `hf:ORG/NAME[@REV]` (backbones/hf.py);
  * a published ViCLIP checkpoint (InternVid's .pth; backbones/viclip.py: a video tower replacing image tower + head);
  * a local file: an OpenAI checkpoint (TorchScript archive or plain state dict, fp16 or fp32)
    or an open_clip checkpoint with OpenAI key names. The architecture is inferred from the
    tensor shapes, as OpenAI's and open_clip's loaders do.

The towers are open_clip modules, which keep OpenAI's parameter names (visual.conv1, ...).
Nothing here ever unpickles arbitrary objects: see `safe_load`.
"""
from __future__ import annotations

from .errors import ClassifierError, WeightsError, first_line

import contextlib
import re
import copy
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .backbones import open_clip_lite
from .transforms import OPENAI_MEAN, OPENAI_STD

open_clip = open_clip_lite.LazyPackage()  # all of open_clip, imported on first use: OpenAI-format towers never need it

OPENAI_NAMES = {
    "RN50": "RN50",
    "ViT-B/32": "ViT-B-32",
    "ViT-B/16": "ViT-B-16",
    "ViT-L/14": "ViT-L-14",
    "ViT-L/14-336px": "ViT-L-14-336",
}
OPENAI_CACHE = os.path.expanduser("~/.cache/clip")




def _refusal(path: str, exc: BaseException) -> str:
    """Our sentence for a pickle that torch.load(weights_only=True) refuses (not torch's advice to turn the
    protection off): what it names, and what to do."""
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    what = f"it needs {found.group(1)}" if found else "it needs code"
    return (f"{path}: refused: not a weights-only checkpoint ({what}, not only tensors and containers), and "
            f"text4vis never runs code from a checkpoint; where you trust the file, load it and save its state "
            f"dict again (torch.save(model.state_dict(), ...)) or as .safetensors")


# ----------------------------------------------------------------------------- safe file loading

def safe_load(path: str) -> dict[str, Any]:
    """Load a checkpoint without running code from it.

    safetensors files are read as tensors; TorchScript archives (OpenAI's .pt files) through
    torch.jit.load, whose restricted unpickler only builds TorchScript modules and tensors, and
    only their state dict is kept; anything else through torch.load(weights_only=True), which
    refuses pickles that need arbitrary globals.
    """
    if os.path.isdir(path):
        raise WeightsError(f"{path}: a folder, not a weights file")
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(16)
    if path.endswith(".safetensors") or (len(head) >= 9 and head[8:9] == b"{"):
        from safetensors.torch import load_file
        try:
            return load_file(path)
        except Exception as exc:
            raise WeightsError(f"{path}: not a readable safetensors file ({first_line(exc, 160)})") from None
    if _is_torchscript(path):
        try:
            return dict(torch.jit.load(path, map_location="cpu").state_dict())
        except Exception as exc:
            raise WeightsError(f"{path}: TorchScript archive does not load ({first_line(exc, 160)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not head.startswith((b"PK", b"\x80")):  # neither torch's zip format nor a pickle: not a refusal
            raise WeightsError(f"{path}: not a PyTorch checkpoint ({first_line(exc, 160)})") from None
        raise WeightsError(_refusal(path, exc)) from None
    except Exception as exc:
        raise WeightsError(f"{path}: not a PyTorch checkpoint ({first_line(exc, 160, with_type=True)})") from None


def _is_torchscript(path: str) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names)


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Find the tensors in the usual checkpoint wrappers and drop DDP's `module.` prefix."""
    if not isinstance(obj, dict):
        raise WeightsError(f"{source}: holds a {type(obj).__name__}, not a dictionary of weights")
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    out = {}
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            out[k[len("module."):] if k.startswith("module.") else k] = v
    return out


# ----------------------------------------------------------------------------- architecture

def is_openai_layout(sd: dict[str, torch.Tensor]) -> bool:
    return ("visual.proj" in sd or "visual.attnpool.positional_embedding" in sd) and "text_projection" in sd \
        and "token_embedding.weight" in sd


def openai_config(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """open_clip CLIP(**cfg) arguments for an OpenAI-format state dict, inferred from tensor shapes
    (widths, layers, patch size, heads = width // 64, context length, vocabulary). QuickGELU."""
    if "visual.proj" in sd:
        width = sd["visual.conv1.weight"].shape[0]
        layers = len([k for k in sd if k.startswith("visual.") and k.endswith(".attn.in_proj_weight")])
        patch = sd["visual.conv1.weight"].shape[-1]
        grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        vision = dict(layers=layers, width=width, patch_size=patch, image_size=patch * grid)
    else:  # ModifiedResNet (RN50 family)
        layers = tuple(len({k.split(".")[2] for k in sd if k.startswith(f"visual.layer{b}.")}) for b in (1, 2, 3, 4))
        width = sd["visual.layer1.0.conv1.weight"].shape[0]
        grid = round((sd["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
        vision = dict(layers=list(layers), width=width, image_size=grid * 32)
    text_width = sd["ln_final.weight"].shape[0]
    text = dict(
        context_length=sd["positional_embedding"].shape[0],
        vocab_size=sd["token_embedding.weight"].shape[0],
        width=text_width,
        heads=text_width // 64,
        layers=len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")}),
    )
    return dict(embed_dim=sd["text_projection"].shape[1], vision_cfg=vision, text_cfg=text, quick_gelu=True)


def build_clip(cfg: dict[str, Any]) -> torch.nn.Module:
    """An fp32 model (random weights) from a config dict: open_clip's CLIP/CustomTextCLIP (backbones/families.py),
    or a Hugging Face transformers model for configs with "family": "hf" (backbones/hf.py)."""
    if cfg.get("family") == "hf":
        from .backbones import hf as hf_towers
        return hf_towers.build(cfg)
    if cfg.get("family") == "viclip":
        from .backbones import viclip
        return viclip.build(cfg)
    from .backbones import families
    return families.build(cfg)


# ----------------------------------------------------------------------------- the towers

@dataclass
class Towers:
    """A CLIP model (both towers) plus what is needed to rebuild it, tokenise and preprocess."""

    clip: torch.nn.Module
    config: dict[str, Any]          # open_clip constructor arguments (stored in text4vis checkpoints)
    source: str                     # what the user passed as clip=
    tokenizer_name: str = "openai"  # "openai" (CLIP BPE) or an hf-hub model id
    mean: tuple = OPENAI_MEAN
    std: tuple = OPENAI_STD
    preprocess: dict = field(default_factory=dict)      # interpolation, resize_mode (the family's, see backbones/families.py)
    tokenizer_files: dict | None = field(default=None, repr=False)  # the tokenizer's files (kept in checkpoints)
    _tokenizer: Callable | None = field(default=None, repr=False)

    @property
    def family(self) -> str:
        """"hf" (transformers classes, backbones/hf.py), "viclip" (backbones/viclip.py) or "open_clip"."""
        return self.config.get("family") or "open_clip"

    @property
    def logit_bias(self) -> float | None:
        """A sigmoid model's logit bias (SigLIP); None for softmax CLIPs. It does not change a softmax over
        labels (every logit moves alike); `Recognizer.sigmoid_scores` uses it."""
        from .backbones.families import logit_bias
        return logit_bias(self.clip)

    @property
    def embed_dim(self) -> int:
        return int(self.config["embed_dim"])

    @property
    def input_size(self) -> int:
        size = self.config["vision_cfg"].get("image_size", 224)
        return int(size[0] if isinstance(size, (list, tuple)) else size)

    @property
    def head_heads(self) -> int:
        """Attention heads of the `transf` head: the reference uses the text tower's width // 64
        (D // 64 for ViT CLIPs; 8, not 16, for RN50)."""
        width = self.config.get("text_cfg", {}).get("width")
        return max(1, int(width or self.embed_dim) // 64)

    @property
    def context_length(self) -> int:
        return int(self.config["text_cfg"].get("context_length", 77))

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        if self._tokenizer is None:
            if self.tokenizer_name == "openai":
                tokenizer = open_clip_lite.submodule("tokenizer")  # not all of open_clip
                self._tokenizer = tokenizer.SimpleTokenizer(context_length=self.context_length)
            elif self.family == "hf":
                from .backbones.hf import tokenizer
                self._tokenizer = tokenizer(self)
            else:  # SigLIP's sentencepiece, SigLIP2's Gemma ...: with the text config's length, clean and mode
                from .backbones.families import hf_tokenizer
                self._tokenizer = hf_tokenizer(self, hub_access)
        for text in texts:  # the tokenizer would cut longer texts silently (class name included)
            n = self.token_count(text)
            if n is not None and n > self.context_length:
                shown = text if len(text) <= 100 else f"{text[:50]} ... {text[-40:]}"
                raise ClassifierError(f"a prompt of {n} tokens is longer than the text tower's context of "
                                      f"{self.context_length} (it would be cut, its end ignored): {shown!r}; "
                                      f"shorten the prompt template or the class name")
        return self._tokenizer(texts)

    def token_count(self, text: str) -> int | None:
        """Tokens of `text` with the start and end tokens, uncut (None: a tokenizer that cannot say)."""
        tok = self._tokenizer
        if hasattr(tok, "encode") and hasattr(tok, "sot_token_id"):      # CLIP's BPE (SimpleTokenizer)
            return len(tok.encode(text)) + 2
        inner = getattr(tok, "tokenizer", None)                           # open_clip's HFTokenizer
        if inner is not None and getattr(tok, "tokenizer_mode", None) != "clips":
            clean = getattr(tok, "clean_fn", None) or (lambda t: t)
            return len(inner(clean(text), truncation=False)["input_ids"])
        return None

    @torch.no_grad()
    def encode_text(self, texts: list[str], batch_size: int = 256) -> torch.Tensor:
        """L2-normalised text embeddings [len(texts), D], in fp32, on the model's device."""
        device = next((p.device for n, p in self.clip.named_parameters() if not n.startswith("visual.")), "cpu")
        out = []
        for i in range(0, len(texts), batch_size):
            tokens = self.tokenize(texts[i:i + batch_size]).to(device)
            out.append(self.clip.encode_text(tokens).float())
        emb = torch.cat(out)
        return emb / emb.norm(dim=-1, keepdim=True)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Can the Hugging Face hub be reached at all? (Bounded: DNS and connect in a thread.)"""
    import socket
    import threading
    from urllib.parse import urlparse
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    ok: list[bool] = []

    def probe():
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            ok.append(True)
        except OSError:
            ok.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 1.0)
    return bool(ok and ok[0])


@contextlib.contextmanager
def hub_access():
    """Use the hub when it answers; otherwise only its local cache, so a missing file fails at once
    instead of after minutes of retries."""
    import huggingface_hub.constants as hub
    if hub.HF_HUB_OFFLINE or _hub_reachable():
        yield
        return
    hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE = False


def _hub_error(what: str, exc: BaseException) -> WeightsError:
    return WeightsError(
        f"{what}: weights are not on this machine and could not be downloaded "
        f"({first_line(exc, 120, with_type=True)}); "
        f"download them where there is network, or pass a local file as clip='/path/to/checkpoint.pt'")


def _from_state_dict(sd: dict[str, torch.Tensor], source: str, quick_gelu: bool = True) -> Towers:
    if any(k.startswith("model.visual.") for k in sd) or (any(k.startswith("visual.") for k in sd)
                                                           and not any(k.startswith("transformer.") for k in sd)):
        raise WeightsError(f"{source}: a video model checkpoint, not CLIP towers: pass it as checkpoint=")
    if not is_openai_layout(sd):
        raise WeightsError(
            f"{source}: not an OpenAI-layout CLIP checkpoint (no visual.proj/text_projection); "
            f"for other open_clip models pass clip='MODEL_NAME:{source}'")
    cfg = openai_config(sd)
    cfg["quick_gelu"] = quick_gelu
    clip = build_clip(cfg)
    # fp16 files (OpenAI's) become fp32 in load_state_dict's copy: no fp32 copy of the whole file first
    sd = {k: v for k, v in sd.items() if k not in ("input_resolution", "context_length", "vocab_size")}
    missing, unexpected = clip.load_state_dict(sd, strict=False)
    missing = [k for k in missing if k != "attn_mask"]
    if missing or unexpected:
        raise WeightsError(f"{source}: state dict does not match the inferred architecture "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return Towers(clip=clip, config=cfg, source=source)


def _named(name: str, tag: str, source: str) -> Towers:
    """An open_clip architecture name with a pretrained tag or a local file."""
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise WeightsError(f"clip={source!r}: unknown open_clip model {name!r} (see open_clip.list_models())")
    cfg = copy.deepcopy(cfg)
    pre = open_clip.get_pretrained_cfg(name, tag) if not os.path.isfile(tag) else {}
    if pre.get("quick_gelu"):
        cfg["quick_gelu"] = True
    from .backbones.families import preprocess_of  # the tag's preprocessing; for a file, the architecture's (SigLIP: 0.5)
    prep = preprocess_of(name, None if os.path.isfile(tag) else tag)
    mean, std = prep["mean"], prep["std"]
    if os.path.isfile(tag):
        path = tag
    elif not pre:
        raise WeightsError(f"clip={source!r}: open_clip has no pretrained tag {tag!r} for {name} "
                           f"(known: {', '.join(open_clip.list_pretrained_tags_by_model(name)) or 'none'})")
    else:
        try:
            with hub_access():
                path = open_clip.download_pretrained(pre)
        except Exception as exc:
            raise _hub_error(f"clip={source!r}", exc) from None
        if not path:
            raise WeightsError(f"clip={source!r}: open_clip could not resolve a download for this tag")
    sd = unwrap_state_dict(safe_load(path), path)
    if is_openai_layout(sd) and "hf_model_name" not in cfg.get("text_cfg", {}):
        towers = _from_state_dict(sd, source, quick_gelu=bool(cfg.get("quick_gelu")))
    else:
        clip = build_clip(cfg)
        try:
            open_clip.load_checkpoint(clip, path, strict=True, weights_only=True)
        except Exception as exc:
            raise WeightsError(f"clip={source!r}: weights do not fit {name} ({first_line(exc, 160)})") from None
        towers = Towers(clip=clip.float().eval(), config=cfg, source=source)
    towers.source, towers.mean, towers.std = source, tuple(mean), tuple(std)
    towers.preprocess = {k: prep[k] for k in ("interpolation", "resize_mode")}
    tok = cfg.get("text_cfg", {}).get("hf_tokenizer_name")
    towers.tokenizer_name = tok or "openai"
    return towers


def _hf_hub(model_id: str, source: str) -> Towers:
    try:
        from open_clip.factory import _get_hf_config
        from huggingface_hub import hf_hub_download
        with hub_access():
            hf_cfg = _get_hf_config(model_id)
            try:
                path = hf_hub_download(model_id, "open_clip_model.safetensors")
            except Exception:
                path = hf_hub_download(model_id, "open_clip_pytorch_model.bin")
    except Exception as exc:
        raise _hub_error(f"clip={source!r}", exc) from None
    cfg = hf_cfg["model_cfg"]
    clip = build_clip(cfg)
    open_clip.load_checkpoint(clip, path, strict=True, weights_only=True)
    from .backbones.families import preprocess_of
    pre = preprocess_of("", None, hf_cfg.get("preprocess_cfg") or {})
    tok = cfg.get("text_cfg", {}).get("hf_tokenizer_name")
    return Towers(clip=clip.float().eval(), config=cfg, source=source, tokenizer_name=tok or "openai",
                  mean=tuple(pre["mean"]), std=tuple(pre["std"]),
                  preprocess={k: pre[k] for k in ("interpolation", "resize_mode")})


def load_towers(spec: str) -> Towers:
    """Resolve a `clip=` value (see the module docstring) into CLIP towers on the CPU, fp32."""
    from .backbones import families  # the other families: open_clip folders, transformers models
    from .backbones import hf as hf_towers
    if families.is_local_dir(spec):
        return families.load_local_dir(spec, Towers)
    if hf_towers.is_hf_spec(spec):
        return hf_towers.load(spec, Towers, hub_access)
    if os.path.isfile(spec):
        sd = unwrap_state_dict(safe_load(spec), spec)
        from .backbones import viclip  # a video-native backbone's published checkpoint (ViCLIP)
        if viclip.is_viclip(sd):
            return viclip.from_published(sd, spec, Towers)
        return _from_state_dict(sd, spec)
    if spec in OPENAI_NAMES:
        local = os.path.join(OPENAI_CACHE, spec.replace("/", "-") + ".pt")
        if os.path.isfile(local):
            return _from_state_dict(unwrap_state_dict(safe_load(local), local), spec)
        return _named(OPENAI_NAMES[spec], "openai", spec)
    if spec.startswith("hf-hub:"):
        return _hf_hub(spec[len("hf-hub:"):], spec)
    if ":" in spec:
        name, tag = spec.split(":", 1)
        return _named(name, tag, spec)
    if open_clip.get_model_config(spec) is not None:
        raise WeightsError(f"clip={spec!r}: name the weights too, e.g. {spec}:openai or {spec}:/path/to/weights.pt")
    raise WeightsError(f"clip={spec!r}: not a file, an OpenAI name ({', '.join(OPENAI_NAMES)}), "
                       f"an open_clip MODEL:PRETRAINED pair or an hf-hub: id")


def towers_from_config(cfg: dict[str, Any], state: dict[str, torch.Tensor], source: str,
                       tokenizer_name: str = "openai", mean=OPENAI_MEAN, std=OPENAI_STD,
                       with_text: bool = True, preprocess: dict | None = None,
                       tokenizer_files: dict | None = None) -> Towers:
    """Rebuild towers stored inside a text4vis checkpoint (no download, no other file). Every
    image-tower weight (and text-tower weight, `with_text`) must be there, in its shape."""
    try:
        clip = build_clip(cfg)
        missing, _ = clip.load_state_dict(state, strict=False)  # its copy makes fp16 tensors fp32
    except Exception as exc:  # a config that builds nothing, or a tensor of another shape
        raise WeightsError(f"{source}: damaged text4vis checkpoint ({first_line(exc, 160)})") from None
    missing = [k for k in missing if k.startswith("visual.") or (with_text and k not in ("logit_scale", "logit_bias")
                                                                  and not k.endswith("position_ids"))]
    if missing:
        raise WeightsError(f"{source}: damaged text4vis checkpoint ({len(missing)} tower weights missing, "
                           f"e.g. {missing[0]})")
    return Towers(clip=clip, config=cfg, source=source, tokenizer_name=tokenizer_name,
                  mean=tuple(mean), std=tuple(std), preprocess=dict(preprocess or {}), tokenizer_files=tokenizer_files)

