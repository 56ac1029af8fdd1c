"""cl_core.report: plots are real PNGs, tables are right, report.md embeds what was written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cl_core import report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def clustered(rng: np.random.Generator) -> dict[str, np.ndarray]:
    assignment = np.repeat(np.arange(3), [5, 8, 7]).astype(np.int32)
    distances = rng.random(assignment.size).astype(np.float32)
    difficulty = np.clip(distances / distances.max(), 0, 1)
    return {"assignment": assignment, "distances": distances, "difficulty": difficulty}


def test_cluster_table_sizes_means_and_medoids(clustered: dict[str, np.ndarray]) -> None:
    rows = report.cluster_table(clustered["assignment"], clustered["distances"])
    assert [row["size"] for row in rows] == [5, 8, 7]
    for row in rows:
        members = np.flatnonzero(clustered["assignment"] == row["cluster"])
        assert row["medoid_index"] == members[np.argmin(clustered["distances"][members])]
        assert row["mean_distance"] == pytest.approx(clustered["distances"][members].mean(), 1e-5)


def test_cluster_table_rejects_length_mismatch() -> None:
    with pytest.raises(ValueError, match="assignment has 3, distances has 2"):
        report.cluster_table(np.zeros(3), np.zeros(2))


def test_sweep_table_is_sorted_and_marks_the_chosen_k() -> None:
    rows = report.sweep_table([4, 2, 3], [0.9, 1.2, 0.5], [10.0, 30.0, 20.0], chosen_k=3)
    assert [row["k"] for row in rows] == [2, 3, 4]
    assert [row["chosen"] for row in rows] == [False, True, False]
    assert rows[1]["davies_bouldin"] == pytest.approx(0.5)


def test_order_by_prototypicality_runs_easy_to_hard(clustered: dict[str, np.ndarray]) -> None:
    picked = report.order_by_prototypicality(
        clustered["difficulty"], clustered["assignment"], per_cluster=4
    )
    assert sorted(picked) == [0, 1, 2]
    for cluster, indices in picked.items():
        assert len(indices) == 4
        assert np.all(clustered["assignment"][indices] == cluster)
        values = clustered["difficulty"][indices]
        assert np.all(np.diff(values) >= 0)
        members = clustered["assignment"] == cluster
        assert values[0] == clustered["difficulty"][members].min()
        assert values[-1] == clustered["difficulty"][members].max()


def test_markdown_table_renders_header_and_rows() -> None:
    text = report.markdown_table([{"k": 2, "db": 0.123456}, {"k": 3, "db": 1.5}])
    lines = text.strip().splitlines()
    assert lines[0] == "| k | db |"
    assert lines[2] == "| 2 | 0.1235 |"
    assert len(lines) == 4


def test_schedule_plot_rejects_mismatched_curves() -> None:
    with pytest.raises(ValueError, match="length mismatch"):
        report.plot_schedule(np.arange(3), np.ones(3), np.ones(2))


def test_difficulty_histogram_rejects_nan(clustered: dict[str, np.ndarray]) -> None:
    bad = clustered["difficulty"].copy()
    bad[4] = np.nan
    with pytest.raises(ValueError, match="first at index 4"):
        report.plot_difficulty_histograms(bad, clustered["assignment"])


def test_write_report_writes_pngs_and_markdown(
    tmp_path: Path, clustered: dict[str, np.ndarray], rng: np.random.Generator
) -> None:
    iterations = np.arange(0, 100, 10.0)
    fraction = np.minimum(0.3 + iterations / 80, 1.0)
    temperature = np.where(fraction < 1.0, 1.0 / (1.0 - fraction + 1e-3), np.inf)
    images = {c: [rng.random((8, 8)) for _ in range(3)] for c in range(3)}
    sweep = [
        {"k": 2, "davies_bouldin": 1.1, "inertia": 40.0},
        {"k": 3, "davies_bouldin": 0.7, "inertia": 25.0},
    ]
    written = report.write_report(
        tmp_path / "out",
        summary={"dataset": "synthetic", "N": 20, "k": 3},
        difficulty=clustered["difficulty"],
        assignment=clustered["assignment"],
        distances=clustered["distances"],
        schedule_points=(iterations, fraction, temperature),
        sweep=sweep,
        chosen_k=3,
        sample_images=images,
    )
    assert set(written) == {"sweep", "difficulty", "schedule", "samples", "report"}
    for name in ("sweep", "difficulty", "schedule", "samples"):
        assert written[name].read_bytes()[:8] == PNG_MAGIC, name
        assert written[name].stat().st_size > 2000, name
    text = written["report"].read_text()
    for name in ("sweep.png", "difficulty.png", "schedule.png", "samples.png"):
        assert f"]({name})" in text
    assert "| dataset | synthetic |" in text
    assert "| 3 | 0.7 | 25 | True |" in text


def test_write_report_without_sweep_or_images_omits_those_plots(
    tmp_path: Path, clustered: dict[str, np.ndarray]
) -> None:
    points = (np.arange(5.0), np.full(5, 0.5), np.full(5, 2.0))
    written = report.write_report(
        tmp_path,
        summary={"N": 20},
        difficulty=clustered["difficulty"],
        assignment=clustered["assignment"],
        distances=clustered["distances"],
        schedule_points=points,
    )
    assert set(written) == {"difficulty", "schedule", "report"}
    assert "sweep.png" not in written["report"].read_text()
    assert not (tmp_path / "sweep.png").exists()


def test_difficulty_histograms_count_every_member(clustered: dict[str, np.ndarray]) -> None:
    fig = report.plot_difficulty_histograms(clustered["difficulty"], clustered["assignment"])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["cluster 0 (n=5)", "cluster 1 (n=8)", "cluster 2 (n=7)"]
    heights = [ax.patches[0].get_data().values.sum() for ax in fig.axes]
    assert heights == [5, 8, 7]


def test_sample_mosaic_tiles_rows_in_order_with_grey_inverted_and_rgb_scaled() -> None:
    grey = np.array([[0.0, 16.0], [8.0, 16.0]])  # imshow-style autoscale, gray_r: high = dark
    rgb = np.full((2, 2, 3), 255, dtype=np.uint8)
    mosaic = report.sample_mosaic([[grey, rgb], [rgb]], gap=1)
    assert mosaic.shape == (2 * 3 + 1, 2 * 3 + 1, 3)
    np.testing.assert_allclose(mosaic[1:3, 1:3, 0], [[1.0, 0.0], [0.5, 0.0]])
    np.testing.assert_allclose(mosaic[1:3, 4:6], 1.0)  # white uint8 image
    np.testing.assert_allclose(mosaic[4:6, 4:6], 0.8)  # missing cell: background
    assert mosaic[0, 0, 0] == pytest.approx(0.8)  # gap


def test_sample_mosaic_centres_smaller_images_in_the_largest_cell() -> None:
    big = np.zeros((4, 4, 3))
    small = np.zeros((2, 4, 3))
    mosaic = report.sample_mosaic([[big, small]], gap=0)
    assert mosaic.shape == (4, 8, 3)
    np.testing.assert_allclose(mosaic[1:3, 4:8], 0.0)
    np.testing.assert_allclose(mosaic[[0, 3], 4:8], 0.8)


def test_sample_mosaic_rejects_other_shapes() -> None:
    with pytest.raises(ValueError, match=r"shape \(2, 2, 5\)"):
        report.sample_mosaic([[np.zeros((2, 2, 5))]])
    with pytest.raises(ValueError, match="no images"):
        report.sample_mosaic([[]])


def test_plots_are_cheap_to_draw(
    clustered: dict[str, np.ndarray], rng: np.random.Generator
) -> None:
    """The 20 x 8 sample grid is one axes, and no figure runs a layout engine at save time.

    (160 axes plus constrained layout took ~9 s of a ~10 s publish step on a 2-core machine.)
    """
    images = {c: [rng.random((8, 8)) for _ in range(8)] for c in range(20)}
    grid = report.plot_sample_grid(images)
    assert len(grid.axes) == 1
    assert [t.get_text() for t in grid.axes[0].get_yticklabels()] == [f"c{c}" for c in range(20)]
    figures = [
        grid,
        report.plot_difficulty_histograms(clustered["difficulty"], clustered["assignment"]),
        report.plot_schedule(np.arange(3.0), np.full(3, 0.5), np.full(3, 2.0)),
        report.plot_sweep([2, 3], [1.0, 0.5], [4.0, 3.0], chosen_k=3),
    ]
    assert all(figure.get_layout_engine() is None for figure in figures)


def test_the_report_shows_the_band_and_how_k_was_chosen(
    tmp_path: Path, clustered: dict[str, np.ndarray]
) -> None:
    """With replicated points and the sweep's ``k_choice``: error bars and the shaded band in the
    plot, ``se`` and ``in_band`` in the table, the rule, grid, refinement and sample below it."""
    sweep = [
        {"k": 2, "davies_bouldin": 1.1, "davies_bouldin_se": 0.05, "inertia": 40.0},
        {"k": 3, "davies_bouldin": 0.74, "davies_bouldin_se": 0.05, "inertia": 25.0},
        {"k": 4, "davies_bouldin": 0.7, "davies_bouldin_se": 0.05, "inertia": 20.0},
    ]
    k_choice = {"k": 3, "best_k": 4, "band": 0.75, "in_band": [3, 4], "n_candidates": 3,
                "flat": False, "grid": [2, 4], "refined": [3], "sample_rows": 20,
                "replicates": 4, "replicate_rows": 10, "device": "cpu"}  # fmt: skip
    iterations = np.arange(0, 100, 10.0)
    fraction = np.minimum(0.3 + iterations / 80, 1.0)
    written = report.write_report(
        tmp_path / "out",
        summary={"N": 20, "k": 3},
        difficulty=clustered["difficulty"],
        assignment=clustered["assignment"],
        distances=clustered["distances"],
        schedule_points=(iterations, fraction, 1.0 / (1.001 - fraction)),
        sweep=sweep,
        chosen_k=3,
        k_choice=k_choice,
    )
    text = written["report"].read_text()
    assert "| k | davies_bouldin | se | in_band | inertia | chosen |" in text
    assert "| 3 | 0.74 | 0.05 | True | 25 | True |" in text
    assert "| 2 | 1.1 | 0.05 | False | 40 | False |" in text
    assert "within one standard error of the best, three on a flat curve" in text
    assert "| refinement | 3 |" in text and "| band width | 1 SE |" in text
    assert "| band (best mean + SE) | 0.7500 |" in text
    assert written["sweep"].read_bytes()[:8] == PNG_MAGIC
