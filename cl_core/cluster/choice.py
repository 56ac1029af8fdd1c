"""How k is chosen from the sweep: the one-standard-error rule, widened to three on a flat curve.

Every candidate k is scored on ``B`` half-sample replicates of the sweep sample (each a fresh
k-means fit, :mod:`~cl_core.cluster.sweep`), which gives the Davies-Bouldin index's mean and
its standard error per k: the standard deviation of the half-sample values, which estimates the
standard error of the index on the whole sample (half-sampling: McCarthy, *Pseudo-replication:
half samples*, 1969) and so captures both the data's sampling noise and the fit's (k-means
local optima), which a few seeds alone would not. The standard error is pooled over the ks
in relative terms and scaled to the best k (:func:`pooled_standard_error`): the index's noise
grows with its value (ks above a clear minimum split groups at random, with indices 10x the
best and their spread with them), so an absolute pool let those ks set the band.

The rule (Breiman, Friedman, Olshen & Stone, *Classification and Regression Trees*, 1984,
section 3.4; Hastie, Tibshirani & Friedman, *The Elements of Statistical Learning*, 2nd ed.,
section 7.10): the chosen k is the **smallest k whose mean lies within the band** of the best
mean, the simplest model the noise cannot tell from the best. The band is one standard error
(:data:`BAND_SE`), unless the curve is *flat*: at least :data:`FLAT_FRACTION` of the
candidates (and :data:`FLAT_MIN_K`) lie within :data:`FLAT_BAND_SE` = 3 standard errors of the
best, a bound that holds every k the noise cannot tell from the best at a 5 % family-wise level
over up to 30 candidates (Bonferroni: ``z = 2.94``). On a flat curve the one-SE edge cuts the
plateau where the noise puts it (on the demo's features it chose k from 3 to 18 over precisions
and seeds); there the band is the three standard errors, and the smallest k of the plateau is
chosen (k = 3 in 34 of 36 sweeps). A curve with a clear minimum keeps the one-SE band, which a
wider one would overreach (README, "How k is chosen").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from cl_core.cluster.results import SweepPoint

RULE = "one-standard-error, three when flat"
"""Name of the rule, as recorded in manifests and ``sweep.json``."""

SE_POOLING = "relative"
"""How the ks' standard errors are pooled: as shares of their index (:func:`pooled_standard_error`)."""

BAND_SE = 1.0
"""Width of the band in pooled standard errors on a curve with a clear minimum."""

FLAT_BAND_SE = 3.0
"""Width of the band on a flat curve, and of the test for one (a 5 % family-wise bound)."""

FLAT_FRACTION = 1 / 2
"""The curve is flat when this fraction of the candidates (and FLAT_MIN_K) are within
FLAT_BAND_SE: most of the candidates cannot be told from the best."""

FLAT_MIN_K = 5
"""Fewer ks than this within FLAT_BAND_SE never make a flat curve (a narrow range, 2..5, or a
few noisy ks around a clear minimum keep the one-SE band)."""


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
        The standard error of the best k's index (:func:`pooled_standard_error`).
    band : float
        ``best_mean + band_se * best_se``: every k with a mean at or below it is in band.
    in_band : tuple of int
        The ks in band, ascending.
    n_candidates : int
        ks evaluated.
    flat : bool
        At least :data:`FLAT_FRACTION` of the candidates (and :data:`FLAT_MIN_K`) within
        :data:`FLAT_BAND_SE` standard errors of the best.
    band_se : float
        The band's width in standard errors: :data:`FLAT_BAND_SE` on a flat curve, else
        :data:`BAND_SE` (records written before the flat band read as 1.0).
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
    band_se: float = BAND_SE
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
            f"k = {self.k}: the smallest k whose mean Davies-Bouldin index is within "
            f"{self.band_words()} of the best (k = {self.best_k}: {self.best_mean:.3f} "
            f"+ {self.band_se:g} x {self.best_se:.3f} = band {self.band:.3f}); "
            f"{len(self.in_band)} of {self.n_candidates} k in band"
        )

    def band_words(self) -> str:
        """The band's width in words: "one standard error", "three standard errors"."""
        names = {1.0: "one standard error", 3.0: "three standard errors"}
        return names.get(float(self.band_se), f"{self.band_se:g} standard errors")

    def flat_note(self) -> str | None:
        """The sentence for a flat curve, or None."""
        if not self.flat:
            return None
        return (
            f"the Davies-Bouldin curve is flat: {len(self.in_band)} of {self.n_candidates} k "
            f"lie within {self.band_words()} of the best (index <= {self.band:.3f}); k = "
            f"{self.k} is the smallest of them, a weak preference - check the sweep plot, or "
            "pass --k"
        )


def choose_in_band(points: Sequence[SweepPoint]) -> KChoice:
    """Apply the rule (one standard error, three on a flat curve) to the points of one sweep.

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
    se = pooled_standard_error(finite, best.davies_bouldin)
    n = len(finite)
    near = [p for p in finite if p.davies_bouldin <= best.davies_bouldin + FLAT_BAND_SE * se]
    flat = len(near) >= max(FLAT_MIN_K, math.ceil(FLAT_FRACTION * n))
    band_se = FLAT_BAND_SE if flat else BAND_SE
    band = best.davies_bouldin + band_se * se
    in_band = tuple(sorted(point.k for point in finite if point.davies_bouldin <= band))
    return KChoice(
        k=in_band[0],
        best_k=best.k,
        best_mean=best.davies_bouldin,
        best_se=se,
        band=band,
        in_band=in_band,
        n_candidates=n,
        flat=flat,
        band_se=band_se,
    )


def rule_parameters() -> dict[str, Any]:
    """The rule's name and every constant that can change the chosen k (JSON-ready): what a
    cache key of a chosen k must include, so that a changed rule is never served from the old
    rule's cache."""
    return {
        "rule": RULE,
        "se_pooling": SE_POOLING,
        "band_se": BAND_SE,
        "flat_band_se": FLAT_BAND_SE,
        "flat_fraction": FLAT_FRACTION,
        "flat_min_k": FLAT_MIN_K,
    }


def pooled_standard_error(points: Sequence[SweepPoint], scale: float) -> float:
    """The index's standard error at ``scale``, pooled over the ks in relative terms.

    Each k's standard error comes from a few replicates (4 by default), so it is itself noisy
    (about 40 % relative error); the band must not move with that noise. Neighbouring ks share
    the sample and the fitting noise, so a pooled value (as a pooled variance in an analysis of
    variance) is the stable estimate. The pool is of relative errors, ``se_k / mean_k`` (root
    mean square), scaled to ``scale`` (the best k's index): the index is a ratio whose noise
    grows with it. On 10 separated blobs the ks above the truth have indices of 3-11 with
    standard errors of 0.1-1.7 against 0.81 +- 0.003 at the truth; an absolute pool (0.60) put
    k = 7 in the band, the relative one (0.047) holds k = 10 alone (``bench_cluster.py``).
    0.0 without replicates.
    """
    values = [
        p.davies_bouldin_se / p.davies_bouldin
        for p in points
        if math.isfinite(p.davies_bouldin_se) and p.davies_bouldin > 0
    ]
    return scale * math.sqrt(sum(v * v for v in values) / len(values)) if values else 0.0


def choice_from_records(records: Sequence[dict[str, Any]]) -> KChoice:
    """:func:`choose_in_band` of sweep points given as :meth:`SweepPoint.to_dict` records."""
    return choose_in_band([SweepPoint.from_dict(record) for record in records])
