"""The Davies-Bouldin k sweep: plan it, evaluate each k, choose k.

Every candidate k (the grid of ``cluster_range``, then a refinement around the best,
:mod:`~cl_core.cluster.grid`) is an independent job (:func:`evaluate_k`: the index over
half-sample replicates of one seeded sample, which :func:`plan_sweep` draws exactly as
:func:`cl_core.cluster.cluster_embeddings` does); :func:`sweep_k` runs the jobs in parallel on
Dask, :func:`run_sweep` runs both rounds, :func:`choose_k` applies the standard-error rule
(one SE, three on a flat curve: :mod:`~cl_core.cluster.choice`), and
:func:`edge_of_range_warning` says when the chosen k is an end of the range.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cl_core.cluster.choice import choose_in_band
from cl_core.cluster.config import (
    CHOSEN_BY,
    DEFAULT_SWEEP_BATCH_SIZE,
    DEFAULT_SWEEP_REPLICATES,
    SCHEDULERS,
    ClusterConfig,
    ClusterWarning,
    check_cluster_range,
    check_config,
    resolve_fit_device,
)
from cl_core.cluster.grid import (
    ROWS_PER_CLUSTER,
    SWEEP_MEMORY_BYTES,
    check_range_fits,
    k_grid,
    refine_ks,
    replicate_rows,
    sweep_sample_size,
)
from cl_core.cluster.replicates import fit_and_score, half_samples
from cl_core.cluster.results import SweepPoint
from cl_core.cluster.sampling import (
    check_sample,
    constant_features_error,
    count_distinct_rows,
    sample_rows,
)
from cl_core.cluster.seeds import KEY_SAMPLE, KEY_SWEEP, derive_seed, root_entropy
from cl_core.cluster.sources import RowSubset, as_source, resolve_valid
from cl_core.threads import thread_limit, torch_threads
from cl_core.validation import check_choice, check_int


def evaluate_k(
    sample: np.ndarray,
    k: int,
    random_state: int | None = 0,
    batch_size: int = DEFAULT_SWEEP_BATCH_SIZE,
    *,
    n_init: int = 1,
    n_threads: int | None = 1,
    class_label: Any = None,
    replicates: int = DEFAULT_SWEEP_REPLICATES,
    device: str = "cpu",
) -> SweepPoint:
    """Score k on ``replicates`` half-samples of ``sample``: one independent job of the sweep.

    A pure function of picklable arguments (the Prefect flow maps it as a Dask task). The
    half-samples derive from ``random_state`` alone (the same rows for every k); each replicate
    is fitted afresh (k-means++ then Lloyd in torch, :mod:`~cl_core.cluster.replicates`) with a
    seed derived from ``(random_state, k, replicate)``, so a job's result does not depend on
    which other jobs run or where.

    Parameters
    ----------
    sample : ndarray of shape (n, D)
        Normalised rows (see :func:`sample_rows`).
    k : int
        Clusters, ``2 <= k <= n // 2 - 1`` (Davies-Bouldin needs ``k <= rows - 1`` in each half).
    random_state : int or None
        Sweep seed (the same for every k of one sweep).
    batch_size : int
        Rows per device batch of the Lloyd passes (speed only).
    n_init : int
        k-means++ draws per replicate; the one with the lowest inertia on its seeding rows wins.
    n_threads : int or None
        torch CPU threads of the job (1 keeps parallel jobs from oversubscribing cores); None
        leaves torch's setting.
    class_label : optional
        Recorded in the returned point (supervised mode).
    replicates : int
        Half-sample replicates (>= 2 for a standard error; 1 gives NaN).
    device : {"cpu", "cuda"} or "cuda:N"
        Where the fits run.

    Returns
    -------
    SweepPoint
        ``davies_bouldin`` the mean over the replicates, ``davies_bouldin_se`` the standard
        deviation of the replicates (the half-sample estimate of the index's standard error on
        the whole sweep sample), ``replicates`` every value.
    """
    values = check_sample(sample)
    n = values.shape[0]
    k = _check_k_for_index(k, replicate_rows(n))
    n_replicates = check_int("replicates", replicates, 1)
    entropy = root_entropy(random_state)
    started = time.perf_counter()
    scores: list[float] = []
    inertia = 0.0
    for b, index in enumerate(half_samples(n, n_replicates, entropy)):
        index_value, replicate_inertia = fit_and_score(
            values[index],
            k,
            derive_seed(entropy, KEY_SWEEP, k, b),
            n_init=check_int("n_init", n_init, 1),
            device=device,
            batch_rows=check_int("batch_size", batch_size, 1),
            n_threads=n_threads,
        )
        if not math.isfinite(index_value):
            raise ValueError(
                f"a half-sample has fewer than 2 distinct rows, so k={k} clusters cannot be "
                "scored; the features are (nearly) constant - check the embedding stage"
            )
        scores.append(index_value)
        inertia += replicate_inertia
    mean = float(np.mean(scores))
    # Half-sampling (McCarthy 1969): the spread of half-sample values estimates the standard
    # error of the index on the whole sample, whatever the number of replicates.
    se = float(np.std(scores, ddof=1)) if len(scores) > 1 else math.nan
    return SweepPoint(
        k=k,
        davies_bouldin=mean,
        inertia=inertia / n_replicates * n / replicate_rows(n),  # per sample of n rows
        seconds=time.perf_counter() - started,
        n_samples=n,
        class_label=class_label,
        davies_bouldin_se=se,
        replicates=tuple(scores),
    )


def _check_k_for_index(k: object, n: int) -> int:
    k = check_int("k", k, 2, " (the Davies-Bouldin index needs at least 2 clusters)")
    if k > n - 1:
        raise ValueError(
            f"k={k} is too large for half-samples of {n} rows: the Davies-Bouldin index needs "
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
    n_init: int = 1,
    class_label: Any = None,
    replicates: int = DEFAULT_SWEEP_REPLICATES,
    device: str = "cpu",
) -> tuple[SweepPoint, ...]:
    """Run :func:`evaluate_k` for every k in parallel on Dask (one after another on a GPU).

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
    batch_size, n_init, replicates, device
        Passed to :func:`evaluate_k`; with a CUDA ``device`` the jobs run one after another
        in this process (the GPU is the parallelism).
    class_label : optional
        Recorded in every point (supervised mode).

    Returns
    -------
    tuple of SweepPoint
        In the order of ``ks``. Every job runs single-threaded, so the results are the same on
        every backend.
    """
    values = check_sample(sample)
    candidates = [_check_k_for_index(k, replicate_rows(values.shape[0])) for k in ks]
    if not candidates:
        raise ValueError("ks is empty; give at least one k to evaluate, e.g. range(2, 21)")
    if len(set(candidates)) != len(candidates):
        raise ValueError(f"ks has repeated values {list(ks)!r}; give each k once")
    check_choice("scheduler", scheduler, SCHEDULERS)
    entropy = root_entropy(random_state)  # fixed before dispatch, so every job shares it
    options = {
        "n_init": n_init,
        "n_threads": 1,
        "class_label": class_label,
        "replicates": replicates,
        "device": device,
    }
    if device != "cpu":
        scheduler, client = "synchronous", None
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
    # torch's thread count is process-wide too: concurrent jobs each set it to 1 and restore what
    # they found, which this outer limit makes 1 as well, so no job runs with another count.
    with thread_limit(1, "blas"), torch_threads(1):
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
    """The k of the standard-error rule (:func:`cl_core.cluster.choice.choose_in_band`)."""
    return choose_in_band(points).k


def best_k(points: Sequence[SweepPoint]) -> int:
    """The k of the lowest mean index (ties: the smaller k): the centre of the refinement."""
    finite = [point for point in points if math.isfinite(point.davies_bouldin)]
    if not finite:
        return choose_k(points)  # raises the degenerate-features error
    return min(finite, key=lambda point: (point.davies_bouldin, point.k)).k


def run_sweep(
    sample: np.ndarray, grid: Sequence[int], random_state: int | None = 0, **options: Any
) -> tuple[SweepPoint, ...]:
    """The whole sweep: :func:`sweep_k` over ``grid``, then once over :func:`refine_ks` of the
    best grid k; every point, sorted by k. ``options`` go to :func:`sweep_k`."""
    points = sweep_k(sample, grid, random_state, **options)
    extra = refine_ks(grid, best_k(points))
    if extra:
        points = points + sweep_k(sample, extra, random_state, **options)
    return tuple(sorted(points, key=lambda point: point.k))


@dataclass(frozen=True, eq=False)
class SweepPlan:
    """What every job of a Davies-Bouldin k sweep shares, exactly as :func:`cluster_embeddings`.

    Attributes
    ----------
    sample : ndarray of shape (n, D), float32
        The normalised subsample every k is fitted and scored on.
    ks : tuple of int
        The first-round candidates: :func:`~cl_core.cluster.grid.k_grid` of ``cluster_range``
        (capped at the sample's distinct rows); :func:`refine_ks` of the best adds the second.
    sample_seed : int
        Seed the subsample was drawn with.
    sweep_seed : int
        Pass as ``random_state`` to :func:`evaluate_k` / :func:`sweep_k`.
    n_rows : int
        Rows that take part (N minus the excluded ones).
    device : str
        Where the sweep's fits run (``"cpu"`` or ``"cuda"``; :func:`resolve_fit_device`).
    """

    sample: np.ndarray
    ks: tuple[int, ...]
    sample_seed: int
    sweep_seed: int
    n_rows: int
    device: str = "cpu"


def plan_sweep(source: Any, config: ClusterConfig | None = None, *, valid: Any = None) -> SweepPlan:
    """Draw the sweep subsample and the candidate ks, as :func:`cluster_embeddings` does.

    For orchestrators that fan the sweep out themselves: ``evaluate_k(plan.sample, k,
    plan.sweep_seed, config.sweep_batch_size, n_init=config.sweep_n_init,
    replicates=config.sweep_replicates, device=plan.device)`` for every ``k`` in ``plan.ks``,
    then the same for ``refine_ks(plan.ks, best_k(points))``, then :func:`choose_k` over all
    points, gives the k the library's own sweep chooses; hand the points to
    ``cluster_embeddings(source, config, sweep=points, sample=plan.sample, valid=valid)``.

    The sample has :func:`~cl_core.cluster.grid.sweep_sample_size` rows; a range whose top k
    it cannot score is refused (ValueError) before any row is read.

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
    size = sweep_size(config, data.n_rows, data.dim)
    check_range_fits(config.cluster_range, size, data.n_rows)
    sample = sample_rows(data, size, sample_seed)
    ks = candidate_ks(config.cluster_range, sample, data.n_rows)
    sample.flags.writeable = False
    return SweepPlan(
        sample=sample,
        ks=tuple(ks),
        sample_seed=sample_seed,
        sweep_seed=sweep_seed,
        n_rows=data.n_rows,
        device=resolve_fit_device(config),
    )


def sweep_size(config: ClusterConfig, n_rows: int, dim: int | None = None) -> int:
    """Rows of the sweep sample of ``config`` over ``n_rows`` rows of ``dim`` features."""
    return sweep_sample_size(config.cluster_range, n_rows, config.sweep_samples, dim)


def candidate_ks(cluster_range: tuple[int, int], sample: np.ndarray, n_rows: int) -> list[int]:
    """The sweep's first-round ks: the grid of the range, refused when the sample's half-samples
    cannot score its top k, capped (with a warning) at the sample's distinct rows."""
    low, high = cluster_range
    check_range_fits(cluster_range, sample.shape[0], n_rows)
    distinct = count_distinct_rows(sample, enough=high)
    if distinct < 2:
        raise constant_features_error(sample.shape[0], n_rows)
    limit = min(replicate_rows(sample.shape[0]) - 1, distinct)
    if low > limit:
        raise ValueError(
            f"cluster_range={cluster_range!r} needs at least {low} distinct rows, but the "
            f"{sample.shape[0]} samples have {distinct} distinct rows; lower the range to at "
            f"most {limit} or pass n_clusters"
        )
    if high > limit:
        warnings.warn(
            f"cluster_range={cluster_range!r} capped at k <= {limit}: the sample has only "
            f"{distinct} distinct rows",
            ClusterWarning,
            stacklevel=4,
        )
    return list(k_grid(low, min(high, limit)))


def describe_sweep(
    points: Sequence[SweepPoint], n_sample: int, config: ClusterConfig, device: str
) -> dict[str, Any]:
    """How a sweep chose k, JSON-ready: :class:`~cl_core.cluster.choice.KChoice`'s fields plus
    the grid, the refinement, the sample and replicate sizes, the sizing rule and the device.

    The grid is recovered from the points (the refinement never leaves the grid's range).
    """
    ks = sorted(point.k for point in points)
    grid_ks = set(k_grid(ks[0], ks[-1]))
    return {
        **choose_in_band(points).to_dict(),
        "grid": [k for k in ks if k in grid_ks],
        "refined": [k for k in ks if k not in grid_ks],
        "sample_rows": int(n_sample),
        "replicate_rows": replicate_rows(n_sample),
        "replicates": int(config.sweep_replicates),
        "rows_per_cluster": ROWS_PER_CLUSTER,
        "memory_bytes": SWEEP_MEMORY_BYTES,
        "device": device,
    }


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
