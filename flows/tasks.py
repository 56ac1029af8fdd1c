"""Thin Prefect tasks: load inputs from disk, call one ``cl_core`` function, write, return a path.

Caching
-------
Every task takes a ``content_id`` (see :mod:`flows.ids`) and uses :data:`CONTENT_ID` as its cache
policy, so its Prefect cache key is ``<task name>-<content id>``: equal inputs give a ``Cached``
state without running, a changed parameter gives a new id only for the stages that depend on it.
Results are small JSON documents (paths, ids, summary rows) persisted under the work directory
(:func:`configured`), next to the files they describe.

A cache record alone is never trusted: before submitting a task the flow verifies its output on
disk (the predicates below: files whose size and sha256 match what was recorded when they were
written, a published artifact that passes ``verify_artifact``, a store's done markers) and, where
it does not verify, submits the task with ``refresh_cache=True`` so it recomputes and overwrites
the stale record. Task bodies are idempotent as well (an embedding shard already marked done is
not recomputed), which covers a run killed between writing a file and persisting its record.

Bad samples
-----------
A sample that cannot be loaded raises ``cl_core.embed.BadSampleError``. Data errors are
deterministic, so the shard task does not retry them (:func:`retry_unless_bad_sample`); retries
stay for infrastructure errors. With ``on_bad_sample="skip"`` the store records the skipped rows and
every later task reads the mask of usable rows from the store (:func:`usable_rows`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import CachePolicy
from prefect.states import get_state_exception
from pydantic import BaseModel, ConfigDict

from flows import _files
from flows.ids import WorkDir
from flows.inputs import describe_store, resolve_inputs
from flows.params import ClusterParams, CurriculumParams, DatasetParams, EmbedParams

logger = logging.getLogger(__name__)

CLUSTER_FILE = "cluster.json"
CLUSTER_ARRAYS = ("centroids.npy", "assignment.npy", "distances.npy")
RECEIPT_FILE = "published.json"


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
    return prefect_task.with_options(result_storage=work.cache, **options)


class _Plan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EmbedPlan(_Plan):
    """What an embedding task needs to rebuild its inputs in any process.

    ``identity`` is the dataset's identity (``cl_core.datasets.DatasetIdentity`` as a dict)
    computed once by the flow; it is handed to cl_core as ``dataset_id`` so that the store records
    it and no shard task lists the dataset again.
    """

    embed_id: str
    store_path: str
    dataset: DatasetParams
    embedding: EmbedParams
    identity: dict[str, str]

    def dataset_identity(self) -> Any:
        from cl_core.datasets import DatasetIdentity

        return DatasetIdentity(**self.identity)

    def resolved(self) -> tuple[Any, Any]:
        """(LoadedModel, DatasetSpec), memoised per process and dataset identity."""
        return resolve_inputs(self.dataset, self.embedding, self.identity["fingerprint"])


# --------------------------------------------------------------------------------------------
# Completion predicates (the on-disk truth a cache record must agree with)
# --------------------------------------------------------------------------------------------


def store_created(store_path: str) -> bool:
    """The store exists and opens (its layout is readable)."""
    from cl_core.store import open_store

    try:
        open_store(store_path, read_only=True)
    except (OSError, ValueError, KeyError):
        return False
    return True


def missing_shards(store_path: str) -> list[int]:
    from cl_core.store import open_store

    return open_store(store_path).missing_shards()


def store_complete(store_path: str) -> bool:
    """Every shard's done marker is set and the store is finalized."""
    from cl_core.store import open_store

    return store_created(store_path) and open_store(store_path, read_only=True).is_complete


def files_verified(*paths: str | Path) -> bool:
    """Every file exists with the size and sha256 recorded when it was written."""
    return _files.all_verified(*paths)


def cluster_outputs_verified(out_dir: str | Path) -> bool:
    """The cluster stage's files (centroids, assignment, distances, summary) are intact."""
    directory = Path(out_dir)
    required = [directory / name for name in CLUSTER_ARRAYS] + [directory / CLUSTER_FILE]
    optional = [path for path in [directory / "cluster_class.npy"] if path.exists()]
    return files_verified(*required, *optional)


def published(receipt_dir: str | Path) -> bool:
    """The publish receipt is intact and the version it names passes ``verify_artifact``."""
    from cl_core.artifacts import verify_artifact

    receipt = Path(receipt_dir) / RECEIPT_FILE
    if not files_verified(receipt):
        return False
    try:
        verify_artifact(_files.load_json(receipt)["artifact_path"])
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


def retry_unless_bad_sample(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry infrastructure errors, never a bad sample."""
    from cl_core.embed import BadSampleError

    return not isinstance(get_state_exception(state), BadSampleError)


# --------------------------------------------------------------------------------------------
# Embed stage
# --------------------------------------------------------------------------------------------


@task(name="create-store", **_TASK_OPTIONS)
def create_store_task(content_id: str, plan: EmbedPlan) -> dict[str, Any]:
    """Create (or reopen, if it matches) the embedding store; return its layout."""
    from cl_core.embed import plan_store

    _, dataset = plan.resolved()
    store = plan_store(
        dataset, plan.store_path, plan.embedding.to_config(), dataset_id=plan.dataset_identity()
    )
    return {"store_path": plan.store_path, "n_shards": store.n_shards, "n_rows": store.n_rows}


@task(name="embed-shard", retry_condition_fn=retry_unless_bad_sample, **_TASK_OPTIONS)
def embed_shard_task(content_id: str, plan: EmbedPlan, shard: int) -> int:
    """Embed the rows of one shard into the store (skipped if the shard is already done)."""
    from cl_core.embed import embed_shards
    from cl_core.store import open_store

    store = open_store(plan.store_path)
    if shard not in store.missing_shards():
        return shard
    _, dataset = plan.resolved()
    embed_shards(
        store,
        dataset,
        plan.embedding.to_config(),
        shards=[shard],
        dataset_id=plan.dataset_identity(),
    )
    return shard


@task(name="finalize-store", **_TASK_OPTIONS)
def finalize_store_task(content_id: str, store_path: str) -> dict[str, Any]:
    """Merge the per-shard statistics; return the store's identity and shape."""
    from cl_core.store import open_store

    store = open_store(store_path)
    if not store.is_complete:
        store.finalize()
    return describe_store(store)


# --------------------------------------------------------------------------------------------
# Cluster stage
# --------------------------------------------------------------------------------------------


def _store_source(store_path: str) -> Any:
    from cl_core.store import open_store

    return open_store(store_path, read_only=True)


@task(name="sweep-sample", **_TASK_OPTIONS)
def sample_task(
    content_id: str, store_path: str, clustering: ClusterParams, out_path: str
) -> dict[str, Any]:
    """Draw the k-sweep subsample (usable rows only), save it; return its path and the ks.

    ``cl_core.cluster.plan_sweep`` draws exactly the subsample and seeds that
    ``cluster_embeddings`` uses, so the fanned-out sweep chooses the k the library would.
    """
    from cl_core.cluster import plan_sweep

    store = _store_source(store_path)
    plan = plan_sweep(store, clustering.to_config(), valid=usable_rows(store))
    sample = np.asarray(plan.sample)
    _remember_sample(_files.save_npy(out_path, sample), sample)
    return {
        "sample_path": out_path,
        "ks": [int(k) for k in plan.ks],
        "n_samples": len(sample),
        "sweep_seed": int(plan.sweep_seed),
    }


_sample_lock = threading.Lock()
_sample_memo: tuple[tuple[str, int, int], np.ndarray] | None = None


def _file_identity(path: str | Path) -> tuple[str, int, int]:
    # mtime and size are part of the identity so that a rewritten sample is read again.
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return str(resolved), stat.st_mtime_ns, stat.st_size


def _remember_sample(sample_path: str | Path, sample: np.ndarray) -> np.ndarray:
    """Keep the sweep sample of ``sample_path`` for this process's k jobs (read-only)."""
    global _sample_memo
    sample.flags.writeable = False  # shared by concurrent jobs: nobody may change it
    with _sample_lock:
        _sample_memo = (_file_identity(sample_path), sample)
    return sample


def _sweep_sample(sample_path: str) -> np.ndarray:
    """The sweep sample, read once per process (every k task of a sweep reads the same file).

    The sample task hands its in-memory sample over (:func:`_remember_sample`), so k jobs on the
    in-process Dask cluster never read it back; other processes read the file once.
    """
    identity = _file_identity(sample_path)
    with _sample_lock:
        if _sample_memo is not None and _sample_memo[0] == identity:
            return _sample_memo[1]
    return _remember_sample(sample_path, _files.load_npy(sample_path))


@task(name="evaluate-k", **_TASK_OPTIONS)
def evaluate_k_task(
    content_id: str,
    sample_path: str,
    k: int,
    sweep_seed: int,
    clustering: ClusterParams,
    out_path: str,
) -> dict[str, Any]:
    """Fit one k on the sweep sample; save and return its Davies-Bouldin index and inertia."""
    from cl_core.cluster import evaluate_k

    config = clustering.to_config()
    point = evaluate_k(
        _sweep_sample(sample_path),
        k,
        sweep_seed,
        config.sweep_batch_size,
        n_init=config.sweep_n_init,
        n_threads=1,  # one core per job: parallel jobs must not oversubscribe
    )
    record = point.to_dict()
    _files.save_json(out_path, record)
    return record


@task(name="fit-clusters", **_TASK_OPTIONS)
def cluster_task(
    content_id: str,
    store_path: str,
    clustering: ClusterParams,
    out_dir: str,
    n_clusters: int | None = None,
    sweep: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Fit k-means (k given, or chosen by the sweep), assign every row, save the result.

    Writes ``centroids.npy``, ``assignment.npy``, ``distances.npy`` (and ``cluster_class.npy``
    in supervised mode), then ``cluster.json`` last as the completion marker.
    """
    from cl_core.cluster import cluster_embeddings
    from cl_core.report import cluster_table

    config = clustering.to_config()
    if n_clusters is not None:
        config = dataclasses.replace(config, n_clusters=int(n_clusters))
    store = _store_source(store_path)
    labels = store.labels() if clustering.use_labels else None
    result = cluster_embeddings(store, config, labels=labels, valid=usable_rows(store))
    directory = Path(out_dir)
    _files.save_npy(directory / "centroids.npy", result.centroids)
    _files.save_npy(directory / "assignment.npy", result.assignment)
    _files.save_npy(directory / "distances.npy", result.distances)
    if result.cluster_class is not None:
        _files.save_npy(directory / "cluster_class.npy", result.cluster_class)

    summary = {
        "cluster_dir": str(directory),
        "n_clusters": int(result.n_clusters),
        "chosen_by": "davies_bouldin" if sweep else str(result.chosen_by),
        "sweep": sweep or result.sweep_records(),
        "clusters": cluster_table(result.assignment, result.distances),
    }
    _files.save_json(directory / CLUSTER_FILE, summary)
    return summary


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
) -> str:
    """Normalise distances within each cluster (or class) into difficulty in [0, 1]."""
    from cl_core.difficulty import normalize_difficulty

    directory = Path(cluster_dir)
    distances = _files.load_npy(directory / "distances.npy")
    store = _store_source(store_path)
    groups = store.labels() if use_labels else _files.load_npy(directory / "assignment.npy")
    difficulty = normalize_difficulty(
        distances, groups, method=curriculum.difficulty, valid=usable_rows(store)
    )
    _files.save_npy(out_path, difficulty)
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
    from cl_core.schedule import build_schedule

    schedule = build_schedule(
        _files.load_npy(difficulty_path),
        curriculum.schedule_config(),
        valid=usable_rows(_store_source(store_path)),
    )
    _files.save_json(out_path, schedule.to_json())
    return out_path


class PublishPlan(_Plan):
    """Everything the publish task reads (paths) and records (config, parents)."""

    name: str
    output_dir: str
    report_dir: str
    cluster_dir: str
    difficulty_path: str
    schedule_path: str
    store_path: str
    parents: list[str]
    schedule_config: dict[str, Any]
    pipeline_config: dict[str, Any]
    summary: dict[str, Any]
    dataset: DatasetParams
    dataset_fingerprint: str | None = None
    warnings: list[str] = []


@task(name="publish", **_TASK_OPTIONS)
def publish_task(content_id: str, plan: PublishPlan) -> dict[str, Any]:
    """Render the report into a staging directory and publish everything as one version."""
    from cl_core.artifacts import compute_version, curriculum_identity, publish_artifact
    from cl_core.schedule import ScheduleConfig

    cluster_dir = Path(plan.cluster_dir)
    arrays = {
        "difficulty": _files.load_npy(plan.difficulty_path).astype(np.float32),
        "assignment": _files.load_npy(cluster_dir / "assignment.npy").astype(np.int32),
        "centroids": _files.load_npy(cluster_dir / "centroids.npy").astype(np.float32),
    }
    cluster_summary = _files.load_json(cluster_dir / CLUSTER_FILE)
    schedule_json = _files.load_json(plan.schedule_path)
    store = _store_source(plan.store_path)
    sample_mask = usable_rows(store)
    # The same identity as publish_curriculum: the arrays' digests are parents, so different
    # scores never share a version even if an upstream stage were not bit-reproducible.
    parents, config = curriculum_identity(
        arrays,
        ScheduleConfig.from_json(plan.schedule_config),
        plan.pipeline_config,
        plan.parents,
        sample_mask=sample_mask,
    )
    version = compute_version(parents, config)
    title = f"Curriculum `{plan.name}` version `{version}`"
    skipped = [dict(sample) for sample in store.skipped_samples]
    plots = render_report(plan, arrays, cluster_summary, schedule_json, title, skipped)
    json_files: dict[str, Any] = {"schedule": schedule_json, "sweep": cluster_summary["sweep"]}
    version_dir = publish_artifact(
        plan.output_dir,
        plan.name,
        arrays=arrays,
        json_files=json_files,
        config=config,
        parents=parents,
        metrics=_metrics(arrays["difficulty"], cluster_summary),
        extra_files={path.name: path for path in plots.values()},
        dataset_fingerprint=plan.dataset_fingerprint,
        sample_mask=sample_mask,
        replace_damaged=True,  # the flow verified it before: a damaged version is republished
    )
    receipt = {
        "artifact_path": str(version_dir),
        "version": version_dir.name,
        "name": plan.name,
        "report_path": str(version_dir / "report.md"),
        "files": sorted(path.name for path in plots.values()),
    }
    _files.save_json(Path(plan.report_dir) / RECEIPT_FILE, receipt)
    return receipt


def _metrics(difficulty: np.ndarray, cluster_summary: dict[str, Any]) -> dict[str, Any]:
    chosen = [p for p in cluster_summary["sweep"] if p["k"] == cluster_summary["n_clusters"]]
    return {
        "n_clusters": cluster_summary["n_clusters"],
        "chosen_by": cluster_summary["chosen_by"],
        "davies_bouldin": chosen[0]["davies_bouldin"] if chosen else None,
        "difficulty_mean": float(difficulty.mean(dtype=np.float64)),
    }


def render_report(
    plan: PublishPlan,
    arrays: dict[str, np.ndarray],
    cluster_summary: dict[str, Any],
    schedule_json: dict[str, Any],
    title: str,
    skipped: list[dict[str, Any]],
) -> dict[str, Path]:
    """Write the plots and report.md for this publication into ``plan.report_dir``."""
    from cl_core.report import order_by_prototypicality, schedule_curve, write_report
    from cl_core.schedule import Schedule

    difficulty, assignment = arrays["difficulty"], arrays["assignment"]
    distances = _files.load_npy(Path(plan.cluster_dir) / "distances.npy")
    picked = order_by_prototypicality(difficulty, assignment, per_cluster=8)
    images = sample_images(plan.dataset, picked)
    return write_report(
        plan.report_dir,
        summary=plan.summary,
        difficulty=difficulty,
        assignment=assignment,
        distances=distances,
        schedule_points=schedule_curve(Schedule.from_json(schedule_json)),
        sweep=cluster_summary["sweep"] if cluster_summary["chosen_by"] == "davies_bouldin" else (),
        chosen_k=cluster_summary["n_clusters"],
        sample_images=images,
        title=title,
        warnings=plan.warnings,
        skipped=skipped,
    )


def sample_images(
    dataset: DatasetParams, picked: dict[int, np.ndarray], thumbnail: int = 64
) -> dict[int, list[np.ndarray]] | None:
    """Raw images (not model-preprocessed) of the picked indices, for image datasets only."""
    if dataset.kind == "digits":
        from sklearn.datasets import load_digits

        images = load_digits().images
        return {c: [images[i] for i in indices] for c, indices in picked.items()}
    if dataset.kind == "imagefolder":
        from PIL import Image
        from torchvision.datasets import ImageFolder

        files = [path for path, _ in ImageFolder(dataset.location).samples]

        def load(index: int) -> np.ndarray:
            with Image.open(files[index]) as image:
                rgb = image.convert("RGB")
            rgb.thumbnail((thumbnail, thumbnail))
            return np.asarray(rgb)

        return {c: [load(int(i)) for i in indices] for c, indices in picked.items()}
    return None
