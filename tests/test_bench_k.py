"""benchmarks/bench_k.py --quick: every measurement runs and the last line is its JSON record."""

from __future__ import annotations

import pytest

from benchmarks.bench_k import bf16_round, main
from benchmarks.common import last_json


def test_bench_k_quick_prints_one_json_line_with_every_measure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    record = main(["--quick"])
    printed = last_json(capsys.readouterr().out)
    assert printed == record
    assert set(record["stability"]["cases"]) == {"fp32", "bf16"} | {
        f"bootstrap {i}" for i in range(1, 6)
    }
    assert set(record["stability"]["rows_resampled"]) == {f"rows resampled {i}" for i in range(5)}
    assert record["scale"]["true_k"] == 10 and record["scale"]["k_range"] == [4, 30]
    assert isinstance(record["gpu"], (dict, str))
    assert isinstance(record["goal_met"], bool)


def test_bf16_round_changes_the_low_bits_only() -> None:
    import numpy as np

    values = np.array([1.0, 1.0 + 2**-10, 3.14159], dtype=np.float32)
    rounded = bf16_round(values)
    assert rounded[0] == 1.0 and rounded[1] == 1.0  # 8 bits of mantissa
    assert abs(rounded[2] - values[2]) < 2**-6
