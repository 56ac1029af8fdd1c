"""Atomic writes of the small intermediate files tasks exchange (npy without pickle, JSON).

A task killed mid-write must not leave a file that a rerun mistakes for a finished result. A local
file is written to a temporary name in the same directory and renamed into place
(:func:`cl_core.io.atomic_write_bytes`); on object storage (``s3://bucket/prefix``) one object
write is atomic by itself. Every file also gets a digest record beside it
(``<name>.sha256.json``: size and sha256, written after the file), so that a cache hit can be
verified: :func:`verified` is True only for a file whose bytes are the ones recorded when it was
written.

Paths are local paths or fsspec URLs (:func:`cl_core.io.as_location`); fsspec and the protocol's
package (``s3fs``) are imported only for URLs, and their failures name the package to install, or
the bucket and the operation that failed.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from typing import Any

import numpy as np

from cl_core.artifacts import sha256_file
from cl_core.io import (
    BucketAccessError,
    BucketNotFoundError,
    Location,
    as_location,
    atomic_write_bytes,
    canonical_json,
    readable_json,
    sha256_hex,
    storage_errors,
)

DIGEST_SUFFIX = ".sha256.json"

PathLike = str | os.PathLike[str] | Location


def check_writable(root: PathLike) -> None:
    """Write and delete a probe file under ``root`` (a folder or prefix), before any work starts.

    Raises
    ------
    ImportError
        An fsspec URL whose package is missing (naming the package to install).
    FileNotFoundError, PermissionError
        A missing bucket or denied access (naming the bucket and the operation), or a local
        folder that cannot be created or written.
    """
    probe = atomic_write_bytes(as_location(root) / f".write-probe-{uuid.uuid4().hex[:12]}", b"")
    with storage_errors("delete", probe):
        probe.unlink(missing_ok=True)


def _write_recorded(path: PathLike, data: bytes) -> Location:
    """Write ``data`` to ``path`` atomically, then its digest record."""
    location = atomic_write_bytes(path, data)
    record = {"size": len(data), "sha256": sha256_hex(data)}
    atomic_write_bytes(digest_path(location), (canonical_json(record) + "\n").encode("utf-8"))
    return location


def digest_path(path: PathLike) -> Location:
    """Where the size and sha256 of ``path`` are recorded."""
    location = as_location(path)
    return location.with_name(location.name + DIGEST_SUFFIX)


def verified(path: PathLike) -> bool:
    """Whether ``path`` exists and has exactly the size and sha256 recorded when it was written.

    A missing or unreadable file or record is False; on object storage a missing bucket, denied
    access or a missing package raises instead, naming what failed.
    """
    location = as_location(path)
    try:
        with storage_errors("read", location):
            record = json.loads(digest_path(location).read_text(encoding="utf-8"))
            if location.stat().st_size != record["size"]:
                return False
            return sha256_file(location) == record["sha256"]
    except (BucketAccessError, BucketNotFoundError):
        raise  # a missing bucket or denied access is named, not a cache miss
    except (OSError, ValueError, KeyError, TypeError):
        return False


def all_verified(*paths: PathLike) -> bool:
    return all(verified(path) for path in paths)


def sibling_stores(store_path: PathLike) -> list[str]:
    """The other ``*.zarr`` stores in ``store_path``'s folder (the work dir's earlier embeddings)."""
    location = as_location(store_path)
    try:
        entries = list(location.parent.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(
        str(entry)
        for entry in entries
        if entry.name.endswith(".zarr") and entry.name != location.name
    )


def save_npy(path: PathLike, array: np.ndarray) -> Location:
    """Write ``array`` (no object dtypes) to ``path`` atomically, with its digest record."""
    values = np.asarray(array)
    if values.dtype.hasobject:
        raise TypeError(f"refusing to save an object array to {path}: it would need pickle")
    buffer = io.BytesIO()
    np.save(buffer, values, allow_pickle=False)
    return _write_recorded(path, buffer.getvalue())


def load_npy(path: PathLike) -> np.ndarray:
    """Read an ``.npy`` written by :func:`save_npy` (``allow_pickle=False``)."""
    with as_location(path).open("rb") as handle:
        return np.load(handle, allow_pickle=False)


def save_json(path: PathLike, document: Any) -> Location:
    """Write ``document`` as indented JSON atomically (NaN/inf refused), with its digest record."""
    return _write_recorded(path, readable_json(document))


def load_json(path: PathLike) -> Any:
    return json.loads(as_location(path).read_text(encoding="utf-8"))
