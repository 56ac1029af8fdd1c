"""Publishing one content-addressed, verified artifact version (:func:`publish_artifact`).

Publishing is atomic: every file is written (and fsynced) into
``<root>/<name>/.tmp-<version>@<host>@<pid>@<rand>/``, ``manifest.json`` last, and the directory
is then renamed to its version name. Readers treat a directory without ``manifest.json`` as
absent, so a crash at any point never exposes a partial artifact and never touches an earlier
version. ``latest`` is then pointed at the version (:func:`~cl_core.artifacts.latest.point_latest`).

On object storage (no rename) the files are uploaded in place, then ``manifest.json`` (one
atomic object write), then ``latest`` (:func:`_publish_objects`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cl_core import CODE_VERSION
from cl_core.artifacts.files import (
    _json_bytes,
    _pending_files,
    _PendingFile,
    _write_file,
)
from cl_core.artifacts.identity import (
    _check_sample_mask,
    _parents_with_mask,
    _size_fields,
    compute_version,
)
from cl_core.artifacts.latest import (
    _check_artifact_name,
    _point_latest,
    _temp_name,
    remove_stale_temporaries,
)
from cl_core.artifacts.location import Location, ObjectPath, as_location
from cl_core.artifacts.manifest import (
    MANIFEST_FILE,
    SAMPLE_MASK_FILE,
    SCHEMA_VERSION,
    ArtifactIntegrityError,
    sha256_file,
)
from cl_core.artifacts.verify import verify_artifact
from cl_core.io import fsync_directory, sha256_hex


def _existing_version(version_dir: Location, replace_damaged: bool = False) -> bool:
    """True if a complete, verified version is already published at ``version_dir``.

    A directory without a manifest does not count (it is replaced). A manifest whose files fail
    verification raises, because silently overwriting a tampered artifact would hide the damage;
    with ``replace_damaged`` the damaged directory is removed instead (renamed aside first, so
    the version never holds a mix of old and new files) and False is returned.
    """
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
        if isinstance(version_dir, ObjectPath):
            # No rename on object storage: the manifest goes first, so readers stop seeing the
            # damaged version before any of its files disappear.
            (version_dir / MANIFEST_FILE).unlink(missing_ok=True)
            version_dir.remove_tree()
            return False
        trash = version_dir.parent / _temp_name("trash", version_dir.name)
        try:
            os.rename(version_dir, trash)
        except FileNotFoundError:  # a concurrent publisher removed it first
            return False
        shutil.rmtree(trash, ignore_errors=True)
        return False
    return True


def _install(temp_dir: Path, version_dir: Path) -> None:
    """Rename the finished temp dir into place; a manifest-less leftover is moved aside first."""
    try:
        os.rename(temp_dir, version_dir)
        return
    except OSError:
        if (version_dir / MANIFEST_FILE).is_file():
            # A concurrent publisher of the same content won the race; its copy is equivalent.
            shutil.rmtree(temp_dir, ignore_errors=True)
            return
        if not version_dir.exists():
            raise
    trash = version_dir.parent / _temp_name("trash", version_dir.name)
    os.rename(version_dir, trash)
    os.rename(temp_dir, version_dir)
    shutil.rmtree(trash, ignore_errors=True)


def _check_flag(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _excluded_record(mask: np.ndarray) -> dict[str, Any]:
    indices = np.flatnonzero(~mask)
    return {"count": int(indices.size), "indices": [int(i) for i in indices]}


def publish_artifact(
    root: str | os.PathLike[str] | ObjectPath,
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
) -> Location:
    """Publish files as one content-addressed, verified artifact version.

    Parameters
    ----------
    root : str, PathLike or ObjectPath
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

    Returns
    -------
    Path or ObjectPath
        The version directory (an :class:`ObjectPath` for a URL root). If that version already
        exists (and verifies) it is returned untouched; either way ``latest`` then points to it.
    """
    name = _check_artifact_name(name)
    sizes = _size_fields(arrays)
    mask = _check_sample_mask(sample_mask, sizes["n_samples"])
    parents = _parents_with_mask(parents, mask)
    version = compute_version(parents, config)
    name_dir = as_location(root) / name
    version_dir = name_dir / version
    remove_stale_temporaries(root, name)
    if _existing_version(version_dir, _check_flag("replace_damaged", replace_damaged)):
        _point_latest(name_dir, version)
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
        manifest["excluded"] = _excluded_record(mask)
    _json_bytes(manifest["metrics"], "metrics")  # fail before anything touches the disk

    if isinstance(version_dir, ObjectPath):
        _publish_objects(version_dir, pending, manifest)
        _point_latest(name_dir, version)
        return version_dir
    assert isinstance(name_dir, Path)
    name_dir.mkdir(parents=True, exist_ok=True)
    temp_dir = name_dir / _temp_name("tmp", version)
    temp_dir.mkdir()
    try:
        for item in pending:
            manifest["files"][item.name] = _write_file(temp_dir, item)
        # The manifest goes last: until it exists the directory is not a version.
        manifest_bytes = _json_bytes(manifest, "manifest")
        _write_file(temp_dir, _PendingFile(MANIFEST_FILE, manifest_bytes, None, None, None))
        fsync_directory(temp_dir)
        _install(temp_dir, version_dir)
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    fsync_directory(name_dir)
    _point_latest(name_dir, version)
    return version_dir


def _publish_objects(
    version_dir: ObjectPath, pending: Sequence[_PendingFile], manifest: dict[str, Any]
) -> None:
    """Upload a version in place: its files, then its manifest (object stores cannot rename).

    Until the manifest object exists the prefix is not a version to any reader, so an
    interrupted upload stays invisible and the next publish of the same version overwrites it.
    Concurrent publishers of one version upload the same content (the version is its content
    id); the first manifest stored wins and is kept.
    """
    for item in pending:
        target = version_dir / item.name
        if item.source is not None:
            digest = sha256_file(item.source)
            target.upload(item.source)
        else:
            assert item.data is not None
            digest = sha256_hex(item.data)
            target.write_bytes(item.data)
        manifest["files"][item.name] = {"sha256": digest, "shape": item.shape, "dtype": item.dtype}
    manifest_bytes = _json_bytes(manifest, "manifest")
    if not (version_dir / MANIFEST_FILE).is_file():
        (version_dir / MANIFEST_FILE).write_bytes(manifest_bytes)
