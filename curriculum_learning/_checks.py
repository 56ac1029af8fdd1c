"""Argument checks that name the reference library's parameters.

:mod:`cl_core` keeps its boundary checks in a private module, and this package uses public
``cl_core`` names only (``tests/test_public_imports.py``). Most arguments are validated by the
public ``cl_core`` configs they end up in (:class:`cl_core.schedule.ScheduleConfig`,
:class:`cl_core.cluster.ClusterConfig`); the few checks here are the ones whose message must name
a compat parameter (``initial_effective_percentage`` is ``ScheduleConfig.initial_fraction``).
They raise the same error types with the same wording as ``cl_core``'s: ``TypeError`` for a
wrong type, ``ValueError`` for a wrong value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


def check_choice(name: str, value: object, valid: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``valid``, else raise listing the valid names."""
    options = tuple(valid)
    if value not in options:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(options)}")
    return str(value)


def check_fraction(name: str, value: Any) -> float:
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


def check_batch_size(value: object) -> int:
    """``batch_size`` as a positive int (a ``ValueError`` otherwise, as before the split)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"batch_size must be a positive integer, got {value!r}; e.g. 256")
    return int(value)


def check_finite(name: str, values: np.ndarray) -> None:
    """Raise if ``values`` (1-D) holds NaN or inf, naming how many and the first index."""
    if values.dtype.kind not in "fc":
        return
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        shown = ", ".join(str(int(i)) for i in bad[:5])
        more = ", ..." if bad.size > 5 else ""
        raise ValueError(
            f"{name} has {bad.size} non-finite (NaN/inf) values; first at index {int(bad[0])} "
            f"(indices {shown}{more}). Remove or repair those samples before computing a "
            f"curriculum."
        )
