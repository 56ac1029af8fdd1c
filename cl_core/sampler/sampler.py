""":class:`CurriculumSampler`: curriculum indices for ``torch.utils.data.DataLoader(sampler=...)``.

Draws with replacement, in bulk and exactly (:class:`~cl_core.sampler.draws.GroupedDraws`), from
``Curriculum.probabilities(t)`` as the schedule advances:

* ``batch_size`` is per rank. One *iteration* is one global step of ``batch_size * world_size``
  indices; rank ``r`` takes positions ``[r * batch_size, (r + 1) * batch_size)`` of every global
  batch, so the ranks share one global draw without overlap in position.
* ``num_samples`` (default ``n_valid``) global draws per epoch, rounded up to whole global steps;
  ``len(sampler)`` is the per-rank count ``steps_per_epoch * batch_size``.
* Step ``s`` of epoch ``e`` is iteration ``start_iteration + e * steps_per_epoch + s``.
* Probabilities are refreshed every ``refresh_every`` steps (default 25, aligned to the epoch
  start): the steps of one *block* use the probabilities of the block's first iteration. With a
  linear pacing over ``W`` warmup iterations the target fraction moves by at most
  ``25 * (1 - f0) / W`` inside a block (0.0035 for f0=0.3, W=5000); pass ``refresh_every=1`` for a
  per-step refresh at some throughput cost.
* Block ``b`` of epoch ``e`` draws from ``Generator(PCG64(SeedSequence([seed, e, b])))``: any block
  can be regenerated without replaying the ones before it, which makes every rank see the same
  global draw and makes mid-epoch resume exact. (Run the same numpy version on every rank and
  when resuming: numpy does not promise identical ``Generator`` streams across versions.)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from operator import length_hint
from typing import Any

import numpy as np

from cl_core.sampler.curriculum import Curriculum
from cl_core.sampler.draws import GroupedDraws
from cl_core.validation import check_int

DEFAULT_REFRESH_EVERY = 25


class CurriculumSampler:
    """Curriculum index sampler for ``torch.utils.data.DataLoader(sampler=...)``.

    Draws with replacement from ``curriculum.probabilities(t)`` as the schedule advances (see
    the module docstring for the exact semantics). Does not import torch.

    Parameters
    ----------
    curriculum : Curriculum
        From :func:`load_curriculum` or :meth:`Curriculum.from_arrays`.
    batch_size : int >= 1
        Per-rank batch size (use the DataLoader's).
    num_samples : int >= 1, optional
        Global draws per epoch, rounded up to whole global steps; default the number of
        drawable samples (``curriculum.n_valid``, N when no sample is excluded).
    seed : int >= 0
        Same seed on every rank.
    rank, world_size : int
        This process's DDP rank in ``[0, world_size)``.
    start_iteration : int >= 0
        Global iteration of the first step of epoch 0 (to continue a schedule in a new run).
    refresh_every : int >= 1
        Steps between probability refreshes (default 25).

    Notes
    -----
    ``__iter__`` yields the remaining indices of the current epoch and then advances the epoch,
    so a loop that never calls :meth:`set_epoch` still moves through the curriculum.
    :meth:`state_dict` counts indices the iterator has *yielded*; a DataLoader with workers
    prefetches ahead of training, so to resume from the last finished step store
    ``{**state, "position": steps_done_in_epoch * batch_size}`` instead.
    """

    def __init__(
        self,
        curriculum: Curriculum,
        batch_size: int = 256,
        num_samples: int | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_iteration: int = 0,
        *,
        refresh_every: int = DEFAULT_REFRESH_EVERY,
    ) -> None:
        if not isinstance(curriculum, Curriculum):
            raise TypeError(
                f"curriculum must be a Curriculum, got {type(curriculum).__name__}; build it with "
                f"load_curriculum(path) or Curriculum.from_arrays(...)"
            )
        self.curriculum = curriculum
        self.batch_size = check_int("batch_size", batch_size, 1, "; e.g. 256")
        self.world_size = check_int("world_size", world_size, 1, "; pass the number of DDP ranks")
        self.rank = check_int("rank", rank, 0, "; pass this process's DDP rank")
        if self.rank >= self.world_size:
            raise ValueError(
                f"rank must lie in [0, world_size) = [0, {self.world_size}), got {rank}; pass "
                f"torch.distributed.get_rank() and get_world_size()"
            )
        default_samples = curriculum.n_valid if num_samples is None else num_samples
        self.num_samples = check_int(
            "num_samples", default_samples, 1, "; leave it None for one pass of N draws"
        )
        self.seed = check_int("seed", seed, 0, "; use the same non-negative seed on every rank")
        self.start_iteration = check_int(
            "start_iteration", start_iteration, 0, "; pass the global step to start from"
        )
        self.refresh_every = check_int(
            "refresh_every", refresh_every, 1, f"; default {DEFAULT_REFRESH_EVERY}"
        )
        self.global_batch_size = self.batch_size * self.world_size
        self.steps_per_epoch = -(-self.num_samples // self.global_batch_size)
        self.blocks_per_epoch = -(-self.steps_per_epoch // self.refresh_every)
        self._block_length = self.refresh_every * self.batch_size  # per rank
        self._epoch = 0
        self._position = 0
        self._live: tuple[int, Iterator[int], int] | None = None  # (base, iterator, length)
        self._table: GroupedDraws | None = None

    # ---- sizes and progress ---------------------------------------------------------------

    def __len__(self) -> int:
        """Indices this rank yields per epoch."""
        return self.steps_per_epoch * self.batch_size

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def position(self) -> int:
        """Indices this rank has yielded in the current epoch."""
        if self._live is None:
            return self._position
        base, iterator, length = self._live
        return base + length - length_hint(iterator)

    @property
    def iteration(self) -> int:
        """Global iteration of the step the next index belongs to."""
        return self._iteration_of(self._epoch, self.position // self.batch_size)

    def _iteration_of(self, epoch: int, step: int) -> int:
        return self.start_iteration + epoch * self.steps_per_epoch + step

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch the next ``iter()`` draws (like ``DistributedSampler.set_epoch``).

        Setting the epoch the sampler is already in keeps its position, so calling it after
        :meth:`load_state_dict` does not undo a mid-epoch resume.
        """
        epoch = check_int("epoch", epoch, 0, "; pass the epoch number (0, 1, 2, ...)")
        if epoch != self._epoch:
            self._epoch = epoch
            self._position = 0
            self._live = None

    # ---- drawing --------------------------------------------------------------------------

    def draw_table(self) -> GroupedDraws:
        """The grouped table this sampler draws from (built on first use, for its largest beta)."""
        if self._table is None:
            max_beta = float(np.max(self.curriculum.schedule.betas))
            self._table = self.curriculum.draw_table(max_beta)
        return self._table

    def _block_steps(self, block: int) -> int:
        return min(self.refresh_every, self.steps_per_epoch - block * self.refresh_every)

    def _global_block(self, epoch: int, block: int, out: np.ndarray | None = None) -> np.ndarray:
        """All ranks' indices for one refresh block, shape (steps, world_size, batch_size).

        ``out``, when given, is a contiguous int64 buffer of ``steps * global_batch_size`` that
        receives the draw (saves a copy when one rank takes the whole block).
        """
        first_step = block * self.refresh_every
        steps = self._block_steps(block)
        beta = self.curriculum.inverse_temperature(self._iteration_of(epoch, first_step))
        rng = np.random.Generator(
            np.random.PCG64(np.random.SeedSequence([self.seed, epoch, block]))
        )
        size = steps * self.global_batch_size
        if beta == 0.0:  # uniform: no table needed (a job resumed after warmup never builds one)
            indices = rng.integers(0, self.curriculum.n_valid, size=size, dtype=np.int64)
            if out is not None:
                out[:] = indices
                indices = out
        else:
            indices = self.draw_table().draw(rng, beta, size, out)
        indices = self.curriculum.to_sample_index(indices)  # excluded samples are never drawn
        return indices.reshape(steps, self.world_size, self.batch_size)

    def rank_block(self, epoch: int, block: int) -> np.ndarray:
        """This rank's indices (int64) for refresh block ``block`` of epoch ``epoch``."""
        return self._global_block(epoch, block)[:, self.rank, :].reshape(-1)

    def indices(self, epoch: int | None = None) -> np.ndarray:
        """This rank's whole epoch as one int64 array (bulk; does not move the position).

        Parameters
        ----------
        epoch : int, optional
            Defaults to the current epoch.

        Returns
        -------
        ndarray of shape (len(self),), int64
        """
        epoch = self._epoch if epoch is None else check_int("epoch", epoch, 0, "; e.g. 0")
        out = np.empty(len(self), dtype=np.int64)
        for block in range(self.blocks_per_epoch):
            start = block * self._block_length
            stop = start + self._block_steps(block) * self.batch_size
            if self.world_size == 1:  # the global block is this rank's: draw straight into out
                self._global_block(epoch, block, out[start:stop])
            else:
                out[start:stop] = self.rank_block(epoch, block)
        return out

    def __iter__(self) -> Iterator[int]:
        epoch, start = self._epoch, self.position
        first_block = start // self._block_length
        for block in range(first_block, self.blocks_per_epoch):
            base = block * self._block_length
            skip = start - base if block == first_block else 0
            items = self.rank_block(epoch, block)[skip:].tolist()
            iterator = iter(items)
            self._live = (base + skip, iterator, len(items))
            yield from iterator  # C-speed hand-off; position() reads the iterator's remaining length
        self._epoch, self._position, self._live = epoch + 1, 0, None

    # ---- checkpointing --------------------------------------------------------------------

    def _identity(self) -> dict[str, int]:
        """Settings that define the index sequence; a resumed sampler must match them."""
        return {
            "seed": self.seed,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
            "num_samples": self.num_samples,
            "start_iteration": self.start_iteration,
            "refresh_every": self.refresh_every,
            "n_samples": self.curriculum.n_samples,
            "n_valid": self.curriculum.n_valid,
        }

    def state_dict(self) -> dict[str, Any]:
        """Progress (``epoch``, ``position``) plus the settings that define the sequence."""
        return {
            "epoch": self._epoch,
            "position": self.position,
            "iteration": self.iteration,
            "version": self.curriculum.version,
            **self._identity(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume: the next ``iter()`` yields exactly the indices that were still to come."""
        if not isinstance(state, Mapping) or "epoch" not in state or "position" not in state:
            raise ValueError(
                f"state must be a mapping with 'epoch' and 'position' (from state_dict()), got "
                f"{state!r}"
            )
        for key, current in self._identity().items():
            if key in state and int(state[key]) != current:
                raise ValueError(
                    f"state[{key!r}] = {state[key]} but this sampler has {key}={current}; "
                    f"construct the sampler with {key}={state[key]} to resume the same sequence"
                )
        epoch = check_int("state['epoch']", state["epoch"], 0, "; pass a state from state_dict()")
        position = check_int(
            "state['position']", state["position"], 0, "; pass a state from state_dict()"
        )
        if position > len(self):
            raise ValueError(
                f"state['position'] = {position} exceeds the {len(self)} indices per epoch of "
                f"this rank; pass a state saved with the same batch_size and num_samples"
            )
        self._epoch, self._position, self._live = epoch, position, None

    def __repr__(self) -> str:
        return (
            f"CurriculumSampler(n_samples={self.curriculum.n_samples}, batch_size="
            f"{self.batch_size}, num_samples={self.num_samples}, seed={self.seed}, rank="
            f"{self.rank}, world_size={self.world_size}, start_iteration={self.start_iteration}, "
            f"refresh_every={self.refresh_every})"
        )
