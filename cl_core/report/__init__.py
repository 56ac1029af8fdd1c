"""Plots and summaries for a published curriculum: ``figures`` (Agg canvas, no pyplot), ``markdown`` (tables, report.md text), and here the report writer.

Every function takes plain arrays and returns a figure, a table (list of row dicts) or text; only
:func:`save_figure` and :func:`write_report` touch the disk. Figures are built with
``matplotlib.figure.Figure`` directly instead of ``pyplot`` so that nothing depends on a global
backend or global figure registry: the functions are safe to call from worker threads and from a
headless scheduler.

The report directory written by :func:`write_report` holds

- ``sweep.png``: Davies-Bouldin index and inertia versus k (auto k only),
- ``difficulty.png``: the difficulty histogram of each cluster,
- ``schedule.png``: target effective fraction and temperature versus training iteration,
- ``samples.png``: per cluster, samples ordered from most prototypical to hardest (images only),
- ``report.md``: a summary that embeds the plots by relative path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cl_core.report.figures import (
    PLOT_FILES,
    order_by_prototypicality,
    plot_difficulty_histograms,
    plot_sample_grid,
    plot_schedule,
    plot_sweep,
    sample_mosaic,
    save_figure,
)
from cl_core.report.markdown import (
    MAX_SKIPPED_ROWS,
    REPORT_FILE,
    cluster_table,
    markdown_table,
    render_report,
    skipped_markdown,
    summary_markdown,
    sweep_table,
)

__all__ = [
    "MAX_SKIPPED_ROWS",
    "PLOT_FILES",
    "REPORT_FILE",
    "cluster_table",
    "markdown_table",
    "order_by_prototypicality",
    "plot_difficulty_histograms",
    "plot_sample_grid",
    "plot_schedule",
    "plot_sweep",
    "render_report",
    "sample_mosaic",
    "save_figure",
    "schedule_curve",
    "skipped_markdown",
    "summary_markdown",
    "sweep_table",
    "write_report",
]


def schedule_curve(schedule: Any, n_points: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample ``schedule`` (a :class:`cl_core.schedule.Schedule`) over 0 .. 1.25 x warmup.

    Returns
    -------
    iterations, target_fraction, temperature : ndarrays of shape (n_points,)
    """
    warmup = max(int(schedule.config.warmup_iterations), 1)
    iterations = np.linspace(0, 1.25 * warmup, n_points).round()
    fraction = np.array([schedule.target_fraction(int(t)) for t in iterations])
    temperature = np.array([schedule.temperature_at(int(t)) for t in iterations])
    return iterations, fraction, temperature


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
    sample_images: Mapping[int, Sequence[np.ndarray]] | None = None,
    title: str = "Curriculum report",
    warnings: Sequence[str] = (),
    skipped: Sequence[Mapping[str, Any]] = (),
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
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    sweep_rows: list[dict[str, Any]] = []
    if sweep:
        ks = [point["k"] for point in sweep]
        dbs = [point["davies_bouldin"] for point in sweep]
        inertias = [point["inertia"] for point in sweep]
        sweep_rows = sweep_table(ks, dbs, inertias, chosen_k)
        written["sweep"] = save_figure(
            plot_sweep(ks, dbs, inertias, chosen_k), out / PLOT_FILES["sweep"]
        )
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
        cluster_rows=cluster_table(assignment, distances, difficulty),
        plots={name: path.name for name, path in written.items()},
        title=title,
        warnings=warnings,
        skipped=skipped,
    )
    written["report"] = out / REPORT_FILE
    written["report"].write_text(report, encoding="utf-8")
    return written
