"""The torch k-means kernels: nearest centroid with its exact distance, per-cluster sums.

Pure tensor functions (shapes in the docstrings) with a bounded working set: at most
``max_scores`` rows x centroids scores (or one-hot entries) per matmul.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEFAULT_MAX_SCORES = 1 << 24
"""Rows x centroids distance scores per matmul (64 MiB fp32); bounds the device working set."""


def nearest_centroids(
    rows: torch.Tensor,
    centroids: torch.Tensor,
    centroid_sq: torch.Tensor | None = None,
    *,
    max_scores: int = DEFAULT_MAX_SCORES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest centroid of every row and the exact squared distance to it.

    Parameters
    ----------
    rows : Tensor of shape (B, D), float32
    centroids : Tensor of shape (k, D), float32, on the same device
    centroid_sq : Tensor of shape (k,), optional
        ``(centroids ** 2).sum(1)``, when the caller has it already.
    max_scores : int
        Largest number of ``rows x k`` scores computed by one matmul.

    Returns
    -------
    labels : Tensor of shape (B,), int64
        ``argmin_j ||x - c_j||^2`` from the fp32 expansion ``||c_j||^2 - 2 x.c_j``.
    sq_distances : Tensor of shape (B,), float32
        ``||x - c_label||^2`` computed from the difference (exact, >= 0).
    """
    import torch

    if centroid_sq is None:
        centroid_sq = (centroids * centroids).sum(dim=1)
    step = max(1, max_scores // centroids.shape[0])
    labels = torch.empty(rows.shape[0], dtype=torch.int64, device=rows.device)
    for start in range(0, rows.shape[0], step):
        part = rows[start : start + step]
        # ||c||^2 - 2 x.c  (||x||^2 is constant per row and cannot change the argmin)
        scores = torch.addmm(centroid_sq, part, centroids.T, beta=1.0, alpha=-2.0)
        labels[start : start + step] = scores.argmin(dim=1)
    difference = rows - centroids[labels]
    return labels, (difference * difference).sum(dim=1)


def cluster_sums(
    rows: torch.Tensor,
    labels: torch.Tensor,
    k: int,
    *,
    onehot: bool | None = None,
    max_scores: int = DEFAULT_MAX_SCORES,
) -> torch.Tensor:
    """Per-cluster sums of the rows, float32 (k, D).

    Parameters
    ----------
    rows : Tensor of shape (B, D), float32
    labels : Tensor of shape (B,), int64 in [0, k)
    k : int
    onehot : bool, optional
        Sum with a one-hot matmul (deterministic on CUDA) instead of ``index_add_``
        (sequential on CPU, atomic on CUDA). Default: one-hot exactly on CUDA.
    max_scores : int
        Largest one-hot matrix (``k x rows`` entries) built at once.

    Returns
    -------
    Tensor of shape (k, D), float32
    """
    import torch

    if onehot is None:
        onehot = rows.device.type == "cuda"
    out = torch.zeros((k, rows.shape[1]), dtype=rows.dtype, device=rows.device)
    if not onehot:
        return out.index_add_(0, labels, rows)
    step = max(1, max_scores // k)
    for start in range(0, rows.shape[0], step):
        part = labels[start : start + step]
        indicator = torch.zeros((k, part.shape[0]), dtype=rows.dtype, device=rows.device)
        indicator[part, torch.arange(part.shape[0], device=rows.device)] = 1.0
        out += indicator @ rows[start : start + step]
    return out
