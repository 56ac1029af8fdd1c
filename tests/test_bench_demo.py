"""benchmarks/bench_demo.py: the per-phase breakdown read from the demo's log lines."""

from __future__ import annotations

import time

import pytest

from benchmarks.bench_demo import log_events, stage_breakdown

LOG = """\
10:00:05.000 | INFO    | Flow run 'a-b' - Beginning flow run 'a-b' for flow 'curriculum-pipeline'
10:00:05.500 | INFO    | Flow run 'c-d' - Beginning subflow run 'c-d' for flow 'embed'
10:00:06.000 | INFO    | Task run 'embed-shard-1' - Finished in state Completed()
10:00:25.500 | INFO    | Flow run 'c-d' - Finished in state Completed()
10:00:26.000 | INFO    | Flow run 'e-f' - Beginning subflow run 'e-f' for flow 'cluster'
10:00:26.100 | INFO    | distributed.scheduler - State start
10:00:34.000 | INFO    | Flow run 'e-f' - k = 5: the smallest k whose mean Davies-Bouldin index is within one standard error of the best over k = 2..20
10:00:35.000 | INFO    | Flow run 'e-f' - Finished in state Completed()
10:00:35.500 | INFO    | Flow run 'g-h' - Beginning subflow run 'g-h' for flow 'curriculum'
10:00:35.600 | INFO    | Task run 'schedule-7d7' - Finished in state Completed()
10:00:37.100 | INFO    | Task run 'publish-06a' - Finished in state Completed()
10:00:37.200 | INFO    | Flow run 'g-h' - Finished in state Completed()
10:00:37.300 | INFO    | Flow run 'a-b' - Finished in state Completed()
"""


def test_stage_breakdown_from_the_demo_log() -> None:
    day = time.localtime()
    started = time.mktime((day.tm_year, day.tm_mon, day.tm_mday, 10, 0, 0, 0, 0, -1))
    events = log_events(LOG, started)
    assert len(events) == 12  # the distributed line is not a run's line
    breakdown = stage_breakdown(events, wall=38.0)
    assert breakdown == pytest.approx(
        {
            "startup": 5.0,
            "embed": 20.0,
            "cluster": 9.0,
            "sweep": 8.0,
            "fit": 1.0,
            "curriculum": 1.7,
            "publish": 1.5,
            "teardown": 0.7,
        }
    )
