"""One check per kind of public numeric parameter, shared by the API and the CLI.

Each function takes the parameter's API name and its value and returns the value as the plain Python
type (an `int`, a finite `float`), or raises a one-line `UsageError` naming `name=value`
(`topk=0: must be at least 1`). The CLI passes the same values to the same functions and rewrites
`name=value` into its flag (`--topk 0`), so the API refuses exactly what the command line refuses.

Refused everywhere: booleans (`True` is not 1 window), strings (`'3'`, even when they look like a
number), None (unless `optional=True`), NaN and infinities, and whole numbers given as fractions
(`topk=2.7`). numpy scalars (`np.int64(3)`, `np.float32(0.5)`) are numbers like any other.
"""
from __future__ import annotations

import math
import numbers

from .errors import UsageError


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
