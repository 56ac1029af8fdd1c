"""The temperature solver and the table solve (:func:`build_schedule`).

1. A *binned* model of ``F`` (:class:`~cl_core.schedule.fraction.BinnedFraction`) compresses the
   offsets into geometric bins (ratio ``1 + 2e-3``) holding count, mean and variance, and
   evaluates ``F`` with a second-order (variance) correction, to about 1e-12 of the exact ``F``
   at ``O(#bins)`` instead of ``O(N)`` per evaluation. The temperature of every grid target is
   found by vectorised bisection on ``log beta`` over this model (:func:`bisect_binned`) after a
   vectorised bracket scan; each bracket ends at the *first* scan point at or below its target,
   because at betas far beyond any target a bin's ``beta² v`` stops being small and the model is
   no longer trusted.
2. Each solved ``beta`` is then checked with the *exact* ``F`` over all ``N`` samples; the few
   that miss the tolerance are polished with a safeguarded Newton / bisection iteration on
   ``log beta`` using the exact ``F`` and its analytic slope (:func:`polish_exact`).
   ``Schedule.achieved`` holds exact values.
3. Interpolation (:mod:`cl_core.schedule.table`): ``beta(f)`` is linear in ``log beta`` against
   ``s(f) = log(1 - f) - log(f - f_min)`` at the achieved fractions; above the last node below 1
   (``f = 1 - 2.5e-4``) the asymptotic law ``beta ∝ sqrt(1 - f)`` applies.
4. Certification. ``F`` and the interpolant are monotone, so an interval whose nodes are within
   ``INTERPOLATION_TOL`` (1e-3) of each other is certified outright. Every other interval is
   probed at three interior points with the binned model and split at its midpoint (in ``s``)
   until all probes are within half of ``INTERPOLATION_TOL``. ``grid_size`` (default 33) is the
   number of initial nodes below ``f = 1``; refinement adds nodes up to ``max_grid_size``.

Cost: one exact ``O(N)`` evaluation per node dominates; about 1 s at N = 1.28 M on one core. A
constant difficulty has no curriculum: the schedule is uniform at every iteration (with a
``UserWarning``); no NaN anywhere.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from cl_core.schedule.checks import as_difficulty, canonical_strategy, check_tol
from cl_core.schedule.config import ScheduleConfig
from cl_core.schedule.fraction import (
    BinnedFraction,
    ExactFraction,
    favoured_offsets,
    minimum_fraction_of_offsets,
)
from cl_core.schedule.table import Schedule, interpolate_beta, inverse_logit, logit
from cl_core.validation import check_fraction, check_valid_mask

INTERPOLATION_TOL = 1e-3
"""Guaranteed bound on ``|F(beta_for_fraction(f)) - f|`` for ``f`` in ``[initial_fraction, 1]``."""

_TOP_GAP = 2.5e-4  # the last node below 1 sits at f = 1 - _TOP_GAP; above it: sqrt law
_PROBE_TOL = 0.5 * INTERPOLATION_TOL  # probes must be well inside the bound (margin between probes)
_SCAN_LOG_BETA = np.linspace(math.log(1e-8), math.log(1e16), 97)  # bracket scan (scaled beta)
_MAX_LOG_BETA = math.log(1e300)


def bisect_binned(model: BinnedFraction, targets: np.ndarray, tols: np.ndarray) -> np.ndarray:
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


def polish_exact(
    model: ExactFraction, target: float, beta: float, tol: float, max_iter: int = 80
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
    binned: BinnedFraction | None = None,
    exact: ExactFraction | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Solve ``F(beta) = target`` for every target (< 1); returns (betas, exact achieved)."""
    binned = binned if binned is not None else BinnedFraction(offsets)
    exact = exact if exact is not None else ExactFraction(offsets)
    guesses = bisect_binned(binned, targets, tols)
    betas = np.empty(targets.size)
    achieved = np.empty(targets.size)
    for i, (target, guess, tol) in enumerate(zip(targets, guesses, tols, strict=True)):
        betas[i], achieved[i] = polish_exact(exact, float(target), float(guess), float(tol))
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
    values = as_difficulty(difficulty)
    goal = check_fraction("target", target)
    tolerance = check_tol(tol)
    resolved = canonical_strategy(strategy)
    offsets = favoured_offsets(values, resolved)
    if goal == 1.0 or not np.any(offsets > 0):
        return 0.0
    _check_reachable(goal, minimum_fraction_of_offsets(offsets), resolved, "target")
    betas, _ = _solve_fractions(offsets, np.array([goal]), np.array([tolerance]))
    return float(betas[0])


def solve_temperature(
    difficulty: object, target: float, strategy: str = "easy", tol: float = 1e-4
) -> float:
    """Temperature ``T* = 1 / beta*`` (``inf`` for ``target = 1``); see
    :func:`solve_inverse_temperature`."""
    beta = solve_inverse_temperature(difficulty, target, strategy, tol)
    return math.inf if beta == 0.0 else 1.0 / beta


def _uniform_schedule(config: ScheduleConfig, floor: float, n_samples: int) -> Schedule:
    one = np.ones(1)
    return Schedule(config, one, np.zeros(1), one, minimum_fraction=floor, n_samples=n_samples)


def _node_tolerances(nodes: np.ndarray, tol: float) -> np.ndarray:
    """Per-node tolerance: tighter than neighbour spacing so achieved stays ordered."""
    spacing = np.diff(np.concatenate([nodes, [1.0]]))
    left = np.concatenate([[np.inf], np.diff(nodes)])
    return np.minimum(tol, 0.1 * np.minimum(spacing, left))


def _uncertified_intervals(
    achieved: np.ndarray, betas: np.ndarray, floor: float, binned: BinnedFraction
) -> np.ndarray:
    """Indices ``j`` of node intervals ``[j, j+1]`` whose interpolation may exceed the bound."""
    candidates = np.flatnonzero(np.diff(achieved) > INTERPOLATION_TOL)
    if candidates.size == 0:
        return candidates
    s = logit(achieved, floor)
    weights = np.array([0.25, 0.5, 0.75])
    probe_s = s[candidates, None] + (s[candidates + 1, None] - s[candidates, None]) * weights
    probe_f = inverse_logit(probe_s, floor).reshape(-1)
    table_achieved = np.concatenate([achieved, [1.0]])
    table_betas = np.concatenate([betas, [0.0]])
    probe_beta = interpolate_beta(probe_f, table_achieved, table_betas, floor)
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
    values = as_difficulty(raw)
    offsets = favoured_offsets(values, cfg.strategy)
    floor = minimum_fraction_of_offsets(offsets)
    n_samples = values.size
    if floor >= 1.0:
        warnings.warn(
            f"difficulty is constant (all {n_samples} scores equal {float(values[0])!r}); there is no "
            f"curriculum to schedule, so sampling is uniform at every iteration",
            UserWarning,
            stacklevel=2,
        )
        return _uniform_schedule(cfg, 1.0, n_samples)
    exact = ExactFraction(offsets)
    if cfg.temperature is not None:
        return _explicit_schedule(cfg, exact, floor)
    f0 = cfg.initial_fraction
    if f0 == 1.0:
        return _uniform_schedule(cfg, floor, n_samples)
    _check_reachable(f0, floor, cfg.strategy, "initial_fraction")
    binned = BinnedFraction(offsets)
    top = max(f0, 1.0 - _TOP_GAP)
    s_nodes = np.linspace(logit(np.array(f0), floor), logit(np.array(top), floor), cfg.grid_size)
    nodes = np.unique(np.concatenate([[f0], inverse_logit(s_nodes[1:-1], floor), [top]]))
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
        s = logit(achieved, floor)
        new_nodes = inverse_logit(0.5 * (s[bad] + s[bad + 1]), floor)
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


def _explicit_schedule(cfg: ScheduleConfig, exact: ExactFraction, floor: float) -> Schedule:
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
