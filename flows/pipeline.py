"""The parent flow ``curriculum-pipeline``: embed -> cluster -> curriculum, each a stage flow of
:mod:`flows.stages` cached by content id, then the run's summary in the Prefect UI.

Flow bodies only plan: they derive each stage's content id (:mod:`flows.ids`), decide from the
files on disk which cache records may be trusted, submit the thin tasks of :mod:`flows.tasks` and
publish what a person looks at in the Prefect UI (markdown summary, tables, progress, link). All
reading and writing of data happens inside tasks; tasks exchange paths, ids and small summaries.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact

from cl_core.io import as_location
from cl_core.report import summary_markdown
from cl_core.update import lineage_line
from flows.outcomes import (
    IDENTITY_METHODS,
    SAMPLED_IDENTITY_WARNING,
    ClusterOutcome,
    CurriculumOutcome,
    EmbeddingOutcome,
    PipelineResult,
    collect_states,
    reuse_line,
    run_warnings,
)
from flows.params import ClusterParams, CurriculumParams, DatasetParams, EmbedParams, OutputParams
from flows.runners import sweep_runner
from flows.stages.cluster import cluster_flow, cluster_flow_on
from flows.stages.curriculum import curriculum_flow
from flows.stages.embed import SHARD_RETRY_DELAYS, embed_flow, embed_flow_on, existing_store
from flows.ui import artifact_key, publish_report_plots, ui_artifacts

__all__ = [  # the stage flows and outcomes stay importable from here
    "SAMPLED_IDENTITY_WARNING",
    "SHARD_RETRY_DELAYS",
    "ClusterOutcome",
    "CurriculumOutcome",
    "EmbeddingOutcome",
    "PipelineResult",
    "cluster_flow",
    "curriculum_flow",
    "curriculum_pipeline",
    "embed_flow",
    "run_summary_markdown",
    "run_warnings",
    "sweep_runner",
]


@flow(name="curriculum-pipeline")
def curriculum_pipeline(
    dataset: DatasetParams = DatasetParams(),  # noqa: B008  (frozen pydantic defaults)
    embedding: EmbedParams = EmbedParams(),  # noqa: B008
    clustering: ClusterParams = ClusterParams(),  # noqa: B008
    curriculum: CurriculumParams = CurriculumParams(),  # noqa: B008
    output: OutputParams = OutputParams(),  # noqa: B008
) -> PipelineResult:
    """Embed -> cluster -> difficulty, schedule, publish; every stage cached by content id."""
    with ui_artifacts():  # the stages' UI artifacts are all created before the run ends
        return _run_pipeline(dataset, embedding, clustering, curriculum, output)


def _run_stage(stage_flow: Any, stage_runs: dict[str, str], stage: str, **kwargs: Any) -> Any:
    state = stage_flow(**kwargs, return_state=True)
    stage_runs[stage] = str(state.state_details.flow_run_id)
    return state.result()


def _run_pipeline(
    dataset: DatasetParams,
    embedding: EmbedParams,
    clustering: ClusterParams,
    curriculum: CurriculumParams,
    output: OutputParams,
) -> PipelineResult:
    logger = get_run_logger()
    started = time.perf_counter()
    stage_runs: dict[str, str] = {}
    if dataset.kind == "zarr":
        # Nothing to embed: reading the store's metadata does not warrant a stage flow run.
        embedded = existing_store(dataset)
        logger.info(
            "Using embedding store %s (%d x %d)", dataset.location, embedded.n_rows, embedded.dim
        )
    else:
        embedded = _run_stage(
            embed_flow_on(output.dask_address, output.gpus),
            stage_runs,
            "embed",
            dataset=dataset,
            embedding=embedding,
            output=output,
        )
    needs_sweep = clustering.n_clusters is None and not clustering.use_labels
    clustered: ClusterOutcome = _run_stage(
        # A local Dask cluster is only worth starting for the k sweep; a given one is used for
        # the fit and the assignment too.
        cluster_flow_on(output.sweep_runner, output.dask_workers, output.dask_address)
        if needs_sweep or output.dask_address
        else cluster_flow,
        stage_runs,
        "cluster",
        embedded=embedded,
        clustering=clustering,
        output=output,
        name=dataset.artifact_name(),
        difficulty=curriculum.difficulty,
    )
    published: CurriculumOutcome = _run_stage(
        curriculum_flow,
        stage_runs,
        "curriculum",
        embedded=embedded,
        clustered=clustered,
        dataset=dataset,
        embedding=embedding,
        clustering=clustering,
        curriculum=curriculum,
        output=output,
    )
    result = PipelineResult(
        artifact_path=published.artifact_path,
        version=published.version,
        name=published.name,
        report_path=published.report_path,
        n_samples=embedded.n_rows,
        dim=embedded.dim,
        model_id=embedded.model_id,
        n_clusters=clustered.n_clusters,
        chosen_by=clustered.chosen_by,
        stage_runs=stage_runs,
        task_states=collect_states(embedded, clustered, published),
        seconds=round(time.perf_counter() - started, 3),
        dataset_identity=embedded.identity_method,
        warnings=run_warnings(embedded, clustered),
        skipped=embedded.skipped,
        reuse=embedded.reuse,
        lineage=(clustered.update or {}).get("lineage"),
    )
    _publish_run_summary(result, dataset, published.files)
    logger.info("Published %s version %s at %s", result.name, result.version, result.artifact_path)
    return result


def _publish_run_summary(result: PipelineResult, dataset: DatasetParams, files: list[str]) -> None:
    """Summary, link and the report's plots: the run's page shows them side by side."""
    with ui_artifacts() as ui:  # the round trips overlap
        publish_report_plots(ui, result.artifact_path, files, result.name)
        ui.create(
            create_markdown_artifact,
            run_summary_markdown(result, dataset),
            key=artifact_key(result.name, "summary"),
            description="Run summary: dataset, N, D, model, k and why, artifact version and path",
        )
        ui.create(
            create_link_artifact,
            _link(result.artifact_path),
            link_text=f"{result.name}/{result.version}",
            key=artifact_key(result.name, "artifact"),
            description="The published artifact version (manifest.json, arrays, plots, report.md)",
        )


def _link(artifact_path: str) -> str:
    """A file:// URI for a local version, the URL itself for one on object storage."""
    return as_location(artifact_path).as_uri()


def run_summary_markdown(result: PipelineResult, dataset: DatasetParams) -> str:
    """The run's markdown summary: facts, warnings, and the samples left out."""
    why = {
        "explicit": "explicit n_clusters",
        "davies_bouldin": "Davies-Bouldin sweep, one standard error (three when flat)",
        "per_class": "per class (supervised)",
        "previous": "the previous version's clusters",
    }.get(result.chosen_by, result.chosen_by)
    facts = {
        "dataset": dataset.spec,
        "dataset identity": IDENTITY_METHODS.get(
            result.dataset_identity or "", result.dataset_identity or "an existing store"
        ),
        "N": result.n_samples,
        "D": result.dim,
        "model": result.model_id,
        "k": f"{result.n_clusters} ({why})",
        "artifact": f"{result.name} version {result.version}",
        "path": result.artifact_path,
        "report": result.report_path,
    }
    if result.reuse:
        facts["embeddings"] = reuse_line(result.reuse)
    if result.lineage:
        facts["clusters"] = lineage_line(result.lineage)
    parts = [f"# Curriculum `{result.name}` @ `{result.version}`", summary_markdown(facts)]
    if result.warnings:
        parts.append("## Warnings\n\n" + "\n".join(f"- {w}" for w in result.warnings))
    if result.skipped:
        rows = [f"| {s['index']} | `{s.get('path')}` | {s.get('reason')} |" for s in result.skipped]
        parts.append(
            "## Skipped samples (probability 0)\n\n| index | path | reason |\n|---|---|---|\n"
            + "\n".join(rows)
        )
    return "\n\n".join(parts)
