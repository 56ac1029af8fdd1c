"""Samples that cannot be loaded (issue 11, item 4): named, never retried, or skipped and recorded.

The old code let a truncated JPEG fail the whole run with "Truncated File Read" (from a DataLoader
worker: a generic worker error), naming neither the file nor its index.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cl_core.embed import BadSampleError, EmbedConfig, embed_dataset
from cl_core.store import create_store

N_GOOD = 10


class _TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, size=(24, 30, 3), dtype=np.uint8))


def _folder(root: Path, with_bad: bool) -> Path:
    """10 good images in two classes (JPEG and PNG), plus a truncated JPEG and a zero-byte PNG."""
    for index in range(N_GOOD):
        folder = root / f"c{index % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        suffix = "jpg" if index % 3 else "png"
        _image(index).save(folder / f"{index:02d}.{suffix}")
    if with_bad:
        buffer = io.BytesIO()
        _image(100).save(buffer, format="JPEG")
        (root / "c0" / "03a-truncated.jpg").write_bytes(buffer.getvalue()[:300])
        (root / "c1" / "07a-empty.png").write_bytes(b"")
    return root


def _config(**options) -> EmbedConfig:
    base = dict(
        model=_TinyCNN(),
        device="cpu",
        image_size=16,
        batch_size=4,
        chunk_rows=4,
        shard_rows=8,
        dtype="float32",
    )
    return EmbedConfig(**{**base, **options})


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.integration)])
def test_a_bad_file_is_named_with_index_and_path(tmp_path: Path, workers: int) -> None:
    root = _folder(tmp_path / "images", with_bad=True)
    with pytest.raises(BadSampleError) as caught:
        embed_dataset(f"imagefolder:{root}", tmp_path / "e.zarr", _config(num_workers=workers))
    error = caught.value
    assert error.index == 2 and error.path.endswith("03a-truncated.jpg")  # c0: 00, 02, 03a ...
    assert "on_bad_sample='skip'" in str(error) and "03a-truncated.jpg" in str(error)
    assert error.reason


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.integration)])
def test_skip_embeds_the_rest_and_records_the_bad_files(tmp_path: Path, workers: int) -> None:
    root = _folder(tmp_path / "images", with_bad=True)
    config = _config(num_workers=workers, on_bad_sample="skip")
    store = embed_dataset(f"imagefolder:{root}", tmp_path / "e.zarr", config)
    n = N_GOOD + 2
    assert store.shape[0] == n and store.is_complete
    np.testing.assert_array_equal(store.skipped_indices, [2, 10])
    assert store.skipped_indices.dtype == np.int64
    paths = [record["path"] for record in store.skipped_samples]
    assert paths[0].endswith("03a-truncated.jpg") and paths[1].endswith("07a-empty.png")
    assert all(record["reason"] for record in store.skipped_samples)

    features = np.asarray(store.features[:])
    assert np.isfinite(features).all()
    assert not features[[2, 10]].any()  # zero rows
    labels = store.labels()
    assert labels[2] == -1 and labels[10] == -1

    # The good rows are exactly what a folder without the bad files gives ...
    clean_root = _folder(tmp_path / "clean", with_bad=False)
    clean = embed_dataset(f"imagefolder:{clean_root}", tmp_path / "c.zarr", _config(num_workers=0))
    good = np.setdiff1d(np.arange(n), [2, 10])
    np.testing.assert_allclose(features[good], clean.features[:], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(labels[good], clean.labels())
    # ... and the statistics leave the skipped rows out.
    np.testing.assert_allclose(store.feature_mean, clean.feature_mean, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(store.feature_std, clean.feature_std, rtol=1e-9, atol=1e-9)

    for normalize in ("standard", "l2", "none"):
        blocks = [block for _, block in store.iter_chunks(normalize)]
        assert all(np.isfinite(block).all() for block in blocks)
        assert np.isfinite(store.read_rows(np.arange(n), normalize)).all()


def test_a_store_with_skipped_samples_is_an_error_under_the_error_policy(tmp_path: Path) -> None:
    root = _folder(tmp_path / "images", with_bad=True)
    path = tmp_path / "e.zarr"
    embed_dataset(f"imagefolder:{root}", path, _config(num_workers=0, on_bad_sample="skip"))
    with pytest.raises(BadSampleError, match=r"03a-truncated\.jpg"):
        embed_dataset(f"imagefolder:{root}", path, _config(num_workers=0))


def test_bad_sample_error_survives_pickling() -> None:
    error = BadSampleError(7, "/data/x.jpg", "OSError: image file is truncated")
    clone = pickle.loads(pickle.dumps(error))
    assert isinstance(clone, BadSampleError) and isinstance(clone, ValueError)
    assert (clone.index, clone.path, clone.reason) == (7, "/data/x.jpg", error.reason)
    assert str(clone) == str(error)
    assert str(BadSampleError(3, None, "boom")).startswith("sample 3 could not be loaded: boom")


def test_config_validates_the_policies() -> None:
    with pytest.raises(ValueError, match="on_bad_sample"):
        EmbedConfig(on_bad_sample="ignore")
    with pytest.raises(ValueError, match="decode"):
        EmbedConfig(decode="npu")


def test_store_records_skipped_rows_as_zeros_outside_the_statistics(tmp_path: Path) -> None:
    store = create_store(
        tmp_path / "s.zarr", 8, 2, chunk_rows=4, attrs={"dataset_fingerprint": "x"}
    )
    rows = np.arange(16, dtype=np.float32).reshape(8, 2)
    rows[5] = np.nan  # whatever a skipped row holds is replaced by zeros
    skipped = [{"index": 5, "path": "b.png", "reason": "empty"}]
    store.write_shard(0, rows, skipped=skipped)
    store.finalize()
    np.testing.assert_array_equal(store.features[5], [0, 0])
    kept = np.delete(np.arange(16, dtype=np.float64).reshape(8, 2), 5, axis=0)
    np.testing.assert_allclose(store.feature_mean, kept.mean(0))
    np.testing.assert_allclose(store.feature_std, kept.std(0))
    assert store.skipped_samples == [{"index": 5, "path": "b.png", "reason": "empty"}]
    assert store.attrs["n_skipped"] == 1

    other = create_store(
        tmp_path / "t.zarr", 8, 2, chunk_rows=4, attrs={"dataset_fingerprint": "x"}
    )
    with pytest.raises(ValueError, match=r"outside this shard's rows 0\.\.7"):
        other.write_shard(0, rows, skipped=[{"index": 9, "path": None, "reason": ""}])
    everything = [{"index": i, "path": None, "reason": "bad"} for i in range(8)]
    other.write_shard(0, rows, skipped=everything)
    with pytest.raises(ValueError, match="all 8 samples were skipped"):
        other.finalize()
