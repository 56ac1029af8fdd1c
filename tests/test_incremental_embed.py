"""Nightly runs embed what changed (issue 19): per-row file keys and per-file embedding reuse."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cl_core.store import FileKeys, create_store, open_store, store_from_array


def test_a_store_records_each_rows_file_key(tmp_path: Path) -> None:
    keys = FileKeys(
        root="/data/images",
        paths=np.array(["a/1.jpg", "b/2.jpg", "b/10.jpg"]),
        sizes=np.array([10, 20, 30]),
        mtimes_ns=np.array([5, 6, 7]),
    )
    attrs = {"dataset_fingerprint": "listing-1"}
    create_store(tmp_path / "s.zarr", 3, 2, chunk_rows=2, attrs=attrs, file_keys=keys)
    plain = create_store(tmp_path / "p.zarr", 3, 2, chunk_rows=2, attrs=attrs)
    store = open_store(tmp_path / "s.zarr", read_only=True)
    assert store.file_keys() == ["a/1.jpg", "b/2.jpg", "b/10.jpg"]
    records = store.file_records()
    assert records is not None and records.root == "/data/images" and records.method == "listing"
    assert records.sizes.tolist() == [10, 20, 30] and records.mtimes_ns.tolist() == [5, 6, 7]
    assert store.fingerprint == plain.fingerprint  # keys are not part of what the rows hold
    assert plain.file_keys() is None
    assert store_from_array(tmp_path / "a.zarr", np.ones((3, 2))).file_keys() is None
