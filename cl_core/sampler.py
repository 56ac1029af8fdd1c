"""Training-time curriculum: load a published artifact and feed indices to a DataLoader.

Imports only numpy and the standard library (plus the numpy-only ``cl_core`` helpers), so a
training job pays nothing for Prefect, Dask, scikit-learn, Zarr or torch. Artifacts on object
storage load the same way (``load_curriculum("s3://bucket/artifacts/digits/latest")``); fsspec
and s3fs are imported only for such URLs::

    from cl_core.sampler import load_curriculum, CurriculumSampler
    cur = load_curriculum("artifacts/digits/latest")
    sampler = CurriculumSampler(cur, batch_size=256, seed=0, rank=rank, world_size=world_size)
    loader = torch.utils.data.DataLoader(dataset, batch_size=256, sampler=sampler)
    for epoch in range(n_epochs):
        sampler.set_epoch(epoch)
        for batch in loader: ...

How indices are drawn
---------------------
At iteration ``t`` sample ``i`` is drawn with probability ``Curriculum.probabilities(t)``, i.e.
``p_i ~ exp(-beta(t) * d_i)`` (``+`` for the ``hard`` strategy) with ``beta(t) = 1 / T(t)``
interpolated from the artifact's temperature table (never re-solved), and uniform from the end of
warmup on. Draws are with replacement, in bulk, exact, and cost per index does not grow with N:

* once per sampler, samples are bucketed by difficulty into ``G`` groups narrow enough that
  ``beta_max * width <= 0.05`` (a stable counting sort; ``G <= 65535``);
* a draw picks a group from the float64 inverse CDF of the groups' envelope masses
  ``count_g * exp(-beta * min_g)``, a member uniformly, and keeps it with probability
  ``exp(-beta * (d_i - min_g)) >= exp(-0.05)``; rejected draws are redrawn.

This is rejection sampling with an envelope that dominates ``p`` everywhere, so the accepted
indices follow ``p`` exactly, while a refresh costs O(G) instead of O(N) and no index arithmetic
ever goes through float32 (N beyond 2^24 is fine). Two shortcuts keep the cost per index low
without changing a single draw: a refresh that draws at least ``guide_size / 16`` indices
(``guide_size`` ~ 4 G) builds a guide table in O(guide_size) that turns most group searches into
one lookup, while smaller draws (``refresh_every=1``) binary-search the CDF directly; and a
proposal whose exponential variate clears ``beta`` times its group's width is kept without
reading its difficulty, so only ~5% of proposals touch the N-sized key array.

Excluded samples
----------------
An artifact published with a ``sample_mask`` (samples that could not be loaded) excludes them:
probabilities, the temperature table and the draw tables cover the ``n_valid`` drawable samples
only (uniform after warmup means uniform over them), drawn positions are mapped to dataset
indices, and an excluded index is never yielded. ``num_samples`` defaults to ``n_valid``.

Refresh interval, iterations and ranks
--------------------------------------
* ``batch_size`` is per rank. One *iteration* is one global step of ``batch_size * world_size``
  indices; rank ``r`` takes positions ``[r * batch_size, (r + 1) * batch_size)`` of every global
  batch, so the ranks share one global draw without overlap in position.
* ``num_samples`` (default N) global draws per epoch, rounded up to whole global steps;
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

import math
import os
from collections.abc import Iterator, Mapping
from operator import length_hint
from typing import Any

import numpy as np

from cl_core.artifacts.location import Location, ObjectPath
from cl_core.artifacts.manifest import SAMPLE_MASK_FILE, load_manifest, resolve_version
from cl_core.artifacts.verify import (
    check_difficulty,
    load_array,
    load_json,
    load_sample_mask,
    verify_file,
)
from cl_core.schedule import (
    Schedule,
    ScheduleConfig,
    build_schedule,
    effective_fraction,
    favoured_offsets,
    probabilities_from_offsets,
)
from cl_core.validation import check_finite, check_int, check_valid_mask

__all__ = ["DEFAULT_REFRESH_EVERY", "Curriculum", "CurriculumSampler", "load_curriculum"]

DEFAULT_REFRESH_EVERY = 25
# Largest beta * (within-group difficulty spread): every proposal is kept with prob >= exp(-0.05).
_GROUP_SLACK = 0.05
_MAX_GROUPS = 65535  # group ids fit uint16, which numpy sorts stably with a linear radix sort
_MAX_GUIDE_BITS = 20  # a guide of at most 2^20 slots (8 MiB)
# A draw builds the guide when size * _GUIDE_PAYBACK >= guide_size: building costs ~1 ns a slot,
# while a guide lookup saves a binary search (~60 ns for thousands of groups) per proposal.
_GUIDE_PAYBACK = 16
_LOADED_FILES = ("difficulty.npy", "assignment.npy", "schedule.json", SAMPLE_MASK_FILE)


def _check_iteration(iteration: object) -> int:
    return check_int("iteration", iteration, 0, "; pass the global training step (0, 1, 2, ...)")


# --------------------------------------------------------------------------------------------
# Curriculum
# --------------------------------------------------------------------------------------------


class Curriculum:
    """Per-sample difficulty plus the schedule that turns it into sampling probabilities.

    Build one with :func:`load_curriculum` (a published artifact) or :meth:`from_arrays`.

    Attributes
    ----------
    n_samples : int
        N.
    difficulty : ndarray of shape (N,), float32
        Per-sample score in dataset order (higher = harder).
    assignment : ndarray of shape (N,), int32, or None
        Cluster id per sample when the artifact has one.
    schedule : cl_core.schedule.Schedule
        The temperature table (interpolated, never re-solved).
    strategy, pacing : str
    initial_fraction : float
    warmup_iterations : int
    manifest : dict or None
        The artifact's manifest (None when built in memory).
    path : Path, ObjectPath or None
        The version directory (an :class:`~cl_core.artifacts.ObjectPath` when loaded from a
        URL).
    version : str or None
        The artifact's content id.
    sample_mask : ndarray of shape (N,), bool, or None
        True for drawable samples; None when every sample is drawable. Excluded samples (e.g.
        files that could not be decoded) have probability exactly 0 and are never drawn.
    n_valid : int
        Number of drawable samples (N when nothing is excluded).
    """

    def __init__(
        self,
        difficulty: np.ndarray,
        schedule: Schedule,
        *,
        assignment: np.ndarray | None = None,
        manifest: dict[str, Any] | None = None,
        path: Location | None = None,
        sample_mask: np.ndarray | None = None,
    ) -> None:
        mask = check_valid_mask("sample_mask", sample_mask, int(difficulty.shape[0]))
        n_valid = int(difficulty.shape[0]) if mask is None else int(np.count_nonzero(mask))
        if schedule.n_samples is not None and schedule.n_samples != n_valid:
            drawable = "" if mask is None else " drawable"
            raise ValueError(
                f"schedule was built for {schedule.n_samples} samples but difficulty has "
                f"{n_valid}{drawable}; build the schedule from this difficulty "
                f"(pass a ScheduleConfig instead)"
            )
        self.difficulty = difficulty
        self.n_samples = int(difficulty.shape[0])
        self.sample_mask = mask
        self.n_valid = n_valid
        # Drawable sample indices (int64, ascending); None = all of them (no mapping needed).
        self._valid_index: np.ndarray | None = None if mask is None else np.flatnonzero(mask)
        self.schedule = schedule
        self.assignment = assignment
        self.manifest = manifest
        self.path = path
        self.version: str | None = None if manifest is None else str(manifest["version"])
        self._draw_tables: dict[float, _GroupedDraws] = {}
        self._offsets: np.ndarray | None = None

    @classmethod
    def from_arrays(
        cls,
        difficulty: np.ndarray,
        schedule_or_config: Schedule | ScheduleConfig,
        assignment: np.ndarray | None = None,
        *,
        sample_mask: np.ndarray | None = None,
    ) -> Curriculum:
        """An in-memory curriculum (no artifact on disk).

        Parameters
        ----------
        difficulty : array-like of shape (N,)
            Finite per-sample scores; stored as float32.
        schedule_or_config : Schedule or ScheduleConfig
            A schedule built for this difficulty (over the drawable samples:
            ``build_schedule(difficulty, config, valid=sample_mask)``), or a config to build
            one from.
        assignment : array-like of shape (N,), optional
            Cluster id per sample.
        sample_mask : array-like of shape (N,), bool, optional
            True for drawable samples; the others get probability 0 and are never drawn.
        """
        scores = check_difficulty(difficulty)
        mask = check_valid_mask("sample_mask", sample_mask, scores.shape[0])
        ids = None
        if assignment is not None:
            ids = np.asarray(assignment)
            if ids.dtype.kind not in "iu" or ids.shape != scores.shape:
                raise ValueError(
                    f"assignment must be an integer array of shape {scores.shape}, got dtype "
                    f"{ids.dtype} and shape {ids.shape}; pass one cluster id per sample"
                )
            ids = ids.astype(np.int32)
        if isinstance(schedule_or_config, ScheduleConfig):
            schedule = build_schedule(scores, schedule_or_config, valid=mask)
        elif isinstance(schedule_or_config, Schedule):
            schedule = schedule_or_config
        else:
            raise TypeError(
                f"schedule_or_config must be a Schedule or ScheduleConfig, got "
                f"{type(schedule_or_config).__name__}; e.g. ScheduleConfig(pacing='linear')"
            )
        return cls(scores, schedule, assignment=ids, sample_mask=mask)

    @property
    def strategy(self) -> str:
        return str(self.schedule.config.strategy)

    @property
    def pacing(self) -> str:
        return str(self.schedule.config.pacing)

    @property
    def initial_fraction(self) -> float:
        return float(self.schedule.config.initial_fraction)

    @property
    def warmup_iterations(self) -> int:
        return int(self.schedule.config.warmup_iterations)

    def target_fraction(self, iteration: int) -> float:
        """Pacing target f(t) of the effective fraction; 1.0 from warmup on."""
        return float(self.schedule.target_fraction(_check_iteration(iteration)))

    def inverse_temperature(self, iteration: int) -> float:
        """beta(t) = 1 / T(t), interpolated from the table; 0.0 means uniform."""
        iteration = _check_iteration(iteration)
        if iteration >= self.warmup_iterations:
            return 0.0  # uniform from warmup on, whatever the mode; skips the table lookup
        return float(self.schedule.beta_at(iteration))

    def temperature(self, iteration: int) -> float:
        """T(t); ``inf`` once sampling is uniform."""
        return float(self.schedule.temperature_at(_check_iteration(iteration)))

    def probabilities(self, iteration: int = 0, *, temperature: float | None = None) -> np.ndarray:
        """Sampling probabilities at an iteration, or at an explicit temperature.

        Parameters
        ----------
        iteration : int >= 0
            Global training step; ignored when ``temperature`` is given.
        temperature : float > 0, optional
            Bypasses pacing (the reference v1 API ``get_curriculum_weights(temperature=...)``);
            ``inf`` gives uniform.

        Returns
        -------
        ndarray of shape (N,), float64
            Non-negative, sums to 1; uniform (over the drawable samples) from warmup on;
            exactly 0 for samples excluded by ``sample_mask``.
        """
        if temperature is None:
            beta = self.inverse_temperature(iteration)
        else:
            beta = _inverse_of_temperature(temperature)
        if beta == 0.0:
            drawable = np.full(self.n_valid, 1.0 / self.n_valid)
        else:
            if self._offsets is None:  # computed once: every call then costs one exp over N
                self._offsets = favoured_offsets(self._drawable_difficulty(), self.strategy)
            drawable = probabilities_from_offsets(self._offsets, beta)
        if self._valid_index is None:
            return drawable
        out = np.zeros(self.n_samples)
        out[self._valid_index] = drawable
        return out

    def effective_fraction(self, iteration: int = 0, *, temperature: float | None = None) -> float:
        """Effective fraction ``F`` of :meth:`probabilities` over the drawable samples.

        Uniform sampling over the drawable samples gives exactly 1 (excluded samples, which
        can never be drawn, do not count as missing).

        Parameters
        ----------
        iteration : int >= 0
        temperature : float > 0, optional
            As in :meth:`probabilities`.

        Returns
        -------
        float
        """
        p = self.probabilities(iteration, temperature=temperature)
        return float(effective_fraction(p if self._valid_index is None else p[self._valid_index]))

    def _drawable_difficulty(self) -> np.ndarray:
        """Difficulty of the drawable samples (all of them when nothing is excluded)."""
        if self._valid_index is None:
            return self.difficulty
        return self.difficulty[self._valid_index]

    def _to_sample_index(self, positions: np.ndarray) -> np.ndarray:
        """Map positions among the drawable samples to dataset indices, in place (int64)."""
        if self._valid_index is not None:
            np.take(self._valid_index, positions, out=positions)
        return positions

    def _draw_table(self, max_beta: float) -> _GroupedDraws:
        """The grouped sampling table for betas up to ``max_beta`` (built once, then cached).

        Built over the drawable samples only; its draws are positions among them (map them with
        :meth:`_to_sample_index`).
        """
        table = self._draw_tables.get(max_beta)
        if table is None:
            drawable = self._drawable_difficulty()
            key = drawable if self.strategy == "easy" else -drawable
            table = _GroupedDraws(key, max_beta)
            self._draw_tables[max_beta] = table
        return table

    def __repr__(self) -> str:
        where = f", version={self.version!r}" if self.version else ""
        return (
            f"Curriculum(n_samples={self.n_samples}, strategy={self.strategy!r}, "
            f"pacing={self.pacing!r}, initial_fraction={self.initial_fraction}, "
            f"warmup_iterations={self.warmup_iterations}{where})"
        )


def _inverse_of_temperature(temperature: object) -> float:
    try:
        value = float(temperature)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(
            f"temperature must be a positive number, got {temperature!r}; e.g. 0.5"
        ) from None
    if not value > 0.0:  # also rejects NaN
        raise ValueError(
            f"temperature must be > 0 (inf for uniform), got {temperature!r}; e.g. 0.5"
        )
    return 0.0 if math.isinf(value) else 1.0 / value


def load_curriculum(path: str | os.PathLike[str] | ObjectPath) -> Curriculum:
    """Load and verify a published curriculum artifact.

    Parameters
    ----------
    path : str, PathLike or ObjectPath
        A version directory, ``<root>/<name>/latest``, or ``<root>/<name>`` (meaning latest);
        a local path or an fsspec URL (``s3://bucket/artifacts/digits/latest``, needs fsspec
        and s3fs; they are imported only for URLs).

    Returns
    -------
    Curriculum

    Raises
    ------
    FileNotFoundError
        If no published version is there (a directory without ``manifest.json`` does not exist).
    cl_core.artifacts.ArtifactIntegrityError
        Naming the file whose sha256, shape or dtype does not match the manifest.
    """
    version_dir = resolve_version(path)
    manifest = load_manifest(version_dir)
    difficulty = load_array(version_dir, "difficulty.npy")
    if difficulty.dtype != np.float32 or difficulty.ndim != 1:
        raise ValueError(
            f"{version_dir / 'difficulty.npy'} holds dtype {difficulty.dtype} shape "
            f"{difficulty.shape}, not a float32 (N,) vector; republish it with publish_curriculum"
        )
    check_finite(f"{version_dir / 'difficulty.npy'}", difficulty)
    assignment = None
    if "assignment.npy" in manifest["files"]:
        assignment = load_array(version_dir, "assignment.npy")
    schedule = Schedule.from_json(load_json(version_dir, "schedule.json"))
    sample_mask = load_sample_mask(version_dir, manifest)
    for filename in sorted(set(manifest["files"]) - set(_LOADED_FILES)):
        verify_file(version_dir, filename, manifest)  # centroids, sweep, plots: checked, not kept
    return Curriculum(
        difficulty,
        schedule,
        assignment=assignment,
        manifest=manifest,
        path=version_dir,
        sample_mask=sample_mask,
    )


# --------------------------------------------------------------------------------------------
# Exact bulk draws
# --------------------------------------------------------------------------------------------


class _GroupedDraws:
    """Exact O(1) sampling of ``p_i ~ exp(-beta * key_i)`` for any ``beta >= 0``.

    Samples are grouped by key into contiguous runs of ``order``; a proposal picks group ``g`` with
    probability proportional to ``count_g * exp(-beta * (min_g - key_min))``, a member uniformly,
    and accepts it with probability ``exp(-beta * (key_i - min_g))``. Groups are narrow enough that
    the acceptance is >= exp(-0.05) for every beta up to ``max_beta``; larger betas stay exact, just
    slower.

    Parameters
    ----------
    key : ndarray of shape (N,), float32
        ``difficulty`` for the easy strategy, ``-difficulty`` for hard.
    max_beta : float
        Largest inverse temperature the caller will ask for.
    """

    def __init__(self, key: np.ndarray, max_beta: float) -> None:
        n = key.shape[0]
        self.n = n
        self.key_min = float(key.min())
        span = float(key.max()) - self.key_min
        wanted = math.ceil(max_beta * span / _GROUP_SLACK) if span > 0 else 1
        n_groups = int(min(_MAX_GROUPS, max(1, wanted)))
        index_dtype = np.int32 if n < np.iinfo(np.int32).max else np.int64
        self.order: np.ndarray | None = None  # None: identity (one group, nothing to reorder)
        if n_groups == 1:
            counts = np.array([n], dtype=np.int64)
            self.sorted_key = key
        else:
            # float64: a tiny span with a huge beta must not overflow the scale factor
            scaled = (key.astype(np.float64) - self.key_min) * (n_groups / span)
            np.minimum(scaled, n_groups - 1, out=scaled)
            group_ids = scaled.astype(np.uint16)
            del scaled
            # Stable radix sort on uint16: deterministic on every machine (ranks must agree).
            order = np.argsort(group_ids, kind="stable").astype(index_dtype)
            counts = np.bincount(group_ids, minlength=n_groups)
            counts = counts[counts > 0]
            self.order = order
            self.sorted_key = key[order]
        self.starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        self.counts = counts.astype(np.float64)
        self.group_min = np.minimum.reduceat(self.sorted_key, self.starts).astype(np.float64)
        group_max = np.maximum.reduceat(self.sorted_key, self.starts).astype(np.float64)
        # Largest ``key_i - min_g`` in each group: an exponential at least ``beta`` times this
        # accepts without reading ``key_i`` (a random access into an N-sized array).
        self.group_width = group_max - self.group_min
        self._group_offsets = self.group_min - self.key_min
        # Guide table size: a power of two (so u * size is exact), ~4 slots per group, so that at
        # most one draw in 4 (far fewer once the mass sits in a few groups) needs a search.
        guide_bits = max(4, min(_MAX_GUIDE_BITS, math.ceil(math.log2(4 * len(counts)))))
        self.guide_size = 1 << guide_bits
        self._guide_values = np.arange(len(counts) + 1, dtype=np.intp)

    @property
    def n_groups(self) -> int:
        return int(self.counts.shape[0])

    def draw(
        self,
        rng: np.random.Generator,
        beta: float,
        size: int,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """``size`` i.i.d. indices (int64) from ``p ~ exp(-beta * key)``, written into ``out``."""
        if out is None:
            out = np.empty(size, dtype=np.int64)
        if beta == 0.0 or self.n == 1:
            out[:] = rng.integers(0, self.n, size=size, dtype=np.int64)
            return out
        cdf = self._cdf(beta)
        # The guide costs O(guide_size) to build and saves a binary search per proposal, so only
        # draws large enough to repay it build one; either way a proposal finds the same group.
        guide = self._guide(cdf) if size * _GUIDE_PAYBACK >= self.guide_size else None
        accept_bound = beta * self.group_width
        filled = 0
        proposals = size + size // 16 + 16  # acceptance >= exp(-0.05) ~ 0.95 when not capped
        while filled < size:
            accepted = self._propose(rng, beta, cdf, guide, accept_bound, proposals)
            take = accepted[: size - filled]
            out[filled : filled + take.shape[0]] = take if self.order is None else self.order[take]
            filled += take.shape[0]
            rate = max(accepted.shape[0] / proposals, 1e-3)
            proposals = min(int((size - filled) / rate * 1.1) + 16, 1 << 22)
        return out

    def _cdf(self, beta: float) -> np.ndarray:
        """float64 CDF over groups of the envelope masses ``count_g * exp(-beta * offset_g)``."""
        cdf = np.exp(self._group_offsets * -beta)
        cdf *= self.counts
        np.cumsum(cdf, out=cdf)
        cdf /= cdf[-1]
        cdf[-1] = 1.0  # u < 1 always lands in a group
        return cdf

    def _guide(self, cdf: np.ndarray) -> np.ndarray:
        """``guide[j]`` = first group with ``cdf > j / guide_size`` (= searchsorted, in O(size)).

        ``cdf[g] <= j / M`` exactly when ``ceil(cdf[g] * M) <= j`` (M is a power of two, so the
        product is exact), and those ceilings ascend with ``g``: the guide is the run-length
        expansion of group ids.
        """
        ceilings = np.ceil(cdf * self.guide_size).astype(np.intp)
        runs = np.empty(ceilings.shape[0] + 1, dtype=np.intp)
        runs[0] = ceilings[0]
        np.subtract(ceilings[1:], ceilings[:-1], out=runs[1:-1])
        runs[-1] = self.guide_size - ceilings[-1]  # 0: cdf[-1] is exactly 1
        return np.repeat(self._guide_values, runs)

    def _groups(self, u: np.ndarray, cdf: np.ndarray, guide: np.ndarray | None) -> np.ndarray:
        """The group of each uniform ``u``: ``searchsorted(cdf, u, side='right')``."""
        if guide is None:
            return np.searchsorted(cdf, u, side="right")
        group = guide[(u * self.guide_size).astype(np.intp)]
        # The guide slot gives the first candidate group; draws in a slot that holds a group
        # boundary may belong further on and take the exact search.
        stale = np.flatnonzero(cdf[group] <= u)
        if stale.size:
            group[stale] = np.searchsorted(cdf, u[stale], side="right")
        return group

    def _propose(
        self,
        rng: np.random.Generator,
        beta: float,
        cdf: np.ndarray,
        guide: np.ndarray | None,
        accept_bound: np.ndarray,
        count: int,
    ) -> np.ndarray:
        """Positions (into ``order``) of the accepted ones among ``count`` proposals."""
        group = self._groups(rng.random(count), cdf, guide)
        member = (rng.random(count) * self.counts[group]).astype(np.int64)
        position = self.starts[group] + member
        # Accept with probability exp(-excess): P(Exp(1) >= x) = exp(-x). An exponential above
        # the group's largest excess accepts whatever the member; only the rest read its key.
        # Rounding is monotone, so beta * (key_i - min_g) <= beta * width_g in float64 too: the
        # decisions are exactly those of the plain test.
        exponential = rng.standard_exponential(count)
        keep = exponential >= accept_bound[group]
        unsure = np.flatnonzero(~keep)
        if unsure.size:
            excess = beta * (
                self.sorted_key[position[unsure]].astype(np.float64) - self.group_min[group[unsure]]
            )
            keep[unsure] = exponential[unsure] >= excess
        return position[keep]


# --------------------------------------------------------------------------------------------
# Sampler
# --------------------------------------------------------------------------------------------


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
        self._table: _GroupedDraws | None = None

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

    def _draw_table(self) -> _GroupedDraws:
        if self._table is None:
            max_beta = float(np.max(self.curriculum.schedule.betas))
            self._table = self.curriculum._draw_table(max_beta)
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
            indices = self._draw_table().draw(rng, beta, size, out)
        indices = self.curriculum._to_sample_index(indices)  # excluded samples are never drawn
        return indices.reshape(steps, self.world_size, self.batch_size)

    def _rank_block(self, epoch: int, block: int) -> np.ndarray:
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
                out[start:stop] = self._rank_block(epoch, block)
        return out

    def __iter__(self) -> Iterator[int]:
        epoch, start = self._epoch, self.position
        first_block = start // self._block_length
        for block in range(first_block, self.blocks_per_epoch):
            base = block * self._block_length
            skip = start - base if block == first_block else 0
            items = self._rank_block(epoch, block)[skip:].tolist()
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
