"""Datasets accepted by the embedding stage, their identity, and the bad-sample error.

``resolve_dataset`` accepts any map-style torch ``Dataset``, a ``DataLoader`` that iterates in index
order, ``imagefolder:PATH``, the bundled ``digits`` demo and a list of strings. Everything else in
the embedding stage sees a :class:`DatasetSpec`: a map-style dataset plus how to collate it.

Order is the dataset's index order everywhere: a shuffling ``DataLoader`` is refused because the
rows of the embedding store would no longer line up with the dataset's indices.

:func:`dataset_identity` says which data a store (and everything downstream) was computed from, and
must change whenever the data does. An image folder's identity is its complete listing (relative
path, size and modification time of every file, one ``stat`` each, plus the preprocessing), or with
``verify_content=True`` the sha256 of every file's bytes; in-memory data is hashed whole; any other
dataset is *sampled* (its length and ~16 evenly spaced samples), which can miss a changed sample:
pass ``dataset_id=`` to name its version explicitly.


Image folders' files are in :mod:`cl_core.embed.files`, dataset identity in
:mod:`cl_core.embed.identity`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import (
    DataLoader,
    Dataset,
    IterableDataset,
    SequentialSampler,
)
from torch.utils.data import default_collate as torch_default_collate

from cl_core.embed.files import (
    FileListing,
    ImageFileBytes,
    ImageFiles,
    ImageFileUint8,
    scan_image_folder,
)

DATASET_NAMES = ("digits", "imagefolder:PATH")
DIGITS_SAMPLES = 1797  # scikit-learn's bundled digits (load_digits); fixed, part of its dataset id
DATASET_KINDS = ("image", "text", "generic")


class BadSampleError(ValueError):
    """A sample could not be loaded or decoded (a truncated, empty or non-image file, say).

    Data errors are deterministic: retrying does not help. The message names the dataset index and,
    for files, the path, and says how to go on. Survives pickling (DataLoader workers, Prefect and
    Dask results) with its attributes.

    Attributes
    ----------
    index : int
        Dataset index of the sample.
    path : str or None
        The file the sample comes from, where there is one.
    reason : str
        What went wrong (exception type and message).
    """

    def __init__(self, index: int, path: str | None = None, reason: str = "") -> None:
        self.index = int(index)
        self.path = None if path is None else str(path)
        self.reason = str(reason)
        where = f"sample {self.index} ({self.path})" if self.path else f"sample {self.index}"
        super().__init__(
            f"{where} could not be loaded: {self.reason}; fix or remove the file, or pass "
            f"on_bad_sample='skip' (CLI: --on-bad-sample skip)"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.index, self.path, self.reason))


def describe_error(error: BaseException) -> str:
    """``"TypeName: message"`` of an exception, on one line (the reason a sample failed)."""
    message = " ".join(str(error).split()) or "no message"
    return f"{type(error).__name__}: {message}"


def sample_path(dataset: Any, index: int) -> str | None:
    """The file sample ``index`` of ``dataset`` comes from, where the dataset says (else None).

    Knows :class:`ImageFiles` and torchvision's ``DatasetFolder`` family (``.samples``).
    """
    try:
        if isinstance(dataset, (ImageFiles, ImageFileBytes, ImageFileUint8)):
            return dataset.path(index)
        samples = getattr(dataset, "samples", None)
        if isinstance(samples, Sequence) and 0 <= index < len(samples):
            item = samples[index]
            if isinstance(item, (tuple, list)) and item and isinstance(item[0], (str, os.PathLike)):
                return os.fspath(item[0])
    except Exception:  # a path is a courtesy for the message, never a second failure
        return None
    return None


@dataclass(frozen=True, eq=False)
class DatasetSpec:
    """A map-style dataset ready for embedding.

    Attributes
    ----------
    dataset : map-style dataset
        ``len(dataset)`` samples, ``dataset[i]`` in index order.
    kind : {"image", "text", "generic"}
        ``text`` datasets hold strings and need a text encoder.
    collate_fn : callable or None
        The user's collate function (from their DataLoader); None uses torch's default collate
        after checking that every sample in a batch has the same shapes.
    dataset_id : str or None
        A fixed identity (the bundled datasets) used instead of hashing samples.
    description : str
        Human-readable origin, for messages.
    transform_id : str or None
        Canonical description of the built-in preprocessing (part of the identity).
    """

    dataset: Any
    kind: str = "generic"
    collate_fn: Callable[[list[Any]], Any] | None = None
    dataset_id: str | None = None
    description: str = ""
    transform_id: str | None = None

    @property
    def n_samples(self) -> int:
        return len(self.dataset)


class TextDataset(Dataset[str]):
    """A list of strings as a map-style dataset."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = list(texts)

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> str:
        return self.texts[index]


class DigitsDataset(Dataset[tuple[torch.Tensor, int]]):
    """scikit-learn's 1,797 handwritten digits rendered to RGB and preprocessed for a model.

    Parameters
    ----------
    transform : callable
        PIL image -> tensor (3, H, W); :func:`image_transform` gives the model's own preprocessing.
    """

    def __init__(self, transform: Callable[[Any], torch.Tensor]) -> None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        # Pixel values are counts 0..16; spread them over the 8-bit range for rendering.
        self.images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
        self.targets = digits.target.astype(np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        image = Image.fromarray(self.images[index], mode="L").convert("RGB")
        return self.transform(image), int(self.targets[index])


def resolved_data_config(
    data_config: Mapping[str, Any] | None = None, image_size: int | None = None
) -> dict[str, Any]:
    """The model's timm data config (ImageNet defaults when None), at ``image_size`` if given."""
    if data_config:
        config = dict(data_config)
    else:
        from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

        config = {
            "input_size": (3, 224, 224),
            "interpolation": "bicubic",
            "mean": IMAGENET_DEFAULT_MEAN,
            "std": IMAGENET_DEFAULT_STD,
            "crop_pct": 0.875,
            "crop_mode": "center",
        }
    if image_size is not None:
        config["input_size"] = (3, int(image_size), int(image_size))
    return config


def image_transform(
    data_config: Mapping[str, Any] | None = None, image_size: int | None = None
) -> Callable[[Any], torch.Tensor]:
    """The model's eval preprocessing (timm data config): resize, centre crop, normalise.

    Parameters
    ----------
    data_config : mapping, optional
        timm data config (``input_size``, ``interpolation``, ``mean``, ``std``, ``crop_pct``);
        timm's ImageNet defaults when None.
    image_size : int, optional
        Overrides the config's input size (square).
    """
    import timm.data

    config = resolved_data_config(data_config, image_size)
    keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
    return timm.data.create_transform(**{k: config[k] for k in keys if k in config})


def resolve_dataset(
    spec: Any,
    *,
    image_size: int | None = None,
    data_config: Mapping[str, Any] | None = None,
) -> DatasetSpec:
    """Turn what the user passed into a :class:`DatasetSpec`, validating it.

    Parameters
    ----------
    spec : Dataset, DataLoader, str or list of str
        A map-style dataset; a DataLoader that iterates in index order (its dataset and collate
        function are used, batching is the embedder's); ``"digits"``; ``"imagefolder:PATH"``;
        or a list of strings (text, needs a text encoder).
    image_size : int, optional
        Input size for the built-in image datasets (default: the model's, from ``data_config``).
    data_config : mapping, optional
        The model's timm data config, for the built-in image datasets' preprocessing.
    """
    if isinstance(spec, DatasetSpec):
        resolved = spec
    elif isinstance(spec, str):
        resolved = _resolve_named(spec, image_size=image_size, data_config=data_config)
    elif isinstance(spec, DataLoader):
        resolved = _resolve_loader(spec)
    elif isinstance(spec, IterableDataset):
        raise TypeError(
            f"dataset is an IterableDataset ({type(spec).__name__}); the embedding store needs "
            f"len() and dataset[i] so that row i is sample i: pass a map-style Dataset"
        )
    elif isinstance(spec, (list, tuple)) and (not spec or isinstance(spec[0], str)):
        resolved = _resolve_texts(spec)
    elif hasattr(spec, "__getitem__") and hasattr(spec, "__len__"):
        resolved = DatasetSpec(spec, description=type(spec).__name__)
    else:
        raise TypeError(
            f"dataset must be a map-style Dataset, a DataLoader, a list of strings or one of "
            f"{', '.join(DATASET_NAMES)}; got {type(spec).__name__}"
        )
    if resolved.n_samples == 0:
        raise ValueError(
            f"dataset {resolved.description or type(resolved.dataset).__name__!r} is empty "
            f"(0 samples); pass a dataset with at least one sample"
        )
    return resolved


def _resolve_named(
    name: str, *, image_size: int | None, data_config: Mapping[str, Any] | None
) -> DatasetSpec:
    if name != "digits" and not name.startswith("imagefolder:"):
        raise ValueError(
            f"unknown dataset {name!r}; valid: {', '.join(DATASET_NAMES)}, a Dataset, a "
            f"DataLoader or a list of strings"
        )
    config = resolved_data_config(data_config, image_size)
    transform = image_transform(config)
    rendering = json.dumps(config, sort_keys=True, default=str)
    if name == "digits":
        # A fixed id: the data is bundled, only the rendering (model preprocessing) varies.
        return DatasetSpec(
            DigitsDataset(transform),
            kind="image",
            dataset_id=f"sklearn-digits-{DIGITS_SAMPLES}|{rendering}",
            description="digits",
            transform_id=rendering,
        )
    listing = _folder_listing(name)
    return DatasetSpec(
        ImageFiles(listing, transform),
        kind="image",
        description=f"imagefolder:{listing.root}",
        transform_id=rendering,
    )


def _folder_listing(name: str) -> FileListing:
    root = Path(name.removeprefix("imagefolder:")).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"dataset={name!r}: {str(root)!r} is not a directory; pass "
            f"'imagefolder:PATH' with PATH/<class>/<image files>"
        )
    try:
        return scan_image_folder(root)
    except ValueError as error:
        raise ValueError(
            f"dataset={name!r} holds no images in class sub-folders ({error}); expected "
            f"PATH/<class>/<image files>"
        ) from error


def count_samples(name: str) -> int:
    """The number of samples of a named dataset, without a model, a transform or any decoding.

    Lets a caller check what depends only on the dataset's length (``n_clusters`` against N)
    before paying for a model load. An image folder is listed (no ``stat`` of files).

    Parameters
    ----------
    name : str
        ``"digits"`` or ``"imagefolder:PATH"`` (see :data:`DATASET_NAMES`).
    """
    if name == "digits":
        return DIGITS_SAMPLES
    if not isinstance(name, str) or not name.startswith("imagefolder:"):
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASET_NAMES)}")
    return len(_folder_listing(name))


def _resolve_loader(loader: DataLoader[Any]) -> DatasetSpec:
    batch_sampler: Any = loader.batch_sampler
    sampler = getattr(batch_sampler, "sampler", loader.sampler)
    if not isinstance(sampler, SequentialSampler):
        raise ValueError(
            f"dataset is a DataLoader with sampler {type(sampler).__name__} (shuffle=True or a "
            f"custom sampler): embeddings are stored in index order, so the rows would not line "
            f"up with the dataset's indices; pass DataLoader(..., shuffle=False) or the dataset"
        )
    if isinstance(loader.dataset, IterableDataset):
        return resolve_dataset(loader.dataset)
    collate = None if loader.collate_fn is torch_default_collate else loader.collate_fn
    inner = resolve_dataset(loader.dataset)
    return DatasetSpec(
        inner.dataset,
        kind=inner.kind,
        collate_fn=collate or inner.collate_fn,
        dataset_id=inner.dataset_id,
        description=inner.description,
        transform_id=inner.transform_id,
    )


def _resolve_texts(texts: Sequence[Any]) -> DatasetSpec:
    bad = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
    if bad is not None:
        raise TypeError(
            f"dataset is a list of strings but item {bad} is {type(texts[bad]).__name__}; "
            f"pass only strings (text) or a Dataset"
        )
    return DatasetSpec(TextDataset(texts), kind="text", description="texts")
