"""Vocabularies and argument checks shared by the schedule modules (numpy + stdlib only).

The strategy names, :func:`canonical_strategy` (aliases such as the reference's
``"difficulty"``), :func:`inverse_temperature`, and the validators of difficulty vectors,
inverse temperatures, temperatures, iterations, tolerances and pacing parameters.
"""

from __future__ import annotations

import math

import numpy as np

from cl_core.validation import check_choice, check_finite

STRATEGIES = ("easy", "hard")
STRATEGY_ALIASES = {"difficulty": "hard", "prototypes": "easy"}


def canonical_strategy(name: object) -> str:
    """Resolve a strategy name (or alias) to ``"easy"`` or ``"hard"``.

    Parameters
    ----------
    name : str
        ``"easy"``, ``"hard"`` or an alias: ``"difficulty"`` (the reference library's name for
        ``"hard"``) or ``"prototypes"`` (``"easy"``).

    Returns
    -------
    str
        ``"easy"`` or ``"hard"``.
    """
    if not isinstance(name, str):
        raise TypeError(
            f"strategy must be a string, got {name!r}; valid: "
            f"{', '.join(STRATEGIES + tuple(STRATEGY_ALIASES))}"
        )
    resolved = STRATEGY_ALIASES.get(name, name)
    if resolved not in STRATEGIES:
        check_choice("strategy", name, STRATEGIES + tuple(STRATEGY_ALIASES))
    return resolved


def as_difficulty(difficulty: object, name: str = "difficulty") -> np.ndarray:
    """Validate a per-sample score vector and return it as float64 (N,)."""
    values = np.asarray(difficulty)
    if values.dtype.kind not in "fiu":
        raise TypeError(
            f"{name} must be a numeric array of per-sample scores, got dtype {values.dtype}; "
            f"pass a float array of shape (N,)"
        )
    if values.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D with one score per sample, got shape {values.shape}; "
            f"flatten it (e.g. np.ravel) if it holds one score per sample"
        )
    if values.size == 0:
        raise ValueError(f"{name} is empty (0 samples); pass one score per sample (N >= 1)")
    check_finite(name, values)
    return values.astype(np.float64, copy=False)


def check_beta(beta: object) -> float:
    try:
        value = float(beta)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"beta must be a number >= 0 (1 / temperature), got {beta!r}") from None
    if math.isnan(value) or value < 0:
        raise ValueError(
            f"beta must be >= 0 (inverse temperature 1/T; 0 is uniform), got {beta!r}; "
            f"pass 1/T for a temperature T > 0"
        )
    return value


def check_temperature(temperature: object) -> float:
    try:
        value = float(temperature)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"temperature must be a number > 0, got {temperature!r}") from None
    if math.isnan(value) or value <= 0:
        raise ValueError(
            f"temperature must be > 0 (inf means uniform), got {temperature!r}; "
            f"lower T focuses sampling, e.g. temperature=0.5"
        )
    return value


def check_iteration(iteration: object) -> np.ndarray:
    values = np.asarray(iteration)
    if values.dtype.kind not in "fiu":
        raise TypeError(f"iteration must be a non-negative integer, got {iteration!r}")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(
            f"iteration must be a non-negative integer (0 is the first step), got {iteration!r}"
        )
    return values.astype(np.float64)


def scalar_iteration(iteration: object) -> float | None:
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


def inverse_temperature(temperature: float) -> float:
    """Return ``beta = 1 / temperature`` (0.0 for ``temperature = inf``, i.e. uniform)."""
    return 1.0 / check_temperature(temperature)


def check_tol(tol: object) -> float:
    try:
        value = float(tol)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"tol must be a number in (0, 0.01], got {tol!r}") from None
    if not (0.0 < value <= 0.01):
        raise ValueError(f"tol must lie in (0, 0.01] (e.g. 1e-4), got {tol!r}")
    return value


def check_power(power: object) -> float:
    try:
        value = float(power)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"power must be a number > 0, got {power!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"power must be a finite number > 0 (e.g. 2.0 = square root), got {power!r}"
        )
    return value
