"""What the publish task publishes: its plan, its inputs read back from the stages' files, the
``publish_curriculum`` options, and the report (plots, report.md, sample thumbnails)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from cl_core.artifacts import compute_version, curriculum_identity
from cl_core.io import as_location
from cl_core.report import order_by_prototypicality, schedule_curve, write_report
from cl_core.schedule import Schedule, ScheduleConfig
from cl_core.store import open_store
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


def publish_inputs(plan: PublishPlan) -> dict[str, Any]:
    """What a publication is made of, read from the stages' files (arrays as published)."""
    cluster_dir = as_location(plan.cluster_dir)
    store = open_store(plan.store_path, read_only=True)
    return {
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
    k_choice = summary.get("k_choice")
    return {
        "parents": plan.parents,
        "config": plan.pipeline_config,
        "metrics": {
            "n_clusters": summary["n_clusters"],
            "chosen_by": summary["chosen_by"],
            "davies_bouldin": chosen[0]["davies_bouldin"] if chosen else None,
            **({"k_choice": k_choice} if k_choice else {}),
        },
        # sweep.json: every swept point, and how k was chosen from them (rule, band, grid...)
        "sweep": {"k_choice": k_choice, "points": summary["sweep"]}
        if k_choice
        else summary["sweep"],
        "dataset_fingerprint": plan.dataset_fingerprint,
        "sample_mask": inputs["sample_mask"],
        "schedule": inputs["schedule_json"],
    }


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
        k_choice=cluster_summary.get("k_choice"),
        sample_images=sample_images(dataset, picked),
        title=title,
        warnings=warnings,
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
        from torchvision.datasets import ImageFolder  # torch-heavy: imported on use

        paths = [path for path, _ in ImageFolder(dataset.location).samples]

        def load(index: int) -> np.ndarray:
            with Image.open(paths[index]) as image:
                rgb = image.convert("RGB")
            rgb.thumbnail((thumbnail, thumbnail))
            return np.asarray(rgb)

        return {c: [load(int(i)) for i in indices] for c, indices in picked.items()}
    return None
