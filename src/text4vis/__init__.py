"""text4vis: video recognition by transferring CLIP to video against a frozen text classifier.

Public API:
    load(...)                 -> Recognizer (predict(paths), encode_video(frames))
    load_towers(spec)         -> CLIP towers from a name, open_clip pair, hf-hub id or local file
    VideoModel                 the video model (image tower + temporal head + classifier)
    VideoIndex                 a searchable video collection (`text4vis index`): build, open, search, tag
    text_classifier, lm_classifier, lda_classifier, random_classifier, orthogonal_classifier,
    save_classifier, load_classifier
    Text4VisError              the base of every error text4vis raises on purpose (text4vis.errors)

Names are imported on first use, so `import text4vis` (and `text4vis --help`) does not load torch (nor FAISS).
"""
from __future__ import annotations

import importlib

from .errors import Text4VisError

__version__ = "0.1.0"

# public name -> the module that defines it
_LAZY = {
    "load": "api", "Recognizer": "api",
    "load_towers": "towers",
    "VideoModel": "model",
    "VideoIndex": "index",
    "Classifier": "classifiers", "text_classifier": "classifiers", "lm_classifier": "classifiers",
    "lda_classifier": "classifiers", "random_classifier": "classifiers", "orthogonal_classifier": "classifiers",
    "save_classifier": "classifiers", "load_classifier": "classifiers",
}
__all__ = [*_LAZY, "Text4VisError", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'text4vis' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
