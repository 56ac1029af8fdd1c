"""fp32 CPU features do not depend on the embedding process's torch thread count.

torch runs a 1x1 convolution on fewer than 16 samples with its own im2col + GEMM kernel when it
has one intra-op thread and with oneDNN when it has more; the two round differently (up to
~5e-9 on ``test_efficientnet`` features). A Dask worker process starts with one thread
(``OMP_NUM_THREADS=1``), the pipeline's own process with one per core, so a short last shard
embedded on a worker used to differ from the local run's, and the published version with it.
Every shard of a store is now embedded with one thread count: resolved when the store is
created, recorded in it (``cpu_threads``) and used by whichever process embeds a shard.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import cl_core.embed.plan as plan_module
from cl_core.embed import EmbedConfig, embed_dataset, embed_shards, plan_store
from cl_core.embed.plan import default_cpu_threads

N = 24


class PointwiseNet(nn.Module):
    """A 3x3 convolution, then 1x1 convolutions (the kernels torch chooses by thread count)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 1),
            nn.ReLU(),
            nn.Conv2d(64, 16, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def inputs() -> TensorDataset:
    return TensorDataset(torch.randn(N, 3, 16, 16, generator=torch.Generator().manual_seed(1)))


def config(model: nn.Module, **options: Any) -> EmbedConfig:
    # Batches of 8 (< 16 samples: the thread-dependent kernel choice), 3 shards, fp32 kept.
    return EmbedConfig(
        model=model,
        **{
            "batch_size": 8,
            "chunk_rows": 8,
            "shard_rows": 8,
            "dtype": "float32",
            "precision": "fp32",
            "device": "cpu",
            **options,
        },
    )


@contextmanager
def process_threads(n_threads: int) -> Iterator[None]:
    """The calling thread's torch setting, as a process started with OMP_NUM_THREADS has it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_features_do_not_depend_on_the_process_torch_threads(tmp_path: Path) -> None:
    model = PointwiseNet()
    with process_threads(1):  # a Dask worker process
        single = embed_dataset(inputs(), tmp_path / "single.zarr", config(model))
    with process_threads(2):  # the pipeline's own process on 2 cores
        double = embed_dataset(inputs(), tmp_path / "double.zarr", config(model))
    assert single.features[:].tobytes() == double.features[:].tobytes()
    assert single.attrs["cpu_threads"] == double.attrs["cpu_threads"] == default_cpu_threads()
    assert torch.get_num_threads() >= 1  # restored (no assertion on the value: shared setting)


def test_shards_are_embedded_with_the_thread_count_the_store_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = PointwiseNet()
    reference = embed_dataset(inputs(), tmp_path / "reference.zarr", config(model, n_threads=2))
    store = plan_store(inputs(), tmp_path / "sharded.zarr", config(model, n_threads=2))
    assert store.attrs["cpu_threads"] == 2

    # A worker on a one-core machine, single-threaded, embeds the shards with the store's 2.
    monkeypatch.setattr(plan_module, "default_cpu_threads", lambda: 1)
    with process_threads(1):
        assert embed_shards(store, inputs(), config(model), shards=[2, 0]) == [0, 2]
        # Another count is not another store (the fingerprint leaves it out) ...
        reopened = plan_store(inputs(), tmp_path / "sharded.zarr", config(model, n_threads=1))
        assert reopened.fingerprint == store.fingerprint
        # ... but its missing shards are not embedded with a contradicting explicit count.
        with pytest.raises(ValueError, match=r"n_threads=1 contradicts .* embedded with 2 CPU"):
            embed_shards(store, inputs(), config(model, n_threads=1))
        assert embed_shards(store, inputs(), config(model)) == [1]
    store.finalize()
    assert store.features[:].tobytes() == reference.features[:].tobytes()


def test_n_threads_is_checked() -> None:
    with pytest.raises(ValueError, match="n_threads must be a positive integer, got 0"):
        EmbedConfig(n_threads=0)
