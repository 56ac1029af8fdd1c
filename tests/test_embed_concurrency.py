"""One writer per shard across processes (issue 11, concurrency; zarr-python issue 3682).

Two runs embedding the same store at the same moment used to both write every shard: concurrent
partial writes to one storage object can lose data. Each shard now has a lock (an flock, released
by the operating system when its holder dies); the result of two racing processes is
byte-identical to one process's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from cl_core.embed import EmbedConfig, embed_shards, plan_store
from cl_core.store import create_store, open_store

ROOT = Path(__file__).resolve().parents[1]

# Shared by the test process and the two racing child processes.
SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import torch
    from torch import nn
    from torch.utils.data import Dataset

    from cl_core.embed import EmbedConfig, embed_dataset

    class Slow(Dataset):
        '''48 seeded images; each read sleeps, so the two processes overlap for seconds.'''

        def __init__(self, delay):
            self.x = torch.randn(48, 3, 8, 8, generator=torch.Generator().manual_seed(0))
            self.delay = delay

        def __len__(self):
            return len(self.x)

        def __getitem__(self, index):
            time.sleep(self.delay)
            if os.environ.get("RACE_LOG"):  # which process read which sample
                with open(os.environ["RACE_LOG"], "a") as log:
                    log.write(f"{os.getpid()} {index}\\n")
            return self.x[index], index % 3

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x)

    def run(path, delay):
        config = EmbedConfig(model=Tiny(), device="cpu", batch_size=4, chunk_rows=8,
                             num_workers=0, dtype="float32")
        return embed_dataset(Slow(delay), path, config, dataset_id="race")

    if __name__ == "__main__":
        store = run(sys.argv[1], float(sys.argv[2]))
        print("shards", store.n_shards, "complete", store.is_complete)
    """
)


def _load_script(tmp_path: Path):
    path = tmp_path / "race_script.py"
    path.write_text(SCRIPT)
    namespace: dict = {"__name__": "race_script"}
    exec(compile(SCRIPT, str(path), "exec"), namespace)
    return path, namespace


@pytest.mark.integration
def test_two_processes_embedding_one_store_give_the_single_process_result(tmp_path: Path) -> None:
    script, namespace = _load_script(tmp_path)
    reference = namespace["run"](str(tmp_path / "single.zarr"), 0.0)

    target = tmp_path / "raced.zarr"
    log = tmp_path / "reads.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RACE_LOG": str(log)}
    racers = [
        subprocess.Popen(
            [sys.executable, str(script), str(target), "0.05"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [racer.communicate(timeout=240) for racer in racers]
    for racer, (out, err) in zip(racers, outputs, strict=True):
        assert racer.returncode == 0, err[-3000:]
        assert "complete True" in out
    # Exactly one writer per shard: every sample was computed by one process only (sample 0 is
    # also read once by each process to probe the feature size).
    reads = [line.split() for line in log.read_text().splitlines()]
    counts = np.bincount([int(index) for _, index in reads], minlength=48)
    assert counts[0] == 3 and (counts[1:] == 1).all(), counts
    raced = open_store(target, read_only=True)
    assert raced.is_complete and raced.missing_shards() == []
    assert raced.features[:].tobytes() == reference.features[:].tobytes()
    np.testing.assert_array_equal(raced.labels(), reference.labels())
    np.testing.assert_array_equal(raced.feature_mean, reference.feature_mean)
    assert raced.dataset_fingerprint == reference.dataset_fingerprint
    for shard in range(raced.n_shards):  # both writers are gone: no lock is left held
        lock = raced.try_lock(shard)
        assert lock is not None
        lock.release()


_HOLD_LOCK = """
import sys, time
from cl_core.store import open_store
lock = open_store(sys.argv[1]).try_lock(int(sys.argv[2]))
print("held" if lock is not None else "busy", flush=True)
time.sleep(600)
"""


def _holder(store_path: Path, shard: int) -> subprocess.Popen[str]:
    """A process that takes the lock of ``shard`` and keeps it until it is killed."""
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(store_path), str(shard)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


def _kill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    child.stdout.close()  # type: ignore[union-attr]


def test_a_stale_lock_is_taken_over_and_a_live_one_respected(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    store = create_store(path, 8, 2, chunk_rows=4, attrs={"dataset_fingerprint": "x"})
    _kill(_holder(path, 0))  # its writer was killed while holding the lock
    live = _holder(path, 1)  # a live process holds it
    try:
        taken = store.try_lock(0)
        assert taken is not None
        assert store.try_lock(0) is None  # now held by us
        assert store.try_lock(1) is None
        taken.release()
        again = store.try_lock(0)
        assert again is not None
        again.release()
    finally:
        _kill(live)
    freed = store.try_lock(1)  # free once its holder is gone
    assert freed is not None
    freed.release()


def test_a_shard_written_meanwhile_is_not_computed_again(tmp_path: Path) -> None:
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    data = TensorDataset(torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(1)))
    config = EmbedConfig(
        model=Tiny(), device="cpu", batch_size=4, chunk_rows=4, shard_rows=4, num_workers=0
    )
    store = plan_store(data, tmp_path / "e.zarr", config)
    assert embed_shards(store, data, config, shards=[1]) == [1]
    # Another process finished shard 1 before this call took its lock: nothing to do for it.
    assert embed_shards(store, data, config, shards=[1, 2]) == [2]


@pytest.mark.parametrize("name", ["finalize", 3])
def test_lock_names_and_urls(tmp_path: Path, name) -> None:
    store = create_store(
        "memory://locks-test.zarr", 8, 2, chunk_rows=4, attrs={"dataset_fingerprint": "x"}
    )
    with store.lock(name) as lock:  # stores at URLs are not locked (one worker per shard)
        assert lock.path is None
    local = create_store(
        tmp_path / "l.zarr", 8, 2, chunk_rows=4, attrs={"dataset_fingerprint": "x"}
    )
    with local.lock(name) as lock:
        assert lock.path is not None and lock.path.exists()
        assert local.try_lock(name) is None
    free = local.try_lock(name)
    assert free is not None
    free.release()
