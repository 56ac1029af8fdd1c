"""Tests of cl_core.store: resumable sharded writes, statistics, normalised reads, fingerprints."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path

import numpy as np
import pytest
import zarr

from cl_core.store import (
    NORMALIZATIONS,
    EmbeddingStore,
    StoreMismatchError,
    array_fingerprint,
    create_store,
    normalize_block,
    open_store,
    store_from_array,
)

N_ROWS, DIM, CHUNK, SHARD = 230, 6, 16, 48  # 5 shards, the last one short (38 rows)
ATTRS = {
    "dataset_fingerprint": "synthetic-v1",
    "model_id": "tiny-random",
    "weights_sha256": "0" * 64,
    "layer": "head",
    "pooling": "mean",
    "input_transform": "none",
}


def make_features(n_rows: int = N_ROWS, dim: int = DIM, seed: int = 0) -> np.ndarray:
    """Non-centred, unevenly scaled features so that standardisation matters."""
    rng = np.random.default_rng(seed)
    scales = np.linspace(0.5, 8.0, dim)
    return (rng.normal(size=(n_rows, dim)) * scales + np.arange(dim)).astype(np.float32)


def make_labels(n_rows: int = N_ROWS, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + 1).integers(0, 4, size=n_rows)


def new_store(path, **overrides) -> EmbeddingStore:
    options = {"chunk_rows": CHUNK, "shard_rows": SHARD, "attrs": ATTRS, **overrides}
    return create_store(path, N_ROWS, DIM, **options)


def write_shards(store: EmbeddingStore, features, shards, labels=None) -> None:
    for shard in shards:
        start, stop = store.shard_range(shard)
        store.write_shard(
            shard, features[start:stop], None if labels is None else labels[start:stop]
        )


def array_files(root: Path, name: str) -> dict[str, bytes]:
    """Every stored object of one array, by relative path (chunk bytes + array metadata)."""
    folder = root / name
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def stored_float64(features: np.ndarray, dtype: str = "float16") -> np.ndarray:
    return features.astype(dtype).astype(np.float64)


def reference_normalize(x64: np.ndarray, mode: str) -> np.ndarray:
    """float64 numpy reference of the design's normalisations."""
    if mode == "none":
        return x64
    if mode == "standard":
        x64 = (x64 - x64.mean(axis=0)) / x64.std(axis=0)
    norms = np.linalg.norm(x64, axis=1, keepdims=True)
    return x64 / np.where(norms == 0, 1.0, norms)


# ------------------------------------------------------------------ layout and restarts


def test_layout_and_shard_ranges(tmp_path):
    store = new_store(tmp_path / "e.zarr")
    assert store.n_shards == 5
    assert [store.shard_range(i) for i in range(5)] == [
        (0, 48),
        (48, 96),
        (96, 144),
        (144, 192),
        (192, 230),
    ]
    assert store.missing_shards() == [0, 1, 2, 3, 4]
    assert not store.is_complete
    features = zarr.open_group(str(tmp_path / "e.zarr"), mode="r")["features"]
    assert features.shape == (N_ROWS, DIM)
    assert features.chunks == (CHUNK, DIM)
    assert features.dtype == np.float16
    meta = store.attrs
    for key, value in ATTRS.items():
        assert meta[key] == value
    assert meta["code_version"] and meta["complete"] is False and meta["feature_mean"] is None


def test_default_shard_rows_is_four_chunks(tmp_path):
    store = create_store(tmp_path / "e.zarr", 100, 3, chunk_rows=8, attrs=ATTRS)
    assert store.shard_rows == 32
    assert store.n_shards == 4


def test_restart_writes_only_missing_and_matches_one_pass(tmp_path):
    features, labels = make_features(), make_labels()
    one_pass = store_from_array(
        tmp_path / "one.zarr",
        features,
        labels,
        chunk_rows=CHUNK,
        shard_rows=SHARD,
        attrs={k: v for k, v in ATTRS.items() if k != "dataset_fingerprint"},
        dataset_id=ATTRS["dataset_fingerprint"],
    )

    first = new_store(tmp_path / "resumed.zarr", with_labels=True)
    write_shards(first, features, [3, 0], labels)
    # Crash inside shard 1: rows land on disk, but the done marker is never written.
    group = zarr.open_group(str(tmp_path / "resumed.zarr"), mode="r+")
    group["features"][48:96] = features[48:96].astype(np.float16)
    del first, group

    resumed = new_store(tmp_path / "resumed.zarr", with_labels=True)  # reopened, not recreated
    assert resumed.missing_shards() == [1, 2, 4]
    write_shards(resumed, features, [4, 1, 2], labels)
    assert resumed.missing_shards() == []
    resumed.finalize()

    assert resumed.fingerprint == one_pass.fingerprint
    for name in ("features", "labels", "shard_stats", "shard_done"):
        assert array_files(tmp_path / "resumed.zarr", name) == array_files(
            tmp_path / "one.zarr", name
        ), name
    np.testing.assert_array_equal(resumed.feature_mean, one_pass.feature_mean)
    np.testing.assert_array_equal(resumed.feature_std, one_pass.feature_std)


def test_crash_before_marker_leaves_shard_missing(tmp_path, monkeypatch):
    import cl_core.store.embedding_store as store_module

    store = new_store(tmp_path / "e.zarr")
    features = make_features()

    def crash(*args):
        raise KeyboardInterrupt("killed while writing shard statistics")

    monkeypatch.setattr(store_module, "block_moments", crash)
    with pytest.raises(KeyboardInterrupt):
        store.write_shard(1, features[48:96])
    monkeypatch.undo()
    assert open_store(tmp_path / "e.zarr").missing_shards() == [0, 1, 2, 3, 4]
    store.write_shard(1, features[48:96])
    assert store.missing_shards() == [0, 2, 3, 4]


def test_statistics_do_not_depend_on_shard_order(tmp_path):
    features = make_features()
    results = []
    for run, order in enumerate(([0, 1, 2, 3, 4], [4, 2, 0, 3, 1])):
        store = new_store(tmp_path / f"s{run}.zarr")
        write_shards(store, features, order)
        store.finalize()
        results.append((store.feature_mean, store.feature_std))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def _write_shards_in_child(path: str, shards: list[int]) -> None:
    store = open_store(path)
    write_shards(store, make_features(), shards)


@pytest.mark.integration
def test_two_processes_writing_disjoint_shards(tmp_path):
    features = make_features()
    reference = new_store(tmp_path / "serial.zarr")
    write_shards(reference, features, range(5))
    reference.finalize()

    path = str(tmp_path / "parallel.zarr")
    new_store(path)
    # spawn, not fork: zarr runs an event-loop thread that must not be forked mid-flight.
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_write_shards_in_child, args=(path, shards))
        for shards in ([0, 2, 4], [3, 1])
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0]

    parallel = open_store(path)
    assert parallel.missing_shards() == []
    parallel.finalize()
    assert array_files(tmp_path / "parallel.zarr", "features") == array_files(
        tmp_path / "serial.zarr", "features"
    )
    np.testing.assert_array_equal(parallel.feature_mean, reference.feature_mean)
    np.testing.assert_array_equal(parallel.feature_std, reference.feature_std)


# ------------------------------------------------------------------ bad rows


def test_float16_overflow_names_the_row(tmp_path):
    store = new_store(tmp_path / "e.zarr")
    features = make_features()
    features[100, 2] = 70000.0  # shard 2 holds rows 96..143
    with pytest.raises(ValueError, match=r"row 100 overflows float16.*dtype='float32'"):
        store.write_shard(2, features[96:144])
    assert 2 in store.missing_shards()  # nothing marked done

    wide = new_store(tmp_path / "wide.zarr", dtype="float32")
    wide.write_shard(2, features[96:144])
    np.testing.assert_array_equal(wide.features[100], features[100])


def test_largest_float16_is_accepted(tmp_path):
    store = new_store(tmp_path / "e.zarr")
    features = make_features()[:48]
    features[5, 0] = 65504.0
    store.write_shard(0, features)
    assert store.features[5, 0] == 65504.0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rows_name_dataset_indices(tmp_path, bad):
    store = new_store(tmp_path / "e.zarr")
    features = make_features()
    features[150, 1] = bad
    features[170, 4] = bad
    with pytest.raises(
        ValueError, match=r"features has 2 non-finite.*first at index 150.*150, 170"
    ):
        store.write_shard(3, features[144:192])
    assert store.missing_shards() == [0, 1, 2, 3, 4]


def test_store_from_array_validates_before_writing(tmp_path):
    features = make_features()
    features[229, 0] = np.nan
    with pytest.raises(ValueError, match="index 229"):
        store_from_array(tmp_path / "e.zarr", features, chunk_rows=CHUNK)
    assert not (tmp_path / "e.zarr").exists()


def test_write_shard_checks_shape_and_index(tmp_path):
    store = new_store(tmp_path / "e.zarr")
    features = make_features()
    with pytest.raises(ValueError, match=r"shape \(38, 6\).*got \(48, 6\)"):
        store.write_shard(4, features[:48])
    with pytest.raises(ValueError, match=r"shard must be in \[0, 5\)"):
        store.write_shard(5, features[:48])
    with pytest.raises(TypeError, match="real numbers"):
        store.write_shard(0, features[:48].astype(complex))


# ------------------------------------------------------------------ statistics and reading


@pytest.fixture
def full_store(tmp_path):
    features, labels = make_features(), make_labels()
    store = new_store(tmp_path / "full.zarr", with_labels=True)
    write_shards(store, features, [2, 4, 0, 1, 3], labels)
    store.finalize()
    return store, features, labels


def test_mean_std_match_numpy_float64_on_stored_values(full_store):
    store, features, _ = full_store
    stored = stored_float64(features)
    np.testing.assert_allclose(store.feature_mean, stored.mean(axis=0), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(store.feature_std, stored.std(axis=0), rtol=1e-12)
    assert store.attrs["feature_mean"] == store.feature_mean.tolist()  # JSON keeps float64 exact
    assert store.is_complete


@pytest.mark.parametrize("mode", NORMALIZATIONS)
def test_iter_chunks_matches_numpy_reference(full_store, mode):
    store, features, _ = full_store
    starts, blocks = zip(*store.iter_chunks(normalize=mode), strict=True)
    assert list(starts) == list(range(0, N_ROWS, CHUNK))
    assert all(block.dtype == np.float32 and block.shape[1] == DIM for block in blocks)
    expected = reference_normalize(stored_float64(features), mode)
    np.testing.assert_allclose(np.concatenate(blocks), expected, rtol=2e-5, atol=2e-6)


def test_iter_chunks_row_range_and_block_size(full_store):
    store, features, _ = full_store
    expected = reference_normalize(stored_float64(features), "standard")
    for prefetch in (True, False):
        got = list(store.iter_chunks("standard", rows=(20, 150), chunk_rows=32, prefetch=prefetch))
        assert [start for start, _ in got] == [20, 32, 64, 96, 128]  # boundaries on multiples
        np.testing.assert_allclose(
            np.concatenate([b for _, b in got]), expected[20:150], rtol=2e-5, atol=2e-6
        )
    assert list(store.iter_chunks("none", rows=range(7, 7))) == []
    assert [s for s, _ in store.iter_chunks("none", rows=slice(200, None))] == [200, 208, 224]


def test_read_rows_any_order_with_repeats(full_store):
    store, features, _ = full_store
    indices = np.array([229, 3, 50, 3, 0, 117])
    for mode in NORMALIZATIONS:
        expected = reference_normalize(stored_float64(features), mode)[indices]
        np.testing.assert_allclose(store.read_rows(indices, mode), expected, rtol=2e-5, atol=2e-6)
    assert store.read_rows([], "none").shape == (0, DIM)
    with pytest.raises(ValueError, match=r"indices\[1\] = 230"):
        store.read_rows([1, 230])
    with pytest.raises(ValueError, match=r"indices\[0\] = -1"):
        store.read_rows([-1])
    with pytest.raises(TypeError, match="integers"):
        store.read_rows([0.5])


def test_labels_round_trip(full_store, tmp_path):
    store, _, labels = full_store
    np.testing.assert_array_equal(store.labels(), labels)
    assert store.labels().dtype == np.int64
    unlabelled = new_store(tmp_path / "u.zarr")
    assert unlabelled.labels() is None
    features = make_features()
    with pytest.raises(ValueError, match="with_labels=False"):
        unlabelled.write_shard(0, features[:48], labels[:48])
    labelled = new_store(tmp_path / "l.zarr", with_labels=True)
    with pytest.raises(ValueError, match="labels are required"):
        labelled.write_shard(0, features[:48])
    with pytest.raises(TypeError, match="integer class ids"):
        labelled.write_shard(0, features[:48], labels[:48].astype(float))
    with pytest.raises(ValueError, match=r"shape \(48,\)"):
        labelled.write_shard(0, features[:48], labels[:40])


def test_standardisation_keeps_constant_dims_and_zero_rows_finite():
    block = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, 2.0], [2.0, 5.0, 2.0]])
    mean, std = block.mean(axis=0), block.std(axis=0)
    out = normalize_block(block, "standard", mean, std)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[:, 1:], 0.0, atol=1e-7)  # constant dims stay at zero
    np.testing.assert_allclose(out[2], 0.0)  # the mean row has norm 0: stays 0, not NaN
    np.testing.assert_allclose(np.linalg.norm(out[:2], axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(normalize_block(np.zeros((2, 3)), "l2"), 0.0)
    with pytest.raises(ValueError, match="needs the dataset-wide mean and std"):
        normalize_block(block, "standard")


def test_reading_requires_written_rows_and_finalize(tmp_path):
    features = make_features()
    store = new_store(tmp_path / "e.zarr")
    write_shards(store, features, [0, 1])
    with pytest.raises(ValueError, match=r"not finalized.*finalize\(\)"):
        store.iter_chunks("standard")
    with pytest.raises(ValueError, match=r"unwritten shards \(first: \[2, 3, 4\]\)"):
        store.iter_chunks("l2")
    rows = np.concatenate([b for _, b in store.iter_chunks("none", rows=(0, 96))])
    np.testing.assert_array_equal(rows, features[:96].astype(np.float16))
    with pytest.raises(ValueError, match="unwritten shards"):
        store.read_rows([10, 100], "none")
    with pytest.raises(
        ValueError, match=r"3 of 5 shards are not written yet \(first: \[2, 3, 4\]\)"
    ):
        store.finalize()


def test_finalized_store_refuses_further_writes(full_store):
    store, features, labels = full_store
    with pytest.raises(ValueError, match=r"finalized.*overwrite=True"):
        store.write_shard(0, features[:48], labels[:48])
    reader = open_store(store.path, read_only=True)
    with pytest.raises(PermissionError, match="read_only"):
        reader.finalize()


def test_is_complete_sees_finalize_from_another_handle(tmp_path):
    writer = new_store(tmp_path / "e.zarr")
    reader = open_store(tmp_path / "e.zarr", read_only=True)
    write_shards(writer, make_features(), range(5))
    assert not reader.is_complete
    writer.finalize()
    assert reader.is_complete
    assert reader.feature_mean is not None


# ------------------------------------------------------------------ fingerprints and reuse


def test_different_dataset_never_reuses_a_store(tmp_path):
    path = tmp_path / "e.zarr"
    old = new_store(path)
    write_shards(old, make_features(), range(5))
    old.finalize()

    other = {**ATTRS, "dataset_fingerprint": "another-dataset"}
    with pytest.raises(StoreMismatchError, match="dataset_fingerprint: stored 'synthetic-v1'"):
        new_store(path, attrs=other)
    with pytest.raises(StoreMismatchError, match="model_id"):
        new_store(path, attrs={**ATTRS, "model_id": "other-model"})
    with pytest.raises(StoreMismatchError, match="dtype"):
        new_store(path, dtype="float32")

    fresh = new_store(path, attrs=other, overwrite=True)
    assert fresh.missing_shards() == [0, 1, 2, 3, 4]
    assert fresh.dataset_fingerprint == "another-dataset"
    assert fresh.fingerprint != old.fingerprint
    assert np.isnan(np.asarray(fresh.features[:])).all()  # old rows are gone


def test_same_identity_reuses_store_even_with_new_code_version(tmp_path):
    path = tmp_path / "e.zarr"
    store = new_store(path)
    write_shards(store, make_features(), [0])
    again = new_store(path, attrs={**ATTRS, "code_version": "9.9.9"})
    assert again.missing_shards() == [1, 2, 3, 4]
    assert again.fingerprint == store.fingerprint


def test_attrs_may_echo_layout_values(tmp_path):
    store = new_store(tmp_path / "e.zarr", attrs={**ATTRS, "dtype": "float16", "n_rows": N_ROWS})
    assert store.dtype == "float16"
    assert store.fingerprint == new_store(tmp_path / "f.zarr").fingerprint


def test_fingerprint_covers_model_identity_not_layout(tmp_path):
    base = new_store(tmp_path / "a.zarr").fingerprint
    assert new_store(tmp_path / "b.zarr", chunk_rows=8, shard_rows=16).fingerprint == base
    assert new_store(tmp_path / "c.zarr", attrs={**ATTRS, "layer": "blocks.3"}).fingerprint != base
    assert new_store(tmp_path / "d.zarr", attrs={**ATTRS, "precision": "bf16"}).fingerprint != base


def test_never_deletes_what_is_not_an_embedding_store(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not a Zarr store"):
        new_store(folder, overwrite=True)
    foreign = tmp_path / "foreign.zarr"
    zarr.open_group(str(foreign), mode="w").attrs["x"] = 1
    with pytest.raises(ValueError, match="not a cl_curriculum embedding store"):
        new_store(foreign, overwrite=True)
    assert (folder / "keep.txt").read_text() == "precious"
    assert zarr.open_group(str(foreign), mode="r").attrs["x"] == 1


# ------------------------------------------------------------------ helpers and backends


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_store_from_array_round_trip(tmp_path, dtype):
    features, labels = make_features(), make_labels()
    store = store_from_array(tmp_path / "e.zarr", features, labels, chunk_rows=32, dtype=dtype)
    assert store.is_complete and store.dtype == dtype and store.shard_rows == 128
    assert store.dataset_fingerprint == array_fingerprint(features, labels)
    raw = np.concatenate([b for _, b in store.iter_chunks("none")])
    np.testing.assert_array_equal(raw, features.astype(dtype).astype(np.float32))
    np.testing.assert_array_equal(store.labels(), labels)
    # Same array again: the finished store is reused, not rewritten.
    again = store_from_array(tmp_path / "e.zarr", features, labels, chunk_rows=32, dtype=dtype)
    assert again.fingerprint == store.fingerprint
    with pytest.raises(StoreMismatchError):
        store_from_array(tmp_path / "e.zarr", features + 1, labels, chunk_rows=32, dtype=dtype)


def test_array_fingerprint_tracks_content():
    features = make_features()
    assert array_fingerprint(features) == array_fingerprint(features.copy())
    changed = features.copy()
    changed[117, 3] += 1e-3
    assert array_fingerprint(changed) != array_fingerprint(features)
    assert array_fingerprint(features, make_labels()) != array_fingerprint(features)
    assert array_fingerprint(features, block_rows=7) == array_fingerprint(features)


def test_empty_datasets_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"n_rows must be >= 1, got 0 \(an empty dataset"):
        create_store(tmp_path / "e.zarr", 0, DIM, attrs=ATTRS)
    with pytest.raises(ValueError, match="features is empty"):
        store_from_array(tmp_path / "e.zarr", np.zeros((0, DIM), dtype=np.float32))
    assert not (tmp_path / "e.zarr").exists()


@pytest.mark.parametrize(
    ("overrides", "error", "pattern"),
    [
        ({"shard_rows": 40}, ValueError, "multiple of chunk_rows=16"),
        ({"dtype": "float64"}, ValueError, "unknown dtype 'float64'; valid: float16, float32"),
        ({"chunk_rows": 0}, ValueError, "chunk_rows must be >= 1"),
        ({"attrs": {"model_id": "m"}}, ValueError, r"attrs\['dataset_fingerprint'\]"),
        ({"attrs": {**ATTRS, "n_rows": 3}}, ValueError, r"may not set \['n_rows'\].*n_rows=230"),
        ({"attrs": {**ATTRS, "feature_mean": [0.0]}}, ValueError, "may not set"),
        ({"attrs": {**ATTRS, "layer": object()}}, TypeError, "JSON-serialisable"),
        ({"attrs": "model"}, TypeError, "attrs must be a dict"),
    ],
)
def test_create_store_rejects_bad_arguments(tmp_path, overrides, error, pattern):
    with pytest.raises(error, match=pattern):
        new_store(tmp_path / "e.zarr", **overrides)


def test_bad_read_arguments(full_store):
    store, _, _ = full_store
    with pytest.raises(ValueError, match="unknown normalize 'zscore'; valid: standard, l2, none"):
        store.iter_chunks("zscore")
    with pytest.raises(ValueError, match=r"0 <= start <= stop <= 230"):
        store.iter_chunks("none", rows=(10, 500))
    with pytest.raises(FileNotFoundError, match="no embedding store"):
        open_store(Path(store.path).parent / "missing.zarr")


def test_file_url_and_memory_stores(tmp_path):
    features = make_features()
    url = (tmp_path / "url.zarr").as_uri()
    assert url.startswith("file://")
    by_url = store_from_array(url, features, chunk_rows=CHUNK, shard_rows=SHARD)
    by_path = open_store(tmp_path / "url.zarr", read_only=True)  # same bytes, plain path
    np.testing.assert_array_equal(
        by_path.read_rows([0, 229], "none"), by_url.read_rows([0, 229], "none")
    )

    memory = zarr.storage.MemoryStore()
    in_memory = store_from_array(memory, features, chunk_rows=CHUNK, shard_rows=SHARD)
    np.testing.assert_array_equal(open_store(memory).feature_mean, by_url.feature_mean)
    assert in_memory.fingerprint == by_url.fingerprint

    fsspec_memory = store_from_array(
        "memory://cl-store-test/e.zarr", features, chunk_rows=CHUNK, shard_rows=SHARD
    )
    np.testing.assert_array_equal(fsspec_memory.feature_std, by_url.feature_std)


def test_pickled_handle_reopens_the_store(full_store):
    store, features, _ = full_store
    clone = pickle.loads(pickle.dumps(store))
    assert clone.fingerprint == store.fingerprint and clone.missing_shards() == []
    np.testing.assert_array_equal(clone.read_rows([7], "none")[0], features[7].astype(np.float16))
