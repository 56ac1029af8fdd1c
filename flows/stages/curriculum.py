"""The ``curriculum`` stage flow: difficulty per sample (``normalize_difficulty``), the
schedule's temperature table (``build_schedule``) and the published version
(``publish_curriculum`` with that schedule, report files included)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from cl_core.artifacts import point_latest
from cl_core.cluster import KChoice
from cl_core.io import Location, as_location
from cl_core.update import lineage_line, lineage_parents
from flows import tasks
from flows.done import files_verified, published
from flows.ids import WorkDir, content_id
from flows.outcomes import (
    IDENTITY_METHODS,
    ClusterOutcome,
    CurriculumOutcome,
    EmbeddingOutcome,
    TaskLedger,
    run_warnings,
)
from flows.params import (
    REFIT_FIELDS,
    ClusterParams,
    CurriculumParams,
    DatasetParams,
    EmbedParams,
    OutputParams,
)
from flows.publication import PublishPlan


@flow(name="curriculum")
def curriculum_flow(
    embedded: EmbeddingOutcome,
    clustered: ClusterOutcome,
    dataset: DatasetParams,
    embedding: EmbedParams,
    clustering: ClusterParams,
    curriculum: CurriculumParams,
    output: OutputParams,
) -> CurriculumOutcome:
    """Difficulty per sample, the schedule's temperature table, and the published version."""
    work = WorkDir.at(output.work_dir)
    groups = "labels" if clustering.use_labels else "clusters"
    update = clustered.update or {}
    scale_from = update.get("previous_path") if update.get("action") == "assign" else None
    difficulty_id = content_id(
        "difficulty",
        {
            "cluster": clustered.cluster_id,
            "method": curriculum.difficulty,
            "groups": groups,
            **({"scale_from": as_location(scale_from).name} if scale_from else {}),
        },
    )
    difficulty_path = work.difficulty(difficulty_id)
    scale_path = work.difficulty_scale(difficulty_id)
    ledger = TaskLedger()
    ledger.call(
        tasks.configured(
            tasks.difficulty_task, work, done=files_verified(difficulty_path, scale_path)
        ),
        content_id=difficulty_id,
        cluster_dir=clustered.cluster_dir,
        store_path=embedded.store_path,
        curriculum=curriculum,
        use_labels=clustering.use_labels,
        out_path=str(difficulty_path),
        scale_path=str(scale_path),
        previous_path=scale_from,
    )
    schedule_config = curriculum.schedule_config().to_json()
    schedule_id = content_id("schedule", {"difficulty": difficulty_id, "config": schedule_config})
    schedule_path = work.schedule(schedule_id)
    ledger.call(
        tasks.configured(tasks.schedule_task, work, done=files_verified(schedule_path)),
        content_id=schedule_id,
        difficulty_path=str(difficulty_path),
        store_path=embedded.store_path,
        curriculum=curriculum,
        out_path=str(schedule_path),
    )
    plan = publish_plan(
        embedded,
        clustered,
        dataset,
        embedding,
        clustering,
        curriculum,
        output,
        paths={"difficulty": difficulty_path, "schedule": schedule_path, "scale": scale_path},
        schedule_config=schedule_config,
    )
    # A fit's lineage says why there was no previous version, which a rerun words differently
    # ("... is over the same files"): the version does not depend on it, nor does its cache.
    fitted = (plan.lineage or {}).get("decision") == "fit"
    excluded = {"report_dir", "lineage"} if fitted else {"report_dir"}
    publish_id = content_id("publish", {"plan": plan.model_dump(mode="json", exclude=excluded)})
    plan = plan.model_copy(update={"report_dir": str(work.report(publish_id))})
    receipt = ledger.call(
        tasks.configured(tasks.publish_task, work, done=published(plan.report_dir)),
        content_id=publish_id,
        plan=plan,
    )
    # Cached or computed, `latest` names the version this run reports (A, B, A leaves it at A).
    point_latest(plan.output_dir, receipt["name"], receipt["version"])
    return CurriculumOutcome(
        artifact_path=receipt["artifact_path"],
        version=receipt["version"],
        name=receipt["name"],
        report_path=receipt["report_path"],
        difficulty_id=difficulty_id,
        schedule_id=schedule_id,
        task_states=ledger.entries,
        files=receipt["files"],
    )


def publish_plan(
    embedded: EmbeddingOutcome,
    clustered: ClusterOutcome,
    dataset: DatasetParams,
    embedding: EmbedParams,
    clustering: ClusterParams,
    curriculum: CurriculumParams,
    output: OutputParams,
    *,
    paths: dict[str, Location],
    schedule_config: dict[str, Any],
) -> PublishPlan:
    """Upstream parents, the configs the version is hashed from, and the run summary."""
    pipeline_config = {
        "dataset": dataset.spec,
        "embedding": embedding.model_dump(mode="json") if embedded.source == "embedded" else None,
        "clustering": clustering.model_dump(mode="json", exclude=set(REFIT_FIELDS)),
        "difficulty": curriculum.difficulty,
    }
    update = clustered.update or {}
    lineage = update.get("lineage")
    return PublishPlan(
        name=dataset.artifact_name(),
        output_dir=_absolute(output.output_dir),
        report_dir="",
        cluster_dir=clustered.cluster_dir,
        difficulty_path=str(paths["difficulty"]),
        schedule_path=str(paths["schedule"]),
        store_path=embedded.store_path,
        warnings=run_warnings(embedded, clustered),
        parents=[embedded.fingerprint, clustered.cluster_id, *lineage_parents(lineage)],
        schedule_config=schedule_config,
        pipeline_config=pipeline_config,
        summary=_report_summary(embedded, clustered, dataset, clustering, curriculum),
        dataset=dataset,
        dataset_fingerprint=embedded.dataset_fingerprint,
        lineage=lineage,
        scale_path=str(paths["scale"]),
        state_from=update.get("previous_path") if update.get("action") == "assign" else None,
        normalize=clustering.normalize,
    )


def _absolute(root: str) -> str:
    """A local root made absolute; a URL (``s3://bucket/prefix``) as it is."""
    return str(as_location(root).expanduser().absolute())


def _report_summary(
    embedded: EmbeddingOutcome,
    clustered: ClusterOutcome,
    dataset: DatasetParams,
    clustering: ClusterParams,
    curriculum: CurriculumParams,
) -> dict[str, Any]:
    """The facts at the top of report.md."""
    chosen = next((p for p in clustered.sweep if p["k"] == clustered.n_clusters), None)
    low, high = clustering.cluster_range
    choice = KChoice.from_dict(clustered.k_choice) if clustered.k_choice else None
    why = {
        "explicit": "given (n_clusters)",
        "davies_bouldin": (
            f"smallest k whose mean Davies-Bouldin index ({chosen['davies_bouldin']:.3f}) is "
            f"within {choice.band_words()} of the best (band {choice.band:.3f}) over "
            f"k = {low}..{high}"
            if chosen and choice is not None
            else f"lowest Davies-Bouldin index ({chosen['davies_bouldin']:.3f}) over "
            f"k = {low}..{high}"
            if chosen
            else "lowest Davies-Bouldin index"
        ),
        "per_class": "clusters within each class (supervised)",
        "previous": "the previous version's clusters (new samples assigned to them)",
    }.get(clustered.chosen_by, clustered.chosen_by)
    identity = embedded.identity_method
    return {
        "dataset": dataset.spec,
        "N": embedded.n_rows,
        "D": embedded.dim,
        "model": embedded.model_id,
        "k": clustered.n_clusters,
        "k chosen by": why,
        "strategy": curriculum.strategy,
        "pacing": curriculum.pacing,
        "initial fraction": curriculum.initial_fraction,
        "warmup iterations": curriculum.warmup_iterations,
        "embedding store": embedded.fingerprint,
        **({"dataset identity": IDENTITY_METHODS.get(identity, identity)} if identity else {}),
        **({"skipped samples": len(embedded.skipped)} if embedded.skipped else {}),
        **_clusters_fact(clustered),
    }


def _clusters_fact(clustered: ClusterOutcome) -> dict[str, str]:
    """The report's line on an update (assigned or refit); a fit says nothing more (its reason
    differs between a first run and its reruns, which publish the same version)."""
    lineage = (clustered.update or {}).get("lineage") or {}
    if lineage.get("decision") not in ("assign", "refit"):
        return {}
    return {"clusters": lineage_line(lineage)}
