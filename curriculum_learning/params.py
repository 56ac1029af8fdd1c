"""The reference's constructor parameters, checked and translated into ``cl_core`` configs.

``n_clusters``, ``cluster_range``, ``use_labels`` and ``use_minibatch_kmeans`` become a
:class:`cl_core.cluster.ClusterConfig`; ``initial_effective_percentage``, ``warmup_iterations``,
``pacing``... a :class:`cl_core.schedule.ScheduleConfig` per strategy; ``normalize_weights`` /
``difficulty_normalization`` a :func:`cl_core.difficulty.normalize_difficulty` method. The
configs validate their fields (``__post_init__``); the checks here cover what only the compat
API has. Also here: what ``optimal_clusters_`` means (:func:`reference_k`).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from cl_core.cluster import (
    DEFAULT_SWEEP_SAMPLES,
    ClusterConfig,
    ClusterWarning,
    sweep_sample_size,
)
from cl_core.difficulty import NORMALIZATIONS as DIFFICULTY_NORMALIZATIONS
from cl_core.schedule import ScheduleConfig
from cl_core.store import DTYPES as FEATURE_DTYPES
from cl_core.validation import check_choice, check_fraction
from curriculum_learning.extractors import FeatureExtractor

__all__ = [
    "DIFFICULTY_NORMALIZATIONS",
    "FEATURE_DTYPES",
    "check_params",
    "cluster_config",
    "clusters_per_class",
    "difficulty_method",
    "reference_k",
    "schedule_config",
]


def _check_batch_size(value: object) -> int:
    """``batch_size`` as a positive int (a ``ValueError`` otherwise, as before the split)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"batch_size must be a positive integer, got {value!r}; e.g. 256")
    return int(value)


def check_params(params: Any) -> None:
    """Fail fast on bad settings of a ``CurriculumLearning`` (names the argument, the value and
    the fix); ``params`` is the instance (or anything with its attributes)."""
    if not isinstance(params.feature_extractor, FeatureExtractor):
        raise TypeError(
            f"feature_extractor must be a FeatureExtractor, got "
            f"{type(params.feature_extractor).__name__}; wrap a model as "
            f"PretrainedModelExtractor(model)"
        )
    check_fraction("initial_effective_percentage", params.initial_effective_percentage)
    _check_batch_size(params.batch_size)
    if params.difficulty_normalization is not None:
        check_choice(
            "difficulty_normalization", params.difficulty_normalization, DIFFICULTY_NORMALIZATIONS
        )
    check_choice("feature_dtype", params.feature_dtype, FEATURE_DTYPES)
    cluster_config(params, n_rows=None)  # the dataclasses validate in __post_init__
    schedule_config(params, params.strategy)


def cluster_config(params: Any, n_rows: int | None) -> ClusterConfig:
    """The clustering settings; ``use_minibatch_kmeans=False`` lets the fit see every row."""
    sweep_samples = DEFAULT_SWEEP_SAMPLES
    if not params.use_minibatch_kmeans and n_rows is not None:
        sweep_samples = max(DEFAULT_SWEEP_SAMPLES, n_rows)
    return ClusterConfig(
        n_clusters=params.n_clusters,
        cluster_range=_fitting_range(params, n_rows, sweep_samples),
        use_labels=bool(params.use_labels),
        sweep_samples=sweep_samples,
        normalize=params.feature_extractor.normalization,
        random_state=params.random_state,
    )


def _fitting_range(params: Any, n_rows: int | None, sweep_samples: int) -> tuple[int, int]:
    """``cluster_range``, its top capped (with a warning) at what the sweep can score on
    ``n_rows`` rows, as the reference swept whatever the data allowed; the pipeline refuses."""
    low, high = (int(value) for value in params.cluster_range)
    if n_rows is None or params.n_clusters is not None or params.use_labels:
        return low, high
    top = sweep_sample_size((low, high), n_rows, sweep_samples) // 2 - 1
    if low <= top < high:
        warnings.warn(
            f"cluster_range={tuple(params.cluster_range)!r} capped at k <= {top}: each k is "
            f"scored on half-samples of the {n_rows} rows",
            ClusterWarning,
            stacklevel=4,
        )
        return low, top
    return low, high


def schedule_config(
    params: Any, strategy: str, initial_fraction: float | None = None
) -> ScheduleConfig:
    """The schedule of ``strategy``; ``initial_fraction`` overrides the requested start (when
    the data cannot reach it, see :func:`curriculum_learning.sampling.reachable_start`)."""
    return ScheduleConfig(
        strategy=strategy,
        pacing=params.pacing,
        initial_fraction=(
            params.initial_effective_percentage if initial_fraction is None else initial_fraction
        ),
        warmup_iterations=params.warmup_iterations,
        power=params.power,
        n_steps=params.n_steps,
    )


def difficulty_method(params: Any) -> str:
    """The :func:`cl_core.difficulty.normalize_difficulty` method: ``difficulty_normalization``
    when set, else ``"minmax"`` (``normalize_weights=True``) or ``"none"``."""
    if params.difficulty_normalization is not None:
        return str(params.difficulty_normalization)
    return "minmax" if params.normalize_weights else "none"


def reference_k(
    n_clusters: int | None, clusters_per_class: dict[Any, int] | None, total: int | None
) -> int | None:
    """``optimal_clusters_`` in the reference's meaning.

    Supervised (``clusters_per_class`` known): k per class, i.e. ``n_clusters`` when given
    (README v1, Example 2: ``n_clusters=5`` is "5 clusters per class"), else the largest
    per-class choice. Unsupervised: the number of clusters, ``total``.
    """
    if clusters_per_class is None:
        return total
    if n_clusters is not None:
        return int(n_clusters)
    return max(clusters_per_class.values())


def clusters_per_class(cluster_class: np.ndarray | None) -> dict[Any, int] | None:
    """``{class: k}`` from the class of each cluster (None without classes)."""
    if cluster_class is None:
        return None
    classes, counts = np.unique(cluster_class, return_counts=True)
    return {_plain(c): int(n) for c, n in zip(classes, counts, strict=True)}


def _plain(value: Any) -> Any:
    """NumPy scalars as Python scalars; anything else unchanged."""
    return value.item() if isinstance(value, np.generic) else value
