"""What each arm trains on: the held-out split, the arm's curriculum and its index stream.

A deterministic, class-stratified fraction of the rows (``holdout_fraction``, ``split_seed``) is held
out for evaluation. Each arm's curriculum is rebuilt over the training rows only, with the
temperature table re-solved so the effective-fraction targets keep their meaning; rows the artifact
masks are neither trained on nor evaluated. The warmup is ``warmup_fraction`` of the step budget by
default, because a short A/B run would end before a warmup sized for full training.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from cl_core.ab.config import ARMS, ABConfig
from cl_core.ab.tasks import ABTask
from cl_core.validation import check_choice

_UNIFORM_STREAM = 0x756E6966  # SeedSequence spawn keys: the uniform arm's draws ...
_SHUFFLE_STREAM = 0x73687566  # ... and the shuffled arm's permutation, independent of the seed's
_SPLIT_STREAM = 0x73706C74  # ... and the held-out split


def check_artifact_matches(curriculum: Any, task: ABTask) -> None:
    """Raise if the artifact does not score exactly the task's rows."""
    if curriculum.n_samples != task.n_samples:
        where = getattr(curriculum, "path", None) or "the curriculum"
        raise ValueError(
            f"artifact {where} scores {curriculum.n_samples} samples but the dataset "
            f"({task.description or task.name}) has {task.n_samples}; pass the dataset the "
            f"artifact was published for (same rows, same order)"
        )


def split_rows(
    labels: np.ndarray, holdout_fraction: float, seed: int, usable: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic class-stratified split of the usable rows into (train, held-out), sorted.

    Each class keeps ``round(holdout_fraction * count)`` rows for evaluation (at least one when
    it has two or more rows).
    """
    labels = np.asarray(labels)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _SPLIT_STREAM])))
    rows = np.arange(labels.shape[0]) if usable is None else np.flatnonzero(usable)
    held: list[np.ndarray] = []
    for label in np.unique(labels[rows]):
        members = rows[labels[rows] == label]
        count = round(holdout_fraction * members.size)
        count = min(max(count, 1), members.size - 1) if members.size >= 2 else 0
        held.append(rng.permutation(members)[:count])
    held_rows = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    train_rows = np.setdiff1d(rows, held_rows)
    if train_rows.size == 0 or held_rows.size == 0:
        raise ValueError(
            f"cannot split {rows.size} usable rows into train and held-out with "
            f"holdout_fraction={holdout_fraction}; the dataset is too small"
        )
    return train_rows.astype(np.int64), held_rows.astype(np.int64)


def arm_curriculum(
    arm: str, curriculum: Any, train_rows: np.ndarray, config: ABConfig, seed: int
) -> Any:
    """The curriculum one arm samples the training rows from (None for ``uniform``).

    Parameters
    ----------
    arm : str
        One of :data:`ARMS`.
    curriculum : cl_core.sampler.Curriculum
        The published artifact (difficulty over all N rows and its schedule).
    train_rows : ndarray of int
        Artifact rows trained on; the result's sample ``j`` is row ``train_rows[j]``.
    config : ABConfig
    seed : int
        Seeds the ``shuffled`` arm's permutation.
    """
    from cl_core.sampler import Curriculum

    check_choice("arm", arm, ARMS)
    if arm == "uniform":
        return None
    base = curriculum.schedule.config
    schedule = dataclasses.replace(
        base,
        strategy="hard" if arm == "hard" else "easy",
        warmup_iterations=config.warmup_iterations(base.warmup_iterations),
    )
    difficulty = np.asarray(curriculum.difficulty, dtype=np.float32)[train_rows]
    if arm == "shuffled":
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _SHUFFLE_STREAM])))
        difficulty = difficulty[rng.permutation(difficulty.shape[0])]
    try:
        return Curriculum.from_arrays(difficulty, schedule)
    except ValueError as error:
        raise ValueError(f"cannot build the {arm!r} arm's schedule: {error}") from error


def arm_indices(arm: str, arm_curr: Any, n_train: int, config: ABConfig, seed: int) -> np.ndarray:
    """The arm's whole index stream, shape ``(steps, batch_size)``, positions in ``[0, n_train)``.

    Curriculum arms draw through :class:`~cl_core.sampler.CurriculumSampler` (with replacement,
    seed ``seed``); the uniform arm draws the same number of indices uniformly with replacement
    from a generator seeded by ``seed``.
    """
    from cl_core.sampler import CurriculumSampler

    size = config.steps * config.batch_size
    if arm == "uniform":
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _UNIFORM_STREAM])))
        flat = rng.integers(0, n_train, size=size, dtype=np.int64)
    else:
        sampler = CurriculumSampler(
            arm_curr,
            batch_size=config.batch_size,
            num_samples=size,
            seed=seed,
            refresh_every=config.refresh_every,
        )
        flat = sampler.indices(0)[:size]
    return flat.reshape(config.steps, config.batch_size)
