"""Plots and summaries for a published curriculum (matplotlib with the Agg canvas, no pyplot).

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

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cl_core.validation import check_finite

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOT_FILES = {
    "sweep": "sweep.png",
    "difficulty": "difficulty.png",
    "schedule": "schedule.png",
    "samples": "samples.png",
}
REPORT_FILE = "report.md"
MAX_SKIPPED_ROWS = 200
"""Skipped samples listed in ``report.md``; the manifest keeps every index."""
_DPI = 110
_MAX_PANELS = 20  # beyond this a per-cluster grid becomes unreadable; the rest are summarised


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained")


def _as_1d(name: str, values: Any, dtype: type = np.float64) -> np.ndarray:
    array: np.ndarray = np.asarray(values, dtype=dtype)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}; pass one value per item")
    return array


def _check_same_length(**arrays: np.ndarray) -> None:
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise ValueError(f"length mismatch: {described}; pass arrays over the same samples")


def _panel_grid(n_panels: int) -> tuple[int, int]:
    cols = min(5, max(1, n_panels))
    return math.ceil(n_panels / cols), cols


def plot_sweep(
    ks: Sequence[int], davies_bouldin: Sequence[float], inertia: Sequence[float], chosen_k=None
) -> Figure:
    """Davies-Bouldin index (lower is better) and inertia versus the number of clusters.

    Parameters
    ----------
    ks : sequence of int, shape (K,)
        Evaluated cluster counts.
    davies_bouldin, inertia : sequence of float, shape (K,)
        The sweep metrics of each k.
    chosen_k : int, optional
        Marked with a vertical line.

    Returns
    -------
    matplotlib.figure.Figure
    """
    k = _as_1d("ks", ks, np.int64)
    db = _as_1d("davies_bouldin", davies_bouldin)
    inert = _as_1d("inertia", inertia)
    _check_same_length(ks=k, davies_bouldin=db, inertia=inert)
    if k.size == 0:
        raise ValueError("ks is empty; a sweep plot needs at least one evaluated k")
    order = np.argsort(k)
    fig = _new_figure(6.4, 3.6)
    ax_db = fig.add_subplot(1, 1, 1)
    ax_db.plot(k[order], db[order], "o-", color="tab:blue", label="Davies-Bouldin")
    ax_db.set_xlabel("number of clusters k")
    ax_db.set_ylabel("Davies-Bouldin index (lower is better)", color="tab:blue")
    ax_in = ax_db.twinx()
    ax_in.plot(k[order], inert[order], "s--", color="tab:orange", label="inertia")
    ax_in.set_ylabel("inertia", color="tab:orange")
    if chosen_k is not None:
        ax_db.axvline(int(chosen_k), color="grey", linestyle=":", label=f"chosen k = {chosen_k}")
        ax_db.legend(loc="upper right")
    ax_db.set_title("Cluster count sweep")
    return fig


def plot_difficulty_histograms(
    difficulty: np.ndarray, assignment: np.ndarray, *, bins: int = 20
) -> Figure:
    """One histogram of difficulty per cluster (the first 20 clusters by id).

    Parameters
    ----------
    difficulty : ndarray of shape (N,)
        Per-sample difficulty in [0, 1].
    assignment : ndarray of shape (N,)
        Cluster id of each sample.
    bins : int
        Histogram bins over [0, 1].
    """
    diff = _as_1d("difficulty", difficulty)
    groups = _as_1d("assignment", assignment, np.int64)
    _check_same_length(difficulty=diff, assignment=groups)
    check_finite("difficulty", diff)
    clusters = np.unique(groups[groups >= 0])[:_MAX_PANELS]  # -1: excluded samples
    if clusters.size == 0:
        raise ValueError("assignment has no sample in a cluster (all -1); nothing to plot")
    rows, cols = _panel_grid(len(clusters))
    fig = _new_figure(2.2 * cols, 1.8 * rows + 0.4)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # One bincount for all clusters, one filled step artist per panel: far cheaper to render
    # than ``Axes.hist``'s bar patches when there are many clusters.
    cluster_index = np.searchsorted(clusters, groups)
    in_panels = (cluster_index < len(clusters)) & (
        clusters[np.minimum(cluster_index, len(clusters) - 1)] == groups
    )
    bin_index = np.clip((diff * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(
        cluster_index[in_panels] * bins + bin_index[in_panels], minlength=len(clusters) * bins
    ).reshape(len(clusters), bins)
    for panel, cluster in enumerate(clusters):
        ax = fig.add_subplot(rows, cols, panel + 1)
        ax.stairs(counts[panel], edges, fill=True, color="tab:green")
        ax.set_title(f"cluster {cluster} (n={int(counts[panel].sum())})", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle("Difficulty per cluster (0 = prototype, 1 = hardest)")
    return fig


def plot_schedule(
    iterations: np.ndarray, target_fraction: np.ndarray, temperature: np.ndarray
) -> Figure:
    """Target effective fraction and sampling temperature versus training iteration.

    Parameters
    ----------
    iterations : ndarray of shape (M,)
    target_fraction : ndarray of shape (M,)
        Pacing target f(t) in (0, 1].
    temperature : ndarray of shape (M,)
        T(t); ``inf`` (uniform sampling) is drawn as a gap.
    """
    its = _as_1d("iterations", iterations)
    frac = _as_1d("target_fraction", target_fraction)
    temp = _as_1d("temperature", temperature)
    _check_same_length(iterations=its, target_fraction=frac, temperature=temp)
    fig = _new_figure(6.4, 3.6)
    ax_f = fig.add_subplot(1, 1, 1)
    ax_f.plot(its, frac, color="tab:blue")
    ax_f.set_ylim(0.0, 1.05)
    ax_f.set_xlabel("training iteration")
    ax_f.set_ylabel("target effective fraction", color="tab:blue")
    ax_t = ax_f.twinx()
    finite = np.where(np.isfinite(temp), temp, np.nan)  # uniform (T = inf) has no finite value
    ax_t.plot(its, finite, color="tab:red")
    ax_t.set_yscale("log")
    ax_t.set_ylabel("temperature T (log; gap = uniform)", color="tab:red")
    ax_f.set_title("Curriculum schedule")
    return fig


def order_by_prototypicality(
    difficulty: np.ndarray, assignment: np.ndarray, per_cluster: int
) -> dict[int, np.ndarray]:
    """Pick, per cluster, ``per_cluster`` indices evenly spread from easiest to hardest.

    Returns
    -------
    dict mapping cluster id to an int64 array of sample indices, ascending in difficulty; its
    first entry is the cluster's most prototypical sample and its last the hardest.
    """
    diff = _as_1d("difficulty", difficulty)
    groups = _as_1d("assignment", assignment, np.int64)
    _check_same_length(difficulty=diff, assignment=groups)
    if per_cluster < 1:
        raise ValueError(f"per_cluster must be >= 1, got {per_cluster}")
    picked: dict[int, np.ndarray] = {}
    for cluster in np.unique(groups[groups >= 0]):  # -1: excluded samples
        members = np.flatnonzero(groups == cluster)
        ranked = members[np.argsort(diff[members], kind="stable")]
        positions = np.unique(np.linspace(0, ranked.size - 1, min(per_cluster, ranked.size)))
        picked[int(cluster)] = ranked[positions.round().astype(np.int64)]
    return picked


def plot_sample_grid(images: Mapping[int, Sequence[np.ndarray]]) -> Figure:
    """A row of images per cluster, from the most prototypical (left) to the hardest (right).

    Parameters
    ----------
    images : mapping of cluster id to a sequence of images
        Each image is an array of shape (H, W) (grey) or (H, W, 3) (RGB), float in [0, 1] or
        uint8. Usually the images of :func:`order_by_prototypicality`'s indices.
    """
    clusters = sorted(images)[:_MAX_PANELS]
    if not clusters:
        raise ValueError("images is empty; pass at least one cluster with one image")
    cols = max(len(images[c]) for c in clusters)
    fig = _new_figure(1.0 * cols + 0.8, 1.0 * len(clusters) + 0.6)
    for row, cluster in enumerate(clusters):
        for col, image in enumerate(images[cluster]):
            ax = fig.add_subplot(len(clusters), cols, row * cols + col + 1)
            pixels = np.asarray(image)
            ax.imshow(pixels, cmap="gray_r" if pixels.ndim == 2 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(f"c{cluster}", fontsize=8)
    fig.suptitle("Per cluster: most prototypical (left) to hardest (right)")
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG to ``path`` (parents created) and release its memory."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, format="png")
    fig.clear()
    return target


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
    groups = _as_1d("assignment", assignment, np.int64)
    dist = _as_1d("distances", distances)
    _check_same_length(assignment=groups, distances=dist)
    check_finite("distances", dist)
    diff = None if difficulty is None else _as_1d("difficulty", difficulty)
    if diff is not None:
        _check_same_length(assignment=groups, difficulty=diff)
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
    ks: Sequence[int], davies_bouldin: Sequence[float], inertia: Sequence[float], chosen_k=None
) -> list[dict[str, Any]]:
    """Rows ``{k, davies_bouldin, inertia, chosen}`` sorted by k."""
    k = _as_1d("ks", ks, np.int64)
    db = _as_1d("davies_bouldin", davies_bouldin)
    inert = _as_1d("inertia", inertia)
    _check_same_length(ks=k, davies_bouldin=db, inertia=inert)
    return [
        {
            "k": int(k[i]),
            "davies_bouldin": round(float(db[i]), 6),
            "inertia": round(float(inert[i]), 6),
            "chosen": bool(chosen_k is not None and int(k[i]) == int(chosen_k)),
        }
        for i in np.argsort(k)
    ]


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
    cluster_rows: Sequence[Mapping[str, Any]] = (),
    plots: Mapping[str, str] | None = None,
    title: str = "Curriculum report",
    warnings: Sequence[str] = (),
    skipped: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The text of ``report.md``: summary, tables and the plots embedded by relative path.

    Parameters
    ----------
    summary : mapping
        Run facts (first table).
    sweep_rows, cluster_rows : sequence of mapping
        From :func:`sweep_table` and :func:`cluster_table`.
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
    """
    plots = dict(plots or {})
    notes = _check_warnings(warnings)
    left_out = _check_skipped(skipped)
    parts = [f"# {title}\n", summary_markdown(summary)]
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
    if cluster_rows:
        parts += ["\n## Clusters\n", markdown_table(cluster_rows)]
    for key, caption in captions.items():
        if key in plots:
            parts.append(f"\n## {caption}\n\n![{caption}]({plots[key]})\n")
    return "".join(parts)


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
