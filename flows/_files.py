"""Atomic writes of the small intermediate files tasks exchange (npy without pickle, JSON).

A task killed mid-write must not leave a file that a rerun mistakes for a finished result, so every
file is written to a temporary name in the same directory and renamed into place. Every file also
gets a digest record beside it (``<name>.sha256.json``: size and sha256, written after the file),
so that a cache hit can be verified: :func:`verified` is True only for a file whose bytes are the
ones recorded when it was written.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

DIGEST_SUFFIX = ".sha256.json"


def _atomic(path: Path, write: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _write_recorded(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, then its digest record."""
    _atomic(path, lambda handle: handle.write(data))
    record = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    text = json.dumps(record, sort_keys=True) + "\n"
    _atomic(digest_path(path), lambda handle: handle.write(text.encode("utf-8")))
    return path


def digest_path(path: str | Path) -> Path:
    """Where the size and sha256 of ``path`` are recorded."""
    path = Path(path)
    return path.with_name(path.name + DIGEST_SUFFIX)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified(path: str | Path) -> bool:
    """Whether ``path`` exists and has exactly the size and sha256 recorded when it was written."""
    path = Path(path)
    try:
        record = json.loads(digest_path(path).read_text(encoding="utf-8"))
        if path.stat().st_size != record["size"]:
            return False
        return file_sha256(path) == record["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def all_verified(*paths: str | Path) -> bool:
    return all(verified(path) for path in paths)


def save_npy(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` (no object dtypes) to ``path`` atomically, with its digest record."""
    values = np.asarray(array)
    if values.dtype.hasobject:
        raise TypeError(f"refusing to save an object array to {path}: it would need pickle")
    buffer = io.BytesIO()
    np.save(buffer, values, allow_pickle=False)
    return _write_recorded(Path(path), buffer.getvalue())


def load_npy(path: str | Path) -> np.ndarray:
    """Read an ``.npy`` written by :func:`save_npy` (``allow_pickle=False``)."""
    return np.load(Path(path), allow_pickle=False)


def save_json(path: str | Path, document: Any) -> Path:
    """Write ``document`` as indented JSON atomically (NaN/inf refused), with its digest record."""
    text = json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n"
    return _write_recorded(Path(path), text.encode("utf-8"))


def load_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
