"""Batched inference into store shards, with the disk writes overlapped with compute.

One DataLoader pass covers all requested shards; its batches never straddle a shard boundary, so
a shard's rows are computed from the same batches whichever shards run, in whatever order, after
any restart (byte-identical results). A sample that cannot be loaded comes back from the workers
as data (:class:`cl_core.embed.features.SampleFailure`): with ``on_bad_sample="error"`` the run
stops with :class:`cl_core.embed.BadSampleError` naming it, with ``"skip"`` its row is recorded as
skipped (zeros, left out of the statistics) and everything else is embedded. On CUDA batches are
pinned and copied non-blocking, the model may run channels-last (also on CPU in bf16, see
:func:`cl_core.embed.plan.prefers_channels_last`), features stay on the device until their shard
is complete and are then copied to pinned host memory asynchronously; a background thread
(:mod:`cl_core.embed.writer`) writes complete shards to the store, so the GPU never waits on the
disk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from cl_core.embed.datasets import BadSampleError, sample_path
from cl_core.embed.features import SampleFailure, capture_layer, forward_features, split_batch
from cl_core.embed.loader import make_loader
from cl_core.embed.plan import InferencePlan
from cl_core.embed.writer import ShardBuffer, ShardWriter
from cl_core.threads import torch_threads

_PROBE_TRIES = 256  # samples tried to find a loadable one for the probe under "skip"
_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


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
        from cl_core.embed.decoding import normalize_uint8

        batch = normalize_uint8(inputs, plan.eval_transform, plan.device, torch.float32)
        return to_device(batch, plan.device, plan.use_channels_last), []
    if plan.decode == "gpu":
        from cl_core.embed.batch_decoding import decode_batch

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


def shard_batches(store: Any, shards: Sequence[int], batch_size: int) -> list[Sequence[int]]:
    """Index batches of ``batch_size`` covering the shards; none crosses a shard boundary.

    Rows copied from an earlier store (:meth:`cl_core.store.EmbeddingStore.reused_rows`) are
    left out. Ranges where nothing was copied: the plan for millions of rows stays small.
    """
    batches: list[Sequence[int]] = []
    copied = store.reused_rows()
    for shard in shards:
        start, stop = store.shard_range(shard)
        reused = None if copied is None else copied[start:stop]
        if reused is not None and reused.any():
            # Rows of the shard's short last batch go apart: each batch is padded to the size
            # of the batch its rows have in a run that embeds every row (see _padded).
            todo = np.flatnonzero(~reused) + start
            tail = start + (stop - start) // batch_size * batch_size
            for part in (todo[todo < tail].tolist(), todo[todo >= tail].tolist()):
                batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
            continue
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

    On a CPU device the forward runs with ``plan.cpu_threads`` torch threads (restored after),
    whatever this process's own setting, so the bits do not depend on which process runs it.

    ``on_written(shard)`` is called (from the writer thread) after each shard is written, e.g.
    to release its lock.
    """
    if not shards:
        return
    loader = make_loader(plan, shard_batches(store, shards, plan.batch_size))
    buffer: ShardBuffer | None = None
    reference_shape: tuple[int, ...] | None = None
    with (
        ShardWriter(store, plan.writer_queue, len(shards), progress, on_written) as writer,
        torch_threads(plan.cpu_threads if plan.device.type == "cpu" else None),
        inference_context(plan),
        capture_layer(plan.loaded.module, plan.layer) as capture,
    ):
        for indices, batch, failures in loader:
            if failures and plan.on_bad_sample == "error":
                failure = failures[0]
                raise BadSampleError(failure.index, failure.path, failure.reason)
            if buffer is None:
                anchor = int(indices[0]) if len(indices) else failures[0].index
                buffer = ShardBuffer(store, anchor // store.shard_rows, plan.device)
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
    buffer: ShardBuffer,
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
        plan.loaded,
        _padded(plan, store, first, inputs),
        capture,
        pooling=plan.pooling,
        output_key=plan.output_key,
    )[: len(indices)]
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


def _padded(plan: InferencePlan, store: Any, first: int, inputs: Any) -> Any:
    """``inputs`` padded (repeating its first sample) to the size of the batch that holds row
    ``first`` when every row of its shard is embedded.

    Kernels may depend on the batch size (a CPU convolution of one sample takes another path
    than one of eight), so rows embedded next to rows copied from an earlier store get the bits
    a full run gives them. Only tensor batches are padded (file datasets; text is never reused).
    """
    if not isinstance(inputs, torch.Tensor) or not len(inputs):
        return inputs
    start, stop = store.shard_range(first // store.shard_rows)
    begin = start + (first - start) // plan.batch_size * plan.batch_size
    missing = min(plan.batch_size, stop - begin) - len(inputs)
    if missing <= 0:
        return inputs
    padded = torch.cat([inputs, inputs[:1].expand(missing, *inputs.shape[1:])])
    return (
        padded.contiguous(memory_format=torch.channels_last) if plan.use_channels_last else padded
    )


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
