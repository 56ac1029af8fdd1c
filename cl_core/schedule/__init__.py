"""Stage 3, the temperature schedule: effective fraction, pacing, solver and the schedule table.

:func:`build_schedule` solves, once, the inverse temperatures that make the effective fraction
follow the pacing; a :class:`Schedule` then interpolates them and never re-solves. Imports numpy
and the standard library only: :mod:`cl_core.sampler` uses it at training time.
"""

from __future__ import annotations

from cl_core.schedule.checks import (
    STRATEGIES,
    STRATEGY_ALIASES,
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
from cl_core.schedule.pacing import PACINGS, canonical_pacing, pacing_fraction
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
