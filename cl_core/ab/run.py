"""Every arm with every seed in one call, then the summary (no Prefect, no files)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cl_core.ab.arms import check_artifact_matches
from cl_core.ab.config import ABConfig, check_seeds
from cl_core.ab.tasks import ABTask
from cl_core.ab.train import ArmRun, train_arm
from cl_core.ab.verdict import ABSummary, summarize


def run_ab(
    curriculum: Any,
    task: ABTask,
    config: ABConfig | None = None,
    seeds: int | Sequence[int] = 3,
    *,
    threads: int | None = 1,
    on_run: Callable[[ArmRun], None] | None = None,
) -> tuple[ABSummary, list[ArmRun]]:
    """Train every arm with every seed and summarise (the Prefect flow ``curriculum-ab`` does the
    same with a cache per arm and seed, and writes the results).

    Parameters
    ----------
    curriculum : cl_core.sampler.Curriculum
        ``load_curriculum(path)`` of the artifact under test.
    task : ABTask
        :func:`digits_task`, :func:`probe_task`, :func:`image_task` or your own.
    config : ABConfig, optional
    seeds : int or sequence of int
        A count ``n`` (seeds ``0 .. n-1``) or explicit seeds.
    on_run : callable, optional
        Called with each finished :class:`ArmRun`.

    Returns
    -------
    (ABSummary, list of ArmRun)
    """
    config = config or ABConfig()
    seed_values = check_seeds(seeds)
    check_artifact_matches(curriculum, task)
    runs = []
    for seed in seed_values:
        for arm in config.arms:
            run = train_arm(task, curriculum, arm, seed, config, threads=threads)
            runs.append(run)
            if on_run is not None:
                on_run(run)
    return summarize(runs), runs
