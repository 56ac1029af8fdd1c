"""Content ids of pipeline stages and the work-directory layout that is keyed by them.

A stage's content id is the short sha256 of the canonical JSON of everything that determines its
output: the ids of its upstream stages, its full configuration (defaults included) and the code
version. Equal ids mean equal outputs, so an id is at once the Prefect cache key of the stage's
tasks and the name of the files they write; a changed parameter changes the id of its own stage
and of every stage downstream of it, and of no other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cl_core import CODE_VERSION

ID_LENGTH = 16


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} cannot be part of a content id; pass plain values")


def canonical_json(payload: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, dataclasses/pydantic/numpy as plain data."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_jsonable)


def content_id(stage: str, payload: Mapping[str, Any]) -> str:
    """``ID_LENGTH`` hex digits of sha256 over ``{stage, code_version, **payload}``."""
    document = {"stage": stage, "code_version": CODE_VERSION, **payload}
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()[:ID_LENGTH]


@dataclasses.dataclass(frozen=True)
class WorkDir:
    """Where intermediate results live: every path is derived from a content id.

    Parameters
    ----------
    root : path
        e.g. ``runs``; created on first write.
    """

    root: Path

    @classmethod
    def at(cls, root: str | Path) -> WorkDir:
        return cls(Path(root).expanduser().absolute())

    @property
    def cache(self) -> Path:
        """Prefect's persisted task results (the cache records)."""
        return self.root / "cache"

    def store(self, embed_id: str) -> Path:
        return self.root / "embeddings" / f"{embed_id}.zarr"

    def sweep(self, sample_id: str) -> Path:
        return self.root / "sweeps" / sample_id

    def cluster(self, cluster_id: str) -> Path:
        return self.root / "clusters" / cluster_id

    def difficulty(self, difficulty_id: str) -> Path:
        return self.root / "difficulty" / f"{difficulty_id}.npy"

    def schedule(self, schedule_id: str) -> Path:
        return self.root / "schedules" / f"{schedule_id}.json"

    def report(self, publish_id: str) -> Path:
        return self.root / "reports" / publish_id
