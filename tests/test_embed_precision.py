"""CPU bf16 and channels-last defaults, and resolved options in the embedding identity (issue 10).

``precision="auto"`` is bf16 on CPUs with native bf16 matrix units (AMX-BF16 / AVX512-BF16) and
fp32 on others; the CPU flag reader is mocked so every branch runs on any machine. The resolved
precision and decode path (never ``auto``) are what the store records and what identifies it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import TensorDataset

import cl_core.embed.plan as plan_module
from cl_core.embed import (
    EmbedConfig,
    embed_dataset,
    plan_inference,
    prefers_channels_last,
    resolve_decode,
    resolve_precision,
)
from cl_core.embed.datasets import resolve_dataset
from cl_core.embed.identity import dataset_identity
from cl_core.embed.models import load_model

CPU = torch.device("cpu")


class ConvNet(nn.Module):
    """Two convolutions: a convolutional model (channels-last by default on CPU in bf16)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class PatchNet(nn.Module):
    """A ViT-like model: one patch-embedding convolution, then tokens."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.patch = nn.Conv2d(3, 8, 4, stride=4)
        self.block = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.patch(x).flatten(2).transpose(1, 2))


@pytest.fixture
def flags(monkeypatch: pytest.MonkeyPatch):
    """Set the CPU flags resolve_precision sees."""

    def set_flags(*names: str) -> None:
        monkeypatch.setattr(plan_module, "cpu_flags", lambda: frozenset(names))

    return set_flags


@pytest.mark.parametrize(
    ("cpu_flags", "expected"),
    [
        (("fpu", "avx512f", "amx_tile", "amx_bf16"), "bf16"),  # Sapphire Rapids
        (("fpu", "avx512f", "avx512_bf16"), "bf16"),  # Cooper Lake, Zen 4
        (("fpu", "avx2", "avx512f", "avx512bw"), "fp32"),  # Skylake: bf16 only emulated
        ((), "fp32"),  # no /proc/cpuinfo (macOS, Windows)
    ],
)
def test_auto_precision_on_cpu_follows_native_bf16(flags, cpu_flags, expected) -> None:
    flags(*cpu_flags)
    assert resolve_precision("auto", CPU) == expected
    assert resolve_precision("fp32", CPU) == "fp32"  # explicit values are kept
    assert resolve_precision("bf16", CPU) == "bf16"


def test_auto_precision_on_cuda_is_unchanged(flags, monkeypatch: pytest.MonkeyPatch) -> None:
    flags()
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", cuda) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", cuda) == "fp16"


def test_cpu_flags_come_from_the_flags_line_of_proc_cpuinfo() -> None:
    flags = plan_module.cpu_flags()
    assert isinstance(flags, frozenset)
    if Path("/proc/cpuinfo").exists():
        line = next(
            line
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("flags")
        )
        assert flags == frozenset(line.partition(":")[2].split())
    assert plan_module.cpu_flags() is flags  # read once


def test_channels_last_default_for_convolutional_models_only() -> None:
    assert prefers_channels_last(ConvNet())
    assert not prefers_channels_last(PatchNet())  # only a patch embedding
    assert not prefers_channels_last(nn.Linear(3, 3))
    assert not prefers_channels_last(lambda x: x)
    data = TensorDataset(torch.randn(4, 3, 8, 8))

    def plan(model: nn.Module, **options):
        return plan_inference(data, EmbedConfig(model=model, device="cpu", **options))

    assert plan(ConvNet(), precision="bf16").use_channels_last
    assert not plan(PatchNet(), precision="bf16").use_channels_last
    assert not plan(ConvNet(), precision="fp32").use_channels_last  # fp32: no clear gain
    assert not plan(ConvNet(), precision="bf16", channels_last=False).use_channels_last
    assert plan(PatchNet(), precision="fp32", channels_last=True).use_channels_last


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("model", [ConvNet, PatchNet], ids=["conv", "patch"])
def test_bf16_features_match_fp32(tmp_path: Path, model) -> None:
    data = TensorDataset(torch.randn(24, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    options = dict(device="cpu", batch_size=8, chunk_rows=8, dtype="float32")
    fp32 = embed_dataset(
        data, tmp_path / "fp32.zarr", EmbedConfig(model=model(), precision="fp32", **options)
    )
    bf16 = embed_dataset(
        data, tmp_path / "bf16.zarr", EmbedConfig(model=model(), precision="bf16", **options)
    )
    assert _cosines(np.asarray(bf16.features[:]), np.asarray(fp32.features[:])).min() >= 0.99
    assert (fp32.attrs["precision"], bf16.attrs["precision"]) == ("fp32", "bf16")
    assert fp32.fingerprint != bf16.fingerprint


def test_store_records_the_resolved_precision(tmp_path: Path, flags) -> None:
    data = TensorDataset(torch.randn(8, 3, 8, 8))
    options = dict(model=ConvNet(), device="cpu", chunk_rows=4, dtype="float32")
    flags("amx_bf16")
    native = embed_dataset(data, tmp_path / "a.zarr", EmbedConfig(**options))
    flags("avx2")
    plain = embed_dataset(data, tmp_path / "b.zarr", EmbedConfig(**options))
    assert native.attrs["precision"] == "bf16" and plain.attrs["precision"] == "fp32"
    assert native.fingerprint != plain.fingerprint
    explicit = embed_dataset(data, tmp_path / "c.zarr", EmbedConfig(**options, precision="bf16"))
    assert explicit.fingerprint == native.fingerprint  # auto -> bf16 is the same embedding


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for index in range(4):
        (tmp_path / "images" / f"c{index % 2}").mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(index).integers(0, 255, (20, 20, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "images" / f"c{index % 2}" / f"{index}.png")
    return tmp_path / "images"


def test_decode_auto_resolves_before_it_identifies(folder: Path) -> None:
    loaded = load_model(ConvNet())
    files = resolve_dataset(f"imagefolder:{folder}", image_size=16)
    digits = resolve_dataset("digits", image_size=16)
    assert resolve_decode("auto", files, loaded, CPU) == "cpu"
    assert resolve_decode("cpu", files, loaded, CPU) == "cpu"
    assert resolve_decode("auto", digits, loaded, CPU) == "dataset"
    with pytest.raises(ValueError, match="CUDA"):
        resolve_decode("gpu", files, loaded, CPU)
    with pytest.raises(ValueError, match="loads its own"):
        resolve_decode("gpu", digits, loaded, CPU)


def test_flow_embed_identity_uses_the_resolved_decode(folder: Path) -> None:
    """decode="auto" entered the flow's embedding id unresolved: "auto" and "cpu", the same
    embedding on a CPU machine, got different ids (and "auto" on a GPU machine, a different
    embedding, the same id as "auto" on a CPU one)."""
    from flows.params import EmbedParams
    from flows.stages.embed import embed_identity

    loaded = load_model(ConvNet())
    spec = resolve_dataset(f"imagefolder:{folder}", image_size=16)
    fingerprint = dataset_identity(spec).fingerprint
    ids = {
        decode: embed_identity(
            fingerprint, loaded, EmbedParams(device="cpu", decode=decode, image_size=16), spec
        )
        for decode in ("auto", "cpu")
    }
    assert ids["auto"] == ids["cpu"]
