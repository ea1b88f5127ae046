"""One error family for the whole library.

Every error the library raises on purpose is a `Text4VisError`. Messages are whole sentences that
name the API's own parameters (`device=`, `checkpoint=`, ...) and the file at fault; they never name a
command-line flag or an exit code. The CLI turns any `Text4VisError` into one line on stderr
(exit 2, or 1 for per-input failures).
"""
from __future__ import annotations


class Text4VisError(Exception):
    """Base class of every error text4vis raises on purpose."""


class UsageError(Text4VisError):
    """An argument or option value that cannot work (out of range, contradictory, missing)."""


class WeightsError(Text4VisError):
    """Model weights that cannot be found, read or used (checkpoints, CLIP files, hub names)."""


class VideoError(Text4VisError):
    """A video (or frame folder / frame zip) that cannot be decoded."""


class DataError(Text4VisError):
    """A dataset list, folder or entry that cannot be used."""


class LabelsError(Text4VisError):
    """A label set or label file that cannot be used."""


class ClassifierError(Text4VisError):
    """A classifier that cannot be built, read or used with this model."""


class ConfigError(Text4VisError):
    """A training/evaluation config (file or override) that cannot be used."""


class DeviceError(Text4VisError, ValueError):
    """A device that is not a device name or is not on this machine."""


class TrainError(Text4VisError):
    """A training run that cannot start, resume or go on."""


class OutputError(Text4VisError):
    """An output location that cannot be written (would overwrite other work, wrong kind, locked)."""


class VideoIndexError(Text4VisError):
    """A video index that cannot be built, opened or searched."""


class Text4VisWarning(UserWarning):
    """Something text4vis did differently from what was asked, or ignored (warnings.warn; the CLI prints it
    as one "warning:" line)."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, cut at a word boundary if longer than `limit`."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",;:") + " ..."
