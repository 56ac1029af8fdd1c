"""Run every stage benchmark and summarise their JSON lines: ``python -m benchmarks [--quick]``."""

from __future__ import annotations

import subprocess
import sys

from benchmarks.common import ROOT, last_json, table


def main(argv: list[str]) -> int:
    scripts = sorted((ROOT / "benchmarks").glob("bench_*.py"))
    rows: list[tuple[object, ...]] = [("benchmark", "ratio", "goal", "goal met")]
    failed = False
    for script in scripts:
        print(f"\n=== {script.name} {' '.join(argv)}", flush=True)
        proc = subprocess.run(
            [sys.executable, str(script), *argv], cwd=ROOT, capture_output=True, text=True
        )
        sys.stdout.write(proc.stdout)
        if proc.returncode != 0:
            sys.stdout.write(proc.stderr[-4000:])
            failed = True
        record = last_json(proc.stdout)
        if record is None:
            rows.append((script.name, f"no JSON line (exit {proc.returncode})", "", ""))
        else:
            ratio = record.get("ratio")
            shown = f"{ratio:.3g}" if isinstance(ratio, (int, float)) else ratio
            rows.append((script.name, shown, record.get("goal"), record.get("goal_met")))
    print()
    print(table(rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
