"""The A/B run's settings: the arms, :class:`ABConfig` and the checks of arms and seeds.

Arms: ``easy`` (the artifact's difficulty and schedule, prototypes first), ``uniform`` (uniform
draws with replacement, as many), ``hard`` (the same schedule, hardest first) and ``shuffled`` (the
same schedule over a seeded permutation of the difficulty: ``easy`` minus ``shuffled`` is what the
ordering itself contributes). Model initialisation, index streams and the permutation all derive
from ``seed``, the same for every arm.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cl_core.ab.objectives import OBJECTIVES, RECIPES
from cl_core.validation import check_choice, check_int

ARMS = ("easy", "uniform", "hard", "shuffled")
OPTIMIZERS = ("adam", "sgd", "adamw")
_MAE_ONLY = ("knn_shots", "knn_draws", "knn_pool")  # left out of a supervised config's JSON


def check_arms(arms: object) -> tuple[str, ...]:
    """The arms as a tuple of known, distinct names (in the order given)."""
    if isinstance(arms, str):
        arms = tuple(part.strip() for part in arms.split(",") if part.strip())
    if not isinstance(arms, (tuple, list)) or not arms:
        raise ValueError(f"arms must be a non-empty list of {', '.join(ARMS)}; got {arms!r}")
    for arm in arms:
        check_choice("arm", arm, ARMS)
    if len(set(arms)) != len(arms):
        raise ValueError(f"arms must be distinct, got {list(arms)}; e.g. {','.join(ARMS)}")
    return tuple(str(arm) for arm in arms)


def check_seeds(seeds: object) -> tuple[int, ...]:
    """``seeds`` as distinct non-negative ints; an int ``n`` means ``0 .. n-1``."""
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        count = check_int("seeds", seeds, 1, "; run at least 1 seed (3 or more for a verdict)")
        return tuple(range(count))
    if not isinstance(seeds, (tuple, list)) or not seeds:
        raise ValueError(f"seeds must be a count >= 1 or a non-empty list of seeds, got {seeds!r}")
    values = tuple(
        check_int("seed", seed, 0, "; seeds are non-negative integers") for seed in seeds
    )
    if len(set(values)) != len(values):
        raise ValueError(f"seeds must be distinct, got {list(values)}")
    return values


FROM_RECIPE: Any = None
"""The default of the fields that the objective's recipe fills in (``cl_core.ab.objectives.RECIPES``);
typed ``Any`` so that the fields keep the type they have once the config exists."""


@dataclass(frozen=True)
class ABConfig:
    """Everything that determines one arm's curve for a given seed (seeds are not part of it).

    Parameters
    ----------
    arms : tuple of str
        Subset of :data:`ARMS`; the verdict needs ``easy`` and ``uniform``.
    steps : int >= 1, optional
        Optimiser steps per run (the same for every arm). None: the objective's recipe
        (:data:`cl_core.ab.objectives.RECIPES`), as for ``batch_size``, ``lr``, ``optimizer``
        and ``weight_decay``.
    batch_size : int >= 1, optional
        Samples per step; every arm draws ``steps * batch_size`` indices.
    eval_every : int >= 1
        Held-out accuracy is measured at steps 0, eval_every, 2 eval_every, ... and at ``steps``.
        None: ``steps // 20`` (``mae``: ``steps // 10``), at least 1.
    lr : float > 0, optional
        (Peak) learning rate.
    optimizer : {"adam", "sgd", "adamw"}, optional
        ``sgd`` uses momentum 0.9; ``adamw`` is MAE's recipe (betas (0.9, 0.95), 5% linear
        warmup, cosine decay; see :mod:`cl_core.ab.objectives`).
    weight_decay : float >= 0, optional
    warmup_fraction : float in (0, 1] or None
        The curricula's warmup as a fraction of ``steps`` (uniform afterwards); None keeps the
        artifact's ``warmup_iterations``.
    holdout_fraction : float in (0, 0.9]
        Share of the (unmasked) rows held out for evaluation, stratified by class.
    split_seed : int >= 0
        Seed of the held-out split (fixed across arms and seeds).
    refresh_every : int >= 1
        The curriculum samplers' probability refresh interval, in steps.
    objective : {"supervised", "mae"}
        What every arm trains for (:mod:`cl_core.ab.objectives`); the task must build a model
        for it.
    knn_shots, knn_draws, knn_pool : int
        ``mae``'s reading: 1-NN accuracy with ``knn_shots`` labelled rows per class, averaged
        over ``knn_draws`` banks drawn from a fixed pool of ``knn_pool`` training rows per class
        (:mod:`cl_core.ab.probe`).
    """

    arms: tuple[str, ...] = ARMS
    steps: int = FROM_RECIPE
    batch_size: int = FROM_RECIPE
    eval_every: int = 30
    lr: float = FROM_RECIPE
    optimizer: str = FROM_RECIPE
    weight_decay: float = FROM_RECIPE
    warmup_fraction: float | None = 0.5
    holdout_fraction: float = 0.2
    split_seed: int = 0
    refresh_every: int = 5
    objective: str = "supervised"
    knn_shots: int = 5
    knn_draws: int = 50
    knn_pool: int = 30

    def __post_init__(self) -> None:
        check_choice("objective", self.objective, OBJECTIVES)
        recipe = RECIPES[self.objective]
        for name in ("steps", "batch_size", "lr", "optimizer", "weight_decay"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(recipe, name))
        object.__setattr__(self, "arms", check_arms(self.arms))
        object.__setattr__(self, "steps", check_int("steps", self.steps, 1, "; e.g. 600"))
        object.__setattr__(
            self, "batch_size", check_int("batch_size", self.batch_size, 1, "; e.g. 32")
        )
        if self.eval_every is None:
            object.__setattr__(self, "eval_every", max(1, self.steps // recipe.evaluations))
        every = check_int("eval_every", self.eval_every, 1, "; e.g. steps // 20")
        if every > self.steps:
            raise ValueError(
                f"eval_every must be <= steps ({self.steps}), got {every}; e.g. {max(1, self.steps // 20)}"
            )
        object.__setattr__(self, "eval_every", every)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        for name, low in (("lr", 0.0), ("weight_decay", -1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value <= low or (name == "weight_decay" and value < 0):
                raise ValueError(f"{name} must be {'> 0' if name == 'lr' else '>= 0'}, got {value}")
            object.__setattr__(self, name, float(value))
        if self.warmup_fraction is not None:
            fraction = float(self.warmup_fraction)
            if not 0.0 < fraction <= 1.0:
                raise ValueError(
                    f"warmup_fraction must lie in (0, 1] or be None (the artifact's warmup), got "
                    f"{self.warmup_fraction}; e.g. 0.5"
                )
            object.__setattr__(self, "warmup_fraction", fraction)
        holdout = float(self.holdout_fraction)
        if not 0.0 < holdout <= 0.9:
            raise ValueError(f"holdout_fraction must lie in (0, 0.9], got {self.holdout_fraction}")
        object.__setattr__(self, "holdout_fraction", holdout)
        object.__setattr__(
            self, "split_seed", check_int("split_seed", self.split_seed, 0, "; e.g. 0")
        )
        object.__setattr__(
            self, "refresh_every", check_int("refresh_every", self.refresh_every, 1, "; e.g. 5")
        )
        object.__setattr__(self, "knn_shots", check_int("knn_shots", self.knn_shots, 1, "; e.g. 5"))
        object.__setattr__(
            self, "knn_draws", check_int("knn_draws", self.knn_draws, 1, "; e.g. 50")
        )
        object.__setattr__(
            self,
            "knn_pool",
            check_int("knn_pool", self.knn_pool, self.knn_shots, "; at least knn_shots"),
        )

    @property
    def eval_steps(self) -> tuple[int, ...]:
        """The steps at which held-out accuracy is measured (0 and ``steps`` included)."""
        return tuple(sorted({*range(0, self.steps, self.eval_every), self.steps}))

    def warmup_iterations(self, artifact_warmup: int) -> int:
        """The curricula's warmup for this run."""
        if self.warmup_fraction is None:
            return int(artifact_warmup)
        return max(1, round(self.warmup_fraction * self.steps))

    @property
    def metric(self) -> str:
        """What the logged curve measures (e.g. ``held-out kNN accuracy``)."""
        return RECIPES[self.objective].metric

    def to_json(self) -> dict[str, Any]:
        """Plain values; a supervised config leaves out the objective and the kNN settings, so
        its JSON (and the content ids made from it) is what it was before objectives existed."""
        document = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.objective == "supervised":
            for name in ("objective", *_MAE_ONLY):
                document.pop(name)
        return document | {"arms": list(self.arms)}
