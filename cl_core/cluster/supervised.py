"""Supervised mode (``use_labels=True``): the k sweep, the fit and the assignment within each class.

k per class is explicit (capped at the class size) or chosen per class by the unsupervised
sweep's rules (a sample growing with k, the grid and its refinement, the standard-error rule
over half-sample replicates: one SE, three on a flat curve) over ``cluster_range`` intersected
with what the class's half-samples can score; each row goes to the nearest centroid *of its
own class*. A class too small for that becomes one cluster at its mean, with a
:class:`~cl_core.cluster.ClusterWarning`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from cl_core.cluster.assign_dask import assign_rows
from cl_core.cluster.config import ClusterConfig, ClusterWarning, resolve_fit_device
from cl_core.cluster.fit import initial_centers, stream_refine
from cl_core.cluster.grid import k_grid, replicate_rows
from cl_core.cluster.results import ClusterResult, SweepPoint
from cl_core.cluster.sampling import constant_features_error, count_distinct_rows
from cl_core.cluster.seeds import (
    KEY_CLASS,
    KEY_FIT_SAMPLE,
    KEY_INIT,
    KEY_STREAM,
    KEY_SWEEP,
    derive_seed,
)
from cl_core.cluster.sources import ArraySource, ChunkSource
from cl_core.cluster.sweep import choose_k, run_sweep, sweep_size


@dataclass
class _ClassPlan:
    label: Any
    rows: np.ndarray  # dataset indices of the class, ascending
    sample_index: np.ndarray  # the subsample's dataset indices, ascending
    k: int = 1
    centers: np.ndarray | None = None
    sweep: tuple[SweepPoint, ...] = ()

    @property
    def covered(self) -> bool:
        return self.sample_index.shape[0] == self.rows.shape[0]


def cluster_per_class(
    src: ChunkSource, config: ClusterConfig, labels: np.ndarray, entropy: int, client: Any
) -> ClusterResult:
    """Supervised :func:`cluster_embeddings` over ``src`` (the valid rows), ``labels`` per row.

    Every class gets its own subsample, k and initial centres; classes larger than their
    subsample are refined together in one streamed pass per epoch; every row is assigned to the
    nearest centroid of its class (on ``client`` when given, as :func:`assign_rows`).
    """
    classes, class_index = np.unique(labels, return_inverse=True)
    plans = _plan_classes(classes, class_index.reshape(-1), config, entropy, src.dim)
    any_class_varies = False
    for plan, sample in _iter_class_samples(src, plans, config.sweep_samples):
        any_class_varies |= _fit_class(plan, sample, config, entropy, client)
    if not any_class_varies and not _class_points_differ(plans):
        raise constant_features_error(sum(p.sample_index.shape[0] for p in plans), src.n_rows)
    _refine_large_classes(src, plans, class_index, config, entropy)

    centroids = np.concatenate([np.asarray(plan.centers, dtype=np.float32) for plan in plans])
    centroid_groups = np.repeat(np.arange(len(plans)), [plan.k for plan in plans])
    assignment, distances = assign_rows(
        src, centroids, client, row_groups=class_index, centroid_groups=centroid_groups
    )
    return ClusterResult(
        centroids=centroids,
        assignment=assignment,
        distances=distances,
        n_clusters=int(centroids.shape[0]),
        chosen_by="per_class",
        sweep=tuple(point for plan in plans for point in plan.sweep),
        cluster_class=classes[centroid_groups],
        inertia=float(np.square(distances, dtype=np.float64).sum()),
        config=config,
    )


def _plan_classes(
    classes: np.ndarray, class_index: np.ndarray, config: ClusterConfig, entropy: int, dim: int
) -> list[_ClassPlan]:
    order = np.argsort(class_index, kind="stable")  # rows of each class, ascending
    bounds = np.concatenate([[0], np.cumsum(np.bincount(class_index, minlength=len(classes)))])
    plans = []
    for position, label in enumerate(classes):
        rows = order[bounds[position] : bounds[position + 1]]
        size = sweep_size(config, rows.shape[0], dim)  # the unsupervised sample's rule, per class
        if rows.shape[0] > size:
            rng = np.random.default_rng(derive_seed(entropy, KEY_CLASS, position))
            chosen = np.sort(rng.choice(rows, size=size, replace=False))
        else:
            chosen = rows
        plans.append(_ClassPlan(label=label, rows=rows, sample_index=chosen))
    return plans


def _iter_class_samples(
    src: ChunkSource, plans: list[_ClassPlan], budget: int
) -> Iterator[tuple[_ClassPlan, np.ndarray]]:
    """Read the class subsamples, several classes per read, at most ~``budget`` rows at once."""
    group: list[_ClassPlan] = []
    size = 0
    for plan in [*plans, None]:
        if plan is not None and (not group or size + plan.sample_index.shape[0] <= budget):
            group.append(plan)
            size += plan.sample_index.shape[0]
            continue
        wanted = np.concatenate([member.sample_index for member in group])
        order = np.argsort(wanted, kind="stable")
        rows = np.empty((wanted.shape[0], src.dim), dtype=np.float32)
        rows[order] = src.read_rows(wanted[order])
        offset = 0
        for member in group:
            count = member.sample_index.shape[0]
            yield member, rows[offset : offset + count]
            offset += count
        if plan is not None:
            group, size = [plan], plan.sample_index.shape[0]


def _fit_class(
    plan: _ClassPlan, sample: np.ndarray, config: ClusterConfig, entropy: int, client: Any
) -> bool:
    """Choose the class's k and initial centres; True when its rows are not all identical."""
    n_class = plan.rows.shape[0]
    wanted = config.n_clusters if config.n_clusters is not None else config.cluster_range[1]
    distinct = count_distinct_rows(sample, enough=max(wanted, 2))
    name = f"class {_plain(plan.label)!r}"
    if config.n_clusters is not None:
        plan.k = min(config.n_clusters, n_class, distinct)
        if plan.k < config.n_clusters:
            warnings.warn(
                f"{name} has {n_class} samples ({distinct} distinct in its sample), fewer than "
                f"n_clusters={config.n_clusters}; it gets {plan.k} cluster(s)",
                ClusterWarning,
                stacklevel=5,
            )
    else:
        low, high = config.cluster_range
        top = min(high, replicate_rows(sample.shape[0]) - 1, distinct)
        if low > top:
            plan.k = 1
            warnings.warn(
                f"{name} has {n_class} samples ({distinct} distinct), too few for the "
                f"Davies-Bouldin sweep over cluster_range={config.cluster_range!r} (needs at "
                f"least {low + 1}); it becomes one cluster at its mean",
                ClusterWarning,
                stacklevel=5,
            )
        else:
            class_seed = derive_seed(entropy, KEY_CLASS, KEY_SWEEP, plan.rows[0])
            plan.sweep = run_sweep(
                sample,
                k_grid(low, top),
                class_seed,
                client=client,
                scheduler=config.scheduler,
                n_workers=config.n_workers,
                batch_size=config.sweep_batch_size,
                n_init=config.sweep_n_init,
                class_label=_plain(plan.label),
                replicates=config.sweep_replicates,
                device=resolve_fit_device(config),
            )
            plan.k = choose_k(plan.sweep)
    seed = derive_seed(entropy, KEY_CLASS, KEY_INIT, plan.rows[0])
    plan.centers = initial_centers(sample, plan.k, config, seed, exact=plan.covered)
    return distinct > 1


def _plain(label: Any) -> Any:
    return label.item() if isinstance(label, np.generic) else label


def _class_points_differ(plans: list[_ClassPlan]) -> bool:
    """With every class constant: do the classes' (single) points differ from each other?"""
    centers = np.concatenate([np.asarray(plan.centers) for plan in plans])
    return bool(np.ptp(centers, axis=0).any())


def _refine_large_classes(
    src: ChunkSource,
    plans: list[_ClassPlan],
    class_index: np.ndarray,
    config: ClusterConfig,
    entropy: int,
) -> None:
    """Stream every class larger than its subsample in one pass per epoch for all classes."""
    large = [position for position, plan in enumerate(plans) if not plan.covered]
    if not large:
        return
    data: ChunkSource = src
    groups = np.full(len(plans), -1, dtype=np.int64)
    groups[large] = np.arange(len(large))
    row_groups = groups[class_index]
    if config.max_fit_samples is not None and src.n_rows > config.max_fit_samples:
        rng = np.random.default_rng(derive_seed(entropy, KEY_FIT_SAMPLE))
        chosen = np.sort(rng.choice(src.n_rows, size=config.max_fit_samples, replace=False))
        data = ArraySource(src.read_rows(chosen), normalize="none", chunk_rows=config.batch_size)
        row_groups = row_groups[chosen]
    refined = stream_refine(
        data,
        [np.asarray(plans[position].centers) for position in large],
        config,
        derive_seed(entropy, KEY_CLASS, KEY_STREAM),
        row_groups=row_groups,
    )
    for position, centers in zip(large, refined, strict=True):
        plans[position].centers = centers
