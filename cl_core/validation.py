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


def check_int(name: str, value: object, minimum: int, hint: str = "") -> int:
    """Return ``value`` as int if it is an integer >= ``minimum``, else raise.

    Parameters
    ----------
    name : str
        The argument's name as the user wrote it.
    value : object
        The value to check (``bool`` is rejected although it is an ``int``).
    minimum : int
        Smallest allowed value.
    hint : str
        Appended to the message (e.g. ``"; or None for one per core"``).

    Raises
    ------
    TypeError
        Not an integer.
    ValueError
        Below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}{hint}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}{hint}")
    return int(value)


def check_random_state(value: object) -> int | None:
    """Return ``random_state`` as int (or None), rejecting negatives, bools and generators."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise TypeError(
            f"random_state must be a non-negative integer or None, got {value!r}; "
            "e.g. random_state=0 for reproducible clusters"
        )
    return int(value)


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


def check_valid_mask(name: str, valid: object, n_samples: int) -> np.ndarray | None:
    """Validate a per-sample usability mask; ``None`` when every sample is usable.

    Parameters
    ----------
    name : str
        The argument's name as the user wrote it (``"valid"``, ``"sample_mask"``).
    valid : array-like of shape (N,), bool, or None
        True for a usable (drawable) sample, False for an excluded one (e.g. a file that could
        not be decoded).
    n_samples : int
        N, the number of samples the mask must cover.

    Returns
    -------
    ndarray of shape (N,), bool, or None
        A read-only copy of the mask, or ``None`` when ``valid`` is None or all True (so that an
        all-True mask behaves exactly like no mask).

    Raises
    ------
    TypeError
        For a non-boolean dtype (an index array passed by mistake, 0/1 floats...).
    ValueError
        For the wrong shape, or when no sample is usable.
    """
    if valid is None:
        return None
    values = np.asarray(valid)
    if values.dtype != np.bool_:
        raise TypeError(
            f"{name} must be a boolean array (True = usable sample), got dtype {values.dtype}; "
            f"build it as np.ones(N, bool) with mask[skipped_indices] = False, not an index list"
        )
    if values.shape != (n_samples,):
        raise ValueError(
            f"{name} has shape {values.shape} but there are {n_samples} samples; pass one "
            f"True/False per sample, shape ({n_samples},)"
        )
    if values.all():
        return None
    if not values.any():
        raise ValueError(
            f"{name} excludes all {n_samples} samples; at least one usable sample is needed "
            f"(check why every sample was skipped)"
        )
    mask = values.copy()
    mask.flags.writeable = False
    return mask
