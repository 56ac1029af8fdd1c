"""Datasets accepted by the embedding stage, their fingerprint, and batch collation.

``resolve_dataset`` accepts any map-style torch ``Dataset``, a ``DataLoader`` that iterates in index
order, ``imagefolder:PATH``, the bundled ``digits`` demo and a list of strings. Everything else in
the embedding stage sees a :class:`DatasetSpec`: a map-style dataset plus how to collate it.

Order is the dataset's index order everywhere: a shuffling ``DataLoader`` is refused because the
rows of the embedding store would no longer line up with the dataset's indices.
"""

from __future__ import annotations

import hashlib
import json
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

DATASET_NAMES = ("digits", "imagefolder:PATH")
DATASET_KINDS = ("image", "text", "generic")
N_FINGERPRINT_SAMPLES = 16


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
    """

    dataset: Any
    kind: str = "generic"
    collate_fn: Callable[[list[Any]], Any] | None = None
    dataset_id: str | None = None
    description: str = ""

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
    if name == "digits":
        # A fixed id: the data is bundled, only the rendering (model preprocessing) varies.
        rendering = json.dumps(config, sort_keys=True, default=str)
        return DatasetSpec(
            DigitsDataset(transform),
            kind="image",
            dataset_id=f"sklearn-digits-1797|{rendering}",
            description="digits",
        )
    root = Path(name.removeprefix("imagefolder:")).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"dataset={name!r}: {str(root)!r} is not a directory; pass "
            f"'imagefolder:PATH' with PATH/<class>/<image files>"
        )
    from torchvision.datasets import ImageFolder

    try:
        folder = ImageFolder(str(root), transform=transform)
    except (FileNotFoundError, RuntimeError) as error:
        raise ValueError(
            f"dataset={name!r} holds no images in class sub-folders ({error}); expected "
            f"PATH/<class>/<image files>"
        ) from error
    return DatasetSpec(folder, kind="image", description=f"imagefolder:{root.resolve()}")


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
    )


def _resolve_texts(texts: Sequence[Any]) -> DatasetSpec:
    bad = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
    if bad is not None:
        raise TypeError(
            f"dataset is a list of strings but item {bad} is {type(texts[bad]).__name__}; "
            f"pass only strings (text) or a Dataset"
        )
    return DatasetSpec(TextDataset(texts), kind="text", description="texts")


def fingerprint_indices(n_samples: int, n_probe: int = N_FINGERPRINT_SAMPLES) -> list[int]:
    """Evenly spaced sample indices (first and last included) hashed into the fingerprint."""
    if n_samples <= 0:
        return []
    spaced = np.linspace(0, n_samples - 1, num=min(n_samples, n_probe))
    return sorted({int(i) for i in np.round(spaced)})


def dataset_fingerprint(dataset: Any, dataset_id: str | None = None) -> str:
    """sha256 identity of a dataset: its length, class and ~16 evenly spaced samples' bytes.

    Parameters
    ----------
    dataset : anything :func:`resolve_dataset` accepts
        The built-in ``digits`` has a fixed id that includes its rendering size.
    dataset_id : str, optional
        A user-given identity; used instead of hashing samples.

    Returns
    -------
    str
        64 hex characters.
    """
    spec = resolve_dataset(dataset)
    digest = hashlib.sha256()
    identity = dataset_id if dataset_id is not None else spec.dataset_id
    if identity is not None:
        digest.update(b"dataset_id\0" + identity.encode())
        return digest.hexdigest()
    data = spec.dataset
    digest.update(f"{len(data)}|{type(data).__module__}.{type(data).__qualname__}|".encode())
    for index in fingerprint_indices(len(data)):
        digest.update(f"#{index}|".encode())
        _hash_value(digest, data[index], where=f"dataset[{index}]")
    return digest.hexdigest()


def _hash_value(digest: Any, value: Any, *, where: str) -> None:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().contiguous()
        if value.dtype == torch.bfloat16:
            value = value.view(torch.int16)
        value = value.numpy()
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "O":
            raise TypeError(f"{where} holds an object array; pass dataset_id=... to name it")
        digest.update(f"A{value.dtype.str}{value.shape}|".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, Mapping):
        digest.update(f"M{len(value)}|".encode())
        for key in sorted(value, key=str):
            digest.update(f"{key!s}=".encode())
            _hash_value(digest, value[key], where=f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}|".encode())
        for position, item in enumerate(value):
            _hash_value(digest, item, where=f"{where}[{position}]")
    elif isinstance(value, (str, bytes, bool, int, float, np.generic)) or value is None:
        digest.update(f"S{type(value).__name__}:{value!r}|".encode())
    elif hasattr(value, "tobytes") and hasattr(value, "size") and hasattr(value, "mode"):
        digest.update(f"P{value.mode}{value.size}|".encode())  # PIL image
        digest.update(value.tobytes())
    else:
        raise TypeError(
            f"cannot fingerprint {where} of type {type(value).__name__}; pass dataset_id=... "
            f"(a string naming the dataset version) to embed it"
        )
