"""Batched inference into store shards, with the disk writes overlapped with compute.

One DataLoader pass covers all requested shards; its batches never straddle a shard boundary, so
a shard's rows are computed from the same batches whichever shards run, in whatever order, after
any restart (byte-identical results). A sample that cannot be loaded comes back from the workers
as data (:class:`cl_core.features.SampleFailure`): with ``on_bad_sample="error"`` the run stops
with :class:`cl_core.datasets.BadSampleError` naming it, with ``"skip"`` its row is recorded as
skipped (zeros, left out of the statistics) and everything else is embedded. On CUDA batches are pinned and copied non-blocking, the
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

from cl_core.datasets import (
    BadSampleError,
    DatasetSpec,
    ImageFileBytes,
    ImageFiles,
    ImageFileUint8,
    sample_path,
)
from cl_core.features import (
    BatchCollator,
    IndexedDataset,
    SampleFailure,
    capture_layer,
    forward_features,
    split_batch,
)
from cl_core.models import LoadedModel
from cl_core.validation import check_choice

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BAD_SAMPLE_POLICIES = ("error", "skip")
DECODE_PATHS = ("dataset", "cpu", "gpu")
"""Where image files are decoded: by the dataset's own ``__getitem__`` (PIL + its transform), by
the workers to uint8 (``cpu``), or batched on the CUDA device from bytes (``gpu``)."""
MAX_GPU_DECODE_WORKERS = 8  # workers that only read bytes for the GPU decoder
MAX_GPU_FEED_WORKERS = 32
"""Cap of the default worker count when CPU workers feed a CUDA model (one per core below it)."""
_PROBE_TRIES = 256  # samples tried to find a loadable one for the probe under "skip"
_WORKER_PRELOAD = (
    "__main__",
    "torch",
    "numpy",
    "PIL.Image",
    "torchvision.transforms",
    "timm.data",
    "cl_core.datasets",
    "cl_core.decoding",
    "cl_core.features",
    __name__,
)
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
    on_bad_sample: str = "error"
    decode: str = "dataset"
    eval_transform: Any = None

    def __post_init__(self) -> None:
        check_choice("on_bad_sample", self.on_bad_sample, BAD_SAMPLE_POLICIES)
        check_choice("decode", self.decode, DECODE_PATHS)
        if self.decode != "dataset" and not isinstance(self.spec.dataset, ImageFiles):
            raise ValueError(
                f"decode={self.decode!r} needs an image folder (imagefolder:PATH), got "
                f"{type(self.spec.dataset).__name__}; use decode='dataset'"
            )
        if self.decode != "dataset" and self.eval_transform is None:
            raise ValueError(f"decode={self.decode!r} needs eval_transform (an EvalTransform)")

    @property
    def use_channels_last(self) -> bool:
        """Channels-last helps convolutions on CUDA; default there only."""
        if self.channels_last is None:
            return self.device.type == "cuda"
        return bool(self.channels_last)

    @property
    def workers(self) -> int:
        """DataLoader workers: as given; else with CUDA one per core but one (up to
        :data:`MAX_GPU_FEED_WORKERS`: decoding on the CPU is what limits a GPU model); on CPU only
        with >= 8 cores (workers would take cores from the model); none for text and in-memory
        tensors."""
        if self.num_workers is not None:
            return self.num_workers
        cpus = _usable_cpus()
        if self.spec.kind == "text" or isinstance(self.spec.dataset, TensorDataset):
            return 0  # nothing to gain: text tokenises fast, tensors are sliced in memory
        if self.decode == "gpu":
            return min(MAX_GPU_DECODE_WORKERS, max(1, cpus - 1))
        if self.device.type == "cuda":
            return min(MAX_GPU_FEED_WORKERS, max(1, cpus - 1))
        return 0 if cpus < 8 else min(4, cpus // 8)


def _usable_cpus() -> int:
    """Cores this process may run on (the affinity mask, e.g. a container's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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
    dataset, collate_fn = spec.dataset, spec.collate_fn
    if plan.decode == "cpu":
        dataset = ImageFileUint8(spec.dataset, plan.eval_transform)
    elif plan.decode == "gpu":
        from cl_core.decoding import collate_encoded

        dataset, collate_fn = ImageFileBytes(spec.dataset), collate_encoded
    return torch.utils.data.DataLoader(
        IndexedDataset(dataset, slice_tensors=in_memory),
        batch_sampler=batch_sampler,
        collate_fn=BatchCollator(collate_fn, tokenize),
        num_workers=n_workers,
        pin_memory=plan.device.type == "cuda",
        # Batches in flight: 4 per worker, 2 beyond 8 workers (shared memory is finite).
        prefetch_factor=(4 if n_workers <= 8 else 2) if n_workers else None,
        multiprocessing_context=_worker_context() if n_workers else None,
    )


def _worker_context() -> Any:
    """Start DataLoader workers from a forkserver, not by forking this process.

    The pipeline embeds inside Prefect tasks, next to Prefect's, Dask's and zarr's threads; a
    worker forked from such a process inherited their state and died on exit (exit code 1, found
    by the full test suite). A forkserver forks from a clean, single-threaded process. What made
    it slow (~11 s to the first batch here, 42 s with 8 workers on 16 cores) was that the server
    imported only torch: each worker then re-imported the main script and, to unpickle the
    dataset, timm and torchvision, all at once. The server now preloads those (and the main
    script, Python's own default), so a worker is one ``fork()`` of a warm process; call
    :func:`start_worker_server` early to have that import done in the background before the
    first loader starts. Datasets must be picklable (module-level classes), as under ``spawn``.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(_WORKER_PRELOAD))  # ignored once the server runs
    return context


def start_worker_server() -> None:
    """Start the process DataLoader workers are forked from, in the background (idempotent).

    It imports torch, PIL, timm's transforms and this package once per process (seconds); call
    this at start-up (the CLI does, before its Prefect server starts) so the first image-folder
    loader does not wait for it. A no-op where the platform has no forkserver.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return
    _worker_context()
    from multiprocessing import forkserver

    forkserver.ensure_running()


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


def prepare_inputs(
    plan: InferencePlan, indices: torch.Tensor, inputs: Any
) -> tuple[Any, list[SampleFailure]]:
    """Model inputs on the device, plus the samples that failed to decode there.

    ``cpu`` decoding: uint8 batches are converted and normalised on the device; ``gpu``: encoded
    files are decoded, resized, cropped and normalised batched on the device (files the GPU
    decoder cannot take are decoded by PIL one by one; a file nothing decodes is a failure and its
    row zeros). Other datasets' inputs are only moved.
    """
    if plan.decode == "cpu":
        from cl_core.decoding import normalize_uint8

        batch = normalize_uint8(inputs, plan.eval_transform, plan.device, torch.float32)
        return to_device(batch, plan.device, plan.use_channels_last), []
    if plan.decode == "gpu":
        from cl_core.decoding import decode_batch

        # On a CPU device the same batched path runs with the CPU decoder (what CI tests).
        decoder = "gpu" if plan.device.type == "cuda" else "cpu"
        decoded = decode_batch(inputs, plan.eval_transform, plan.device, decoder)
        failures = [
            SampleFailure(
                int(indices[position]),
                sample_path(plan.spec.dataset, int(indices[position])),
                reason,
            )
            for position, reason in sorted(decoded.failed.items())
        ]
        return to_device(decoded.images, plan.device, plan.use_channels_last), failures
    return to_device(inputs, plan.device, plan.use_channels_last), []


def probe(plan: InferencePlan) -> tuple[int, bool]:
    """Feature dimension, and whether the dataset yields labels, from sample 0.

    Under ``on_bad_sample="skip"`` the first loadable sample is used instead of a bad sample 0;
    under ``"error"`` a bad sample 0 raises :class:`BadSampleError`.
    """
    tries = 1 if plan.on_bad_sample == "error" else min(_PROBE_TRIES, plan.spec.n_samples)
    loader = make_loader(plan, [range(i, i + 1) for i in range(tries)], workers=0)
    failure: SampleFailure | None = None
    for indices, batch, failures in loader:
        if batch is not None:
            inputs, labels = split_batch(batch)
            inputs, failures = prepare_inputs(plan, indices, inputs)
            if not failures:
                break
        failure = failures[0]
    else:
        assert failure is not None
        if tries > 1:
            raise ValueError(
                f"the first {tries} samples of the dataset all failed to load (sample "
                f"{failure.index}: {failure.reason}); check the dataset path and files"
            )
        raise BadSampleError(failure.index, failure.path, failure.reason)
    with inference_context(plan), capture_layer(plan.loaded.module, plan.layer) as capture:
        features = forward_features(
            plan.loaded,
            inputs,
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
    on_written: Callable[[int], None] | None = None,
) -> None:
    """Compute ``shards`` of ``store`` and write each as soon as it is complete.

    ``on_written(shard)`` is called (from the writer thread) after each shard is written, e.g.
    to release its lock.
    """
    if not shards:
        return
    loader = make_loader(plan, shard_batches(store, shards, plan.batch_size))
    buffer: _ShardBuffer | None = None
    reference_shape: tuple[int, ...] | None = None
    with (
        _ShardWriter(store, plan.writer_queue, len(shards), progress, on_written) as writer,
        inference_context(plan),
        capture_layer(plan.loaded.module, plan.layer) as capture,
    ):
        for indices, batch, failures in loader:
            if failures and plan.on_bad_sample == "error":
                failure = failures[0]
                raise BadSampleError(failure.index, failure.path, failure.reason)
            if buffer is None:
                anchor = int(indices[0]) if len(indices) else failures[0].index
                buffer = _ShardBuffer(store, anchor // store.shard_rows, plan.device)
            buffer.skip(failures)
            if batch is not None:
                reference_shape = _embed_batch(
                    plan, store, capture, buffer, indices, batch, reference_shape
                )
            if buffer.full:
                writer.submit(*buffer.handoff())
                buffer = None
            writer.report()


def _embed_batch(
    plan: InferencePlan,
    store: Any,
    capture: Any,
    buffer: _ShardBuffer,
    indices: torch.Tensor,
    batch: Any,
    reference_shape: tuple[int, ...] | None,
) -> tuple[int, ...] | None:
    """Run the model on one collated batch into the shard buffer; return the input shape seen."""
    first = int(indices[0])
    inputs, labels = split_batch(batch)
    checked = plan.spec.collate_fn is None and plan.spec.kind != "text"
    if checked and isinstance(inputs, torch.Tensor):
        reference_shape = _check_batch_shape(reference_shape, inputs, first)
    if store.has_labels and labels is None:
        raise ValueError(
            f"samples {first}..{int(indices[-1])} yield no integer labels but sample 0 "
            f"did; return (x, label) for every sample"
        )
    inputs, failures = prepare_inputs(plan, indices, inputs)
    if failures and plan.on_bad_sample == "error":
        failure = failures[0]
        raise BadSampleError(failure.index, failure.path, failure.reason)
    features = forward_features(
        plan.loaded, inputs, capture, pooling=plan.pooling, output_key=plan.output_key
    )
    if not store.has_labels:
        labels = None
    if failures:  # decoded on the device: nothing could read these files
        bad = {failure.index for failure in failures}
        keep = torch.tensor([int(index) not in bad for index in indices])
        indices, features = indices[keep], features[keep.to(features.device)]
        labels = labels[keep] if labels is not None else None
        buffer.skip(failures)
    if len(indices):
        buffer.add(indices, features, labels)
    return reference_shape


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
        self.skipped: list[dict[str, Any]] = []

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


class _ShardWriter:
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
