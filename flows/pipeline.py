"""The Prefect 3 flows: stage flows ``embed``, ``cluster``, ``curriculum`` and the parent
``curriculum-pipeline`` that chains them.

Flow bodies only plan: they derive each stage's content id (:mod:`flows.ids`), decide from the
files on disk which cache records may be trusted, submit the thin tasks of :mod:`flows.tasks` and
publish what a person looks at in the Prefect UI (markdown summary, tables, progress, link). All
reading and writing of data happens inside tasks; tasks exchange paths, ids and small summaries.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel, ConfigDict

from cl_core.artifacts import point_latest
from flows import inputs, progress, tasks
from flows.ids import WorkDir, content_id
from flows.params import ClusterParams, CurriculumParams, DatasetParams, EmbedParams, OutputParams
from flows.ui import ui_artifacts

SHARD_RETRY_DELAYS = [2, 10]  # seconds; a transient failure (OOM, I/O) usually clears quickly
# Options that change how fast, not what, is computed: left out of the content ids so that e.g.
# another batch size or Dask backend reuses earlier results.
EMBED_RUNTIME_FIELDS = frozenset(
    {"batch_size", "device", "num_workers", "writer_queue", "channels_last", "precision"}
)


class _Outcome(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EmbeddingOutcome(_Outcome):
    """The embedding store a run clusters: identity and shape, no data."""

    store_path: str
    fingerprint: str
    dataset_fingerprint: str
    n_rows: int
    dim: int
    model_id: str | None
    has_labels: bool
    source: str  # "embedded" or "zarr"
    n_shards: int = 0
    shards_computed: int = 0
    identity_method: str | None = None  # how the dataset identity was computed (embedded only)
    skipped: list[dict[str, Any]] = []  # samples left out (on_bad_sample="skip")
    task_states: list[tuple[str, str]] = []


class ClusterOutcome(_Outcome):
    cluster_id: str
    cluster_dir: str
    n_clusters: int
    chosen_by: str
    sweep: list[dict[str, Any]]
    clusters: list[dict[str, Any]]
    warning: str | None = None  # e.g. Davies-Bouldin chose an end of the k range
    task_states: list[tuple[str, str]] = []


class CurriculumOutcome(_Outcome):
    artifact_path: str
    version: str
    name: str
    report_path: str
    difficulty_id: str
    schedule_id: str
    task_states: list[tuple[str, str]] = []


class PipelineResult(_Outcome):
    """What a run produced; ``stage_runs`` maps stage name to its Prefect flow run id."""

    artifact_path: str
    version: str
    name: str
    report_path: str
    n_samples: int
    dim: int
    model_id: str | None
    n_clusters: int
    chosen_by: str
    stage_runs: dict[str, str]
    task_states: dict[str, list[str]]
    seconds: float
    dataset_identity: str | None = None  # identity method: listing, content, sampled, ...
    warnings: list[str] = []
    skipped: list[dict[str, Any]] = []

    def count(self, state_name: str) -> int:
        """How many task runs ended in ``state_name`` (e.g. ``Cached``)."""
        return sum(states.count(state_name) for states in self.task_states.values())


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes only)."""
    text = "-".join(parts).lower()
    return "".join(ch if ch.isalnum() else "-" for ch in text).strip("-")


class TaskLedger:
    """The final state name of every task a stage ran (``Cached``, ``Completed``, ...).

    Stage outcomes carry it so that callers (the CLI summary, tests) see what was recomputed
    without querying the API, whose task-run records are written asynchronously.
    """

    def __init__(self) -> None:
        self.entries: list[tuple[str, str]] = []

    def call(self, prefect_task: Any, **kwargs: Any) -> Any:
        """Run ``prefect_task`` in the flow's thread, record its state, return its result."""
        state = prefect_task(**kwargs, return_state=True)
        self.entries.append((prefect_task.name, str(state.name)))
        return state.result()

    def record(self, task_name: str, futures: list[Any]) -> None:
        """Record the final states of finished futures."""
        for future in futures:
            future.wait()  # sets the future's final state (its API state may still lag)
            self.entries.append((task_name, str(future.state.name)))


# --------------------------------------------------------------------------------------------
# embed
# --------------------------------------------------------------------------------------------


IDENTITY_METHODS = {
    "listing": "full file listing (relative path, size and mtime of every file)",
    "content": "sha256 of every file's content (--verify-content)",
    "explicit": "the given dataset id (--dataset-id)",
    "array": "hash of the array data",
    "sampled": "a hash of the length and ~16 sampled items",
}
SAMPLED_IDENTITY_WARNING = (
    "the dataset identity is a hash of ~16 sampled items: a change elsewhere in the data is "
    "not noticed and a rerun may serve the old embeddings; pass --dataset-id (dataset_id=) "
    "naming the data's version"
)


def embed_identity(dataset_fingerprint: str, loaded: Any, embedding: EmbedParams) -> str:
    """Content id of an embedding: dataset, model identity and every value-affecting option."""
    from cl_core.embed import resolve_device, resolve_precision

    config = embedding.to_config()
    values = dataclasses.asdict(config)
    return content_id(
        "embed",
        {
            "dataset": dataset_fingerprint,
            "model": loaded.model_id,
            "weights_sha256": loaded.weights_sha256,
            # "auto" means bf16 on a GPU and fp32 on a CPU: different stored values, so the
            # resolved precision (not the option) is part of the identity.
            "precision": resolve_precision(config.precision, resolve_device(config.device)),
            "config": {k: v for k, v in values.items() if k not in EMBED_RUNTIME_FIELDS},
        },
    )


def _existing_store(dataset: DatasetParams) -> EmbeddingOutcome:
    return EmbeddingOutcome(**inputs.open_complete_store(dataset), source="zarr")


@flow(name="embed", task_runner=ThreadPoolTaskRunner(max_workers=1))
def embed_flow(
    dataset: DatasetParams, embedding: EmbedParams, output: OutputParams
) -> EmbeddingOutcome:
    """Embed every sample into a sharded Zarr store (resumable), or open a ``zarr:`` store."""
    logger = get_run_logger()
    if dataset.kind == "zarr":
        outcome = _existing_store(dataset)
        logger.info(
            "Using embedding store %s (%d x %d)", dataset.location, outcome.n_rows, outcome.dim
        )
        return outcome

    from cl_core.datasets import dataset_identity

    work = WorkDir.at(output.work_dir)
    loaded, resolved = inputs.resolve_inputs(dataset, embedding)
    identity = dataset_identity(resolved, dataset.dataset_id, verify_content=dataset.verify_content)
    logger.info("Dataset identity: %s", identity.detail)
    if identity.method == "sampled":
        logger.warning(SAMPLED_IDENTITY_WARNING)
    embed_id = embed_identity(identity.fingerprint, loaded, embedding)
    plan = tasks.EmbedPlan(
        embed_id=embed_id,
        store_path=str(work.store(embed_id)),
        dataset=dataset,
        embedding=embedding,
        identity=dataclasses.asdict(identity),
    )
    ledger = TaskLedger()
    layout = ledger.call(
        tasks.configured(tasks.create_store_task, work, done=tasks.store_created(plan.store_path)),
        content_id=f"{embed_id}-store",
        plan=plan,
    )
    computed = _embed_shards(
        plan, work, output, int(layout["n_shards"]), dataset.artifact_name(), ledger
    )
    described = ledger.call(
        tasks.configured(
            tasks.finalize_store_task, work, done=tasks.store_complete(plan.store_path)
        ),
        content_id=f"{embed_id}-final",
        store_path=plan.store_path,
    )
    logger.info(
        "Embedded %d samples with %s (D = %d): %d of %d shards computed now, the rest cached",
        described["n_rows"],
        loaded.model_id,
        described["dim"],
        computed,
        layout["n_shards"],
    )
    return EmbeddingOutcome(
        **described,
        source="embedded",
        n_shards=int(layout["n_shards"]),
        shards_computed=computed,
        identity_method=identity.method,
        task_states=ledger.entries,
    )


def _embed_shards(
    plan: tasks.EmbedPlan,
    work: WorkDir,
    output: OutputParams,
    n_shards: int,
    name: str,
    ledger: TaskLedger,
) -> int:
    """Map one task per shard; shards missing on disk recompute, done ones come from the cache."""
    missing = set(tasks.missing_shards(plan.store_path))
    done = [i for i in range(n_shards) if i not in missing]
    retry = {"retries": output.shard_retries, "retry_delay_seconds": SHARD_RETRY_DELAYS}
    futures = []
    for shards, on_disk in ((done, True), (sorted(missing), False)):
        if shards:
            futures += tasks.configured(tasks.embed_shard_task, work, done=on_disk, **retry).map(
                content_id=[f"{plan.embed_id}-shard-{i}" for i in shards],
                plan=unmapped(plan),
                shard=shards,
            )
    bar = progress.track("embedding shards", total=n_shards)
    artifact_id = create_progress_artifact(
        0.0, key=artifact_key(name, "embedding"), description=f"Embedding {n_shards} shards"
    )
    failures = []
    for finished, future in enumerate(as_completed(futures), start=1):
        future.wait()
        if future.state.is_failed():
            failures.append(future)
        bar.advance()
        update_progress_artifact(artifact_id, 100.0 * finished / max(len(futures), 1))
    bar.close()
    ledger.record(tasks.embed_shard_task.name, futures)
    if failures:
        failures[0].result()  # re-raises the first shard's error; done shards stay done on disk
    return len(missing)


# --------------------------------------------------------------------------------------------
# cluster
# --------------------------------------------------------------------------------------------


def sweep_runner(output: OutputParams) -> Any:
    """The task runner of the k sweep: Dask (local cluster or ``dask_address``) or threads."""
    if output.sweep_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=output.dask_workers)
    from prefect_dask import DaskTaskRunner

    if output.dask_address:
        return DaskTaskRunner(address=output.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": output.dask_workers,
            "threads_per_worker": 1,
            "processes": False,  # the sweep is numpy/BLAS work that releases the GIL
            "dashboard_address": None,
        }
    )


def cluster_identity(features: str, clustering: ClusterParams) -> str:
    from cl_core.cluster import EXECUTION_FIELDS  # where the sweep runs, never what it yields

    config = dataclasses.asdict(clustering.to_config())
    return content_id(
        "cluster",
        {
            "features": features,
            "config": {k: v for k, v in config.items() if k not in EXECUTION_FIELDS},
        },
    )


@flow(name="cluster")
def cluster_flow(
    embedded: EmbeddingOutcome, clustering: ClusterParams, output: OutputParams, name: str
) -> ClusterOutcome:
    """k-means on the store: explicit k, per class, or k by Davies-Bouldin over a Dask sweep."""
    logger = get_run_logger()
    work = WorkDir.at(output.work_dir)
    cluster_id = cluster_identity(embedded.fingerprint, clustering)
    out_dir = work.cluster(cluster_id)
    if clustering.use_labels and not embedded.has_labels:
        raise ValueError(
            "clustering.use_labels=True needs labels, but the embedding store has none; "
            "use a labelled dataset (digits, imagefolder:PATH) or use_labels=False"
        )
    ledger = TaskLedger()
    sweep: list[dict[str, Any]] | None = None
    n_clusters = clustering.n_clusters
    with ui_artifacts() as ui:
        if n_clusters is None and not clustering.use_labels:
            sweep = _sweep(embedded, clustering, work, ledger)
            n_clusters = _choose_k(sweep)
            ui.create(_publish_sweep_table, sweep, n_clusters, name)  # beside the final fit
            best = next(point for point in sweep if point["k"] == n_clusters)
            logger.info(
                "k = %d: lowest Davies-Bouldin index (%.3f) over k = %d..%d",
                n_clusters,
                best["davies_bouldin"],
                sweep[0]["k"],
                sweep[-1]["k"],
            )
        summary = ledger.call(
            tasks.configured(
                tasks.cluster_task, work, done=tasks.cluster_outputs_verified(out_dir)
            ),
            content_id=cluster_id,
            store_path=embedded.store_path,
            clustering=clustering,
            out_dir=str(out_dir),
            n_clusters=n_clusters,
            sweep=sweep,
        )
        outcome = ClusterOutcome(
            cluster_id=cluster_id,
            **summary,
            warning=_edge_warning(summary, clustering),
            task_states=ledger.entries,
        )
        if outcome.warning:
            logger.warning(outcome.warning)
        if sweep is None and outcome.sweep:
            ui.create(_publish_sweep_table, outcome.sweep, outcome.n_clusters, name)
        ui.create(_publish_clusters_table, outcome.clusters, name)
    return outcome


def _edge_warning(summary: dict[str, Any], clustering: ClusterParams) -> str | None:
    """The sentence users see when Davies-Bouldin chose an end of the swept k range."""
    from cl_core.cluster import edge_of_range_warning

    return edge_of_range_warning(
        summary["n_clusters"], clustering.cluster_range, summary["chosen_by"]
    )


def _choose_k(sweep: list[dict[str, Any]]) -> int:
    from cl_core.cluster import SweepPoint, choose_k

    fields = {f.name for f in dataclasses.fields(SweepPoint)}
    return int(choose_k([SweepPoint(**{k: v for k, v in p.items() if k in fields}) for p in sweep]))


def _sweep(
    embedded: EmbeddingOutcome, clustering: ClusterParams, work: WorkDir, ledger: TaskLedger
) -> list[dict[str, Any]]:
    """Evaluate every k of the range as its own task on the flow's (Dask) task runner."""
    from threadpoolctl import threadpool_limits

    config = clustering.to_config()
    sample_id = content_id(
        "sweep-sample",
        {
            "features": embedded.fingerprint,
            "cluster_range": config.cluster_range,
            "sweep_samples": config.sweep_samples,
            "normalize": config.normalize,
            "random_state": config.random_state,
        },
    )
    sample_path = work.sweep(sample_id) / "sample.npy"
    sample = ledger.call(
        tasks.configured(tasks.sample_task, work, done=tasks.files_verified(sample_path)),
        content_id=sample_id,
        store_path=embedded.store_path,
        clustering=clustering,
        out_path=str(sample_path),
    )
    job_config = {
        "sample": sample_id,
        "batch_size": config.sweep_batch_size,
        "n_init": config.sweep_n_init,
    }
    sweep_dir = work.sweep(sample_id)
    # One configured task per cache situation, not per k: ``with_options`` re-inspects the task.
    task_for = {
        done: tasks.configured(tasks.evaluate_k_task, work, done=done) for done in (True, False)
    }
    bar = progress.track("k sweep", total=len(sample["ks"]))
    # Each job limits BLAS to one thread through a process-wide switch; with in-process Dask
    # workers, concurrent jobs could restore it out of order. The outer limit restores it last.
    with threadpool_limits(limits=1, user_api="blas"):
        futures = [
            task_for[tasks.files_verified(sweep_dir / f"k-{k}.json")].submit(
                content_id=content_id("evaluate-k", {**job_config, "k": k}),
                sample_path=str(sample_path),
                k=k,
                sweep_seed=sample["sweep_seed"],
                clustering=clustering,
                out_path=str(sweep_dir / f"k-{k}.json"),
            )
            for k in sample["ks"]
        ]
        for future in as_completed(futures):
            ledger.record(tasks.evaluate_k_task.name, [future])  # while later ks still run
            bar.advance()
    bar.close()
    return sorted((future.result() for future in futures), key=lambda point: point["k"])


def _publish_sweep_table(sweep: list[dict[str, Any]], chosen_k: int, name: str) -> None:
    create_table_artifact(
        [
            {
                "k": p["k"],
                "davies_bouldin": round(p["davies_bouldin"], 4),
                "inertia": round(p["inertia"], 2),
                "chosen": p["k"] == chosen_k,
            }
            for p in sweep
        ],
        key=artifact_key(name, "k-sweep"),
        description="Davies-Bouldin index (lower is better) and inertia per k",
    )


def _publish_clusters_table(clusters: list[dict[str, Any]], name: str) -> None:
    create_table_artifact(
        clusters,
        key=artifact_key(name, "clusters"),
        description="Per cluster: size, mean distance to the centroid, medoid (sample index)",
    )


# --------------------------------------------------------------------------------------------
# curriculum
# --------------------------------------------------------------------------------------------


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
    difficulty_id = content_id(
        "difficulty",
        {"cluster": clustered.cluster_id, "method": curriculum.difficulty, "groups": groups},
    )
    difficulty_path = work.difficulty(difficulty_id)
    ledger = TaskLedger()
    ledger.call(
        tasks.configured(tasks.difficulty_task, work, done=tasks.files_verified(difficulty_path)),
        content_id=difficulty_id,
        cluster_dir=clustered.cluster_dir,
        store_path=embedded.store_path,
        curriculum=curriculum,
        use_labels=clustering.use_labels,
        out_path=str(difficulty_path),
    )
    schedule_config = curriculum.schedule_config().to_json()
    schedule_id = content_id("schedule", {"difficulty": difficulty_id, "config": schedule_config})
    schedule_path = work.schedule(schedule_id)
    ledger.call(
        tasks.configured(tasks.schedule_task, work, done=tasks.files_verified(schedule_path)),
        content_id=schedule_id,
        difficulty_path=str(difficulty_path),
        store_path=embedded.store_path,
        curriculum=curriculum,
        out_path=str(schedule_path),
    )
    plan = _publish_plan(
        embedded,
        clustered,
        dataset,
        embedding,
        clustering,
        curriculum,
        output,
        work,
        difficulty_path,
        schedule_path,
        schedule_config,
    )
    publish_id = content_id(
        "publish", {"plan": plan.model_dump(mode="json", exclude={"report_dir"})}
    )
    plan = plan.model_copy(update={"report_dir": str(work.report(publish_id))})
    receipt = ledger.call(
        tasks.configured(tasks.publish_task, work, done=tasks.published(plan.report_dir)),
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
    )


def run_warnings(embedded: EmbeddingOutcome, clustered: ClusterOutcome) -> list[str]:
    """What a person should know about this run's choices (shown by the CLI, UI and report)."""
    warnings = []
    if embedded.identity_method == "sampled":
        warnings.append(SAMPLED_IDENTITY_WARNING)
    if clustered.warning:
        warnings.append(clustered.warning)
    if embedded.skipped:
        warnings.append(
            f"{len(embedded.skipped)} sample(s) could not be loaded and were left out of the "
            "curriculum (probability 0): " + _skipped_listing(embedded.skipped)
        )
    return warnings


def _skipped_listing(skipped: list[dict[str, Any]], limit: int = 5) -> str:
    shown = ", ".join(f"{s['index']} ({s.get('path') or 'no path'})" for s in skipped[:limit])
    more = len(skipped) - limit
    return shown + (f" and {more} more (see the run summary)" if more > 0 else "")


def _identity_fact(embedded: EmbeddingOutcome) -> dict[str, str]:
    if embedded.identity_method is None:
        return {}
    method = embedded.identity_method
    return {"dataset identity": IDENTITY_METHODS.get(method, method)}


def _publish_plan(
    embedded: EmbeddingOutcome,
    clustered: ClusterOutcome,
    dataset: DatasetParams,
    embedding: EmbedParams,
    clustering: ClusterParams,
    curriculum: CurriculumParams,
    output: OutputParams,
    work: WorkDir,
    difficulty_path: Path,
    schedule_path: Path,
    schedule_config: dict[str, Any],
) -> tasks.PublishPlan:
    """Upstream parents, the configs the version is hashed from, and the run summary."""
    name = dataset.artifact_name()
    pipeline_config = {
        "dataset": dataset.spec,
        "embedding": embedding.model_dump(mode="json") if embedded.source == "embedded" else None,
        "clustering": clustering.model_dump(mode="json"),
        "difficulty": curriculum.difficulty,
    }
    chosen = next((p for p in clustered.sweep if p["k"] == clustered.n_clusters), None)
    why = {
        "explicit": "given (n_clusters)",
        "davies_bouldin": (
            f"lowest Davies-Bouldin index ({chosen['davies_bouldin']:.3f}) over "
            f"k = {clustering.cluster_range[0]}..{clustering.cluster_range[1]}"
            if chosen
            else "lowest Davies-Bouldin index"
        ),
        "per_class": "clusters within each class (supervised)",
    }.get(clustered.chosen_by, clustered.chosen_by)
    summary = {
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
        **_identity_fact(embedded),
        **({"skipped samples": len(embedded.skipped)} if embedded.skipped else {}),
    }
    return tasks.PublishPlan(
        name=name,
        output_dir=str(Path(output.output_dir).expanduser().absolute()),
        report_dir="",
        cluster_dir=clustered.cluster_dir,
        difficulty_path=str(difficulty_path),
        schedule_path=str(schedule_path),
        store_path=embedded.store_path,
        warnings=run_warnings(embedded, clustered),
        parents=[embedded.fingerprint, clustered.cluster_id],
        schedule_config=schedule_config,
        pipeline_config=pipeline_config,
        summary=summary,
        dataset=dataset,
        dataset_fingerprint=embedded.dataset_fingerprint,
    )


# --------------------------------------------------------------------------------------------
# parent
# --------------------------------------------------------------------------------------------


def _run_stage(stage_flow: Any, stage_runs: dict[str, str], stage: str, **kwargs: Any) -> Any:
    state = stage_flow(**kwargs, return_state=True)
    stage_runs[stage] = str(state.state_details.flow_run_id)
    return state.result()


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
    name = dataset.artifact_name()
    if dataset.kind == "zarr":
        # Nothing to embed: reading the store's metadata does not warrant a stage flow run.
        embedded = _existing_store(dataset)
        logger.info(
            "Using embedding store %s (%d x %d)", dataset.location, embedded.n_rows, embedded.dim
        )
    else:
        embedded = _run_stage(
            embed_flow, stage_runs, "embed", dataset=dataset, embedding=embedding, output=output
        )
    needs_sweep = clustering.n_clusters is None and not clustering.use_labels
    clustered: ClusterOutcome = _run_stage(
        # A Dask cluster is only worth starting for the k sweep.
        _cluster_flow_with_sweep_runner(
            output.sweep_runner, output.dask_workers, output.dask_address
        )
        if needs_sweep
        else cluster_flow,
        stage_runs,
        "cluster",
        embedded=embedded,
        clustering=clustering,
        output=output,
        name=name,
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
        task_states=_collect_states(embedded, clustered, published),
        seconds=round(time.perf_counter() - started, 3),
        dataset_identity=embedded.identity_method,
        warnings=run_warnings(embedded, clustered),
        skipped=embedded.skipped,
    )
    _publish_run_summary(result, dataset)
    logger.info("Published %s version %s at %s", result.name, result.version, result.artifact_path)
    return result


@functools.lru_cache(maxsize=8)
def _cluster_flow_with_sweep_runner(runner: str, workers: int, address: str | None) -> Any:
    """``cluster_flow`` on the sweep's task runner, built once per runner configuration.

    ``Flow.with_options`` regenerates the flow's parameter schema (~10 ms); the flow object is
    reusable because every run enters a fresh ``duplicate()`` of its task runner.
    """
    output = OutputParams(sweep_runner=runner, dask_workers=workers, dask_address=address)
    return cluster_flow.with_options(task_runner=sweep_runner(output))


def _collect_states(*outcomes: Any) -> dict[str, list[str]]:
    states: dict[str, list[str]] = {}
    for outcome in outcomes:
        for task_name, state_name in outcome.task_states:
            states.setdefault(task_name, []).append(state_name)
    return states


def _publish_run_summary(result: PipelineResult, dataset: DatasetParams) -> None:
    with ui_artifacts() as ui:  # the two round trips overlap
        ui.create(
            create_markdown_artifact,
            run_summary_markdown(result, dataset),
            key=artifact_key(result.name, "summary"),
            description="Run summary: dataset, N, D, model, k and why, artifact version and path",
        )
        ui.create(
            create_link_artifact,
            Path(result.artifact_path).as_uri(),
            link_text=f"{result.name}/{result.version}",
            key=artifact_key(result.name, "artifact"),
            description="The published artifact version (manifest.json, arrays, plots, report.md)",
        )


def run_summary_markdown(result: PipelineResult, dataset: DatasetParams) -> str:
    """The run's markdown summary: facts, warnings, and the samples left out."""
    from cl_core.report import summary_markdown

    why = {
        "explicit": "explicit n_clusters",
        "davies_bouldin": "lowest Davies-Bouldin index over the sweep",
        "per_class": "per class (supervised)",
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
