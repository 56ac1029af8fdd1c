"""The clustering stage: embeddings -> k (Davies-Bouldin sweep, or given) -> centroids -> assignment.

k is chosen by the one-standard-error rule (three on a flat curve) over a grid of candidates
(:mod:`~.choice`, :mod:`~.grid`).

Rows are streamed from an embedding store or an array (:mod:`~cl_core.cluster.sources`), never
held whole; :func:`cluster_embeddings` is the stage as one step, the other names its parts.
"""

from __future__ import annotations

from cl_core.cluster.assign import assign
from cl_core.cluster.choice import (
    BAND_SE,
    FLAT_BAND_SE,
    RULE,
    KChoice,
    choice_from_records,
    choose_in_band,
    rule_parameters,
)
from cl_core.cluster.config import (
    CHOSEN_BY,
    DEFAULT_BATCH_SIZE,
    DEFAULT_SWEEP_BATCH_SIZE,
    DEFAULT_SWEEP_REPLICATES,
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
from cl_core.cluster.grid import (
    ROWS_PER_CLUSTER,
    SWEEP_MEMORY_BYTES,
    check_range_fits,
    k_grid,
    refine_ks,
    sweep_sample_size,
)
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
    best_k,
    choose_k,
    describe_sweep,
    edge_of_range_warning,
    evaluate_k,
    plan_sweep,
    run_sweep,
    sweep_k,
    sweep_size,
)

__all__ = [
    "BAND_SE",
    "CHOSEN_BY",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CHUNK_ROWS",
    "DEFAULT_SWEEP_BATCH_SIZE",
    "DEFAULT_SWEEP_REPLICATES",
    "DEFAULT_SWEEP_SAMPLES",
    "EXECUTION_FIELDS",
    "FIT_DEVICES",
    "FLAT_BAND_SE",
    "NORMALIZATIONS",
    "ROWS_PER_CLUSTER",
    "RULE",
    "SCHEDULERS",
    "SWEEP_MEMORY_BYTES",
    "ArraySource",
    "ChunkSource",
    "ClusterConfig",
    "ClusterResult",
    "ClusterWarning",
    "KChoice",
    "StoreSource",
    "SweepPlan",
    "SweepPoint",
    "as_source",
    "assign",
    "best_k",
    "check_range_fits",
    "choice_from_records",
    "choose_in_band",
    "choose_k",
    "cluster_embeddings",
    "describe_sweep",
    "edge_of_range_warning",
    "evaluate_k",
    "fit_kmeans",
    "k_grid",
    "plan_sweep",
    "refine_ks",
    "resolve_fit_device",
    "rule_parameters",
    "run_sweep",
    "sample_rows",
    "sweep_k",
    "sweep_sample_size",
    "sweep_seeds",
    "sweep_size",
]
