"""Report text: cluster and sweep tables, the summary, warnings and skipped samples as markdown."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cl_core.report.arrays import as_1d, check_same_length
from cl_core.validation import check_finite

REPORT_FILE = "report.md"
MAX_SKIPPED_ROWS = 200
"""Skipped samples listed in ``report.md``; the manifest keeps every index."""


def cluster_table(
    assignment: np.ndarray, distances: np.ndarray, difficulty: np.ndarray | None = None
) -> list[dict[str, Any]]:
    """Per-cluster size, mean distance to the centroid and medoid (most prototypical sample).

    Parameters
    ----------
    assignment : ndarray of shape (N,)
    distances : ndarray of shape (N,)
        Distance of each sample to its assigned centroid.
    difficulty : ndarray of shape (N,), optional
        Adds the mean difficulty per cluster.

    Returns
    -------
    list of dict, one per cluster in id order, with keys ``cluster``, ``size``,
    ``mean_distance``, ``medoid_index`` (and ``mean_difficulty``). Samples with assignment -1
    (excluded from the clustering) belong to no cluster and are not counted.
    """
    groups = as_1d("assignment", assignment, np.int64)
    dist = as_1d("distances", distances)
    check_same_length(assignment=groups, distances=dist)
    check_finite("distances", dist)
    diff = None if difficulty is None else as_1d("difficulty", difficulty)
    if diff is not None:
        check_same_length(assignment=groups, difficulty=diff)
    rows: list[dict[str, Any]] = []
    for cluster in np.unique(groups[groups >= 0]):  # -1: excluded samples
        members = np.flatnonzero(groups == cluster)
        row: dict[str, Any] = {
            "cluster": int(cluster),
            "size": int(members.size),
            "mean_distance": round(float(dist[members].mean()), 6),
            "medoid_index": int(members[np.argmin(dist[members])]),
        }
        if diff is not None:
            row["mean_difficulty"] = round(float(diff[members].mean()), 6)
        rows.append(row)
    return rows


def sweep_table(
    ks: Sequence[int],
    davies_bouldin: Sequence[float],
    inertia: Sequence[float],
    chosen_k=None,
    *,
    standard_error: Sequence[float] | None = None,
    band: float | None = None,
) -> list[dict[str, Any]]:
    """Rows ``{k, davies_bouldin, inertia, chosen}`` sorted by k; with ``standard_error`` and
    ``band`` also ``se`` and ``in_band`` (index at or below the band) after the index."""
    k = as_1d("ks", ks, np.int64)
    db = as_1d("davies_bouldin", davies_bouldin)
    inert = as_1d("inertia", inertia)
    check_same_length(ks=k, davies_bouldin=db, inertia=inert)
    se = None if standard_error is None else as_1d("standard_error", standard_error)
    rows = []
    for i in np.argsort(k):
        row: dict[str, Any] = {"k": int(k[i]), "davies_bouldin": round(float(db[i]), 6)}
        if se is not None:
            row["se"] = round(float(se[i]), 6)
        if band is not None:
            row["in_band"] = bool(db[i] <= band)
        row["inertia"] = round(float(inert[i]), 6)
        row["chosen"] = bool(chosen_k is not None and int(k[i]) == int(chosen_k))
        rows.append(row)
    return rows


def k_choice_markdown(choice: Mapping[str, Any]) -> str:
    """How k was chosen, as a short paragraph and a two-column table (for ``report.md``)."""
    grid = list(choice.get("grid", ()))
    refined = list(choice.get("refined", ()))
    facts = {
        "rule": "smallest k whose mean index is within one standard error of the best, three "
        "on a flat curve (Breiman et al. 1984; Hastie et al., ESL section 7.10)",
        "best k (lowest mean)": choice.get("best_k"),
        "band (best mean + SE)": f"{float(choice.get('band', math.nan)):.4f}",
        "band width": f"{float(choice.get('band_se', 1.0)):g} SE",
        "k in band": f"{len(choice.get('in_band', ()))} of {choice.get('n_candidates')}",
        "flat curve": "yes" if choice.get("flat") else "no",
        "grid": f"{len(grid)} k: {_short_list(grid)}",
        "refinement": _short_list(refined) if refined else "none",
        "sweep sample": f"{choice.get('sample_rows')} rows; {choice.get('replicates')} "
        f"half-sample replicates of {choice.get('replicate_rows')} rows",
        "device": choice.get("device"),
    }
    return "How k was chosen:\n\n" + summary_markdown(facts)


def _short_list(values: Sequence[int]) -> str:
    shown = ", ".join(str(v) for v in values[:12])
    return shown + (f", ... ({len(values)} in all)" if len(values) > 12 else "")


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Render row dicts (same keys) as a GitHub-flavoured markdown table."""
    if not rows:
        return "_(empty)_\n"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_format_cell(row.get(key)) for key in keys) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _format_cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def summary_markdown(summary: Mapping[str, Any]) -> str:
    """A two-column markdown table of run facts (dataset, N, D, model, k and why, ...)."""
    lines = ["| field | value |", "|---|---|"]
    lines += [f"| {key} | {_format_cell(value)} |" for key, value in summary.items()]
    return "\n".join(lines) + "\n"


def _check_warnings(warnings: Sequence[str]) -> list[str]:
    if isinstance(warnings, str):
        raise TypeError(
            "warnings must be a sequence of sentences, got a single string; wrap it in a list: "
            "warnings=[text]"
        )
    texts = [text for text in warnings if text is not None]
    bad = [text for text in texts if not isinstance(text, str)]
    if bad:
        raise TypeError(f"warnings must hold strings, got {bad[0]!r}; pass sentences as str")
    return texts


def _check_skipped(skipped: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    rows = list(skipped)
    for position, row in enumerate(rows):
        if not isinstance(row, Mapping) or "index" not in row or "reason" not in row:
            raise ValueError(
                f"skipped[{position}] = {row!r} is not a skipped-sample record; pass dicts "
                f"with 'index', 'path' and 'reason' (EmbeddingStore.skipped_samples)"
            )
    return rows


def _markdown_text(value: Any) -> str:
    """One table cell: no line breaks, pipes escaped."""
    return " ".join(str(value).split()).replace("|", "\\|")


def skipped_markdown(skipped: Sequence[Mapping[str, Any]], limit: int = MAX_SKIPPED_ROWS) -> str:
    """Markdown table ``index | path | reason`` of skipped samples (at most ``limit`` rows).

    Parameters
    ----------
    skipped : sequence of mapping
        ``{"index": int, "path": str | None, "reason": str}`` per skipped sample.
    limit : int
        Rows shown; a last line says how many more there are.
    """
    rows = _check_skipped(skipped)
    lines = ["| index | path | reason |", "|---|---|---|"]
    for row in rows[:limit]:
        path = row.get("path")
        lines.append(
            f"| {int(row['index'])} | {'' if path is None else _markdown_text(path)} | "
            f"{_markdown_text(row['reason'])} |"
        )
    text = "\n".join(lines) + "\n"
    if len(rows) > limit:
        text += f"\n... and {len(rows) - limit} more (all of them are in the manifest).\n"
    return text


def render_report(
    summary: Mapping[str, Any],
    *,
    sweep_rows: Sequence[Mapping[str, Any]] = (),
    k_choice: Mapping[str, Any] | None = None,
    cluster_rows: Sequence[Mapping[str, Any]] = (),
    plots: Mapping[str, str] | None = None,
    title: str = "Curriculum report",
    warnings: Sequence[str] = (),
    skipped: Sequence[Mapping[str, Any]] = (),
    lineage: Mapping[str, Any] | None = None,
) -> str:
    """The text of ``report.md``: summary, tables and the plots embedded by relative path.

    Parameters
    ----------
    summary : mapping
        Run facts (first table).
    sweep_rows, cluster_rows : sequence of mapping
        From :func:`sweep_table` and :func:`cluster_table`.
    k_choice : mapping, optional
        How k was chosen (rule, band, grid, sample size, refinement): listed under the sweep
        table (:func:`k_choice_markdown`).
    plots : mapping of str to str, optional
        Plot key (see :data:`PLOT_FILES`) to relative path.
    title : str
        First heading.
    warnings : sequence of str
        Sentences shown under "Warnings" right after the summary (e.g.
        :func:`cl_core.cluster.edge_of_range_warning`).
    skipped : sequence of mapping
        Samples left out of the curriculum, ``{"index", "path", "reason"}`` each, listed under
        "Skipped samples". With no warnings and no skipped samples the text is exactly what it
        was before these sections existed.
    lineage : mapping, optional
        Label -> text rows of the version's lineage (``cl_core.update.lineage_rows``), shown
        under "Lineage" after the summary.
    """
    plots = dict(plots or {})
    notes = _check_warnings(warnings)
    left_out = _check_skipped(skipped)
    parts = [f"# {title}\n", summary_markdown(summary)]
    if lineage:
        parts += ["\n## Lineage\n\n", summary_markdown(lineage)]
    if notes:
        parts += ["\n## Warnings\n\n", "".join(f"- {_markdown_text(note)}\n" for note in notes)]
    if left_out:
        parts += [
            f"\n## Skipped samples\n\n{len(left_out)} sample(s) could not be loaded; they are "
            "excluded from the curriculum (probability 0).\n\n",
            skipped_markdown(left_out),
        ]
    captions = {
        "sweep": "Davies-Bouldin index and inertia versus k",
        "difficulty": "Difficulty per cluster",
        "schedule": "Schedule",
        "samples": "Samples from prototypical to hard",
    }
    if sweep_rows:
        parts += ["\n## Cluster count sweep\n", markdown_table(sweep_rows)]
        if k_choice:
            parts += ["\n", k_choice_markdown(k_choice)]
    if cluster_rows:
        parts += ["\n## Clusters\n", markdown_table(cluster_rows)]
    for key, caption in captions.items():
        if key in plots:
            parts.append(f"\n## {caption}\n\n![{caption}]({plots[key]})\n")
    return "".join(parts)
