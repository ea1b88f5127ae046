"""Writing files safely: outputs checked before any work, and every file written whole or not at all."""
from __future__ import annotations

import hashlib
import os
from typing import Callable

from .errors import OutputError


def _file_mode() -> int:
    """The mode `open()` gives a new file under this process's umask (0644 under umask 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str, write: Callable[[str], None], *, durable: bool = False) -> None:
    """`write(tmp)` writes the whole file at a temporary path beside `path`, which is then renamed over
    `path`: a kill or an error never leaves half a file, and the previous file at `path` stays intact until
    the rename. The file gets the umask's normal mode (writers such as safetensors create 0600).
    `durable`: fsync the file and the folder (checkpoints). The temporary name is per process, so
    torchrun ranks writing the same file never share one."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        write(tmp)
        os.chmod(tmp, _file_mode())
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    if durable:
        try:  # make the rename itself durable
            fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        except OSError:
            pass


def atomic_write_text(path: str, text: str) -> None:
    """A text file (UTF-8), written whole or not at all (see `atomic_write`)."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    atomic_write(path, write)


def check_output(path: str, name: str = "out", folder: bool = False) -> None:
    """Before any work: `path` (a file; with folder=True a folder) can be written or created. OutputError
    naming the parameter `name` and the path otherwise: an existing folder where a file is expected (or a
    file where a folder is), a parent that is a file, a location without write permission."""
    what = f"{name} {path}" if name.startswith("-") else f"{name}={path!r}"  # a CLI may pass its flag
    if os.path.isdir(path):
        if not folder:
            raise OutputError(f"{what}: is a folder; give a file name")
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputError(f"{what}: folder is not writable (permission denied)")
        return
    if os.path.lexists(path):
        if folder:
            raise OutputError(f"{what}: exists and is not a folder")
        if os.path.exists(path) and not os.access(path, os.W_OK):
            raise OutputError(f"{what}: file is not writable (permission denied)")
    ancestor = os.path.dirname(os.path.abspath(path))  # the nearest existing folder above it must be writable
    while not os.path.lexists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise OutputError(f"{what}: cannot create it, {ancestor} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"{what}: cannot write in {ancestor} (permission denied)")


def check_output_file(path: str, name: str, extensions: tuple[str, ...], what: str,
                      is_ours: Callable[[str], bool], overwrite: bool = False) -> None:
    """`check_output`, for a file of one kind: its name must end in one of `extensions` (the format written
    is the format named), and an existing file is replaced only if `is_ours(path)` says it is an output of
    the same kind (or `overwrite`): a video, a checkpoint or someone's notes are never replaced by mistake."""
    check_output(path, name)
    if not path.lower().endswith(tuple(e.lower() for e in extensions)):
        raise OutputError(f"{name}={path!r}: {what} is written here, so its name must end in "
                          f"{' or '.join(extensions)}")
    if os.path.exists(path) and not overwrite:
        try:
            ours = is_ours(path)
        except Exception:  # unreadable or not of that kind at all
            ours = False
        if not ours:
            raise OutputError(f"{name}={path!r}: exists and is not {what} written by text4vis; not replaced "
                              f"(overwrite=True replaces it)")


def check_output_folder(path: str, name: str, what: str, is_ours: Callable[[str], bool], overwrite: bool = False,
                        files: tuple[str, ...] | None = None) -> None:
    """`check_output` for a folder text4vis writes into: it may be new or empty, or hold an earlier output of
    the same kind (`is_ours(path)`); anything else in it (with `files`: one of those names) is someone's, and
    the folder is refused unless `overwrite`, so a user's files are never replaced or mixed in by mistake."""
    check_output(path, name, folder=True)
    if overwrite or not os.path.isdir(path):
        return
    present = sorted(os.listdir(path)) if files is None else [f for f in files if os.path.lexists(os.path.join(path, f))]
    if not present:
        return
    try:
        ours = is_ours(path)
    except Exception:  # unreadable or not of that kind at all
        ours = False
    if not ours:
        more = f" and {len(present) - 1} more" if len(present) > 1 else ""
        raise OutputError(f"{name}={path!r}: holds {present[0]}{more}, not {what} written by text4vis; nothing "
                          f"written (choose a new or empty folder, or overwrite=True to write there anyway)")


def sha256_file(path: str) -> str:
    """The SHA-256 of a file's bytes, read in 4 MiB blocks (checkpoints are large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()
