"""Embedding with DataLoader workers inside a process that runs Prefect (regression test).

Forked workers inherited the state of Prefect's and Dask's threads and died on exit ("DataLoader
worker exited unexpectedly with exit code 1") once the Prefect test server had run in the same
process; workers now start from a forkserver, which preloads torch, PIL, timm's transforms and
cl_core so that a worker is one fork of a warm process (first batch ~0.5 s instead of 5-11 s).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cl_core.embed import EmbedConfig, embed_dataset


class _TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_workers_after_prefect_ran_in_this_process(prefect_server: None, tmp_path: Path) -> None:
    from prefect import flow

    @flow
    def touch_server() -> int:
        return 1

    assert touch_server() == 1  # Prefect's threads and the test server are now live
    images = torch.from_numpy(np.random.default_rng(0).random((48, 3, 16, 16), dtype=np.float32))
    loader = DataLoader(TensorDataset(images), batch_size=8, shuffle=False)
    model = _TinyCNN()
    cfg = dict(model=model, device="cpu", batch_size=8, chunk_rows=16, shard_rows=16)
    parallel = embed_dataset(loader, tmp_path / "w.zarr", EmbedConfig(**cfg, num_workers=2))
    serial = embed_dataset(
        TensorDataset(images), tmp_path / "s.zarr", EmbedConfig(**cfg, num_workers=0)
    )
    np.testing.assert_array_equal(parallel.features[:], serial.features[:])


def test_image_folder_workers_after_prefect_ran(
    prefect_server: None, image_folder: Path, tmp_path: Path
) -> None:
    from prefect import flow

    from cl_core.embed import start_worker_server

    @flow
    def touch_server() -> int:
        return 1

    assert touch_server() == 1
    start_worker_server()  # what the CLI does at start-up; idempotent
    cfg = dict(model=_TinyCNN(), device="cpu", batch_size=8, chunk_rows=16, image_size=16)
    parallel = embed_dataset(
        f"imagefolder:{image_folder}", tmp_path / "w.zarr", EmbedConfig(**cfg, num_workers=2)
    )
    serial = embed_dataset(
        f"imagefolder:{image_folder}", tmp_path / "s.zarr", EmbedConfig(**cfg, num_workers=0)
    )
    assert parallel.attrs["decode"] == "cpu"
    np.testing.assert_array_equal(parallel.features[:], serial.features[:])
    np.testing.assert_array_equal(parallel.labels(), serial.labels())
