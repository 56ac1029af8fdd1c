"""Thin Prefect tasks: load inputs from disk, call one ``cl_core`` function, write, return a path.

Caching
-------
Every task takes a ``content_id`` (see :mod:`flows.ids`) and uses :data:`CONTENT_ID` as its cache
policy, so its Prefect cache key is ``<task name>-<content id>``: equal inputs give a ``Cached``
state without running, a changed parameter gives a new id only for the stages that depend on it.
Results are small JSON documents (paths, ids, summary rows) persisted under the work directory
(:func:`configured`), next to the files they describe.

A cache record alone is never trusted: before submitting a task the flow checks that its output
is on disk (the ``*_done`` predicates below) and, where it is not, submits the task with
``refresh_cache=True`` so it recomputes and overwrites the stale record. Task bodies are
idempotent as well (an embedding shard already marked done is not recomputed), which covers a
run killed between writing a file and persisting its record.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import CachePolicy
from pydantic import BaseModel, ConfigDict

from flows import _files
from flows.ids import WorkDir
from flows.params import ClusterParams, CurriculumParams, DatasetParams, EmbedParams

logger = logging.getLogger(__name__)

CLUSTER_FILE = "cluster.json"
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
    """What an embedding task needs to rebuild its inputs in any process."""

    embed_id: str
    store_path: str
    dataset: DatasetParams
    embedding: EmbedParams


# --------------------------------------------------------------------------------------------
# Process-local resolution of models and datasets (tasks receive specs, not objects)
# --------------------------------------------------------------------------------------------


def load_encoder(embedding: EmbedParams) -> Any:
    """The encoder for ``embedding`` (cl_core caches loaded models per process)."""
    from cl_core.models import load_model

    return load_model(embedding.model, embedding.weights, pretrained=embedding.pretrained)


@functools.lru_cache(maxsize=4)
def _resolved_dataset(spec: str, image_size: int | None, data_config_key: str) -> Any:
    import json

    from cl_core.datasets import resolve_dataset

    data_config = json.loads(data_config_key) or None
    return resolve_dataset(spec, image_size=image_size, data_config=data_config)


def resolve_inputs(dataset: DatasetParams, embedding: EmbedParams) -> tuple[Any, Any]:
    """(LoadedModel, DatasetSpec) for an embedding plan, memoised per process."""
    import json

    loaded = load_encoder(embedding)
    key = json.dumps(loaded.data_config or {}, sort_keys=True, default=str)
    return loaded, _resolved_dataset(dataset.spec, embedding.image_size, key)


# --------------------------------------------------------------------------------------------
# Completion predicates (the on-disk truth a cache record must agree with)
# --------------------------------------------------------------------------------------------


def store_created(store_path: str) -> bool:
    return (Path(store_path) / "zarr.json").is_file()


def missing_shards(store_path: str) -> list[int]:
    from cl_core.store import open_store

    return open_store(store_path).missing_shards()


def store_complete(store_path: str) -> bool:
    from cl_core.store import open_store

    return store_created(store_path) and open_store(store_path).is_complete


def files_exist(*paths: str | Path) -> bool:
    return all(Path(path).is_file() for path in paths)


def published(receipt_dir: str | Path) -> bool:
    receipt = Path(receipt_dir) / RECEIPT_FILE
    if not receipt.is_file():
        return False
    version_dir = Path(_files.load_json(receipt)["artifact_path"])
    return (version_dir / "manifest.json").is_file()


# --------------------------------------------------------------------------------------------
# Embed stage
# --------------------------------------------------------------------------------------------


@task(name="create-store", **_TASK_OPTIONS)
def create_store_task(content_id: str, plan: EmbedPlan) -> dict[str, Any]:
    """Create (or reopen, if it matches) the embedding store; return its layout."""
    from cl_core.embed import plan_store

    _, dataset = resolve_inputs(plan.dataset, plan.embedding)
    store = plan_store(dataset, plan.store_path, plan.embedding.to_config())
    return {"store_path": plan.store_path, "n_shards": store.n_shards, "n_rows": store.n_rows}


@task(name="embed-shard", **_TASK_OPTIONS)
def embed_shard_task(content_id: str, plan: EmbedPlan, shard: int) -> int:
    """Embed the rows of one shard into the store (skipped if the shard is already done)."""
    from cl_core.embed import embed_shards
    from cl_core.store import open_store

    store = open_store(plan.store_path)
    if shard not in store.missing_shards():
        return shard
    _, dataset = resolve_inputs(plan.dataset, plan.embedding)
    embed_shards(store, dataset, plan.embedding.to_config(), shards=[shard])
    return shard


@task(name="finalize-store", **_TASK_OPTIONS)
def finalize_store_task(content_id: str, store_path: str) -> dict[str, Any]:
    """Merge the per-shard statistics; return the store's identity and shape."""
    from cl_core.store import open_store

    store = open_store(store_path)
    if not store.is_complete:
        store.finalize()
    return describe_store(store)


def describe_store(store: Any) -> dict[str, Any]:
    """The facts downstream stages and the report need about a store (no arrays)."""
    attrs = store.attrs
    return {
        "store_path": str(store.path),
        "fingerprint": store.fingerprint,
        "dataset_fingerprint": store.dataset_fingerprint,
        "n_rows": int(store.n_rows),
        "dim": int(store.dim),
        "model_id": attrs.get("model_id"),
        "has_labels": bool(store.has_labels),
    }


# --------------------------------------------------------------------------------------------
# Cluster stage
# --------------------------------------------------------------------------------------------


def _store_source(store_path: str) -> Any:
    from cl_core.store import open_store

    return open_store(store_path, read_only=True)


def sweep_seeds(config: Any) -> tuple[int, int]:
    """(subsample seed, sweep seed) exactly as ``cl_core.cluster.cluster_embeddings`` derives them.

    The Prefect sweep must choose the same k as the library's own sweep, so it draws the same
    subsample and seeds every k the same way. cl_core keeps these helpers private; this is the
    one place that reaches for them (a public ``cluster.sweep_plan`` would remove the need).
    """
    from cl_core.cluster import _KEY_SAMPLE, _KEY_SWEEP, _derive_seed, _entropy

    entropy = _entropy(config.random_state)
    return _derive_seed(entropy, _KEY_SAMPLE), _derive_seed(entropy, _KEY_SWEEP)


@task(name="sweep-sample", **_TASK_OPTIONS)
def sample_task(
    content_id: str, store_path: str, clustering: ClusterParams, out_path: str
) -> dict[str, Any]:
    """Draw the k-sweep subsample, save it as ``.npy``; return its path and the feasible ks."""
    from cl_core.cluster import _candidate_ks, as_source, sample_rows

    config = clustering.to_config()
    source = as_source(_store_source(store_path), normalize=config.normalize)
    sample = sample_rows(source, config.sweep_samples, sweep_seeds(config)[0])
    ks = _candidate_ks(config.cluster_range, sample, source.n_rows)
    _remember_sample(_files.save_npy(out_path, sample), sample)
    return {"sample_path": out_path, "ks": [int(k) for k in ks], "n_samples": len(sample)}


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
    content_id: str, sample_path: str, k: int, clustering: ClusterParams, out_path: str
) -> dict[str, Any]:
    """Fit one k on the sweep sample; save and return its Davies-Bouldin index and inertia."""
    from cl_core.cluster import evaluate_k

    config = clustering.to_config()
    point = evaluate_k(
        _sweep_sample(sample_path),
        k,
        sweep_seeds(config)[1],
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
    result = cluster_embeddings(store, config, labels=labels)
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
    groups = (
        _store_source(store_path).labels()
        if use_labels
        else _files.load_npy(directory / "assignment.npy")
    )
    difficulty = normalize_difficulty(distances, groups, method=curriculum.difficulty)
    _files.save_npy(out_path, difficulty)
    return out_path


@task(name="schedule", **_TASK_OPTIONS)
def schedule_task(
    content_id: str, difficulty_path: str, curriculum: CurriculumParams, out_path: str
) -> str:
    """Solve the temperature table of the schedule and save ``Schedule.to_json()``."""
    from cl_core.schedule import build_schedule

    schedule = build_schedule(_files.load_npy(difficulty_path), curriculum.schedule_config())
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
    parents: list[str]
    schedule_config: dict[str, Any]
    pipeline_config: dict[str, Any]
    summary: dict[str, Any]
    dataset: DatasetParams
    dataset_fingerprint: str | None = None


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
    # The same identity as publish_curriculum: the arrays' digests are parents, so different
    # scores never share a version even if an upstream stage were not bit-reproducible.
    parents, config = curriculum_identity(
        arrays, ScheduleConfig.from_json(plan.schedule_config), plan.pipeline_config, plan.parents
    )
    title = f"Curriculum `{plan.name}` version `{compute_version(parents, config)}`"
    plots = render_report(plan, arrays, cluster_summary, schedule_json, title)
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
