"""What to index: video files, folders searched recursively, and list files (.txt/.csv/.lst/.list); each
of them may also be a URL (s3://, gs://, az://, http(s)://, see remote.py): a bucket prefix is a folder."""
from __future__ import annotations

import os

from .. import remote
from ..errors import VideoError, VideoIndexError

LIST_EXTENSIONS = remote.LIST_EXTENSIONS


def read_list_file(path: str) -> list[str]:
    """remote.read_list_file (paths of a local or remote list file), its errors as VideoIndexError."""
    try:
        return remote.read_list_file(path)
    except VideoError as exc:
        raise VideoIndexError(str(exc)) from None


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

