"""The refit decision: assign to the previous centroids, or fit again (:func:`decide`)."""

from __future__ import annotations

from dataclasses import dataclass

from cl_core.update.config import RefitPolicy
from cl_core.update.drift import DriftFigures

ACTIONS = ("assign", "refit")


@dataclass(frozen=True)
class RefitDecision:
    """What a nightly run does with the clusters, and why.

    Attributes
    ----------
    action : {"assign", "refit"}
    reason : str
        One line naming the policy and the figures that decided, e.g. ``"auto: 1.0% of the
        rows changed since the last fit (< 10%); new rows' distance ratio 1.02 (< 1.25)"``.
    """

    action: str
    reason: str


def _share(figures: DriftFigures) -> str:
    return f"{figures.changed_share:.1%} of the rows changed since the last fit"


def _ratio(figures: DriftFigures) -> str:
    if figures.distance_ratio is None:
        return "no new rows to measure"
    return f"new rows' distance ratio {figures.distance_ratio:.2f}"


def decide(policy: RefitPolicy, figures: DriftFigures) -> RefitDecision:
    """Assign or refit under ``policy`` given the drift ``figures``.

    ``auto`` refits when ``changed_share >= max_changed_share`` or, with at least
    ``min_new_rows`` new rows, ``distance_ratio >= max_distance_ratio``. The reason always names
    both figures (and, under ``auto``, their thresholds).
    """
    share, ratio = _share(figures), _ratio(figures)
    if policy.mode != "auto":
        action = "assign" if policy.mode == "never" else "refit"
        return RefitDecision(action, f"{policy.mode}: {share}; {ratio}")
    share_hit = figures.changed_share >= policy.max_changed_share
    share += f" ({'>=' if share_hit else '<'} {policy.max_changed_share:.0%})"
    ratio_hit = False
    if figures.distance_ratio is not None:
        if figures.new_rows < policy.min_new_rows:
            ratio += f", not used: fewer than {policy.min_new_rows} new rows"
        else:
            ratio_hit = figures.distance_ratio >= policy.max_distance_ratio
            ratio += f" ({'>=' if ratio_hit else '<'} {policy.max_distance_ratio:.2f})"
    action = "refit" if share_hit or ratio_hit else "assign"
    return RefitDecision(action, f"auto: {share}; {ratio}")
