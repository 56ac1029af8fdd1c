"""Which shards each embedding task embeds (``flows.stages.embed.shard_groups``): shards partly
copied from an earlier store share tasks, up to a shard's rows to embed per task."""

from __future__ import annotations

from flows.stages.embed import shard_groups


def test_a_store_without_copied_rows_has_one_task_per_shard() -> None:
    assert shard_groups(4, set(), {}, 16) == [[0], [1], [2], [3]]


def test_partly_copied_shards_share_a_task_and_whole_copies_are_none() -> None:
    """A night's 200 new files over 5 shards of 4096 rows: one task, one loader."""
    partly = {0: 40, 1: 40, 2: 40, 3: 40, 4: 40}
    assert shard_groups(5, set(), partly, 4096) == [[0, 1, 2, 3, 4]]
    assert shard_groups(5, {1, 3}, {0: 1, 2: 5, 4: 2}, 4096) == [[0, 2, 4]]


def test_groups_hold_at_most_a_shards_rows_and_new_shards_stay_alone() -> None:
    partly = {0: 10, 1: 4, 2: 3, 4: 16, 5: 1}  # shard 3: all new rows (e.g. a new class folder)
    assert shard_groups(6, set(), partly, 16) == [[0, 1], [2], [3], [4], [5]]
