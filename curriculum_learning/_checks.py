"""The one argument check whose message must name a reference-library parameter.

Every other check comes from :mod:`cl_core.validation` (re-exported here for the package's
modules), so the compat package and ``cl_core`` raise the same error types with the same wording.
"""

from __future__ import annotations

import numpy as np

from cl_core.validation import (
    check_choice,
    check_finite,
    check_fraction,
    check_non_negative_int,
)

__all__ = [
    "check_batch_size",
    "check_choice",
    "check_finite",
    "check_fraction",
    "check_non_negative_int",
]


def check_batch_size(value: object) -> int:
    """``batch_size`` as a positive int (a ``ValueError`` otherwise, as before the split)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"batch_size must be a positive integer, got {value!r}; e.g. 256")
    return int(value)
