"""Boundary checks shared by every public entry point (numpy + stdlib only).

Each error names the argument, the bad value and what to do instead, so a user can fix the call
without reading the source.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def check_finite(name: str, array: np.ndarray, *, offset: int = 0) -> None:
    """Raise if ``array`` holds NaN or inf, naming how many and the first bad (row) index.

    Parameters
    ----------
    name : str
        The argument's name as the user wrote it.
    array : ndarray of shape (N,) or (N, D)
        Values to check; for 2-D input the reported index is the row.
    offset : int
        Added to reported indices (for chunks of a larger array).
    """
    values = np.asarray(array)
    if values.dtype.kind not in "fc":
        return
    finite = np.isfinite(values)
    if finite.all():
        return
    bad_rows = ~finite if finite.ndim == 1 else ~finite.reshape(finite.shape[0], -1).all(axis=1)
    bad = np.flatnonzero(bad_rows)
    shown = ", ".join(str(int(i) + offset) for i in bad[:5])
    more = ", ..." if bad.size > 5 else ""
    raise ValueError(
        f"{name} has {bad.size} non-finite (NaN/inf) "
        f"{'rows' if finite.ndim > 1 else 'values'}; first at index {int(bad[0]) + offset} "
        f"(indices {shown}{more}). Remove or repair those samples before computing a curriculum."
    )


def check_choice(name: str, value: object, valid: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``valid``, else raise listing the valid names."""
    options = tuple(valid)
    if value not in options:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(options)}")
    return str(value)


def check_fraction(name: str, value: float) -> float:
    """Return ``value`` as float if it lies in (0, 1], else raise."""
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number in (0, 1], got {value!r}") from None
    if not (0.0 < as_float <= 1.0):
        raise ValueError(
            f"{name} must lie in (0, 1] (a fraction of the dataset), got {value!r}; "
            f"e.g. 0.3 starts from the most prototypical 30%"
        )
    return as_float


def check_non_negative_int(name: str, value: object) -> int:
    """Return ``value`` as int if it is a non-negative integer, else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a non-negative integer, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return int(value)
