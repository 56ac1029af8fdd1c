"""Dataset identity: which data a store (and everything downstream) was computed from.

An image folder's identity is its complete listing (relative path, size and modification time of
every file, one ``stat`` each, plus the preprocessing), or with ``verify_content=True`` the sha256 of
every file's bytes; in-memory data is hashed whole; any other dataset is *sampled* (its length and
~16 evenly spaced samples), which can miss a changed sample: pass ``dataset_id=`` to name its
version explicitly.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import (
    TensorDataset,
)

from cl_core.embed.datasets import DatasetSpec, TextDataset, describe_error, resolve_dataset
from cl_core.embed.files import ImageFiles
from cl_core.store import FileKeys

N_FINGERPRINT_SAMPLES = 16
IDENTITY_METHODS = ("listing", "content", "sampled", "explicit", "array")
"""How a :class:`DatasetIdentity` was computed (see :func:`dataset_identity`)."""
_STAT_BLOCK = 16384  # files stat'ed per thread task by dataset_identity
_RECENT_KEYS: dict[tuple[bytes, bool], FileKeys] = {}


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


def _file_names(spec: DatasetSpec) -> tuple[bytes, list[bytes], np.ndarray, str]:
    """(root with a trailing ``/``, relative paths, labels, transform id) of a file dataset."""
    data = spec.dataset
    if isinstance(data, ImageFiles):
        transform = spec.transform_id or repr(data.transform)
        return os.fsencode(data.root) + b"/", data.encoded_relpaths(), data.labels, transform
    listed = _file_samples(data) or []
    common = os.path.commonpath(listed) if len(listed) > 1 else os.path.dirname(listed[0])
    names = [os.fsencode(os.path.relpath(path, common)) for path in listed]
    labels = np.asarray([label for _, label in data.samples], dtype=np.int64)
    transform = spec.transform_id or repr(getattr(data, "transform", None))
    return os.fsencode(common) + b"/", names, labels, transform


def list_file_keys(dataset: Any, verify_content: bool = False) -> FileKeys | None:
    """Each sample file's key (relative path, size, mtime; sha256 with ``verify_content``).

    The keys :func:`dataset_identity` last computed for the same listing are returned without
    listing again. None for datasets that are not files.
    """
    spec = resolve_dataset(dataset)
    if not (isinstance(spec.dataset, ImageFiles) or _file_samples(spec.dataset) is not None):
        return None
    root, names, _, _ = _file_names(spec)
    recent = _RECENT_KEYS.get((root, verify_content))
    if recent is not None and recent.paths.tolist() == _decoded(names):
        return recent
    return _stat_keys(root, names, verify_content)


def clear_file_keys_cache() -> None:
    """Forget the file keys :func:`dataset_identity` remembered for :func:`list_file_keys`."""
    _RECENT_KEYS.clear()


def _decoded(names: list[bytes]) -> list[str]:
    return [name.decode("utf-8", "surrogateescape") for name in names]


def _stat_keys(root: bytes, names: list[bytes], verify_content: bool) -> FileKeys:
    """Read the sizes and mtimes (or contents) of ``root + name`` for every name, in order."""
    paths = [root + name for name in names]
    # Threads: stat() releases the GIL, so network file systems overlap their round trips.
    blocks = [paths[i : i + _STAT_BLOCK] for i in range(0, len(paths), _STAT_BLOCK)]
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(blocks), os.cpu_count() or 1))) as pool:
        stats = [pair for block in pool.map(_stat_block, blocks) for pair in block]
    pairs = np.asarray(stats, dtype=np.int64).reshape(-1, 2)
    sha256 = None
    if verify_content:
        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 2)) as pool:
            digests = list(pool.map(_content_digest, paths, chunksize=64))
        sha256 = np.asarray([digest.hex() for digest in digests], dtype=np.str_)
    keys = FileKeys(
        root=os.fsdecode(root[:-1]),
        paths=np.asarray(_decoded(names), dtype=np.str_),
        sizes=pairs[:, 0].copy(),
        mtimes_ns=pairs[:, 1].copy(),
        sha256=sha256,
    )
    _RECENT_KEYS.clear()  # one listing remembered: the one the next store is created from
    _RECENT_KEYS[(root, verify_content)] = keys
    return keys


def _files_identity(spec: DatasetSpec, verify_content: bool) -> DatasetIdentity:
    """Listing (relative path, size, mtime) or content hash of every sample file, in order."""
    digest = hashlib.sha256()
    method = "content" if verify_content else "listing"
    root, names, labels, transform = _file_names(spec)
    header = {"method": method, "n": len(names), "transform": transform}
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    digest.update(b"\0".join(names))
    keys = _stat_keys(root, names, verify_content)
    if keys.sha256 is not None:
        digest.update(b"".join(bytes.fromhex(value) for value in keys.sha256.tolist()))
        detail = f"content: sha256 of {len(names):,} files"
    else:
        digest.update(np.stack([keys.sizes, keys.mtimes_ns], axis=1).astype(np.int64).tobytes())
        detail = f"listing: path, size and mtime of {len(names):,} files"
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
