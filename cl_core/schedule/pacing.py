"""Pacing: the target effective fraction ``f(t)`` at training iteration ``t``.

``linear``, ``cosine``, ``root`` and ``step`` curves from ``initial_fraction`` to 1 over
``warmup_iterations`` (:func:`pacing_fraction`). A scalar iteration takes a numpy-free path:
the sampler calls it once per refresh.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cl_core.schedule.checks import (
    PACINGS,
    _check_iteration,
    _check_positive_int,
    _check_power,
)
from cl_core.validation import check_choice, check_fraction, check_non_negative_int


def pacing_fraction(
    iteration: object,
    *,
    pacing: str,
    initial_fraction: float,
    warmup_iterations: int,
    power: float = 2.0,
    n_steps: int = 4,
) -> float | np.ndarray:
    """Target effective fraction ``f(t)`` at training iteration ``t``.

    With ``f0 = initial_fraction``, ``W = warmup_iterations`` and ``r = t / W`` for ``t < W``:

    * ``linear``: ``f0 + (1 - f0) r`` (the reference library);
    * ``cosine``: ``f0 + (1 - f0) (1 - cos(pi r)) / 2`` (the paper);
    * ``root``: ``f0 + (1 - f0) r ** (1 / power)`` (fast early growth for ``power > 1``);
    * ``step``: ``n_steps`` plateaus of equal length ``W / n_steps``; plateau ``k`` (0-based)
      holds ``f0 + (1 - f0) k / n_steps``, so the first is ``f0`` and the last is below 1.

    From ``t >= W`` on the target is exactly 1.0 (uniform); ``W = 0`` is uniform throughout.

    Parameters
    ----------
    iteration : int or array-like of int
        Non-negative iteration(s).
    pacing : {"linear", "cosine", "root", "step"}
    initial_fraction : float in (0, 1]
    warmup_iterations : int >= 0
    power : float > 0
        Root order for ``root``.
    n_steps : int >= 1
        Plateaus for ``step``.

    Returns
    -------
    float or ndarray
        A float for scalar input, else an array of the input's shape.
    """
    check_choice("pacing", pacing, PACINGS)
    return _pace(
        iteration,
        pacing,
        check_fraction("initial_fraction", initial_fraction),
        check_non_negative_int("warmup_iterations", warmup_iterations),
        _check_power(power),
        _check_positive_int("n_steps", n_steps),
    )


def _scalar_iteration(iteration: object) -> float | None:
    """A plain scalar iteration as float (validated), or None for array input."""
    if isinstance(iteration, bool) or not isinstance(
        iteration, (int, float, np.integer, np.floating)
    ):
        return None
    value = float(iteration)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(
            f"iteration must be a non-negative integer (0 is the first step), got {iteration!r}"
        )
    return value


def _pacing_progress(ratio: Any, pacing: str, power: float, n_steps: int, xp: Any) -> Any:
    """The pacing curves' progress in [0, 1] at ``ratio = t / W`` in [0, 1).

    ``xp`` is :mod:`math` for one float (the sampler's numpy-free hot path) or :mod:`numpy`
    for arrays; both provide ``cos``, ``pi`` and ``floor``, so the curves are written once.
    """
    if pacing == "linear":
        return ratio
    if pacing == "cosine":
        return 0.5 * (1.0 - xp.cos(xp.pi * ratio))
    if pacing == "root":
        return ratio ** (1.0 / power)
    return xp.floor(n_steps * ratio) / n_steps


def _pace(
    iteration: object, pacing: str, f0: float, warmup: int, power: float, n_steps: int
) -> float | np.ndarray:
    """Pacing with validated parameters; scalars take a numpy-free path (sampler hot loop)."""
    scalar = _scalar_iteration(iteration)
    if scalar is not None:
        if scalar >= warmup:
            return 1.0
        progress = _pacing_progress(scalar / warmup, pacing, power, n_steps, math)
        return min(f0 + (1.0 - f0) * progress, 1.0)
    t = _check_iteration(iteration)
    ratios = np.clip(t / warmup, 0.0, 1.0) if warmup > 0 else np.ones_like(t)
    progresses = _pacing_progress(ratios, pacing, power, n_steps, np)
    fraction = np.where(t >= warmup, 1.0, np.minimum(f0 + (1.0 - f0) * progresses, 1.0))
    return float(fraction) if fraction.ndim == 0 else fraction
