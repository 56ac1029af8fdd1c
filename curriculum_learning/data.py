"""Datasets, labels and devices as the reference accepted them.

Class labels come from ``fit(labels=...)`` (list, array or tensor), ``dataset.targets`` /
``dataset.labels`` (also through ``Subset`` and ``DataLoader``), or the embedding store (the
``(x, y)`` samples). Loaders must keep index order: row i of every array is sample i.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cl_core.validation import check_finite

__all__ = ["as_labels", "as_scores", "dataset_labels", "device_name", "ordered_loader", "to_numpy"]


def device_name(device: Any) -> str:
    """``torch.device('cuda', 0)`` -> ``'cuda:0'``; strings pass through; None -> ``'auto'``."""
    if device is None:
        return "auto"
    return str(device)


def to_numpy(values: Any) -> np.ndarray:
    """An ndarray from an ndarray, a list or a (possibly CUDA, grad-tracking) tensor."""
    if hasattr(values, "detach") and hasattr(values, "cpu"):
        return np.asarray(values.detach().cpu().numpy())
    return np.asarray(values)


def ordered_loader(dataset: Any, batch_size: int) -> Any:
    """A DataLoader over ``dataset`` in index order (a shuffling DataLoader is refused)."""
    from torch.utils.data import DataLoader

    from cl_core.embed import resolve_dataset

    spec = resolve_dataset(dataset)  # refuses shuffled loaders and iterable datasets
    if isinstance(dataset, DataLoader):
        return dataset
    return DataLoader(spec.dataset, batch_size=batch_size, shuffle=False)


def _base_dataset(dataset: Any) -> tuple[Any, np.ndarray | None]:
    """The dataset behind DataLoaders and Subsets, and the index map into it (None: identity)."""
    from torch.utils.data import DataLoader, Subset

    indices: np.ndarray | None = None
    while True:
        if isinstance(dataset, DataLoader):
            dataset = dataset.dataset
        elif isinstance(dataset, Subset):
            subset = np.asarray(dataset.indices, dtype=np.int64)
            indices = subset if indices is None else subset[indices]
            dataset = dataset.dataset
        else:
            return dataset, indices


def dataset_labels(dataset: Any) -> np.ndarray | None:
    """Class labels from ``.targets`` or ``.labels`` (as the reference), also through
    ``Subset`` and ``DataLoader``; None when the dataset has neither.

    Returns
    -------
    ndarray of shape (N,) or None
    """
    from torch.utils.data import DataLoader

    if not isinstance(dataset, DataLoader):
        own = _labels_attribute(dataset)
        if own is not None:
            return own
    base, indices = _base_dataset(dataset)
    labels = _labels_attribute(base)
    if labels is None or indices is None:
        return labels
    return labels[indices]


def _labels_attribute(dataset: Any) -> np.ndarray | None:
    for attribute in ("targets", "labels"):
        values = getattr(dataset, attribute, None)
        if values is not None and not callable(values) and hasattr(values, "__len__"):
            return as_labels(values, f"dataset.{attribute}")
    return None


def as_labels(values: Any, name: str) -> np.ndarray:
    """One class label per sample: integer ids (floats must be whole numbers) or strings."""
    labels = to_numpy(values)
    if labels.ndim != 1:
        raise ValueError(
            f"{name} must hold one class label per sample (1-D), got shape {labels.shape}"
        )
    if labels.dtype.kind == "O":
        labels = labels.astype(str)
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ValueError(
                f"{name} must hold integer class ids (or strings), got non-integer floats such "
                f"as {labels[np.flatnonzero(labels != np.round(labels))[:1]].tolist()}"
            )
        labels = labels.astype(np.int64)
    return labels


def as_scores(difficulty: Any) -> np.ndarray:
    """Per-sample scores as float32 (N,), finite (first bad index named)."""
    values = to_numpy(difficulty)
    if values.ndim != 1 or values.size == 0 or values.dtype.kind not in "fiu":
        raise ValueError(
            f"difficulty must be a non-empty 1-D array of numbers (one score per sample), got "
            f"dtype {values.dtype} shape {values.shape}"
        )
    check_finite("difficulty", values)
    scores = values.astype(np.float32)
    check_finite("difficulty (as float32)", scores)
    return scores
