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
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
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
    TensorDataset,
)
from torch.utils.data import default_collate as torch_default_collate

DATASET_NAMES = ("digits", "imagefolder:PATH")
DIGITS_SAMPLES = 1797  # scikit-learn's bundled digits (load_digits); fixed, part of its dataset id
DATASET_KINDS = ("image", "text", "generic")
N_FINGERPRINT_SAMPLES = 16
IDENTITY_METHODS = ("listing", "content", "sampled", "explicit", "array")
"""How a :class:`DatasetIdentity` was computed (see :func:`dataset_identity`)."""
_STAT_BLOCK = 16384  # files stat'ed per thread task by dataset_identity
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""File endings an image folder's samples have (torchvision's ``IMG_EXTENSIONS``)."""


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


@dataclass(frozen=True)
class DatasetIdentity:
    """Which data a run embedded: a fingerprint plus how it was computed.

    Attributes
    ----------
    fingerprint : str
        64 hex characters (sha256).
    method : {"listing", "content", "sampled", "explicit", "array"}
        ``listing``: every file's relative path, size and mtime (image folders); ``content``:
        every file's bytes; ``array``: the whole in-memory data; ``sampled``: the length and ~16
        samples (generic datasets, may miss a change); ``explicit``: a given ``dataset_id`` or a
        built-in dataset's fixed id.
    detail : str
        One human-readable line for run summaries (e.g. "listing of 1,234 files").
    """

    fingerprint: str
    method: str
    detail: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.fingerprint, str) or len(self.fingerprint) != 64:
            raise ValueError(
                f"fingerprint must be 64 hex characters (a sha256), got {self.fingerprint!r}; "
                f"build identities with dataset_identity()"
            )
        if self.method not in IDENTITY_METHODS:
            raise ValueError(
                f"unknown identity method {self.method!r}; valid: {', '.join(IDENTITY_METHODS)}"
            )

    @property
    def complete(self) -> bool:
        """False for ``sampled`` identities, which can miss a changed sample."""
        return self.method != "sampled"


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


@dataclass(frozen=True, eq=False)
class FileListing:
    """Every sample file of an image folder, in torchvision ``ImageFolder`` order.

    Attributes
    ----------
    root : str
        The folder (absolute).
    classes : list of str
        Class sub-folder names, sorted; label ``i`` is ``classes[i]``.
    relpaths : list of str
        Paths relative to ``root`` (``/``-separated), sorted by folder then file name.
    labels : ndarray of int64, shape (N,)
        Class index of each file.
    """

    root: str
    classes: list[str]
    relpaths: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.relpaths)


def scan_image_folder(root: str | os.PathLike[str]) -> FileListing:
    """List ``root/<class>/**/<image files>`` with ``os.scandir`` (no ``stat`` of files).

    Same samples and order as torchvision's ``ImageFolder`` (classes sorted; within a class,
    folders in sorted path order, files sorted by name; links followed), so row ``i`` of a store
    is ``ImageFolder(root)[i]``. Sizes and mtimes are read by :func:`dataset_identity`.

    Raises
    ------
    ValueError
        No class sub-folders, or a class folder without image files.
    """
    top = os.path.abspath(os.path.expanduser(os.fspath(root)))
    with os.scandir(top) as entries:
        classes = sorted(entry.name for entry in entries if entry.is_dir())
    if not classes:
        raise ValueError(
            f"{top!r} has no class sub-folders; expected PATH/<class>/<image files> "
            f"({', '.join(IMAGE_EXTENSIONS)})"
        )
    relpaths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = _scan_class(top, name)
        relpaths.extend(found)
        labels.extend([label] * len(found))
        if not found:
            raise ValueError(
                f"class folder {os.path.join(top, name)!r} holds no image files "
                f"({', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder"
            )
    return FileListing(
        root=top,
        classes=classes,
        relpaths=relpaths,
        labels=np.asarray(labels, dtype=np.int64),
    )


def _scan_class(top: str, name: str) -> list[str]:
    """Relative paths of a class folder's image files, in ImageFolder order."""
    pending = [name]
    folders: list[tuple[str, list[str]]] = []
    while pending:
        relative = pending.pop()
        files: list[str] = []
        with os.scandir(os.path.join(top, relative)) as entries:
            for entry in entries:
                if entry.is_dir():  # follows links, as ImageFolder's os.walk(followlinks=True)
                    pending.append(f"{relative}/{entry.name}")
                elif entry.name.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(entry.name)
        folders.append((relative, files))
    # ImageFolder sorts os.walk's (folder path, ...) tuples, then the file names of each folder.
    folders.sort(key=lambda item: item[0].replace("/", os.sep))
    return [f"{relative}/{file_name}" for relative, files in folders for file_name in sorted(files)]


def _pil_rgb(path: str) -> Any:
    from PIL import Image

    with open(path, "rb") as handle:
        image = Image.open(handle)
        return image.convert("RGB")


class ImageFiles(Dataset[tuple[Any, int]]):
    """The samples of an image folder (``ImageFolder`` order and labels), light to pickle.

    Paths are kept as one string plus offsets, so handing the dataset to DataLoader worker
    processes copies a few buffers instead of pickling millions of tuples.

    Parameters
    ----------
    listing : FileListing
        From :func:`scan_image_folder`.
    transform : callable, optional
        PIL RGB image -> model input; None returns the PIL image.
    """

    def __init__(self, listing: FileListing, transform: Callable[[Any], Any] | None = None) -> None:
        self.root = listing.root
        self.classes = list(listing.classes)
        self.transform = transform
        encoded = [relpath.encode("utf-8", "surrogateescape") for relpath in listing.relpaths]
        lengths = np.fromiter((len(item) + 1 for item in encoded), np.int64, len(encoded))
        self._offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self._names = b"\0".join(encoded) + b"\0"
        self._labels = np.asarray(listing.labels, dtype=np.int64)

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.classes)}

    @property
    def targets(self) -> list[int]:
        return self._labels.tolist()

    @property
    def samples(self) -> list[tuple[str, int]]:
        """``[(path, label), ...]`` like ``ImageFolder.samples`` (built on each access)."""
        return [(self.path(i), int(label)) for i, label in enumerate(self._labels)]

    def __len__(self) -> int:
        return len(self._labels)

    def relpath(self, index: int) -> str:
        """Path of sample ``index`` relative to :attr:`root`."""
        start, stop = int(self._offsets[index]), int(self._offsets[index + 1]) - 1
        return self._names[start:stop].decode("utf-8", "surrogateescape")

    def path(self, index: int) -> str:
        """Absolute path of sample ``index``."""
        return os.path.join(self.root, self.relpath(index))

    def label(self, index: int) -> int:
        return int(self._labels[index])

    def read_bytes(self, index: int) -> bytes:
        """The encoded file of sample ``index`` (for decoders that take bytes)."""
        with open(self.path(index), "rb") as handle:
            return handle.read()

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = _pil_rgb(self.path(index))
        if self.transform is not None:
            image = self.transform(image)
        return image, self.label(index)

    def __repr__(self) -> str:
        return f"ImageFiles({self.root!r}, {len(self)} files, {len(self.classes)} classes)"


class ImageFileBytes(Dataset[tuple[torch.Tensor, int]]):
    """The files of :class:`ImageFiles` as encoded bytes: ``(uint8 1-D tensor, label)``.

    DataLoader workers only read; :func:`cl_core.decoding.decode_batch` decodes a batch on the
    compute device. Collate with :func:`cl_core.decoding.collate_encoded`.
    """

    def __init__(self, files: ImageFiles) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def path(self, index: int) -> str:
        return self.files.path(index)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        data = np.fromfile(self.files.path(index), dtype=np.uint8)
        return torch.from_numpy(data), self.files.label(index)


class ImageFileUint8(Dataset[tuple[torch.Tensor, int]]):
    """The files of :class:`ImageFiles` decoded, resized and cropped in uint8: the light CPU path.

    Reduced-size JPEG decoding (PIL ``draft``) where the target is smaller than the image; the
    float conversion and normalisation happen on the compute device
    (:func:`cl_core.decoding.normalize_uint8`).

    Parameters
    ----------
    files : ImageFiles
    transform : cl_core.decoding.EvalTransform
    """

    def __init__(self, files: ImageFiles, transform: Any) -> None:
        self.files = files
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def path(self, index: int) -> str:
        return self.files.path(index)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from cl_core.decoding import load_uint8

        return load_uint8(self.files.path(index), self.transform), self.files.label(index)


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


def fingerprint_indices(n_samples: int, n_probe: int = N_FINGERPRINT_SAMPLES) -> list[int]:
    """Evenly spaced sample indices (first and last included) hashed into the fingerprint."""
    if n_samples <= 0:
        return []
    spaced = np.linspace(0, n_samples - 1, num=min(n_samples, n_probe))
    return sorted({int(i) for i in np.round(spaced)})


def dataset_fingerprint(dataset: Any, dataset_id: str | None = None) -> str:
    """sha256 identity of a dataset: ``dataset_identity(dataset, dataset_id).fingerprint``.

    Returns
    -------
    str
        64 hex characters.
    """
    return dataset_identity(dataset, dataset_id).fingerprint


def dataset_identity(
    dataset: Any,
    dataset_id: str | DatasetIdentity | None = None,
    *,
    verify_content: bool = False,
) -> DatasetIdentity:
    """The identity of a dataset: changes whenever the data (or the built-in preprocessing) does.

    Parameters
    ----------
    dataset : anything :func:`resolve_dataset` accepts
        ``imagefolder:PATH`` (or its resolved spec) and torchvision ``DatasetFolder`` datasets are
        identified by their full file listing; ``TensorDataset`` and lists of strings by all their
        values; the built-in ``digits`` by a fixed id that includes its rendering size; any other
        dataset by its length, class and ~16 evenly spaced samples (method ``sampled``: a change
        elsewhere goes unnoticed, so name versions with ``dataset_id``).
    dataset_id : str or DatasetIdentity, optional
        A user-given version name (method ``explicit``), or an identity computed earlier (returned
        as is, so a run lists a folder once and hands the result to every shard).
    verify_content : bool
        For file datasets: hash every file's bytes instead of trusting sizes and mtimes (for file
        systems whose mtimes are unreliable; reads the whole dataset).

    Returns
    -------
    DatasetIdentity
    """
    if isinstance(dataset_id, DatasetIdentity):
        return dataset_id
    if dataset_id is not None and (not isinstance(dataset_id, str) or not dataset_id):
        raise ValueError(
            f"dataset_id must be a non-empty string naming the dataset version, got "
            f"{dataset_id!r}; e.g. dataset_id='imagenet-2024-06'"
        )
    if not isinstance(verify_content, bool):
        raise TypeError(f"verify_content must be True or False, got {verify_content!r}")
    spec = resolve_dataset(dataset)
    digest = hashlib.sha256()
    identity = dataset_id if dataset_id is not None else spec.dataset_id
    if identity is not None:
        digest.update(b"dataset_id\0" + identity.encode())
        source = "dataset_id" if dataset_id is not None else "built-in id"
        return DatasetIdentity(digest.hexdigest(), "explicit", f"{source} {identity[:60]!r}")
    data = spec.dataset
    if isinstance(data, ImageFiles) or _file_samples(data) is not None:
        return _files_identity(spec, verify_content)
    if isinstance(data, (TensorDataset, TextDataset)):
        return _array_identity(data)
    digest.update(f"{len(data)}|{type(data).__module__}.{type(data).__qualname__}|".encode())
    indices = fingerprint_indices(len(data))
    for index in indices:
        digest.update(f"#{index}|".encode())
        _hash_value(digest, data[index], where=f"dataset[{index}]")
    detail = (
        f"sampled: length and {len(indices)} of {len(data):,} samples of "
        f"{type(data).__name__} (pass dataset_id to name the version)"
    )
    return DatasetIdentity(digest.hexdigest(), "sampled", detail)


def _file_samples(data: Any) -> list[str] | None:
    """Paths of a torchvision ``DatasetFolder``-like dataset (``.samples`` of (path, label))."""
    samples = getattr(data, "samples", None)
    if not isinstance(samples, list) or len(samples) != len(data):
        return None
    paths = []
    for item in samples:
        if not (isinstance(item, tuple) and item and isinstance(item[0], (str, os.PathLike))):
            return None
        paths.append(os.fspath(item[0]))
    return paths


def _files_identity(spec: DatasetSpec, verify_content: bool) -> DatasetIdentity:
    """Listing (relative path, size, mtime) or content hash of every sample file, in order."""
    data = spec.dataset
    digest = hashlib.sha256()
    method = "content" if verify_content else "listing"
    if isinstance(data, ImageFiles):
        names = data._names[:-1].split(b"\0")  # relative paths, as bytes
        labels = data._labels
        transform = spec.transform_id or repr(data.transform)
        root = os.fsencode(data.root) + b"/"
    else:
        listed = _file_samples(data) or []
        common = os.path.commonpath(listed) if len(listed) > 1 else os.path.dirname(listed[0])
        names = [os.fsencode(os.path.relpath(path, common)) for path in listed]
        labels = np.asarray([label for _, label in data.samples], dtype=np.int64)
        transform = spec.transform_id or repr(getattr(data, "transform", None))
        root = os.fsencode(common) + b"/"
    header = {"method": method, "n": len(names), "transform": transform}
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    digest.update(b"\0".join(names))
    paths = [root + name for name in names]
    if verify_content:
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 2)) as pool:
            for file_digest in pool.map(_content_digest, paths, chunksize=64):
                digest.update(file_digest)
        detail = f"content: sha256 of {len(paths):,} files"
    else:
        # Threads: stat() releases the GIL, so network file systems overlap their round trips.
        blocks = [paths[i : i + _STAT_BLOCK] for i in range(0, len(paths), _STAT_BLOCK)]
        with ThreadPoolExecutor(max_workers=min(8, len(blocks), os.cpu_count() or 1)) as pool:
            for stats in pool.map(_stat_block, blocks):
                digest.update(np.asarray(stats, dtype=np.int64).reshape(-1, 2).tobytes())
        detail = f"listing: path, size and mtime of {len(paths):,} files"
    return DatasetIdentity(digest.hexdigest(), method, detail)


def _stat_block(paths: list[bytes]) -> list[tuple[int, int]]:
    """(size, mtime_ns) of each path; (-1, -1) where stat fails (it fails later as a bad sample)."""
    try:
        return [(stat.st_size, stat.st_mtime_ns) for stat in map(os.stat, paths)]
    except OSError:
        return [_stat_pair(path) for path in paths]


def _stat_pair(path: bytes) -> tuple[int, int]:
    try:
        stat = os.stat(path)
    except OSError:
        return (-1, -1)
    return (stat.st_size, stat.st_mtime_ns)


def _content_digest(path: bytes) -> bytes:
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").digest()
    except OSError as error:
        return hashlib.sha256(f"unreadable:{describe_error(error)}".encode()).digest()


def _array_identity(data: TensorDataset | TextDataset) -> DatasetIdentity:
    digest = hashlib.sha256()
    if isinstance(data, TextDataset):
        digest.update(f"texts|{len(data)}|".encode())
        for text in data.texts:
            encoded = text.encode("utf-8", "surrogatepass")
            digest.update(f"{len(encoded)}:".encode() + encoded)
        return DatasetIdentity(digest.hexdigest(), "array", f"array: all {len(data):,} texts")
    digest.update(f"tensors|{len(data.tensors)}|".encode())
    for position, tensor in enumerate(data.tensors):
        _hash_value(digest, tensor, where=f"tensors[{position}]")
    return DatasetIdentity(digest.hexdigest(), "array", f"array: all {len(data):,} samples")


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
