"""What the publish task publishes: its plan, its inputs read back from the stages' files, the
``publish_curriculum`` options, and the report (plots, report.md, sample thumbnails)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from cl_core.artifacts import compute_version, curriculum_identity, load_json
from cl_core.difficulty import DifficultyScale
from cl_core.io import as_location
from cl_core.report import order_by_prototypicality, schedule_curve, write_report
from cl_core.schedule import Schedule, ScheduleConfig
from cl_core.store import open_store
from cl_core.update import (
    DISTANCES_FILE,
    STATE_FILE,
    embedding_identity,
    lineage_rows,
    refit_state,
    skipped_paths,
    version_files,
)
from flows import files
from flows.done import CLUSTER_FILE, usable_rows
from flows.params import DatasetParams


class PublishPlan(BaseModel):
    """Everything the publish task reads (paths) and records (config, parents, summary)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

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
    lineage: dict[str, Any] | None = None  # cl_core.update lineage of this version
    scale_path: str | None = None  # the difficulty's per-cluster scale (DifficultyScale JSON)
    state_from: str | None = None  # previous version whose normalisation the rows were assigned in
    normalize: str = "standard"  # the clustering's feature normalisation


def publish_inputs(plan: PublishPlan) -> dict[str, Any]:
    """What a publication is made of, read from the stages' files (arrays as published)."""
    cluster_dir = as_location(plan.cluster_dir)
    store = open_store(plan.store_path, read_only=True)
    distances = files.load_npy(cluster_dir / "distances.npy").astype(np.float32)
    return {
        "distances": distances,
        "keys": store.file_records(),
        "state": _refit_state(plan, store),
        "skipped_paths": skipped_paths(store),
        "arrays": {
            "difficulty": files.load_npy(plan.difficulty_path).astype(np.float32),
            "assignment": files.load_npy(cluster_dir / "assignment.npy").astype(np.int32),
            "centroids": files.load_npy(cluster_dir / "centroids.npy").astype(np.float32),
        },
        "cluster_summary": files.load_json(cluster_dir / CLUSTER_FILE),
        "schedule_json": files.load_json(plan.schedule_path),
        "sample_mask": usable_rows(store),
        "skipped": [dict(sample) for sample in store.skipped_samples],
    }


def publish_options(plan: PublishPlan, inputs: dict[str, Any]) -> dict[str, Any]:
    """``publish_curriculum``'s keyword arguments besides the arrays and the report files."""
    summary = inputs["cluster_summary"]
    chosen = [p for p in summary["sweep"] if p["k"] == summary["n_clusters"]]
    return {
        "parents": plan.parents,
        "config": plan.pipeline_config,
        "metrics": {
            "n_clusters": summary["n_clusters"],
            "chosen_by": summary["chosen_by"],
            "davies_bouldin": chosen[0]["davies_bouldin"] if chosen else None,
        },
        "sweep": summary["sweep"],
        "dataset_fingerprint": plan.dataset_fingerprint,
        "sample_mask": inputs["sample_mask"],
        "schedule": inputs["schedule_json"],
        "json_files": version_files(inputs["keys"], inputs["state"]),
        "extra_arrays": {DISTANCES_FILE: inputs["distances"]},
        "lineage": plan.lineage,
        "excluded_paths": inputs["skipped_paths"],
    }


def _refit_state(plan: PublishPlan, store: Any) -> dict[str, Any] | None:
    """What the next update needs besides the arrays: the feature normalisation the rows were
    clustered in (the previous version's when they were assigned to its centroids), the
    difficulty scale, the embedding configuration."""
    if plan.scale_path is None:
        return None
    scale = DifficultyScale.from_json(files.load_json(plan.scale_path))
    if plan.state_from is not None:
        previous = load_json(plan.state_from, STATE_FILE)
        normalize, mean, std = (previous[k] for k in ("normalize", "feature_mean", "feature_std"))
    else:
        normalize, mean, std = plan.normalize, store.feature_mean, store.feature_std
    return refit_state(scale, normalize, mean, std, embedding_identity(store.attrs))


def publish_receipt(plan: PublishPlan, version_dir: Any, plots: dict[str, Path]) -> dict:
    """What the publish task records and returns: the version, its path and its report."""
    return {
        "artifact_path": str(version_dir),
        "version": version_dir.name,
        "name": plan.name,
        "report_path": str(version_dir / "report.md"),
        "files": sorted(path.name for path in plots.values()),
    }


def report_title(plan: PublishPlan, inputs: dict[str, Any]) -> str:
    """The report's title names the version ``publish_curriculum`` is about to publish."""
    identity = curriculum_identity(
        inputs["arrays"],
        ScheduleConfig.from_json(plan.schedule_config),
        plan.pipeline_config,
        plan.parents,
        sample_mask=inputs["sample_mask"],
    )
    return f"Curriculum `{plan.name}` version `{compute_version(*identity)}`"


def report_args(plan: PublishPlan, inputs: dict[str, Any]) -> dict[str, Any]:
    """:func:`render_report`'s keyword arguments besides the title."""
    return {
        "dataset": plan.dataset,
        "summary": plan.summary,
        "arrays": inputs["arrays"],
        "cluster_dir": plan.cluster_dir,
        "cluster_summary": inputs["cluster_summary"],
        "schedule_json": inputs["schedule_json"],
        "warnings": plan.warnings,
        "skipped": inputs["skipped"],
        "lineage": lineage_rows(plan.lineage),
    }


def render_report(
    report_dir: str,
    *,
    dataset: DatasetParams,
    summary: dict[str, Any],
    arrays: dict[str, np.ndarray],
    cluster_dir: str,
    cluster_summary: dict[str, Any],
    schedule_json: dict[str, Any],
    title: str,
    warnings: list[str],
    skipped: list[dict[str, Any]],
    lineage: dict[str, str] | None = None,
) -> dict[str, Path]:
    """Write the plots and report.md of one publication into ``report_dir``."""
    difficulty, assignment = arrays["difficulty"], arrays["assignment"]
    picked = order_by_prototypicality(difficulty, assignment, per_cluster=8)
    return write_report(
        report_dir,
        summary=summary,
        difficulty=difficulty,
        assignment=assignment,
        distances=files.load_npy(as_location(cluster_dir) / "distances.npy"),
        schedule_points=schedule_curve(Schedule.from_json(schedule_json)),
        sweep=cluster_summary["sweep"] if cluster_summary["chosen_by"] == "davies_bouldin" else (),
        chosen_k=cluster_summary["n_clusters"],
        sample_images=sample_images(dataset, picked),
        title=title,
        warnings=warnings,
        skipped=skipped,
        lineage=lineage,
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
        from torchvision.datasets import ImageFolder  # torch-heavy: imported on use

        paths = [path for path, _ in ImageFolder(dataset.location).samples]

        def load(index: int) -> np.ndarray:
            with Image.open(paths[index]) as image:
                rgb = image.convert("RGB")
            rgb.thumbnail((thumbnail, thumbnail))
            return np.asarray(rgb)

        return {c: [load(int(i)) for i in indices] for c, indices in picked.items()}
    return None
