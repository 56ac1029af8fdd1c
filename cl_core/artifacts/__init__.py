"""Versioned, content-addressed curriculum artifacts: publish, verify, load, ``latest``.

A version is ``<root>/<name>/<version>/`` where ``version`` is the first 12 hex characters of the
sha256 of the canonical JSON of ``{parents, config, schema_version, code_version}``; the same inputs
therefore always map to the same directory and a rerun publishes nothing new.

Publishing is atomic: every file is written (and fsynced) into
``<root>/<name>/.tmp-<version>@<host>@<pid>@<rand>/``, ``manifest.json`` last, and the directory is
then renamed to its version name. Readers treat a directory without ``manifest.json`` as absent, so
a crash at any point never exposes a partial artifact and never touches an earlier version.
``<root>/<name>/latest`` is a one-line pointer file replaced atomically (:func:`point_latest`:
write a temp file, fsync, ``os.replace``), so a concurrent reader sees the old or the new version,
never a partial name.

Every temporary name (``.tmp-*`` directories, ``.trash-*`` directories, ``.latest-*`` pointer
files) records its writer's host name and process id. A publish of a name first removes the
temporaries of that name whose writer is gone (same host, process no longer running), e.g. those
left by a publish killed with SIGKILL (:func:`remove_stale_temporaries`). A live writer's, or
another host's, are left alone; temporaries in the old unowned format are removed once older than
a day.

Samples that could not be loaded can be excluded with ``sample_mask`` (bool (N,), True =
drawable): the version then holds ``sample_mask.npy``, the manifest records ``excluded``
``{count, indices}``, and the mask is part of the version id. Nothing changes when no sample is
excluded.

Object storage
--------------
``root`` may be an fsspec URL (``s3://bucket/artifacts``; fsspec and ``s3fs`` installed). Object
stores have no rename, so a version is published in place, in the same order: every file is
uploaded under ``<root>/<name>/<version>/``, then ``manifest.json`` (one atomic object write), then
``latest`` (one atomic object write). Readers ignore a prefix without a manifest, so a reader
never sees a version without its manifest, and an interrupted upload is invisible; publishing the
version again overwrites its leftovers (there are no temporaries to clean up). The returned paths
are then :class:`ObjectPath` objects (``str()`` gives the URL). Missing packages, a missing
bucket and denied access are reported with the package to install, or the bucket and the
operation that failed.

Modules
-------
================  ==========================================================================
``location``      local paths or fsspec URLs (:class:`ObjectPath`); fsspec imported on use only
``manifest``      layout constants, :class:`ArtifactIntegrityError`, :func:`resolve_version`,
                  :func:`load_manifest`, :func:`sha256_file` (numpy + stdlib: the sampler's)
``verify``        :func:`verify_artifact`, :func:`load_array`, :func:`load_json`, the sample
                  mask and difficulty checks (numpy + stdlib: the sampler's)
``identity``      :func:`compute_version`, :func:`array_digest`, :func:`curriculum_identity`
``files``         serialising the files in memory, durable (fsynced) writes
``latest``        :func:`point_latest`, :func:`latest_version`, :func:`list_versions`,
                  :func:`remove_stale_temporaries`
``publish``       :func:`publish_artifact` (atomic rename locally, manifest-last on objects)
``curriculum``    :func:`publish_curriculum`: scores -> schedule -> artifact
================  ==========================================================================

The read side (``location``, ``manifest``, ``verify``) is shared with :mod:`cl_core.sampler`
and imports only numpy and the standard library, so a training job verifies exactly what the
pipeline wrote without importing the publisher's dependencies.
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
from cl_core.artifacts.location import ObjectPath
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
from cl_core.artifacts.verify import load_array, load_json, verify_artifact

__all__ = [
    "LATEST_FILE",
    "MANIFEST_FILE",
    "SAMPLE_MASK_FILE",
    "SCHEMA_VERSION",
    "ArtifactIntegrityError",
    "ObjectPath",
    "array_digest",
    "compute_version",
    "curriculum_identity",
    "latest_version",
    "list_versions",
    "load_array",
    "load_json",
    "load_manifest",
    "point_latest",
    "publish_artifact",
    "publish_curriculum",
    "remove_stale_temporaries",
    "resolve_version",
    "sha256_file",
    "verify_artifact",
]
