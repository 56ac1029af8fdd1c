"""Any per-sample score -> a published curriculum artifact (:func:`publish_curriculum`).

Validates the scores (and optional cluster assignment, centroids and sample mask), solves the
schedule table once (:func:`cl_core.schedule.build_schedule`, skipped when the version already
exists or a prebuilt schedule is given) and publishes ``difficulty.npy``, ``schedule.json`` and
the rest through :func:`~cl_core.artifacts.publish.publish_artifact`, under the version
:func:`~cl_core.artifacts.identity.curriculum_identity` defines.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cl_core.artifacts.identity import compute_version, curriculum_identity
from cl_core.artifacts.latest import check_artifact_name, remove_stale_temporaries, write_latest
from cl_core.artifacts.publish import is_published, publish_artifact
from cl_core.artifacts.verify import check_difficulty
from cl_core.io import Location, as_location
from cl_core.schedule import (
    PACINGS,
    STRATEGIES,
    STRATEGY_ALIASES,
    Schedule,
    ScheduleConfig,
    build_schedule,
    canonical_strategy,
    effective_fraction_at,
)
from cl_core.validation import (
    check_choice,
    check_finite,
    check_fraction,
    check_non_negative_int,
    check_valid_mask,
)

if TYPE_CHECKING:
    from upath import UPath


def _as_assignment(
    assignment: object, n_samples: int, mask: np.ndarray | None = None
) -> np.ndarray | None:
    if assignment is None:
        return None
    values = np.asarray(assignment)
    if values.dtype.kind not in "iu":
        raise TypeError(
            f"assignment must hold integer cluster ids, got dtype {values.dtype}; pass the "
            f"int cluster index of every sample"
        )
    if values.shape != (n_samples,):
        raise ValueError(
            f"assignment has shape {values.shape} but difficulty has {n_samples} samples; pass "
            f"one cluster id per sample, shape ({n_samples},)"
        )
    kept = values if mask is None else values[mask]
    if kept.min() < 0 or kept.max() > np.iinfo(np.int32).max:
        raise ValueError(
            f"assignment holds ids from {kept.min()} to {kept.max()}"
            f"{'' if mask is None else ' on the drawable samples'}; cluster ids must lie "
            f"in [0, {np.iinfo(np.int32).max}] (-1 is allowed only where sample_mask is False)"
        )
    if mask is not None:
        excluded = values[~mask]
        if excluded.size and (excluded.min() < -1 or excluded.max() > np.iinfo(np.int32).max):
            raise ValueError(
                f"assignment holds ids from {excluded.min()} to {excluded.max()} on excluded "
                f"samples; use -1 (or any valid cluster id) where sample_mask is False"
            )
    return values.astype(np.int32)


def _as_centroids(centroids: object, assignment: np.ndarray | None) -> np.ndarray | None:
    if centroids is None:
        return None
    values = np.asarray(centroids)
    if values.dtype.kind not in "biuf" or values.ndim != 2 or values.shape[0] == 0:
        raise ValueError(
            f"centroids must be a real (k, D) array with k >= 1, got dtype {values.dtype} and "
            f"shape {values.shape}; pass the cluster centres as rows"
        )
    check_finite("centroids", values)
    if assignment is not None and assignment.size and assignment.max() >= values.shape[0]:
        raise ValueError(
            f"assignment refers to cluster {assignment.max()} but centroids has only "
            f"{values.shape[0]} rows; pass the centroids the assignment was computed with"
        )
    return values.astype(np.float32)


_SCHEDULE_DEFAULTS: dict[str, Any] = {
    "strategy": "easy",
    "pacing": "linear",
    "initial_fraction": 0.3,
    "warmup_iterations": 1000,
}


def _schedule_config(
    strategy: str,
    pacing: str,
    initial_fraction: float,
    warmup_iterations: int,
    schedule_options: Mapping[str, Any],
) -> ScheduleConfig:
    """Validate the curriculum arguments here so errors name the caller's arguments."""
    valid_strategies = (*STRATEGIES, *STRATEGY_ALIASES)
    check_choice("strategy", strategy, valid_strategies)
    check_choice("pacing", pacing, PACINGS)
    check_fraction("initial_fraction", initial_fraction)
    check_non_negative_int("warmup_iterations", warmup_iterations)
    unknown = sorted(set(schedule_options) - set(_schedule_option_names()))
    if unknown:
        raise TypeError(
            f"unknown schedule option(s) {unknown}; valid: {', '.join(_schedule_option_names())}"
        )
    return ScheduleConfig(
        strategy=canonical_strategy(strategy),
        pacing=pacing,
        initial_fraction=float(initial_fraction),
        warmup_iterations=int(warmup_iterations),
        **schedule_options,
    )


def _schedule_option_names() -> list[str]:
    return sorted(
        field.name
        for field in dataclasses.fields(ScheduleConfig)
        if field.name not in _SCHEDULE_DEFAULTS
    )


def _prebuilt_schedule(
    schedule: object,
    explicit: Mapping[str, Any],
    scores: np.ndarray,
    mask: np.ndarray | None,
) -> Schedule:
    """Check a caller's prebuilt schedule against the arguments and the scores it must fit."""
    if isinstance(schedule, Mapping):
        try:
            schedule = Schedule.from_json(schedule)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"schedule is not a valid Schedule JSON ({error}); pass Schedule.to_json() of "
                f"a schedule built by build_schedule, or a Schedule"
            ) from None
    if not isinstance(schedule, Schedule):
        raise TypeError(
            f"schedule must be a Schedule or its to_json() dict, got {type(schedule).__name__}; "
            f"e.g. build_schedule(difficulty, config, valid=sample_mask)"
        )
    unknown = sorted(set(explicit) - set(_SCHEDULE_DEFAULTS) - set(_schedule_option_names()))
    if unknown:
        raise TypeError(
            f"unknown schedule option(s) {unknown}; valid: {', '.join(_schedule_option_names())}"
        )
    config = schedule.config
    for key, value in explicit.items():
        wanted = canonical_strategy(value) if key == "strategy" else value
        if getattr(config, key) != wanted:
            raise ValueError(
                f"{key}={value!r} disagrees with the given schedule's {key}="
                f"{getattr(config, key)!r}; leave {key} out when passing schedule= (the "
                f"schedule's config is what gets published), or rebuild the schedule"
            )
    drawable = scores if mask is None else scores[mask]
    if schedule.n_samples is not None and schedule.n_samples != drawable.shape[0]:
        raise ValueError(
            f"schedule was built for {schedule.n_samples} samples but there are "
            f"{drawable.shape[0]} drawable samples; build it with build_schedule(difficulty, "
            f"config, valid=sample_mask) from these scores"
        )
    if not schedule.is_uniform:
        # One exact O(N) evaluation: the table's first node must hold for these scores.
        achieved = effective_fraction_at(drawable, float(schedule.betas[0]), config.strategy)
        if not math.isclose(achieved, float(schedule.achieved[0]), rel_tol=0.0, abs_tol=1e-9):
            raise ValueError(
                f"schedule was not built from this difficulty (at its first inverse temperature "
                f"it records effective fraction {float(schedule.achieved[0])!r}, these scores "
                f"give {achieved!r}); build it with build_schedule(difficulty, config, "
                f"valid=sample_mask)"
            )
    return schedule


def publish_curriculum(
    root: str | os.PathLike[str] | UPath,
    name: str,
    difficulty: np.ndarray,
    assignment: np.ndarray | None = None,
    centroids: np.ndarray | None = None,
    strategy: str | None = None,
    pacing: str | None = None,
    initial_fraction: float | None = None,
    warmup_iterations: int | None = None,
    *,
    parents: Sequence[str] = (),
    config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, str | os.PathLike[str]] | None = None,
    sweep: object = None,
    dataset_fingerprint: str | None = None,
    sample_mask: np.ndarray | None = None,
    schedule: Schedule | Mapping[str, Any] | None = None,
    json_files: Mapping[str, object] | None = None,
    replace_damaged: bool = False,
    extra_arrays: Mapping[str, np.ndarray] | None = None,
    lineage: Mapping[str, Any] | None = None,
    excluded_paths: Mapping[int, str] | None = None,
    **schedule_options: Any,
) -> Location:
    """Turn any per-sample score into a published curriculum artifact.

    Parameters
    ----------
    root : str, PathLike or UPath
        Artifact root: a local directory or an fsspec URL such as ``s3://bucket/artifacts``
        (object storage; see the module notes).
    name : str
        Artifact name; the version lands in ``<root>/<name>/<version>/``.
    difficulty : array-like of shape (N,)
        One finite score per sample, in dataset order (higher = harder). Stored as float32.
    assignment : array-like of shape (N,), optional
        Integer cluster id per sample (-1 allowed where ``sample_mask`` is False); stored as
        int32.
    centroids : array-like of shape (k, D), optional
        Cluster centres; stored as float32.
    strategy : {"easy", "hard"} or alias ("prototypes", "difficulty"), default "easy"
        ``easy`` samples prototypes first (p ~ exp(-d/T)); ``hard`` the reverse.
    pacing : {"linear", "cosine", "root", "step"}, default "linear"
        How the target effective fraction grows from ``initial_fraction`` to 1.
    initial_fraction : float in (0, 1], default 0.3
        Effective fraction of the dataset at iteration 0.
    warmup_iterations : int >= 0, default 1000
        Iteration from which sampling is uniform.
    parents : sequence of str
        Upstream content ids (e.g. the embedding store's fingerprint). The sha256 of every
        array passed here is appended, so different scores never share a version.
    config : mapping, optional
        Upstream configuration recorded under ``config["pipeline"]`` (part of the version id).
    metrics : mapping, optional
        Extra summary figures for the manifest (they win over the built-in
        ``difficulty_min/mean/max`` and ``max_inverse_temperature``).
    extra_files : mapping of str to path, optional
        Files (plots, ``report.md``) copied into the version.
    sweep : JSON-serialisable, optional
        Per-k cluster sweep, stored as ``sweep.json``.
    dataset_fingerprint : str, optional
        Recorded in the manifest.
    sample_mask : array-like of shape (N,), bool, optional
        True for drawable samples. Excluded samples get probability exactly 0 at training
        time: the schedule is solved over the drawable samples, ``sample_mask.npy`` and the
        manifest's ``excluded`` record them, and the mask is part of the version id. Their
        ``difficulty`` must still be finite (0.0 by convention). ``None`` or all True: as
        without a mask (same version as before masks existed).
    schedule : Schedule or its ``to_json()`` dict, optional
        A schedule already built for these scores (``build_schedule(difficulty, config,
        valid=sample_mask)``): published as is, not solved again. Its config is the version's
        schedule config; ``strategy``/``pacing``/... given as well must agree with it.
    json_files : mapping of str to object, optional
        Further JSON documents stored as ``<key>.json`` (``schedule`` and ``sweep`` are taken).
    replace_damaged : bool
        If this version is already published but fails verification: False (default) raises
        :class:`ArtifactIntegrityError`; True publishes it again in place of the damaged copy.
    extra_arrays : mapping of str to ndarray, optional
        Further numeric arrays stored as ``<key>.npy`` (e.g. ``distances``); listed in the
        manifest, not part of the version id (derive them from what is).
    lineage : mapping, optional
        The manifest's ``lineage`` (see :func:`~cl_core.artifacts.publish.publish_artifact`).
    excluded_paths : mapping of int to str, optional
        Path of each sample ``sample_mask`` excludes, recorded beside its index.
    **schedule_options
        Further :class:`cl_core.schedule.ScheduleConfig` fields (``power``, ``n_steps``, ...).

    Returns
    -------
    Path or UPath
        The version directory (loadable with :func:`cl_core.sampler.load_curriculum`); a
        ``upath.UPath`` for a URL root.
    """
    scores = check_difficulty(difficulty)
    mask = check_valid_mask("sample_mask", sample_mask, scores.shape[0])
    cluster_ids = _as_assignment(assignment, scores.shape[0], mask)
    centres = _as_centroids(centroids, cluster_ids)
    explicit = {
        key: value
        for key, value in {
            "strategy": strategy,
            "pacing": pacing,
            "initial_fraction": initial_fraction,
            "warmup_iterations": warmup_iterations,
        }.items()
        if value is not None
    }
    prebuilt: Schedule | None = None
    if schedule is None:
        chosen = {**_SCHEDULE_DEFAULTS, **explicit}
        schedule_config = _schedule_config(
            chosen["strategy"],
            chosen["pacing"],
            chosen["initial_fraction"],
            chosen["warmup_iterations"],
            schedule_options,
        )
    else:
        prebuilt = _prebuilt_schedule(schedule, {**explicit, **schedule_options}, scores, mask)
        schedule_config = prebuilt.config
    extra_json = dict(json_files or {})
    taken = sorted({"schedule", "sweep"} & {key.removesuffix(".json") for key in extra_json})
    if taken:
        raise ValueError(
            f"json_files keys {taken} are reserved (schedule.json is the schedule, sweep.json "
            f"comes from sweep=); rename them"
        )
    arrays = {"difficulty": scores}
    if cluster_ids is not None:
        arrays["assignment"] = cluster_ids
    if centres is not None:
        arrays["centroids"] = centres
    full_parents, full_config = curriculum_identity(
        arrays, schedule_config, config, parents, sample_mask=mask
    )
    name = check_artifact_name(name)
    version_dir = as_location(root) / name / compute_version(full_parents, full_config)
    remove_stale_temporaries(root, name)
    if is_published(version_dir, replace_damaged):
        # Same scores and settings: skip the schedule solve, just move the pointer.
        write_latest(version_dir.parent, version_dir.name)
        return version_dir

    if prebuilt is None:
        prebuilt = build_schedule(scores, schedule_config, valid=mask)
    json_out: dict[str, object] = {"schedule": prebuilt.to_json()}
    if sweep is not None:
        json_out["sweep"] = sweep
    json_out.update(extra_json)
    drawable = scores if mask is None else scores[mask]
    summary = {
        "difficulty_min": float(drawable.min()),
        "difficulty_mean": float(drawable.mean(dtype=np.float64)),
        "difficulty_max": float(drawable.max()),
        "max_inverse_temperature": float(np.max(prebuilt.betas)),
    }
    return publish_artifact(  # the damaged copy, if any, is gone: nothing left to replace
        root,
        name,
        arrays={**arrays, **dict(extra_arrays or {})},
        json_files=json_out,
        config=full_config,
        parents=full_parents,
        metrics={**summary, **dict(metrics or {})},
        extra_files=extra_files,
        dataset_fingerprint=dataset_fingerprint,
        sample_mask=mask,
        lineage=lineage,
        excluded_paths=excluded_paths,
    )
