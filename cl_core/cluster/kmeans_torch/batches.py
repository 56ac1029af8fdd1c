"""Streaming the normalised rows of a chunk source to the device in fixed-size batches."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from cl_core.validation import check_finite

if TYPE_CHECKING:
    import torch

DEFAULT_BATCH_ROWS = 65_536
"""Rows moved to the device per step (16 store chunks of 4096 rows; 96 MiB in fp32 at D=384)."""


class DeviceBatches:
    """Normalised rows of a :class:`cl_core.cluster.ChunkSource` as device batches.

    Batches are ``batch_rows`` consecutive rows (boundaries at multiples of ``batch_rows``,
    whatever the storage chunking). The first full pass checks every row is finite and, when
    the rows fit ``cache_bytes``, keeps them on the device so later passes read no storage.

    Attributes
    ----------
    cache : list of Tensor or None
        The device-resident batches once a dataset-order pass has filled them; None when the
        rows are streamed (they do not fit ``cache_bytes``).
    checked : bool
        Whether a full pass has checked every row for NaN/inf.
    """

    def __init__(self, src: Any, device: torch.device, batch_rows: int, cache_bytes: int):
        self.src = src
        self.device = device
        self.batch_rows = batch_rows
        self.n_batches = math.ceil(src.n_rows / batch_rows)
        need = 4 * src.n_rows * src.dim
        self.cache: list[torch.Tensor] | None = [] if need <= cache_bytes else None
        self.checked = False

    def _to_device(self, rows: np.ndarray) -> torch.Tensor:
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
        if self.device.type == "cuda":
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor

    def iterate(self, order: np.ndarray | None = None) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(start_row, batch)`` in dataset order, or in block ``order``."""
        batches = range(self.n_batches) if order is None else order.tolist()
        if self.checked and self.cache is not None and len(self.cache) == self.n_batches:
            for batch in batches:
                yield batch * self.batch_rows, self.cache[batch]
            return
        first_full_pass = not self.checked and order is None
        for start, rows in self.src.iter_blocks(batches, self.batch_rows):
            if not self.checked:
                check_finite("features", rows, offset=start)
            tensor = self._to_device(rows)
            if first_full_pass and self.cache is not None:
                self.cache.append(tensor)
            yield start, tensor
        if order is None or len(order) == self.n_batches:
            self.checked = True
        if self.cache is not None and len(self.cache) != self.n_batches:
            self.cache = None  # filled only by a dataset-order first pass
