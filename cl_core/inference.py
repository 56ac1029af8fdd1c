"""Batched inference into store shards, with the disk writes overlapped with compute.

One DataLoader pass covers all requested shards; its batches never straddle a shard boundary, so
a shard's rows are computed from the same batches whichever shards run, in whatever order, after
any restart (byte-identical results). On CUDA batches are pinned and copied non-blocking, the
model may run channels-last, features stay on the device until their shard is complete and are
then copied to pinned host memory asynchronously; a background thread writes complete shards to
the store, so the GPU never waits on the disk.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from cl_core._validation import check_choice
from cl_core.datasets import DatasetSpec
from cl_core.features import (
    BatchCollator,
    IndexedDataset,
    capture_layer,
    forward_features,
    split_batch,
)
from cl_core.models import LoadedModel

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; other strings as ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; valid: auto, cpu, cuda, cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available; use device='auto' or 'cpu'")
    return resolved


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16 on CUDA (fp16 without bf16 support), fp32 elsewhere."""
    check_choice("precision", precision, PRECISIONS)
    if precision != "auto":
        return precision
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


@dataclass(frozen=True, eq=False)
class InferencePlan:
    """Everything one inference run needs (built by :mod:`cl_core.embed` from an EmbedConfig)."""

    loaded: LoadedModel
    spec: DatasetSpec
    device: torch.device
    precision: str = "fp32"
    batch_size: int = 256
    num_workers: int | None = None
    layer: str | None = None
    pooling: str = "auto"
    output_key: str | None = None
    channels_last: bool | None = None
    writer_queue: int = 2

    @property
    def use_channels_last(self) -> bool:
        """Channels-last helps convolutions on CUDA; default there only."""
        if self.channels_last is None:
            return self.device.type == "cuda"
        return bool(self.channels_last)

    @property
    def workers(self) -> int:
        """DataLoader workers: as given, else up to 8 with CUDA; on CPU only with >= 8 cores
        (workers would take cores from the model); none for text and in-memory tensors."""
        if self.num_workers is not None:
            return self.num_workers
        cpus = os.cpu_count() or 1
        if self.spec.kind == "text" or isinstance(self.spec.dataset, TensorDataset):
            return 0  # nothing to gain: text tokenises fast, tensors are sliced in memory
        if self.device.type == "cuda":
            return min(8, max(1, cpus - 1))
        return 0 if cpus < 8 else min(4, cpus // 8)


def make_loader(
    plan: InferencePlan, batches: Sequence[Sequence[int]], workers: int | None = None
) -> torch.utils.data.DataLoader[Any]:
    """DataLoader yielding ``(indices, batch)`` for the given index batches, in order."""
    loaded, spec = plan.loaded, plan.spec
    tokenize = loaded.tokenize if loaded.kind == "text" and spec.collate_fn is None else None
    if spec.kind == "text" and tokenize is None:
        raise ValueError(
            f"dataset is a list of strings but model {loaded.model_id!r} is not a text encoder; "
            f"use model='all-MiniLM-L6-v2' or a SentenceTransformer"
        )
    n_workers = plan.workers if workers is None else workers
    batch_sampler: Any = batches  # any iterable of index sequences works; typed as list[int]
    in_memory = spec.collate_fn is None and tokenize is None
    return torch.utils.data.DataLoader(
        IndexedDataset(spec.dataset, slice_tensors=in_memory),
        batch_sampler=batch_sampler,
        collate_fn=BatchCollator(spec.collate_fn, tokenize),
        num_workers=n_workers,
        pin_memory=plan.device.type == "cuda",
        prefetch_factor=4 if n_workers else None,
        multiprocessing_context=_worker_context() if n_workers else None,
    )


def _worker_context() -> Any:
    """Start DataLoader workers from a forkserver, not by forking this process.

    The pipeline embeds inside Prefect tasks, next to Prefect's and Dask's threads; a worker
    forked from such a process inherited their state and died on exit (exit code 1, found by
    the full test suite). A forkserver forks from a clean process that has imported only torch
    and this module, so workers start fast and safely. Datasets must therefore be picklable
    (module-level classes), as they must be under ``spawn`` on macOS and Windows.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", __name__])
    return context


def to_device(value: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Move a tensor (or dict of tensors) to ``device`` without blocking the host."""
    if isinstance(value, torch.Tensor):
        if channels_last and value.ndim == 4:
            return value.to(device, non_blocking=True, memory_format=torch.channels_last)
        return value.to(device, non_blocking=True)
    if isinstance(value, Mapping):
        return {key: to_device(item, device, channels_last) for key, item in value.items()}
    return value


@contextmanager
def inference_context(plan: InferencePlan) -> Iterator[None]:
    """Model on the device in eval mode; ``inference_mode`` and autocast for the block."""
    module = plan.loaded.module
    if isinstance(module, nn.Module):
        module.to(plan.device)
        if plan.use_channels_last:
            module.to(memory_format=torch.channels_last)
        module.eval()
    amp = _AMP_DTYPES.get(plan.precision)
    with (
        torch.inference_mode(),
        torch.autocast(plan.device.type, dtype=amp, enabled=amp is not None),
    ):
        yield


def probe(plan: InferencePlan) -> tuple[int, bool]:
    """Feature dimension, and whether the dataset yields labels, from sample 0."""
    _, batch = next(iter(make_loader(plan, [range(1)], workers=0)))
    inputs, labels = split_batch(batch)
    with inference_context(plan), capture_layer(plan.loaded.module, plan.layer) as capture:
        features = forward_features(
            plan.loaded,
            to_device(inputs, plan.device),
            capture,
            pooling=plan.pooling,
            output_key=plan.output_key,
        )
    return int(features.shape[1]), labels is not None


def shard_batches(store: Any, shards: Sequence[int], batch_size: int) -> list[range]:
    """Index batches of ``batch_size`` covering the shards; none crosses a shard boundary.

    Ranges, not lists: the plan for millions of rows stays a few kilobytes.
    """
    batches: list[range] = []
    for shard in shards:
        start, stop = store.shard_range(shard)
        batches.extend(
            range(begin, min(begin + batch_size, stop)) for begin in range(start, stop, batch_size)
        )
    return batches


def run_shards(
    plan: InferencePlan,
    store: Any,
    shards: Sequence[int],
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Compute ``shards`` of ``store`` and write each as soon as it is complete."""
    if not shards:
        return
    loader = make_loader(plan, shard_batches(store, shards, plan.batch_size))
    buffer: _ShardBuffer | None = None
    reference_shape: tuple[int, ...] | None = None
    check_shapes = plan.spec.collate_fn is None and plan.spec.kind != "text"
    with (
        _ShardWriter(store, plan.writer_queue, len(shards), progress) as writer,
        inference_context(plan),
        capture_layer(plan.loaded.module, plan.layer) as capture,
    ):
        for indices, batch in loader:
            first = int(indices[0])
            inputs, labels = split_batch(batch)
            if check_shapes and isinstance(inputs, torch.Tensor):
                reference_shape = _check_batch_shape(reference_shape, inputs, first)
            if store.has_labels and labels is None:
                raise ValueError(
                    f"samples {first}..{int(indices[-1])} yield no integer labels but sample 0 "
                    f"did; return (x, label) for every sample"
                )
            features = forward_features(
                plan.loaded,
                to_device(inputs, plan.device, plan.use_channels_last),
                capture,
                pooling=plan.pooling,
                output_key=plan.output_key,
            )
            if buffer is None:
                buffer = _ShardBuffer(store, first // store.shard_rows, plan.device)
            buffer.add(first, features, labels if store.has_labels else None)
            if buffer.full:
                writer.submit(*buffer.handoff())
                buffer = None
            writer.report()


def _check_batch_shape(
    reference: tuple[int, ...] | None, inputs: torch.Tensor, first_index: int
) -> tuple[int, ...]:
    shape = tuple(inputs.shape[1:])
    if reference is not None and shape != reference:
        raise ValueError(
            f"dataset samples have inconsistent shapes: sample {first_index} has {shape} but "
            f"earlier samples have {reference}; first bad index {first_index}. Resize every "
            f"sample to one shape (a transform)"
        )
    return shape


class _ShardBuffer:
    """Features of one shard, filled batch by batch on the compute device."""

    def __init__(self, store: Any, shard: int, device: torch.device) -> None:
        self.shard = shard
        self.start, stop = store.shard_range(shard)
        self.rows = stop - self.start
        self.filled = 0
        self.features = torch.empty((self.rows, store.dim), dtype=torch.float32, device=device)
        self.labels = np.empty(self.rows, dtype=np.int64) if store.has_labels else None

    def add(self, first: int, features: torch.Tensor, labels: torch.Tensor | None) -> None:
        if features.shape[1] != self.features.shape[1]:
            raise ValueError(
                f"the model gave {features.shape[1]} features at sample {first} but the store "
                f"holds {self.features.shape[1]}; the model output changed shape"
            )
        offset = first - self.start
        self.features[offset : offset + len(features)] = features
        if self.labels is not None and labels is not None:
            self.labels[offset : offset + len(labels)] = labels.numpy()
        self.filled += len(features)

    @property
    def full(self) -> bool:
        return self.filled >= self.rows

    def handoff(self) -> tuple[int, torch.Tensor, np.ndarray | None, Any]:
        """Start the device-to-host copy; the writer waits on the returned event."""
        if self.features.device.type != "cuda":
            return self.shard, self.features, self.labels, None
        host = torch.empty(self.features.shape, dtype=torch.float32, pin_memory=True)
        host.copy_(self.features, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return self.shard, host, self.labels, event


class _ShardWriter:
    """Background thread writing complete shards to the store through a bounded queue.

    Writer errors (NaN/inf, float16 overflow, disk) re-raise in the compute thread at its next
    hand-off or on exit. On exit the queued shards are still written, so the work done before a
    failure survives for the rerun.
    """

    def __init__(
        self, store: Any, max_pending: int, total: int, progress: Callable[[int, int], None] | None
    ) -> None:
        self.store = store
        self.total = total
        self.progress = progress
        self.written = 0
        self._reported = 0
        self._error: BaseException | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._thread = threading.Thread(target=self._run, name="cl-embed-writer", daemon=True)

    def __enter__(self) -> _ShardWriter:
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
            shard, features, labels, event = item
            try:
                if event is not None:
                    event.synchronize()
                self.store.write_shard(shard, features.numpy(), labels)
                self.written += 1
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
