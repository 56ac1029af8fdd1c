"""benchmarks/bench_pipeline.py: the interval arithmetic behind the overhead it reports, and the
step timer's wrapping of the cl_core steps (public registry, no marker attribute)."""

from __future__ import annotations

from benchmarks.bench_pipeline import StepTimer, uncovered, union


def test_union_merges_overlapping_and_touching_intervals_and_drops_empty_ones() -> None:
    spans = [(5.0, 6.0), (0.0, 2.0), (1.0, 3.0), (3.0, 4.0), (7.0, 7.0), (8.0, 7.5)]
    assert union(spans) == [(0.0, 4.0), (5.0, 6.0)]


def test_uncovered_is_what_no_interval_covers_within_the_window() -> None:
    spans = [(1.0, 2.0), (1.5, 3.0), (5.0, 12.0), (-3.0, 0.5)]
    assert uncovered(0.0, 10.0, spans) == [(0.5, 1.0), (3.0, 5.0)]
    assert uncovered(0.0, 10.0, []) == [(0.0, 10.0)]


def test_busy_seconds_counts_overlapping_steps_once() -> None:
    """Sweep jobs overlap on Dask workers: their union, not their sum, is cl_core's time."""
    timer = StepTimer()
    timer.intervals = [(0.0, 4.0, "a"), (1.0, 5.0, "b"), (8.0, 9.0, "c"), (9.5, 12.0, "d")]
    assert timer.busy_seconds(0.0, 10.0) == 5.0 + 1.0 + 0.5
    assert timer.by_label(0.0, 10.0) == {"a": 4.0, "b": 4.0, "c": 1.0}


def test_timed_wrapper_records_each_call_and_keeps_the_functions_name() -> None:
    timer = StepTimer()
    wrapper = timer.timed(sorted, "builtins.sorted")
    assert wrapper([2, 1]) == [1, 2]
    assert wrapper.__name__ == "sorted"
    assert [label for _, _, label in timer.intervals] == ["builtins.sorted"]


def test_install_wraps_each_step_once_and_uninstall_restores_them() -> None:
    import flows.stages.cluster as stage
    from benchmarks.bench_pipeline import cl_core_steps

    names = [name for module, _, name in cl_core_steps() if module == "flows.stages.cluster"]
    assert names  # the cluster stage calls cl_core
    before = {name: getattr(stage, name) for name in names}
    timer = StepTimer()
    timer.install()
    try:
        timer.install()  # a second install finds only wrappers: nothing is wrapped twice
        for name in names:
            assert timer.wrapped[getattr(stage, name)] is before[name]
    finally:
        timer.uninstall()
    assert {name: getattr(stage, name) for name in names} == before
    assert timer.wrapped == {}
