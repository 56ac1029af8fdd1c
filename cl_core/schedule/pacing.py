"""Pacing: the target effective fraction ``f(t)`` at training iteration ``t``.

:data:`PACINGS` maps each pacing name to its curve; :func:`pacing_fraction` runs one from
``initial_fraction`` to 1 over ``warmup_iterations``. A scalar iteration takes a numpy-free path:
the sampler calls it once per refresh.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from cl_core.schedule.checks import check_iteration, check_power, scalar_iteration
from cl_core.validation import check_choice, check_fraction, check_int, check_non_negative_int


def _linear(ratio: Any, power: float, n_steps: int, xp: Any) -> Any:
    return ratio


def _cosine(ratio: Any, power: float, n_steps: int, xp: Any) -> Any:
    return 0.5 * (1.0 - xp.cos(xp.pi * ratio))


def _root(ratio: Any, power: float, n_steps: int, xp: Any) -> Any:
    return ratio ** (1.0 / power)


def _step(ratio: Any, power: float, n_steps: int, xp: Any) -> Any:
    return xp.floor(n_steps * ratio) / n_steps


PACINGS: dict[str, Callable[[Any, float, int, Any], Any]] = {
    "linear": _linear,
    "cosine": _cosine,
    "root": _root,
    "step": _step,
}
"""Pacing name -> ``curve(ratio, power, n_steps, xp)``: the progress in [0, 1] at ``ratio = t / W``
in [0, 1). ``xp`` is :mod:`math` for one float (the sampler's numpy-free hot path) or
:mod:`numpy` for arrays; both provide ``cos``, ``pi`` and ``floor``, so each curve is written once."""


def canonical_pacing(name: object) -> str:
    """Validate a pacing name: one of :data:`PACINGS` (``linear``, ``cosine``, ``root``, ``step``).

    Parameters
    ----------
    name : str
        The pacing of the schedule's target fraction ``f(t)``.

    Returns
    -------
    str
        ``name``, unchanged.

    Raises
    ------
    ValueError
        For an unknown name, listing the valid ones.
    """
    return str(check_choice("pacing", name, PACINGS))


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
    canonical_pacing(pacing)
    return pace(
        iteration,
        pacing,
        check_fraction("initial_fraction", initial_fraction),
        check_non_negative_int("warmup_iterations", warmup_iterations),
        check_power(power),
        check_int("n_steps", n_steps, 1),
    )


def pace(
    iteration: object, pacing: str, f0: float, warmup: int, power: float, n_steps: int
) -> float | np.ndarray:
    """:func:`pacing_fraction` with validated numbers; scalars take a numpy-free path (the
    sampler's hot loop). An unknown ``pacing`` is a ``ValueError``."""
    curve = PACINGS[canonical_pacing(pacing)]
    scalar = scalar_iteration(iteration)
    if scalar is not None:
        if scalar >= warmup:
            return 1.0
        progress = curve(scalar / warmup, power, n_steps, math)
        return min(f0 + (1.0 - f0) * progress, 1.0)
    t = check_iteration(iteration)
    ratios = np.clip(t / warmup, 0.0, 1.0) if warmup > 0 else np.ones_like(t)
    progresses = curve(ratios, power, n_steps, np)
    fraction = np.where(t >= warmup, 1.0, np.minimum(f0 + (1.0 - f0) * progresses, 1.0))
    return float(fraction) if fraction.ndim == 0 else fraction
