"""Alerts defined by sentences: each window is scored against each sentence, zero-shot.

A sentence is embedded by the model's text tower as `index search` embeds a query (each prompt template,
averaged, normalised); the alert's score for a window is the cosine similarity of the window's
normalised video embedding with it. An alert can also be any vector of the embedding space (a stored
classifier's row: `from_classifier`), which is how the tests make an alert that cannot be mistaken.

Hysteresis, per source and alert: an episode starts at the first window scoring >= `score`; the alert
fires once, when the windows have stayed >= `score` for `hold` seconds (from the end of the episode's
first window to the end of the current one: hold=0 fires at the first window, hold=2 with a 1 s stride
at the third); the next alert can only
come after a window scores below `score` again.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UsageError

DEFAULT_PROMPTS = ("{}",)


@dataclass
class Alert:
    query: str
    vector: np.ndarray        # float32 [D], unit length


def from_sentences(recognizer, sentences, prompts=DEFAULT_PROMPTS) -> list[Alert]:
    if not sentences:
        return []
    if recognizer.towers is None:
        raise UsageError(f"alerts={list(sentences)!r}: {recognizer.source or 'this model'} has no text tower to embed "
                         f"alert sentences; pass clip= for one")
    out = []
    with torch.no_grad():
        for text in sentences:
            if not str(text).strip():
                raise UsageError(f"alerts={text!r}: an alert is a sentence, not empty text")
            emb = recognizer.towers.encode_text([p.format(text) for p in prompts]).float().mean(0).cpu()
            out.append(Alert(str(text), _unit(emb.numpy(), str(text))))
    return out


def from_classifier(cls) -> list[Alert]:
    """One alert per row of a classifier (named by its label)."""
    weight = cls.weight.detach().float().cpu().numpy()
    return [Alert(label, _unit(row, label)) for label, row in zip(cls.labels, weight)]


def _unit(v: np.ndarray, name: str) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm == 0:
        raise UsageError(f"alerts={name!r}: its embedding is zero or not finite")
    return v / norm


def check_dim(alerts: list[Alert], dim: int) -> None:
    for a in alerts:
        if a.vector.shape[0] != dim:
            raise UsageError(f"alerts={a.query!r}: a vector of width {a.vector.shape[0]}, but this model's video "
                             f"embeddings have width {dim}")


class Hysteresis:
    """The alert state of one (source, alert) pair: `update(start, end, score)` -> True when it fires."""

    def __init__(self, threshold: float, hold: float = 0.0):
        self.threshold, self.hold = float(threshold), max(0.0, float(hold))
        self.since: float | None = None   # end of the episode's first window
        self.fired = False

    def update(self, start: float, end: float, score: float) -> bool:
        if score < self.threshold:
            self.since, self.fired = None, False
            return False
        if self.since is None:
            self.since = end
        if not self.fired and end - self.since >= self.hold - 1e-9:
            self.fired = True
            return True
        return False

    def reset(self) -> None:
        """A new epoch (the stream restarted): the episode is over."""
        self.since, self.fired = None, False
