"""How ``get_curriculum_weights`` maps both reference call styles onto ``cl_core.schedule``.

The schedule's temperature table is solved once per strategy
(:func:`cl_core.schedule.build_schedule`) and served by :class:`cl_core.sampler.Curriculum`;
this module holds the compat-only parts: the reachable starting fraction, a table re-paced over
another warmup, and the positional call forms of the reference's two versions.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

from cl_core.schedule import Schedule, minimum_fraction

__all__ = ["CurriculumWarning", "positional_style", "reachable_start", "with_warmup"]


class CurriculumWarning(UserWarning):
    """A request was adjusted to what the data allows (e.g. an unreachable initial fraction)."""


def reachable_start(difficulty: np.ndarray, wanted: float, strategy: str) -> float:
    """``wanted`` (the initial effective fraction), raised just above the lowest reachable one.

    With all mass on the samples tied at the favoured extreme (one per cluster after min-max),
    the effective fraction cannot go below :func:`cl_core.schedule.minimum_fraction`; a smaller
    target (small datasets with many clusters) starts there instead, with a
    :class:`CurriculumWarning`.
    """
    floor = minimum_fraction(difficulty, strategy)
    if wanted > floor or floor >= 1.0:
        return wanted
    start = floor + 0.01 * (1.0 - floor)
    warnings.warn(
        f"initial_effective_percentage={wanted!r} is below the smallest effective fraction "
        f"this difficulty can reach with strategy {strategy!r}, {floor:.4g} (T -> 0 puts all "
        f"mass on the samples tied at the {'lowest' if strategy == 'easy' else 'highest'} "
        f"difficulty: one per cluster after min-max); starting from {start:.4g} instead. "
        f"Use fewer clusters or more samples to start lower",
        CurriculumWarning,
        stacklevel=3,
    )
    return start


def with_warmup(schedule: Schedule, warmup: int) -> Schedule:
    """The same temperature table paced over ``warmup`` iterations (no re-solve)."""
    config = dataclasses.replace(schedule.config, warmup_iterations=warmup)
    return dataclasses.replace(schedule, config=config)


def positional_style(
    args: tuple[Any, ...],
    temperature: Any,
    strategy: Any,
    current_iteration: Any,
    warmup_iterations: Any,
) -> tuple[Any, Any, Any, Any]:
    """Map positional arguments of either reference version onto the keywords.

    A number first is v1's ``(temperature, strategy)``; a string first is v2's
    ``(strategy, current_iteration, warmup_iterations)``.

    Returns
    -------
    (temperature, strategy, current_iteration, warmup_iterations)
    """
    if not args:
        return temperature, strategy, current_iteration, warmup_iterations
    names: tuple[str, ...]
    if isinstance(args[0], str):
        names = ("strategy", "current_iteration", "warmup_iterations")
    else:
        names = ("temperature", "strategy")
    if len(args) > len(names):
        raise TypeError(
            f"get_curriculum_weights takes at most {len(names)} positional arguments in this "
            f"style ({', '.join(names)}), got {len(args)}; pass keywords instead"
        )
    given = dict(
        temperature=temperature,
        strategy=strategy,
        current_iteration=current_iteration,
        warmup_iterations=warmup_iterations,
    )
    for name, value in zip(names, args, strict=False):
        if given[name] is not None:
            raise TypeError(f"get_curriculum_weights got {name} both by position and by keyword")
        given[name] = value
    return (
        given["temperature"],
        given["strategy"],
        given["current_iteration"],
        given["warmup_iterations"],
    )
