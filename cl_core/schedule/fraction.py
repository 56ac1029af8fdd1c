"""The effective fraction ``F``: curriculum probabilities, ``F(p)``, ``F(beta)`` and its models.

Everything works with the inverse temperature ``beta = 1 / T`` so that uniform sampling
(``T = inf``) is the finite point ``beta = 0``. For a difficulty vector ``d`` of length ``N``,
``easy`` (prototypes first) is ``p_i ∝ exp(-beta * d_i)`` and ``hard`` (the reference's
``difficulty``) ``p_i ∝ exp(+beta * d_i)``. Both are the same softmax over the offsets from the
favoured end, ``e_i = d_i - min(d)`` (easy) or ``e_i = max(d) - d_i`` (hard): ``exp(-beta * e)``
is ``<= 1`` with at least one entry equal to 1, the max-subtracted, overflow-free softmax.

:func:`effective_fraction` is the design's
``F(p) = sum_i (1 - (1 - p_i)^N) / (N * (1 - (1 - 1/N)^N))``, evaluated in float64 as
``-expm1(N * log1p(-p_i))``; it is 1 for uniform sampling, decreases monotonically as ``beta``
grows and tends to :func:`minimum_fraction` as ``beta -> inf``. The solver evaluates ``F(beta)``
through two models: :class:`ExactFraction` (all N offsets, in blocks, with its analytic slope) and
:class:`BinnedFraction` (geometric bins with a second-order correction, ``O(#bins)`` per
evaluation).
"""

from __future__ import annotations

import math

import numpy as np

from cl_core.schedule.checks import as_difficulty, canonical_strategy, check_beta

_BIN_RATIO = 2e-3  # geometric bin growth of the binned model
_BIN_FLOOR = 1e-7  # offsets below this fraction of the range share one bin
_EXACT_CHUNK = 1 << 22  # rows per block in exact evaluations (bounds temporary memory)


def _favoured_offsets(difficulty: np.ndarray, strategy: str) -> np.ndarray:
    """Offsets ``e >= 0`` from the favoured end: the softmax is ``exp(-beta * e)``."""
    if strategy == "easy":
        return difficulty - difficulty.min()
    return difficulty.max() - difficulty


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
    probs = as_difficulty(p, name="p")
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
    values = as_difficulty(difficulty)
    beta_value = check_beta(beta)
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
    return _favoured_offsets(as_difficulty(difficulty), canonical_strategy(strategy))


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
    values = as_difficulty(difficulty)
    beta_value = check_beta(beta)
    offsets = _favoured_offsets(values, canonical_strategy(strategy))
    if math.isinf(beta_value):
        return minimum_fraction_of_offsets(offsets)
    return ExactFraction(offsets).value(beta_value)


def minimum_fraction_of_offsets(offsets: np.ndarray) -> float:
    """:func:`minimum_fraction` of offsets from :func:`favoured_offsets` (zero = favoured)."""
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
    values = as_difficulty(difficulty)
    return minimum_fraction_of_offsets(_favoured_offsets(values, canonical_strategy(strategy)))


class ExactFraction:
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


class BinnedFraction:
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
