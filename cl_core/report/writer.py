"""The report directory: every plot plus ``report.md`` (:func:`write_report`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cl_core.report.figures import (
    PLOT_FILES,
    plot_difficulty_histograms,
    plot_sample_grid,
    plot_schedule,
    plot_sweep,
    save_figure,
)
from cl_core.report.markdown import REPORT_FILE, cluster_table, render_report, sweep_table


def write_report(
    directory: str | Path,
    *,
    summary: Mapping[str, Any],
    difficulty: np.ndarray,
    assignment: np.ndarray,
    distances: np.ndarray,
    schedule_points: tuple[np.ndarray, np.ndarray, np.ndarray],
    sweep: Sequence[Mapping[str, Any]] = (),
    chosen_k: int | None = None,
    k_choice: Mapping[str, Any] | None = None,
    sample_images: Mapping[int, Sequence[np.ndarray]] | None = None,
    title: str = "Curriculum report",
    warnings: Sequence[str] = (),
    skipped: Sequence[Mapping[str, Any]] = (),
    lineage: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write every plot and ``report.md`` into ``directory``; return ``{name: path}``.

    Parameters
    ----------
    directory : path
        Created if missing; existing files of the same names are replaced.
    summary : mapping
        Run facts shown at the top of the report.
    difficulty, assignment, distances : ndarrays of shape (N,)
    schedule_points : (iterations, target_fraction, temperature)
        As returned by :func:`schedule_curve`.
    sweep : sequence of mappings with keys ``k``, ``davies_bouldin``, ``inertia``
        Empty when k was given explicitly; the sweep plot is then left out.
    chosen_k : int, optional
    k_choice : mapping, optional
        How k was chosen (``ClusterResult.k_choice``: the rule, the band, the grid, the sample
        size, the refinement): the band is shaded in the sweep plot and marked in its table,
        and the facts are listed under the table.
    sample_images : mapping of cluster id to images, optional
        For image datasets; see :func:`plot_sample_grid`.
    title : str
        First heading of ``report.md``.
    warnings : sequence of str
        Sentences shown under "Warnings" (e.g. :func:`cl_core.cluster.edge_of_range_warning`).
    skipped : sequence of mapping
        ``{"index", "path", "reason"}`` of each sample left out (``EmbeddingStore.skipped_samples``),
        listed under "Skipped samples". Samples with ``assignment`` -1 (excluded from the
        clustering) are left out of the per-cluster plots and table.
    lineage : mapping, optional
        Label -> text rows of the version's lineage, shown under "Lineage".
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    sweep_rows: list[dict[str, Any]] = []
    if sweep:
        ks = [point["k"] for point in sweep]
        dbs = [point["davies_bouldin"] for point in sweep]
        inertias = [point["inertia"] for point in sweep]
        ses: list[float] | None = [_nan_if_none(p.get("davies_bouldin_se")) for p in sweep]
        if all(math.isnan(se) for se in ses or ()):
            ses = None  # no replicates: no error bars, no column
        band = None if not k_choice else k_choice.get("band")
        sweep_rows = sweep_table(ks, dbs, inertias, chosen_k, standard_error=ses, band=band)
        figure = plot_sweep(ks, dbs, inertias, chosen_k, standard_error=ses, band=band)
        written["sweep"] = save_figure(figure, out / PLOT_FILES["sweep"])
    written["difficulty"] = save_figure(
        plot_difficulty_histograms(difficulty, assignment), out / PLOT_FILES["difficulty"]
    )
    written["schedule"] = save_figure(plot_schedule(*schedule_points), out / PLOT_FILES["schedule"])
    if sample_images:
        written["samples"] = save_figure(
            plot_sample_grid(sample_images), out / PLOT_FILES["samples"]
        )
    report = render_report(
        summary,
        sweep_rows=sweep_rows,
        k_choice=k_choice,
        cluster_rows=cluster_table(assignment, distances, difficulty),
        plots={name: path.name for name, path in written.items()},
        title=title,
        warnings=warnings,
        skipped=skipped,
        lineage=lineage,
    )
    written["report"] = out / REPORT_FILE
    written["report"].write_text(report, encoding="utf-8")
    return written


def _nan_if_none(value: Any) -> float:
    return math.nan if value is None else float(value)
