"""The files of a version: serialised in memory first, then written durably.

Arrays become ``.npy`` bytes (numeric dtypes only, no pickle), documents strict JSON (no NaN),
extra files are copied; all names are checked before anything touches the disk. Each file is
fsynced as it is written and its manifest entry (sha256, shape, dtype) returned.
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cl_core.artifacts.manifest import LATEST_FILE, MANIFEST_FILE, sha256_file
from cl_core.io import readable_json, sha256_hex, write_durable

_NUMERIC_KINDS = "biufc"
_RESERVED_NAMES = (MANIFEST_FILE, LATEST_FILE)


@dataclasses.dataclass(frozen=True)
class _PendingFile:
    """One file to publish: its bytes (or a source path to copy) and manifest shape/dtype."""

    name: str
    data: bytes | None
    source: Path | None
    shape: list[int] | None
    dtype: str | None


def _check_file_name(name: object, argument: str) -> str:
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name[0] == ".":
        raise ValueError(
            f"{argument} key {name!r} is not a plain file name; use names like 'difficulty' or "
            f"'plot.png' without directories or a leading dot"
        )
    if name in _RESERVED_NAMES:
        raise ValueError(f"{argument} key {name!r} is reserved by the artifact layout; rename it")
    return name


def _npy_file(key: str, array: object) -> _PendingFile:
    name = _check_file_name(key if key.endswith(".npy") else f"{key}.npy", "arrays")
    values = np.asarray(array)
    if values.dtype.hasobject or values.dtype.kind not in _NUMERIC_KINDS:
        raise TypeError(
            f"arrays[{key!r}] has dtype {values.dtype}; artifacts hold numeric arrays only "
            f"(no pickle), so convert it to a numeric dtype or store it as JSON"
        )
    values = np.ascontiguousarray(values)
    buffer = io.BytesIO()
    np.save(buffer, values, allow_pickle=False)
    return _PendingFile(name, buffer.getvalue(), None, list(values.shape), str(values.dtype))


def _json_bytes(obj: object, what: str) -> bytes:
    """Readable (indented, key-sorted) strict JSON; NaN/inf are refused, not written."""
    try:
        return readable_json(obj)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{what} is not JSON-serialisable with finite numbers ({error}); "
            f"use plain values and null instead of NaN"
        ) from None


def _json_file(key: str, obj: object) -> _PendingFile:
    name = _check_file_name(key if key.endswith(".json") else f"{key}.json", "json_files")
    return _PendingFile(name, _json_bytes(obj, f"json_files[{key!r}]"), None, None, None)


def _extra_file(key: str, source: str | os.PathLike[str]) -> _PendingFile:
    name = _check_file_name(key, "extra_files")
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"extra_files[{key!r}] = {str(path)!r} is not a file; pass the path of a file to copy"
        )
    return _PendingFile(name, None, path, None, None)


def _pending_files(
    arrays: Mapping[str, object],
    json_files: Mapping[str, object],
    extra_files: Mapping[str, str | os.PathLike[str]] | None,
) -> list[_PendingFile]:
    pending = [_npy_file(key, value) for key, value in arrays.items()]
    pending += [_json_file(key, value) for key, value in json_files.items()]
    pending += [_extra_file(key, value) for key, value in (extra_files or {}).items()]
    names = [item.name for item in pending]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(
            f"file names {duplicates} are given more than once across arrays, json_files and "
            f"extra_files; give every file one unique name"
        )
    return pending


def _write_file(directory: Path, item: _PendingFile) -> dict[str, Any]:
    """Write one pending file durably and return its manifest entry."""
    target = directory / item.name
    if item.source is not None:
        shutil.copyfile(item.source, target)
        with open(target, "rb+") as handle:
            os.fsync(handle.fileno())
        digest = sha256_file(target)
    else:
        assert item.data is not None
        write_durable(target, item.data)
        digest = sha256_hex(item.data)
    return {"sha256": digest, "shape": item.shape, "dtype": item.dtype}
