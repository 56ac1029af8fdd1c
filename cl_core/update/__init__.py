"""Nightly (incremental) updates of a published curriculum: the refit policy, drift figures,
the decision, lineage, and the update itself without Prefect (:func:`update_curriculum`).

A run over a listing that changed a little matches its rows to the previous version by file key
(:mod:`~cl_core.update.previous`), assigns the added and changed rows to that version's
centroids, measures drift (:mod:`~cl_core.update.drift`) and, under the policy
(:mod:`~cl_core.update.config`), keeps the assignment or fits again (:mod:`~cl_core.update.plan`);
the manifest records the lineage (:mod:`~cl_core.update.lineage`).
"""

from __future__ import annotations

from cl_core.update.apply import (
    UpdatePlan,
    UpdateResult,
    assign_to_previous,
    carry_out,
    check_comparable,
    fit_curriculum,
    options_changed,
    plan_update,
    previous_cluster_config,
    skipped_paths,
    update_curriculum,
    usable_mask,
)
from cl_core.update.config import (
    DEFAULT_MAX_CHANGED_SHARE,
    DEFAULT_MAX_DISTANCE_RATIO,
    DEFAULT_MIN_NEW_ROWS,
    REFIT_POLICIES,
    RefitPolicy,
    as_policy,
)
from cl_core.update.drift import DriftFigures, drift_figures
from cl_core.update.lineage import (
    first_lineage,
    lineage_line,
    lineage_parents,
    lineage_rows,
    update_lineage,
)
from cl_core.update.plan import ACTIONS, RefitDecision, decide
from cl_core.update.previous import (
    DISTANCES_FILE,
    KEYS_FILE,
    STATE_FILE,
    PreviousVersion,
    embedding_identity,
    find_previous,
    load_previous,
    previous_version,
    refit_state,
    version_files,
)

__all__ = [
    "ACTIONS",
    "DEFAULT_MAX_CHANGED_SHARE",
    "DEFAULT_MAX_DISTANCE_RATIO",
    "DEFAULT_MIN_NEW_ROWS",
    "DISTANCES_FILE",
    "KEYS_FILE",
    "REFIT_POLICIES",
    "STATE_FILE",
    "DriftFigures",
    "PreviousVersion",
    "RefitDecision",
    "RefitPolicy",
    "UpdatePlan",
    "UpdateResult",
    "as_policy",
    "assign_to_previous",
    "carry_out",
    "check_comparable",
    "decide",
    "drift_figures",
    "embedding_identity",
    "find_previous",
    "first_lineage",
    "fit_curriculum",
    "lineage_line",
    "lineage_parents",
    "lineage_rows",
    "load_previous",
    "options_changed",
    "plan_update",
    "previous_cluster_config",
    "previous_version",
    "refit_state",
    "skipped_paths",
    "update_curriculum",
    "update_lineage",
    "usable_mask",
    "version_files",
]
