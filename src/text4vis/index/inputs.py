"""What to index: video files, folders searched recursively, and list files (.txt/.csv/.lst/.list)."""
from __future__ import annotations

import csv
import os

from ..errors import VideoIndexError

LIST_EXTENSIONS = (".txt", ".csv", ".lst", ".list")


def read_list_file(path: str) -> list[str]:
    """Paths of a list file: one per line (blank lines and # comments skipped), or a CSV with a `path`
    column (any case: `Path`, `PATH`; a UTF-8 byte order mark, as Excel's "CSV UTF-8" writes, is ignored).
    Relative paths are relative to the list file's folder."""
    base = os.path.dirname(os.path.abspath(path))
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:   # -sig: a leading BOM is not text
            text = f.read()
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
    return [os.path.join(base, n) for n in names if n and not n.startswith("#")]


def expand_inputs(inputs) -> tuple[list[str], list[str]]:
    """(video paths, absolute and without repeats, in input order; input folders that hold no video).

    Inputs are video files, folders (searched recursively) and list files (.txt/.csv/.lst/.list).
    A path that does not exist is kept: the build records it as a failed video."""
    from ..video import find_videos
    out, seen, empty = [], set(), []
    for item in [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs):
        item = os.fspath(item)
        if os.path.isfile(item) and item.lower().endswith(LIST_EXTENSIONS):
            paths = find_videos(read_list_file(item))
        elif os.path.isdir(item):
            paths = find_videos([item])
            if not paths:
                empty.append(item)
        else:
            paths = [item]
        for p in paths:
            p = os.path.abspath(p)
            if p not in seen:
                seen.add(p)
                out.append(p)
    return out, empty


def file_stat(path: str) -> tuple[int, float]:
    try:
        st = os.stat(path)
        return int(st.st_size), float(st.st_mtime)
    except OSError:
        return -1, -1.0

