"""benchmarks/common.py: the helpers every benchmark shares."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.common import last_json, run_children, scratch, table, timed, write_store


def test_table_aligns_columns_under_an_underlined_header() -> None:
    text = table([("measure", "value"), ("a", 1.5), ("longer label", "x")], numeric=True)
    assert text.splitlines() == [
        "measure      | value",
        "-------------+------",
        "a            |   1.5",
        "longer label |     x",
    ]
    assert table([("k", "v"), ("a", "1")]).splitlines()[2] == "a | 1"


def test_last_json_is_the_last_json_object_line() -> None:
    text = 'noise\n{"name": "a"}\n{"name": "b", "ratio": 2}\n0.5\ntrailing text\n'
    assert last_json(text) == {"name": "b", "ratio": 2}
    assert last_json("no json here\n{broken") is None


def test_timed_returns_the_result_and_its_seconds() -> None:
    result, seconds = timed(sorted, [3, 1, 2])
    assert result == [1, 2, 3]
    assert 0.0 <= seconds < 5.0


def test_scratch_deletes_a_temporary_directory_but_keeps_a_given_one(tmp_path: Path) -> None:
    with scratch(None, "bench-test-") as temporary:
        (temporary / "file").write_text("x")
    assert not temporary.exists()
    with scratch(tmp_path / "kept", "bench-test-") as kept:
        (kept / "file").write_text("x")
    assert (tmp_path / "kept" / "file").exists()


def test_write_store_writes_shard_by_shard_and_reuses_a_complete_store(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []

    def rows(shard: int, n: int) -> np.ndarray:
        calls.append((shard, n))
        return np.full((n, 3), shard, dtype=np.float32)

    store, reused = write_store(tmp_path / "s.zarr", 10, 3, rows, fingerprint="t", chunk_rows=2)
    assert not reused and store.is_complete and store.shape == (10, 3)
    assert calls == [(0, 8), (1, 2)]  # shards of 4 chunks of 2 rows
    assert np.asarray(store.features[:])[:, 0].tolist() == [0] * 8 + [1] * 2
    _, reused = write_store(tmp_path / "s.zarr", 10, 3, rows, fingerprint="t", chunk_rows=2)
    assert reused and len(calls) == 2


def test_run_children_collects_each_childs_last_json_line(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(
        "import json, sys\n"
        "if sys.argv[1] == 'fail':\n"
        "    sys.exit('boom')\n"
        "print('chatter')\n"
        "print(json.dumps({'arg': sys.argv[1]}))\n"
    )
    assert run_children(script, {"a": ["x"], "b": ["y"]}) == {"a": {"arg": "x"}, "b": {"arg": "y"}}
    with pytest.raises(RuntimeError, match="boom"):
        run_children(script, {"bad": ["fail"]})


def test_bench_embed_runs_ours_with_the_contenders_thread_count(tmp_path: Path) -> None:
    # Regression: ours embedded with one thread per core (EmbedConfig.n_threads' default)
    # while the bare forward and the reference ran with the process's one thread.
    import torch

    from benchmarks.bench_embed import ours
    from cl_core.store import open_store

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    setting = {"batch_size": 4, "precision": "fp32"}
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ours(model, torch.rand(6, 3, 8, 8), setting, torch.device("cpu"), tmp_path)
    finally:
        torch.set_num_threads(saved)
    assert open_store(tmp_path / "ours.zarr", read_only=True).attrs["cpu_threads"] == 1
