"""Atomic writes of the small intermediate files tasks exchange (npy without pickle, JSON).

A task killed mid-write must not leave a file that a rerun mistakes for a finished result, so every
file is written to a temporary name in the same directory and renamed into place.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


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


def save_npy(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` (no object dtypes) to ``path`` atomically."""
    values = np.asarray(array)
    if values.dtype.hasobject:
        raise TypeError(f"refusing to save an object array to {path}: it would need pickle")
    return _atomic(Path(path), lambda handle: np.save(handle, values, allow_pickle=False))


def load_npy(path: str | Path) -> np.ndarray:
    """Read an ``.npy`` written by :func:`save_npy` (``allow_pickle=False``)."""
    return np.load(Path(path), allow_pickle=False)


def save_json(path: str | Path, document: Any) -> Path:
    """Write ``document`` as indented JSON atomically (NaN/inf refused)."""
    text = json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n"
    return _atomic(Path(path), lambda handle: handle.write(text.encode("utf-8")))


def load_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
