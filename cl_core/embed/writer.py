"""Shards of features: filled batch by batch on the compute device, written by a background thread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from cl_core.embed.features import SampleFailure


class ShardBuffer:
    """Features of one shard, filled batch by batch on the compute device."""

    def __init__(self, store: Any, shard: int, device: torch.device) -> None:
        self.shard = shard
        self.start, stop = store.shard_range(shard)
        self.rows = stop - self.start
        self.filled = 0
        self.features = torch.empty((self.rows, store.dim), dtype=torch.float32, device=device)
        self.labels = np.empty(self.rows, dtype=np.int64) if store.has_labels else None
        self.skipped: list[dict[str, Any]] = []
        self._take_reused(store)

    def _take_reused(self, store: Any) -> None:
        """Start from the rows copied from an earlier store (as stored: casting back is exact)."""
        block = store.reused_block(self.shard)
        if block is None:
            return
        mask, rows, labels = block
        where = torch.from_numpy(np.flatnonzero(mask)).to(self.features.device)
        values = torch.from_numpy(rows[mask].astype(np.float32))
        self.features[where] = values.to(self.features.device)
        if self.labels is not None and labels is not None:
            self.labels[mask] = labels[mask]
        self.filled += int(mask.sum())

    def add(self, indices: torch.Tensor, features: torch.Tensor, labels: Any) -> None:
        first = int(indices[0])
        if features.shape[1] != self.features.shape[1]:
            raise ValueError(
                f"the model gave {features.shape[1]} features at sample {first} but the store "
                f"holds {self.features.shape[1]}; the model output changed shape"
            )
        offset = first - self.start
        if int(indices[-1]) - first + 1 == len(indices):  # contiguous: one slice
            self.features[offset : offset + len(indices)] = features
            rows: Any = slice(offset, offset + len(indices))
        else:  # samples skipped in between
            rows = (indices - self.start).numpy()
            self.features[torch.from_numpy(rows).to(self.features.device)] = features
        if self.labels is not None and labels is not None:
            self.labels[rows] = labels.numpy()
        self.filled += len(indices)

    def skip(self, failures: Sequence[SampleFailure]) -> None:
        """Record samples that could not be loaded: zero rows, label -1, left out of the stats."""
        for failure in failures:
            offset = failure.index - self.start
            self.features[offset] = 0
            if self.labels is not None:
                self.labels[offset] = -1
            self.skipped.append(
                {"index": failure.index, "path": failure.path, "reason": failure.reason}
            )
        self.filled += len(failures)

    @property
    def full(self) -> bool:
        return self.filled >= self.rows

    def handoff(self) -> tuple[int, torch.Tensor, np.ndarray | None, Any, list[dict[str, Any]]]:
        """Start the device-to-host copy; the writer waits on the returned event."""
        if self.features.device.type != "cuda":
            return self.shard, self.features, self.labels, None, self.skipped
        host = torch.empty(self.features.shape, dtype=torch.float32, pin_memory=True)
        host.copy_(self.features, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return self.shard, host, self.labels, event, self.skipped


class ShardWriter:
    """Background thread writing complete shards to the store through a bounded queue.

    Writer errors (NaN/inf, float16 overflow, disk) re-raise in the compute thread at its next
    hand-off or on exit. On exit the queued shards are still written, so the work done before a
    failure survives for the rerun.
    """

    def __init__(
        self,
        store: Any,
        max_pending: int,
        total: int,
        progress: Callable[[int, int], None] | None,
        on_written: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.total = total
        self.progress = progress
        self.on_written = on_written
        self.written = 0
        self._reported = 0
        self._error: BaseException | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._thread = threading.Thread(target=self._run, name="cl-embed-writer", daemon=True)

    def __enter__(self) -> ShardWriter:
        self._thread.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._queue.put(None)
        self._thread.join()
        if exc_type is None:
            self._raise_if_failed()
            self.report()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep draining so the producer never blocks
            shard, features, labels, event, skipped = item
            try:
                if event is not None:
                    event.synchronize()
                self.store.write_shard(shard, features.numpy(), labels, skipped=skipped)
                self.written += 1
                if self.on_written is not None:
                    self.on_written(shard)
            except BaseException as error:
                self._error = error

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, *item: Any) -> None:
        while True:
            self._raise_if_failed()
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def report(self) -> None:
        """Call ``progress(written, total)`` (from the caller's thread) when it changed."""
        if self.progress is not None and self.written != self._reported:
            self._reported = self.written
            self.progress(self._reported, self.total)
