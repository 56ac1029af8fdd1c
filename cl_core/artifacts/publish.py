"""Publishing one content-addressed, verified artifact version (:func:`publish_artifact`).

The files of a version are serialised in memory first: arrays as ``.npy`` (numeric dtypes only,
no pickle), documents as strict JSON (no NaN), extra files (plots) as they are; every name is
checked before anything is written. Locally they are written (and fsynced) into
``<root>/<name>/.tmp-<version>@<host>@<pid>@<rand>/``, ``manifest.json`` last, and the directory
is then renamed to its version name. Object storage has no rename: the files are written in
place, ``manifest.json`` last (one atomic object write). Either way readers treat a version
without ``manifest.json`` as absent, so a crash at any point never exposes a partial artifact
and never touches an earlier version. ``latest`` is then pointed at the version.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shutil
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cl_core import CODE_VERSION
from cl_core.artifacts.identity import (
    check_sample_mask,
    compute_version,
    parents_with_mask,
    size_fields,
)
from cl_core.artifacts.latest import (
    check_artifact_name,
    remove_stale_temporaries,
    temp_name,
    write_latest,
)
from cl_core.artifacts.manifest import (
    LATEST_FILE,
    MANIFEST_FILE,
    SAMPLE_MASK_FILE,
    SCHEMA_VERSION,
    ArtifactIntegrityError,
)
from cl_core.artifacts.verify import verify_artifact
from cl_core.io import (
    Location,
    as_location,
    atomic_write_bytes,
    fsync_directory,
    is_url,
    readable_json,
    sha256_hex,
    storage_errors,
)

if TYPE_CHECKING:
    from upath import UPath

_NUMERIC_KINDS = "biufc"
_RESERVED_NAMES = (MANIFEST_FILE, LATEST_FILE)


@dataclasses.dataclass(frozen=True)
class PendingFile:
    """One file of a version: its bytes, and for ``.npy`` files the shape and dtype."""

    name: str
    data: bytes
    shape: list[int] | None = None
    dtype: str | None = None


def _check_file_name(name: object, argument: str) -> str:
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name[0] == ".":
        raise ValueError(
            f"{argument} key {name!r} is not a plain file name; use names like 'difficulty' or "
            f"'plot.png' without directories or a leading dot"
        )
    if name in _RESERVED_NAMES:
        raise ValueError(f"{argument} key {name!r} is reserved by the artifact layout; rename it")
    return name


def _npy_file(key: str, array: object) -> PendingFile:
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
    return PendingFile(name, buffer.getvalue(), list(values.shape), str(values.dtype))


def _json_bytes(obj: object, what: str) -> bytes:
    """Readable (indented, key-sorted) strict JSON; NaN/inf are refused, not written."""
    try:
        return readable_json(obj)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{what} is not JSON-serialisable with finite numbers ({error}); "
            f"use plain values and null instead of NaN"
        ) from None


def _json_file(key: str, obj: object) -> PendingFile:
    name = _check_file_name(key if key.endswith(".json") else f"{key}.json", "json_files")
    return PendingFile(name, _json_bytes(obj, f"json_files[{key!r}]"))


def _extra_file(key: str, source: str | os.PathLike[str]) -> PendingFile:
    name = _check_file_name(key, "extra_files")
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"extra_files[{key!r}] = {str(path)!r} is not a file; pass the path of a file to copy"
        )
    return PendingFile(name, path.read_bytes())


def _pending_files(
    arrays: Mapping[str, object],
    json_files: Mapping[str, object],
    extra_files: Mapping[str, str | os.PathLike[str]] | None,
) -> list[PendingFile]:
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


def write_file(directory: Location, item: PendingFile) -> dict[str, Any]:
    """Write one file of a version durably and return its manifest entry."""
    atomic_write_bytes(directory / item.name, item.data, durable=True)
    return {"sha256": sha256_hex(item.data), "shape": item.shape, "dtype": item.dtype}


def _check_flag(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def is_published(version_dir: Location, replace_damaged: bool = False) -> bool:
    """True if a complete, verified version is already published at ``version_dir``.

    A directory without a manifest does not count (it is replaced). A manifest whose files fail
    verification raises, because silently overwriting a tampered artifact would hide the damage;
    with ``replace_damaged`` the damaged version is removed instead (readers stop seeing it before
    any of its files go) and False is returned.
    """
    replace_damaged = _check_flag("replace_damaged", replace_damaged)
    if not (version_dir / MANIFEST_FILE).is_file():
        return False
    try:
        verify_artifact(version_dir)
    except ArtifactIntegrityError as error:
        if not replace_damaged:
            raise ArtifactIntegrityError(
                error.path,
                f"belongs to the already published version {version_dir.name}, which fails "
                f"verification ({error})",
                f"delete {version_dir} and publish again, or pass replace_damaged=True",
            ) from None
        _remove_version(version_dir)
        return False
    return True


def _remove_version(version_dir: Location) -> None:
    if not isinstance(version_dir, Path):  # object storage has no rename: the manifest first
        with contextlib.suppress(NotADirectoryError), storage_errors("delete", version_dir):
            (version_dir / MANIFEST_FILE).unlink(missing_ok=True)
            version_dir.rmdir(recursive=True)
        return
    # Renamed aside first, so the version never holds a mix of old and new files.
    trash = version_dir.parent / temp_name("trash", version_dir.name)
    try:
        os.rename(version_dir, trash)
    except FileNotFoundError:  # a concurrent publisher removed it first
        return
    shutil.rmtree(trash, ignore_errors=True)


def _install(temp_dir: Path, version_dir: Path) -> None:
    """Rename the finished temp dir into place; a manifest-less leftover is moved aside first."""
    try:
        os.rename(temp_dir, version_dir)
    except OSError:
        if (version_dir / MANIFEST_FILE).is_file():
            # A concurrent publisher of the same content won the race; its copy is equivalent.
            shutil.rmtree(temp_dir, ignore_errors=True)
            return
        if not version_dir.exists():
            raise
        trash = version_dir.parent / temp_name("trash", version_dir.name)
        os.rename(version_dir, trash)
        os.rename(temp_dir, version_dir)
        shutil.rmtree(trash, ignore_errors=True)
    fsync_directory(version_dir.parent)


def _excluded_record(mask: np.ndarray, paths: Mapping[int, str] | None) -> dict[str, Any]:
    indices = np.flatnonzero(~mask)
    record: dict[str, Any] = {"count": int(indices.size), "indices": [int(i) for i in indices]}
    if paths:
        record["paths"] = [paths.get(int(i)) for i in indices]
    return record


def publish_artifact(
    root: str | os.PathLike[str] | UPath,
    name: str,
    *,
    arrays: Mapping[str, np.ndarray],
    json_files: Mapping[str, object],
    config: Mapping[str, Any],
    parents: Sequence[str],
    metrics: Mapping[str, Any] | None = None,
    extra_files: Mapping[str, str | os.PathLike[str]] | None = None,
    dataset_fingerprint: str | None = None,
    sample_mask: np.ndarray | None = None,
    replace_damaged: bool = False,
    lineage: Mapping[str, Any] | None = None,
    excluded_paths: Mapping[int, str] | None = None,
) -> Location:
    """Publish files as one content-addressed, verified artifact version.

    Parameters
    ----------
    root : str, PathLike or UPath
        Artifact root, a local directory or an fsspec URL (``s3://bucket/artifacts``); the
        version lands in ``<root>/<name>/<version>/``.
    name : str
        Artifact name (a plain directory name).
    arrays : mapping of str to ndarray
        Numeric arrays saved as ``<key>.npy`` (``.npy`` appended when missing); object dtypes
        are refused.
    json_files : mapping of str to object
        JSON documents saved as ``<key>.json``.
    config : mapping
        Full configuration (defaults included); part of the version id.
    parents : sequence of str
        Content ids of the inputs; part of the version id.
    metrics : mapping, optional
        Summary figures stored in the manifest (not part of the version id).
    extra_files : mapping of str to path, optional
        Files copied in under the given names (plots).
    dataset_fingerprint : str, optional
        Recorded in the manifest.
    sample_mask : array-like of shape (N,), bool, optional
        True for the samples a training job may draw (N from ``difficulty`` or ``assignment``
        in ``arrays``). When it excludes any sample it is written as ``sample_mask.npy``, the
        manifest records ``excluded`` ``{"count", "indices"}`` and its digest joins
        ``parents`` (the version id). ``None`` or all True: nothing is written or recorded.
    replace_damaged : bool
        What to do when this version is already published but fails verification (a file
        was modified or lost after publishing): False (default) raises
        :class:`ArtifactIntegrityError` naming the file; True removes the damaged version and
        publishes it again ("publish the artifact again").
    lineage : mapping, optional
        Where the version comes from (parent version, the version whose centroids it uses, row
        counts, the refit decision; :mod:`cl_core.update`): the manifest's ``lineage``. Not
        part of the version id (the parents are).
    excluded_paths : mapping of int to str, optional
        The path of each excluded sample by index: the manifest's ``excluded`` record lists
        them as ``paths`` beside ``indices``.

    Returns
    -------
    Path or UPath
        The version directory (a ``upath.UPath`` for a URL root). If that version already
        exists (and verifies) it is returned untouched; either way ``latest`` then points to it.
    """
    name = check_artifact_name(name)
    sizes = size_fields(arrays)
    mask = check_sample_mask(sample_mask, sizes["n_samples"])
    parents = parents_with_mask(parents, mask)
    version = compute_version(parents, config)
    name_dir = as_location(root) / name
    version_dir = name_dir / version
    remove_stale_temporaries(root, name)
    if is_published(version_dir, replace_damaged):
        write_latest(name_dir, version)
        return version_dir

    if mask is not None:
        arrays = {**arrays, SAMPLE_MASK_FILE: mask}
    pending = _pending_files(arrays, json_files, extra_files)
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "version": version,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "parents": [str(parent) for parent in parents],
        "config": dict(config),
        "code_version": CODE_VERSION,
        "dataset_fingerprint": dataset_fingerprint,
        **sizes,
        "files": {},
        "metrics": dict(metrics or {}),
    }
    if mask is not None:
        manifest["excluded"] = _excluded_record(mask, excluded_paths)
    if lineage is not None:
        manifest["lineage"] = dict(lineage)
    _json_bytes(manifest["metrics"], "metrics")  # fail before anything touches the disk

    # object storage cannot rename a directory into place: its versions are written in place
    staging: Location = version_dir if is_url(version_dir) else name_dir / temp_name("tmp", version)
    try:
        for item in pending:
            manifest["files"][item.name] = write_file(staging, item)
        # The manifest goes last: until it exists the directory is not a version. On object
        # storage a concurrent publisher of the same version may have stored it first: it stays.
        if not (staging / MANIFEST_FILE).is_file():
            write_file(staging, PendingFile(MANIFEST_FILE, _json_bytes(manifest, "manifest")))
        if isinstance(staging, Path) and isinstance(version_dir, Path):
            _install(staging, version_dir)
    except BaseException:
        if isinstance(staging, Path) and staging != version_dir:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    write_latest(name_dir, version)
    return version_dir
