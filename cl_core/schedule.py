"""Curriculum maths: effective fraction, temperature solver, pacing and the schedule table.

Imports numpy and the standard library only: :mod:`cl_core.sampler` imports this module at
training time and must stay light.

Conventions
-----------
Everything works with the inverse temperature ``beta = 1 / T`` so that uniform sampling
(``T = inf``) is the finite point ``beta = 0``. For a difficulty vector ``d`` of length ``N``:

* ``easy`` (prototypes first): ``p_i ∝ exp(-beta * d_i)``;
* ``hard``: ``p_i ∝ exp(+beta * d_i)``; the reference library calls it ``difficulty``.

Both are the same softmax over the *offset from the favoured end*, ``e_i = d_i - min(d)``
(easy) or ``e_i = max(d) - d_i`` (hard), which is ``>= 0`` with minimum 0. ``exp(-beta * e)``
is therefore ``<= 1`` with at least one entry equal to 1: the max-subtracted, overflow-free
softmax.

The effective fraction of a distribution ``p`` over ``N`` samples is the design's

``F(p) = sum_i (1 - (1 - p_i)^N) / (N * (1 - (1 - 1/N)^N))``

evaluated in float64 as ``-expm1(N * log1p(-p_i))``. ``F`` is 1 for uniform sampling, decreases
monotonically as ``beta`` grows and tends to :func:`minimum_fraction` as ``beta -> inf`` (all
mass spread evenly over the samples tied at the favoured extreme).

How the schedule table is built (:func:`build_schedule`)
-------------------------------------------------------
1. A *binned* model of ``F`` compresses the offsets into geometric bins (ratio ``1 + 2e-3``)
   holding count, mean and variance, and evaluates ``F`` with a second-order (variance)
   correction. Bins are narrow relative to ``1 / beta`` wherever ``exp(-beta * e)`` is not
   negligible, so the model agrees with the exact ``F`` to about 1e-12 while costing
   ``O(#bins)`` instead of ``O(N)`` per evaluation. The temperature of every grid target is
   found by vectorised bisection on ``log beta`` over this model after a vectorised bracket
   scan (the bracket expansion); each bracket ends at the *first* scan point at or below its
   target, because at betas far beyond any target a bin's ``beta² v`` stops being small and
   the model is no longer trusted.
2. Each solved ``beta`` is then checked with the *exact* ``F`` over all ``N`` samples; the
   few that miss the tolerance are polished with a safeguarded Newton / bisection iteration
   on ``log beta`` using the exact ``F`` and its analytic slope. ``Schedule.achieved`` holds
   exact values.
3. Interpolation. At run time ``beta(f)`` is interpolated linearly in ``log beta`` against
   the logit coordinate ``s(f) = log(1 - f) - log(f - f_min)``, using the *achieved* (exact)
   fractions as abscissae. Near ``f = 1``, ``F ≈ 1 - a * beta**2`` so ``log beta`` is linear
   in ``log(1 - f)``; near ``f_min`` it is close to linear in ``-log(f - f_min)``; so few
   nodes are needed. Above the last node below 1 (at ``f = 1 - 2.5e-4``) the asymptotic law
   ``beta ∝ sqrt(1 - f)`` is used.
4. Certification. Because ``F`` is monotone in ``beta`` and the interpolant is monotone, for
   ``f`` between two nodes the achieved ``F(beta(f))`` lies between the nodes' achieved
   fractions; an interval whose nodes are within ``INTERPOLATION_TOL`` (1e-3) of each other
   is therefore certified outright. Every other interval is probed at three interior points
   with the binned model and split at its midpoint (in ``s``) until all probes are within
   half of ``INTERPOLATION_TOL``. ``grid_size`` (default 33) is the number of initial nodes
   below ``f = 1``; refinement adds nodes up to ``max_grid_size`` (default 1024).

Cost: one exact ``O(N)`` evaluation per node dominates; about 1 s at N = 1.28 M on one core.

Degenerate input: a constant difficulty (all scores equal) has no curriculum: every ``beta``
gives the uniform distribution, so the solver returns ``beta = 0`` for every target and the
schedule is uniform at every iteration (with a ``UserWarning``); no NaN anywhere.
"""

from __future__ import annotations

import bisect
import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from cl_core._validation import (
    check_choice,
    check_finite,
    check_fraction,
    check_non_negative_int,
    check_valid_mask,
)

STRATEGIES = ("easy", "hard")
STRATEGY_ALIASES = {"difficulty": "hard", "prototypes": "easy"}
PACINGS = ("linear", "cosine", "root", "step")

DEFAULT_GRID_SIZE = 33
"""Initial number of table nodes below ``f = 1`` (evenly spaced in the logit coordinate)."""
DEFAULT_MAX_GRID_SIZE = 1024
"""Upper bound on table nodes below ``f = 1`` after adaptive refinement."""
INTERPOLATION_TOL = 1e-3
"""Guaranteed bound on ``|F(beta_for_fraction(f)) - f|`` for ``f`` in ``[initial_fraction, 1]``."""

SCHEDULE_FORMAT = "cl-curriculum/schedule"
SCHEDULE_FORMAT_VERSION = 1

_TOP_GAP = 2.5e-4  # the last node below 1 sits at f = 1 - _TOP_GAP; above it: sqrt law
_PROBE_TOL = 0.5 * INTERPOLATION_TOL  # probes must be well inside the bound (margin between probes)
_BIN_RATIO = 2e-3  # geometric bin growth of the binned model
_BIN_FLOOR = 1e-7  # offsets below this fraction of the range share one bin
_SCAN_LOG_BETA = np.linspace(math.log(1e-8), math.log(1e16), 97)  # bracket scan (scaled beta)
_EXACT_CHUNK = 1 << 22  # rows per block in exact evaluations (bounds temporary memory)
_MAX_LOG_BETA = math.log(1e300)
_TINY = float(np.finfo(np.float64).tiny)


# --------------------------------------------------------------------------- validation helpers


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


def _as_difficulty(difficulty: object, name: str = "difficulty") -> np.ndarray:
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


def _favoured_offsets(difficulty: np.ndarray, strategy: str) -> np.ndarray:
    """Offsets ``e >= 0`` from the favoured end: the softmax is ``exp(-beta * e)``."""
    if strategy == "easy":
        return difficulty - difficulty.min()
    return difficulty.max() - difficulty


def _check_beta(beta: object) -> float:
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


def _check_temperature(temperature: object) -> float:
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


def _check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_iteration(iteration: object) -> np.ndarray:
    values = np.asarray(iteration)
    if values.dtype.kind not in "fiu":
        raise TypeError(f"iteration must be a non-negative integer, got {iteration!r}")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(
            f"iteration must be a non-negative integer (0 is the first step), got {iteration!r}"
        )
    return values.astype(np.float64)


def inverse_temperature(temperature: float) -> float:
    """Return ``beta = 1 / temperature`` (0.0 for ``temperature = inf``, i.e. uniform)."""
    return 1.0 / _check_temperature(temperature)


# --------------------------------------------------------------------------- effective fraction


def _uniform_norm(n_samples: int) -> float:
    """``N * (1 - (1 - 1/N)^N)``: expected distinct samples of uniform sampling."""
    return (
        -n_samples * math.expm1(n_samples * math.log1p(-1.0 / n_samples)) if n_samples > 1 else 1.0
    )


def _distinct_mass(p: np.ndarray, n_samples: int) -> float:
    """``sum_i 1 - (1 - p_i)^N`` in float64 as ``-expm1(N * log1p(-p_i))``."""
    with np.errstate(divide="ignore"):  # p_i = 1 gives log1p(-1) = -inf, the right limit
        return float(-np.expm1(n_samples * np.log1p(-p)).sum())


def effective_fraction(p: object) -> float:
    """Effective fraction ``F(p)`` of a sampling distribution (uniform gives exactly 1).

    Parameters
    ----------
    p : array-like of shape (N,)
        Probabilities: finite, non-negative, summing to 1 (within 1e-6).

    Returns
    -------
    float
        Expected fraction of distinct samples in ``N`` draws with replacement, normalised by
        the uniform distribution's: ``sum_i -expm1(N log1p(-p_i)) / (N (1 - (1 - 1/N)^N))``.
    """
    probs = _as_difficulty(p, name="p")
    if np.any(probs < 0):
        first = int(np.flatnonzero(probs < 0)[0])
        raise ValueError(
            f"p has negative probabilities; first at index {first} ({float(probs[first])!r}); "
            f"pass a probability vector (non-negative, sums to 1)"
        )
    total = float(probs.sum())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"p must sum to 1, got sum {total!r}; normalise it first (p / p.sum())")
    return _distinct_mass(probs, probs.size) / _uniform_norm(probs.size)


def curriculum_probabilities(difficulty: object, beta: float, strategy: str = "easy") -> np.ndarray:
    """Sampling distribution ``softmax(-/+ beta * difficulty)`` in float64.

    Parameters
    ----------
    difficulty : array-like of shape (N,)
        Finite per-sample scores.
    beta : float
        Inverse temperature ``1 / T`` (>= 0). ``0`` gives the uniform distribution; ``inf``
        (``T -> 0``) spreads all mass evenly over the samples tied at the favoured extreme.
        Explicit-temperature mode (reference v1 API): pass ``inverse_temperature(T)``.
    strategy : {"easy", "hard"} or an alias
        ``easy`` favours low difficulty (``exp(-beta d)``), ``hard`` high (``exp(+beta d)``).

    Returns
    -------
    ndarray of shape (N,), float64
        Probabilities summing to 1.
    """
    values = _as_difficulty(difficulty)
    beta_value = _check_beta(beta)
    resolved = canonical_strategy(strategy)
    n_samples = values.size
    if beta_value == 0.0:
        return np.full(n_samples, 1.0 / n_samples)
    return probabilities_from_offsets(_favoured_offsets(values, resolved), beta_value)


def favoured_offsets(difficulty: object, strategy: str = "easy") -> np.ndarray:
    """Validated float64 offsets ``e >= 0`` from the favoured end of ``difficulty``.

    ``curriculum_probabilities(d, beta, s) == probabilities_from_offsets(favoured_offsets(d, s),
    beta)``; callers that evaluate many betas on the same scores (the sampler) compute the
    offsets once and skip the validation and subtraction on every call.
    """
    return _favoured_offsets(_as_difficulty(difficulty), canonical_strategy(strategy))


def probabilities_from_offsets(offsets: np.ndarray, beta: float) -> np.ndarray:
    """``softmax(-beta * offsets)`` in float64 with one temporary array.

    Parameters
    ----------
    offsets : ndarray of shape (N,), float64, min 0
        From :func:`favoured_offsets`; the zero minimum makes this a max-subtracted softmax
        (every weight <= 1, no overflow).
    beta : float >= 0
        Inverse temperature; ``inf`` spreads the mass evenly over the zero offsets.
    """
    n_samples = offsets.size
    if beta == 0.0:
        return np.full(n_samples, 1.0 / n_samples)
    if math.isinf(beta):
        favoured = offsets == 0.0
        return favoured / float(np.count_nonzero(favoured))
    weights = np.multiply(offsets, -beta)
    np.exp(weights, out=weights)
    weights /= weights.sum()
    return weights


def effective_fraction_at(difficulty: object, beta: float, strategy: str = "easy") -> float:
    """``F(curriculum_probabilities(difficulty, beta, strategy))``, computed in blocks.

    Parameters
    ----------
    difficulty : array-like of shape (N,)
    beta : float
        Inverse temperature (>= 0, ``inf`` allowed).
    strategy : {"easy", "hard"} or an alias

    Returns
    -------
    float
        The effective fraction in ``[minimum_fraction, 1]``.
    """
    values = _as_difficulty(difficulty)
    beta_value = _check_beta(beta)
    offsets = _favoured_offsets(values, canonical_strategy(strategy))
    if math.isinf(beta_value):
        return _minimum_fraction_of_offsets(offsets)
    return _ExactFraction(offsets).value(beta_value)


def _minimum_fraction_of_offsets(offsets: np.ndarray) -> float:
    n_samples = offsets.size
    tied = int(np.count_nonzero(offsets == 0.0))
    if tied == n_samples:
        return 1.0
    distinct = -tied * math.expm1(n_samples * math.log1p(-1.0 / tied)) if tied > 1 else 1.0
    return distinct / _uniform_norm(n_samples)


def minimum_fraction(difficulty: object, strategy: str = "easy") -> float:
    """Effective fraction in the ``beta -> inf`` (``T -> 0``) limit.

    All mass then sits evenly on the ``m`` samples tied at the lowest (easy) or highest (hard)
    difficulty, so ``F_min = m (1 - (1 - 1/m)^N) / (N (1 - (1 - 1/N)^N))``. Targets must lie
    strictly above it. A constant difficulty gives 1.0 (no curriculum is possible).

    Parameters
    ----------
    difficulty : array-like of shape (N,)
    strategy : {"easy", "hard"} or an alias

    Returns
    -------
    float
    """
    values = _as_difficulty(difficulty)
    return _minimum_fraction_of_offsets(_favoured_offsets(values, canonical_strategy(strategy)))


# --------------------------------------------------------------------------- F models


class _ExactFraction:
    """Exact ``F(beta)`` over all N offsets, in row blocks of ``_EXACT_CHUNK``."""

    def __init__(self, offsets: np.ndarray) -> None:
        self.offsets = offsets
        self.n_samples = offsets.size
        self.norm = _uniform_norm(self.n_samples)

    def _blocks(self) -> list[np.ndarray]:
        return [
            self.offsets[start : start + _EXACT_CHUNK]
            for start in range(0, self.n_samples, _EXACT_CHUNK)
        ]

    def value(self, beta: float) -> float:
        """Exact effective fraction at inverse temperature ``beta``."""
        blocks = self._blocks()
        if len(blocks) == 1:
            weights = np.exp(-beta * blocks[0])
            return _distinct_mass(weights / weights.sum(), self.n_samples) / self.norm
        total = sum(float(np.exp(-beta * block).sum()) for block in blocks)
        mass = sum(
            _distinct_mass(np.exp(-beta * block) / total, self.n_samples) for block in blocks
        )
        return mass / self.norm

    def value_and_slope(self, beta: float) -> tuple[float, float]:
        """Exact ``F(beta)`` and ``dF / dlog(beta)``.

        ``dp_i/dbeta = -p_i (e_i - ē)`` with ``ē = sum p e``, and
        ``d/dp [1 - (1-p)^N] = N (1 - p)^(N - 1)``.
        """
        blocks = self._blocks()
        total = 0.0
        weighted = 0.0
        for block in blocks:
            weights = np.exp(-beta * block)
            total += float(weights.sum())
            weighted += float(weights @ block)
        mean_offset = weighted / total
        mass = 0.0
        slope = 0.0
        n = self.n_samples
        for block in blocks:
            p = np.exp(-beta * block) / total
            with np.errstate(divide="ignore"):
                log_miss = np.log1p(-p)
            mass += float(-np.expm1(n * log_miss).sum())
            derivative = n * np.exp((n - 1) * log_miss)
            slope -= float((derivative * p) @ (block - mean_offset))
        return mass / self.norm, beta * slope / self.norm


class _BinnedFraction:
    """``F(beta)`` from geometric bins of the offsets with a second-order correction.

    Each bin keeps count ``n``, mean ``m`` and variance ``v`` of its offsets (scaled to
    ``[0, 1]`` by the range). Sums of a smooth function ``phi`` over a bin are
    ``n (phi(m) + phi''(m) v / 2)`` up to third-order terms; with bin widths ``<= 2e-3 * e``
    the error is ~1e-12 in practice. Evaluating B values of beta costs ``O(B * #bins)``.
    """

    def __init__(self, offsets: np.ndarray) -> None:
        self.n_samples = offsets.size
        self.norm = _uniform_norm(self.n_samples)
        self.scale = float(offsets.max())
        scaled = offsets / self.scale
        index = np.zeros(scaled.size, dtype=np.int64)
        above = scaled > _BIN_FLOOR
        index[above] = np.ceil(np.log(scaled[above] / _BIN_FLOOR) / math.log1p(_BIN_RATIO)).astype(
            np.int64
        )
        counts = np.bincount(index).astype(np.float64)
        occupied = counts > 0
        means = np.zeros_like(counts)
        means[occupied] = np.bincount(index, weights=scaled)[occupied] / counts[occupied]
        deviation = scaled - means[index]
        variances = np.bincount(index, weights=deviation * deviation)
        self.counts = counts[occupied]
        self.means = means[occupied]
        self.variances = variances[occupied] / self.counts

    def values(self, betas: np.ndarray) -> np.ndarray:
        """Approximate ``F`` at each of ``betas`` (shape (B,)) -> (B,)."""
        b = np.asarray(betas, dtype=np.float64)[:, None] * self.scale
        n = self.n_samples
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            at_mean = np.exp(-b * self.means)
            total = (self.counts * at_mean * (1.0 + 0.5 * b * b * self.variances)).sum(
                axis=1, keepdims=True
            )
            p = at_mean / total
            log_miss = n * np.log1p(-p)
            distinct = -np.expm1(log_miss)
            # d²/de² [1 - (1 - p(e))^N] with p(e) = exp(-b e) / Z
            curvature = b * b * p * n * np.exp(log_miss) / (1.0 - p) ** 2 * (1.0 - n * p)
            curvature = np.where(np.isfinite(curvature), curvature, 0.0)
            mass = (self.counts * (distinct + 0.5 * self.variances * curvature)).sum(axis=1)
        return np.asarray(mass / self.norm)


# --------------------------------------------------------------------------- solver


def _bisect_binned(model: _BinnedFraction, targets: np.ndarray, tols: np.ndarray) -> np.ndarray:
    """Vectorised bisection on log(beta) over the binned model; returns betas (B,).

    The bracket expansion is a single vectorised scan over a log grid of betas spanning
    1e-8 .. 1e16 (relative to the offset range). Targets above the scan's largest F fall back
    to the small-beta law ``1 - F ∝ beta**2``; targets below its smallest F start from the
    scan's top and are left to the exact polish (which expands further).
    """
    scan_betas = np.exp(_SCAN_LOG_BETA) / model.scale
    scan_values = model.values(scan_betas)
    # F decreases with beta: the bracket ends at the first scan point at or below the target.
    # Taking the *first* crossing matters: at betas far beyond any target the second-order
    # model degrades (a bin's b² v stops being small) and must not be trusted.
    crossed = scan_values[None, :] <= targets[:, None]
    above = np.where(crossed.any(axis=1), crossed.argmax(axis=1), scan_betas.size)
    betas = np.empty(targets.size)
    tiny = above == 0
    if np.any(tiny):
        deficit0 = max(1.0 - scan_values[0], np.finfo(float).tiny)
        betas[tiny] = scan_betas[0] * np.sqrt((1.0 - targets[tiny]) / deficit0)
    beyond = above == scan_betas.size
    betas[beyond] = scan_betas[-1]
    active = np.flatnonzero(~tiny & ~beyond)
    if active.size == 0:
        return betas
    low = np.log(scan_betas[above[active] - 1])
    high = np.log(scan_betas[np.minimum(above[active], scan_betas.size - 1)])
    goal = targets[active]
    accept = tols[active] * 1e-3
    mid = 0.5 * (low + high)
    for _ in range(64):
        mid = 0.5 * (low + high)
        values = model.values(np.exp(mid))
        done = np.abs(values - goal) <= accept
        if np.all(done | (high - low < 1e-13)):
            break
        too_flat = values > goal  # F still too high: need larger beta
        low = np.where(too_flat & ~done, mid, low)
        high = np.where(~too_flat & ~done, mid, high)
    betas[active] = np.exp(mid)
    return betas


def _polish_exact(
    model: _ExactFraction, target: float, beta: float, tol: float, max_iter: int = 80
) -> tuple[float, float]:
    """Exact check of ``beta``; if ``|F - target| > tol``, safeguarded Newton on log(beta).

    Newton steps use the exact analytic slope and are clamped to a factor e² per step; a step
    that leaves the current bracket is replaced by bisection of the bracket, and an open
    bracket is expanded geometrically (the bracket expansion).
    """
    value = model.value(beta)
    if abs(value - target) <= tol:
        return beta, value
    log_beta = math.log(beta) if beta > 0 else math.log(1e-12)
    low, high = -math.inf, math.inf  # low: F > target side (smaller beta)
    for _ in range(max_iter):
        value, slope = model.value_and_slope(math.exp(log_beta))
        if abs(value - target) <= tol:
            return math.exp(log_beta), value
        if value > target:
            low = log_beta
        else:
            high = log_beta
        step = -(value - target) / slope if slope < 0 else math.nan
        candidate = log_beta + max(-2.0, min(2.0, step)) if math.isfinite(step) else math.nan
        if not (low < candidate < high):
            if math.isfinite(low) and math.isfinite(high):
                candidate = 0.5 * (low + high)
            elif math.isinf(high):
                candidate = log_beta + 2.0
            else:
                candidate = log_beta - 2.0
        if candidate > _MAX_LOG_BETA:
            raise ValueError(
                f"target={target!r} is too close to the minimum effective fraction: even "
                f"beta=1e300 gives F={value!r}; choose a target further above it"
            )
        log_beta = candidate
    raise RuntimeError(
        f"temperature solve did not converge for target={target!r} (last F={value!r}, "
        f"tol={tol!r}); please report this difficulty distribution"
    )


def _solve_fractions(
    offsets: np.ndarray,
    targets: np.ndarray,
    tols: np.ndarray,
    binned: _BinnedFraction | None = None,
    exact: _ExactFraction | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Solve ``F(beta) = target`` for every target (< 1); returns (betas, exact achieved)."""
    binned = binned if binned is not None else _BinnedFraction(offsets)
    exact = exact if exact is not None else _ExactFraction(offsets)
    guesses = _bisect_binned(binned, targets, tols)
    betas = np.empty(targets.size)
    achieved = np.empty(targets.size)
    for i, (target, guess, tol) in enumerate(zip(targets, guesses, tols, strict=True)):
        betas[i], achieved[i] = _polish_exact(exact, float(target), float(guess), float(tol))
    return betas, achieved


def _check_reachable(target: float, floor: float, strategy: str, name: str) -> None:
    if target <= floor:
        raise ValueError(
            f"{name}={target!r} is not above the minimum effective fraction {floor:.6g} that "
            f"this difficulty reaches with strategy {strategy!r} (T -> 0 puts all mass on the "
            f"samples tied at the {'lowest' if strategy == 'easy' else 'highest'} difficulty); "
            f"choose {name} > {floor:.6g}, e.g. {min(1.0, 2 * floor):.6g}"
        )


def solve_inverse_temperature(
    difficulty: object, target: float, strategy: str = "easy", tol: float = 1e-4
) -> float:
    """Inverse temperature ``beta*`` with ``|F(softmax(-/+ beta* d)) - target| <= tol``.

    Parameters
    ----------
    difficulty : array-like of shape (N,)
        Finite per-sample scores.
    target : float
        Target effective fraction in ``(minimum_fraction, 1]``.
    strategy : {"easy", "hard"} or an alias
    tol : float
        Absolute tolerance on the achieved effective fraction.

    Returns
    -------
    float
        ``beta* >= 0``; ``0.0`` for ``target = 1`` and for a constant difficulty (which is
        uniform at every temperature).
    """
    values = _as_difficulty(difficulty)
    goal = check_fraction("target", target)
    tolerance = _check_tol(tol)
    resolved = canonical_strategy(strategy)
    offsets = _favoured_offsets(values, resolved)
    if goal == 1.0 or not np.any(offsets > 0):
        return 0.0
    _check_reachable(goal, _minimum_fraction_of_offsets(offsets), resolved, "target")
    betas, _ = _solve_fractions(offsets, np.array([goal]), np.array([tolerance]))
    return float(betas[0])


def solve_temperature(
    difficulty: object, target: float, strategy: str = "easy", tol: float = 1e-4
) -> float:
    """Temperature ``T* = 1 / beta*`` (``inf`` for ``target = 1``); see
    :func:`solve_inverse_temperature`."""
    beta = solve_inverse_temperature(difficulty, target, strategy, tol)
    return math.inf if beta == 0.0 else 1.0 / beta


def _check_tol(tol: object) -> float:
    try:
        value = float(tol)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"tol must be a number in (0, 0.01], got {tol!r}") from None
    if not (0.0 < value <= 0.01):
        raise ValueError(f"tol must lie in (0, 0.01] (e.g. 1e-4), got {tol!r}")
    return value


# --------------------------------------------------------------------------- pacing


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


def _check_power(power: object) -> float:
    try:
        value = float(power)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"power must be a number > 0, got {power!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"power must be a finite number > 0 (e.g. 2.0 = square root), got {power!r}"
        )
    return value


# --------------------------------------------------------------------------- config and table


@dataclass(frozen=True)
class ScheduleConfig:
    """How the curriculum evolves over training.

    Parameters
    ----------
    strategy : {"easy", "hard"} or an alias
        Stored in canonical form (``"difficulty"`` becomes ``"hard"``).
    pacing : {"linear", "cosine", "root", "step"}
        Target effective fraction over iterations; see :func:`pacing_fraction`.
    initial_fraction : float in (0, 1]
        Target at iteration 0; must exceed the difficulty's :func:`minimum_fraction`.
    warmup_iterations : int >= 0
        Sampling is uniform from this iteration on (0: always uniform).
    power : float > 0
        Root order of the ``root`` pacing.
    n_steps : int >= 1
        Plateaus of the ``step`` pacing.
    grid_size : int >= 2
        Initial table nodes below ``f = 1`` (evenly spaced in the logit coordinate, see the
        module docstring); default 33.
    max_grid_size : int >= grid_size
        Cap on table nodes after adaptive refinement; default 1024.
    tol : float in (0, 0.01]
        Per-node tolerance on ``|F - target|``.
    temperature : float > 0 or None
        Explicit-temperature mode (reference v1 API): sample with this fixed ``T`` before
        ``warmup_iterations`` (uniform after), bypassing pacing and ``initial_fraction``.
        ``inf`` is uniform.
    """

    strategy: str = "easy"
    pacing: str = "linear"
    initial_fraction: float = 0.3
    warmup_iterations: int = 1000
    power: float = 2.0
    n_steps: int = 4
    grid_size: int = DEFAULT_GRID_SIZE
    tol: float = 1e-4
    max_grid_size: int = DEFAULT_MAX_GRID_SIZE
    temperature: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "strategy", canonical_strategy(self.strategy))
        check_choice("pacing", self.pacing, PACINGS)
        object.__setattr__(
            self, "initial_fraction", check_fraction("initial_fraction", self.initial_fraction)
        )
        check_non_negative_int("warmup_iterations", self.warmup_iterations)
        object.__setattr__(self, "warmup_iterations", int(self.warmup_iterations))
        object.__setattr__(self, "power", _check_power(self.power))
        object.__setattr__(self, "n_steps", _check_positive_int("n_steps", self.n_steps))
        object.__setattr__(self, "grid_size", _check_positive_int("grid_size", self.grid_size, 2))
        object.__setattr__(
            self,
            "max_grid_size",
            _check_positive_int("max_grid_size", self.max_grid_size, self.grid_size),
        )
        object.__setattr__(self, "tol", _check_tol(self.tol))
        if self.temperature is not None:
            object.__setattr__(self, "temperature", _check_temperature(self.temperature))

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict (an infinite temperature is written as the string ``"inf"``)."""
        data = asdict(self)
        if data["temperature"] is not None and math.isinf(data["temperature"]):
            data["temperature"] = "inf"
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScheduleConfig:
        """Inverse of :meth:`to_json`; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"schedule config has unknown keys {unknown}; valid keys: {', '.join(sorted(known))}"
            )
        values = dict(data)
        if values.get("temperature") == "inf":
            values["temperature"] = math.inf
        return cls(**values)


def _logit(fraction: np.ndarray, floor: float) -> np.ndarray:
    """Interpolation coordinate ``s = log(1 - f) - log(f - floor)`` (decreasing in f)."""
    gap = np.maximum(fraction - floor, _TINY)
    with np.errstate(divide="ignore"):
        return np.log1p(-fraction) - np.log(gap)


def _inverse_logit(s: np.ndarray, floor: float) -> np.ndarray:
    return floor + (1.0 - floor) / (1.0 + np.exp(s))


@dataclass(frozen=True, eq=False)
class _Nodes:
    """Interpolation nodes: ascending ``s = _logit(achieved)`` and ``log(beta)`` (f < 1 only)."""

    xs: np.ndarray
    ys: np.ndarray
    floor: float
    top_fraction: float  # the last node below 1; above it the sqrt law applies
    top_beta: float
    x_list: list[float]  # the same nodes as Python floats for the scalar path
    y_list: list[float]

    @classmethod
    def of(cls, achieved: np.ndarray, betas: np.ndarray, floor: float) -> _Nodes | None:
        below, node_betas = achieved[:-1], betas[:-1]
        if below.size == 0:
            return None
        # np.interp wants ascending abscissae; s decreases with f
        xs = _logit(below, floor)[::-1].copy()
        ys = np.log(node_betas)[::-1].copy()
        return cls(
            xs=xs,
            ys=ys,
            floor=floor,
            top_fraction=float(below[-1]),
            top_beta=float(node_betas[-1]),
            x_list=xs.tolist(),
            y_list=ys.tolist(),
        )

    def beta(self, fraction: float) -> float:
        """Scalar lookup without numpy calls (same formulas as :meth:`betas`)."""
        if fraction >= 1.0:
            return 0.0
        if fraction > self.top_fraction:
            # above the last node: F ≈ 1 - a beta², i.e. beta ∝ sqrt(1 - f)
            return self.top_beta * math.sqrt((1.0 - fraction) / (1.0 - self.top_fraction))
        s = math.log1p(-fraction) - math.log(max(fraction - self.floor, _TINY))
        xs, ys = self.x_list, self.y_list
        if s <= xs[0]:
            return math.exp(ys[0])
        if s >= xs[-1]:
            return math.exp(ys[-1])
        right = bisect.bisect_right(xs, s)
        x0, x1, y0, y1 = xs[right - 1], xs[right], ys[right - 1], ys[right]
        return math.exp(y0 + (s - x0) * (y1 - y0) / (x1 - x0))

    def betas(self, fraction: np.ndarray) -> np.ndarray:
        out = np.zeros(fraction.shape)
        inner = fraction <= self.top_fraction
        out[inner] = np.exp(np.interp(_logit(fraction[inner], self.floor), self.xs, self.ys))
        top = ~inner & (fraction < 1.0)
        out[top] = self.top_beta * np.sqrt((1.0 - fraction[top]) / (1.0 - self.top_fraction))
        return out


def _interpolate_beta(
    fraction: np.ndarray, achieved: np.ndarray, betas: np.ndarray, floor: float
) -> np.ndarray:
    """Table lookup: linear in log(beta) against ``_logit`` of the achieved fractions."""
    nodes = _Nodes.of(achieved, betas, floor)
    return np.zeros(fraction.shape) if nodes is None else nodes.betas(fraction)


def _readonly(values: object, name: str) -> np.ndarray:
    array = np.array(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"schedule {name} must be a non-empty 1-D array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"schedule {name} must be finite, got {array.tolist()!r}")
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Schedule:
    """The temperature table of one curriculum, built once by :func:`build_schedule`.

    Attributes
    ----------
    config : ScheduleConfig
    targets : ndarray of shape (G,)
        Target fractions, ascending, ending at 1.0.
    betas : ndarray of shape (G,)
        Solved inverse temperatures, descending, ending at 0.0 (uniform).
    achieved : ndarray of shape (G,)
        Exact effective fraction at each beta (``|achieved - targets| <= config.tol``).
    minimum_fraction : float
        ``F`` in the ``T -> 0`` limit (1.0 for a constant difficulty); sets the interpolation
        coordinate.
    n_samples : int or None
        N of the difficulty the table was solved for.
    """

    config: ScheduleConfig
    targets: np.ndarray
    betas: np.ndarray
    achieved: np.ndarray
    minimum_fraction: float = 0.0
    n_samples: int | None = None
    _uniform: bool = field(init=False, repr=False)
    _nodes: _Nodes | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.config, ScheduleConfig):
            raise TypeError(f"config must be a ScheduleConfig, got {type(self.config).__name__}")
        targets = _readonly(self.targets, "targets")
        betas = _readonly(self.betas, "betas")
        achieved = _readonly(self.achieved, "achieved")
        if not (targets.shape == betas.shape == achieved.shape):
            raise ValueError(
                f"schedule targets, betas and achieved must have equal lengths, got "
                f"{targets.size}, {betas.size}, {achieved.size}"
            )
        if targets[-1] != 1.0 or betas[-1] != 0.0 or np.any(np.diff(targets) <= 0):
            raise ValueError(
                "schedule targets must be strictly ascending and end at 1.0 with beta 0.0; "
                f"got targets ending {targets[-3:].tolist()} and betas ending {betas[-3:].tolist()}"
            )
        if np.any(betas < 0) or np.any(np.diff(betas) > 0):
            raise ValueError(
                f"schedule betas must be >= 0 and non-increasing, got {betas.tolist()}"
            )
        object.__setattr__(self, "targets", targets)
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "achieved", achieved)
        object.__setattr__(self, "minimum_fraction", float(self.minimum_fraction))
        if self.n_samples is not None:
            object.__setattr__(self, "n_samples", _check_positive_int("n_samples", self.n_samples))
        object.__setattr__(self, "_uniform", bool(np.all(betas == 0.0)))
        nodes = None if self._uniform else _Nodes.of(achieved, betas, self.minimum_fraction)
        object.__setattr__(self, "_nodes", nodes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Schedule):
            return NotImplemented
        return (
            self.config == other.config
            and self.minimum_fraction == other.minimum_fraction
            and self.n_samples == other.n_samples
            and all(
                np.array_equal(getattr(self, name), getattr(other, name))
                for name in ("targets", "betas", "achieved")
            )
        )

    __hash__ = None  # type: ignore[assignment]  # holds arrays

    @property
    def is_uniform(self) -> bool:
        """True when every iteration samples uniformly (constant difficulty, f0 = 1, T = inf)."""
        return self._uniform

    def target_fraction(self, iteration: object) -> float | np.ndarray:
        """Pacing target ``f(t)``; 1.0 from ``warmup_iterations`` on.

        In explicit-temperature mode: the fixed temperature's effective fraction before
        warmup ends, 1.0 after.
        """
        cfg = self.config
        if cfg.temperature is not None:
            scalar = _scalar_iteration(iteration)
            if scalar is not None:
                return float(self.achieved[0]) if scalar < cfg.warmup_iterations else 1.0
            t = _check_iteration(iteration)
            fraction = np.where(t < cfg.warmup_iterations, self.achieved[0], 1.0)
            return float(fraction) if fraction.ndim == 0 else fraction
        return _pace(
            iteration,
            cfg.pacing,
            cfg.initial_fraction,
            cfg.warmup_iterations,
            cfg.power,
            cfg.n_steps,
        )

    def beta_for_fraction(self, fraction: object) -> float | np.ndarray:
        """Inverse temperature for target fraction(s) ``f``, interpolated from the table.

        Never re-solves. Guarantees ``|F(beta) - f| <= INTERPOLATION_TOL`` for ``f`` in
        ``[initial_fraction, 1]`` (except for a constant difficulty, where beta is 0 and
        sampling is uniform whatever ``f``).

        Parameters
        ----------
        fraction : float or array-like
            Target(s) in ``[targets[0], 1]``.

        Returns
        -------
        float or ndarray
        """
        lowest = 0.0 if self._uniform else float(self.targets[0])
        if isinstance(fraction, (float, np.floating)):  # sampler hot path: no numpy calls
            value = float(fraction)
            if not (lowest <= value <= 1.0 and value > 0.0):
                raise self._fraction_error(fraction, lowest)
            return 0.0 if self._nodes is None else self._nodes.beta(value)
        try:
            values = np.asarray(fraction, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"fraction must be a number in (0, 1], got {fraction!r}") from None
        if not np.all((values >= lowest) & (values <= 1.0) & (values > 0.0)):
            raise self._fraction_error(fraction, lowest)
        if self._nodes is None:
            betas = np.zeros(values.shape)
        else:
            betas = self._nodes.betas(values.reshape(-1)).reshape(values.shape)
        return float(betas) if betas.ndim == 0 else betas

    @staticmethod
    def _fraction_error(fraction: object, lowest: float) -> ValueError:
        return ValueError(
            f"fraction must lie in [{lowest:.6g}, 1] (the table's range: initial_fraction to "
            f"uniform), got {fraction!r}"
        )

    def beta_at(self, iteration: object) -> float | np.ndarray:
        """Inverse temperature at iteration(s) ``t``: 0.0 (uniform) from warmup on."""
        cfg = self.config
        if cfg.temperature is not None:
            scalar = _scalar_iteration(iteration)
            if scalar is not None:
                return 1.0 / cfg.temperature if scalar < cfg.warmup_iterations else 0.0
            t = _check_iteration(iteration)
            beta = np.where(t < cfg.warmup_iterations, 1.0 / cfg.temperature, 0.0)
            return float(beta) if beta.ndim == 0 else beta
        return self.beta_for_fraction(self.target_fraction(iteration))

    def temperature_at(self, iteration: object) -> float | np.ndarray:
        """Temperature ``1 / beta_at(t)`` (``inf`` when uniform)."""
        beta = self.beta_at(iteration)
        if isinstance(beta, float):
            return 1.0 / beta if beta > 0 else math.inf
        safe = np.where(beta > 0, beta, 1.0)
        return np.where(beta > 0, 1.0 / safe, math.inf)

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict (floats round-trip exactly through ``json``)."""
        return {
            "format": SCHEDULE_FORMAT,
            "format_version": SCHEDULE_FORMAT_VERSION,
            "config": self.config.to_json(),
            "n_samples": self.n_samples,
            "minimum_fraction": self.minimum_fraction,
            "targets": [float(x) for x in self.targets],
            "betas": [float(x) for x in self.betas],
            "achieved": [float(x) for x in self.achieved],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Schedule:
        """Rebuild a schedule written by :meth:`to_json` (validated)."""
        if not isinstance(data, Mapping):
            raise TypeError(f"schedule JSON must be an object, got {type(data).__name__}")
        if data.get("format") != SCHEDULE_FORMAT:
            raise ValueError(
                f"not a schedule: format is {data.get('format')!r}, expected {SCHEDULE_FORMAT!r}"
            )
        if data.get("format_version") != SCHEDULE_FORMAT_VERSION:
            raise ValueError(
                f"schedule format_version {data.get('format_version')!r} is not supported "
                f"(this code reads {SCHEDULE_FORMAT_VERSION}); rebuild the artifact"
            )
        missing = [
            key
            for key in ("config", "targets", "betas", "achieved", "minimum_fraction")
            if key not in data
        ]
        if missing:
            raise ValueError(f"schedule JSON is missing keys {missing}; rebuild the artifact")
        return cls(
            config=ScheduleConfig.from_json(data["config"]),
            targets=np.asarray(data["targets"], dtype=np.float64),
            betas=np.asarray(data["betas"], dtype=np.float64),
            achieved=np.asarray(data["achieved"], dtype=np.float64),
            minimum_fraction=float(data["minimum_fraction"]),
            n_samples=data.get("n_samples"),
        )


def _uniform_schedule(config: ScheduleConfig, floor: float, n_samples: int) -> Schedule:
    one = np.ones(1)
    return Schedule(config, one, np.zeros(1), one, minimum_fraction=floor, n_samples=n_samples)


def _node_tolerances(nodes: np.ndarray, tol: float) -> np.ndarray:
    """Per-node tolerance: tighter than neighbour spacing so achieved stays ordered."""
    spacing = np.diff(np.concatenate([nodes, [1.0]]))
    left = np.concatenate([[np.inf], np.diff(nodes)])
    return np.minimum(tol, 0.1 * np.minimum(spacing, left))


def _uncertified_intervals(
    achieved: np.ndarray, betas: np.ndarray, floor: float, binned: _BinnedFraction
) -> np.ndarray:
    """Indices ``j`` of node intervals ``[j, j+1]`` whose interpolation may exceed the bound."""
    candidates = np.flatnonzero(np.diff(achieved) > INTERPOLATION_TOL)
    if candidates.size == 0:
        return candidates
    s = _logit(achieved, floor)
    weights = np.array([0.25, 0.5, 0.75])
    probe_s = s[candidates, None] + (s[candidates + 1, None] - s[candidates, None]) * weights
    probe_f = _inverse_logit(probe_s, floor).reshape(-1)
    table_achieved = np.concatenate([achieved, [1.0]])
    table_betas = np.concatenate([betas, [0.0]])
    probe_beta = _interpolate_beta(probe_f, table_achieved, table_betas, floor)
    error = np.abs(binned.values(probe_beta) - probe_f).reshape(candidates.size, weights.size)
    return candidates[error.max(axis=1) > _PROBE_TOL]


def build_schedule(
    difficulty: object, config: ScheduleConfig | None = None, valid: object = None
) -> Schedule:
    """Solve the temperature table of a curriculum once (see the module docstring).

    Parameters
    ----------
    difficulty : array-like of shape (N,)
        Finite per-sample scores (normally in ``[0, 1]``); the same values the sampler will use.
        Entries of excluded samples (``valid`` False) are ignored.
    config : ScheduleConfig, optional
        Defaults to ``ScheduleConfig()``.
    valid : array-like of shape (N,), bool, optional
        True for the samples that can be drawn. The effective fraction and the temperature
        table are then those of the ``n_valid`` drawable samples: ``F`` counts distinct valid
        samples in ``n_valid`` draws, so uniform sampling over the valid samples gives exactly
        1, and the schedule's ``n_samples`` is ``n_valid``. ``None`` (or all True): all N.

    Returns
    -------
    Schedule
        With ``|F(beta_for_fraction(f)) - f| <= INTERPOLATION_TOL`` on ``[initial_fraction, 1]``.
    """
    cfg = config if config is not None else ScheduleConfig()
    if not isinstance(cfg, ScheduleConfig):
        raise TypeError(f"config must be a ScheduleConfig, got {type(cfg).__name__}")
    raw = np.asarray(difficulty)
    if valid is not None and raw.ndim == 1:
        mask = check_valid_mask("valid", valid, raw.shape[0])
        if mask is not None:
            raw = raw[mask]
    values = _as_difficulty(raw)
    offsets = _favoured_offsets(values, cfg.strategy)
    floor = _minimum_fraction_of_offsets(offsets)
    n_samples = values.size
    if floor >= 1.0:
        warnings.warn(
            f"difficulty is constant (all {n_samples} scores equal {float(values[0])!r}); there is no "
            f"curriculum to schedule, so sampling is uniform at every iteration",
            UserWarning,
            stacklevel=2,
        )
        return _uniform_schedule(cfg, 1.0, n_samples)
    exact = _ExactFraction(offsets)
    if cfg.temperature is not None:
        return _explicit_schedule(cfg, exact, floor)
    f0 = cfg.initial_fraction
    if f0 == 1.0:
        return _uniform_schedule(cfg, floor, n_samples)
    _check_reachable(f0, floor, cfg.strategy, "initial_fraction")
    binned = _BinnedFraction(offsets)
    top = max(f0, 1.0 - _TOP_GAP)
    s_nodes = np.linspace(_logit(np.array(f0), floor), _logit(np.array(top), floor), cfg.grid_size)
    nodes = np.unique(np.concatenate([[f0], _inverse_logit(s_nodes[1:-1], floor), [top]]))
    betas, achieved = _solve_fractions(
        offsets, nodes, _node_tolerances(nodes, cfg.tol), binned, exact
    )
    while True:
        bad = _uncertified_intervals(achieved, betas, floor, binned)
        if bad.size == 0:
            break
        if nodes.size + bad.size > cfg.max_grid_size:
            warnings.warn(
                f"schedule table reached max_grid_size={cfg.max_grid_size} with {bad.size} "
                f"intervals not certified to |F - f| <= {INTERPOLATION_TOL}; raise max_grid_size",
                RuntimeWarning,
                stacklevel=2,
            )
            break
        s = _logit(achieved, floor)
        new_nodes = _inverse_logit(0.5 * (s[bad] + s[bad + 1]), floor)
        merged = np.unique(np.concatenate([nodes, new_nodes]))
        is_new = np.isin(merged, new_nodes) & ~np.isin(merged, nodes)
        new_betas, new_achieved = _solve_fractions(
            offsets, merged[is_new], _node_tolerances(merged, cfg.tol)[is_new], binned, exact
        )
        betas = _merge(merged, is_new, nodes, betas, new_betas)
        achieved = _merge(merged, is_new, nodes, achieved, new_achieved)
        nodes = merged
    keep = _strictly_ordered(achieved, betas)
    return Schedule(
        cfg,
        targets=np.concatenate([nodes[keep], [1.0]]),
        betas=np.concatenate([betas[keep], [0.0]]),
        achieved=np.concatenate([achieved[keep], [1.0]]),
        minimum_fraction=floor,
        n_samples=n_samples,
    )


def _merge(
    merged: np.ndarray,
    is_new: np.ndarray,
    old_nodes: np.ndarray,
    old_values: np.ndarray,
    new_values: np.ndarray,
) -> np.ndarray:
    out = np.empty(merged.size)
    out[is_new] = new_values
    out[~is_new] = old_values[np.searchsorted(old_nodes, merged[~is_new])]
    return out


def _strictly_ordered(achieved: np.ndarray, betas: np.ndarray) -> np.ndarray:
    """Mask of nodes keeping achieved strictly ascending and betas strictly descending.

    Per-node tolerances are far below node spacing, so this drops nothing in practice; it only
    guards the interpolation against a degenerate pair.
    """
    keep = np.ones(achieved.size, dtype=bool)
    last_f, last_beta = -np.inf, np.inf
    for i, (f, beta) in enumerate(zip(achieved, betas, strict=True)):
        if f > last_f and beta < last_beta and f < 1.0:
            last_f, last_beta = f, beta
        else:
            keep[i] = False
    return keep


def _explicit_schedule(cfg: ScheduleConfig, exact: _ExactFraction, floor: float) -> Schedule:
    """Explicit-temperature mode: one fixed beta before warmup, uniform after."""
    assert cfg.temperature is not None
    beta = 1.0 / cfg.temperature
    fraction = exact.value(beta) if beta > 0 else 1.0
    if beta == 0.0 or fraction >= 1.0:
        return _uniform_schedule(cfg, floor, exact.n_samples)
    return Schedule(
        cfg,
        targets=np.array([fraction, 1.0]),
        betas=np.array([beta, 0.0]),
        achieved=np.array([fraction, 1.0]),
        minimum_fraction=floor,
        n_samples=exact.n_samples,
    )
