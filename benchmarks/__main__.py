"""Run every stage benchmark and summarise their JSON lines: ``python -m benchmarks [--quick]``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _last_json_line(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                return None
    return None


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    results = []
    for script in scripts:
        print(f"\n=== {script.name} {' '.join(argv)}", flush=True)
        proc = subprocess.run(
            [sys.executable, str(script), *argv], cwd=HERE.parent, capture_output=True, text=True
        )
        sys.stdout.write(proc.stdout)
        if proc.returncode != 0:
            sys.stdout.write(proc.stderr[-4000:])
        results.append((script.name, proc.returncode, _last_json_line(proc.stdout)))
    print("\n| benchmark | ratio | goal | goal met |\n|---|---|---|---|")
    for name, code, record in results:
        if record is None:
            print(f"| {name} | failed (exit {code}) | | |")
        else:
            ratio, goal = record.get("ratio"), record.get("goal")
            print(f"| {name} | {ratio:.3g} | {goal} | {record.get('goal_met')} |")
    return 0 if all(code == 0 for _, code, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
