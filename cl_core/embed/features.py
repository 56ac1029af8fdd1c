"""From samples to pooled features: collation, inputs and labels, layer hooks, output keys, pooling.

The design's definition of a sample's features: the model output, or a named intermediate layer
captured by a forward hook, pooled to one vector: (B, C, H, W) -> mean over H, W; (B, T, C) -> CLS
token or mean over T (never over C). Dicts and ``ModelOutput`` give the first present of
:data:`OUTPUT_KEYS` (else their first tensor); tuples give their first tensor.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset
from torch.utils.data import default_collate as torch_default_collate

from cl_core.embed.datasets import describe_error, sample_path
from cl_core.embed.models import LoadedModel
from cl_core.validation import check_choice

POOLINGS = ("auto", "cls", "mean", "none")
OUTPUT_KEYS = (
    "sentence_embedding",
    "image_embeds",
    "text_embeds",
    "pooler_output",
    "last_hidden_state",
)
"""Keys taken from dict / ``ModelOutput`` results, in this order; else the first tensor value."""
LABEL_KEYS = ("label", "labels", "target", "targets", "y")
INPUT_KEYS = ("image", "images", "pixel_values", "x", "input", "inputs")


@dataclass(frozen=True)
class SampleFailure:
    """A sample that could not be loaded: travels back from a DataLoader worker as data.

    Workers never raise for a bad sample: the main process decides (raise
    :class:`cl_core.embed.BadSampleError` or skip the sample), so the error reaches the caller
    intact instead of as a generic worker failure.
    """

    index: int
    path: str | None
    reason: str


class IndexedDataset(Dataset[tuple[int, Any]]):
    """Yields ``(index, sample)`` so batches carry the dataset indices they came from.

    A sample whose loading raises yields ``(index, SampleFailure)`` instead (index, file path
    where known, and the error). With ``slice_tensors`` a contiguous batch of a ``TensorDataset``
    is fetched as one slice per tensor (:class:`TensorSlices`), skipping the per-sample indexing
    and stacking of in-memory data.
    """

    def __init__(self, dataset: Any, *, slice_tensors: bool = False) -> None:
        self.dataset = dataset
        self.slice_tensors = slice_tensors and isinstance(dataset, TensorDataset)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        try:
            return index, self.dataset[index]
        except Exception as error:
            path = sample_path(self.dataset, index)
            return index, SampleFailure(int(index), path, describe_error(error))

    def __getitems__(self, indices: Sequence[int]) -> Any:
        # DataLoader fetches whole batches through __getitems__ when a dataset defines it.
        if self.slice_tensors and _is_contiguous(indices):
            start, stop = int(indices[0]), int(indices[-1]) + 1
            return TensorSlices(start, [t[start:stop] for t in self.dataset.tensors])
        return [self[int(index)] for index in indices]


@dataclass(frozen=True)
class TensorSlices:
    """A batch of rows ``start..`` already collated: the list default_collate would build."""

    start: int
    tensors: list[torch.Tensor]


def _is_contiguous(indices: Sequence[int]) -> bool:
    if isinstance(indices, range):
        return indices.step == 1 and len(indices) > 0
    return len(indices) > 0 and list(indices) == list(range(indices[0], indices[0] + len(indices)))


class BatchCollator:
    """Collate ``(index, sample)`` pairs into ``(indices, batch, failures)``.

    Failed samples (:class:`SampleFailure`) are left out of ``indices`` and ``batch`` and listed
    in ``failures``; ``batch`` is None when every sample of the batch failed. Text samples are
    tokenised; with a user collate function it is used as is (it may pad); otherwise every sample
    must have the first sample's shapes, and the error names the first dataset index that does not.
    """

    def __init__(
        self,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        tokenize: Callable[[list[str]], Any] | None = None,
    ) -> None:
        self.collate_fn = collate_fn
        self.tokenize = tokenize

    def __call__(
        self, items: list[tuple[int, Any]] | TensorSlices
    ) -> tuple[torch.Tensor, Any, list[SampleFailure]]:
        if isinstance(items, TensorSlices):
            rows = len(items.tensors[0])
            return torch.arange(items.start, items.start + rows), list(items.tensors), []
        failures = [sample for _, sample in items if isinstance(sample, SampleFailure)]
        if failures:
            items = [item for item in items if not isinstance(item[1], SampleFailure)]
            if not items:
                return torch.zeros(0, dtype=torch.int64), None, failures
        indices = [index for index, _ in items]
        samples = [sample for _, sample in items]
        if self.tokenize is not None and samples and isinstance(samples[0], (tuple, list)):
            # (text, label, ...) samples: tokenise the texts, keep the labels
            texts = [sample[0] for sample in samples]
            labels = torch.as_tensor([sample[1] for sample in samples])
            batch = (self.tokenize(texts), labels)
        elif self.tokenize is not None:
            batch = self.tokenize(samples)
        elif self.collate_fn is not None:
            batch = self.collate_fn(samples)
        else:
            check_same_shapes(samples, indices)
            batch = torch_default_collate(samples)
        return torch.as_tensor(indices, dtype=torch.int64), batch, failures


def shape_signature(value: Any) -> Any:
    """Nested shapes of a sample (tensors/arrays -> shape, containers -> tuples, scalars -> None)."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return tuple(value.shape)
    if isinstance(value, Mapping):
        return tuple((key, shape_signature(value[key])) for key in sorted(value, key=str))
    if isinstance(value, (list, tuple)):
        return tuple(shape_signature(item) for item in value)
    return None


def check_same_shapes(samples: Sequence[Any], indices: Sequence[int]) -> None:
    """Raise naming the first dataset index whose sample shapes differ from the first sample's."""
    reference = shape_signature(samples[0])
    for sample, index in zip(samples[1:], indices[1:], strict=True):
        signature = shape_signature(sample)
        if signature != reference:
            raise ValueError(
                f"dataset samples have inconsistent shapes: sample {index} has {signature} but "
                f"sample {indices[0]} has {reference}; first bad index {index}. Resize every "
                f"sample to one shape (a transform) or pass a DataLoader whose collate_fn pads"
            )


class _StopForward(Exception):
    """Raised by the layer hook: the rest of the network is not needed."""


class _LayerCapture:
    """Holds the hooked layer's output for the thread that registered the hook.

    Cached models are shared within a process; a hook only acts in its own thread, so two
    threads embedding with the same module never see each other's outputs.
    """

    def __init__(self, layer: str) -> None:
        self.layer = layer
        self.output: Any = None
        self.thread = threading.get_ident()

    def hook(self, module: nn.Module, args: Any, output: Any) -> None:
        if threading.get_ident() != self.thread:
            return
        self.output = output
        raise _StopForward


@contextmanager
def capture_layer(module: Any, layer: str | None) -> Iterator[_LayerCapture | None]:
    """Capture ``layer``'s output with a forward hook, removed on exit.

    The hook stops the forward pass right after the layer (the later layers' compute is skipped).
    An unknown name raises listing close matches.
    """
    if layer is None:
        yield None
        return
    if not isinstance(module, nn.Module):
        raise TypeError(f"layer={layer!r} needs an nn.Module model, got {type(module).__name__}")
    modules = dict(module.named_modules())
    if layer not in modules or not layer:
        names = [name for name in modules if name]
        close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
        shown = close or names[:10]
        raise ValueError(
            f"unknown layer {layer!r} in {type(module).__name__}; "
            f"{'close matches' if close else 'some valid names'}: {', '.join(shown)} "
            f"(all names: dict(model.named_modules()))"
        )
    capture = _LayerCapture(layer)
    handle = modules[layer].register_forward_hook(capture.hook)
    try:
        yield capture
    finally:
        handle.remove()


def select_output(output: Any, output_key: str | None = None) -> torch.Tensor:
    """The feature tensor of a model result (tensor, tuple, dict or ``ModelOutput``)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        if output_key is not None:
            if not isinstance(output.get(output_key), torch.Tensor):
                raise ValueError(
                    f"unknown output_key {output_key!r}; the model returned keys "
                    f"{', '.join(map(str, output))}"
                )
            return output[output_key]
        for key in (*OUTPUT_KEYS, *output):
            if isinstance(output.get(key), torch.Tensor):
                return output[key]
    elif isinstance(output, (tuple, list)):
        for item in output:
            if isinstance(item, torch.Tensor):
                return item
    raise TypeError(
        f"cannot take features from a model result of type {type(output).__name__}; return a "
        f"tensor, a tuple starting with one, or a dict (pass output_key=...)"
    )


def pool_features(
    features: torch.Tensor, pooling: str = "auto", mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Pool a feature tensor to (B, D).

    Parameters
    ----------
    features : Tensor of shape (B,), (B, D), (B, T, C) or (B, C, H, W, ...)
    pooling : {"auto", "cls", "mean", "none"}
        ``auto``: (B, T, C) -> CLS token ``[:, 0]``, (B, C, *spatial) -> mean over spatial;
        ``cls``: first token; ``mean``: mean over T (masked by ``mask`` when given) or over the
        spatial dims; ``none``: the output must already be (B, D). The channel dim is never pooled.
    mask : Tensor of shape (B, T), optional
        Attention mask for ``mean`` over tokens (padding excluded).
    """
    check_choice("pooling", pooling, POOLINGS)
    if features.ndim == 1:
        return features[:, None]
    if features.ndim == 2:
        return features
    if pooling == "none":
        raise ValueError(
            f"pooling='none' needs (B, D) features, got shape {tuple(features.shape)}; use "
            f"pooling='cls' or 'mean'"
        )
    if features.ndim == 3:
        if pooling in ("auto", "cls"):
            return features[:, 0]
        if mask is not None and mask.shape == features.shape[:2]:
            weights = mask.to(features.dtype)[..., None]
            return (features * weights).sum(1) / weights.sum(1).clamp_min(1)
        return features.mean(dim=1)
    if pooling == "cls":
        raise ValueError(
            f"pooling='cls' needs token features (B, T, C), got shape {tuple(features.shape)}; "
            f"use pooling='mean' (or 'auto') for (B, C, H, W) maps"
        )
    return features.mean(dim=tuple(range(2, features.ndim)))


def forward_features(
    loaded: LoadedModel,
    inputs: Any,
    capture: _LayerCapture | None = None,
    *,
    pooling: str = "auto",
    output_key: str | None = None,
) -> torch.Tensor:
    """Run the model on a batch and return pooled float32 features (B, D).

    Mapping inputs are passed as one dict to text encoders (sentence-transformers) and as keyword
    arguments to other models; ``capture`` (from :func:`capture_layer`) selects a layer's output.
    """
    module = loaded.module
    try:
        if isinstance(inputs, Mapping):
            output = module(dict(inputs)) if loaded.kind == "text" else module(**inputs)
        else:
            output = module(inputs)
    except _StopForward:
        output = None
    if capture is not None:
        if capture.output is None:
            raise RuntimeError(
                f"layer {capture.layer!r} was not called during the forward pass; choose a layer "
                f"the model actually runs"
            )
        output, capture.output = capture.output, None
    mask = inputs.get("attention_mask") if isinstance(inputs, Mapping) else None
    return pool_features(select_output(output, output_key), pooling, mask).float()


def split_batch(batch: Any) -> tuple[Any, torch.Tensor | None]:
    """Split a collated batch into model inputs and integer labels (None where there are none).

    Tensors are inputs; ``(x, y, ...)`` tuples give inputs ``x`` and labels ``y`` (integer, one
    per sample; further items are ignored); dicts give labels from the first of ``LABEL_KEYS``
    and inputs from the first of ``INPUT_KEYS`` present, else the remaining dict (text models).
    """
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, Mapping):
        labels = next((batch[key] for key in LABEL_KEYS if key in batch), None)
        rest = {key: value for key, value in batch.items() if key not in LABEL_KEYS}
        key = next((key for key in INPUT_KEYS if key in rest), None)
        inputs = rest[key] if key is not None else rest
        return inputs, _as_labels(labels, inputs)
    if isinstance(batch, (list, tuple)) and batch and not isinstance(batch[0], str):
        labels = batch[1] if len(batch) > 1 else None
        return batch[0], _as_labels(labels, batch[0])
    return batch, None


def batch_size_of(inputs: Any) -> int:
    """Number of samples in model inputs (tensor, dict of tensors, or list)."""
    if isinstance(inputs, torch.Tensor):
        return int(inputs.shape[0])
    if isinstance(inputs, Mapping):
        first = next(v for v in inputs.values() if isinstance(v, torch.Tensor))
        return int(first.shape[0])
    return len(inputs)


def _as_labels(labels: Any, inputs: Any) -> torch.Tensor | None:
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1:
        return None
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        return None
    if labels.shape[0] != batch_size_of(inputs):
        return None
    return labels
