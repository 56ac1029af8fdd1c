"""One candidate k scored on half-sample replicates: torch k-means fits and the Davies-Bouldin index.

Replicate ``b`` of a sweep is a seeded random half of the sweep sample (the same halves for every
k, so that ks are compared on the same rows); each is fitted afresh (k-means++ then Lloyd in
torch, :mod:`cl_core.cluster.kmeans_torch`, on the CPU or a CUDA device) and scored on its own
rows. The spread of the index over the replicates is what :mod:`~cl_core.cluster.choice` needs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cl_core.cluster.kmeans_torch import fit_kmeans_torch, kmeans_plusplus_init, nearest_centroids
from cl_core.cluster.seeds import KEY_HALF, KEY_HALF_INIT, derive_seed
from cl_core.devices import resolve_device
from cl_core.threads import torch_threads

INIT_ROWS_PER_CLUSTER = 10
"""k-means++ seeds each replicate fit on at most ``max(4096, 10 k)`` of its rows."""

DB_BLOCK_ROWS = 4096
"""Rows per float64 block of :func:`davies_bouldin` (a whole replicate in float64 was 3 copies of
it, ~90 MiB at 10,000 x 384, side by side in every sweep job)."""


def half_samples(n: int, n_replicates: int, entropy: int) -> list[np.ndarray]:
    """``n_replicates`` seeded random halves (``n // 2`` sorted row indices each) of ``n`` rows."""
    size = max(n // 2, 1)
    out = []
    for b in range(n_replicates):
        rng = np.random.default_rng(derive_seed(entropy, KEY_HALF, b))
        out.append(np.sort(rng.choice(n, size=size, replace=False)))
    return out


def fit_and_score(
    rows: np.ndarray,
    k: int,
    seed: int,
    *,
    n_init: int = 1,
    max_iter: int = 10,
    device: Any = "cpu",
    batch_rows: int = 65_536,
    n_threads: int | None = 1,
) -> tuple[float, float]:
    """Fit k clusters on ``rows`` (k-means++ then Lloyd) and score them.

    Parameters
    ----------
    rows : ndarray of shape (n, D), float32
        One replicate (normalised rows), ``n >= k + 1``.
    k : int
    seed : int
        Seed of the k-means++ rows and draws.
    n_init : int
        k-means++ draws (the lowest inertia on the seeding rows wins).
    max_iter : int
        Most Lloyd passes (fewer when the centres stop moving).
    device : str or torch.device
        ``"cpu"`` or a CUDA device.
    batch_rows : int
        Rows per device batch of the Lloyd passes.
    n_threads : int or None
        torch CPU threads of the job.

    Returns
    -------
    (float, float)
        The Davies-Bouldin index and the inertia (sum of squared distances) of ``rows``.
    """
    import torch

    n = rows.shape[0]
    rng = np.random.default_rng(derive_seed(seed, KEY_HALF_INIT))
    n_seed_rows = min(n, max(4096, INIT_ROWS_PER_CLUSTER * k))
    seed_rows = rows if n_seed_rows >= n else rows[np.sort(rng.choice(n, n_seed_rows, False))]
    with torch_threads(n_threads):
        init = kmeans_plusplus_init(seed_rows, k, seed, n_init=n_init, device=device)
        fitted = fit_kmeans_torch(
            rows,
            k,
            init=init,
            max_iter=max_iter,
            batch_rows=batch_rows,
            random_state=seed,
            device=device,
            normalize="none",
            final_pass=False,
            device_cache_bytes=1 << 62,
            n_threads=None,
        )
        with torch.no_grad():
            data = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
            data = data.to(resolve_device(device))
            centres = torch.from_numpy(np.array(fitted.centroids)).to(data.device)
            labels, sq = nearest_centroids(data, centres)
            return davies_bouldin(data, labels), float(sq.double().sum())


def davies_bouldin(rows: Any, labels: Any) -> float:
    """The Davies-Bouldin index of a labelled tensor of rows (scikit-learn's definition).

    Parameters
    ----------
    rows : Tensor of shape (n, D)
    labels : Tensor of shape (n,), int64
        Cluster ids; empty ids are ignored (as scikit-learn does with absent labels).

    Returns
    -------
    float
        Mean over clusters of the largest ``(s_i + s_j) / ||c_i - c_j||``, with ``s_i`` the mean
        distance of cluster i's rows to their mean ``c_i``; 0.0 when every row sits on its
        centre or all centres coincide; NaN with fewer than two non-empty clusters.
    """
    import torch

    counts = torch.bincount(labels)
    present = torch.nonzero(counts).flatten()
    if present.numel() < 2:
        return math.nan
    remap = torch.full_like(counts, -1)
    remap[present] = torch.arange(present.numel(), device=counts.device)
    compact = remap[labels]
    sizes = counts[present].double()
    shape = (present.numel(), rows.shape[1])
    centres = torch.zeros(shape, dtype=torch.float64, device=rows.device)
    for block in range(0, rows.shape[0], DB_BLOCK_ROWS):  # float64 a block at a time
        part = slice(block, block + DB_BLOCK_ROWS)
        centres.index_add_(0, compact[part], rows[part].double())
    centres /= sizes[:, None]
    scatter = torch.zeros(present.numel(), dtype=torch.float64, device=rows.device)
    for block in range(0, rows.shape[0], DB_BLOCK_ROWS):
        part = slice(block, block + DB_BLOCK_ROWS)
        offsets = rows[part].double() - centres[compact[part]]
        scatter.index_add_(0, compact[part], torch.linalg.vector_norm(offsets, dim=1))
    scatter /= sizes
    between = torch.cdist(centres, centres, compute_mode="donot_use_mm_for_euclid_dist")
    if bool(torch.all(scatter < 1e-12)) or bool(torch.all(between < 1e-12)):
        return 0.0
    between[between == 0] = math.inf  # coinciding centres, as scikit-learn
    between.fill_diagonal_(math.inf)
    ratios = (scatter[:, None] + scatter[None, :]) / between
    return float(ratios.max(dim=1).values.mean())
