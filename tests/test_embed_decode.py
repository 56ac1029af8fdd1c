"""Decoding image folders (issue 10): the light CPU path and the batched (GPU) path.

The batched path is the code that runs on CUDA with nvJPEG; here it runs with the CPU decoder on
the CPU device, so CI covers everything but the device. A ``gpu`` test covers CUDA itself.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cl_core.embed import EmbedConfig, embed_dataset
from cl_core.embed.datasets import image_transform, resolved_data_config
from cl_core.embed.files import ImageFiles
from cl_core.embed.inference import run_shards
from cl_core.embed.plan import InferencePlan
from cl_core.embed.stage import prepare_job
from cl_core.store import create_store

SIZE = 32


class SpatialNet(nn.Module):
    """Features that keep the layout (a flattened coarse map), so decoding differences show."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 4, stride=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).flatten(1)


def _picture(seed: int, width: int, height: int) -> np.ndarray:
    """A smooth picture (gradients and a blob): survives reduced-size JPEG decoding."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(width, height)
    centre = rng.uniform(0.2, 0.8, 2)
    blob = np.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) * 20)
    channels = [np.sin(xx * rng.uniform(2, 6)) * 0.5 + 0.5, yy, blob]
    return (np.stack(channels, -1) * 255).astype(np.uint8)


def _varied_folder(root: Path, bad: bool = False) -> Path:
    """ImageNet-like variety: sizes 60-140 px, a grayscale and a CMYK JPEG, a PNG."""
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    rng = np.random.default_rng(0)
    for index in range(12):
        width, height = (int(v) for v in rng.integers(60, 140, 2))
        image = Image.fromarray(_picture(index, width, height))
        folder = root / ("a" if index % 2 else "b")
        if index == 3:
            image.convert("L").save(folder / f"{index:02d}.jpg", quality=95)
        elif index == 5:
            image.convert("CMYK").save(folder / f"{index:02d}.jpg", quality=95)
        elif index == 7:
            image.save(folder / f"{index:02d}.png")
        else:
            image.save(folder / f"{index:02d}.jpg", quality=95)
    if bad:
        buffer = io.BytesIO()
        Image.fromarray(_picture(99, 80, 80)).save(buffer, format="JPEG")
        (root / "a" / "04x-truncated.jpg").write_bytes(buffer.getvalue()[:200])
        (root / "b" / "04x-empty.jpg").write_bytes(b"")
    return root


def _config(**options) -> EmbedConfig:
    base = dict(
        model=SpatialNet(),
        device="cpu",
        image_size=SIZE,
        batch_size=5,
        chunk_rows=4,
        shard_rows=8,
        dtype="float32",
        num_workers=0,
    )
    return EmbedConfig(**{**base, **options})


def _pil_reference(root: Path) -> np.ndarray:
    """Features through PIL + timm's eval transform, the path the decoders must reproduce."""
    from torchvision.datasets import ImageFolder

    transform = image_transform(resolved_data_config(None, SIZE))
    folder = ImageFolder(str(root), transform=transform)
    model = SpatialNet().eval()
    with torch.inference_mode():
        return model(torch.stack([folder[i][0] for i in range(len(folder))])).numpy()


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_cpu_decoding_matches_the_pil_path_and_is_recorded(tmp_path: Path) -> None:
    root = _varied_folder(tmp_path / "images")
    store = embed_dataset(f"imagefolder:{root}", tmp_path / "e.zarr", _config())
    assert store.attrs["decode"] == "cpu"  # auto without CUDA
    assert _cosines(np.asarray(store.features[:]), _pil_reference(root)).min() >= 0.99


def _batched_run(tmp_path: Path, root: Path, **options) -> object:
    """The GPU path's code (bytes from workers, batched decode on the device) on the CPU."""
    job = prepare_job(f"imagefolder:{root}", _config(**options), None)
    assert job.plan.decode == "cpu"
    plan = dataclasses.replace(job.plan, decode="gpu")
    n = plan.spec.n_samples
    store = create_store(
        tmp_path / "g.zarr",
        n,
        4 * (SIZE // 4) ** 2,
        chunk_rows=4,
        shard_rows=8,
        dtype="float32",
        attrs={**job.attrs, "decode": "gpu"},
        with_labels=True,
    )
    run_shards(plan, store, store.missing_shards())
    store.finalize()
    return store


@pytest.mark.parametrize("workers", [0, pytest.param(2, marks=pytest.mark.integration)])
def test_batched_decoding_matches_the_pil_path(tmp_path: Path, workers: int) -> None:
    root = _varied_folder(tmp_path / "images")
    store = _batched_run(tmp_path, root, num_workers=workers)
    features = np.asarray(store.features[:])
    assert _cosines(features, _pil_reference(root)).min() >= 0.99
    assert store.skipped_samples == []


def test_batched_decoding_skips_files_nothing_can_decode(tmp_path: Path) -> None:
    root = _varied_folder(tmp_path / "images", bad=True)
    store = _batched_run(tmp_path, root, on_bad_sample="skip")
    paths = sorted(Path(record["path"]).name for record in store.skipped_samples)
    assert paths == ["04x-empty.jpg", "04x-truncated.jpg"]
    features = np.asarray(store.features[:])
    assert np.isfinite(features).all() and not features[store.skipped_indices].any()
    good = np.setdiff1d(np.arange(len(features)), store.skipped_indices)
    clean = _pil_reference(_varied_folder(tmp_path / "clean"))
    assert _cosines(features[good], clean).min() >= 0.99


def test_gpu_decoding_is_refused_without_cuda_or_image_files(tmp_path: Path) -> None:
    root = _varied_folder(tmp_path / "images")
    with pytest.raises(ValueError, match="decode='gpu' needs a CUDA device"):
        embed_dataset(f"imagefolder:{root}", tmp_path / "e.zarr", _config(decode="gpu"))
    with pytest.raises(ValueError, match="decode='gpu' decodes image files"):
        embed_dataset("digits", tmp_path / "d.zarr", _config(decode="gpu"))


def test_worker_count_scales_with_cores_when_cpu_workers_feed_a_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cl_core.embed.plan as plan_module

    root = _varied_folder(tmp_path / "images")
    plan: InferencePlan = prepare_job(f"imagefolder:{root}", _config(num_workers=None), None).plan
    assert isinstance(plan.spec.dataset, ImageFiles)
    monkeypatch.setattr(plan_module, "usable_cpus", lambda: 64)
    on_gpu = dataclasses.replace(plan, device=torch.device("cuda"))
    assert on_gpu.workers == plan_module.MAX_GPU_FEED_WORKERS > 8  # CPU decoding for a GPU model
    assert dataclasses.replace(on_gpu, decode="gpu").workers == 8  # workers only read bytes
    monkeypatch.setattr(plan_module, "usable_cpus", lambda: 2)
    assert plan.workers == 0  # CPU model on 2 cores: the workers would take the model's cores


@pytest.mark.gpu
def test_gpu_decoding_on_cuda_matches_the_pil_path(tmp_path: Path) -> None:
    root = _varied_folder(tmp_path / "images", bad=True)
    config = _config(device="cuda", on_bad_sample="skip", precision="fp32", num_workers=2)
    store = embed_dataset(f"imagefolder:{root}", tmp_path / "e.zarr", config)
    assert store.attrs["decode"] == "gpu"
    assert len(store.skipped_samples) == 2
    features = np.asarray(store.features[:])
    good = np.setdiff1d(np.arange(len(features)), store.skipped_indices)
    clean = _pil_reference(_varied_folder(tmp_path / "clean"))
    assert _cosines(features[good], clean).min() >= 0.99
