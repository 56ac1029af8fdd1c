"""Durable file writes, canonical JSON and content hashes: the one definition of each.

Every content id in the project (artifact versions, store fingerprints, the flows' stage ids) is
the sha256 of :func:`canonical_json` of a document, and every small file that must never be seen
half-written goes through :func:`atomic_write_bytes` (temporary name in the same directory, then
``os.replace``). Public so that ``flows/`` uses the same definitions (it may import public
``cl_core`` names only); numpy + standard library, so :mod:`cl_core.sampler` may use it too.

Object storage has no rename and needs none: one object write is atomic, so callers holding an
:class:`cl_core.artifacts.location.ObjectPath` call its ``write_bytes``; the functions here are
for local files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_write_bytes",
    "canonical_json",
    "content_hash",
    "fsync_directory",
    "json_default",
    "readable_json",
    "sha256_hex",
    "write_durable",
]


def json_default(value: Any) -> Any:
    """Plain JSON data for the non-JSON values configs hold, deterministically.

    numpy scalars and arrays (``item`` / ``tolist``), paths (``os.fspath``), dataclasses (their
    fields), pydantic models (``model_dump(mode="json")``) and sets (sorted).

    Raises
    ------
    TypeError
        Any other type (the caller names the document it was in).
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable; pass plain values")


def canonical_json(obj: Any, *, allow_nan: bool = False) -> str:
    """Compact, key-sorted JSON: equal documents give equal strings, the input of content ids.

    Parameters
    ----------
    obj : any
        Plain JSON data, or values :func:`json_default` converts.
    allow_nan : bool
        Write NaN/inf as ``NaN``/``Infinity`` tokens (not strict JSON) instead of refusing them.

    Raises
    ------
    TypeError, ValueError
        A value that is not serialisable, or NaN/inf with ``allow_nan=False``.
    """
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), allow_nan=allow_nan, default=json_default
    )


def readable_json(obj: Any) -> bytes:
    """Indented, key-sorted strict JSON (NaN/inf refused) with a final newline, UTF-8 bytes."""
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False, default=json_default)
    return (text + "\n").encode("utf-8")


def sha256_hex(data: bytes | str) -> str:
    """Hex sha256 of ``data`` (a ``str`` is hashed as UTF-8)."""
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def content_hash(obj: Any, length: int, *, allow_nan: bool = False) -> str:
    """The first ``length`` hex digits of the sha256 of :func:`canonical_json` of ``obj``."""
    return sha256_hex(canonical_json(obj, allow_nan=allow_nan))[:length]


def fsync_directory(path: str | os.PathLike[str]) -> None:
    """Persist a directory's entries (a rename or create in it) where the platform allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_durable(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` and fsync it (for files in a not-yet-published directory)."""
    target = Path(path)
    with open(target, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return target


def atomic_write_bytes(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    durable: bool = False,
    temp_name: str | None = None,
) -> Path:
    """Replace ``path`` with ``data`` atomically: readers see the old or the new bytes, never a mix.

    The bytes go to a temporary file in the same directory (created with its parents), which is
    then renamed over ``path``; a crash leaves the old file and at most the temporary.

    Parameters
    ----------
    path : path
        The file to write.
    data : bytes
        Its new content.
    durable : bool
        fsync the file before the rename and the directory after it, so the new content also
        survives a power loss (costs a few milliseconds).
    temp_name : str, optional
        Name of the temporary file (e.g. one that records its writer, for stale-file cleanup);
        default a unique ``.<name>.<random>.tmp``.

    Returns
    -------
    Path
        ``path``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if temp_name is None:
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        handle = os.fdopen(fd, "wb")
    else:
        temp = str(target.parent / temp_name)
        handle = open(temp, "xb")  # noqa: SIM115 (closed below, before the rename)
    try:
        with handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_directory(target.parent)
    return target
