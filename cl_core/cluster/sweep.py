"""The Davies-Bouldin k sweep: plan it, evaluate each k, choose k.

Every k of ``cluster_range`` is an independent job (:func:`evaluate_k`) on one seeded subsample
(:func:`plan_sweep` draws it exactly as :func:`cl_core.cluster.cluster_embeddings` does);
:func:`sweep_k` runs the jobs in parallel on Dask, :func:`choose_k` picks the lowest index (ties:
the smaller k), and :func:`edge_of_range_warning` says when that k is an end of the range.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cl_core.cluster.config import (
    CHOSEN_BY,
    DEFAULT_SWEEP_BATCH_SIZE,
    SCHEDULERS,
    ClusterConfig,
    ClusterWarning,
    check_cluster_range,
    check_config,
)
from cl_core.cluster.results import SweepPoint
from cl_core.cluster.sampling import (
    check_sample,
    constant_features_error,
    count_distinct_rows,
    sample_rows,
)
from cl_core.cluster.seeds import KEY_SAMPLE, KEY_SWEEP, derive_seed, root_entropy
from cl_core.cluster.sources import RowSubset, as_source, resolve_valid
from cl_core.threads import openmp_limit, thread_limit
from cl_core.validation import check_choice, check_int


def evaluate_k(
    sample: np.ndarray,
    k: int,
    random_state: int | None = 0,
    batch_size: int = DEFAULT_SWEEP_BATCH_SIZE,
    *,
    n_init: int = 3,
    n_threads: int | None = 1,
    class_label: Any = None,
) -> SweepPoint:
    """Fit k clusters on ``sample`` and score them: one independent job of the sweep.

    A pure function of picklable arguments (the Prefect flow maps it as a Dask task). The
    ``MiniBatchKMeans`` seed is derived from ``(random_state, k)``, so a job's result does not
    depend on which other jobs run or where.

    Parameters
    ----------
    sample : ndarray of shape (n, D)
        Normalised rows (see :func:`sample_rows`).
    k : int
        Clusters, ``2 <= k <= n - 1`` (the range where Davies-Bouldin is defined).
    random_state : int or None
        Sweep seed (the same for every k of one sweep).
    batch_size : int
        ``MiniBatchKMeans`` batch size; k-means++ seeds on ``max(batch_size, 3k)`` rows.
    n_init : int
        k-means++ restarts; the one with the lowest inertia on the seeding rows is kept.
    n_threads : int or None
        OpenMP threads of the job (1 keeps parallel jobs from oversubscribing cores and makes
        the result independent of the core count); None leaves scikit-learn's default.
    class_label : optional
        Recorded in the returned point (supervised mode).

    Returns
    -------
    SweepPoint

    Notes
    -----
    To run several jobs as threads of one process (as :func:`sweep_k` does), hold
    ``threadpoolctl.threadpool_limits(1, user_api="blas")`` around them: scikit-learn switches
    BLAS to one thread around each fit through a process-wide setting, and concurrent fits
    restore it out of order, leaving BLAS threads to fight over the cores.
    """
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics import davies_bouldin_score

    values = check_sample(sample)
    n = values.shape[0]
    k = _check_k_for_index(k, n)
    seed = derive_seed(root_entropy(random_state), KEY_SWEEP, k)
    started = time.perf_counter()
    with openmp_limit(n_threads), warnings.catch_warnings():
        # Duplicate points can leave a cluster empty; the index is still well defined then.
        warnings.filterwarnings("ignore", message="Number of distinct clusters")
        batch = min(check_int("batch_size", batch_size, 1), n)
        model = MiniBatchKMeans(
            n_clusters=k,
            init="k-means++",
            n_init=check_int("n_init", n_init, 1),
            batch_size=batch,
            # k-means++ and the choice among restarts on one batch of rows (>= 3k), not
            # scikit-learn's 3 batches: a third of the job's seeding cost, same chosen k.
            init_size=min(n, max(batch, 3 * k)),
            random_state=seed,
        ).fit(values)
        if np.unique(model.labels_).size < 2:
            raise ValueError(
                f"sample has fewer than 2 distinct rows, so k={k} clusters cannot be scored; "
                "the features are (nearly) constant - check the embedding stage"
            )
        index = float(davies_bouldin_score(values, model.labels_))
    return SweepPoint(
        k=k,
        davies_bouldin=index,
        inertia=float(model.inertia_),
        seconds=time.perf_counter() - started,
        n_samples=n,
        class_label=class_label,
    )


def _check_k_for_index(k: object, n: int) -> int:
    k = check_int("k", k, 2, " (the Davies-Bouldin index needs at least 2 clusters)")
    if k > n - 1:
        raise ValueError(
            f"k={k} is too large for a sample of {n} rows: the Davies-Bouldin index needs "
            f"k <= n - 1 = {n - 1}; lower the range or use more sweep_samples"
        )
    return k


def sweep_k(
    sample: np.ndarray,
    ks: Sequence[int],
    random_state: int | None = 0,
    *,
    client: Any = None,
    scheduler: str = "threads",
    n_workers: int | None = None,
    batch_size: int = DEFAULT_SWEEP_BATCH_SIZE,
    n_init: int = 3,
    class_label: Any = None,
) -> tuple[SweepPoint, ...]:
    """Run :func:`evaluate_k` for every k in parallel on Dask.

    Parameters
    ----------
    sample : ndarray of shape (n, D)
        Normalised rows shared by every job.
    ks : sequence of int
        Distinct candidates, each in ``[2, n - 1]``.
    random_state : int or None
        Sweep seed; each k's job derives its own seed from it.
    client : dask.distributed.Client, optional
        Run on this (possibly remote) cluster: the sample is scattered once and the jobs are
        submitted as futures. Without one, the local Dask ``scheduler`` is used.
    scheduler : {"threads", "processes", "synchronous"}
        Local scheduler (threads suit scikit-learn, which releases the GIL in its kernels).
    n_workers : int, optional
        Parallel jobs for the local scheduler (default: one per core).
    batch_size, n_init
        Passed to :func:`evaluate_k`.
    class_label : optional
        Recorded in every point (supervised mode).

    Returns
    -------
    tuple of SweepPoint
        In the order of ``ks``. Every job runs single-threaded, so the results are the same on
        every backend.
    """
    values = check_sample(sample)
    candidates = [_check_k_for_index(k, values.shape[0]) for k in ks]
    if not candidates:
        raise ValueError("ks is empty; give at least one k to evaluate, e.g. range(2, 21)")
    if len(set(candidates)) != len(candidates):
        raise ValueError(f"ks has repeated values {list(ks)!r}; give each k once")
    check_choice("scheduler", scheduler, SCHEDULERS)
    entropy = root_entropy(random_state)  # fixed before dispatch, so every job shares it
    options = {"n_init": n_init, "n_threads": 1, "class_label": class_label}
    if client is not None:
        shared = client.scatter(values, broadcast=True)
        futures = [
            client.submit(evaluate_k, shared, k, entropy, batch_size, **options) for k in candidates
        ]
        return tuple(client.gather(futures))

    # Jobs run single-threaded: parallelism comes from running k's side by side, and one BLAS
    # thread per job avoids oversubscribing the cores. BLAS limits are process-wide, and
    # scikit-learn switches them around each fit, which concurrent fits can restore out of
    # order; this outer limit puts the caller's setting back once every job is done.
    with thread_limit(1, "blas"):
        if scheduler == "synchronous" or len(candidates) == 1:
            return tuple(evaluate_k(values, k, entropy, batch_size, **options) for k in candidates)
        import dask

        # Named nodes: dask would otherwise hash the whole sample once per job to build keys.
        token = f"{id(values):x}-{entropy:x}"
        shared = dask.delayed(values, name=f"cl-sweep-sample-{token}")
        jobs = [
            dask.delayed(evaluate_k)(
                shared,
                k,
                entropy,
                batch_size,
                dask_key_name=f"cl-evaluate-k-{k}-{token}",
                **options,
            )
            for k in candidates
        ]
        return tuple(dask.compute(*jobs, scheduler=scheduler, num_workers=n_workers))


def choose_k(points: Sequence[SweepPoint]) -> int:
    """The k with the lowest Davies-Bouldin index (ties: the smaller k)."""
    finite = [point for point in points if math.isfinite(point.davies_bouldin)]
    if not finite:
        raise ValueError(
            "no candidate k has a finite Davies-Bouldin index; the features are degenerate "
            "(constant or duplicated rows) - check the embedding stage"
        )
    return min(finite, key=lambda point: (point.davies_bouldin, point.k)).k


@dataclass(frozen=True, eq=False)
class SweepPlan:
    """What every job of a Davies-Bouldin k sweep shares, exactly as :func:`cluster_embeddings`.

    Attributes
    ----------
    sample : ndarray of shape (n, D), float32
        The normalised subsample every k is fitted and scored on.
    ks : tuple of int
        The feasible candidates (``cluster_range`` capped at what the sample supports).
    sample_seed : int
        Seed the subsample was drawn with.
    sweep_seed : int
        Pass as ``random_state`` to :func:`evaluate_k` / :func:`sweep_k`.
    n_rows : int
        Rows that take part (N minus the excluded ones).
    """

    sample: np.ndarray
    ks: tuple[int, ...]
    sample_seed: int
    sweep_seed: int
    n_rows: int


def plan_sweep(source: Any, config: ClusterConfig | None = None, *, valid: Any = None) -> SweepPlan:
    """Draw the sweep subsample and the candidate ks, as :func:`cluster_embeddings` does.

    For orchestrators that fan the sweep out themselves: ``evaluate_k(plan.sample, k,
    plan.sweep_seed, config.sweep_batch_size, n_init=config.sweep_n_init, n_threads=1)`` for
    every ``k`` in ``plan.ks``, then :func:`choose_k`, gives the k the library's own sweep
    chooses; then ``cluster_embeddings(source, replace(config, n_clusters=k), valid=valid)``.

    Parameters
    ----------
    source : EmbeddingStore, store path, ChunkSource or array-like of shape (N, D)
    config : ClusterConfig, optional
        ``cluster_range``, ``sweep_samples``, ``normalize`` and ``random_state`` are used.
    valid : array-like of shape (N,), bool, optional
        As in :func:`cluster_embeddings` (excluded rows are never in the subsample).

    Returns
    -------
    SweepPlan
    """
    config = ClusterConfig() if config is None else check_config(config)
    if config.use_labels:
        raise ValueError(
            "plan_sweep plans the unsupervised sweep; with use_labels=True the sweep runs per "
            "class inside cluster_embeddings"
        )
    src = as_source(source, normalize=config.normalize, valid=valid)
    mask = resolve_valid(valid, src)
    data = src if mask is None else RowSubset(src, np.flatnonzero(mask))
    entropy = root_entropy(config.random_state)
    sample_seed = derive_seed(entropy, KEY_SAMPLE)
    sweep_seed = derive_seed(entropy, KEY_SWEEP)
    sample = sample_rows(data, config.sweep_samples, sample_seed)
    ks = candidate_ks(config.cluster_range, sample, data.n_rows)
    sample.flags.writeable = False
    return SweepPlan(
        sample=sample,
        ks=tuple(ks),
        sample_seed=sample_seed,
        sweep_seed=sweep_seed,
        n_rows=data.n_rows,
    )


def candidate_ks(cluster_range: tuple[int, int], sample: np.ndarray, n_rows: int) -> list[int]:
    """The sweep's ks: the range, capped (with a warning) at what the sample supports."""
    low, high = cluster_range
    distinct = count_distinct_rows(sample, enough=high)
    if distinct < 2:
        raise constant_features_error(sample.shape[0], n_rows)
    limit = min(sample.shape[0] - 1, distinct)
    if low > limit:
        raise ValueError(
            f"cluster_range={cluster_range!r} needs at least {low + 1} samples with {low} "
            f"distinct rows, but there are {sample.shape[0]} samples with {distinct} "
            f"distinct rows; lower the range to at most {limit} or pass n_clusters"
        )
    if high > limit:
        warnings.warn(
            f"cluster_range={cluster_range!r} capped at k <= {limit}: the "
            f"Davies-Bouldin index needs k <= samples - 1 and distinct rows >= k "
            f"({sample.shape[0]} samples, {distinct} distinct)",
            ClusterWarning,
            stacklevel=4,
        )
    return list(range(low, min(high, limit) + 1))


def edge_of_range_warning(
    chosen_k: int, cluster_range: Sequence[int], chosen_by: str
) -> str | None:
    """The sentence to show when Davies-Bouldin chose an end of the swept k range.

    A k at the top of the range may only be the best of the ks tried (the index may keep
    falling beyond it); a k at the bottom may mean there is little cluster structure.

    Parameters
    ----------
    chosen_k : int
        The k that was used.
    cluster_range : (int, int)
        The inclusive ``(low, high)`` that was swept (as configured; the CLI's ``--k-range``).
    chosen_by : str
        ``ClusterResult.chosen_by``; only ``"davies_bouldin"`` can warn (an explicit k is the
        user's choice, and per-class sweeps are reported per class).

    Returns
    -------
    str or None
        E.g. ``"k = 20 is the top of the swept range 2..20; the Davies-Bouldin curve may keep
        falling: try --k-range 2:40"``, or None when k lies strictly inside the range.
    """
    low, high = check_cluster_range(cluster_range)
    k = check_int("chosen_k", chosen_k, 1)
    check_choice("chosen_by", chosen_by, CHOSEN_BY)
    if chosen_by != "davies_bouldin" or low == high:
        return None
    if k >= high:
        return (
            f"k = {k} is the top of the swept range {low}..{high}; the Davies-Bouldin curve "
            f"may keep falling: try --k-range {low}:{2 * high}"
        )
    if k == low and low > 2:
        return (
            f"k = {k} is the bottom of the swept range {low}..{high}; the Davies-Bouldin curve "
            f"may keep falling below it: try --k-range 2:{high}"
        )
    if k == low:
        return (
            f"k = {k} is the bottom of the swept range {low}..{high}, the smallest k the "
            f"Davies-Bouldin index allows; the data may have little cluster structure: check "
            f"the sweep plot, or pass --k to choose k yourself"
        )
    return None
