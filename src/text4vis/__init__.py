"""text4vis: video recognition by transferring CLIP to video against a frozen text classifier.

Public API:
    load(...)                 -> Recognizer (predict(paths), encode_video(frames))
    load_towers(spec)         -> CLIP towers from a name, open_clip pair, hf-hub id or local file
    VideoModel                 the video model (image tower + temporal head + classifier)
    VideoIndex                 a searchable video collection (`text4vis index`): build, open, search, tag
    text_classifier, lm_classifier, lda_classifier, random_classifier, orthogonal_classifier,
    save_classifier, load_classifier
    Text4VisError              the base of every error text4vis raises on purpose (text4vis.errors)

Names are imported on first use (a module __getattr__), so `import text4vis` (and the command line's
--help) does not load PyTorch, open_clip or FAISS until something needs them.
"""
from __future__ import annotations

import importlib

from .errors import Text4VisError

__version__ = "0.1.0"

_EXPORTS = {
    "load": "api", "Recognizer": "api", "load_towers": "towers", "VideoModel": "model", "VideoIndex": "index",
    **{name: "classifiers" for name in ("Classifier", "text_classifier", "lm_classifier", "lda_classifier",
                                        "random_classifier", "orthogonal_classifier", "save_classifier",
                                        "load_classifier")},
}
__all__ = [*_EXPORTS, "Text4VisError", "__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:  # a submodule (text4vis.api, ...) not imported yet
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'text4vis' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
