"""Videos in object storage and on web servers: `s3://`, `gs://`, `az://` (and `abfs://`) through
fsspec (s3fs, gcsfs, adlfs: the optional extras `s3`, `gcs`, `azure`), and `http(s)://` through
fsspec's HTTP file system (aiohttp).

A URL is opened as a seekable file object that PyAV reads with ranged requests (`block_size` bytes
at a time, the last `max_blocks` blocks kept), so a container's header is found wherever it is (an
MP4 `moov` first or last) without downloading the whole object first, and a second pass over the
same bytes (text4vis counts frames by demuxing, then decodes) is served from the kept blocks.
Credentials come from each library's usual environment (AWS_* variables, profiles and instance
roles; GOOGLE_APPLICATION_CREDENTIALS; AZURE_STORAGE_*); a private S3-compatible endpoint from
AWS_ENDPOINT_URL_S3 (or fsspec's FSSPEC_S3_ENDPOINT_URL).

List files (`read_list_file`: .txt/.lst/.list one path a line, or a .csv with a `path` column), local
or at a URL, name videos for `predict`, `timeline` and `index build` alike; their entries may be URLs.

An object's identity for incremental index builds is its size and last-modified time (`stat`),
which every write changes; where a server gives an ETag and no last-modified time, a number derived
from the ETag stands in for the time.
"""
from __future__ import annotations

import csv
import hashlib
import os
import posixpath
import re
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from .errors import VideoError, first_line

SCHEMES = {"s3": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure",
           "http": "http", "https": "http"}
PACKAGES = {"s3": "s3fs", "gcs": "gcsfs", "azure": "adlfs", "http": "aiohttp"}
CREDENTIALS = {"s3": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or an instance role",
               "gcs": "GOOGLE_APPLICATION_CREDENTIALS or `gcloud auth application-default login`",
               "azure": "AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_NAME with "
                        "AZURE_STORAGE_ACCOUNT_KEY"}
BLOCK_SIZE = 4 * 2 ** 20      # bytes per ranged read
MAX_BLOCKS = 32               # blocks kept per open object (at most 128 MiB)
UNTRUSTED_ENV = "TEXT4VIS_MEDIA_FILES_ONLY"   # video.MEDIA_FILES_ONLY_ENV (video imports this module)
LIST_EXTENSIONS = (".txt", ".csv", ".lst", ".list")   # a list of videos, never a video
_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def scheme(path) -> str | None:
    """The URL scheme of `path` when text4vis reads it remotely ("s3", "gs", "http", ...), else None."""
    if not isinstance(path, str):
        return None
    m = _URL.match(path)
    return m.group(1).lower() if m and m.group(1).lower() in SCHEMES else None


def is_remote(path) -> bool:
    return scheme(path) is not None


def _filesystem(url: str):
    """(fsspec file system, path inside it) for `url`; VideoError when its package is missing, or when
    this process opens untrusted inputs (`video.media_files_only`): then no URL is fetched at all."""
    kind = SCHEMES[scheme(url)]
    if os.environ.get(UNTRUSTED_ENV) == "1":
        raise VideoError(f"{url}: a URL, and only local video files are opened for untrusted inputs")
    try:
        import fsspec
        fs, inner = fsspec.core.url_to_fs(url)
    except ImportError as exc:
        extra = {"s3": "s3", "gcs": "gcs", "azure": "azure", "http": "http"}[kind]
        raise VideoError(f"{url}: reading {scheme(url)}:// needs {PACKAGES[kind]} ({first_line(exc)}): "
                         f"pip install 'text4vis[{extra}]'") from None
    return fs, inner


def _problem(url: str, exc: BaseException, fs=None) -> VideoError:
    """One line naming the object for what went wrong reaching it."""
    kind = SCHEMES[scheme(url)]
    name = type(exc).__name__
    if "Credential" in name or "NoAuth" in name or "DefaultCredentialsError" in name:
        return VideoError(f"{url}: no credentials for {scheme(url)}:// ({first_line(exc)}); set "
                          f"{CREDENTIALS.get(kind, 'the service credentials')}")
    if isinstance(exc, FileNotFoundError):
        if kind != "http" and fs is not None:
            bucket = url.split("://", 1)[1].split("/", 1)[0]
            try:
                fs.info(bucket)
            except Exception:
                return VideoError(f"{url}: no such bucket {bucket!r} (or it cannot be listed)")
        return VideoError(f"{url}: no such object")
    if isinstance(exc, PermissionError):
        return VideoError(f"{url}: access denied ({first_line(exc)})")
    return VideoError(f"{url}: cannot be read ({name}: {first_line(exc)})")


def info(url: str) -> dict:
    """fsspec's description of the object at `url` (size, ETag, last-modified time, ...)."""
    fs, inner = _filesystem(url)
    try:
        return fs.info(inner)
    except Exception as exc:
        raise _problem(url, exc, fs) from None


def open_video(url: str):
    """A seekable binary file object over the object at `url`, read with ranged requests, for PyAV;
    VideoError (one line naming the object) when it cannot be reached or is empty."""
    fs, inner = _filesystem(url)
    try:
        meta = fs.info(inner)
        if meta.get("type") == "directory":
            raise VideoError(f"{url}: is a folder (a prefix), not a video")
        if meta.get("size") == 0:
            raise VideoError(f"{url}: empty object (0 bytes)")
        return fs.open(inner, "rb", block_size=BLOCK_SIZE, cache_type="blockcache",
                       cache_options={"maxblocks": MAX_BLOCKS})
    except VideoError:
        raise
    except Exception as exc:
        raise _problem(url, exc, fs) from None


def _modified(meta: dict) -> float | None:
    for key in ("LastModified", "last_modified", "Last-Modified", "updated", "mtime"):
        value = meta.get(key)
        if value is None:
            continue
        try:
            if isinstance(value, datetime):
                return value.replace(tzinfo=value.tzinfo or timezone.utc).timestamp()
            if isinstance(value, (int, float)):
                return float(value)
            try:
                return parsedate_to_datetime(value).timestamp()          # HTTP date
            except (TypeError, ValueError):
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except (TypeError, ValueError, OverflowError):
            continue
    return None


def stat(url: str) -> tuple[int, float]:
    """(size, last-modified seconds) of the object at `url`, as os.stat's (st_size, st_mtime) for a
    file; without a last-modified time, -(a number from the ETag); (-1, -1.0) when it cannot be reached."""
    try:
        meta = info(url)
    except VideoError:
        return -1, -1.0
    size = int(meta.get("size") or -1)
    mtime = _modified(meta)
    if mtime is None:
        etag = meta.get("ETag") or meta.get("etag")
        mtime = -float(int(hashlib.sha1(str(etag).encode()).hexdigest()[:12], 16)) if etag else -1.0
    return size, mtime


def read_text(url: str) -> str:
    """A remote list file's text (UTF-8)."""
    fs, inner = _filesystem(url)
    try:
        return fs.cat_file(inner).decode("utf-8")
    except UnicodeDecodeError:
        raise
    except Exception as exc:
        raise _problem(url, exc, fs) from None


def join(base_url: str, name: str) -> str:
    """`name` from the list file at the URL `base_url`: a URL or an absolute path as it is, a relative
    path relative to the list's folder."""
    if is_remote(name) or name.startswith("/"):
        return name
    head, _, rest = base_url.partition("://")
    return f"{head}://{posixpath.normpath(posixpath.join(posixpath.dirname(rest), name))}"


def find_videos(url: str, extensions) -> list[str] | None:
    """The video objects under the prefix `url` (recursively, sorted, by extension); None when `url`
    is not a folder (a prefix holding objects) on an object store. HTTP has no listing: None."""
    if SCHEMES[scheme(url)] == "http":
        return None
    fs, inner = _filesystem(url)
    try:
        if not fs.isdir(inner):
            return None
        found = fs.find(inner)
    except Exception as exc:
        raise _problem(url, exc, fs) from None
    head = scheme(url)
    return [f"{head}://{p}" for p in sorted(found) if posixpath.splitext(p)[1].lower() in extensions]


def is_list_file(path) -> bool:
    """A list of videos to read: a URL ending in a list extension, or an existing local file with one."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path).lower().endswith(LIST_EXTENSIONS):
        return False
    path = os.fspath(path)
    return is_remote(path) or os.path.isfile(path)


def read_list_file(path: str) -> list[str]:
    """Paths of a list file (local or at a URL): one per line (blank lines and # comments skipped), or a
    CSV with a `path` column (any case: `Path`, `PATH`; a UTF-8 byte order mark, as Excel's "CSV UTF-8"
    writes, is ignored). Relative paths are relative to the list file's folder (or its URL's); URLs are kept
    as they are. VideoError, one line naming the list, when it cannot be read."""
    base = None if is_remote(path) else os.path.dirname(os.path.abspath(path))
    try:
        if base is None:
            text = read_text(path).removeprefix("\ufeff")
        else:
            with open(path, newline="", encoding="utf-8-sig") as f:   # -sig: a leading BOM is not text
                text = f.read()
    except UnicodeDecodeError as exc:
        raise VideoError(f"{path}: not a text list of videos (byte {exc.start} is not UTF-8)") from None
    except OSError as exc:
        raise VideoError(f"{path}: cannot read this list of videos ({exc.strerror or exc})") from None
    if path.lower().endswith(".csv"):
        if not text.strip():
            return []
        reader = csv.reader(text.splitlines())
        header = [h.strip() for h in next(reader)]
        folded = [h.casefold() for h in header]
        if folded.count("path") != 1:
            raise VideoError(f"{path}: a CSV list of videos needs a `path` column, one (its columns: "
                             f"{', '.join(header)})")
        col = folded.index("path")
        names = [row[col].strip() for row in reader if len(row) > col]
    else:
        names = [ln.strip() for ln in text.splitlines()]
    return [n if is_remote(n) else join(path, n) if base is None else os.path.join(base, n)
            for n in names if n and not n.startswith("#")]
