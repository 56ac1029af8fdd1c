"""Report: plots and summaries of a published curriculum from plain arrays (Agg, no pyplot).

``figures`` builds the plots (``sweep.png``, ``difficulty.png``, ``schedule.png``, ``samples.png``),
``markdown`` the tables and text, and :func:`write_report` writes them all plus ``report.md``.
"""

from __future__ import annotations

from cl_core.report.figures import (
    PLOT_FILES,
    order_by_prototypicality,
    plot_difficulty_histograms,
    plot_sample_grid,
    plot_schedule,
    plot_sweep,
    sample_mosaic,
    save_figure,
    schedule_curve,
)
from cl_core.report.markdown import (
    MAX_SKIPPED_ROWS,
    REPORT_FILE,
    cluster_table,
    k_choice_markdown,
    markdown_table,
    render_report,
    skipped_markdown,
    summary_markdown,
    sweep_table,
)
from cl_core.report.writer import write_report

__all__ = [
    "MAX_SKIPPED_ROWS",
    "PLOT_FILES",
    "REPORT_FILE",
    "cluster_table",
    "k_choice_markdown",
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
