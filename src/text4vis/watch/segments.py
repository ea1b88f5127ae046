"""Segments online: `timeline.segments`' rule, applied as the windows arrive.

The rule (timeline's module docstring): window scores are smoothed with `smooth` windows on each side
(`timeline.smooth_scores`, fewer at the ends); a window's label is its smoothed top-1 class, or a gap
under `min_score`; a window stands for the part of the stream nearest its centre (halfway to its
neighbours' centres, never outside the window); consecutive windows with the same label merge, scored by
the mean of their smoothed scores. Online, window k is settled once window k + max(smooth, 1) has been
scored (its smoothed score and the right edge of its part need them), so segment events come
max(smooth, 1) strides after the window. Each window's part and gap decision come from
`timeline.segments` itself, asked about the window and its two neighbours (`_piece`); the merging of
consecutive parts is done here, with bounded memory: only the last 2 * smooth + 3 windows' scores are
kept and a segment's score is a running mean (`timeline.segments` holds every window; the segments are
the same, tested against it).
"""
from __future__ import annotations

from collections import deque

import numpy as np

from ..timeline import segments, smooth_scores


class OnlineSegments:
    """`add(start, end, scores)` per window in order -> segment events; `finish()` closes the last one.

    Events: {"event": "segment", "label", "start", "score"} when a segment opens (the score of its first
    window) and {"event": "segment", "label", "start", "end", "score"} when it closes."""

    def __init__(self, labels: list[str], min_score: float = 0.0, smooth: int = 1):
        self.labels, self.min_score, self.r = list(labels), float(min_score), max(0, int(smooth))
        self.buf: deque = deque(maxlen=2 * self.r + 3)   # (k, (start, end), scores [C]) of the latest windows
        self.received = 0                                # windows added
        self.settled = 0                                 # windows settled
        self.open: dict | None = None                    # the open segment: label, start, end, sum, n, last_k

    def add(self, start: float, end: float, scores) -> list[dict]:
        self.buf.append((self.received, (float(start), float(end)), np.asarray(scores, dtype=np.float64)))
        self.received += 1
        out = []
        while self.settled + max(self.r, 1) < self.received:
            out += self._settle(self.settled, final=False)
        return out

    def finish(self) -> list[dict]:
        """Settle the remaining windows (the last one ends the stream) and close the open segment."""
        out = []
        while self.settled < self.received:
            out += self._settle(self.settled, final=True)
        if self.open is not None:
            out.append(self._close())
        self.buf.clear()
        return out

    def _row(self, k: int):
        for item in self.buf:
            if item[0] == k:
                return item
        return None

    def _settle(self, k: int, final: bool) -> list[dict]:
        self.settled = k + 1
        items = [it for it in self.buf if k - self.r <= it[0] <= k + self.r]
        sm = smooth_scores(np.stack([it[2] for it in items]), self.r)[[it[0] for it in items].index(k)]
        val = float(sm.max())
        piece = self._piece(k, sm)
        if piece is None:  # a gap (under min_score) or a part of no length
            return [self._close()] if self.open is not None else []
        left, right, label = piece
        seg = self.open
        if seg is not None and seg["label"] == label and abs(seg["end"] - left) < 1e-6 and seg["last_k"] == k - 1:
            seg.update(end=right, sum=seg["sum"] + val, n=seg["n"] + 1, last_k=k)
            return []
        out = [self._close()] if seg is not None else []
        self.open = {"label": label, "start": left, "end": right, "sum": val, "n": 1, "last_k": k}
        out.append({"event": "segment", "label": label, "start": round(left, 6), "score": round(val, 6)})
        return out

    def _piece(self, k: int, smoothed: np.ndarray):
        """(left, right, label) of window k's part, or None for a gap: asked of `timeline.segments` itself,
        on window k and its neighbours (a part depends on them alone), each window given classes of its own
        (a block-diagonal score matrix) so that none merges with another."""
        local = [it for it in (self._row(k - 1), self._row(k), self._row(k + 1)) if it is not None]
        c = len(self.labels)
        rows = np.zeros((len(local), len(local) * c))
        for j, it in enumerate(local):
            rows[j, j * c:(j + 1) * c] = smoothed if it[0] == k else it[2]
        names = [f"{j}:{i}" for j in range(len(local)) for i in range(c)]
        mine = [j for j, it in enumerate(local) if it[0] == k][0]
        for seg in segments([it[1] for it in local], rows, names, self.min_score, 0):
            j, i = (int(x) for x in seg["label"].split(":"))
            if j == mine:
                return seg["start"], seg["end"], self.labels[i]
        return None

    def _close(self) -> dict:
        seg, self.open = self.open, None
        return {"event": "segment", "label": seg["label"], "start": round(seg["start"], 6),
                "end": round(seg["end"], 6), "score": round(seg["sum"] / seg["n"], 6)}
