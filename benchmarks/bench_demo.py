"""Benchmark of the whole demo: ``cl-curriculum demo`` in a clean directory, and where its time goes.

Run from the repository root::

    python benchmarks/bench_demo.py            # the demo, plus a server cold start alone
    python benchmarks/bench_demo.py --quick    # the demo only (it has one size)

It times ``cl-curriculum demo`` (the console script, so it runs with the project's allocator
set-up) in a clean temporary directory with a new Prefect home; goal <= 60 s wall. It reports
where the time goes, from the run's log lines: start-up (checks, imports and the Prefect server
start), embed, cluster (sweep, fit), curriculum (publish) and teardown; and, run alone before the
demo, how long a temporary Prefect server takes to start on a new database (Prefect's own
temporary server, as ``prefect.testing.utilities.prefect_test_harness`` starts it; the demo's
embedded server serves the same ephemeral app).

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, arguments, emit, table

DEMO_GOAL_S = 60.0
_LOG_LINE = re.compile(
    r"^(\d\d):(\d\d):(\d\d\.\d+) \| \w+\s*\| (Flow run|Task run) '([^']+)' - (.*)$"
)
_BEGIN = re.compile(r"Beginning (?:sub)?flow run '[^']+' for flow '([^']+)'")


def demo_command() -> list[str]:
    """``cl-curriculum demo --verbose --no-progress`` (verbose: its log lines time the stages)."""
    script = Path(sys.executable).with_name("cl-curriculum")
    args = ["demo", "--verbose", "--no-progress"]
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "flows.cli", *args]


def clean_env(home: Path) -> dict[str, str]:
    """No Prefect settings but a new, empty Prefect home: a first run in a clean directory."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(home)
    env["PYTHONPATH"] = str(ROOT)
    return env


def log_events(stderr: str, started: float) -> list[tuple[float, str, str, str]]:
    """``(seconds since start, 'Flow run' | 'Task run', run name, message)`` per log line.

    The console log stamps local wall-clock time to the millisecond; ``started`` is the
    ``time.time()`` at which the command started.
    """
    day = time.localtime(started)
    midnight = time.mktime((day.tm_year, day.tm_mon, day.tm_mday, 0, 0, 0, 0, 0, -1))
    events = []
    for line in stderr.splitlines():
        match = _LOG_LINE.match(line.strip())
        if match:
            hours, minutes, seconds, kind, name, message = match.groups()
            at = midnight + int(hours) * 3600 + int(minutes) * 60 + float(seconds)
            events.append((round(at - started, 2), kind, name, message))
    return events


def stage_breakdown(events: list[tuple[float, str, str, str]], wall: float) -> dict[str, float]:
    """Seconds per phase of a demo run, from its log lines (see :func:`log_events`).

    ``startup``: command start to the pipeline flow's first line (checks, imports, Prefect
    server start, overlapped or not); ``embed`` / ``cluster`` / ``curriculum``: each stage flow
    from its first to its last line; ``sweep``: cluster start to the chosen-k line; ``fit``: the
    rest of the cluster flow; ``publish``: the curriculum flow's publish task (from the previous
    task's end); ``teardown``: the pipeline's last line to the command's exit.
    """
    flow_of: dict[str, str] = {}
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    marks: dict[str, float] = {}
    task_ends: list[tuple[float, str]] = []
    for at, kind, name, message in events:
        begin = _BEGIN.search(message)
        if begin:
            flow_of[name] = begin.group(1)
        flow = flow_of.get(name, name) if kind == "Flow run" else "task"
        first.setdefault(flow, at)
        last[flow] = at
        if kind == "Flow run" and message.startswith("k = ") and "Davies-Bouldin" in message:
            marks["chosen_k"] = at
        if kind == "Task run" and message.startswith("Finished"):
            task_ends.append((at, name))
    breakdown: dict[str, float] = {}
    if "curriculum-pipeline" in first:
        breakdown["startup"] = first["curriculum-pipeline"]
        breakdown["teardown"] = wall - last["curriculum-pipeline"]
    for stage in ("embed", "cluster", "curriculum"):
        if stage in first:
            breakdown[stage] = last[stage] - first[stage]
    if "cluster" in first and "chosen_k" in marks:
        breakdown["sweep"] = marks["chosen_k"] - first["cluster"]
        breakdown["fit"] = last["cluster"] - marks["chosen_k"]
    publish = [i for i, (_, name) in enumerate(task_ends) if name.startswith("publish-")]
    if publish and publish[0] > 0:
        index = publish[0]
        breakdown["publish"] = task_ends[index][0] - task_ends[index - 1][0]
    return {key: round(value, 2) for key, value in breakdown.items()}


SERVER_START = (
    "import time\n"
    "from prefect.testing.utilities import prefect_test_harness\n"
    "started = time.perf_counter()\n"
    "with prefect_test_harness(server_startup_timeout=120):\n"
    "    print(round(time.perf_counter() - started, 2))\n"
)


def server_cold_start() -> float | None:
    """Seconds from launch to a healthy temporary Prefect server on a new database, alone
    (Prefect's import excluded: the demo's server imports it in its own process, overlapped)."""
    with tempfile.TemporaryDirectory() as tmp:
        completed = subprocess.run(
            [sys.executable, "-c", SERVER_START],
            cwd=tmp,
            env=clean_env(Path(tmp) / "prefect-home"),
            capture_output=True,
            text=True,
        )
    if completed.returncode != 0:
        print(completed.stderr[-2000:])
        return None
    return float(completed.stdout.strip().splitlines()[-1])


def run(quick: bool) -> dict[str, Any]:
    command = demo_command()
    load_before = os.getloadavg()[0]
    server_s = None if quick else server_cold_start()
    with tempfile.TemporaryDirectory() as tmp:
        env = clean_env(Path(tmp) / "prefect-home")
        out, err = Path(tmp) / "stdout.txt", Path(tmp) / "stderr.txt"
        started_at = time.time()
        start = time.perf_counter()
        usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        # Output to files, not pipes: the wall ends when the command exits, as `time` sees it,
        # not when the last helper process that inherited its output has gone.
        with open(out, "w") as stdout, open(err, "w") as stderr:
            code = subprocess.run(command, cwd=tmp, env=env, stdout=stdout, stderr=stderr)
        wall = time.perf_counter() - start
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = subprocess.CompletedProcess(
            command,
            code.returncode,
            out.read_text(encoding="utf-8", errors="replace"),
            err.read_text(encoding="utf-8", errors="replace"),
        )
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-3000:], sep="\n")
    return {
        "name": "embed-demo",
        "ratio": round(DEMO_GOAL_S / wall, 3),
        "goal": 1.0,
        "goal_met": bool(result.returncode == 0 and wall <= DEMO_GOAL_S),
        "wall_s": round(wall, 1),
        "goal_wall_s": DEMO_GOAL_S,
        "breakdown_s": stage_breakdown(log_events(result.stderr, started_at), wall),
        "server_cold_start_alone_s": server_s,
        "quick": quick,
        "user_s": round(usage.ru_utime - usage_before.ru_utime, 1),
        "system_s": round(usage.ru_stime - usage_before.ru_stime, 1),
        "exit_code": result.returncode,
        "command": " ".join(Path(part).name if i == 0 else part for i, part in enumerate(command)),
        "cpu_count": os.cpu_count(),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "last_line": (result.stdout.strip().splitlines() or [""])[-1][:200],
    }


def print_table(result: dict[str, Any]) -> None:
    rows: list[tuple[object, ...]] = [("demo phase", "seconds")]
    rows += [(phase, f"{seconds:.2f}") for phase, seconds in result["breakdown_s"].items()]
    server_s = result["server_cold_start_alone_s"]
    shown = (
        f"{server_s:.2f}" if server_s is not None else "skipped" if result["quick"] else "failed"
    )
    rows.append(("(server cold start, run alone)", shown))
    print()
    print(table(rows, numeric=True))
    print(
        f"\ncl-curriculum demo in a clean directory: {result['wall_s']} s wall "
        f"(goal <= {DEMO_GOAL_S:.0f} s, ratio {result['ratio']}), user {result['user_s']} s, "
        f"system {result['system_s']} s, exit {result['exit_code']}, load "
        f"{result['load_average_1min']} on {result['cpu_count']} CPUs\n"
    )


def main(argv: list[str]) -> int:
    parser = arguments(__doc__, "skip the server cold start measured alone")
    args = parser.parse_args(argv)
    result = run(args.quick)
    print_table(result)
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
