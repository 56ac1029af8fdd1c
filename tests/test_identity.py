"""Dataset identity: an image folder is identified by its full listing (issue 11, item 1).

The old fingerprint hashed the length and ~16 sampled items, so replacing an image it did not
sample (same name, same folder) left the identity, and with it every cached stage, unchanged.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from cl_core.embed.datasets import resolve_dataset
from cl_core.embed.files import ImageFiles, scan_image_folder
from cl_core.embed.identity import (
    DatasetIdentity,
    dataset_fingerprint,
    dataset_identity,
    fingerprint_indices,
)

N_IMAGES = 24  # 3 classes x 8; fingerprint_indices(24) does not include index 1


def _write_image(path: Path, seed: int, size: tuple[int, int] = (20, 16)) -> None:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    for index in range(N_IMAGES):
        label = index // 8
        (root / f"class{label}").mkdir(parents=True, exist_ok=True)
        _write_image(root / f"class{label}" / f"{index:03d}.png", seed=index)
    return root


def _identity(root: Path, **options) -> DatasetIdentity:
    return dataset_identity(resolve_dataset(f"imagefolder:{root}", image_size=16), **options)


def _bump_mtime(path: Path, seconds: int = 7) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + seconds * 10**9))


def test_same_listing_gives_the_same_identity(folder: Path) -> None:
    first = _identity(folder)
    assert first == _identity(folder)
    assert first.method == "listing" and "24 files" in first.detail
    assert first.complete


def test_replacing_an_unsampled_image_in_place_changes_the_identity(folder: Path) -> None:
    assert 1 not in fingerprint_indices(N_IMAGES)  # the old fingerprint never looked at it
    before = _identity(folder)
    victim = folder / "class0" / "001.png"
    _write_image(victim, seed=999)  # same name, same size, other pixels
    _bump_mtime(victim)  # a rewrite within the clock's resolution still gets a new mtime here
    after = _identity(folder)
    assert after != before
    assert dataset_fingerprint(f"imagefolder:{folder}") != before.fingerprint


def test_adding_or_removing_a_file_changes_the_identity(folder: Path) -> None:
    before = _identity(folder)
    _write_image(folder / "class1" / "extra.png", seed=5)
    added = _identity(folder)
    assert added != before
    (folder / "class1" / "extra.png").unlink()
    assert _identity(folder) == before  # back to the same listing
    (folder / "class2" / "020.png").unlink()
    assert _identity(folder) != before


def test_the_preprocessing_is_part_of_the_identity(folder: Path) -> None:
    small = dataset_identity(resolve_dataset(f"imagefolder:{folder}", image_size=16))
    large = dataset_identity(resolve_dataset(f"imagefolder:{folder}", image_size=32))
    assert small != large


def test_verify_content_sees_a_change_that_keeps_size_and_mtime(folder: Path) -> None:
    victim = folder / "class0" / "001.png"
    stat = victim.stat()
    listing, content = _identity(folder), _identity(folder, verify_content=True)
    assert content.method == "content" and content != listing
    data = bytearray(victim.read_bytes())
    data[-20] ^= 0xFF  # same size
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: a lying file system
    assert _identity(folder) == listing  # what the listing cannot see ...
    assert _identity(folder, verify_content=True) != content  # ... the content hash does


def test_image_files_match_torchvision_image_folder_order_and_labels(tmp_path: Path) -> None:
    from torchvision.datasets import ImageFolder

    root = tmp_path / "tree"
    names = [
        "b/z.png",
        "b/a.JPG",
        "b/sub/c.png",
        "b/sub-x/d.png",
        "b/sub/deeper/e.jpeg",
        "a/y.png",
        "a/x.webp",
        "c/only.bmp",
    ]
    for position, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        _write_image(root / name, seed=position)
    (root / "a" / "notes.txt").write_text("not an image")
    ours = ImageFiles(scan_image_folder(root))
    theirs = ImageFolder(str(root))
    assert ours.samples == theirs.samples
    assert ours.classes == theirs.classes and ours.targets == theirs.targets
    clone = pickle.loads(pickle.dumps(ours))
    assert clone.path(3) == ours.path(3) and len(clone) == len(ours)


def test_an_image_folder_pickles_small(folder: Path) -> None:
    spec = resolve_dataset(f"imagefolder:{folder}", image_size=16)
    assert isinstance(spec.dataset, ImageFiles)
    assert len(pickle.dumps(spec.dataset.__dict__["_names"])) < 2000


class _Generic(Dataset):
    def __init__(self, values: torch.Tensor) -> None:
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.values[index]


def test_methods_of_other_datasets() -> None:
    x = torch.arange(100.0).reshape(50, 2)
    assert dataset_identity(TensorDataset(x)).method == "array"
    changed = x.clone()
    changed[1, 0] = -1  # not a sampled index: in-memory data is hashed whole
    assert dataset_identity(TensorDataset(changed)) != dataset_identity(TensorDataset(x))
    assert dataset_identity(["a", "b"]).method == "array"
    sampled = dataset_identity(_Generic(x))
    assert sampled.method == "sampled" and not sampled.complete
    assert "dataset_id" in sampled.detail
    explicit = dataset_identity(_Generic(x), "v1")
    assert explicit.method == "explicit" and explicit == dataset_identity(_Generic(changed), "v1")
    assert dataset_identity(_Generic(x), explicit) is explicit  # computed once, passed on
    assert dataset_identity(resolve_dataset("digits", image_size=8)).method == "explicit"
    assert dataset_fingerprint(_Generic(x), "v1") == explicit.fingerprint


def test_identity_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="dataset_id must be a non-empty string"):
        dataset_identity(["a"], "")
    with pytest.raises(ValueError, match="unknown identity method 'guess'"):
        DatasetIdentity("0" * 64, "guess")
    with pytest.raises(ValueError, match="fingerprint must be 64 hex"):
        DatasetIdentity("abc", "listing")


class _TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_a_changed_folder_is_not_served_from_the_old_store(folder: Path, tmp_path: Path) -> None:
    from cl_core.embed import EmbedConfig, embed_dataset, plan_store
    from cl_core.store import StoreMismatchError

    config = EmbedConfig(
        model=_TinyCNN(), device="cpu", image_size=16, batch_size=8, chunk_rows=8, num_workers=0
    )
    store = embed_dataset(f"imagefolder:{folder}", tmp_path / "e.zarr", config)
    assert store.attrs["dataset_identity_method"] == "listing"
    victim = folder / "class0" / "001.png"
    _write_image(victim, seed=999)
    _bump_mtime(victim)
    with pytest.raises(StoreMismatchError, match="dataset_fingerprint"):
        plan_store(f"imagefolder:{folder}", tmp_path / "e.zarr", config)
