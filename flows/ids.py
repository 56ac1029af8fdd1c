"""Content ids of pipeline stages and the work-directory layout that is keyed by them.

A stage's content id is the short sha256 of the canonical JSON (:func:`cl_core.io.canonical_json`)
of everything that determines its output: the ids of its upstream stages, its full configuration
(defaults included) and the code version. Equal ids mean equal outputs, so an id is at once the
Prefect cache key of the stage's tasks and the name of the files they write; a changed parameter
changes the id of its own stage and of every stage downstream of it, and of no other.

The work directory is a local path or an fsspec URL (``s3://bucket/runs``): every path below is
then a ``upath.UPath`` (:func:`cl_core.io.as_location`; ``str()`` gives the URL), and the Prefect
cache records go to a ``RemoteFileSystem`` at ``<root>/cache``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect.filesystems import RemoteFileSystem

from cl_core import CODE_VERSION
from cl_core.io import Location, as_location, content_hash, is_url
from flows import files

ID_LENGTH = 16


def content_id(stage: str, payload: Mapping[str, Any]) -> str:
    """``ID_LENGTH`` hex digits of sha256 over ``{stage, code_version, **payload}``.

    ``payload`` may hold dataclasses, pydantic models, paths, numpy values and sets besides plain
    JSON (see :func:`cl_core.io.json_default`).
    """
    document = {"stage": stage, "code_version": CODE_VERSION, **payload}
    return content_hash(document, ID_LENGTH, allow_nan=True)


@dataclasses.dataclass(frozen=True)
class WorkDir:
    """Where intermediate results live: every path is derived from a content id.

    Parameters
    ----------
    root : Path or UPath
        e.g. ``runs`` or ``s3://bucket/runs``; created on first write.
    """

    root: Location

    @classmethod
    def at(cls, root: str | os.PathLike[str] | Location) -> WorkDir:
        """A work dir at a local path (made absolute) or an fsspec URL."""
        return cls(as_location(root).expanduser().absolute())

    @property
    def is_remote(self) -> bool:
        """True on object storage."""
        return is_url(self.root)

    @property
    def cache(self) -> Location:
        """Prefect's persisted task results (the cache records)."""
        return self.root / "cache"

    @property
    def result_storage(self) -> Path | RemoteFileSystem:
        """What to pass as a task's ``result_storage`` so its cache records live in :attr:`cache`.

        The local folder as a path, or an (unsaved) ``RemoteFileSystem`` block at the URL; fsspec
        takes credentials and endpoints from the environment (``AWS_*``) as everywhere else.
        """
        return RemoteFileSystem(basepath=str(self.cache)) if self.is_remote else self.cache

    def check_writable(self) -> None:
        """Fail before any work when the root cannot be written (:func:`flows.files.check_writable`)."""
        files.check_writable(self.root)

    def store(self, embed_id: str) -> Location:
        return self.root / "embeddings" / f"{embed_id}.zarr"

    def sweep(self, sample_id: str) -> Location:
        return self.root / "sweeps" / sample_id

    def cluster(self, cluster_id: str) -> Location:
        return self.root / "clusters" / cluster_id

    def difficulty(self, difficulty_id: str) -> Location:
        return self.root / "difficulty" / f"{difficulty_id}.npy"

    def difficulty_scale(self, difficulty_id: str) -> Location:
        return self.root / "difficulty" / f"{difficulty_id}.scale.json"

    def update(self, plan_id: str) -> Location:
        """An update's plan (and, when it assigns, its cluster files)."""
        return self.root / "updates" / plan_id

    def schedule(self, schedule_id: str) -> Location:
        return self.root / "schedules" / f"{schedule_id}.json"

    def report(self, publish_id: str) -> Location:
        return self.root / "reports" / publish_id
