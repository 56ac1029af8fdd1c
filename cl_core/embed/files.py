"""The files of an image folder: the listing (``ImageFolder`` order) and the datasets over it.

:class:`ImageFiles` (PIL + a transform), :class:`ImageFileBytes` (encoded bytes, for the batched
decoder) and :class:`ImageFileUint8` (the light CPU decode path) share one :class:`FileListing`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import (
    Dataset,
)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""File endings an image folder's samples have (torchvision's ``IMG_EXTENSIONS``)."""


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
    def labels(self) -> np.ndarray:
        """The samples' labels, int64 (N,)."""
        return self._labels

    def encoded_relpaths(self) -> list[bytes]:
        """Every sample's path relative to :attr:`root` as bytes (``surrogateescape``), in order."""
        return self._names[:-1].split(b"\0")

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

    DataLoader workers only read; :func:`cl_core.embed.batch_decoding.decode_batch` decodes a batch on the
    compute device. Collate with :func:`cl_core.embed.batch_decoding.collate_encoded`.
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
    (:func:`cl_core.embed.decoding.normalize_uint8`).

    Parameters
    ----------
    files : ImageFiles
    transform : cl_core.embed.transform.EvalTransform
    """

    def __init__(self, files: ImageFiles, transform: Any) -> None:
        self.files = files
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def path(self, index: int) -> str:
        return self.files.path(index)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from cl_core.embed.decoding import load_uint8

        return load_uint8(self.files.path(index), self.transform), self.files.label(index)
