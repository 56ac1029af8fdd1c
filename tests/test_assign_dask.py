"""Dask assignment over store row ranges (cl_core.cluster.assign_dask): equal to cluster.assign."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
import zarr

from cl_core.cluster import as_source, assign
from cl_core.cluster.assign_dask import ChunkedAssignment, assign_chunks, assign_range
from cl_core.store import create_store, open_store, store_from_array

N, D, K = 5_000, 16, 9


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(K, D)) * 3
    features = centers[rng.integers(0, K, size=N)] + rng.normal(size=(N, D))
    labels = rng.integers(0, 3, size=N)
    path = tmp_path_factory.mktemp("assign") / "store.zarr"
    store_from_array(path, features.astype(np.float32), labels, chunk_rows=512)
    return str(path)


@pytest.fixture(scope="module")
def centroids(store_path: str) -> np.ndarray:
    rows = as_source(store_path, normalize="standard").read_rows(np.arange(0, N, N // K)[:K])
    return np.ascontiguousarray(rows, dtype=np.float32)


@pytest.mark.parametrize(
    ("normalize", "chunk_rows", "scheduler"),
    [("standard", None, "threads"), ("standard", 1000, "synchronous"), ("l2", 512, "threads")],
)
def test_equals_cluster_assign(
    store_path: str, centroids: np.ndarray, normalize: str, chunk_rows: int | None, scheduler: str
) -> None:
    expected = assign(as_source(store_path, normalize=normalize), centroids)
    result = assign_chunks(
        store_path, centroids, normalize=normalize, chunk_rows=chunk_rows, scheduler=scheduler
    )
    assert isinstance(result, ChunkedAssignment)
    assignment, distances = result  # unpacks like cluster.assign
    assert assignment.dtype == np.int32 and distances.dtype == np.float32
    np.testing.assert_array_equal(assignment, expected[0])
    np.testing.assert_array_equal(distances, expected[1])
    assert result.inertia == pytest.approx(float(np.square(expected[1], dtype=np.float64).sum()))
    # Ranges cover every row once, in whole store chunks (1000 rounds up to 1024).
    bounds = [(task.start, task.stop) for task in result.tasks]
    assert bounds[0][0] == 0 and bounds[-1][1] == N
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert all(start % 512 == 0 for start, _ in bounds)


@pytest.mark.integration
def test_two_worker_processes_over_tcp(store_path: str, centroids: np.ndarray) -> None:
    from distributed import Client, LocalCluster

    expected = assign(as_source(store_path), centroids)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster),
    ):
        result = assign_chunks(open_store(store_path, read_only=True), centroids, chunk_rows=512)
    np.testing.assert_array_equal(result.assignment, expected[0])
    np.testing.assert_array_equal(result.distances, expected[1])
    workers = result.per_process()
    assert os.getpid() not in workers  # the work ran in the worker processes
    assert sum(entry["rows"] for entry in workers.values()) == N
    assert all(entry["peak_rss_mib"] > 0 for entry in workers.values())


def test_valid_mask_and_groups(store_path: str, centroids: np.ndarray) -> None:
    valid = np.ones(N, dtype=bool)
    valid[[0, 17, 4999]] = False
    result = assign_chunks(store_path, centroids, valid=valid, scheduler="synchronous")
    plain = assign_chunks(store_path, centroids, scheduler="synchronous")
    assert result.assignment[[0, 17, 4999]].tolist() == [-1, -1, -1]
    assert result.distances[[0, 17, 4999]].tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_array_equal(result.assignment[valid], plain.assignment[valid])
    np.testing.assert_array_equal(result.distances[valid], plain.distances[valid])

    labels = open_store(store_path).labels()
    centroid_groups = np.arange(K) % 3
    expected = assign(
        as_source(store_path), centroids, row_groups=labels, centroid_groups=centroid_groups
    )
    grouped = assign_chunks(
        store_path, centroids, row_groups=labels, centroid_groups=centroid_groups, chunk_rows=700
    )
    np.testing.assert_array_equal(grouped.assignment, expected[0])
    np.testing.assert_array_equal(grouped.distances, expected[1])
    assert np.all(centroid_groups[grouped.assignment] == labels)


def test_assign_range_is_one_task(store_path: str, centroids: np.ndarray) -> None:
    start, assignment, distances, stats = assign_range(store_path, centroids, 1024, 1536)
    expected = assign(as_source(store_path), centroids)
    assert start == 1024 and stats.stop == 1536 and stats.pid == os.getpid()
    np.testing.assert_array_equal(assignment, expected[0][1024:1536])
    np.testing.assert_array_equal(distances, expected[1][1024:1536])


def test_bad_input_is_named(tmp_path, store_path: str, centroids: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"centroids must have shape \(k, 16\)"):
        assign_chunks(store_path, centroids[:, :5])
    bad = centroids.copy()
    bad[2, 0] = np.inf
    with pytest.raises(ValueError, match="centroids has 1 non-finite"):
        assign_chunks(store_path, bad)
    with pytest.raises(ValueError, match="chunk_rows must be >= 1"):
        assign_chunks(store_path, centroids, chunk_rows=0)
    with pytest.raises(TypeError, match="chunk_rows must be an integer"):
        assign_chunks(store_path, centroids, chunk_rows=True)
    with pytest.raises(ValueError, match="n_threads must be >= 1"):
        assign_chunks(store_path, centroids, n_threads=0)
    with pytest.raises(ValueError, match="valid has shape"):
        assign_chunks(store_path, centroids, valid=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="give both row_groups"):
        assign_chunks(store_path, centroids, row_groups=np.zeros(N, dtype=int))
    with pytest.raises(TypeError, match="in-memory zarr Store"):
        assign_chunks(zarr.storage.MemoryStore(), centroids)
    with pytest.raises(FileNotFoundError, match="no embedding store"):
        assign_chunks(tmp_path / "missing.zarr", centroids)
    partial = create_store(
        tmp_path / "partial.zarr", 2048, D, chunk_rows=256, attrs={"dataset_fingerprint": "x"}
    )
    partial.write_shard(0, np.ones((1024, D), dtype=np.float32))
    with pytest.raises(ValueError, match="not finalized"):
        assign_chunks(tmp_path / "partial.zarr", centroids)
    with pytest.raises(ValueError, match="unwritten shards"):
        assign_chunks(tmp_path / "partial.zarr", centroids, normalize="none")
