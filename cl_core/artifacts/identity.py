"""Content ids: the version of an artifact is a hash of its canonical inputs.

``version`` is the first 12 hex characters of the sha256 of the canonical JSON of ``{parents,
config, schema_version, code_version}`` (:func:`compute_version`); arrays enter ``parents`` as
:func:`array_digest` s, and a sample mask that excludes anything as its digest.
:func:`curriculum_identity` is the one definition of what a curriculum's version is hashed from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cl_core import CODE_VERSION
from cl_core.artifacts.manifest import SCHEMA_VERSION
from cl_core.io import content_hash
from cl_core.schedule import ScheduleConfig
from cl_core.validation import check_valid_mask

VERSION_LENGTH = 12


def compute_version(parents: Sequence[str], config: Mapping[str, Any]) -> str:
    """Content id of an artifact: 12 hex chars of sha256 over its canonical inputs.

    Parameters
    ----------
    parents : sequence of str
        Content ids of everything the artifact derives from (store fingerprints, array digests).
    config : mapping
        The full configuration, defaults included.

    Returns
    -------
    str
        The version string, identical for identical (parents, config, schema, code version).
    """
    payload = {
        "parents": [str(parent) for parent in parents],
        "config": dict(config),
        "schema_version": SCHEMA_VERSION,
        "code_version": CODE_VERSION,
    }
    try:
        return content_hash(payload, VERSION_LENGTH)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"config must be JSON-serialisable with finite numbers ({error}); use plain "
            f"str/int/float/bool/list/dict values and null instead of NaN"
        ) from None


def array_digest(array: np.ndarray) -> str:
    """``"sha256:<hex>"`` of an array's dtype, shape and C-order bytes.

    Independent of the ``.npy`` header layout, so the id does not change with numpy's file format.
    """
    values = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{values.dtype.str}|{values.shape}|".encode())
    digest.update(values.data)  # C-contiguous buffer, hashed without a copy
    return f"sha256:{digest.hexdigest()}"


def size_fields(arrays: Mapping[str, object]) -> dict[str, int | None]:
    """N, D and k for the manifest, taken from the standard array names when present."""
    shapes = {key.removesuffix(".npy"): np.asarray(value).shape for key, value in arrays.items()}
    per_sample = shapes.get("difficulty") or shapes.get("assignment")
    centroids = shapes.get("centroids")
    return {
        "n_samples": int(per_sample[0]) if per_sample else None,
        "dim": int(centroids[1]) if centroids and len(centroids) == 2 else None,
        "n_clusters": int(centroids[0]) if centroids else None,
    }


def check_sample_mask(sample_mask: object, n_samples: int | None) -> np.ndarray | None:
    """The mask as bool (N,) when it excludes something, else None."""
    if sample_mask is None:
        return None
    if n_samples is None:
        raise ValueError(
            "sample_mask needs a per-sample array to fix N: pass 'difficulty' or 'assignment' "
            "in arrays, or leave sample_mask None"
        )
    return check_valid_mask("sample_mask", sample_mask, n_samples)


def parents_with_mask(parents: Sequence[str], mask: np.ndarray | None) -> list[str]:
    """``parents`` plus the mask's digest (once), so the mask is part of the version id."""
    full = [str(parent) for parent in parents]
    if mask is not None:
        digest = array_digest(mask)
        if digest not in full:
            full.append(digest)
    return full


def curriculum_identity(
    arrays: Mapping[str, np.ndarray],
    schedule_config: ScheduleConfig,
    pipeline_config: Mapping[str, Any] | None = None,
    parents: Sequence[str] = (),
    *,
    sample_mask: np.ndarray | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """The parents and config a curriculum artifact's version is hashed from.

    One definition for :func:`publish_curriculum` and the pipeline's publish task, so the same
    inputs give the same version whichever way they are published.

    Parameters
    ----------
    arrays : mapping of str to ndarray
        The arrays to publish (``difficulty``, optional ``assignment``, ``centroids``); their
        sha256 digests are appended to ``parents`` so different scores never share a version.
    schedule_config : ScheduleConfig
        Recorded under ``config["schedule"]`` (its JSON form).
    pipeline_config : mapping, optional
        Upstream configuration, recorded under ``config["pipeline"]``.
    parents : sequence of str
        Upstream content ids.
    sample_mask : array-like of shape (N,), bool, optional
        Drawable samples; when it excludes any, its digest is appended to ``parents``.

    Returns
    -------
    (list of str, dict)
        ``parents`` and ``config`` for :func:`publish_artifact` / :func:`compute_version`:
        ``compute_version(*curriculum_identity(...))`` is the version :func:`publish_curriculum`
        publishes for the same (float32 difficulty, int32 assignment, float32 centroids) arrays.
    """
    full_parents = [*map(str, parents), *(array_digest(value) for value in arrays.values())]
    if sample_mask is not None:
        n_samples = size_fields(arrays)["n_samples"]
        full_parents = parents_with_mask(full_parents, check_sample_mask(sample_mask, n_samples))
    full_config = {
        "artifact": "curriculum",
        "schedule": schedule_config.to_json(),
        "pipeline": dict(pipeline_config or {}),
    }
    return full_parents, full_config
