"""benchmarks/bench_incremental.py: the cases it applies to the folder, how it reads a run's last
lines, and how it counts the old samples whose difficulty changed (no Prefect, no model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.bench_incremental import (
    GOAL_SHARE,
    apply_case,
    case_record,
    difficulty_changes,
    file_path,
    parse_run,
    plan_cases,
    refitted,
    reset_folder,
    write_images,
)

REUSE_RUN = """\
artifact: /tmp/x/artifacts/nightly/v-1234
report:   /tmp/x/runs/reports/abc/report.md
nightly version v-1234: N=20200, D=32, k=7 (davies_bouldin); 12.5 s; tasks: 1 cached, 9 computed
embeddings: reused 20000 rows from 9f8e7d6c5b4a3921; embedded 200+0 (added+changed); 0 removed
"""


def test_the_cases_add_change_and_remove_the_shares_the_issue_names() -> None:
    a, b, c, d = plan_cases(20_000)
    assert [case.key for case in (a, b, c, d)] == ["a", "b", "c", "d"]
    assert len(a.add) == 200 and min(a.add) == 20_000  # new names, after the old ones
    assert b.change == (10_001,) and b.expected_embedded == 1
    assert len(c.remove) == 200 and c.expected_embedded == 0
    assert b.change[0] not in c.remove and set(c.remove) <= set(range(20_000))
    assert len(d.add) == 4_000 and min(d.add) > max(a.add) and not d.timed
    assert all(case.timed for case in (a, b, c))


def test_apply_case_writes_rewrites_and_deletes_files(tmp_path: Path) -> None:
    write_images(tmp_path, range(300))
    a, b, c, _ = plan_cases(300)
    apply_case(tmp_path, a)
    assert len(list(tmp_path.rglob("*.jpg"))) == 303 and file_path(tmp_path, 300).exists()
    changed = file_path(tmp_path, b.change[0])
    before = changed.read_bytes(), changed.stat().st_mtime_ns
    apply_case(tmp_path, b)
    assert changed.read_bytes() != before[0] and changed.stat().st_mtime_ns > before[1]
    apply_case(tmp_path, c)
    assert len(list(tmp_path.rglob("*.jpg"))) == 300
    assert not file_path(tmp_path, c.remove[0]).exists()
    reset_folder(tmp_path, 300)  # back to the first run's files, byte for byte
    assert sorted(int(path.stem) for path in tmp_path.rglob("*.jpg")) == list(range(300))
    assert changed.read_bytes() == before[0]


def test_parse_run_reads_the_version_line_and_the_reuse_line() -> None:
    figures = parse_run(REUSE_RUN)
    assert figures["artifact_path"] == "/tmp/x/artifacts/nightly/v-1234"
    assert (figures["n"], figures["k"], figures["flow_seconds"]) == (20_200, 7, 12.5)
    assert (figures["tasks_cached"], figures["tasks_computed"]) == (1, 9)
    assert (figures["reused"], figures["added"], figures["changed"]) == (20_000, 200, 0)
    assert (figures["removed"], figures["embedded"]) == (0, 200)
    assert refitted(figures) is None  # no clustering line


def test_parse_run_counts_retried_rows_and_reads_a_run_without_a_parent() -> None:
    retried = parse_run(
        "embeddings: reused 10 rows from p; embedded 1+2+3 (added+changed+retried); 4 removed"
    )
    assert (retried["embedded"], retried["changed"], retried["removed"]) == (6, 2, 4)
    first = parse_run("embeddings: reused 0 rows: no previous store")
    assert first["reused"] == 0 and first["reuse_reason"] == "no previous store"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "clusters: refit over 24000 rows (auto: 20.0% of the rows changed since the last fit "
            "(>= 10%)); parent 1a2b: 20000 reused, 4000+0 added+changed, 0 removed",
            True,
        ),
        (
            "clusters: assigned 200 new rows to the centroids of 1a2b (auto: 1.0% of the rows "
            "changed since the last fit (< 10%), no refit); parent 1a2b: ...",
            False,
        ),
        ("clusters: fitted (no previous version)", False),
    ],
)
def test_refitted_reads_the_clustering_line(line: str, expected: bool) -> None:
    assert refitted(parse_run(line)) is expected


def test_difficulty_changes_compares_the_unchanged_files_bitwise_by_path() -> None:
    old_paths = np.asarray(["a/1.jpg", "a/2.jpg", "b/3.jpg", "b/4.jpg"])
    old = np.asarray([0.1, 0.2, 0.3, 0.4], dtype=np.float32)
    new_paths = np.asarray(["a/1.jpg", "a/2.jpg", "a/9.jpg", "b/4.jpg"])  # 3 removed, 9 added
    new = np.asarray([0.1, 0.25, 0.9, np.nextafter(np.float32(0.4), 1)], dtype=np.float32)
    changes = difficulty_changes(old_paths, old, new_paths, new, ["a/1.jpg", "a/2.jpg", "b/4.jpg"])
    assert changes["old_samples"] == 3 and changes["changed"] == 2  # a/2 and b/4 (by one ulp)
    assert changes["max_abs_change"] == pytest.approx(0.05)
    same = difficulty_changes(old_paths, old, old_paths, old.copy(), old_paths)
    assert same == {"old_samples": 4, "changed": 0, "max_abs_change": 0.0}


def _figures(seconds: float, embedded: int, line: str | None = None) -> dict:
    return {
        "n": 100, "flow_seconds": seconds, "embedded": embedded, "store_embedded_rows": embedded,
        "reused": 99, "added": embedded, "changed": 0, "removed": 0, "k": 3,
        "chosen_by": "davies_bouldin", "clustering_line": line, "tasks_computed": 5,
        "tasks_cached": 0, "stages": {}, "tasks": {}, "process_seconds": seconds + 5,
        "difficulty": {"old_samples": 99, "changed": 0, "max_abs_change": 0.0},
    }  # fmt: skip


def test_case_record_checks_the_time_share_and_the_embedded_count() -> None:
    a, _, _, d = plan_cases(100)
    first = 100.0
    assert case_record(a, _figures(GOAL_SHARE * first, 1), first)["goal_met"]
    assert not case_record(a, _figures(GOAL_SHARE * first + 1, 1), first)["goal_met"]
    assert not case_record(a, _figures(1.0, 2), first)["goal_met"]  # one row too many embedded
    refit = _figures(50.0, 20, "clusters: refit over 120 rows (auto: 20% changed)")
    assert case_record(d, refit, first)["goal_met"]  # (d) has no time goal
    assert not case_record(d, _figures(5.0, 20), first)["goal_met"]  # no refit said
