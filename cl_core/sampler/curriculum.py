"""The training-time :class:`Curriculum`: per-sample difficulty plus its schedule; :func:`load_curriculum`.

``Curriculum.probabilities(t)`` is ``p_i ~ exp(-beta(t) * d_i)`` (``+`` for the ``hard``
strategy) with ``beta(t) = 1 / T(t)`` interpolated from the artifact's temperature table (never
re-solved), and uniform from the end of warmup on. Artifacts on object storage load the same way
(``load_curriculum("s3://bucket/artifacts/digits/latest")``); fsspec and s3fs are imported only
for such URLs.

An artifact published with a ``sample_mask`` (samples that could not be loaded) excludes them:
probabilities, the temperature table and the draw tables cover the ``n_valid`` drawable samples
only (uniform after warmup means uniform over them), drawn positions are mapped to dataset
indices (:meth:`Curriculum.to_sample_index`), and an excluded index is never drawn.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from cl_core.artifacts.manifest import SAMPLE_MASK_FILE, load_manifest, resolve_version
from cl_core.artifacts.verify import (
    check_difficulty,
    load_array,
    load_json,
    load_sample_mask,
    verify_file,
)
from cl_core.io import Location
from cl_core.sampler.draws import GroupedDraws
from cl_core.schedule import (
    Schedule,
    ScheduleConfig,
    build_schedule,
    effective_fraction,
    favoured_offsets,
    probabilities_from_offsets,
)
from cl_core.validation import check_finite, check_int, check_valid_mask

_LOADED_FILES = ("difficulty.npy", "assignment.npy", "schedule.json", SAMPLE_MASK_FILE)


def _check_iteration(iteration: object) -> int:
    return check_int("iteration", iteration, 0, "; pass the global training step (0, 1, 2, ...)")


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
    path : Path, UPath or None
        The version directory (a ``upath.UPath`` when loaded from a
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
        self._draw_tables: dict[float, GroupedDraws] = {}
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

    def to_sample_index(self, positions: np.ndarray) -> np.ndarray:
        """Map positions among the drawable samples to dataset indices, in place (int64)."""
        if self._valid_index is not None:
            np.take(self._valid_index, positions, out=positions)
        return positions

    def draw_table(self, max_beta: float) -> GroupedDraws:
        """The grouped sampling table for betas up to ``max_beta`` (built once, then cached).

        Built over the drawable samples only; its draws are positions among them (map them with
        :meth:`to_sample_index`).
        """
        table = self._draw_tables.get(max_beta)
        if table is None:
            drawable = self._drawable_difficulty()
            key = drawable if self.strategy == "easy" else -drawable
            table = GroupedDraws(key, max_beta)
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


def load_curriculum(path: str | os.PathLike[str] | Location) -> Curriculum:
    """Load and verify a published curriculum artifact.

    Parameters
    ----------
    path : str, PathLike or UPath
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
