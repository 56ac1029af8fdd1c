"""Nightly runs embed what changed (issue 19): per-row file keys and per-file embedding reuse."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import zarr
from PIL import Image
from torch import nn

from cl_core.embed import EmbedConfig, embed_dataset, embed_shards, plan_store
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


# --------------------------------------------------------------------------------------------
# Reuse through the embedding stage (library level, CPU, a tiny random-weight CNN)
# --------------------------------------------------------------------------------------------

N_FILES = 100  # so that one file is 1%


class _CountingCNN(nn.Module):
    """A random-weight CNN that counts the distinct images it embeds (the probe's included;
    a batch padded with copies of a sample counts it once)."""

    def __init__(self, seed: int = 0, channels: int = 6) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, channels, 3)
        self.samples = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.samples += len({image.numpy().tobytes() for image in x})
        return self.conv(x)


class _OtherCNN(_CountingCNN):
    """Another architecture (another model id)."""


def _write_image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, size=(20, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")


def _folder(root: Path, n_files: int = N_FILES) -> Path:
    for index in range(n_files):
        _write_image(root / f"c{index % 2}" / f"{index:03d}.jpg", index)
    return root


def _config(model: nn.Module, **options: Any) -> EmbedConfig:
    base = dict(
        model=model,
        device="cpu",
        image_size=16,
        batch_size=8,
        chunk_rows=8,
        shard_rows=16,
        dtype="float32",
        num_workers=0,
        n_threads=1,
    )
    return EmbedConfig(**{**base, **options})


def _embed(root: Path, path: Path, model: nn.Module, reuse_from: Any, **options: Any) -> Any:
    return embed_dataset(
        f"imagefolder:{root}", path, _config(model, **options), reuse_from=reuse_from
    )


def _rows_by_path(store: Any) -> dict[str, bytes]:
    features = np.asarray(store.features[:])
    return {path: features[i].tobytes() for i, path in enumerate(store.file_keys())}


def _file_digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def yesterday(tmp_path: Path) -> tuple[Path, Path]:
    """An image folder of 100 JPEGs and the store a first run made of it."""
    root = _folder(tmp_path / "images")
    first = _embed(root, tmp_path / "work" / "day1.zarr", _CountingCNN(), [])
    assert first.reuse == {"reused": 0, "embedded": N_FILES, "reason": "no previous store"}
    return root, tmp_path / "work" / "day1.zarr"


def _check_against_clean_run(store: Any, root: Path, tmp_path: Path) -> None:
    """Same rows as a run from an empty work dir, bit for bit (fp32 on CPU, one torch thread),
    same labels, same statistics."""
    clean = _embed(root, tmp_path / "clean" / "e.zarr", _CountingCNN(), None)
    assert store.fingerprint == clean.fingerprint
    assert np.asarray(store.features[:]).tobytes() == np.asarray(clean.features[:]).tobytes()
    assert np.array_equal(store.labels(), clean.labels())
    assert np.array_equal(store.feature_mean, clean.feature_mean)
    assert np.array_equal(store.feature_std, clean.feature_std)


@pytest.mark.parametrize("case", ["added", "added_new_class", "changed", "touched", "removed"])
def test_a_changed_listing_embeds_only_what_changed(
    yesterday: tuple[Path, Path], tmp_path: Path, case: str
) -> None:
    """(a) +1% files, (b) one file changed, (c) 1% removed: today's code embedded all rows."""
    root, old_path = yesterday
    old_files = _file_digests(old_path)
    if case == "added":
        _write_image(root / "c1" / "050a.jpg", 1000)  # lands mid-listing, in a middle shard
    elif case == "added_new_class":
        _write_image(root / "a_new" / "x.jpg", 1000)  # every label shifts by one
    elif case == "changed":
        _write_image(root / "c0" / "042.jpg", 2000)
    elif case == "touched":  # same bytes, new mtime: a listing identity re-embeds it
        os.utime(root / "c1" / "017.jpg", ns=(1, 1))
    else:
        (root / "c0" / "010.jpg").unlink()
    model = _CountingCNN()
    store = _embed(root, tmp_path / "work" / "day2.zarr", model, [old_path])
    figures = store.reuse
    expected = {"added": 0, "changed": 0, "removed": 0}
    expected[{"added_new_class": "added", "touched": "changed"}.get(case, case)] = 1
    embedded = expected["added"] + expected["changed"]
    assert {key: figures[key] for key in expected} == expected
    assert figures["reused"] == store.n_rows - embedded and figures["embedded"] == embedded
    assert figures["parent_path"] == str(old_path)
    assert model.samples == 1 + embedded  # the probe's sample 0, then only the new rows
    reused = store.reused_rows()
    assert reused is not None and int((~reused).sum()) == embedded
    old_rows, new_rows = _rows_by_path(open_store(old_path)), _rows_by_path(store)
    copied = np.asarray(store.file_keys())[reused]
    assert all(new_rows[path] == old_rows[path] for path in copied)  # byte-identical copies
    assert _file_digests(old_path) == old_files  # yesterday's store is never modified
    _check_against_clean_run(store, root, tmp_path)


@pytest.mark.parametrize("memory", ["kept", "read again"])
def test_the_copy_reads_the_verified_rows_or_reads_them_again_beyond_the_budget(
    yesterday: tuple[Path, Path], tmp_path: Path, memory: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows the parent's verification read are copied from memory (kept), or, once they
    exceed ``REUSE_MEMORY_BYTES``, read again shard by shard: the same bytes either way."""
    import cl_core.store.reuse as reuse

    if memory == "read again":
        monkeypatch.setattr(reuse, "REUSE_MEMORY_BYTES", 3 * 16 * 6 * 4)  # 3 of its 7 shards
    root, old_path = yesterday
    (root / "c0" / "010.jpg").unlink()
    _write_image(root / "c1" / "050a.jpg", 1000)
    store = _embed(root, tmp_path / "work" / "day2.zarr", _CountingCNN(), [old_path])
    assert (store.reuse["reused"], store.reuse["embedded"]) == (N_FILES - 1, 1)
    reused = store.reused_rows()
    old_rows, new_rows = _rows_by_path(open_store(old_path)), _rows_by_path(store)
    assert all(new_rows[p] == old_rows[p] for p in np.asarray(store.file_keys())[reused])
    _check_against_clean_run(store, root, tmp_path)


def test_fully_copied_shards_are_done_before_any_embedding(
    yesterday: tuple[Path, Path], tmp_path: Path
) -> None:
    """Only shards holding new rows are left to embed (each a task with --dask-address)."""
    root, old_path = yesterday
    _write_image(root / "c1" / "099a.jpg", 1000)  # the last file: the last shard
    store = plan_store(
        f"imagefolder:{root}",
        tmp_path / "work" / "day2.zarr",
        _config(_CountingCNN()),
        reuse_from=[old_path],
    )
    assert store.missing_shards() == [store.n_shards - 1]
    embed_shards(store, f"imagefolder:{root}", _config(_CountingCNN()))
    store.finalize()
    _check_against_clean_run(store, root, tmp_path)


def test_another_model_reuses_nothing_and_says_why(
    yesterday: tuple[Path, Path], tmp_path: Path
) -> None:
    root, old_path = yesterday
    _write_image(root / "c1" / "050a.jpg", 1000)
    model = _OtherCNN()
    store = _embed(root, tmp_path / "work" / "other.zarr", model, [old_path])
    assert store.reuse == {"reused": 0, "embedded": N_FILES + 1, "reason": "model differs"}
    assert model.samples == 1 + N_FILES + 1
    assert store.reused_rows() is None
    weights = _embed(root, tmp_path / "work" / "w.zarr", _CountingCNN(seed=1), [old_path])
    assert weights.reuse["reason"] == "weights differ"
    precision = _embed(
        root, tmp_path / "work" / "p.zarr", _CountingCNN(), [old_path], dtype="float16"
    )
    assert precision.reuse["reason"] == "storage dtype differs"


def test_the_most_recent_store_of_the_same_configuration_is_the_parent(
    yesterday: tuple[Path, Path], tmp_path: Path
) -> None:
    root, old_path = yesterday
    _write_image(root / "c1" / "050a.jpg", 1000)
    other = _embed(root, tmp_path / "work" / "other.zarr", _OtherCNN(), [old_path])
    middle = _embed(root, tmp_path / "work" / "day2.zarr", _CountingCNN(), [old_path, other.path])
    assert middle.reuse["parent_path"] == str(old_path)
    _write_image(root / "c0" / "060a.jpg", 1001)
    candidates = [old_path, other.path, middle.path]
    latest = _embed(root, tmp_path / "work" / "day3.zarr", _CountingCNN(), candidates)
    assert latest.reuse["parent_path"] == str(middle.path)
    assert latest.reuse["added"] == 1 and latest.reuse["reused"] == N_FILES + 1


@pytest.mark.parametrize("damage", ["garbled chunk", "lost chunk", "changed row"])
def test_a_previous_store_that_fails_verification_is_not_used(
    yesterday: tuple[Path, Path], tmp_path: Path, damage: str
) -> None:
    root, old_path = yesterday
    _write_image(root / "c1" / "050a.jpg", 1000)
    chunk = old_path / "features" / "c" / "2" / "0"
    if damage == "garbled chunk":
        chunk.write_bytes(b"\x00garbage" * 10)
    elif damage == "lost chunk":
        chunk.unlink()
    else:
        features = zarr.open_array(old_path / "features", mode="r+")
        features[17, 0] = features[17, 0] + 1.0
    model = _CountingCNN()
    store = _embed(root, tmp_path / "work" / "day2.zarr", model, [old_path])
    reason = store.reuse["reason"]
    assert store.reuse["reused"] == 0 and reason.startswith(
        "previous store day1 failed verification"
    )
    assert "shard 1" in reason  # rows 16..31: the damaged chunk's shard
    assert model.samples == 1 + N_FILES + 1
    _check_against_clean_run(store, root, tmp_path)


def test_content_keys_reuse_a_file_whose_mtime_alone_changed(tmp_path: Path) -> None:
    root = _folder(tmp_path / "images", 20)
    config = _config(_CountingCNN())
    old = embed_dataset(
        f"imagefolder:{root}", tmp_path / "a.zarr", config, verify_content=True, reuse_from=[]
    )
    assert old.file_records().method == "content"
    os.utime(root / "c1" / "013.jpg", ns=(1, 1))
    _write_image(root / "c0" / "004.jpg", 3000)
    model = _CountingCNN()
    new = embed_dataset(
        f"imagefolder:{root}",
        tmp_path / "b.zarr",
        _config(model),
        verify_content=True,
        reuse_from=[old.path],
    )
    assert new.reuse["changed"] == 1 and new.reuse["reused"] == 19 and model.samples == 2
    listing = _embed(root, tmp_path / "c.zarr", _CountingCNN(), [old.path])
    assert listing.reuse["reason"] == "file identity differs (listing vs --verify-content)"


@pytest.mark.integration  # DataLoader worker processes
def test_reuse_through_dataloader_workers(yesterday: tuple[Path, Path], tmp_path: Path) -> None:
    root, old_path = yesterday
    _write_image(root / "c0" / "030a.jpg", 1000)
    (root / "c1" / "071.jpg").unlink()
    model = _CountingCNN()
    store = _embed(root, tmp_path / "work" / "day2.zarr", model, [old_path], num_workers=2)
    assert (store.reuse["added"], store.reuse["removed"], store.reuse["reused"]) == (1, 1, 99)
    assert model.samples == 1 + 1
    _check_against_clean_run(store, root, tmp_path)
