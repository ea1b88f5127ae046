"""open_clip's model code without the cost of `import open_clip` (start-up time, issue 29).

`import open_clip` runs the package's __init__, which imports CoCa and through it Hugging Face
`transformers`: about a second of CPU on an idle machine (and the test checkpoint, or an OpenAI CLIP,
needs none of it). text4vis's OpenAI-format towers need only open_clip's own `transformer.py`,
`modified_resnet.py` and the `CLIP` class of `model.py`. So:

- `submodule(name)` imports `open_clip.<name>` (the installed file, its own classes: `QuickGELU` is
  `open_clip.transformer.QuickGELU`) without running the package __init__: the package is registered
  first as a module whose __init__ runs on the first attribute it lacks (`open_clip.create_model`,
  `open_clip.__version__`, ...), so `import open_clip` anywhere else still gets all of it, once.
- `clip_class(cfg)` is open_clip's `CLIP` for an OpenAI-architecture config: the installed `model.py`
  executed under a private name, its imports of `hf_model` (transformers) and `timm_model` (timm)
  replaced by stand-ins that refuse to build; every other module it uses is open_clip's own. Configs
  with a Hugging Face text tower or a timm image tower, and every process where `open_clip.model` is
  already imported, get `open_clip.model`'s classes themselves.
- `open_clip.utils` imports torchvision (a second: torch._dynamo) only where `lock()` needs it.
- `package()` is all of open_clip (for `hf-hub:` ids, pretrained tags, other tokenizers).

The code that runs is open_clip's in every case, so outputs are identical (tests/test_startup.py).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

_LOCK = threading.RLock()
_PRIVATE = "_text4vis_open_clip"  # the package name under which model.py runs without hf_model/timm_model
_lite_model: types.ModuleType | None | bool = None  # False: this open_clip's model.py needs more (not used)


def _parent() -> types.ModuleType:
    """sys.modules['open_clip']: the real package, or (not imported yet) the package without its
    __init__ run, completed on the first attribute it lacks."""
    with _LOCK:
        mod = sys.modules.get("open_clip")
        if mod is not None:
            return mod
        spec = importlib.util.find_spec("open_clip")
        if spec is None or spec.loader is None or not spec.submodule_search_locations:
            return importlib.import_module("open_clip")  # not installed (ImportError) or not a package
        mod = importlib.util.module_from_spec(spec)
        done = []

        def __getattr__(name: str):
            with _LOCK:
                if not done:
                    done.append(True)
                    try:
                        spec.loader.exec_module(mod)  # open_clip/__init__.py, in this module, as `import open_clip`
                    except BaseException:
                        sys.modules.pop("open_clip", None)
                        raise
            if name in mod.__dict__:
                return mod.__dict__[name]
            raise AttributeError(f"module 'open_clip' has no attribute {name!r}")

        mod.__getattr__ = __getattr__
        sys.modules["open_clip"] = mod
        _load_utils(mod)
        return mod


# open_clip/utils.py imports torchvision for FrozenBatchNorm2d, which only `lock()` (freezing a tower for
# training) builds; importing torchvision costs a second (it imports torch._dynamo). This open_clip.utils
# is the installed file with that import made on first use, on the same line (tracebacks keep their lines).
_TORCHVISION_LINE = "from torchvision.ops.misc import FrozenBatchNorm2d\n"
_ON_FIRST_USE = ("def FrozenBatchNorm2d(*args, **kwargs): from torchvision.ops.misc import FrozenBatchNorm2d as cls; "
                 "return cls(*args, **kwargs)  # text4vis: torchvision imported when first built\n")


def _load_utils(parent: types.ModuleType) -> None:
    name = "open_clip.utils"
    spec = importlib.util.find_spec(name)
    source = spec.loader.get_source(name) if spec is not None and spec.loader is not None else None
    if name in sys.modules or source is None or source.count(_TORCHVISION_LINE) != 1:
        return  # another open_clip: its utils is imported as it is
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        exec(compile(source.replace(_TORCHVISION_LINE, _ON_FIRST_USE), spec.origin, "exec"), mod.__dict__)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    parent.utils = mod


def submodule(name: str) -> types.ModuleType:
    """open_clip.<name> (e.g. "transformer", "tokenizer"), without open_clip's package imports."""
    _parent()
    return importlib.import_module(f"open_clip.{name}")


class LazyPackage:
    """`open_clip` for a module's code: each attribute from all of open_clip, imported on first use."""

    def __getattr__(self, name: str):
        return getattr(package(), name)


def package() -> types.ModuleType:
    """All of open_clip (its __init__ run)."""
    mod = _parent()
    _ = mod.__version__  # completes a package registered by _parent
    return mod


class _NeedsOpenClip:
    """Stands in for open_clip's HFTextEncoder / TimmModel in the private model.py (never built there:
    `clip_class` sends those configs to open_clip itself)."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError("text4vis: this CLIP configuration needs open_clip's own model module")


def _private_model() -> types.ModuleType | None:
    """open_clip/model.py executed as _text4vis_open_clip.model (None where this open_clip's model.py
    needs more than the modules provided here: then open_clip.model itself is used)."""
    global _lite_model
    with _LOCK:
        if _lite_model is not None:
            return _lite_model or None
        real = submodule("transformer")  # also open_clip.utils, open_clip.pos_embed
        origin = importlib.util.find_spec("open_clip.model").origin
        pkg = types.ModuleType(_PRIVATE)
        pkg.__path__ = []  # nothing else can be found in it: an unknown import fails (and falls back below)
        provided = {"transformer": real, "modified_resnet": submodule("modified_resnet"),
                    "utils": submodule("utils"), "pos_embed": submodule("pos_embed"),
                    "hf_model": types.SimpleNamespace(HFTextEncoder=_NeedsOpenClip),
                    "timm_model": types.SimpleNamespace(TimmModel=_NeedsOpenClip)}
        spec = importlib.util.spec_from_file_location(f"{_PRIVATE}.model", origin)
        mod = importlib.util.module_from_spec(spec)
        names = [_PRIVATE, *(f"{_PRIVATE}.{k}" for k in provided), spec.name]
        sys.modules[_PRIVATE] = pkg
        for k, v in provided.items():
            sys.modules[f"{_PRIVATE}.{k}"] = v
        sys.modules[spec.name] = mod  # kept: inspect, dataclasses and TorchScript look classes' modules up here
        try:
            spec.loader.exec_module(mod)
        except ImportError:  # a model.py that imports more than provided: open_clip.model is used instead
            for n in names:
                sys.modules.pop(n, None)
            mod = None
        _lite_model = mod if mod is not None else False
        return mod


def clip_class(cfg: dict[str, Any], custom_text: bool = False) -> type:
    """The open_clip class that builds `cfg` (CLIP or CustomTextCLIP keyword arguments): CustomTextCLIP
    for `custom_text` configs and Hugging Face text towers, as open_clip's factory chooses."""
    text, vision = cfg.get("text_cfg", {}) or {}, cfg.get("vision_cfg", {}) or {}
    hf_text = "hf_model_name" in text
    if hf_text or "timm_model_name" in vision or "open_clip.model" in sys.modules:
        module = submodule("model")
    else:
        module = _private_model() or submodule("model")
    return module.CustomTextCLIP if custom_text or hf_text else module.CLIP
