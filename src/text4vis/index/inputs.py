"""What to index: video files, folders searched recursively, and list files (.txt/.csv/.lst/.list); each
of them may also be a URL (s3://, gs://, az://, http(s)://, see remote.py): a bucket prefix is a folder."""
from __future__ import annotations

import csv
import os

from .. import remote
from ..errors import VideoError, VideoIndexError

LIST_EXTENSIONS = (".txt", ".csv", ".lst", ".list")


def read_list_file(path: str) -> list[str]:
    """Paths of a list file: one per line (blank lines and # comments skipped), or a CSV with a `path`
    column (any case: `Path`, `PATH`; a UTF-8 byte order mark, as Excel's "CSV UTF-8" writes, is ignored).
    Relative paths are relative to the list file's folder; URLs are kept as they are."""
    base = None if remote.is_remote(path) else os.path.dirname(os.path.abspath(path))
    try:
        if base is None:
            text = remote.read_text(path).removeprefix("\ufeff")
        else:
            with open(path, newline="", encoding="utf-8-sig") as f:   # -sig: a leading BOM is not text
                text = f.read()
    except VideoError as exc:
        raise VideoIndexError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise VideoIndexError(f"{path}: not a text list of videos (byte {exc.start} is not UTF-8)") from None
    except OSError as exc:
        raise VideoIndexError(f"{path}: cannot read this list of videos ({exc.strerror or exc})") from None
    if path.lower().endswith(".csv"):
        if not text.strip():
            return []
        reader = csv.reader(text.splitlines())
        header = [h.strip() for h in next(reader)]
        folded = [h.casefold() for h in header]
        if folded.count("path") != 1:
            raise VideoIndexError(f"{path}: a CSV list of videos needs a `path` column, one (its columns: "
                                  f"{', '.join(header)})")
        col = folded.index("path")
        names = [row[col].strip() for row in reader if len(row) > col]
    else:
        names = [ln.strip() for ln in text.splitlines()]
    return [n if remote.is_remote(n) else remote.join(path, n) if base is None else os.path.join(base, n)
            for n in names if n and not n.startswith("#")]


def expand_inputs(inputs) -> tuple[list[str], list[str]]:
    """(video paths, absolute and without repeats, in input order; input folders that hold no video).

    Inputs are video files, folders (searched recursively) and list files (.txt/.csv/.lst/.list).
    A path that does not exist is kept: the build records it as a failed video."""
    from ..video import VIDEO_EXTENSIONS, find_videos
    out, seen, empty = [], set(), []
    for item in [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs):
        item = os.fspath(item)
        if remote.is_remote(item):
            paths = _remote_input(item, VIDEO_EXTENSIONS)
            if not paths:
                empty.append(item)
        elif os.path.isfile(item) and item.lower().endswith(LIST_EXTENSIONS):
            paths = find_videos(read_list_file(item))
        elif os.path.isdir(item):
            paths = find_videos([item])
            if not paths:
                empty.append(item)
        else:
            paths = [item]
        for p in paths:
            p = p if remote.is_remote(p) else os.path.abspath(p)
            if p not in seen:
                seen.add(p)
                out.append(p)
    return out, empty


def _remote_input(url: str, extensions) -> list[str]:
    """A URL input: a list file's entries, the videos under a bucket prefix, or the one object."""
    if url.lower().endswith(LIST_EXTENSIONS):
        return read_list_file(url)
    if os.path.splitext(url)[1].lower() in extensions and not url.endswith("/"):
        return [url]                     # an object: the build records it as failed if it is not there
    try:
        found = remote.find_videos(url, extensions)
    except VideoError as exc:
        raise VideoIndexError(str(exc)) from None
    return [url] if found is None else found


def file_stat(path: str) -> tuple[int, float]:
    """(size, mtime) of a file, or of an object at a URL (remote.stat); (-1, -1.0) when it is not there."""
    if remote.is_remote(path):
        return remote.stat(path)
    try:
        st = os.stat(path)
        return int(st.st_size), float(st.st_mtime)
    except OSError:
        return -1, -1.0

