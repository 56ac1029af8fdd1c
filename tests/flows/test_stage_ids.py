"""Content ids of the stages (``flows.ids.content_id``): what enters a stage's cache key."""

from __future__ import annotations

import pytest

from cl_core.cluster import choice
from flows.params import ClusterParams
from flows.stages import cluster


def test_a_new_k_rule_is_not_answered_from_the_old_rule_s_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sweep's points do not change with the rule, but the chosen k does: the clustering's
    content id (its cache key and file names) names the rule whenever the sweep chooses k."""
    swept, explicit = ClusterParams(), ClusterParams(n_clusters=3)
    before = cluster.cluster_identity("f" * 16, swept), cluster.cluster_identity("f" * 16, explicit)
    monkeypatch.setattr(choice, "BAND_SE", 3.0)
    assert cluster.cluster_identity("f" * 16, swept) != before[0]
    assert cluster.cluster_identity("f" * 16, explicit) == before[1]  # an explicit k: no rule
