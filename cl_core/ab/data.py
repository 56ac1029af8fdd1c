"""Reading a task's rows in batches (training, evaluation, feature extraction)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from cl_core.ab.tasks import ABTask


def batches(task: ABTask, rows: np.ndarray, batch_size: int) -> Iterator[tuple[Any, Any]]:
    """``(inputs, labels)`` tensors on the task's device for ``rows`` in order, in batches.

    Parameters
    ----------
    task : ABTask
        In-memory inputs are indexed directly; a Dataset is read through a DataLoader with
        ``task.num_workers`` workers.
    rows : ndarray of int, shape (n,)
        Row indices, in the order the batches give them (repeats allowed).
    batch_size : int
        Rows per batch (the last batch may be smaller).
    """
    import torch

    labels = torch.from_numpy(task.labels)
    if task.in_memory:
        for start in range(0, rows.shape[0], batch_size):
            chunk = torch.from_numpy(rows[start : start + batch_size])
            yield (
                task.inputs.index_select(0, chunk).to(task.device),
                labels.index_select(0, chunk).to(task.device),
            )
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(
        task.inputs,
        batch_sampler=[rows[i : i + batch_size].tolist() for i in range(0, len(rows), batch_size)],
        num_workers=task.num_workers,
        persistent_workers=False,
    )
    for inputs, targets in loader:
        yield inputs.to(task.device), targets.to(task.device)
