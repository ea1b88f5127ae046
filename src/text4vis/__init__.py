"""text4vis: video recognition by transferring CLIP to video against a frozen text classifier.

Public API:
    load(...)                 -> Recognizer (predict(paths), encode_video(frames))
    load_towers(spec)         -> CLIP towers from a name, open_clip pair, hf-hub id or local file
    VideoModel                 the video model (image tower + temporal head + classifier)
    text_classifier, lm_classifier, lda_classifier, random_classifier, orthogonal_classifier,
    save_classifier, load_classifier

Names and submodules are imported on first use, so that `text4vis --help` (and `import text4vis.errors`)
does not load torch.
"""
import importlib

__version__ = "0.1.0"
_EXPORTS = {"load": "api", "Recognizer": "api", "load_towers": "towers", "VideoModel": "model",
            **{n: "classifiers" for n in ("Classifier", "text_classifier", "lm_classifier", "lda_classifier",
                                          "random_classifier", "orthogonal_classifier", "save_classifier",
                                          "load_classifier")}}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
