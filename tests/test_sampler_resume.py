"""Mid-epoch resume through a real ``torch.utils.data.DataLoader``: same batches as without a break.

The checkpoint a training loop writes is the sampler's state with ``position`` set to the steps
it finished (workers prefetch, so the iterator's own count runs ahead); see
:class:`cl_core.sampler.CurriculumSampler`.
"""

from __future__ import annotations

import numpy as np
import pytest
from torch.utils.data import DataLoader, Dataset

from cl_core.sampler import Curriculum, CurriculumSampler
from cl_core.schedule import ScheduleConfig

N = 300
BATCH = 8
EPOCHS = 2

pytestmark = pytest.mark.integration  # every test iterates a DataLoader with worker processes


class _Indices(Dataset[int]):
    """Item ``i`` is ``i``: a batch shows exactly which indices the sampler chose."""

    def __len__(self) -> int:
        return N

    def __getitem__(self, index: int) -> int:
        return index


def _curriculum(sample_mask: np.ndarray | None = None) -> Curriculum:
    difficulty = np.random.default_rng(0).random(N)
    config = ScheduleConfig(initial_fraction=0.4, warmup_iterations=60)
    return Curriculum.from_arrays(difficulty, config, sample_mask=sample_mask)


def _sampler(cur: Curriculum, rank: int = 0, world_size: int = 1) -> CurriculumSampler:
    # refresh_every=4: the resume point falls inside a refresh block, the hardest case.
    return CurriculumSampler(
        cur, batch_size=BATCH, seed=11, rank=rank, world_size=world_size, refresh_every=4
    )


def _loader(sampler: CurriculumSampler) -> DataLoader[int]:
    return DataLoader(_Indices(), batch_size=BATCH, sampler=sampler, num_workers=2)


def _uninterrupted(cur: Curriculum, rank: int, world_size: int) -> list[list[int]]:
    sampler = _sampler(cur, rank, world_size)
    loader = _loader(sampler)
    batches = []
    for epoch in range(EPOCHS):
        sampler.set_epoch(epoch)
        batches += [batch.tolist() for batch in loader]
    return batches


def _interrupted(cur: Curriculum, rank: int, world_size: int, stop_after: int) -> list[list[int]]:
    """Train ``stop_after`` steps of epoch 0, checkpoint, then resume in a fresh sampler/loader."""
    sampler = _sampler(cur, rank, world_size)
    batches: list[list[int]] = []
    sampler.set_epoch(0)
    for step, batch in enumerate(_loader(sampler)):
        batches.append(batch.tolist())
        if step + 1 == stop_after:
            break  # the job dies here; workers had prefetched further
    checkpoint = {**sampler.state_dict(), "position": stop_after * BATCH}

    resumed = _sampler(cur, rank, world_size)  # a new process: new sampler, new loader
    resumed.load_state_dict(checkpoint)
    loader = _loader(resumed)
    for epoch in range(checkpoint["epoch"], EPOCHS):
        resumed.set_epoch(epoch)  # keeps the position within the checkpointed epoch
        batches += [batch.tolist() for batch in loader]
    return batches


@pytest.mark.parametrize("stop_after", [3, 10])
def test_resume_through_dataloader_workers(stop_after: int) -> None:
    cur = _curriculum()
    expected = _uninterrupted(cur, 0, 1)
    assert len(expected) == EPOCHS * -(-N // BATCH)
    assert _interrupted(cur, 0, 1, stop_after) == expected


def test_resume_with_two_ranks() -> None:
    cur = _curriculum()
    per_rank = [_uninterrupted(cur, rank, 2) for rank in (0, 1)]
    for rank in (0, 1):
        assert _interrupted(cur, rank, 2, stop_after=5) == per_rank[rank]
    # The two ranks take disjoint positions of one global draw each step.
    sampler = _sampler(cur, 0, 2)
    steps = sampler.steps_per_epoch
    global_block = np.stack(
        [np.asarray(per_rank[rank][:steps]) for rank in (0, 1)], axis=1
    ).reshape(-1)
    whole = CurriculumSampler(cur, batch_size=2 * BATCH, seed=11, refresh_every=4)
    np.testing.assert_array_equal(global_block, whole.indices(0)[: global_block.size])


def test_resume_with_excluded_samples_never_yields_them() -> None:
    mask = np.ones(N, dtype=bool)
    mask[::7] = False
    cur = _curriculum(mask)
    expected = _uninterrupted(cur, 1, 2)
    resumed = _interrupted(cur, 1, 2, stop_after=4)
    assert resumed == expected
    assert mask[np.concatenate(resumed)].all()
