"""text4vis: video recognition by transferring CLIP to video against a frozen text classifier.

Public API:
    load(...)                 -> Recognizer (predict(paths), encode_video(frames))
    load_towers(spec)         -> CLIP towers from a name, open_clip pair, hf-hub id or local file
    VideoModel                 the video model (image tower + temporal head + classifier)
    text_classifier, lm_classifier, lda_classifier, random_classifier, orthogonal_classifier,
    save_classifier, load_classifier
"""
from .api import Recognizer, load
from .classifiers import (Classifier, lda_classifier, lm_classifier, load_classifier, orthogonal_classifier,
                          random_classifier, save_classifier, text_classifier)
from .model import VideoModel
from .towers import load_towers

__version__ = "0.1.0"
__all__ = ["load", "Recognizer", "load_towers", "VideoModel", "Classifier", "text_classifier", "lm_classifier",
           "lda_classifier", "random_classifier", "orthogonal_classifier", "save_classifier", "load_classifier"]
