"""An index opened for search and tagging: `VideoIndex`."""
from __future__ import annotations

import os

import numpy as np

from ..errors import check_int
from ..errors import ClassifierError, UsageError, VideoError, VideoIndexError, first_line
from ..records import top_labels
from .build import build_index
from .embedding import check_same_model, embed_video_groups, load_model, local_checkpoint, model_record
from .storage import ENTRIES, FAISS_FILE, VECTORS, RowReader, read_info, require_arrow
from .vectors import read_vector_index, search_vectors

# ----------------------------------------------------------------------------- opening and searching

class VideoIndex:
    """A built video index, opened for search and tagging (the FAISS index memory-mapped).

        idx = VideoIndex.open("my-index")
        idx.search("someone flipping a pancake", k=10)    # {"query", "results": [{"video", "start", "end", "score"}]}
        idx.like("clip.mp4", k=10)                        # videos like this one
        idx.tag(["juggling", "cooking"], topk=1)          # [{"video", "top": [{"label", "score"}]}, ...]

    The model that built the index is loaded on first need (text queries, `like`, `tag`); `checkpoint=` /
    `clip=` point at it when its file moved; another model is a VideoIndexError.
    """

    def __init__(self, directory: str, info: dict, checkpoint=None, clip=None, device="auto", precision="auto",
                 nprobe=None):
        _, pq = require_arrow()
        self.directory, self.info = directory, info
        current = info.get("current")
        if not current:
            raise VideoIndexError(f"{directory}: no finished build yet (a build was interrupted or is running); "
                                  f"build it again to finish it")
        folder = os.path.join(directory, current["folder"])
        try:
            self.entries = pq.read_table(os.path.join(folder, ENTRIES))
            self.vectors = RowReader(os.path.join(folder, VECTORS))
            self.index = read_vector_index(os.path.join(folder, FAISS_FILE))
        except (OSError, RuntimeError, ValueError) as exc:
            raise VideoIndexError(f"{directory}: damaged index ({first_line(exc)})") from None
        self.ok = self.entries.filter(self._status_ok()).sort_by("row")
        if not (len(self.ok) == len(self.vectors) == self.index.ntotal == current["embedded"]):
            raise VideoIndexError(f"{directory}: damaged index ({len(self.ok)} entries, {len(self.vectors)} "
                                  f"embeddings, {self.index.ntotal} indexed vectors)")
        self.settings = current["vector_index"]
        self.nprobe = check_int("nprobe", nprobe, 1, optional=True)
        self._overrides = {"checkpoint": local_checkpoint(checkpoint), "clip": clip, "device": device, "precision": precision}
        self._model = None

    def _status_ok(self):
        import pyarrow.compute as pc
        return pc.equal(self.entries.column("status"), "ok")

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def open(cls, directory: str, *, checkpoint: str | None = None, clip: str | None = None, device: str = "auto",
             precision: str = "auto", nprobe: int | None = None) -> VideoIndex:
        return cls(directory, read_info(directory), checkpoint, clip, device, precision, nprobe)

    @classmethod
    def build(cls, inputs, out: str, **options) -> VideoIndex:
        """Embed `inputs` (video files, folders searched recursively, list files: one path per line or a
        CSV with a `path` column) into the index folder `out`, then open it. Options: the model
        (checkpoint=, clip=, frames=, prompts=, device=, precision=), window= / stride= (seconds: one
        entry per time window instead of per video), shard_size=, batch_size=, workers=, dtype=
        (float32 or float16 embeddings), vector_index= (auto, flat, ivf-sq8, ivf-pq), exact_below=,
        nlist=, nprobe=, progress=, runtime= (torch or onnx). Resumable and incremental (see the module
        docstring); under torchrun every rank calls it. `.build_report` says what was embedded and what failed."""
        report = build_index(inputs, out, **options)
        opened = cls.open(out, checkpoint=options.get("checkpoint"), clip=options.get("clip"),
                          device=options.get("device", "auto"), precision=options.get("precision", "auto"))
        opened.build_report = report
        return opened

    def __len__(self) -> int:
        return len(self.ok)

    def close(self) -> None:
        self.vectors.close()

    # -- the model ---------------------------------------------------------------------------------
    def _model_args(self) -> dict:
        m, o = self.info["model"], self._overrides
        checkpoint, clip = o["checkpoint"] or m.get("checkpoint"), o["clip"] or m.get("clip")
        for name, path, given in (("checkpoint", checkpoint, o["checkpoint"]), ("clip", clip, o["clip"])):
            if path and (m.get(f"{name}_sha256") or given) and not os.path.isfile(path):
                raise VideoIndexError(f"{self.directory}: the {name} that built it, {path}, is not there; pass "
                                      f"{name}= with its new location")
        return {"checkpoint": checkpoint, "clip": clip, "frames": m["frames"], "device": o["device"],
                "precision": o["precision"]}

    def _check_model(self, rec, args: dict) -> None:
        m = self.info["model"]
        check_same_model(m, model_record(rec, args["checkpoint"], args["clip"], m["prompts"], known=m), self.directory)

    @property
    def model(self):
        """The Recognizer that built the index (loaded once)."""
        if self._model is None:
            args = self._model_args()
            rec = load_model(**args)
            self._check_model(rec, args)
            self._model = rec
        return self._model

    def embed_text(self, text: str, prompts=None) -> np.ndarray:
        """A sentence's embedding: the model's text tower on each prompt template, averaged, normalised.
        `prompts`: None for the index's recorded prompts (the rule for `search` and `tag` alike)."""
        import torch
        text = _check_query_text(text)
        prompts = self._prompts(prompts)
        rec = self.model
        if rec.towers is None:
            raise VideoIndexError(f"{self.directory}: the model that built it has no text tower for text queries; "
                                  f"pass clip= for one, or search with a video")
        with torch.no_grad():
            emb = rec.towers.encode_text([p.format(text) for p in prompts]).float().mean(0)
        return (emb / emb.norm().clamp_min(1e-12)).cpu().numpy()

    def _prompts(self, prompts) -> list[str]:
        """The prompt templates of a text query or a tag run: the given ones, else the ones recorded in the
        index (`index build --prompts`, else the model's own, else "a video of a person {}.")."""
        if prompts is None:
            return list(self.info["model"]["prompts"])
        if isinstance(prompts, (str, bytes)):
            raise UsageError(f"prompts={prompts!r}: give a list of templates, e.g. [{prompts!r}]")
        from ..classifiers import check_prompts
        try:
            return check_prompts(prompts)
        except ClassifierError as exc:
            raise UsageError(f"prompts={list(prompts)!r}: {exc}") from None

    def embed_video(self, path) -> np.ndarray:
        """A video's embedding, sampled as `predict --views 1x1` (VideoError if it does not decode). `path`: a
        video file or a frame folder (str or os.PathLike)."""
        path = _check_video_path(path)
        rec = self.model
        items = []
        embed_video_groups(rec, [[(os.path.abspath(path), 0, 0.0)]], 1, 0, lambda g, it: items.extend(it))
        emb, error, _, _ = items[0]
        if emb is None:
            raise VideoError(error)
        return emb[0]

    # -- search and tag ----------------------------------------------------------------------------------
    def search(self, query, k: int = 10, prompts=None, nprobe: int | None = None) -> dict:
        """The k entries closest to `query` (a sentence, or an embedding: D finite numbers, not all zero),
        best first: {"query", "results": [{"video", "start", "end", "score"}]} with score = cosine similarity.
        A sentence goes through the text tower with `prompts` (default: the index's recorded prompts)."""
        k, nprobe = check_int("k", k, 1), check_int("nprobe", nprobe, 1, optional=True)
        if isinstance(query, str):
            vec, shown = self.embed_text(query, prompts), query
        else:
            vec, shown = self._check_vector(query), None
        return self._results(vec, k, shown, nprobe)

    def like(self, video, k: int = 10, nprobe: int | None = None) -> dict:
        """The k entries closest to a video (a file or frame folder, embedded with the index's model), best
        first; "query" is the path as given, as a str."""
        k, nprobe = check_int("k", k, 1), check_int("nprobe", nprobe, 1, optional=True)
        video = _check_video_path(video)
        return self._results(self.embed_video(video), k, video, nprobe)

    def _check_vector(self, query) -> np.ndarray:
        """A query embedding as D finite float32 numbers with a direction; UsageError otherwise."""
        dim = self.info["model"]["embedding_width"]
        if isinstance(query, (bytes, bytearray, memoryview)) or query is None or isinstance(query, bool):
            raise UsageError(f"query={_short(query)}: give a sentence (str) or an embedding of {dim} numbers")
        try:
            vec = np.asarray(getattr(query, "detach", lambda: query)(), dtype=np.float64).reshape(-1)
        except (TypeError, ValueError, RuntimeError):
            raise UsageError(f"query={_short(query)}: give a sentence (str) or an embedding of {dim} numbers") \
                from None
        if vec.shape != (dim,) or not np.all(np.isfinite(vec)):
            raise UsageError(f"query={_short(query)}: an embedding query must be {dim} finite numbers "
                             f"(got shape {tuple(vec.shape)})")
        if not np.any(vec):
            raise UsageError(f"query={_short(query)}: a zero vector has no direction to search in")
        return vec.astype(np.float32)

    def _results(self, vec: np.ndarray, k: int, shown, nprobe) -> dict:
        vec = vec / max(float(np.linalg.norm(vec)), 1e-12)
        if len(self) == 0:
            return {"query": shown, "results": []}
        scores, rows = search_vectors(self.index, self.vectors, vec[None], k, self.settings, nprobe or self.nprobe)
        keep = rows[0] >= 0
        hits = self.ok.take(rows[0][keep]).select(["path", "start", "end"]).to_pylist()
        return {"query": shown, "results": [{"video": h["path"], "start": h["start"], "end": h["end"],
                                             "score": round(float(s), 6)} for h, s in zip(hits, scores[0][keep])]}

    def iter_tags(self, labels=None, topk: int = 5, prompts=None, classifier: str | None = None, chunk: int = 65536):
        """Top-k labels of every indexed entry from the stored embeddings alone, in index order: the
        numbers `predict --views 1x1` gives for the same model, labels and prompts. Yields
        {"video", "top": [{"label", "score"}]} (plus "start", "end" for window entries).
        `labels`: a label set name, a file or a list of names (None: the model's own; an empty list is
        refused); `prompts`: default the index's recorded prompts, as `search`. Checked when called."""
        topk, chunk = check_int("topk", topk, 1), check_int("chunk", chunk, 1)
        if labels is not None and not isinstance(labels, (str, os.PathLike)):
            if isinstance(labels, bytes) or not all(isinstance(x, str) for x in labels):
                raise UsageError(f"labels={_short(labels)}: give a label set name, a file or a list of class names")
            labels = list(labels)
            if not labels:
                raise UsageError("labels=[]: no class names given (labels=None uses the model's own)")
        prompts = None if classifier is not None else self._prompts(prompts)
        return self._tags(labels, topk, prompts, classifier, chunk)

    def _tags(self, labels, topk, prompts, classifier, chunk):
        import torch

        from ..api import load
        from ..engine import scores_from_embeddings
        args = self._model_args()
        rec = load(checkpoint=args["checkpoint"], clip=args["clip"], labels=labels, prompts=prompts,
                   classifier=classifier, frames=args["frames"], device=args["device"], precision=args["precision"])
        self._check_model(rec, args)
        weight = rec.model.classifier.detach().float().cpu()
        k = min(topk, len(rec.labels))
        windowed = self.info["entries"].get("window") is not None
        paths = self.ok.column("path").to_pylist()
        starts, ends = self.ok.column("start").to_pylist(), self.ok.column("end").to_pylist()
        for start, emb in self.vectors.chunks(chunk):
            tops = top_labels(scores_from_embeddings(torch.from_numpy(emb), weight), rec.labels, k)
            for j, top in enumerate(tops):
                r = {"video": paths[start + j]}
                if windowed:
                    r.update(start=starts[start + j], end=ends[start + j])
                r["top"] = top
                yield r

    def tag(self, labels=None, topk: int = 5, prompts=None, classifier: str | None = None) -> list[dict]:
        """`iter_tags` as a list."""
        return list(self.iter_tags(labels, topk, prompts, classifier))

    # -- what is in it -----------------------------------------------------------------------------------
    def failures(self) -> list[dict]:
        import pyarrow.compute as pc
        bad = self.entries.filter(pc.invert(self._status_ok())).select(["path", "error"]).to_pylist()
        return [{"video": r["path"], "error": r["error"]} for r in bad]

    def summary(self) -> dict:
        """Counts, model, settings and failures (what `text4vis index info` shows)."""
        current = self.info["current"]
        size = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(self.directory)
                   for f in files)
        return {"index": self.directory, "videos": current["videos"], "entries": current["entries"],
                "embedded": current["embedded"], "failed": current["failed"], "shards": current["shards"],
                "entries_per": "window" if self.info["entries"].get("window") is not None else "video",
                "window": self.info["entries"].get("window"), "stride": self.info["entries"].get("stride"),
                "dtype": self.info["dtype"], "vector_index": current["vector_index"], "model": self.info["model"],
                "disk_bytes": size, "failures": self.failures()}



def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_query_text(text: str) -> str:
    if not text.strip():
        raise UsageError(f"query={text!r}: an empty query; give a few words (or search by a video)")
    return text


def _check_video_path(video) -> str:
    """A `like` query as a str path: a video file or a frame folder, not a folder of videos."""
    if isinstance(video, bytes) or not isinstance(video, (str, os.PathLike)):
        raise UsageError(f"video={_short(video)}: give the path of a video file (str or os.PathLike)")
    video = os.fspath(video)
    if os.path.isdir(video):
        from ..video import find_videos
        found = find_videos([video])
        if found != [video]:
            raise UsageError(f"video={video!r}: a folder{' of ' + str(len(found)) + ' videos' if found else ''}, "
                             f"not a video; give one video file (or a folder of frame images)")
    return video
