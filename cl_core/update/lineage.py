"""The manifest's ``lineage``: where a version comes from, and one line saying so.

Keys: ``parent`` (the version this one updates, or None), ``centroids_from`` (the version whose
centroids it uses; None when it fitted its own), ``policy``, ``decision`` (``fit`` without a
previous version, else ``assign`` or ``refit``), ``reason``, the row counts ``added``,
``changed``, ``removed``, ``reused`` (unchanged rows taken over from the parent) and
``retried``, ``fit_rows`` and ``changed_since_fit`` (what the next run's changed share is counted
against), and ``drift`` (:class:`~cl_core.update.drift.DriftFigures`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cl_core.store import FileMatch
from cl_core.update.config import RefitPolicy
from cl_core.update.drift import DriftFigures
from cl_core.update.plan import RefitDecision


def first_lineage(policy: RefitPolicy, n_rows: int, n_valid: int, why: str) -> dict[str, Any]:
    """The lineage of a version fitted without a previous version (``why``: e.g. "no previous
    version")."""
    return {
        "parent": None,
        "centroids_from": None,
        "policy": policy.to_json(),
        "decision": "fit",
        "reason": why,
        "added": int(n_rows),
        "changed": 0,
        "removed": 0,
        "reused": 0,
        "retried": 0,
        "fit_rows": int(n_valid),
        "changed_since_fit": 0,
        "drift": None,
    }


def update_lineage(
    *,
    parent: str,
    parent_fit_version: str,
    parent_fit_rows: int,
    changes: FileMatch,
    policy: RefitPolicy,
    decision: RefitDecision,
    figures: DriftFigures,
    n_valid: int,
) -> dict[str, Any]:
    """The lineage of a version made from ``parent`` by an update."""
    refit = decision.action == "refit"
    return {
        "parent": parent,
        "centroids_from": None if refit else parent_fit_version,
        "policy": policy.to_json(),
        "decision": decision.action,
        "reason": decision.reason,
        "added": int(changes.added),
        "changed": int(changes.changed),
        "removed": int(changes.removed),
        "reused": int(changes.reused),
        "retried": int(changes.retried),
        "fit_rows": int(n_valid) if refit else int(parent_fit_rows),
        "changed_since_fit": 0 if refit else int(figures.changed_since_fit),
        "drift": figures.to_json(),
    }


def lineage_parents(lineage: Mapping[str, Any] | None) -> list[str]:
    """Content ids the lineage adds to a version's parents (so it is part of the version id)."""
    if not lineage or not lineage.get("parent"):
        return []
    return [
        f"parent:{lineage['parent']}",
        f"centroids:{lineage.get('centroids_from') or 'fitted'}",
    ]


def lineage_line(lineage: Mapping[str, Any]) -> str:
    """One line for the run's last lines and summaries, e.g. "assigned 40 new rows to the
    centroids of 1a2b3c4d5e6f (auto: 1.0% of the rows changed since the last fit (< 10%); ...);
    parent 1a2b3c4d5e6f: 4000 reused, 40+0 added+changed, 0 removed"."""
    decision = lineage.get("decision")
    if decision == "fit" or not lineage.get("parent"):
        return f"fitted ({lineage.get('reason', 'no previous version')})"
    drift = lineage.get("drift") or {}
    counts = (
        f"parent {lineage['parent']}: {lineage['reused']} reused, "
        f"{lineage['added']}+{lineage['changed']} added+changed, {lineage['removed']} removed"
    )
    if decision == "assign":
        head = (
            f"assigned {drift.get('new_rows', 0)} new rows to the centroids of "
            f"{lineage['centroids_from']}"
        )
    else:
        head = f"refit over {lineage['fit_rows']} rows"
    return f"{head} ({lineage['reason']}); {counts}"


def lineage_rows(lineage: Mapping[str, Any] | None) -> dict[str, str]:
    """Label -> text rows of a lineage for tables (``inspect``, report.md)."""
    if not lineage:
        return {}
    drift = lineage.get("drift") or {}
    policy = lineage.get("policy") or {}
    rows = {
        "parent version": str(lineage.get("parent") or "none"),
        "centroids from": str(lineage.get("centroids_from") or "fitted in this version"),
        "refit policy": str(policy.get("mode", policy)),
        "decision": f"{lineage.get('decision')} ({lineage.get('reason')})",
        "rows added / changed / removed / reused": (
            f"{lineage.get('added')} / {lineage.get('changed')} / {lineage.get('removed')} / "
            f"{lineage.get('reused')}"
        ),
        "rows changed since the last fit": (
            f"{lineage.get('changed_since_fit')} of {lineage.get('fit_rows')}"
        ),
    }
    if drift:
        ratio = drift.get("distance_ratio")
        rows["drift"] = (
            f"changed share {drift.get('changed_share', 0):.2%} (threshold "
            f"{policy.get('max_changed_share', 0):.0%}); distance ratio "
            + ("n/a" if ratio is None else f"{ratio:.3f}")
            + f" (threshold {policy.get('max_distance_ratio')}; {drift.get('new_rows')} new rows)"
        )
    return rows
