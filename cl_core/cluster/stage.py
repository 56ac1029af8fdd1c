"""The clustering stage as one step.

:func:`cluster_embeddings` = subsample -> k sweep (or the explicit k) -> fit -> assign, over all
rows or within each class (:mod:`cl_core.cluster.supervised`), honouring a row mask:

1. a seeded subsample of at least ``sweep_samples`` rows, growing with the largest k
   (:mod:`~.grid`; all rows when N is smaller);
2. k: the explicit ``n_clusters``, or the standard-error rule (one SE, three on a flat curve)
   over the Davies-Bouldin index of the candidates of ``cluster_range`` (a grid, refined
   around the best), one independent job per k on half-samples of the subsample
   (:mod:`~.sweep`, :mod:`~.choice`);
3. centroids: exact ``KMeans`` when the subsample is every row, else ``MiniBatchKMeans`` on the
   subsample refined over all rows streamed in a seeded block order (or Lloyd in torch on a
   GPU) (:mod:`~.fit`);
4. every row to its nearest centroid with its true distance (:mod:`~.assign`).

Memory is bounded by the configuration, not by N (measured with D = 384 at the defaults: about
170 MiB above the import floor at N = 30 000 and at N = 500 000). Every random choice derives from
``random_state`` and a fixed key (:mod:`~.seeds`) and the sweep jobs run single-threaded, so the
results do not depend on scheduling, the Dask backend, the core count or ``chunk_rows``.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from cl_core.cluster.assign_dask import assign_rows
from cl_core.cluster.config import ClusterConfig, ClusterWarning, check_config, resolve_fit_device
from cl_core.cluster.fit import check_k_for_rows, fit_centers, init_sample_size
from cl_core.cluster.grid import check_range_fits
from cl_core.cluster.results import ClusterResult, SweepPoint
from cl_core.cluster.sampling import check_sample, sample_rows
from cl_core.cluster.seeds import KEY_SAMPLE, KEY_SWEEP, derive_seed, root_entropy
from cl_core.cluster.sources import ChunkSource, RowSubset, as_label_array, as_source, resolve_valid
from cl_core.cluster.supervised import cluster_per_class
from cl_core.cluster.sweep import candidate_ks, choose_k, describe_sweep, run_sweep, sweep_size
from cl_core.threads import thread_limit


def cluster_embeddings(
    source: Any,
    config: ClusterConfig | None = None,
    labels: Any = None,
    *,
    client: Any = None,
    valid: Any = None,
    sweep: Sequence[SweepPoint] | None = None,
    sample: Any = None,
) -> ClusterResult:
    """Cluster the embeddings: choose k, fit the centroids, assign every row.

    Parameters
    ----------
    source : EmbeddingStore, store path, ChunkSource or array-like of shape (N, D)
        The embeddings; read with ``config.normalize`` (a :class:`ChunkSource` keeps its own).
    config : ClusterConfig, optional
        Defaults to ``ClusterConfig()`` (auto k over 2..20, unsupervised).
    labels : list, ndarray or tensor of shape (N,), optional
        Class of every row for ``use_labels=True`` (default: the store's labels).
    client : dask.distributed.Client, optional
        Run the k sweep, and for a store at a path or URL the assignment (one task per row
        range, each worker reading its own chunks), on this cluster instead of locally.
    valid : array-like of shape (N,), bool, optional
        True for the rows to cluster. Excluded rows (samples that could not be loaded) take no
        part in the sweep subsample, the fit or the statistics of an array source, and get
        assignment -1 and distance 0.0; they may hold anything (zeros, NaN). ``None``: every
        row, except that a store's recorded skipped samples (``store.skipped_indices``) are
        excluded. All True behaves exactly like no mask.
    sweep : sequence of SweepPoint, optional
        The k sweep, when it ran elsewhere (e.g. :func:`evaluate_k` fanned out by a scheduler
        over the :func:`plan_sweep` sample of the same source, config and mask): k is chosen
        from it with :func:`choose_k` and the fit starts from the same sample, exactly as if the
        sweep had run here. Only with automatic k (``config.n_clusters`` None), unsupervised.
    sample : array-like of shape (n, D), optional
        With ``sweep``: the :func:`plan_sweep` sample the sweep ran on (``plan.sample``), so the
        fit starts from it instead of reading the same rows from the source again (at N = 1M a
        second read costs as much as the whole sweep). Default: drawn again, by its seed.

    Returns
    -------
    ClusterResult
        Over all N rows; ``result.valid`` is the mask used (None when nothing was excluded).

    Raises
    ------
    ValueError
        Empty data, NaN/inf rows (first bad index named), ``n_clusters > N``, constant
        features, fewer distinct rows than clusters, labels of the wrong length, supervised
        mode without labels, a mask of the wrong shape or one that excludes every row.
    """
    config = ClusterConfig() if config is None else check_config(config)
    if sweep is not None and (config.n_clusters is not None or config.use_labels):
        raise ValueError(
            "sweep=... chooses k, so it needs automatic k without labels; pass "
            "ClusterConfig(n_clusters=None, use_labels=False) or leave sweep out"
        )
    if sweep is not None and not sweep:
        raise ValueError("sweep is empty; pass the evaluated points of at least one k")
    if sample is not None and sweep is None:
        raise ValueError(
            "sample=... is the plan_sweep sample of a sweep run elsewhere; pass it with sweep=..."
        )
    if config.fit_device == "cuda":
        resolve_fit_device(config)  # no CUDA: fail before reading anything
    src = as_source(source, normalize=config.normalize, valid=valid)
    if src.normalize != config.normalize:
        warnings.warn(
            f"the given ChunkSource reads with normalize={src.normalize!r}, which wins over "
            f"config.normalize={config.normalize!r}; pass the store or array itself to use "
            "the config's normalisation",
            ClusterWarning,
            stacklevel=2,
        )
    mask = resolve_valid(valid, src)
    data = src if mask is None else RowSubset(src, np.flatnonzero(mask))
    entropy = root_entropy(config.random_state)
    if config.use_labels:
        label_values = _resolve_labels(labels, src)
        if mask is not None:
            label_values = label_values[mask]
        with thread_limit(config.n_threads):
            result = cluster_per_class(data, config, label_values, entropy, client)
        return result if mask is None else _expand_result(result, mask)
    if labels is not None:
        warnings.warn(
            "labels were given but config.use_labels is False, so they are ignored; set "
            "ClusterConfig(use_labels=True) to cluster within each class",
            ClusterWarning,
            stacklevel=2,
        )
    with thread_limit(config.n_threads):
        result = _cluster_all(data, config, entropy, client, sweep, sample)
    return result if mask is None else _expand_result(result, mask)


def _expand_result(result: ClusterResult, mask: np.ndarray) -> ClusterResult:
    """A result over the valid rows, spread back to all N rows (-1 / 0.0 where excluded)."""
    assignment = np.full(mask.shape[0], -1, dtype=np.int32)
    assignment[mask] = result.assignment
    distances = np.zeros(mask.shape[0], dtype=np.float32)
    distances[mask] = result.distances
    return dataclasses.replace(
        result, assignment=assignment, distances=distances, valid=mask.copy()
    )


def _check_swept_sample(sample: Any, src: ChunkSource, config: ClusterConfig) -> np.ndarray:
    """The given sweep sample as float32, if it has the plan_sweep sample's shape."""
    values = check_sample(sample)
    expected = (sweep_size(config, src.n_rows, src.dim), src.dim)
    if values.shape != expected:
        raise ValueError(
            f"sample has shape {values.shape}, but the plan_sweep sample of this source and "
            f"config has shape {expected} (sweep_size rows x D); pass plan.sample "
            "of the same source, config and mask, or leave sample out"
        )
    return values


def _resolve_labels(labels: Any, src: ChunkSource) -> np.ndarray:
    if labels is None:
        labels = src.labels()
    if labels is None:
        raise ValueError(
            "use_labels=True needs labels: pass labels=... (one class per row) or use a store "
            "written with labels; or set use_labels=False"
        )
    return as_label_array(labels, src.n_rows)


def _cluster_all(
    src: ChunkSource,
    config: ClusterConfig,
    entropy: int,
    client: Any,
    swept: Sequence[SweepPoint] | None = None,
    swept_sample: Any = None,
) -> ClusterResult:
    sweep: tuple[SweepPoint, ...] = ()
    if swept is not None:  # the sweep ran elsewhere on the same sample: choose, then fit here
        if swept_sample is None:
            size = sweep_size(config, src.n_rows, src.dim)
            sample = sample_rows(src, size, derive_seed(entropy, KEY_SAMPLE))
        else:
            sample = _check_swept_sample(swept_sample, src, config)
        sweep = tuple(swept)
        k = choose_k(sweep)
        chosen_by = "davies_bouldin"
    elif config.n_clusters is not None:
        k = check_k_for_rows(config.n_clusters, src.n_rows)
        sample = sample_rows(
            src, init_sample_size(k, config, src.n_rows), derive_seed(entropy, KEY_SAMPLE)
        )
        chosen_by = "explicit"
    else:
        size = sweep_size(config, src.n_rows, src.dim)
        check_range_fits(config.cluster_range, size, src.n_rows)  # before any row is read
        sample = sample_rows(src, size, derive_seed(entropy, KEY_SAMPLE))
        grid = candidate_ks(config.cluster_range, sample, src.n_rows)
        sweep = run_sweep(
            sample,
            grid,
            derive_seed(entropy, KEY_SWEEP),
            client=client,
            scheduler=config.scheduler,
            n_workers=config.n_workers,
            batch_size=config.sweep_batch_size,
            n_init=config.sweep_n_init,
            replicates=config.sweep_replicates,
            device=resolve_fit_device(config),
        )
        k = choose_k(sweep)
        chosen_by = "davies_bouldin"
    centroids = fit_centers(src, k, config, entropy, sample)
    assignment, distances = assign_rows(src, centroids, client)
    device = resolve_fit_device(config)
    return ClusterResult(
        k_choice=describe_sweep(sweep, sample.shape[0], config, device) if sweep else None,
        centroids=centroids,
        assignment=assignment,
        distances=distances,
        n_clusters=k,
        chosen_by=chosen_by,
        sweep=sweep,
        inertia=float(np.square(distances, dtype=np.float64).sum()),
        config=config,
    )
