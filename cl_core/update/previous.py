"""The previous version of a nightly run: what a published artifact keeps for the next update.

A version that can be updated records, besides ``difficulty``, ``assignment`` and ``centroids``:

* ``distances.npy`` (float32, N): each sample's distance to its centroid;
* ``sample_keys.json``: each sample's file key (relative path, size, mtime, sha256 with
  ``--verify-content``), so that tomorrow's rows can be matched to today's;
* ``refit_state.json``: how features were normalised before clustering (``normalize`` and the
  mean/std it used), the per-cluster difficulty scale (:class:`~cl_core.difficulty.DifficultyScale`)
  and the embedding configuration (model, weights, layer, pooling, transform, ...);
* the manifest's ``lineage``.

:func:`find_previous` picks "the previous version" of a run: ``latest`` of the same name, unless
``latest`` is over the very same listing (a rerun), in which case it is ``latest``'s own parent, so
that a rerun reproduces the version it made the first time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from cl_core.artifacts import (
    ArtifactIntegrityError,
    latest_version,
    list_versions,
    load_array,
    load_json,
    load_manifest,
    load_sample_mask,
    resolve_version,
    verify_artifact,
)
from cl_core.difficulty import DifficultyScale
from cl_core.io import Location
from cl_core.store import FileKeys, keys_from_json, keys_to_json
from cl_core.store.create import identity_attrs

KEYS_FILE = "sample_keys"
STATE_FILE = "refit_state"
DISTANCES_FILE = "distances"
_DATASET_ATTRS = ("dataset_fingerprint", "dataset_identity_method")


def embedding_identity(store_attrs: dict[str, Any]) -> dict[str, Any]:
    """What must be equal for two stores' rows to be comparable: every identity attribute of a
    store but the dataset's (model, weights, layer, pooling, transform, precision, decode), and D."""
    identity = {k: v for k, v in identity_attrs(store_attrs).items() if k not in _DATASET_ATTRS}
    identity["dim"] = store_attrs.get("dim")
    return identity


def refit_state(
    scale: DifficultyScale,
    normalize: str,
    feature_mean: Any,
    feature_std: Any,
    embedding: dict[str, Any],
) -> dict[str, Any]:
    """The ``refit_state.json`` document of a version (see the module notes)."""
    return {
        "normalize": normalize,
        "feature_mean": None if feature_mean is None else np.asarray(feature_mean).tolist(),
        "feature_std": None if feature_std is None else np.asarray(feature_std).tolist(),
        "difficulty_scale": scale.to_json(),
        "embedding": embedding,
    }


def version_files(keys: FileKeys | None, state: dict[str, Any] | None) -> dict[str, Any]:
    """The JSON files (``publish_curriculum(json_files=...)``) that make a version updatable."""
    files: dict[str, Any] = {} if state is None else {STATE_FILE: state}
    if keys is not None:
        files[KEYS_FILE] = keys_to_json(keys)
    return files


@dataclass(frozen=True, eq=False)
class PreviousVersion:
    """A published version loaded for an update (arrays verified against its manifest).

    Attributes
    ----------
    path : Path or UPath
        The version directory.
    manifest : dict
    keys : FileKeys
        File key of each of its N samples.
    centroids : ndarray of shape (k, D), float32
    assignment : ndarray of shape (N,), int32 (-1 for excluded samples)
    distances : ndarray of shape (N,), float32
    valid : ndarray of shape (N,), bool
    scale : DifficultyScale
    normalize : str
    feature_mean, feature_std : ndarray of shape (D,), float64, or None
    embedding : dict
        The embedding configuration its store had (:func:`embedding_identity`).
    """

    path: Location
    manifest: dict[str, Any]
    keys: FileKeys
    centroids: np.ndarray
    assignment: np.ndarray
    distances: np.ndarray
    valid: np.ndarray
    scale: DifficultyScale
    normalize: str
    feature_mean: np.ndarray | None
    feature_std: np.ndarray | None
    embedding: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def lineage(self) -> dict[str, Any]:
        return dict(self.manifest.get("lineage") or {})

    @property
    def fit_version(self) -> str:
        """The version whose centroids this one uses (itself when it fitted them)."""
        return str(self.lineage.get("centroids_from") or self.version)

    @property
    def fit_rows(self) -> int:
        """Valid rows of the fit that made the centroids in use."""
        return int(self.lineage.get("fit_rows") or self.valid.sum())

    @property
    def changed_since_fit(self) -> int:
        """Rows added, changed or removed between that fit and this version."""
        return int(self.lineage.get("changed_since_fit") or 0)


def load_previous(path: str | os.PathLike[str] | Location) -> PreviousVersion:
    """Load and verify a published version for an update.

    Raises
    ------
    ValueError
        The version records no sample keys or refit state (published before nightly runs
        existed, or not from a file dataset): it cannot be updated.
    ArtifactIntegrityError
        A file fails verification.
    """
    version_dir = resolve_version(path)
    manifest = verify_artifact(version_dir)
    files = manifest.get("files", {})
    missing = [
        name
        for name in (f"{KEYS_FILE}.json", f"{STATE_FILE}.json", f"{DISTANCES_FILE}.npy")
        if name not in files
    ]
    if missing or "centroids.npy" not in files or "assignment.npy" not in files:
        raise ValueError(
            f"version {manifest.get('version')} of {manifest.get('name')!r} cannot be updated: it "
            f"records no {', '.join(missing) or 'centroids/assignment'} (published from a file "
            "dataset by this release it would); run with --refit always once"
        )
    state = load_json(version_dir, STATE_FILE)
    mask = load_sample_mask(version_dir, manifest)
    assignment = load_array(version_dir, "assignment").astype(np.int32)
    mean, std = state.get("feature_mean"), state.get("feature_std")
    return PreviousVersion(
        path=version_dir,
        manifest=manifest,
        keys=keys_from_json(load_json(version_dir, KEYS_FILE)),
        centroids=load_array(version_dir, "centroids").astype(np.float32),
        assignment=assignment,
        distances=load_array(version_dir, DISTANCES_FILE).astype(np.float32),
        valid=np.ones(assignment.shape[0], dtype=bool) if mask is None else mask,
        scale=DifficultyScale.from_json(state["difficulty_scale"]),
        normalize=str(state["normalize"]),
        feature_mean=None if mean is None else np.asarray(mean, dtype=np.float64),
        feature_std=None if std is None else np.asarray(std, dtype=np.float64),
        embedding=dict(state.get("embedding") or {}),
    )


def previous_version(
    root: str | os.PathLike[str] | Location, name: str, dataset_fingerprint: str | None
) -> tuple[Location | None, str]:
    """Where the version a run over ``dataset_fingerprint`` updates is, reading manifests only.

    ``latest`` of ``name`` under ``root``; when a published version of ``name`` was made from
    this very listing (a rerun, even after later versions), that version's own parent (None if
    it was fitted without one), so the rerun makes the same version again.

    Returns
    -------
    (Path or UPath or None, str)
        The version directory, and a few words on the choice ("no previous version",
        "latest", "the parent of <version> (a rerun over the same files)").
    """
    try:
        latest = latest_version(root, name)
        latest_manifest = load_manifest(latest)
    except (FileNotFoundError, ValueError, ArtifactIntegrityError, OSError):
        return None, "no previous version"
    if f"{KEYS_FILE}.json" not in latest_manifest.get("files", {}):
        return None, f"no previous version with sample keys ({latest.name} records none)"
    if dataset_fingerprint is not None:
        same = []
        for version_dir in list_versions(root, name):
            try:
                manifest = load_manifest(version_dir)
            except (FileNotFoundError, ValueError, ArtifactIntegrityError, OSError):
                continue
            if manifest.get("dataset_fingerprint") == dataset_fingerprint:
                same.append((str(manifest.get("created_at") or ""), version_dir, manifest))
        if same:
            _, version_dir, manifest = max(same, key=lambda entry: entry[0])
            parent = (manifest.get("lineage") or {}).get("parent")
            if not parent:
                return None, f"no previous version ({version_dir.name} is over the same files)"
            why = f"the parent of {version_dir.name} (a rerun over the same files)"
            return version_dir.parent / str(parent), why
    return latest, "latest"


def find_previous(
    root: str | os.PathLike[str] | Location, name: str, dataset_fingerprint: str | None
) -> tuple[PreviousVersion | None, str]:
    """The version a run over ``dataset_fingerprint`` updates (:func:`previous_version`),
    loaded and verified, or None and why (also when it cannot be used: it failed
    verification, or it records no sample keys)."""
    path, why = previous_version(root, name, dataset_fingerprint)
    if path is None:
        return None, why
    try:
        return load_previous(path), why
    except ArtifactIntegrityError as error:
        return None, f"previous version {path.name} failed verification: {error}"
    except (ValueError, FileNotFoundError) as error:
        return None, str(error)
