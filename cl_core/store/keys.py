"""Per-row file keys: which file (relative path, size, mtime, or sha256) each row was embedded from.

Written once when a store of a file dataset is created (before any row is), so that a later
store over a changed listing can take the rows of unchanged files from this one
(:mod:`cl_core.store.reuse`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

KEY_ARRAYS = ("file_path", "file_size", "file_mtime_ns", "file_sha256")
_KEY_CHUNK_ROWS = 65536


@dataclass(frozen=True, eq=False)
class FileKeys:
    """The file behind each row of a file dataset, in row order.

    Attributes
    ----------
    root : str
        The data location (the image folder, absolute).
    paths : ndarray of str, shape (N,)
        Paths relative to ``root`` (``/``-separated).
    sizes, mtimes_ns : ndarray of int64, shape (N,)
        ``stat`` size and modification time (ns); -1 where ``stat`` failed.
    sha256 : ndarray of str, shape (N,), optional
        Hex digest of each file's bytes (identities computed with ``verify_content``).
    """

    root: str
    paths: np.ndarray
    sizes: np.ndarray
    mtimes_ns: np.ndarray
    sha256: np.ndarray | None = None

    def __post_init__(self) -> None:
        n_rows = len(self.paths)
        arrays = [self.sizes, self.mtimes_ns] + ([] if self.sha256 is None else [self.sha256])
        if any(len(values) != n_rows for values in arrays):
            raise ValueError(
                f"file keys must have one entry per row: {n_rows} paths but "
                f"{[len(values) for values in arrays]} sizes / mtimes / hashes"
            )

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def method(self) -> str:
        """``content`` (rows match by sha256) or ``listing`` (by path, size and mtime)."""
        return "listing" if self.sha256 is None else "content"


def write_file_keys(group: Any, keys: FileKeys) -> dict[str, str]:
    """Write ``keys`` as arrays of ``group``; the ``file_keys`` attribute that describes them."""
    chunks = (max(1, min(len(keys), _KEY_CHUNK_ROWS)),)
    columns: list[tuple[str, Any, str | type]] = [
        ("file_path", np.asarray(keys.paths, dtype=np.str_), str),
        ("file_size", np.asarray(keys.sizes, dtype=np.int64), "int64"),
        ("file_mtime_ns", np.asarray(keys.mtimes_ns, dtype=np.int64), "int64"),
    ]
    if keys.sha256 is not None:
        columns.append(("file_sha256", np.asarray(keys.sha256, dtype=np.str_), str))
    for name, values, dtype in columns:
        array = group.create_array(name, shape=(len(keys),), chunks=chunks, dtype=dtype)
        array[:] = values
    return {"root": keys.root, "method": keys.method}


def read_file_keys(group: Any, described: Any) -> FileKeys | None:
    """The keys written by :func:`write_file_keys` (``described``: the ``file_keys`` attribute)."""
    if not isinstance(described, dict) or "file_path" not in group:
        return None
    sha256 = None
    if described.get("method") == "content":
        sha256 = _strings(group["file_sha256"][:])
    return FileKeys(
        root=str(described["root"]),
        paths=_strings(group["file_path"][:]),
        sizes=np.asarray(group["file_size"][:], dtype=np.int64),
        mtimes_ns=np.asarray(group["file_mtime_ns"][:], dtype=np.int64),
        sha256=sha256,
    )


def _strings(values: Any) -> np.ndarray:
    """A zarr string array's values as a fixed-width numpy ``str_`` array."""
    return np.asarray(np.asarray(values).tolist(), dtype=np.str_)


def keys_to_json(keys: FileKeys) -> dict[str, Any]:
    """``keys`` as a JSON document (a published artifact's ``sample_keys.json``)."""
    document: dict[str, Any] = {
        "root": keys.root,
        "method": keys.method,
        "paths": [str(path) for path in keys.paths.tolist()],
        "sizes": [int(size) for size in keys.sizes.tolist()],
        "mtimes_ns": [int(mtime) for mtime in keys.mtimes_ns.tolist()],
    }
    if keys.sha256 is not None:
        document["sha256"] = [str(digest) for digest in keys.sha256.tolist()]
    return document


def keys_from_json(document: Any) -> FileKeys:
    """The keys :func:`keys_to_json` wrote."""
    if not isinstance(document, dict) or "paths" not in document:
        raise ValueError("not a file-keys document: expected root, paths, sizes and mtimes_ns")
    digests = document.get("sha256")
    return FileKeys(
        root=str(document["root"]),
        paths=np.asarray(document["paths"], dtype=np.str_),
        sizes=np.asarray(document["sizes"], dtype=np.int64),
        mtimes_ns=np.asarray(document["mtimes_ns"], dtype=np.int64),
        sha256=None if digests is None else np.asarray(digests, dtype=np.str_),
    )
