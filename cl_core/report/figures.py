"""Report figures: sweep, difficulty histograms, schedule, sample mosaic (Agg canvas, no pyplot).

Figures are built with ``matplotlib.figure.Figure`` directly instead of ``pyplot`` so that nothing
depends on a global backend or global figure registry: the functions are safe to call from worker
threads and from a headless scheduler. Only :func:`save_figure` touches the disk.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cl_core.report.arrays import as_1d, check_same_length
from cl_core.validation import check_finite

if TYPE_CHECKING:
    from matplotlib.figure import Figure
PLOT_FILES = {
    "sweep": "sweep.png",
    "difficulty": "difficulty.png",
    "schedule": "schedule.png",
    "samples": "samples.png",
}
_DPI = 110
_MAX_PANELS = 20  # beyond this a per-cluster grid becomes unreadable; the rest are summarised
_TWIN_AXES_MARGINS = {"left": 0.75, "right": 0.75, "bottom": 0.5, "top": 0.35}  # inches


def _new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches, laid out by :func:`_fixed_layout`.

    No layout engine: constrained layout measures every tick label of every axes when the
    figure is saved (about 0.1 s per small panel on a 2-core machine).
    """
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI)


def _fixed_layout(
    fig: Figure, title: str, *, left: float, bottom: float, top: float, right: float = 0.1
) -> None:
    """Margins in inches (instead of a layout engine) and ``title`` centred in the top one."""
    width, height = fig.get_size_inches()
    fig.subplots_adjust(
        left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height
    )
    fig.suptitle(title, y=1 - 0.08 / height, verticalalignment="top")


def _panel_grid(n_panels: int) -> tuple[int, int]:
    cols = min(5, max(1, n_panels))
    return math.ceil(n_panels / cols), cols


def plot_sweep(
    ks: Sequence[int],
    davies_bouldin: Sequence[float],
    inertia: Sequence[float],
    chosen_k=None,
    *,
    standard_error: Sequence[float] | None = None,
    band: float | None = None,
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
    standard_error : sequence of float, shape (K,), optional
        Standard error of each index (error bars; NaN: none).
    band : float, optional
        The band (best mean + one SE, three on a flat curve), shaded below that index value.

    Returns
    -------
    matplotlib.figure.Figure
    """
    k = as_1d("ks", ks, np.int64)
    db = as_1d("davies_bouldin", davies_bouldin)
    inert = as_1d("inertia", inertia)
    check_same_length(ks=k, davies_bouldin=db, inertia=inert)
    if k.size == 0:
        raise ValueError("ks is empty; a sweep plot needs at least one evaluated k")
    from matplotlib.ticker import MaxNLocator

    order = np.argsort(k)
    fig = _new_figure(6.4, 3.6)
    _fixed_layout(fig, "Cluster count sweep", **_TWIN_AXES_MARGINS)
    ax_db = fig.add_subplot(1, 1, 1)
    if standard_error is not None:
        se = np.nan_to_num(as_1d("standard_error", standard_error), nan=0.0)
        check_same_length(ks=k, standard_error=se)
        ax_db.errorbar(
            k[order], db[order], yerr=se[order], fmt="o-", color="tab:blue", capsize=2,
            label="Davies-Bouldin (mean ± SE)",
        )  # fmt: skip
    else:
        ax_db.plot(k[order], db[order], "o-", color="tab:blue", label="Davies-Bouldin")
    if band is not None:
        low = float(np.nanmin(db))
        ax_db.axhspan(low, float(band), color="tab:green", alpha=0.2, label="standard-error band")
    if k.max() / max(k.min(), 1) > 20:
        ax_db.set_xscale("log")
    ax_db.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_db.set_xlabel("number of clusters k")
    ax_db.set_ylabel("Davies-Bouldin index (lower is better)", color="tab:blue")
    ax_in = ax_db.twinx()
    ax_in.plot(k[order], inert[order], "s--", color="tab:orange", label="inertia")
    ax_in.set_ylabel("inertia", color="tab:orange")
    if chosen_k is not None:
        ax_db.axvline(int(chosen_k), color="grey", linestyle=":", label=f"chosen k = {chosen_k}")
    if chosen_k is not None or band is not None:
        ax_db.legend(loc="upper right", fontsize="small")
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
    from matplotlib.ticker import MaxNLocator

    diff = as_1d("difficulty", difficulty)
    groups = as_1d("assignment", assignment, np.int64)
    check_same_length(difficulty=diff, assignment=groups)
    check_finite("difficulty", diff)
    clusters = np.unique(groups[groups >= 0])[:_MAX_PANELS]  # -1: excluded samples
    if clusters.size == 0:
        raise ValueError("assignment has no sample in a cluster (all -1); nothing to plot")
    rows, cols = _panel_grid(len(clusters))
    fig = _new_figure(2.2 * cols, 1.8 * rows + 0.4)
    _fixed_layout(
        fig, "Difficulty per cluster (0 = prototype, 1 = hardest)", left=0.4, bottom=0.3, top=0.6
    )
    fig.subplots_adjust(wspace=0.25, hspace=0.45)
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
        ax.set_xticks([0.0, 0.5, 1.0])
        ax.yaxis.set_major_locator(MaxNLocator(4, integer=True))
        ax.tick_params(labelsize=7)
    return fig


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
    its = as_1d("iterations", iterations)
    frac = as_1d("target_fraction", target_fraction)
    temp = as_1d("temperature", temperature)
    check_same_length(iterations=its, target_fraction=frac, temperature=temp)
    fig = _new_figure(6.4, 3.6)
    _fixed_layout(fig, "Curriculum schedule", **_TWIN_AXES_MARGINS)
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
    diff = as_1d("difficulty", difficulty)
    groups = as_1d("assignment", assignment, np.int64)
    check_same_length(difficulty=diff, assignment=groups)
    if per_cluster < 1:
        raise ValueError(f"per_cluster must be >= 1, got {per_cluster}")
    picked: dict[int, np.ndarray] = {}
    for cluster in np.unique(groups[groups >= 0]):  # -1: excluded samples
        members = np.flatnonzero(groups == cluster)
        ranked = members[np.argsort(diff[members], kind="stable")]
        positions = np.unique(np.linspace(0, ranked.size - 1, min(per_cluster, ranked.size)))
        picked[int(cluster)] = ranked[positions.round().astype(np.int64)]
    return picked


def _tile(image: Any) -> np.ndarray:
    """One image as float RGB in [0, 1], drawn as ``imshow`` would draw it alone.

    Grey (H, W) images are scaled to their own min..max and shown dark-on-light (``gray_r``);
    RGB(A) uint8 images are divided by 255, float ones clipped to [0, 1]; alpha is dropped.
    """
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        grey = pixels.astype(np.float64)
        low, high = float(np.nanmin(grey)), float(np.nanmax(grey))
        scaled = (grey - low) / (high - low) if high > low else np.zeros_like(grey)
        return np.repeat(1.0 - np.nan_to_num(scaled)[:, :, None], 3, axis=2)
    if pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        rgb = pixels[:, :, :3]
        if np.issubdtype(rgb.dtype, np.integer):
            return rgb.astype(np.float64) / 255.0
        return np.clip(np.nan_to_num(rgb.astype(np.float64)), 0.0, 1.0)
    raise ValueError(f"an image has shape {pixels.shape}; pass (H, W) grey or (H, W, 3) RGB arrays")


def sample_mosaic(rows: Sequence[Sequence[Any]], gap: int | None = None) -> np.ndarray:
    """Tile images into one RGB array: one row per sequence, each image centred in its cell.

    Parameters
    ----------
    rows : sequence of sequences of images
        Images as accepted by :func:`plot_sample_grid`; rows may differ in length (missing
        cells stay blank) and images in size (cells fit the largest).
    gap : int, optional
        Pixels of light grey between cells; about 1/16 of a cell (at least 1) by default.

    Returns
    -------
    ndarray of shape (rows * (h + gap) + gap, cols * (w + gap) + gap, 3), float in [0, 1]
    """
    tiles = [[_tile(image) for image in row] for row in rows]
    cells = [tile.shape[:2] for row in tiles for tile in row]
    if not cells:
        raise ValueError("no images to tile; pass at least one image")
    height, width = (max(sizes) for sizes in zip(*cells, strict=True))
    gap = max(1, max(height, width) // 16) if gap is None else gap
    cols = max(len(row) for row in tiles)
    mosaic = np.full((len(tiles) * (height + gap) + gap, cols * (width + gap) + gap, 3), 0.8)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            top = gap + r * (height + gap) + (height - tile.shape[0]) // 2
            left = gap + c * (width + gap) + (width - tile.shape[1]) // 2
            mosaic[top : top + tile.shape[0], left : left + tile.shape[1]] = tile
    return mosaic


def plot_sample_grid(images: Mapping[int, Sequence[np.ndarray]]) -> Figure:
    """A row of images per cluster, from the most prototypical (left) to the hardest (right).

    The images are tiled into one picture (:func:`sample_mosaic`) drawn on a single axes: a
    grid of one axes per image takes seconds to lay out and draw for 20 clusters x 8 samples.

    Parameters
    ----------
    images : mapping of cluster id to a sequence of images
        Each image is an array of shape (H, W) (grey) or (H, W, 3) (RGB), float in [0, 1] or
        uint8. Usually the images of :func:`order_by_prototypicality`'s indices.
    """
    clusters = sorted(images)[:_MAX_PANELS]
    if not clusters or not any(len(images[c]) for c in clusters):
        raise ValueError("images is empty; pass at least one cluster with one image")
    mosaic = sample_mosaic([images[c] for c in clusters])
    cols = max(len(images[c]) for c in clusters)
    width = 0.8 * cols  # inches of pictures; the height keeps the mosaic's aspect
    height = width * mosaic.shape[0] / mosaic.shape[1]
    fig = _new_figure(width + 0.55, height + 0.5)
    _fixed_layout(
        fig,
        "Per cluster: most prototypical (left) to hardest (right)",
        left=0.45,
        bottom=0.1,
        top=0.4,
        right=0.1,
    )
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(mosaic, interpolation="nearest")
    row_height = mosaic.shape[0] / len(clusters)
    ax.set_yticks((np.arange(len(clusters)) + 0.5) * row_height, [f"c{c}" for c in clusters])
    ax.tick_params(axis="y", length=0, labelsize=8)
    ax.set_xticks([])
    return fig


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG to ``path`` (parents created).

    The figure is not cleared afterwards: ``Figure.clear`` rebuilds every axes' ticks (longer
    than drawing a many-panel figure), and a figure made without pyplot is freed with its last
    reference anyway.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, format="png")
    return target
