"""Difficulty: distances to cluster centres -> per-sample difficulty in [0, 1], normalised within
each cluster (or class); numpy only."""

from __future__ import annotations

from cl_core.difficulty.distances import distances_to_centroids
from cl_core.difficulty.normalize import NORMALIZATIONS, normalize_difficulty

__all__ = ["NORMALIZATIONS", "distances_to_centroids", "normalize_difficulty"]
