"""Tests of cl_core.cluster: k sweep, streamed fit, assignment, supervised mode, bad input."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest

from cl_core.cluster import (
    ArraySource,
    ClusterConfig,
    ClusterResult,
    ClusterWarning,
    SweepPlan,
    SweepPoint,
    as_source,
    assign,
    choose_k,
    cluster_embeddings,
    evaluate_k,
    fit_kmeans,
    sample_rows,
    sweep_k,
)
from cl_core.store import normalize_block, store_from_array

ROOT = Path(__file__).resolve().parents[1]


def make_blobs(
    n_rows: int, k: int, dim: int = 16, *, spread: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated Gaussian blobs: centres far apart relative to ``spread``."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(k, dim))
    truth = rng.integers(0, k, size=n_rows)
    features = centers[truth] + rng.normal(scale=spread, size=(n_rows, dim))
    return features.astype(np.float32), truth


def purity_pairs(assignment: np.ndarray, truth: np.ndarray) -> bool:
    """True when clusters and true groups are the same partition (up to renaming)."""
    pairs = set(zip(assignment.tolist(), truth.tolist(), strict=True))
    return len(pairs) == len(set(assignment.tolist())) == len(set(truth.tolist()))


def sklearn_inertia(rows: np.ndarray, k: int) -> float:
    from sklearn.cluster import KMeans

    model = KMeans(n_clusters=k, n_init=10, random_state=0).fit(rows)
    return float(model.inertia_)


def normalized(features: np.ndarray) -> np.ndarray:
    """The default 'standard' normalisation of the whole array, computed independently."""
    data = features.astype(np.float64)
    return normalize_block(features, "standard", data.mean(axis=0), data.std(axis=0))


def without_seconds(points: tuple[SweepPoint, ...]) -> list[tuple[object, ...]]:
    return [(p.k, p.davies_bouldin, p.inertia, p.n_samples, p.class_label) for p in points]


@pytest.fixture(scope="module")
def blobs7() -> tuple[np.ndarray, np.ndarray]:
    return make_blobs(2400, 7, seed=1)


# --------------------------------------------------------------------------------------------
# Choosing k
# --------------------------------------------------------------------------------------------


def test_auto_k_finds_the_number_of_blobs(blobs7: tuple[np.ndarray, np.ndarray]) -> None:
    features, truth = blobs7
    result = cluster_embeddings(features, ClusterConfig(cluster_range=(2, 12)))

    assert result.chosen_by == "davies_bouldin"
    assert result.n_clusters == 7
    assert [point.k for point in result.sweep] == list(range(2, 13))
    best = min(result.sweep, key=lambda point: point.davies_bouldin)
    assert best.k == 7
    assert all(np.isfinite(point.davies_bouldin) and point.inertia > 0 for point in result.sweep)
    assert purity_pairs(result.assignment, truth)


def _swept_elsewhere(plan: SweepPlan, config: ClusterConfig) -> list[SweepPoint]:
    """The sweep as a scheduler runs it: evaluate_k per k of the plan, points through JSON."""
    return [
        SweepPoint.from_dict(
            evaluate_k(
                plan.sample, k, plan.sweep_seed, config.sweep_batch_size, n_init=config.sweep_n_init
            ).to_dict()
        )
        for k in plan.ks
    ]


def test_a_sweep_run_elsewhere_gives_the_same_result_as_the_library_sweep(
    blobs7: tuple[np.ndarray, np.ndarray],
) -> None:
    """The flow fans evaluate_k out over the plan_sweep sample and hands the points back: k,
    chosen_by and the fitted centroids are the library's own (it used to refit with k as if
    given, from another sample, and the flow overwrote chosen_by)."""
    from cl_core.cluster import plan_sweep

    features, _ = blobs7
    config = ClusterConfig(cluster_range=(2, 9))
    library = cluster_embeddings(features, config)
    plan = plan_sweep(features, config)
    points = _swept_elsewhere(plan, config)
    flow_route = cluster_embeddings(features, config, sweep=points)

    assert flow_route.chosen_by == "davies_bouldin" and flow_route.n_clusters == library.n_clusters
    np.testing.assert_array_equal(flow_route.centroids, library.centroids)
    np.testing.assert_array_equal(flow_route.assignment, library.assignment)
    with pytest.raises(ValueError, match="automatic k"):
        cluster_embeddings(features, dataclasses.replace(config, n_clusters=3), sweep=points)
    with pytest.raises(ValueError, match="empty"):
        cluster_embeddings(features, config, sweep=[])


def test_the_sweep_sample_handed_to_the_fit_is_not_read_again(
    blobs7: tuple[np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With sweep=, sample=plan.sample gives the library's result without drawing the sample
    from the source a second time (the flow's fit used to re-read it: ~3 s at N = 1M)."""
    from cl_core.cluster import plan_sweep, stage

    features, _ = blobs7
    config = ClusterConfig(cluster_range=(2, 6))
    library = cluster_embeddings(features, config)
    plan = plan_sweep(features, config)
    points = _swept_elsewhere(plan, config)

    def no_second_draw(*args: object, **kwargs: object) -> None:
        raise AssertionError("the sweep sample was drawn from the source again")

    monkeypatch.setattr(stage, "sample_rows", no_second_draw)
    given = cluster_embeddings(features, config, sweep=points, sample=plan.sample)

    np.testing.assert_array_equal(given.centroids, library.centroids)
    np.testing.assert_array_equal(given.assignment, library.assignment)
    with pytest.raises(ValueError, match="pass it with sweep"):
        cluster_embeddings(features, config, sample=plan.sample)
    with pytest.raises(ValueError, match=r"has shape \(10, \d+\).*plan_sweep sample"):
        cluster_embeddings(features, config, sweep=points, sample=plan.sample[:10])
    with pytest.raises(ValueError, match="2-D"):
        cluster_embeddings(features, config, sweep=points, sample=plan.sample[0])


def test_explicit_k_is_honoured_even_when_a_range_is_given(
    blobs7: tuple[np.ndarray, np.ndarray],
) -> None:
    features, _ = blobs7
    result = cluster_embeddings(features, ClusterConfig(n_clusters=4, cluster_range=(2, 12)))

    assert result.n_clusters == 4
    assert result.chosen_by == "explicit"
    assert result.sweep == ()
    assert result.centroids.shape == (4, features.shape[1])
    assert set(np.unique(result.assignment).tolist()) == {0, 1, 2, 3}


def test_choose_k_prefers_lowest_index_then_smaller_k() -> None:
    points = [SweepPoint(k, db, 1.0, 0.0) for k, db in [(2, 0.9), (3, 0.5), (4, 0.5), (5, 0.7)]]
    assert choose_k(points) == 3
    with pytest.raises(ValueError, match="finite Davies-Bouldin"):
        choose_k([SweepPoint(2, float("nan"), 1.0, 0.0)])


def test_evaluate_k_is_the_job_that_sweep_k_runs(blobs7: tuple[np.ndarray, np.ndarray]) -> None:
    sample = sample_rows(blobs7[0], 800, random_state=3)
    swept = sweep_k(sample, [3, 7], random_state=11, scheduler="synchronous")
    single = evaluate_k(sample, 7, random_state=11)

    assert without_seconds((single,)) == without_seconds(swept[1:])
    assert swept[1].davies_bouldin < swept[0].davies_bouldin
    assert single.n_samples == 800
    assert single.mean_inertia == pytest.approx(single.inertia / 800)


@pytest.mark.integration
def test_sweep_gives_identical_metrics_on_every_local_scheduler(
    blobs7: tuple[np.ndarray, np.ndarray],
) -> None:
    sample = sample_rows(blobs7[0], 600, random_state=0)
    ks = [2, 5, 7, 9]
    runs = {
        scheduler: without_seconds(sweep_k(sample, ks, random_state=5, scheduler=scheduler))
        for scheduler in ("synchronous", "threads", "processes")
    }
    assert runs["threads"] == runs["synchronous"]
    assert runs["processes"] == runs["synchronous"]
    assert [entry[0] for entry in runs["threads"]] == ks


@pytest.mark.integration
def test_sweep_on_a_distributed_local_cluster_matches_the_local_path(
    blobs7: tuple[np.ndarray, np.ndarray],
) -> None:
    import distributed  # required (dask[distributed]): a broken install must fail, not skip

    features, _ = blobs7
    config = ClusterConfig(cluster_range=(2, 9), sweep_samples=900)
    local = cluster_embeddings(features, config)

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = cluster_embeddings(features, config, client=client)
        direct = sweep_k(sample_rows(features, 900, 1), [2, 4], random_state=3, client=client)

    assert without_seconds(remote.sweep) == without_seconds(local.sweep)
    assert remote.n_clusters == local.n_clusters == 7
    np.testing.assert_array_equal(remote.assignment, local.assignment)
    sample = sample_rows(features, 900, 1)
    assert without_seconds(direct) == without_seconds(
        sweep_k(sample, [2, 4], random_state=3, scheduler="synchronous")
    )


# --------------------------------------------------------------------------------------------
# Fitting and assignment
# --------------------------------------------------------------------------------------------


def test_streamed_fit_reaches_kmeans_quality() -> None:
    features, truth = make_blobs(6000, 5, spread=1.0, seed=2)
    # The subsample (800 rows) is far smaller than N, so the centres are refined by streaming.
    config = ClusterConfig(n_clusters=5, sweep_samples=800, batch_size=512, n_epochs=2)
    result = cluster_embeddings(features, config)

    reference = sklearn_inertia(normalized(features), 5)
    assert result.inertia <= reference * 1.02
    assert purity_pairs(result.assignment, truth)


def test_fit_kmeans_streams_chunks_with_memory_independent_of_n() -> None:
    features, _ = make_blobs(40_000, 6, dim=32, seed=3)
    source = as_source(features, chunk_rows=1000)
    config = ClusterConfig(sweep_samples=1000, batch_size=1000)
    fit_kmeans(features[:3000], 6, config)  # imports outside the traced window

    tracemalloc.start()
    centroids = fit_kmeans(source, 6, config)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert centroids.shape == (6, 32) and centroids.dtype == np.float32
    assert peak < features.nbytes / 4  # the 5 MB matrix is never materialised


def test_results_are_bitwise_identical_across_array_chunk_sizes(
    blobs7: tuple[np.ndarray, np.ndarray],
) -> None:
    features, _ = blobs7
    config = ClusterConfig(cluster_range=(2, 9), sweep_samples=700, batch_size=300)
    small = cluster_embeddings(as_source(features, chunk_rows=129), config)
    large = cluster_embeddings(as_source(features, chunk_rows=4096), config)

    np.testing.assert_array_equal(small.centroids, large.centroids)
    np.testing.assert_array_equal(small.assignment, large.assignment)
    np.testing.assert_array_equal(small.distances, large.distances)
    assert without_seconds(small.sweep) == without_seconds(large.sweep)


def test_store_results_agree_across_chunk_sizes(
    tmp_path: Path, blobs7: tuple[np.ndarray, np.ndarray]
) -> None:
    features, truth = blobs7
    config = ClusterConfig(cluster_range=(2, 9), sweep_samples=700, batch_size=256)
    results = [
        cluster_embeddings(
            store_from_array(tmp_path / f"s{rows}.zarr", features, chunk_rows=rows), config
        )
        for rows in (128, 1000)
    ]
    np.testing.assert_array_equal(results[0].assignment, results[1].assignment)
    np.testing.assert_allclose(results[0].centroids, results[1].centroids, atol=1e-5)
    np.testing.assert_allclose(results[0].distances, results[1].distances, atol=1e-5)
    assert results[0].n_clusters == 7
    assert purity_pairs(results[0].assignment, truth)


def test_same_seed_same_result_and_seed_changes_the_subsample(
    blobs7: tuple[np.ndarray, np.ndarray],
) -> None:
    features, _ = blobs7
    first = cluster_embeddings(features, ClusterConfig(n_clusters=7, sweep_samples=500))
    again = cluster_embeddings(features, ClusterConfig(n_clusters=7, sweep_samples=500))
    np.testing.assert_array_equal(first.centroids, again.centroids)
    a = sample_rows(features, 50, random_state=1)
    b = sample_rows(features, 50, random_state=2)
    assert not np.array_equal(a, b)


def test_assign_matches_brute_force_nearest_centroid(rng: np.random.Generator) -> None:
    rows = rng.normal(size=(1500, 12)).astype(np.float32)
    centroids = rng.normal(size=(9, 12)).astype(np.float32)
    source = as_source(rows, normalize="none", chunk_rows=200)
    assignment, distances = assign(source, centroids)

    full = np.linalg.norm(rows[:, None, :] - centroids[None, :, :], axis=2)
    np.testing.assert_array_equal(assignment, full.argmin(axis=1))
    np.testing.assert_allclose(distances, full.min(axis=1), rtol=1e-5)
    assert assignment.dtype == np.int32 and distances.dtype == np.float32
    at_centroid, distance = assign(as_source(centroids, normalize="none"), centroids)
    np.testing.assert_array_equal(at_centroid, np.arange(9))
    np.testing.assert_array_equal(distance, 0.0)


def test_assign_within_groups_only_uses_the_rows_group(rng: np.random.Generator) -> None:
    rows = rng.normal(size=(300, 4)).astype(np.float32)
    centroids = rng.normal(size=(4, 4)).astype(np.float32)
    row_groups = np.arange(300) % 2
    centroid_groups = np.array([0, 0, 1, 1])
    source = as_source(rows, normalize="none", chunk_rows=64)
    assignment, distances = assign(
        source, centroids, row_groups=row_groups, centroid_groups=centroid_groups
    )
    assert np.array_equal(centroid_groups[assignment], row_groups)
    for group in (0, 1):
        members = row_groups == group
        allowed = np.flatnonzero(centroid_groups == group)
        full = np.linalg.norm(rows[members, None] - centroids[None, allowed], axis=2)
        np.testing.assert_array_equal(assignment[members], allowed[full.argmin(axis=1)])
        np.testing.assert_allclose(distances[members], full.min(axis=1), rtol=1e-5)
    with pytest.raises(ValueError, match="without any centroid"):
        assign(source, centroids, row_groups=row_groups + 5, centroid_groups=centroid_groups)


def test_thread_limits_apply_inside_and_restore_after() -> None:
    import torch
    from threadpoolctl import threadpool_info

    from cl_core.threads import thread_limit, torch_threads

    def blas_threads() -> set[int]:
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    before = blas_threads()
    with thread_limit(1, "blas", sklearn=False):
        assert blas_threads() == {1}
    assert blas_threads() == before
    with thread_limit(None):
        assert blas_threads() == before
    torch_before = torch.get_num_threads()
    other = 3 if torch_before != 3 else 2
    with pytest.raises(RuntimeError, match="inside"), torch_threads(other):
        assert torch.get_num_threads() == other
        raise RuntimeError("inside")
    assert torch.get_num_threads() == torch_before
    with torch_threads(None):
        assert torch.get_num_threads() == torch_before


@pytest.mark.integration
def test_numpy_only_thread_limit_does_not_import_scikit_learn() -> None:
    # Each Dask assignment task limits numpy's BLAS this way; it must not pay sklearn's import.
    code = (
        "import sys; from cl_core.threads import thread_limit\n"
        "with thread_limit(1, 'blas', sklearn=False): pass\n"
        "print('sklearn' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip() == "False"


def test_max_fit_samples_fits_on_a_subsample() -> None:
    features, truth = make_blobs(5000, 4, seed=4)
    config = ClusterConfig(n_clusters=4, sweep_samples=300, max_fit_samples=1000, batch_size=250)
    result = cluster_embeddings(features, config)
    assert result.assignment.shape == (5000,)
    assert purity_pairs(result.assignment, truth)


# --------------------------------------------------------------------------------------------
# Sources and normalisation
# --------------------------------------------------------------------------------------------


def test_array_source_normalises_like_the_store(
    tmp_path: Path, blobs7: tuple[np.ndarray, np.ndarray]
) -> None:
    features, _ = blobs7
    halves = features.astype(np.float16)
    store = store_from_array(tmp_path / "n.zarr", halves, chunk_rows=500)
    from_store = np.concatenate([block for _, block in store.iter_chunks("standard")])
    from_array = np.concatenate([b for _, b in as_source(halves, chunk_rows=333).iter_chunks()])
    np.testing.assert_allclose(from_array, from_store, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(from_array, axis=1), 1.0, rtol=1e-5)
    raw = as_source(features, normalize="none").read_rows(np.array([0, 5]))
    np.testing.assert_array_equal(raw, features[[0, 5]])
    with pytest.warns(ClusterWarning, match="normalize='none', which wins"):
        cluster_embeddings(as_source(features, normalize="none"), ClusterConfig(n_clusters=7))


def test_sample_rows_is_seeded_sorted_and_capped_at_n(
    blobs7: tuple[np.ndarray, np.ndarray],
) -> None:
    features, _ = blobs7
    source = as_source(features, normalize="none")
    sample = sample_rows(source, 100, random_state=7)
    np.testing.assert_array_equal(sample, sample_rows(source, 100, random_state=7))
    positions = [int(np.flatnonzero((features == row).all(axis=1))[0]) for row in sample[:20]]
    assert positions == sorted(positions)
    np.testing.assert_array_equal(sample_rows(source, 10**6, 0), features)


def test_a_store_path_is_accepted_and_its_labels_are_used(tmp_path: Path) -> None:
    features, truth = make_blobs(900, 3, seed=5)
    store_from_array(tmp_path / "l.zarr", features, labels=truth, chunk_rows=256)
    result = cluster_embeddings(tmp_path / "l.zarr", ClusterConfig(use_labels=True, n_clusters=1))
    assert result.n_clusters == 3
    assert np.array_equal(result.cluster_class[result.assignment], truth)


def test_store_rows_are_gathered_in_any_order(tmp_path: Path) -> None:
    features, _ = make_blobs(3000, 3, seed=9)
    store = store_from_array(tmp_path / "g.zarr", features, chunk_rows=256)
    source = as_source(store)
    everything = np.concatenate([block for _, block in source.iter_chunks()])
    for indices in (np.array([5, 2900, 7, 7, 300]), np.array([1, 2, 2999]), np.arange(0, 3000, 3)):
        np.testing.assert_array_equal(source.read_rows(indices), everything[indices])
    assert source.read_rows(np.array([], dtype=np.int64)).shape == (0, 16)


# --------------------------------------------------------------------------------------------
# Supervised mode
# --------------------------------------------------------------------------------------------


def _classes_of_blobs(blobs_per_class: list[int], rows_per_class: int = 600, seed: int = 6):
    features, labels, sub = [], [], []
    for position, k in enumerate(blobs_per_class):
        x, t = make_blobs(rows_per_class, k, seed=seed + position)
        features.append(x + 40.0 * position)
        labels.append(np.full(rows_per_class, position))
        sub.append(t + 100 * position)
    return np.concatenate(features), np.concatenate(labels), np.concatenate(sub)


def test_per_class_mode_clusters_each_class_separately() -> None:
    features, labels, sub = _classes_of_blobs([2, 2, 2])
    result = cluster_embeddings(features, ClusterConfig(use_labels=True, n_clusters=2), labels)

    assert result.chosen_by == "per_class"
    assert result.n_clusters == 6
    np.testing.assert_array_equal(result.cluster_class, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(result.cluster_class[result.assignment], labels)
    assert purity_pairs(result.assignment, sub)


def test_per_class_auto_k_chooses_per_class() -> None:
    features, labels, sub = _classes_of_blobs([2, 3, 5])
    config = ClusterConfig(use_labels=True, cluster_range=(2, 8))
    result = cluster_embeddings(features, config, labels)

    counts = np.bincount(result.cluster_class)
    np.testing.assert_array_equal(counts, [2, 3, 5])
    assert {point.class_label for point in result.sweep} == {0, 1, 2}
    assert len(result.sweep) == 3 * 7
    assert purity_pairs(result.assignment, sub)


def test_per_class_mode_streams_classes_larger_than_the_subsample() -> None:
    features, labels, sub = _classes_of_blobs([3, 2], rows_per_class=2500)
    config = ClusterConfig(
        use_labels=True, n_clusters=None, cluster_range=(2, 5), sweep_samples=400, batch_size=300
    )
    result = cluster_embeddings(features, config, labels)
    np.testing.assert_array_equal(np.bincount(result.cluster_class), [3, 2])
    np.testing.assert_array_equal(result.cluster_class[result.assignment], labels)
    assert purity_pairs(result.assignment, sub)


def test_labels_as_list_array_or_tensor_give_the_same_result() -> None:
    import torch  # required: a broken install must fail, not skip

    features, labels, _ = _classes_of_blobs([2, 2], rows_per_class=200)
    config = ClusterConfig(use_labels=True, n_clusters=2)
    results = [
        cluster_embeddings(features, config, given)
        for given in (labels, labels.tolist(), torch.from_numpy(labels))
    ]
    for other in results[1:]:
        np.testing.assert_array_equal(other.assignment, results[0].assignment)
        np.testing.assert_array_equal(other.centroids, results[0].centroids)
    names = np.array(["cat", "dog"])[labels].tolist()
    by_name = cluster_embeddings(features, config, names)
    assert by_name.cluster_class.tolist() == ["cat", "cat", "dog", "dog"]


def test_small_classes_fall_back_with_a_warning() -> None:
    features, labels, _ = _classes_of_blobs([2, 2], rows_per_class=200)
    features = np.concatenate([features, [[100.0] * 16, [101.0] * 16]]).astype(np.float32)
    labels = np.concatenate([labels, [7, 7]])

    with pytest.warns(ClusterWarning, match="class 7 has 2 samples"):
        auto = cluster_embeddings(features, ClusterConfig(use_labels=True), labels)
    assert np.sum(auto.cluster_class == 7) == 1
    tiny = np.flatnonzero(auto.cluster_class == 7)[0]
    normalised = as_source(features).read_rows(np.array([400, 401]))
    np.testing.assert_allclose(auto.centroids[tiny], normalised.mean(axis=0), atol=1e-6)

    with pytest.warns(ClusterWarning, match="fewer than n_clusters=3"):
        capped = cluster_embeddings(features, ClusterConfig(use_labels=True, n_clusters=3), labels)
    assert np.sum(capped.cluster_class == 7) == 2
    np.testing.assert_array_equal(np.bincount(capped.cluster_class)[[0, 1]], [3, 3])


# --------------------------------------------------------------------------------------------
# Results and configuration
# --------------------------------------------------------------------------------------------


def test_result_is_frozen_read_only_and_json_ready(blobs7: tuple[np.ndarray, np.ndarray]) -> None:
    features, _ = blobs7
    result = cluster_embeddings(features, ClusterConfig(cluster_range=(6, 8), sweep_samples=600))
    assert isinstance(result, ClusterResult)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.n_clusters = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        result.assignment[0] = 1
    records = json.loads(json.dumps(result.sweep_records()))
    assert [record["k"] for record in records] == [6, 7, 8]
    assert json.loads(json.dumps(result.config.to_dict()))["cluster_range"] == [6, 8]
    assert result.inertia == pytest.approx(float(np.sum(result.distances.astype(float) ** 2)))
    assert result.cluster_sizes().sum() == features.shape[0]


def test_config_accepts_a_list_range_and_separates_execution_fields() -> None:
    config = ClusterConfig(cluster_range=[3, 5], scheduler="processes")  # type: ignore[arg-type]
    assert config.cluster_range == (3, 5)
    assert config.to_dict()["scheduler"] == "processes"
    content = config.to_dict(execution=False)
    assert "scheduler" not in content and "n_threads" not in content
    assert content == ClusterConfig(cluster_range=(3, 5)).to_dict(execution=False)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_clusters": 0}, ValueError, "n_clusters must be >= 1"),
        ({"n_clusters": -2}, ValueError, "n_clusters must be >= 1"),
        ({"n_clusters": 2.5}, TypeError, "n_clusters must be an integer"),
        ({"cluster_range": (9, 3)}, ValueError, "inverted"),
        ({"cluster_range": (1, 5)}, ValueError, "needs at least 2 clusters"),
        ({"cluster_range": (4,)}, TypeError, "pair"),
        ({"normalize": "zscore"}, ValueError, "unknown normalize 'zscore'; valid: standard"),
        ({"scheduler": "gpu"}, ValueError, "unknown scheduler"),
        ({"random_state": -1}, TypeError, "random_state"),
        ({"n_epochs": 0}, ValueError, "n_epochs must be >= 1"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        ClusterConfig(**kwargs)


def test_no_warnings_on_a_clean_run(blobs7: tuple[np.ndarray, np.ndarray]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cluster_embeddings(blobs7[0], ClusterConfig(cluster_range=(5, 8), sweep_samples=500))


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def test_more_clusters_than_rows_is_an_error() -> None:
    features, _ = make_blobs(20, 2)
    with pytest.raises(ValueError, match="n_clusters=21 exceeds the number of samples N=20"):
        cluster_embeddings(features, ClusterConfig(n_clusters=21))


def test_constant_features_are_a_clear_error_not_a_nan_index() -> None:
    constant = np.ones((300, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="features are constant"):
        cluster_embeddings(constant)
    with pytest.raises(ValueError, match="features are constant"):
        cluster_embeddings(constant, ClusterConfig(n_clusters=3))
    labels = np.arange(300) % 3
    with (
        pytest.warns(ClusterWarning, match="1 distinct"),
        pytest.raises(ValueError, match="features are constant"),
    ):
        cluster_embeddings(constant, ClusterConfig(use_labels=True), labels=labels)
    single = cluster_embeddings(constant, ClusterConfig(n_clusters=1))  # k = 1 is well defined
    np.testing.assert_array_equal(single.distances, 0.0)


def test_fewer_distinct_rows_than_clusters_is_an_error() -> None:
    rows = np.repeat(np.eye(3, 8, dtype=np.float32), 50, axis=0)
    with pytest.raises(ValueError, match="only 3 distinct rows"):
        cluster_embeddings(rows, ClusterConfig(n_clusters=5))
    with pytest.raises(ValueError, match=r"cluster_range=\(4, 6\)"):
        cluster_embeddings(rows, ClusterConfig(cluster_range=(4, 6)))


def test_a_range_beyond_the_sample_is_refused_before_any_work() -> None:
    """Each k is scored on half-samples: 12 rows score k <= 5; the one line says both fixes."""
    features, _ = make_blobs(12, 3, seed=8)
    with pytest.raises(ValueError, match=r"k <= 5; narrow the range \(--k-range 2:5\)"):
        cluster_embeddings(features, ClusterConfig(cluster_range=(2, 30)))


def test_nan_rows_are_rejected_with_their_index(blobs7: tuple[np.ndarray, np.ndarray]) -> None:
    features = blobs7[0].copy()
    features[[17, 40]] = np.nan
    with pytest.raises(ValueError, match=r"2 non-finite.*first at index 17"):
        cluster_embeddings(features)


def test_labels_of_the_wrong_length_or_missing_are_rejected(
    blobs7: tuple[np.ndarray, np.ndarray],
) -> None:
    features, truth = blobs7
    with pytest.raises(ValueError, match="labels has length 10 but the features have 2400 rows"):
        cluster_embeddings(features, ClusterConfig(use_labels=True), labels=truth[:10])
    with pytest.raises(ValueError, match="use_labels=True needs labels"):
        cluster_embeddings(features, ClusterConfig(use_labels=True))
    with pytest.raises(ValueError, match="must be 1-D"):
        cluster_embeddings(features, ClusterConfig(use_labels=True), labels=np.eye(2400))
    with pytest.warns(ClusterWarning, match="ignored"):
        cluster_embeddings(features, ClusterConfig(n_clusters=2), labels=truth)


def test_other_bad_arguments_name_themselves(blobs7: tuple[np.ndarray, np.ndarray]) -> None:
    features, _ = blobs7
    with pytest.raises(ValueError, match="non-empty 2-D"):
        cluster_embeddings(np.zeros((0, 4), dtype=np.float32))
    with pytest.raises(TypeError, match="config must be a ClusterConfig"):
        cluster_embeddings(features, {"n_clusters": 3})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="centroids must have shape"):
        assign(features, np.zeros((3, 5), dtype=np.float32))
    sample = sample_rows(features, 50, 0)
    with pytest.raises(ValueError, match="k=50 is too large"):
        evaluate_k(sample, 50, 0)
    with pytest.raises(ValueError, match="needs at least 2 clusters"):
        evaluate_k(sample, 1, 0)
    with pytest.raises(ValueError, match="repeated"):
        sweep_k(sample, [2, 2], 0)
    with pytest.raises(TypeError, match="real numbers"):
        ArraySource(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 2400\)"):
        as_source(features).read_rows(np.array([3, 2400]))


def test_an_unfinalized_store_is_rejected_for_standard_normalisation(tmp_path: Path) -> None:
    from cl_core.store import create_store

    features, _ = make_blobs(600, 3, seed=10)
    store = create_store(
        tmp_path / "u.zarr", 600, 16, chunk_rows=200, attrs={"dataset_fingerprint": "u"}
    )
    for shard in range(store.n_shards):
        start, stop = store.shard_range(shard)
        store.write_shard(shard, features[start:stop])
    with pytest.raises(ValueError, match="not finalized"):
        cluster_embeddings(store, ClusterConfig(n_clusters=3))
    result = cluster_embeddings(store, ClusterConfig(n_clusters=3, normalize="l2"))
    assert result.n_clusters == 3


# --------------------------------------------------------------------------------------------
# Memory (slow)
# --------------------------------------------------------------------------------------------

_RSS_CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import dask, sklearn.cluster, sklearn.metrics, zarr
    from cl_core.cluster import ClusterConfig, cluster_embeddings
    from cl_core.cluster.assign_dask import peak_rss_bytes
    from cl_core.store import open_store

    store = open_store(sys.argv[1], read_only=True)
    # ru_maxrss would include the (large) pytest parent's peak inherited through fork/exec;
    # VmHWM (peak_rss_bytes) is this process image's own peak, and writing 5 to clear_refs
    # resets it to the current RSS.
    Path("/proc/self/clear_refs").write_text("5")
    floor = peak_rss_bytes() / 2**20
    # The CPU streaming path is what this budget is about (a GPU fit holds a device copy).
    result = cluster_embeddings(store, ClusterConfig(cluster_range=(2, 10), fit_device="cpu"))
    peak = peak_rss_bytes() / 2**20
    print(json.dumps({"floor": floor, "peak": peak, "k": result.n_clusters}))
    """
)


def _write_blob_store(path: Path, n_rows: int, dim: int, k: int) -> None:
    """Blobs written shard by shard, so the test process never holds the matrix either."""
    from cl_core.store import create_store

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(k, dim)).astype(np.float32)
    store = create_store(path, n_rows, dim, attrs={"dataset_fingerprint": "rss-test"})
    for shard in range(store.n_shards):
        start, stop = store.shard_range(shard)
        rows = rng.standard_normal((stop - start, dim), dtype=np.float32)
        rows += centers[rng.integers(0, k, stop - start)]
        store.write_shard(shard, rows)
    store.finalize()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
@pytest.mark.integration
def test_peak_rss_stays_under_budget_for_a_store_larger_than_it(tmp_path: Path) -> None:
    n_rows, dim, budget_mib = 500_000, 384, 200
    assert n_rows * dim * 4 / 2**20 > 3 * budget_mib  # the float32 matrix: 732 MiB
    _write_blob_store(tmp_path / "big.zarr", n_rows, dim, k=8)
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_CHILD, str(tmp_path / "big.zarr")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["k"] == 8
    assert figures["peak"] - figures["floor"] < budget_mib, figures


# ---------------------------------------------------------------------------- fit device, client


def test_fit_device_cuda_without_cuda_fails_before_any_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    from cl_core.cluster import resolve_fit_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = ClusterConfig(n_clusters=2, fit_device="cuda")
    with pytest.raises(ValueError, match="fit_device='cuda' asks for a CUDA GPU"):
        cluster_embeddings(np.full((4, 2), np.nan), config)  # NaN is never reached
    assert resolve_fit_device(ClusterConfig(fit_device="auto")) == "cpu"
    assert resolve_fit_device(ClusterConfig(fit_device="cpu")) == "cpu"


@pytest.mark.integration
def test_auto_fit_device_does_not_import_torch_without_a_gpu_driver() -> None:
    code = (
        "import sys, numpy as np\n"
        "from cl_core.cluster import ClusterConfig, cluster_embeddings, resolve_fit_device\n"
        "x = np.random.default_rng(0).normal(size=(3000, 4))\n"
        "cluster_embeddings(x, ClusterConfig(n_clusters=3, sweep_samples=500))\n"
        "print(resolve_fit_device(ClusterConfig()), 'torch' in sys.modules)"
    )
    driver = Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/gpus").is_dir()
    if driver or not sys.platform.startswith("linux"):
        pytest.skip("an NVIDIA driver (or a non-Linux OS): torch is asked, so it is imported")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.split()
    assert out == ["cpu", "False"]
    with pytest.raises(ValueError, match="unknown fit_device 'tpu'"):
        ClusterConfig(fit_device="tpu")


def test_small_data_is_fitted_on_the_cpu_whatever_the_device(
    monkeypatch: pytest.MonkeyPatch, blobs7: tuple[np.ndarray, np.ndarray]
) -> None:
    """N <= sweep_samples is exact KMeans on the CPU: the same result on every machine."""
    import cl_core.cluster.fit as fit_module  # where fit_centers looks the device up

    features, _ = blobs7
    plain = cluster_embeddings(features, ClusterConfig(n_clusters=7, fit_device="cpu"))
    monkeypatch.setattr(fit_module, "resolve_fit_device", lambda config: "cuda")
    pretend = cluster_embeddings(features, ClusterConfig(n_clusters=7, fit_device="auto"))
    np.testing.assert_array_equal(plain.centroids, pretend.centroids)


@pytest.mark.gpu
def test_cuda_fit_matches_the_cpu_partition() -> None:
    features, truth = make_blobs(30_000, 6, dim=16, seed=5)
    config = ClusterConfig(n_clusters=6, sweep_samples=2_000)
    gpu = cluster_embeddings(features, dataclasses.replace(config, fit_device="cuda"))
    cpu = cluster_embeddings(features, dataclasses.replace(config, fit_device="cpu"))
    assert purity_pairs(gpu.assignment, truth)
    assert purity_pairs(cpu.assignment, truth)
    assert gpu.inertia <= cpu.inertia * 1.001


@pytest.mark.integration
def test_assignment_on_a_dask_client_equals_the_local_one(tmp_path: Path) -> None:
    import distributed  # required (dask[distributed]): a broken install must fail, not skip

    features, _ = make_blobs(3_000, 4, dim=8, seed=9)
    path = str(tmp_path / "c.zarr")
    store_from_array(path, features, chunk_rows=512)
    valid = np.ones(3_000, dtype=bool)
    valid[[3, 700, 2999]] = False
    config = ClusterConfig(n_clusters=4, sweep_samples=1_000)
    local = cluster_embeddings(path, config, valid=valid)
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = cluster_embeddings(path, config, client=client, valid=valid)
    np.testing.assert_array_equal(local.assignment, remote.assignment)
    np.testing.assert_array_equal(local.distances, remote.distances)
    np.testing.assert_array_equal(remote.assignment[~valid], -1)
