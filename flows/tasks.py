"""Thin Prefect tasks: load inputs from disk, call one ``cl_core`` step, write, return a path.

Caching
-------
Every task takes a ``content_id`` (see :mod:`flows.ids`) and uses :data:`CONTENT_ID` as its cache
policy, so its Prefect cache key is ``<task name>-<content id>``: equal inputs give a ``Cached``
state without running, a changed parameter gives a new id only for the stages that depend on it.
Results are small JSON documents (paths, ids, summary rows) persisted under the work directory
(:func:`configured`), next to the files they describe.

A cache record alone is never trusted: before submitting a task the flow verifies its output on
disk (:mod:`flows.done`) and, where it does not verify, submits the task with
``refresh_cache=True`` so it recomputes and overwrites the stale record. Task bodies are
idempotent as well (an embedding shard already marked done is not recomputed, a k already
evaluated is read back), which covers a run killed between writing a file and its record.

Bad samples
-----------
A sample that cannot be loaded raises ``cl_core.embed.BadSampleError``. Data errors are
deterministic, so the shard task does not retry them (:func:`retry_unless_bad_sample`); retries
stay for infrastructure errors. With ``on_bad_sample="skip"`` the store records the skipped rows
and every later task reads the mask of usable rows from the store (``usable_rows``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import CachePolicy
from prefect.states import get_state_exception
from pydantic import BaseModel, ConfigDict

from cl_core.artifacts import publish_curriculum
from cl_core.cluster import SweepPoint, cluster_embeddings, evaluate_k, plan_sweep
from cl_core.difficulty import DifficultyScale, fit_scale
from cl_core.io import Location, as_location, is_url, sha256_hex
from cl_core.report import cluster_table
from cl_core.schedule import build_schedule
from cl_core.store import open_store
from flows import files
from flows.done import CLUSTER_FILE, RECEIPT_FILE, UPDATE_PLAN_FILE, files_verified, usable_rows
from flows.ids import WorkDir
from flows.inputs import describe_store, resolve_inputs
from flows.params import ClusterParams, CurriculumParams, DatasetParams, EmbedParams
from flows.publication import (
    PublishPlan,
    publish_inputs,
    publish_options,
    publish_receipt,
    render_report,
    report_args,
    report_title,
)
from flows.sweep_sample import remember_sample, sweep_sample


class ContentIdPolicy(CachePolicy):
    """Cache key = task name + the task's ``content_id`` argument (nothing else)."""

    def compute_key(
        self,
        task_ctx: Any,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        content_id = inputs.get("content_id")
        if not content_id:
            raise ValueError(
                f"task {task_ctx.task.name!r} has no content_id argument; the content-id cache "
                "policy needs one (see flows.ids.content_id)"
            )
        return f"{task_ctx.task.name}-{content_id}"


CONTENT_ID = ContentIdPolicy()
_TASK_OPTIONS: dict[str, Any] = {
    "cache_policy": CONTENT_ID,
    "persist_result": True,
    "result_serializer": "json",  # results are paths and small summaries: no pickle
}


def configured(prefect_task: Any, work: WorkDir, *, done: bool = True, **options: Any) -> Any:
    """``prefect_task`` with its results stored under ``work.cache``.

    Parameters
    ----------
    done : bool
        Whether the task's output is already complete on disk. ``False`` forces a recompute
        (``refresh_cache``) so that a cache record never stands in for a missing file.
    """
    if not done:
        options["refresh_cache"] = True
    return prefect_task.with_options(result_storage=result_storage(work), **options)


def result_storage(work: WorkDir) -> Any:
    """``work.result_storage`` as Prefect takes it: a local folder as a path; a
    ``RemoteFileSystem`` block (object storage) saved on the Prefect server under a name derived
    from its URL (``remote-file-system/cl-cache-<sha>``), which is how Prefect hands result
    storage to tasks in other processes (Dask workers)."""
    storage = work.result_storage
    if isinstance(storage, Path):
        return storage
    return _saved_block(str(storage.basepath))


@functools.lru_cache(maxsize=16)
def _saved_block(basepath: str) -> str:
    from prefect.filesystems import RemoteFileSystem

    name = f"cl-cache-{sha256_hex(basepath.encode('utf-8'))[:16]}"
    RemoteFileSystem(basepath=basepath).save(name, overwrite=True)
    return f"remote-file-system/{name}"


def retry_unless_bad_sample(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry infrastructure errors, never a bad sample."""
    from cl_core.embed import BadSampleError  # torch-heavy: imported on use

    return not isinstance(get_state_exception(state), BadSampleError)


class _Plan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EmbedPlan(_Plan):
    """What an embedding task needs to rebuild its inputs in any process.

    ``identity`` is the dataset's identity (``cl_core.embed.DatasetIdentity`` as a dict)
    computed once by the flow; it is handed to cl_core as ``dataset_id`` so that the store records
    it and no shard task lists the dataset again.
    """

    embed_id: str
    store_path: str
    dataset: DatasetParams
    embedding: EmbedParams
    identity: dict[str, str]

    def dataset_identity(self) -> Any:
        from cl_core.embed import DatasetIdentity  # torch-heavy: imported on use

        return DatasetIdentity(**self.identity)

    def resolved(self) -> tuple[Any, Any]:
        """(LoadedModel, DatasetSpec), memoised per process and dataset identity."""
        return resolve_inputs(self.dataset, self.embedding, self.identity["fingerprint"])


# --------------------------------------------------------------------------------------------
# Embed stage
# --------------------------------------------------------------------------------------------


@task(name="create-store", **_TASK_OPTIONS)
def create_store_task(content_id: str, plan: EmbedPlan) -> dict[str, Any]:
    """Create (or reopen, if it matches) the embedding store, copying the rows of unchanged files
    from the work dir's earlier stores; return its layout and what was reused."""
    from cl_core.embed import plan_store  # torch-heavy: imported on use

    _, dataset = plan.resolved()
    store = plan_store(
        dataset,
        plan.store_path,
        plan.embedding.to_config(),
        dataset_id=plan.dataset_identity(),
        reuse_from=files.sibling_stores(plan.store_path),
    )
    return {
        "store_path": plan.store_path,
        "n_shards": store.n_shards,
        "n_rows": store.n_rows,
        "reuse": store.reuse,
    }


@task(name="embed-shard", retry_condition_fn=retry_unless_bad_sample, **_TASK_OPTIONS)
def embed_shard_task(content_id: str, plan: EmbedPlan, shards: list[int]) -> list[int]:
    """Embed the rows of one shard, or of a few shards partly copied from an earlier store, into
    the store (shards already done are skipped; one loader for them all)."""
    from cl_core.embed import embed_shards  # torch-heavy: imported on use

    store = open_store(plan.store_path)
    missing = set(store.missing_shards())
    todo = [shard for shard in shards if shard in missing]
    if todo:
        _, dataset = plan.resolved()
        config = plan.embedding.to_config()
        embed_shards(store, dataset, config, shards=todo, dataset_id=plan.dataset_identity())
    return list(shards)


@task(name="finalize-store", **_TASK_OPTIONS)
def finalize_store_task(content_id: str, store_path: str) -> dict[str, Any]:
    """Merge the per-shard statistics; return the store's identity and shape."""
    store = open_store(store_path)
    if not store.is_complete:
        store.finalize()
    return describe_store(store)


# --------------------------------------------------------------------------------------------
# Cluster stage
# --------------------------------------------------------------------------------------------


@task(name="sweep-sample", **_TASK_OPTIONS)
def sample_task(
    content_id: str, store_path: str, clustering: ClusterParams, out_path: str
) -> dict[str, Any]:
    """Draw the k-sweep subsample (``cl_core.cluster.plan_sweep``), save it; return the ks.

    ``plan_sweep`` draws exactly the subsample and seeds that ``cluster_embeddings`` uses, so the
    fanned-out sweep chooses the k the library would.
    """
    store = open_store(store_path, read_only=True)
    plan = plan_sweep(store, clustering.to_config(), valid=usable_rows(store))
    sample = remember_sample(files.save_npy(out_path, plan.sample), np.asarray(plan.sample))
    return {
        "sample_path": out_path,
        "ks": [int(k) for k in plan.ks],
        "n_samples": len(sample),
        "sweep_seed": int(plan.sweep_seed),
    }


@task(name="evaluate-ks", **_TASK_OPTIONS)
def evaluate_ks_task(
    content_id: str,
    sample_path: str,
    ks: list[int],
    sweep_seed: int,
    clustering: ClusterParams,
    out_paths: list[str],
) -> list[dict[str, Any]]:
    """``cl_core.cluster.evaluate_k`` for each k of a group (its Davies-Bouldin index and
    inertia), one file per k; a k whose file verifies is read back, not fitted again."""
    config = clustering.to_config()
    for k, out_path in zip(ks, out_paths, strict=True):
        if not files_verified(out_path):
            point = evaluate_k(
                sweep_sample(sample_path),
                k,
                sweep_seed,
                config.sweep_batch_size,
                n_init=config.sweep_n_init,
                n_threads=1,  # one core per job: no oversubscription
            )
            files.save_json(out_path, point.to_dict())
    return [files.load_json(out_path) for out_path in out_paths]


@task(name="fit-clusters", **_TASK_OPTIONS)
def cluster_task(
    content_id: str,
    store_path: str,
    clustering: ClusterParams,
    out_dir: str,
    n_clusters: int | None = None,
    sweep: list[dict[str, Any]] | None = None,
    on_cluster: bool = False,
    sample_path: str | None = None,
) -> dict[str, Any]:
    """``cluster_embeddings`` with k given, or chosen from the flow's sweep (``sweep=``: the
    library chooses k and fits from the sweep's sample, as if the sweep had run inside it);
    ``cluster.json`` last.

    ``sample_path``: the sweep's sample (the sample task's file), handed to the fit so that it
    is not drawn from the store a second time.

    ``on_cluster``: the task runs on a Dask worker, and the assignment runs as Dask tasks over
    row ranges of the store on that worker's cluster (each task reads its own chunks); the
    results are identical to the local assignment.
    """
    config = clustering.to_config()
    points = [SweepPoint.from_dict(point) for point in sweep] if sweep else None
    if n_clusters is not None and points is None:
        config = dataclasses.replace(config, n_clusters=int(n_clusters))
    store = open_store(store_path, read_only=True)
    labels = store.labels() if clustering.use_labels else None
    sample = sweep_sample(sample_path) if points is not None and sample_path else None
    with _cluster_client(on_cluster) as client:
        result = cluster_embeddings(
            store,
            config,
            labels=labels,
            valid=usable_rows(store),
            client=client,
            sweep=points,
            sample=sample,
        )
    directory = _save_cluster_arrays(as_location(out_dir), result)
    summary = _cluster_summary(result, directory, sweep)
    files.save_json(directory / CLUSTER_FILE, summary)
    return summary


@contextlib.contextmanager
def _cluster_client(on_cluster: bool) -> Iterator[Any]:
    """The Dask client of the worker this task runs on (seceded from the worker's thread pool,
    so its own tasks can run there too), or None off a Dask worker."""
    if not on_cluster:
        yield None
        return
    from distributed import get_worker, worker_client

    try:
        get_worker()
    except ValueError:  # not on a Dask worker (e.g. a thread runner): assign locally
        yield None
        return
    with worker_client() as client:
        yield client


def _cluster_summary(
    result: Any, directory: Location, sweep: list[dict[str, Any]] | None
) -> dict[str, Any]:
    return {
        "cluster_dir": str(directory),
        "n_clusters": int(result.n_clusters),
        "chosen_by": str(result.chosen_by),
        "sweep": sweep or result.sweep_records(),
        "clusters": cluster_table(result.assignment, result.distances),
    }


def _save_cluster_arrays(directory: Location, result: Any) -> Location:
    files.save_npy(directory / "centroids.npy", result.centroids)
    files.save_npy(directory / "assignment.npy", result.assignment)
    files.save_npy(directory / "distances.npy", result.distances)
    if result.cluster_class is not None:
        files.save_npy(directory / "cluster_class.npy", result.cluster_class)
    return directory


@task(name="plan-update", **_TASK_OPTIONS)
def plan_update_task(
    content_id: str,
    store_path: str,
    previous_path: str,
    clustering: ClusterParams,
    difficulty: str,
    out_dir: str,
) -> dict[str, Any]:
    """``cl_core.update.plan_update``: match the store's rows to the previous version, assign
    the new ones to its centroids, decide under the refit policy. When it assigns, the cluster
    files (centroids, assignment, distances, ``cluster.json``) are written into ``out_dir`` as
    a fit would; ``plan.json`` (the lineage) last either way."""
    from cl_core.update import first_lineage, plan_update

    store = open_store(store_path, read_only=True)
    policy = clustering.refit_policy()
    directory = as_location(out_dir)
    try:
        plan = plan_update(
            previous_path,
            store,
            policy,
            cluster_config=clustering.to_config(),
            difficulty=difficulty,
        )
    except ValueError as error:  # another embedding configuration, a damaged version, ...
        if policy.mode == "never":
            raise
        valid = usable_rows(store)
        n_valid = store.n_rows if valid is None else int(valid.sum())
        name = as_location(previous_path).name
        why = f"previous version {name} not used: {error}"
        document = {"action": "fit", "lineage": first_lineage(policy, store.n_rows, n_valid, why)}
        files.save_json(directory / UPDATE_PLAN_FILE, document)
        return document
    summary = None
    if plan.decision.action == "assign":
        files.save_npy(directory / "centroids.npy", plan.previous.centroids)
        files.save_npy(directory / "assignment.npy", plan.assignment)
        files.save_npy(directory / "distances.npy", plan.distances)
        summary = {
            "cluster_dir": str(directory),
            "n_clusters": int(plan.previous.centroids.shape[0]),
            "chosen_by": "previous",
            "sweep": [],
            "clusters": cluster_table(plan.assignment, plan.distances),
        }
        files.save_json(directory / CLUSTER_FILE, summary)
    document = {
        "action": plan.decision.action,
        "previous_path": str(plan.previous.path),
        "lineage": plan.lineage(),
        "cluster": summary,
    }
    files.save_json(directory / UPDATE_PLAN_FILE, document)
    return document


# --------------------------------------------------------------------------------------------
# Curriculum stage
# --------------------------------------------------------------------------------------------


@task(name="difficulty", **_TASK_OPTIONS)
def difficulty_task(
    content_id: str,
    cluster_dir: str,
    store_path: str,
    curriculum: CurriculumParams,
    use_labels: bool,
    out_path: str,
    scale_path: str,
    previous_path: str | None = None,
) -> str:
    """Normalise distances within each cluster (or class) into difficulty in [0, 1].

    The per-cluster scale (``cl_core.difficulty.fit_scale``, the same figures
    ``normalize_difficulty`` uses) is fitted on these distances and saved at ``scale_path``; with
    ``previous_path`` (rows assigned to that version's centroids) that version's scale is applied
    instead, so unchanged samples keep their difficulty bitwise.
    """
    directory = as_location(cluster_dir)
    store = open_store(store_path, read_only=True)
    groups = store.labels() if use_labels else files.load_npy(directory / "assignment.npy")
    distances = files.load_npy(directory / "distances.npy")
    valid = usable_rows(store)
    if previous_path is not None:
        from cl_core.artifacts import load_json
        from cl_core.update import STATE_FILE

        state = load_json(previous_path, STATE_FILE)
        scale = DifficultyScale.from_json(state["difficulty_scale"])
    else:
        scale = fit_scale(distances, groups, curriculum.difficulty, valid=valid)
    files.save_json(scale_path, scale.to_json())
    files.save_npy(out_path, scale.apply(distances, groups, valid=valid))
    return out_path


@task(name="schedule", **_TASK_OPTIONS)
def schedule_task(
    content_id: str,
    difficulty_path: str,
    store_path: str,
    curriculum: CurriculumParams,
    out_path: str,
) -> str:
    """Solve the temperature table of the schedule (usable rows only), save ``to_json()``."""
    schedule = build_schedule(
        files.load_npy(difficulty_path),
        curriculum.schedule_config(),
        valid=usable_rows(open_store(store_path, read_only=True)),
    )
    files.save_json(out_path, schedule.to_json())
    return out_path


@task(name="publish", **_TASK_OPTIONS)
def publish_task(content_id: str, plan: PublishPlan) -> dict[str, Any]:
    """Render the report, then ``cl_core.artifacts.publish_curriculum`` with the prebuilt
    schedule (the same manifest as a direct call); write and return the receipt.

    The report is rendered into local files (plots need them): into the work dir's report
    folder, or a temporary folder when the work dir is on object storage (the plots then live
    only in the published version).
    """
    inputs = publish_inputs(plan)
    remote = is_url(plan.report_dir)
    with tempfile.TemporaryDirectory(prefix="cl-report-") as scratch:
        plots = render_report(
            scratch if remote else plan.report_dir,
            title=report_title(plan, inputs),
            **report_args(plan, inputs),
        )
        version_dir = publish_curriculum(
            plan.output_dir,
            plan.name,
            **inputs["arrays"],
            **publish_options(plan, inputs),
            extra_files={path.name: path for path in plots.values()},
            replace_damaged=True,  # the flow verified it before: a damaged version is republished
        )
    receipt = publish_receipt(plan, version_dir, plots)
    files.save_json(as_location(plan.report_dir) / RECEIPT_FILE, receipt)
    return receipt
