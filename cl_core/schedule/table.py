"""The schedule table (:class:`Schedule`): lookups by iteration or fraction, JSON round trip.

A :class:`Schedule` holds the solved nodes (target, inverse temperature, achieved fraction) and
never re-solves: ``beta(f)`` is interpolated linearly in ``log beta`` against the logit
coordinate ``s(f) = log(1 - f) - log(f - f_min)`` (:class:`_Nodes`), with the ``beta ∝
sqrt(1 - f)`` law above the last node below 1. Near ``f = 1``, ``F ≈ 1 - a * beta**2`` so
``log beta`` is linear in ``log(1 - f)``; near ``f_min`` it is close to linear in
``-log(f - f_min)``; so few nodes are needed. Scalar lookups (the sampler's hot path) use no
numpy calls. Built by :func:`cl_core.schedule.solver.build_schedule`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cl_core.schedule.checks import check_iteration, scalar_iteration
from cl_core.schedule.config import ScheduleConfig
from cl_core.schedule.pacing import pace
from cl_core.validation import check_int

SCHEDULE_FORMAT = "cl-curriculum/schedule"
SCHEDULE_FORMAT_VERSION = 1

_TINY = float(np.finfo(np.float64).tiny)


def logit(fraction: np.ndarray, floor: float) -> np.ndarray:
    """Interpolation coordinate ``s = log(1 - f) - log(f - floor)`` (decreasing in f)."""
    gap = np.maximum(fraction - floor, _TINY)
    with np.errstate(divide="ignore"):
        return np.log1p(-fraction) - np.log(gap)


def inverse_logit(s: np.ndarray, floor: float) -> np.ndarray:
    return floor + (1.0 - floor) / (1.0 + np.exp(s))


@dataclass(frozen=True, eq=False)
class _Nodes:
    """Interpolation nodes: ascending ``s = logit(achieved)`` and ``log(beta)`` (f < 1 only)."""

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
        xs = logit(below, floor)[::-1].copy()
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
        out[inner] = np.exp(np.interp(logit(fraction[inner], self.floor), self.xs, self.ys))
        top = ~inner & (fraction < 1.0)
        out[top] = self.top_beta * np.sqrt((1.0 - fraction[top]) / (1.0 - self.top_fraction))
        return out


def interpolate_beta(
    fraction: np.ndarray, achieved: np.ndarray, betas: np.ndarray, floor: float
) -> np.ndarray:
    """Table lookup: linear in log(beta) against ``logit`` of the achieved fractions."""
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
            object.__setattr__(self, "n_samples", check_int("n_samples", self.n_samples, 1))
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
            scalar = scalar_iteration(iteration)
            if scalar is not None:
                return float(self.achieved[0]) if scalar < cfg.warmup_iterations else 1.0
            t = check_iteration(iteration)
            fraction = np.where(t < cfg.warmup_iterations, self.achieved[0], 1.0)
            return float(fraction) if fraction.ndim == 0 else fraction
        return pace(
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
            scalar = scalar_iteration(iteration)
            if scalar is not None:
                return 1.0 / cfg.temperature if scalar < cfg.warmup_iterations else 0.0
            t = check_iteration(iteration)
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
