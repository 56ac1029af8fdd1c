"""The clustering stage: embeddings -> k (Davies-Bouldin sweep, or given) -> centroids -> assignment.

Rows are streamed from an embedding store or an array (:mod:`~cl_core.cluster.sources`), never
held whole; :func:`cluster_embeddings` is the stage as one step, the other names its parts.
"""

from __future__ import annotations

from cl_core.cluster.assign import assign
from cl_core.cluster.config import (
    CHOSEN_BY,
    DEFAULT_BATCH_SIZE,
    DEFAULT_SWEEP_BATCH_SIZE,
    DEFAULT_SWEEP_SAMPLES,
    EXECUTION_FIELDS,
    FIT_DEVICES,
    NORMALIZATIONS,
    SCHEDULERS,
    ClusterConfig,
    ClusterWarning,
    resolve_fit_device,
)
from cl_core.cluster.fit import fit_kmeans
from cl_core.cluster.results import ClusterResult, SweepPoint
from cl_core.cluster.sampling import sample_rows
from cl_core.cluster.seeds import sweep_seeds
from cl_core.cluster.sources import (
    DEFAULT_CHUNK_ROWS,
    ArraySource,
    ChunkSource,
    StoreSource,
    as_source,
)
from cl_core.cluster.stage import cluster_embeddings
from cl_core.cluster.sweep import (
    SweepPlan,
    choose_k,
    edge_of_range_warning,
    evaluate_k,
    plan_sweep,
    sweep_k,
)

__all__ = [
    "CHOSEN_BY",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CHUNK_ROWS",
    "DEFAULT_SWEEP_BATCH_SIZE",
    "DEFAULT_SWEEP_SAMPLES",
    "EXECUTION_FIELDS",
    "FIT_DEVICES",
    "NORMALIZATIONS",
    "SCHEDULERS",
    "ArraySource",
    "ChunkSource",
    "ClusterConfig",
    "ClusterResult",
    "ClusterWarning",
    "StoreSource",
    "SweepPlan",
    "SweepPoint",
    "as_source",
    "assign",
    "choose_k",
    "cluster_embeddings",
    "edge_of_range_warning",
    "evaluate_k",
    "fit_kmeans",
    "plan_sweep",
    "resolve_fit_device",
    "sample_rows",
    "sweep_k",
    "sweep_seeds",
]
