"""Versioned, content-addressed curriculum artifacts: publish, verify, load, ``latest``.

``<root>/<name>/<version>/`` (local or an fsspec URL) holds the files and ``manifest.json``,
written last; ``<root>/<name>/latest`` names the current version. The read side (``manifest``,
``verify``) is numpy + standard library, shared with :mod:`cl_core.sampler`. The map of modules
is in ``docs/architecture.md``; the format in ``shared/design.md`` (Storage).
"""

from __future__ import annotations

from cl_core.artifacts.curriculum import publish_curriculum
from cl_core.artifacts.identity import array_digest, compute_version, curriculum_identity
from cl_core.artifacts.latest import (
    latest_version,
    list_versions,
    point_latest,
    remove_stale_temporaries,
)
from cl_core.artifacts.manifest import (
    LATEST_FILE,
    MANIFEST_FILE,
    SAMPLE_MASK_FILE,
    SCHEMA_VERSION,
    ArtifactIntegrityError,
    load_manifest,
    resolve_version,
    sha256_file,
)
from cl_core.artifacts.publish import publish_artifact
from cl_core.artifacts.verify import (
    check_difficulty,
    load_array,
    load_json,
    load_sample_mask,
    verify_artifact,
    verify_file,
)

__all__ = [
    "LATEST_FILE",
    "MANIFEST_FILE",
    "SAMPLE_MASK_FILE",
    "SCHEMA_VERSION",
    "ArtifactIntegrityError",
    "array_digest",
    "check_difficulty",
    "compute_version",
    "curriculum_identity",
    "latest_version",
    "list_versions",
    "load_array",
    "load_json",
    "load_manifest",
    "load_sample_mask",
    "point_latest",
    "publish_artifact",
    "publish_curriculum",
    "remove_stale_temporaries",
    "resolve_version",
    "sha256_file",
    "verify_artifact",
    "verify_file",
]
