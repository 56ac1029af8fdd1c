"""Curriculum maths: effective fraction, temperature solver, pacing and the schedule table.

Imports numpy and the standard library only: :mod:`cl_core.sampler` imports this package at
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

Modules
-------
==============  ==============================================================================
``checks``      strategy and pacing vocabularies, :func:`canonical_strategy`,
                :func:`inverse_temperature`, argument checks
``fraction``    :func:`effective_fraction`, :func:`curriculum_probabilities`,
                :func:`effective_fraction_at`, :func:`minimum_fraction`; the exact and binned
                models of ``F(beta)``
``pacing``      :func:`pacing_fraction` (target fraction per iteration)
``config``      :class:`ScheduleConfig`
``table``       :class:`Schedule`: the interpolated table, lookups, JSON round trip
``solver``      :func:`solve_inverse_temperature`, :func:`solve_temperature`, and
                :func:`build_schedule` (node placement, solve, certification)
==============  ==============================================================================
"""

from __future__ import annotations

from cl_core.schedule.checks import (
    PACINGS,
    STRATEGIES,
    STRATEGY_ALIASES,
    canonical_pacing,
    canonical_strategy,
    inverse_temperature,
)
from cl_core.schedule.config import DEFAULT_GRID_SIZE, DEFAULT_MAX_GRID_SIZE, ScheduleConfig
from cl_core.schedule.fraction import (
    curriculum_probabilities,
    effective_fraction,
    effective_fraction_at,
    favoured_offsets,
    minimum_fraction,
    probabilities_from_offsets,
)
from cl_core.schedule.pacing import pacing_fraction
from cl_core.schedule.solver import (
    INTERPOLATION_TOL,
    build_schedule,
    solve_inverse_temperature,
    solve_temperature,
)
from cl_core.schedule.table import SCHEDULE_FORMAT, SCHEDULE_FORMAT_VERSION, Schedule

__all__ = [
    "DEFAULT_GRID_SIZE",
    "DEFAULT_MAX_GRID_SIZE",
    "INTERPOLATION_TOL",
    "PACINGS",
    "SCHEDULE_FORMAT",
    "SCHEDULE_FORMAT_VERSION",
    "STRATEGIES",
    "STRATEGY_ALIASES",
    "Schedule",
    "ScheduleConfig",
    "build_schedule",
    "canonical_pacing",
    "canonical_strategy",
    "curriculum_probabilities",
    "effective_fraction",
    "effective_fraction_at",
    "favoured_offsets",
    "inverse_temperature",
    "minimum_fraction",
    "pacing_fraction",
    "probabilities_from_offsets",
    "solve_inverse_temperature",
    "solve_temperature",
]
