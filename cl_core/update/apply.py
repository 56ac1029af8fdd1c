"""The nightly update without Prefect: match, assign, decide, (re)fit, score, publish.

:func:`plan_update` matches a store's rows to a previous version by file key, assigns the new and
changed rows to that version's centroids (in its normalisation) and decides under the policy;
:func:`update_curriculum` carries the plan out and publishes the new version with its lineage.
The pipeline's flows run the same steps as tasks (``flows/stages/cluster.py``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from cl_core.artifacts import load_json, publish_curriculum
from cl_core.cluster import (
    EXECUTION_FIELDS,
    ArraySource,
    ClusterConfig,
    assign,
    cluster_embeddings,
)
from cl_core.difficulty import DifficultyScale, fit_scale
from cl_core.io import Location
from cl_core.schedule import Schedule, ScheduleConfig, build_schedule
from cl_core.store import EmbeddingStore, FileMatch, match_files, normalize_block, open_store
from cl_core.update.config import RefitPolicy, as_policy
from cl_core.update.drift import DriftFigures, drift_figures
from cl_core.update.lineage import first_lineage, lineage_parents, update_lineage
from cl_core.update.plan import RefitDecision, decide
from cl_core.update.previous import (
    DISTANCES_FILE,
    PreviousVersion,
    embedding_identity,
    load_previous,
    refit_state,
    version_files,
)


def usable_mask(store: EmbeddingStore) -> np.ndarray | None:
    """True for the store's rows that were loaded (None when none was skipped)."""
    skipped = store.skipped_indices
    if len(skipped) == 0:
        return None
    mask = np.ones(store.n_rows, dtype=bool)
    mask[np.asarray(skipped, dtype=np.int64)] = False
    return mask


@dataclass(frozen=True, eq=False)
class UpdatePlan:
    """A store's rows against a previous version, assigned to its centroids, and the decision.

    Attributes
    ----------
    previous : PreviousVersion
    changes : FileMatch
        ``source[i]``: the previous version's row of unchanged row ``i``, else -1.
    valid : ndarray of shape (N,), bool, or None
        The store's usable rows (None: all).
    new_rows : ndarray of int64
        Rows assigned this run (valid rows without an unchanged previous row).
    assignment : ndarray of shape (N,), int32
        The previous centroid of every valid row (unchanged rows: their previous assignment);
        -1 for excluded rows.
    distances : ndarray of shape (N,), float32
        Distance to that centroid (unchanged rows: their previous distance, bit for bit).
    figures : DriftFigures
    decision : RefitDecision
    policy : RefitPolicy
    """

    previous: PreviousVersion
    changes: FileMatch
    valid: np.ndarray | None
    new_rows: np.ndarray
    assignment: np.ndarray
    distances: np.ndarray
    figures: DriftFigures
    decision: RefitDecision
    policy: RefitPolicy

    @property
    def n_valid(self) -> int:
        return int(self.assignment.size if self.valid is None else self.valid.sum())

    def lineage(self) -> dict[str, Any]:
        """The manifest's ``lineage`` of the version this plan makes."""
        return update_lineage(
            parent=self.previous.version,
            parent_fit_version=self.previous.fit_version,
            parent_fit_rows=self.previous.fit_rows,
            changes=self.changes,
            policy=self.policy,
            decision=self.decision,
            figures=self.figures,
            n_valid=self.n_valid,
        )


def check_comparable(previous: PreviousVersion, store: EmbeddingStore) -> None:
    """Raise ValueError unless the store's rows can be assigned to ``previous``'s centroids."""
    if store.file_records() is None:
        raise ValueError(
            f"the store {store.path} records no file keys (not a file dataset), so its rows "
            "cannot be matched to a previous version; use --refit always"
        )
    have, wanted = embedding_identity(store.attrs), previous.embedding
    different = sorted(key for key in set(have) | set(wanted) if have.get(key) != wanted.get(key))
    if different:
        raise ValueError(
            f"the store's embedding configuration differs from version {previous.version}'s "
            f"({', '.join(different)}): its rows cannot be assigned to those centroids; use "
            "--refit always"
        )
    if previous.normalize == "standard" and previous.feature_mean is None:
        raise ValueError(
            f"version {previous.version} records no feature mean/std to normalise with"
        )


def assign_to_previous(
    store: EmbeddingStore, rows: np.ndarray, previous: PreviousVersion
) -> tuple[np.ndarray, np.ndarray]:
    """Assign store ``rows`` to the previous centroids, normalised with the previous statistics.

    Returns
    -------
    assignment : ndarray of shape (len(rows),), int32
    distances : ndarray of shape (len(rows),), float32
    """
    if rows.size == 0:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
    raw = store.read_rows(rows, normalize="none")
    block = normalize_block(raw, previous.normalize, previous.feature_mean, previous.feature_std)
    nearest, distances = assign(ArraySource(block, normalize="none"), previous.centroids)
    return nearest.astype(np.int32), distances.astype(np.float32)


def options_changed(
    previous: PreviousVersion,
    cluster_config: ClusterConfig | None = None,
    difficulty: str | None = None,
) -> str | None:
    """How today's clustering options or difficulty method differ from the previous version's
    (words, e.g. "clustering options changed (n_clusters 3 -> 5)"), or None."""
    if difficulty is not None and difficulty != previous.scale.method:
        return f"difficulty changed ({previous.scale.method} -> {difficulty})"
    if cluster_config is None:
        return None
    before = dataclasses.asdict(previous_cluster_config(previous))
    after = dataclasses.asdict(cluster_config)
    changed = [
        f"{key} {before.get(key)!r} -> {after[key]!r}"
        for key in sorted(after)
        if key not in EXECUTION_FIELDS and before.get(key) != after[key]
    ]
    return f"clustering options changed ({', '.join(changed)})" if changed else None


def plan_update(
    previous: PreviousVersion | str | os.PathLike[str] | Location,
    store: EmbeddingStore | str | os.PathLike[str],
    refit: str | RefitPolicy | None = "auto",
    *,
    cluster_config: ClusterConfig | None = None,
    difficulty: str | None = None,
) -> UpdatePlan:
    """Match ``store``'s rows to ``previous`` by file key, assign the new ones, decide.

    Parameters
    ----------
    previous : PreviousVersion or path
        A version published with sample keys (:func:`~cl_core.update.previous.load_previous`).
    store : EmbeddingStore or path
        The complete embedding store of today's listing (same embedding configuration).
    refit : {"auto", "always", "never"} or RefitPolicy
        The refit policy (a name: its default thresholds).
    cluster_config : ClusterConfig, optional
        Today's clustering options; under ``auto`` a change from the previous version's
        (other than where the sweep runs) is a reason to refit. ``never`` keeps the previous
        version's clusters and scale whatever the options.
    difficulty : str, optional
        Today's difficulty method; under ``auto`` a change is a reason to refit.

    Returns
    -------
    UpdatePlan
    """
    old = previous if isinstance(previous, PreviousVersion) else load_previous(previous)
    current = store if isinstance(store, EmbeddingStore) else open_store(store, read_only=True)
    chosen = as_policy(refit)
    check_comparable(old, current)
    keys = current.file_records()
    assert keys is not None  # check_comparable
    changes = match_files(keys, old.keys, np.flatnonzero(~old.valid))
    valid = usable_mask(current)
    kept = changes.source >= 0
    assignment = np.full(current.n_rows, -1, dtype=np.int32)
    distances = np.zeros(current.n_rows, dtype=np.float32)
    assignment[kept] = old.assignment[changes.source[kept]]
    distances[kept] = old.distances[changes.source[kept]]
    usable = np.ones(current.n_rows, dtype=bool) if valid is None else valid
    new_rows = np.flatnonzero(~kept & usable).astype(np.int64)
    assignment[new_rows], distances[new_rows] = assign_to_previous(current, new_rows, old)
    changed = changes.added + changes.changed + changes.removed + changes.retried
    figures = drift_figures(
        old.changed_since_fit + changed,
        old.fit_rows,
        distances[new_rows],
        old.distances[old.valid],
    )
    return UpdatePlan(
        previous=old,
        changes=changes,
        valid=valid,
        new_rows=new_rows,
        assignment=assignment,
        distances=distances,
        figures=figures,
        decision=_decision(chosen, figures, options_changed(old, cluster_config, difficulty)),
        policy=chosen,
    )


def _decision(policy: RefitPolicy, figures: DriftFigures, changed: str | None) -> RefitDecision:
    decision = decide(policy, figures)
    if changed is None or policy.mode != "auto":
        return decision
    figures_text = decision.reason.removeprefix("auto: ")
    return RefitDecision("refit", f"auto: {changed}; {figures_text}")


def previous_cluster_config(previous: PreviousVersion) -> ClusterConfig:
    """The clustering options the previous version was made with (its manifest's pipeline
    config), as a :class:`ClusterConfig`; defaults where it records none."""
    recorded = ((previous.manifest.get("config") or {}).get("pipeline") or {}).get("clustering")
    accepted = {field.name for field in dataclasses.fields(ClusterConfig)}
    values: dict[str, Any] = {
        key: tuple(value) if isinstance(value, list) else value
        for key, value in dict(recorded or {}).items()
        if key in accepted and value is not None
    }
    values["normalize"] = previous.normalize
    return ClusterConfig(**values)


@dataclass(frozen=True, eq=False)
class UpdateResult:
    """The clusters and scale of an update, before scoring: assigned, or fitted again."""

    assignment: np.ndarray
    distances: np.ndarray
    centroids: np.ndarray
    scale: DifficultyScale
    normalize: str
    feature_mean: np.ndarray | None
    feature_std: np.ndarray | None
    n_clusters: int
    chosen_by: str
    sweep: list[dict[str, Any]]


def carry_out(
    plan: UpdatePlan,
    store: EmbeddingStore,
    cluster_config: ClusterConfig | None = None,
    *,
    client: Any = None,
) -> UpdateResult:
    """The plan's decision: its assignment on the previous scale, or a sweep and fit on all rows
    (``cluster_config``, default the previous version's) with a new scale."""
    old = plan.previous
    if plan.decision.action == "assign":
        return UpdateResult(
            assignment=plan.assignment,
            distances=plan.distances,
            centroids=old.centroids,
            scale=old.scale,
            normalize=old.normalize,
            feature_mean=old.feature_mean,
            feature_std=old.feature_std,
            n_clusters=int(old.centroids.shape[0]),
            chosen_by="previous",
            sweep=[],
        )
    config = previous_cluster_config(old) if cluster_config is None else cluster_config
    result = cluster_embeddings(store, config, valid=plan.valid, client=client)
    scale = fit_scale(
        result.distances,
        result.assignment,
        old.scale.method,
        n_groups=result.n_clusters,
        valid=plan.valid,
    )
    return UpdateResult(
        assignment=np.asarray(result.assignment, dtype=np.int32),
        distances=np.asarray(result.distances, dtype=np.float32),
        centroids=np.asarray(result.centroids, dtype=np.float32),
        scale=scale,
        normalize=config.normalize,
        feature_mean=store.feature_mean,
        feature_std=store.feature_std,
        n_clusters=int(result.n_clusters),
        chosen_by=str(result.chosen_by),
        sweep=result.sweep_records(),
    )


def update_curriculum(
    previous: PreviousVersion | str | os.PathLike[str] | Location,
    store: EmbeddingStore | str | os.PathLike[str],
    refit: str | RefitPolicy | None = "auto",
    *,
    output_dir: str | os.PathLike[str] | None = None,
    name: str | None = None,
    cluster_config: ClusterConfig | None = None,
    client: Any = None,
) -> Location:
    """Update a published curriculum for today's embedding store, without Prefect; publish it.

    Matches the store's rows to ``previous`` by file key, assigns the added and changed rows to
    its centroids, decides under the refit policy (:func:`~cl_core.update.plan.decide`), refits if so,
    scores every row (on the previous per-cluster scale when assigning: unchanged rows keep
    their difficulty bitwise), solves the schedule for the new N with the previous version's
    schedule settings, and publishes with the lineage in the manifest.

    Parameters
    ----------
    previous : PreviousVersion or path
        The version to update, e.g. ``"artifacts/pets/latest"``.
    store : EmbeddingStore or path
        Today's complete embedding store (e.g. written by ``cl_core.embed.embed_dataset`` with
        ``reuse_from=`` the earlier stores, so only new files were embedded).
    refit : {"auto", "always", "never"} or RefitPolicy
        ``never``: assign; ``always``: sweep and fit again; ``auto``: refit when drifted.
    output_dir : path, optional
        Artifact root (default: the previous version's root).
    name : str, optional
        Artifact name (default: the previous version's).
    cluster_config : ClusterConfig, optional
        Options of a refit (default: the previous version's clustering options).
    client : dask.distributed.Client, optional
        Where a refit's k sweep runs.

    Returns
    -------
    Path or UPath
        The new version directory; ``latest`` names it.
    """
    old = previous if isinstance(previous, PreviousVersion) else load_previous(previous)
    current = store if isinstance(store, EmbeddingStore) else open_store(store, read_only=True)
    plan = plan_update(old, current, refit)
    result = carry_out(plan, current, cluster_config, client=client)
    difficulty = result.scale.apply(result.distances, result.assignment, valid=plan.valid)
    schedule = build_schedule(
        difficulty, Schedule.from_json(load_json(old.path, "schedule")).config, valid=plan.valid
    )
    lineage = plan.lineage()
    state = refit_state(
        result.scale,
        result.normalize,
        result.feature_mean,
        result.feature_std,
        embedding_identity(current.attrs),
    )
    return publish_curriculum(
        old.path.parent.parent if output_dir is None else output_dir,
        name or str(old.manifest["name"]),
        difficulty,
        np.where(result.assignment >= 0, result.assignment, -1).astype(np.int32),
        result.centroids,
        parents=[current.fingerprint, *lineage_parents(lineage)],
        config=(old.manifest.get("config") or {}).get("pipeline"),
        metrics={"n_clusters": result.n_clusters, "chosen_by": result.chosen_by},
        sweep=result.sweep or None,
        dataset_fingerprint=current.dataset_fingerprint,
        sample_mask=plan.valid,
        schedule=schedule,
        json_files=version_files(current.file_records(), state),
        extra_arrays={DISTANCES_FILE: result.distances},
        lineage=lineage,
        excluded_paths=skipped_paths(current),
    )


def skipped_paths(store: EmbeddingStore) -> dict[int, str]:
    """Index -> path of the store's skipped samples (for the manifest's ``excluded`` record)."""
    return {
        int(sample["index"]): str(sample.get("path"))
        for sample in store.skipped_samples
        if sample.get("path") is not None
    }


def fit_curriculum(
    store: EmbeddingStore | str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    name: str,
    *,
    cluster_config: ClusterConfig | None = None,
    difficulty: str = "minmax",
    schedule_config: ScheduleConfig | None = None,
    client: Any = None,
) -> Location:
    """The first version of a nightly chain without Prefect: cluster, score, schedule, publish.

    What the pipeline publishes for a run without a previous version, updatable by
    :func:`update_curriculum` (distances, sample keys, refit state and lineage included).

    Parameters
    ----------
    store : EmbeddingStore or path
        A complete embedding store (of a file dataset, for later updates).
    output_dir : path
        Artifact root.
    name : str
        Artifact name.
    cluster_config : ClusterConfig, optional
        Default ``ClusterConfig()``.
    difficulty : {"minmax", "rank", "zscore", "none"}
    schedule_config : ScheduleConfig, optional
        Default ``ScheduleConfig()``.
    client : dask.distributed.Client, optional

    Returns
    -------
    Path or UPath
        The version directory; ``latest`` names it.
    """
    current = store if isinstance(store, EmbeddingStore) else open_store(store, read_only=True)
    config = ClusterConfig() if cluster_config is None else cluster_config
    valid = usable_mask(current)
    result = cluster_embeddings(current, config, valid=valid, client=client)
    scale = fit_scale(
        result.distances, result.assignment, difficulty, n_groups=result.n_clusters, valid=valid
    )
    scores = scale.apply(result.distances, result.assignment, valid=valid)
    n_valid = current.n_rows if valid is None else int(valid.sum())
    lineage = first_lineage(RefitPolicy(), current.n_rows, n_valid, "no previous version")
    state = refit_state(
        scale,
        config.normalize,
        current.feature_mean,
        current.feature_std,
        embedding_identity(current.attrs),
    )
    clustering = {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in dataclasses.asdict(config).items()
    }
    return publish_curriculum(
        output_dir,
        name,
        scores,
        result.assignment,
        result.centroids,
        parents=[current.fingerprint],
        config={"clustering": clustering, "difficulty": difficulty},
        metrics={"n_clusters": int(result.n_clusters), "chosen_by": str(result.chosen_by)},
        sweep=result.sweep_records() or None,
        dataset_fingerprint=current.dataset_fingerprint,
        sample_mask=valid,
        schedule=build_schedule(scores, schedule_config or ScheduleConfig(), valid=valid),
        json_files=version_files(current.file_records(), state),
        extra_arrays={DISTANCES_FILE: result.distances},
        lineage=lineage,
        excluded_paths=skipped_paths(current),
    )
