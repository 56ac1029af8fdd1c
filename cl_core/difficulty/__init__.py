"""Difficulty: distances to cluster centres -> per-sample difficulty in [0, 1], normalised within
each cluster (or class); numpy only."""

from __future__ import annotations

from cl_core.difficulty.distances import distances_to_centroids
from cl_core.difficulty.normalize import NORMALIZATIONS, normalize_difficulty
from cl_core.difficulty.scale import DifficultyScale, fit_scale

__all__ = [
    "NORMALIZATIONS",
    "DifficultyScale",
    "distances_to_centroids",
    "fit_scale",
    "normalize_difficulty",
]
