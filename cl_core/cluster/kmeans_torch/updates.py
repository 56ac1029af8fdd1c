"""The passes of the torch k-means over the streamed batches: Lloyd, mini-batch, measure.

:func:`run_lloyd` and :func:`run_minibatch` return ``(centroids, inertia, counts, n_iter,
converged, n_relocated)``, the fields :class:`TorchKMeansResult` is built from.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from cl_core.cluster.kmeans_torch.batches import DeviceBatches
from cl_core.cluster.kmeans_torch.kernels import cluster_sums, nearest_centroids
from cl_core.cluster.seeds import KEY_TORCH_ORDER, derive_seed

if TYPE_CHECKING:
    import torch

ALGORITHMS = ("lloyd", "minibatch")
"""Update rules of :func:`fit_kmeans_torch`."""


def run_lloyd(
    batches: DeviceBatches, centroids: torch.Tensor, max_iter: int, tol: float, max_scores: int
) -> tuple[torch.Tensor, float, torch.Tensor, int, bool, int]:
    """Full-batch Lloyd: each pass assigns every row, then moves every centre to its rows' mean.

    Converged when the summed squared centre shift is at most ``tol`` x the mean per-dimension
    variance of the rows (scikit-learn's criterion). A centre that receives no row moves onto
    one of the rows farthest from their centre in that pass (counted in ``n_relocated``).
    """
    import torch

    k, dim = centroids.shape
    dev = centroids.device
    threshold: float | None = None
    inertia = math.inf
    counts = torch.zeros(k, dtype=torch.int64, device=dev)
    relocated = 0
    converged = False
    n_iter = 0
    far_keep = min(k, batches.src.n_rows)
    for _ in range(max_iter):
        n_iter += 1
        centroid_sq = (centroids * centroids).sum(dim=1)
        sums = torch.zeros((k, dim), dtype=torch.float64, device=dev)
        counts = torch.zeros(k, dtype=torch.int64, device=dev)
        total = torch.zeros((), dtype=torch.float64, device=dev)
        moments = None
        if threshold is None:  # first pass: the data's per-dimension variance for tol
            moments = [
                torch.zeros(dim, dtype=torch.float64, device=dev),
                torch.zeros(dim, dtype=torch.float64, device=dev),
            ]
        far_sq = torch.empty(0, dtype=torch.float32, device=dev)
        far_rows = torch.empty((0, dim), dtype=torch.float32, device=dev)
        for _, rows in batches.iterate():
            labels, sq = nearest_centroids(rows, centroids, centroid_sq, max_scores=max_scores)
            sums += cluster_sums(rows, labels, k, max_scores=max_scores).double()
            counts += torch.bincount(labels, minlength=k)
            total += sq.double().sum()
            if moments is not None:
                # float64 sums without a float64 copy of the batch (2x its size, each)
                moments[0] += rows.sum(dim=0, dtype=torch.float64)
                moments[1] += (rows * rows).sum(dim=0, dtype=torch.float64)
            # Keep the far_keep rows farthest from their centre (candidates for empty clusters).
            top = torch.topk(sq, min(far_keep, sq.shape[0]), sorted=False).indices
            pool_sq = torch.cat([far_sq, sq[top]])
            pool_rows = torch.cat([far_rows, rows[top]])
            keep = torch.topk(pool_sq, min(far_keep, pool_sq.shape[0]), sorted=True).indices
            far_sq, far_rows = pool_sq[keep], pool_rows[keep]
        inertia = float(total)
        if moments is not None:
            n = batches.src.n_rows
            mean = moments[0] / n
            variance = (moments[1] / n - mean * mean).clamp_min(0.0)
            threshold = tol * float(variance.mean())
        empty = torch.nonzero(counts == 0).flatten()
        new = torch.where(
            counts[:, None] > 0, sums / counts.clamp_min(1)[:, None].double(), centroids.double()
        ).float()
        if empty.numel():
            n_move = min(int(empty.numel()), far_rows.shape[0])
            new[empty[:n_move]] = far_rows[:n_move]
            relocated += n_move
        shift = float(((new - centroids) ** 2).sum())
        centroids = new
        assert threshold is not None
        if shift <= threshold and not empty.numel():
            converged = True
            break
    return centroids, inertia, counts, n_iter, converged, relocated


def run_minibatch(
    batches: DeviceBatches, centroids: torch.Tensor, max_iter: int, max_scores: int, seed: int
) -> tuple[torch.Tensor, float, torch.Tensor, int, bool, int]:
    """Online mini-batch k-means (Sculley 2010, without random reassignment), ``max_iter`` passes.

    Batches are visited in a seeded random order per pass (the first pass in dataset order, so
    that it checks the rows and fills the device cache); every centre moves to the
    count-weighted mean of its old position and the batch's rows.
    """
    import torch

    k = centroids.shape[0]
    dev = centroids.device
    seen = torch.zeros(k, dtype=torch.float64, device=dev)
    work = centroids.double()
    inertia = math.inf
    counts = torch.zeros(k, dtype=torch.int64, device=dev)
    for epoch in range(max_iter):
        order: np.ndarray | None = np.random.default_rng(
            derive_seed(seed, KEY_TORCH_ORDER, epoch)
        ).permutation(batches.n_batches)
        if epoch == 0 and not batches.checked:
            order = None  # the first pass runs in dataset order: it checks rows, fills the cache
        total = torch.zeros((), dtype=torch.float64, device=dev)
        counts = torch.zeros(k, dtype=torch.int64, device=dev)
        for _, rows in batches.iterate(order):
            current = work.float()
            labels, sq = nearest_centroids(rows, current, max_scores=max_scores)
            batch_counts = torch.bincount(labels, minlength=k)
            sums = cluster_sums(rows, labels, k, max_scores=max_scores).double()
            hit = batch_counts > 0
            updated = (work * seen[:, None] + sums) / (seen + batch_counts)[:, None].clamp_min(1)
            work = torch.where(hit[:, None], updated, work)
            seen += batch_counts
            counts += batch_counts
            total += sq.double().sum()
        inertia = float(total)
    return work.float(), inertia, counts, max_iter, False, 0


def measure(
    batches: DeviceBatches, centroids: torch.Tensor, max_scores: int
) -> tuple[float, torch.Tensor]:
    """``(inertia, counts)`` of ``centroids``: one assign-only pass over all rows."""
    import torch

    k = centroids.shape[0]
    centroid_sq = (centroids * centroids).sum(dim=1)
    total = torch.zeros((), dtype=torch.float64, device=centroids.device)
    counts = torch.zeros(k, dtype=torch.int64, device=centroids.device)
    for _, rows in batches.iterate():
        labels, sq = nearest_centroids(rows, centroids, centroid_sq, max_scores=max_scores)
        counts += torch.bincount(labels, minlength=k)
        total += sq.double().sum()
    return float(total), counts
