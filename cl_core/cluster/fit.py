"""Fitting the centroids: exact k-means on small data, streamed refinement otherwise.

When the subsample is the whole data set the centroids are scikit-learn ``KMeans`` on it.
Otherwise ``MiniBatchKMeans`` on the subsample gives the initial centres, which
``MiniBatchKMeans.partial_fit`` refines over all rows, streamed in seeded random block order
(:func:`fit_kmeans`); with ``fit_device="cuda"`` the refinement is full-batch Lloyd in torch
(:mod:`cl_core.cluster.kmeans_torch`, imported only then).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from cl_core.cluster.config import ClusterConfig, check_config, resolve_fit_device
from cl_core.cluster.sampling import (
    check_sample,
    constant_features_error,
    count_distinct_rows,
    sample_rows,
)
from cl_core.cluster.seeds import (
    KEY_FIT_SAMPLE,
    KEY_INIT,
    KEY_ORDER,
    KEY_SAMPLE,
    KEY_STREAM,
    derive_seed,
    root_entropy,
)
from cl_core.cluster.sources import ArraySource, ChunkSource, as_source
from cl_core.threads import thread_limit
from cl_core.validation import check_int

_INIT_BATCH_SIZE = 1024  # MiniBatchKMeans batch of the initial centres (scikit-learn's default)


def initial_centers(
    rows: np.ndarray, k: int, config: ClusterConfig, seed: int, *, exact: bool
) -> np.ndarray:
    """Centres fitted on in-memory rows: the best of ``config.n_init`` k-means++ starts.

    With ``exact`` (the rows are the whole data set) this is scikit-learn ``KMeans`` (Lloyd to
    convergence), the final answer. Otherwise the centres only start the streamed refinement, so
    the much cheaper ``MiniBatchKMeans`` (k-means++ on ``3 * 1024`` rows, the
    restarts compared on those rows) is enough. k = 1 is the mean.
    """
    if k == 1:
        return rows.astype(np.float64).mean(axis=0, keepdims=True).astype(np.float32)
    from sklearn.cluster import KMeans, MiniBatchKMeans

    model: Any
    if exact:
        model = KMeans(n_clusters=k, init="k-means++", n_init=config.n_init, random_state=seed)
    else:
        model = MiniBatchKMeans(
            n_clusters=k,
            init="k-means++",
            n_init=config.n_init,
            batch_size=min(_INIT_BATCH_SIZE, rows.shape[0]),
            random_state=seed,
            compute_labels=False,
        )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Number of distinct clusters")
        model.fit(rows)
    return np.asarray(model.cluster_centers_, dtype=np.float32)


class _Batcher:
    """Collects one group's rows and feeds them to its model in mini-batches of >= batch_size."""

    def __init__(self, model: Any, batch_size: int) -> None:
        self.model = model
        self.batch_size = batch_size
        self.pending: list[np.ndarray] = []
        self.n_pending = 0

    @property
    def min_rows(self) -> int:
        # scikit-learn's first partial_fit call needs at least k rows.
        started = hasattr(self.model, "cluster_centers_")
        return 1 if started else int(self.model.n_clusters)

    def add(self, rows: np.ndarray) -> None:
        if rows.shape[0]:
            self.pending.append(rows)
            self.n_pending += rows.shape[0]

    def flush(self, *, force: bool = False) -> None:
        threshold = self.min_rows if force else max(self.batch_size, self.min_rows)
        if self.n_pending < threshold:
            return
        batch = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending)
        self.pending, self.n_pending = [], 0
        self.model.partial_fit(batch)


def stream_refine(
    src: ChunkSource,
    initial: Sequence[np.ndarray],
    config: ClusterConfig,
    entropy: int,
    row_groups: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Refine each group's centres by ``MiniBatchKMeans.partial_fit`` over streamed rows.

    Mini-batches are blocks of ``batch_size`` consecutive rows visited in a seeded random order
    per epoch (independent of the storage chunking). In supervised mode a block's rows are routed
    to their class's model (``row_groups``: group per row, -1 = not refined) and collected until
    a full batch is ready; the buffers are flushed when they hold more than two batches in total,
    so memory stays bounded. Random reassignment of "empty" centres is disabled: the initial
    centres are already converged on the subsample, and a class-sorted data set would otherwise
    reassign the centres of classes not streamed yet.
    """
    from sklearn.cluster import MiniBatchKMeans

    block_rows = config.batch_size
    batchers = [
        _Batcher(
            MiniBatchKMeans(
                n_clusters=centers.shape[0],
                init=centers,
                n_init=1,
                batch_size=block_rows,
                reassignment_ratio=0.0,
                compute_labels=False,
                random_state=derive_seed(entropy, KEY_STREAM, group),
            ),
            block_rows,
        )
        for group, centers in enumerate(initial)
    ]
    n_blocks = math.ceil(src.n_rows / block_rows)
    for epoch in range(config.n_epochs):
        order = np.random.default_rng(derive_seed(entropy, KEY_ORDER, epoch)).permutation(n_blocks)
        for start, block in src.iter_blocks(order, block_rows):
            if row_groups is None:
                batchers[0].add(block)
            else:
                _route_rows(block, row_groups[start : start + block.shape[0]], batchers)
            for batcher in batchers:
                batcher.flush()
            if sum(batcher.n_pending for batcher in batchers) > 2 * block_rows:
                for batcher in batchers:
                    batcher.flush(force=True)
        for batcher in batchers:
            batcher.flush(force=True)
    return [
        np.asarray(batcher.model.cluster_centers_, dtype=np.float32)
        if hasattr(batcher.model, "cluster_centers_")
        else np.asarray(initial[group], dtype=np.float32)
        for group, batcher in enumerate(batchers)
    ]


def _route_rows(block: np.ndarray, groups: np.ndarray, batchers: list[_Batcher]) -> None:
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    present, starts = np.unique(sorted_groups, return_index=True)
    bounds = [*starts.tolist(), len(order)]
    for position, group in enumerate(present.tolist()):
        if group >= 0:
            batchers[group].add(block[order[bounds[position] : bounds[position + 1]]])


def init_sample_size(k: int, config: ClusterConfig, n_rows: int) -> int:
    """Rows of the sample the initial centres are fitted on for k clusters out of ``n_rows``.

    At least 3k rows, so that k-means++ has room to spread (as scikit-learn's ``init_size``).
    """
    return min(n_rows, max(config.sweep_samples, 3 * k))


def fit_kmeans(
    source: Any,
    k: int,
    config: ClusterConfig | None = None,
    *,
    sample: np.ndarray | None = None,
) -> np.ndarray:
    """Fit k centroids, streaming the rows chunk by chunk (memory independent of N).

    Parameters
    ----------
    source : ChunkSource, EmbeddingStore, path or array-like of shape (N, D)
        The data (read with ``config.normalize`` unless already a :class:`ChunkSource`).
    k : int
        Number of clusters, ``1 <= k <= N``.
    config : ClusterConfig, optional
        ``n_init``, ``n_epochs``, ``batch_size``, ``sweep_samples``, ``max_fit_samples``,
        ``random_state`` are used.
    sample : ndarray of shape (n, D), optional
        Normalised rows for the initial centres (e.g. the sweep subsample); drawn when omitted.

    Returns
    -------
    ndarray of shape (k, D), float32
    """
    config = ClusterConfig() if config is None else check_config(config)
    src = as_source(source, normalize=config.normalize)
    k = check_k_for_rows(k, src.n_rows)
    entropy = root_entropy(config.random_state)
    with thread_limit(config.n_threads):
        return fit_centers(src, k, config, entropy, sample)


def check_k_for_rows(k: object, n_rows: int) -> int:
    """``k`` as an int in ``[1, n_rows]`` (the explicit ``n_clusters``); else raise naming it."""
    k = check_int("n_clusters", k, 1)
    if k > n_rows:
        raise ValueError(
            f"n_clusters={k} exceeds the number of samples N={n_rows}; choose "
            f"n_clusters <= {n_rows} (or n_clusters=None to choose k automatically)"
        )
    return k


def fit_centers(
    src: ChunkSource, k: int, config: ClusterConfig, entropy: int, sample: np.ndarray | None
) -> np.ndarray:
    """The body of :func:`fit_kmeans` (checked arguments, thread limit set by the caller).

    Parameters
    ----------
    src : ChunkSource
    k : int
        Checked, ``1 <= k <= src.n_rows``.
    config : ClusterConfig
    entropy : int
        The root entropy (:func:`cl_core.cluster.seeds.root_entropy`) every seed derives from.
    sample : ndarray of shape (n, D) or None
        Normalised rows for the initial centres (the sweep sample); drawn when None or too small.

    Returns
    -------
    ndarray of shape (k, D), float32
    """
    if config.max_fit_samples is not None and src.n_rows > config.max_fit_samples:
        subsample = sample_rows(src, config.max_fit_samples, derive_seed(entropy, KEY_FIT_SAMPLE))
        src = ArraySource(subsample, normalize="none", chunk_rows=config.batch_size)
    covers_all = False
    if sample is None or sample.shape[0] < min(src.n_rows, 3 * k):
        size = init_sample_size(k, config, src.n_rows)
        sample = sample_rows(src, size, derive_seed(entropy, KEY_SAMPLE))
        covers_all = size >= src.n_rows
    else:
        sample = check_sample(sample)
        covers_all = sample.shape[0] >= src.n_rows and config.max_fit_samples is None
    _require_distinct(sample, k, src.n_rows)
    seed = derive_seed(entropy, KEY_INIT)
    if not covers_all and k > 1 and resolve_fit_device(config) == "cuda":
        from cl_core.cluster.kmeans_torch import fit_kmeans_torch, kmeans_plusplus_init

        # Same seeded sample as the CPU path, k-means++ there, then Lloyd over all rows on the
        # GPU, streamed in batches (cached on the device when the rows fit in half its memory).
        init = kmeans_plusplus_init(sample, k, seed, n_init=config.n_init)
        fitted = fit_kmeans_torch(
            src,
            k,
            init=init,
            max_iter=config.gpu_max_iter,
            tol=1e-4,
            random_state=seed,
            device="cuda",
            final_pass=False,
        )
        return np.asarray(fitted.centroids, dtype=np.float32)
    centers = initial_centers(sample, k, config, seed, exact=covers_all)
    if covers_all:
        return centers  # Lloyd on every row already; streaming would only add noise
    return stream_refine(src, [centers], config, entropy)[0]


def _require_distinct(sample: np.ndarray, k: int, n_rows: int) -> None:
    """Raise unless ``sample`` (of ``n_rows`` rows) has at least ``k`` distinct rows."""
    distinct = count_distinct_rows(sample, enough=max(k, 2))
    if distinct < 2 <= k:
        raise constant_features_error(sample.shape[0], n_rows)
    if distinct < k:
        scope = "" if sample.shape[0] >= n_rows else f" in a sample of {sample.shape[0]} rows"
        raise ValueError(
            f"n_clusters asks for {k} clusters but there are only {distinct} distinct rows"
            f"{scope} (after normalisation); choose n_clusters <= {distinct}, or remove the "
            "duplicated samples"
        )
