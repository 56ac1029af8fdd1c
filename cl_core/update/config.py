"""The cluster update policy of a nightly run: :class:`RefitPolicy` and its thresholds.

Why these defaults
------------------
``max_changed_share = 0.10``: k-means centroids are means over their members, so replacing a
share ``s`` of the rows moves them by at most about ``s`` of the distance to the new rows' own
means; below 10 % that is well inside the spread a refit itself shows between seeds (and between
features that differ only by bf16 rounding), so a refit would mostly reshuffle scores without
telling the model anything new. The share is counted since the last fit, not per run: thirty
nightly runs adding 0.5 % each refit once the 10 % are reached. Index libraries that never
retrain (LanceDB's ``optimize()``) are reported to degrade; users retrain when rows double, far
later than this.

``max_distance_ratio = 1.25``: the median distance of the new rows to their assigned centroids
over the median of the fitted rows. New rows drawn from the same distribution give a ratio near
1 (the sample median's standard error is about ``1.25 sigma / sqrt(n)``, a few percent for the
``min_new_rows = 32`` rows below which the ratio is not used). A quarter further out means the new
rows fall between or beyond the clusters: a new mode the old centroids do not describe, and
difficulties that would pile up at 1 after clipping.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from cl_core.validation import check_choice

REFIT_POLICIES = ("auto", "always", "never")
DEFAULT_MAX_CHANGED_SHARE = 0.10
DEFAULT_MAX_DISTANCE_RATIO = 1.25
DEFAULT_MIN_NEW_ROWS = 32


@dataclass(frozen=True)
class RefitPolicy:
    """When a nightly run fits the clusters again, and when it keeps the previous version's.

    Attributes
    ----------
    mode : {"auto", "always", "never"}
        ``never``: assign the new and changed rows to the previous version's centroids and
        score them on its per-cluster scale (unchanged rows keep their difficulty bitwise);
        ``always``: sweep and fit over all rows; ``auto``: refit when the data has drifted
        (either threshold below is reached), else assign.
    max_changed_share : float in (0, 1]
        ``auto`` refits once the rows added, changed or removed since the last fit reach this
        share of the rows that fit was made on.
    max_distance_ratio : float > 1
        ``auto`` refits when the new rows' median distance to their centroids reaches this
        multiple of the previous rows' median distance.
    min_new_rows : int >= 1
        Fewer new rows than this: the distance ratio is reported but not used (too noisy).
    """

    mode: str = "auto"
    max_changed_share: float = DEFAULT_MAX_CHANGED_SHARE
    max_distance_ratio: float = DEFAULT_MAX_DISTANCE_RATIO
    min_new_rows: int = DEFAULT_MIN_NEW_ROWS

    def __post_init__(self) -> None:
        check_choice("refit", self.mode, REFIT_POLICIES)
        if not 0.0 < float(self.max_changed_share) <= 1.0:
            raise ValueError(
                f"max_changed_share must lie in (0, 1], got {self.max_changed_share!r}; "
                "e.g. 0.1 (refit once 10% of the rows changed since the last fit)"
            )
        if not float(self.max_distance_ratio) > 1.0:
            raise ValueError(
                f"max_distance_ratio must be > 1, got {self.max_distance_ratio!r}; e.g. 1.25"
            )
        if int(self.min_new_rows) < 1:
            raise ValueError(f"min_new_rows must be >= 1, got {self.min_new_rows!r}")

    def to_json(self) -> dict[str, Any]:
        """The policy as plain JSON (recorded in the manifest's lineage)."""
        return dataclasses.asdict(self)


def as_policy(policy: str | RefitPolicy | None) -> RefitPolicy:
    """A :class:`RefitPolicy` from a mode name (default thresholds), a policy, or None (auto)."""
    if policy is None:
        return RefitPolicy()
    if isinstance(policy, RefitPolicy):
        return policy
    return RefitPolicy(mode=str(policy))
