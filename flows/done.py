"""Completion predicates: the on-disk truth a Prefect cache record must agree with.

Before a task is submitted the flow checks its output here (files whose size and sha256 match
what was recorded when they were written, a published artifact that passes ``verify_artifact``,
a store's done markers); where it does not verify, the task runs with ``refresh_cache=True``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cl_core.artifacts import verify_artifact
from cl_core.io import Location, as_location
from cl_core.store import open_store
from flows import files

CLUSTER_FILE = "cluster.json"
CLUSTER_ARRAYS = ("centroids.npy", "assignment.npy", "distances.npy")
RECEIPT_FILE = "published.json"
UPDATE_PLAN_FILE = "plan.json"


def store_created(store_path: str) -> bool:
    """The store exists and opens (its layout is readable)."""
    try:
        open_store(store_path, read_only=True)
    except (OSError, ValueError, KeyError):
        return False
    return True


def store_planned(store_path: str) -> bool:
    """The store exists and the rows it reuses from earlier stores are in place (or it is
    complete, or it has no files to reuse rows by)."""
    if not store_created(store_path):
        return False
    store = open_store(store_path, read_only=True)
    return store.reuse is not None or store.is_complete or not store.attrs.get("file_keys")


def copied_shards(store_path: str) -> set[int]:
    """Shards whose every row was copied from an earlier store: done, and no task's work."""
    store = open_store(store_path, read_only=True)
    reused = store.reused_rows()
    if reused is None:
        return set()
    return {
        shard for shard in range(store.n_shards) if reused[slice(*store.shard_range(shard))].all()
    }


def partly_copied_shards(store_path: str) -> dict[int, int]:
    """Shards some but not all of whose rows were copied from an earlier store: how many rows
    each still has to embed (from the store's record of copied rows, done or not)."""
    store = open_store(store_path, read_only=True)
    reused = store.reused_rows()
    if reused is None:
        return {}
    partly = {}
    for shard in range(store.n_shards):
        rows = reused[slice(*store.shard_range(shard))]
        if rows.any() and not rows.all():
            partly[shard] = int((~rows).sum())
    return partly


def shard_rows(store_path: str) -> int:
    """Rows per shard of the store."""
    return int(open_store(store_path, read_only=True).shard_rows)


def missing_shards(store_path: str) -> list[int]:
    """Shards of the store without a done marker."""
    return list(open_store(store_path).missing_shards())


def store_complete(store_path: str) -> bool:
    """Every shard's done marker is set and the store is finalized."""
    return store_created(store_path) and open_store(store_path, read_only=True).is_complete


def files_verified(*paths: str | Location) -> bool:
    """Every file exists with the size and sha256 recorded when it was written."""
    return files.all_verified(*paths)


def cluster_outputs_verified(out_dir: str | Location) -> bool:
    """The cluster stage's files (centroids, assignment, distances, summary) are intact."""
    directory = as_location(out_dir)
    required = [directory / name for name in CLUSTER_ARRAYS] + [directory / CLUSTER_FILE]
    optional = [path for path in [directory / "cluster_class.npy"] if path.exists()]
    return files_verified(*required, *optional)


def update_planned(out_dir: str | Location) -> bool:
    """An update's plan is intact, and so are its cluster files when it assigned."""
    plan_path = as_location(out_dir) / UPDATE_PLAN_FILE
    if not files_verified(plan_path):
        return False
    return files.load_json(plan_path)["action"] != "assign" or cluster_outputs_verified(out_dir)


def published(receipt_dir: str | Location) -> bool:
    """The publish receipt is intact and the version it names passes ``verify_artifact``."""
    receipt = as_location(receipt_dir) / RECEIPT_FILE
    if not files_verified(receipt):
        return False
    try:
        verify_artifact(files.load_json(receipt)["artifact_path"])
    except (ValueError, OSError, KeyError):  # ArtifactIntegrityError is a ValueError
        return False
    return True


def usable_rows(store: Any) -> np.ndarray | None:
    """Bool mask (N,) of the rows a curriculum may use: False for samples skipped while embedding.

    None when nothing was skipped (the stages then behave exactly as without a mask).
    """
    skipped = np.asarray(store.skipped_indices, dtype=np.int64)
    if skipped.size == 0:
        return None
    valid = np.ones(int(store.n_rows), dtype=bool)
    valid[skipped] = False
    return valid
