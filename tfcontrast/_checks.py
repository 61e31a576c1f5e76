"""Argument checks shared across modules (private, NumPy only: no TensorFlow import).

Every check raises a `ValueError` in one style, naming the owner (the class or function
whose argument it is), the argument, what was expected and what was received:

    "TripletLoss: `margin` must be > 0; received margin=-1."

and returns the value converted to the type the caller stores (`int` or `float`), so a
call site reads `self.margin = _checks.positive("margin", margin, owner)`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def fail(name: str, value, owner: str, expected: str, hint: str = "") -> ValueError:
    """The `ValueError` every check raises: `"{owner}: `{name}` must be {expected};
    received {name}={value!r}.{hint}"` (returned, so the caller writes `raise fail(...)`)."""
    return ValueError(f"{owner}: `{name}` must be {expected}; received {name}={value!r}.{hint}")


def integer(
    name: str,
    value,
    owner: str,
    *,
    least: int = 1,
    numpy_ints: bool = True,
    whole_floats: bool = False,
) -> int:
    """`value` as an `int`, if it is an integer `>= least`.

    `bool` is always refused (`True` is an `int` in Python, never a count here).
    `numpy_ints` accepts NumPy integer scalars (`np.int64(3)`, e.g. from an array);
    `whole_floats` accepts floats with no fractional part (`16.0`, not `2.5`).
    """
    if isinstance(value, (bool, np.bool_)):
        ok = False
    elif isinstance(value, int) or (numpy_ints and isinstance(value, np.integer)):
        ok = True
    elif whole_floats and isinstance(value, (float, np.floating)):
        ok = math.isfinite(value) and float(value).is_integer()
    else:
        ok = False
    if not ok or value < least:
        raise fail(name, value, owner, f"an int >= {least}")
    return int(value)


def _as_float(name: str, value, owner: str, expected: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise fail(name, value, owner, expected) from None


def positive(name: str, value, owner: str) -> float:
    """`value` as a `float`, if it is a number `> 0` (NaN and `None` are refused)."""
    if value is None or not _as_float(name, value, owner, "> 0") > 0.0:
        raise fail(name, value, owner, "> 0")
    return float(value)


def non_negative(name: str, value, owner: str) -> float:
    """`value` as a `float`, if it is a number `>= 0` (NaN and `None` are refused)."""
    if value is None or not _as_float(name, value, owner, ">= 0") >= 0.0:
        raise fail(name, value, owner, ">= 0")
    return float(value)


def in_range(
    name: str,
    value,
    owner: str,
    low: float,
    high: float,
    *,
    high_open: bool = False,
    hint: str = "",
) -> float:
    """`value` as a `float`, if `low <= value <= high` (`< high` with `high_open`).

    `hint` is appended to the message (e.g. a sentence on the usual values).
    """
    expected = f"in [{low:g}, {high:g}{')' if high_open else ']'}"
    number = None if value is None else _as_float(name, value, owner, expected)
    inside = (
        number is not None and low <= number and (number < high if high_open else number <= high)
    )
    if not inside:
        raise fail(name, value, owner, expected, hint)
    return number


def _pair(value, cast=float) -> tuple:
    """`value` as two `cast` numbers; TypeError or ValueError for anything else. A string
    is not a pair ("11" would read as (1, 1)), nor is a boolean a number. Any iterable of
    two (a list, an array, a generator) is read once."""
    if isinstance(value, (str, bytes)):
        raise TypeError(value)
    values = tuple(value)
    if any(isinstance(v, bool) for v in values):
        raise TypeError(value)
    a, b = (cast(v) for v in values)
    return (a, b)


def ordered_pair(
    name: str, value, owner: str, low: float = 0.0, high: float = math.inf
) -> tuple[float, float]:
    """`value` as `(min, max)` floats, if it is a pair with `low <= min <= max <= high`."""
    try:
        a, b = _pair(value)
    except (TypeError, ValueError):
        raise fail(name, value, owner, "a pair (min, max)") from None
    if not (low <= a <= b <= high):
        raise fail(name, value, owner, f"a pair (min, max) with {low} <= min <= max <= {high}")
    return (a, b)


def fraction_range(name: str, value, owner: str) -> tuple[float, float]:
    """`value` as `(min, max)` floats, if it is a pair with `0 < min <= max <= 1` (numbers
    or their strings, as from the command line)."""
    try:
        low, high = _pair(value)
    except (TypeError, ValueError):
        low = high = math.nan
    if not 0.0 < low <= high <= 1.0:
        raise fail(name, value, owner, "two fractions 0 < min <= max <= 1")
    return (low, high)


def size_pair(name: str, value, owner: str) -> tuple[int, int]:
    """`value` as positive `(height, width)` ints; an int `n` means `(n, n)`."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    try:
        h, w = _pair(value, int)
    except (TypeError, ValueError):
        raise fail(name, value, owner, "an int or a pair (height, width)") from None
    if h <= 0 or w <= 0:
        raise fail(name, value, owner, "positive")
    return (h, w)


def choice(name: str, value, choices: Iterable, owner: str):
    """`value` unchanged, if it is one of `choices` (listed sorted in the message)."""
    choices = tuple(choices)
    if value not in choices:
        raise fail(name, value, owner, f"one of {sorted(choices, key=str)}")
    return value


def first_line(error: BaseException) -> str:
    """The first line of `error`'s message (its type's name when it has none): what a
    one-line error says of a library's exception."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def did_you_mean(name, choices: Iterable) -> str:
    """`" Did you mean 'x'?"` for the choice closest to a mistyped `name` (case-insensitive),
    or `""` when none is close: the end of an "unknown name" message."""
    import difflib

    choices = [str(c) for c in choices]
    by_lower = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(str(name).lower(), list(by_lower), n=1, cutoff=0.6)
    return f" Did you mean {by_lower[close[0]]!r}?" if close else ""


def integer_labels(y, owner: str, name: str = "y", n: int | None = None) -> np.ndarray:
    """`y` as int32 class labels; whole-valued floats are converted, anything else (0.2,
    "cat") is a ValueError naming `owner` and `name`: casting 0.2, 0.7, 1.2 to integers
    would silently merge classes. With `n`, `y` must have shape `(n,)`."""
    labels = np.asarray(y)
    if n is not None and (labels.ndim != 1 or labels.shape[0] != n):
        raise ValueError(
            f"{owner}: `{name}` must have shape ({n},) to match the images; received shape "
            f"{labels.shape}."
        )
    whole = labels.dtype.kind in "iub" or (
        labels.dtype.kind == "f" and np.all(np.isfinite(labels)) and np.all(labels % 1 == 0)
    )
    if not whole:
        example = labels.reshape(-1)[:3].tolist()
        raise ValueError(
            f"{owner}: `{name}` must hold integer class labels; received dtype {labels.dtype} "
            f"(e.g. {example}). Map class names or values to 0..C-1 first."
        )
    return labels.astype(np.int32)
