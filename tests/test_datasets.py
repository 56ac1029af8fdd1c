"""Tests of cl_core.embed.datasets: accepted datasets, fingerprints, collation with shape checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from cl_core.embed.datasets import DigitsDataset, image_transform, resolve_dataset
from cl_core.embed.identity import dataset_fingerprint, fingerprint_indices


def _tensors(n: int = 10, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 3, 4, 4, generator=generator), torch.arange(n) % 3)


def test_digits_rendered_rgb_at_the_model_input_size_with_labels() -> None:
    spec = resolve_dataset("digits", image_size=32)
    assert isinstance(spec.dataset, DigitsDataset)
    assert spec.n_samples == 1797 and spec.kind == "image"
    image, label = spec.dataset[1]
    assert image.shape == (3, 32, 32)
    assert label == 1
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    mean, std = torch.tensor(IMAGENET_DEFAULT_MEAN), torch.tensor(IMAGENET_DEFAULT_STD)
    pixels = image * std[:, None, None] + mean[:, None, None]  # undo the model's normalisation
    torch.testing.assert_close(pixels[0], pixels[1])  # grey rendered to RGB: equal channels
    assert pixels.std() > 0.1  # a digit, not a blank square
    assert "32" in spec.dataset_id and "sklearn-digits" in spec.dataset_id


def test_digits_fingerprint_is_fixed_and_includes_the_size() -> None:
    assert dataset_fingerprint(resolve_dataset("digits", image_size=32)) == dataset_fingerprint(
        resolve_dataset("digits", image_size=32)
    )
    assert dataset_fingerprint(resolve_dataset("digits", image_size=32)) != dataset_fingerprint(
        resolve_dataset("digits", image_size=64)
    )


def test_imagefolder_uses_folders_as_labels(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            pixels = rng.integers(0, 255, size=(20, 30, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / cls / f"{i}.png")
    spec = resolve_dataset(f"imagefolder:{tmp_path}", image_size=16)
    assert spec.n_samples == 4
    image, label = spec.dataset[3]
    assert image.shape == (3, 16, 16) and label == 1
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        resolve_dataset(f"imagefolder:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        resolve_dataset(f"imagefolder:{tmp_path / 'empty'}")


def test_text_lists_and_unknown_names() -> None:
    spec = resolve_dataset(["a", "b"])
    assert spec.kind == "text" and spec.dataset[1] == "b"
    with pytest.raises(TypeError, match="item 1 is int"):
        resolve_dataset(["a", 3])
    with pytest.raises(ValueError, match="unknown dataset 'mnist'; valid: digits"):
        resolve_dataset("mnist")


def test_shuffled_dataloader_is_refused_sequential_one_accepted() -> None:
    data = _tensors()
    with pytest.raises(ValueError, match=r"RandomSampler.*shuffle=False"):
        resolve_dataset(DataLoader(data, shuffle=True))

    def collate(samples):
        return torch.stack([x for x, _ in samples]), torch.tensor([y for _, y in samples])

    spec = resolve_dataset(DataLoader(data, batch_size=4, collate_fn=collate))
    assert spec.dataset is data and spec.collate_fn is collate


def test_empty_and_iterable_datasets_are_refused() -> None:
    with pytest.raises(ValueError, match=r"is empty \(0 samples\)"):
        resolve_dataset(TensorDataset(torch.zeros(0, 3)))
    with pytest.raises(ValueError, match="is empty"):
        resolve_dataset([])

    class Stream(IterableDataset):
        def __iter__(self):
            yield torch.zeros(1)

    with pytest.raises(TypeError, match="IterableDataset"):
        resolve_dataset(Stream())


def test_fingerprint_samples_spread_over_the_dataset() -> None:
    indices = fingerprint_indices(1000)
    assert indices[0] == 0 and indices[-1] == 999 and len(indices) == 16
    assert fingerprint_indices(3) == [0, 1, 2]


def test_fingerprint_tracks_content_and_respects_dataset_id() -> None:
    first = dataset_fingerprint(_tensors(seed=0))
    assert first == dataset_fingerprint(_tensors(seed=0))
    assert first != dataset_fingerprint(_tensors(seed=1))
    assert first != dataset_fingerprint(_tensors(n=11, seed=0))
    assert dataset_fingerprint(_tensors(seed=0), "v1") == dataset_fingerprint(_tensors(1), "v1")
    assert dataset_fingerprint(["a", "b"]) != dataset_fingerprint(["a", "c"])


def test_fingerprint_of_unhashable_samples_asks_for_a_dataset_id() -> None:
    with pytest.raises(TypeError, match="pass dataset_id"):
        dataset_fingerprint([object(), object()])


def test_collator_names_the_first_sample_with_another_shape() -> None:
    from cl_core.embed.features import BatchCollator

    collate = BatchCollator()
    items = [(7, torch.zeros(3, 4)), (8, torch.zeros(3, 4)), (9, torch.zeros(3, 5))]
    with pytest.raises(ValueError, match=r"first bad index 9"):
        collate(items)
    indices, batch, failures = collate(items[:2])
    assert indices.tolist() == [7, 8] and batch.shape == (2, 3, 4) and failures == []


def test_image_transform_normalises_with_the_model_config() -> None:
    from PIL import Image

    config = {"input_size": (3, 8, 8), "mean": (0.5,) * 3, "std": (0.5,) * 3, "crop_pct": 1.0}
    white = Image.new("RGB", (8, 8), (255, 255, 255))
    torch.testing.assert_close(image_transform(config)(white), torch.ones(3, 8, 8))


def test_count_samples_matches_the_resolved_dataset_without_a_model(tmp_path: Path) -> None:
    """The CLI checks k against N with this before it loads any model."""
    from PIL import Image

    from cl_core.embed.datasets import count_samples

    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(3 if label == "a" else 2):
            Image.new("RGB", (8, 8)).save(tmp_path / label / f"{i}.png")
    assert count_samples("digits") == resolve_dataset("digits").n_samples == 1797
    folder = f"imagefolder:{tmp_path}"
    assert count_samples(folder) == resolve_dataset(folder).n_samples == 5
    with pytest.raises(ValueError, match="unknown dataset"):
        count_samples("mnist")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        count_samples(f"imagefolder:{tmp_path / 'missing'}")
