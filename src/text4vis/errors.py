"""One error family for the whole library, and the checks of public arguments that raise it.

Every error the library raises on purpose is a `Text4VisError`. Messages are whole sentences that
name the API's own parameters (`device=`, `checkpoint=`, ...) and the file at fault; they never name a
command-line flag or an exit code. The CLI turns any `Text4VisError` into one line on stderr
(exit 2, or 1 for per-input failures).
"""
from __future__ import annotations

import math
import numbers
import re


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


class DataWarning(Text4VisWarning):
    """Data that text4vis corrected or worked around (e.g. frame counts a list gets wrong)."""


def first_line(exc: BaseException, limit: int = 300, with_type: bool = False) -> str:
    """The first non-empty line of an exception's message (terminal colour codes removed), cut at a word
    boundary if longer than `limit`; the exception's type name when the message is empty. `with_type`:
    "TypeName: first line" (for errors of other libraries, whose type says what went wrong)."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    text = lines[0]
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0].rstrip(",;:") + " ..."
    return f"{type(exc).__name__}: {text}" if with_type else text


def check_numbers(*checks) -> None:
    """Numeric arguments, each (name, value, least) or (name, value, least, most); None values are skipped.
    UsageError naming the first value out of range. Library callers name their API parameters
    (`batch_size`); the CLI passes its flags (`--batch-size`)."""
    for name, value, least, *most in checks:
        if value is None:
            continue
        what = name if name.startswith("-") else f"{name}="  # a parameter is written `batch_size=`
        if not value >= least:  # also NaN
            raise UsageError(f"{what} must be at least {least} (got {value})")
        if most and value > most[0]:
            raise UsageError(f"{what} must be at most {most[0]} (got {value})")


# ----------------------------------------------------------------------------- argument checks
# One check per kind of public numeric parameter, shared by the API and the CLI. Each takes the
# parameter's API name and its value and returns the value as the plain Python type (an `int`, a finite
# `float`), or raises a one-line UsageError naming `name=value` (`topk=0: must be at least 1`). The CLI
# passes the same values to the same functions and rewrites `name=value` into its flag (`--topk 0`), so
# the API refuses exactly what the command line refuses. Refused everywhere: booleans (`True` is not 1
# window), strings (`'3'`, even when they look like a number), None (unless `optional=True`), NaN and
# infinities, and whole numbers given as fractions (`topk=2.7`). numpy scalars (`np.int64(3)`,
# `np.float32(0.5)`) are numbers like any other.
def _refuse(name: str, value, why: str) -> UsageError:
    return UsageError(f"{name}={value!r}: {why}")


def check_int(name: str, value, minimum: int | None = None, maximum: int | None = None, *,
              optional: bool = False) -> int | None:
    """`value` as an int: a whole number (int or numpy integer, not bool, not a float or string) within
    [minimum, maximum] (either bound may be None). None is returned as it is when `optional`."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _refuse(name, value, "must be a whole number")
    value = int(value)
    if minimum is not None and value < minimum:
        raise _refuse(name, value, f"must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise _refuse(name, value, f"must be at most {maximum}")
    return value


def check_float(name: str, value, minimum: float | None = None, maximum: float | None = None, *,
                above: float | None = None, optional: bool = False, unit: str = "") -> float | None:
    """`value` as a finite float: a real number (int, float or numpy number, not bool or a string), not NaN
    or infinite, within [minimum, maximum] and strictly greater than `above` (each bound may be None).
    `unit` ("seconds") is named in the message. None is returned as it is when `optional`."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _refuse(name, value, f"must be a number{' of ' + unit if unit else ''}")
    value = float(value)
    if not math.isfinite(value):
        raise _refuse(name, value, f"must be a finite number{' of ' + unit if unit else ''}")
    if above is not None and not value > above:
        raise _refuse(name, value, f"must be more than {above:g}{' ' + unit if unit else ''}")
    if minimum is not None and value < minimum:
        raise _refuse(name, value, f"must be at least {minimum:g}{' ' + unit if unit else ''}")
    if maximum is not None and value > maximum:
        raise _refuse(name, value, f"must be at most {maximum:g}{' ' + unit if unit else ''}")
    return value


def check_bool(name: str, value) -> bool:
    """`value` as a bool: True or False only (not 1, 'yes' or None)."""
    if not isinstance(value, bool):
        raise _refuse(name, value, "must be True or False")
    return value
