""":class:`ScheduleConfig`: how the curriculum evolves over training (validated, JSON round trip)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from cl_core.schedule.checks import (
    canonical_strategy,
    check_power,
    check_temperature,
    check_tol,
)
from cl_core.schedule.pacing import canonical_pacing
from cl_core.validation import check_fraction, check_int, check_non_negative_int

DEFAULT_GRID_SIZE = 33
"""Initial number of table nodes below ``f = 1`` (evenly spaced in the logit coordinate)."""
DEFAULT_MAX_GRID_SIZE = 1024
"""Upper bound on table nodes below ``f = 1`` after adaptive refinement."""


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
        Initial table nodes below ``f = 1`` (evenly spaced in the logit coordinate, see
        :mod:`cl_core.schedule.solver`); default 33.
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
        canonical_pacing(self.pacing)
        object.__setattr__(
            self, "initial_fraction", check_fraction("initial_fraction", self.initial_fraction)
        )
        check_non_negative_int("warmup_iterations", self.warmup_iterations)
        object.__setattr__(self, "warmup_iterations", int(self.warmup_iterations))
        object.__setattr__(self, "power", check_power(self.power))
        object.__setattr__(self, "n_steps", check_int("n_steps", self.n_steps, 1))
        object.__setattr__(self, "grid_size", check_int("grid_size", self.grid_size, 2))
        object.__setattr__(
            self,
            "max_grid_size",
            check_int("max_grid_size", self.max_grid_size, self.grid_size),
        )
        object.__setattr__(self, "tol", check_tol(self.tol))
        if self.temperature is not None:
            object.__setattr__(self, "temperature", check_temperature(self.temperature))

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
