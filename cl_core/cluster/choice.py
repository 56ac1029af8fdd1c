"""How k is chosen from the sweep: the one-standard-error rule over replicated index values.

Every candidate k is scored on ``B`` half-sample replicates of the sweep sample (each a fresh
k-means fit, :mod:`~cl_core.cluster.sweep`), which gives the Davies-Bouldin index's mean and
its standard error per k: the standard deviation of the half-sample values, which estimates the
standard error of the index on the whole sample (half-sampling: McCarthy, *Pseudo-replication:
half samples*, 1969) and so captures both the data's sampling noise and the fit's (k-means
local optima), which a few seeds alone would not. The rule (Breiman, Friedman, Olshen & Stone, *Classification and
Regression Trees*, 1984, section 3.4; Hastie, Tibshirani & Friedman, *The Elements of
Statistical Learning*, 2nd ed., section 7.10): the *band* is the best mean plus one standard
error (each k's from its replicates, pooled over the ks: :func:`pooled_standard_error`), and the chosen k is the **smallest k whose mean lies within the band** - the simplest
model that the noise cannot tell from the best. Two runs whose features differ by rounding
(fp32 vs bf16) move every mean by much less than the band, so they choose the same k, where the
lowest point of a flat, jagged curve flips. When many ks (:data:`FLAT_FRACTION` of the
candidates or more) lie in the band, the curve is *flat*: the data show no preferred k.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from cl_core.cluster.results import SweepPoint

RULE = "one-standard-error"
"""Name of the rule, as recorded in manifests and ``sweep.json``."""

BAND_SE = 1.0
"""Width of the band in pooled standard errors (the classic one; three was measured and not
adopted: README, "How k is chosen")."""

FLAT_FRACTION = 1 / 3
"""The curve is called flat when at least this fraction of the candidates (and 3) are in band."""


@dataclass(frozen=True)
class KChoice:
    """The chosen k and the band it was chosen from.

    Attributes
    ----------
    k : int
        The smallest k whose mean index is within the band.
    best_k : int
        The k of the lowest mean index.
    best_mean : float
        That k's mean index.
    best_se : float
        The standard error of the index (:func:`pooled_standard_error`).
    band : float
        ``best_mean + best_se``: every k with a mean at or below it is in band.
    in_band : tuple of int
        The ks in band, ascending.
    n_candidates : int
        ks evaluated.
    flat : bool
        Many ks in band (:data:`FLAT_FRACTION` of the candidates, at least 3).
    rule : str
        :data:`RULE`.
    """

    k: int
    best_k: int
    best_mean: float
    best_se: float
    band: float
    in_band: tuple[int, ...]
    n_candidates: int
    flat: bool
    rule: str = RULE

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> KChoice:
        """The choice :meth:`to_dict` wrote (other keys, such as the grid, ignored)."""
        names = {f.name for f in fields(cls)}
        kept = {key: value for key, value in values.items() if key in names}
        kept["in_band"] = tuple(int(k) for k in kept.get("in_band", ()))
        return cls(**kept)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``in_band`` as a list)."""
        values = asdict(self)
        values["in_band"] = list(self.in_band)
        return values

    def summary(self) -> str:
        """One sentence: the chosen k, the rule and the band."""
        return (
            f"k = {self.k}: the smallest k whose mean Davies-Bouldin index is within one "
            f"standard error of the best (k = {self.best_k}: {self.best_mean:.3f} "
            f"+ {self.best_se:.3f} = band {self.band:.3f}); {len(self.in_band)} of "
            f"{self.n_candidates} k in band"
        )

    def flat_note(self) -> str | None:
        """The sentence for a flat curve, or None."""
        if not self.flat:
            return None
        return (
            f"the Davies-Bouldin curve is flat: {len(self.in_band)} of {self.n_candidates} k "
            f"lie within one standard error of the best (index <= {self.band:.3f}); k = "
            f"{self.k} is the smallest of them, a weak preference - check the sweep plot, or "
            "pass --k"
        )


def choose_in_band(points: Sequence[SweepPoint]) -> KChoice:
    """Apply the one-standard-error rule to the swept points of one sweep (one class).

    A point without replicates (standard error NaN) counts with a standard error of 0, which
    reduces the rule to the lowest index (ties: the smaller k).

    Raises
    ------
    ValueError
        No point has a finite index (degenerate features).
    """
    finite = [point for point in points if math.isfinite(point.davies_bouldin)]
    if not finite:
        raise ValueError(
            "no candidate k has a finite Davies-Bouldin index; the features are degenerate "
            "(constant or duplicated rows) - check the embedding stage"
        )
    best = min(finite, key=lambda point: (point.davies_bouldin, point.k))
    se = pooled_standard_error(finite)
    band = best.davies_bouldin + BAND_SE * se
    in_band = tuple(sorted(point.k for point in finite if point.davies_bouldin <= band))
    n = len(finite)
    return KChoice(
        k=in_band[0],
        best_k=best.k,
        best_mean=best.davies_bouldin,
        best_se=se,
        band=band,
        in_band=in_band,
        n_candidates=n,
        flat=len(in_band) >= max(3, math.ceil(FLAT_FRACTION * n)),
    )


def pooled_standard_error(points: Sequence[SweepPoint]) -> float:
    """The index's standard error pooled over the ks: the root mean square of their own.

    Each k's standard error comes from a few replicates (4 by default), so it is itself noisy
    (about 40 % relative error); the band must not move with that noise. Neighbouring ks share
    the sample and the fitting noise, so the pooled value (as a pooled variance in an analysis
    of variance) is the stable estimate of the one standard error. 0.0 without replicates.
    """
    values = [p.davies_bouldin_se for p in points if math.isfinite(p.davies_bouldin_se)]
    return math.sqrt(sum(v * v for v in values) / len(values)) if values else 0.0


def choice_from_records(records: Sequence[dict[str, Any]]) -> KChoice:
    """:func:`choose_in_band` of sweep points given as :meth:`SweepPoint.to_dict` records."""
    return choose_in_band([SweepPoint.from_dict(record) for record in records])
