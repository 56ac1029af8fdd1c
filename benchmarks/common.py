"""What every benchmark shares: timing, the printed table, the JSON line, scratch directories,
generated stores, and peak RSS measured in fresh child processes.

A benchmark script puts the repository root on ``sys.path`` itself (it runs as
``python benchmarks/bench_<stage>.py``), then imports from here. Nothing here imports numpy at
module level, so :func:`one_core` can still pin the BLAS/OpenMP threads before numpy loads.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def one_core() -> None:
    """Pin BLAS/OpenMP to one thread (unless set already); call it before numpy is imported."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def same_threads(device: Any) -> int | None:
    """``EmbedConfig.n_threads`` that gives our CPU inference the thread count the bare forward
    and the reference run with (the process's torch setting): its default is one per core."""
    import torch

    return torch.get_num_threads() if device.type == "cpu" else None


def arguments(doc: str, quick: str) -> argparse.ArgumentParser:
    """The parser of a benchmark: its docstring's first line, and ``--quick`` (``quick`` says
    what it changes)."""
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick)
    return parser


def timed(function: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``(function(*args, **kwargs), seconds it took)``."""
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def table(rows: Sequence[Sequence[object]], *, numeric: bool = False) -> str:
    """Rows as aligned text columns; the first row is the header, underlined.

    ``numeric``: right-align every column but the first (columns of figures).
    """
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]

    def line(row: list[str]) -> str:
        return " | ".join(
            cell.rjust(width) if numeric and i else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    rule = "-+-".join("-" * width for width in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def emit(record: dict[str, Any]) -> dict[str, Any]:
    """Print ``record`` as the benchmark's last line: one JSON object."""
    print(json.dumps(record), flush=True)
    return record


def last_json(text: str) -> dict[str, Any] | None:
    """The last line of ``text`` that is a JSON object (None if there is none)."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                return dict(json.loads(line))
    return None


@contextlib.contextmanager
def scratch(keep: str | os.PathLike[str] | None, prefix: str) -> Iterator[Path]:
    """``keep`` (created, left in place), else a temporary directory deleted at the end."""
    if keep is not None:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield Path(keep)
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as directory:
        yield Path(directory)


def write_store(
    path: Path,
    n_rows: int,
    dim: int,
    shard_rows: Callable[[int, int], Any],
    *,
    fingerprint: str,
    chunk_rows: int = 4096,
) -> tuple[Any, bool]:
    """A finalized float16 store at ``path``, written shard by shard (never all rows in memory).

    ``shard_rows(shard, n)`` returns the shard's ``n`` rows (float32, (n, dim)). A complete
    store of the same layout and fingerprint already there is reused. Returns
    ``(store, reused)``.
    """
    from cl_core.store import create_store

    store = create_store(
        path,
        n_rows,
        dim,
        chunk_rows=chunk_rows,
        dtype="float16",
        attrs={"dataset_fingerprint": fingerprint},
    )
    if store.is_complete:
        return store, True
    for shard in store.missing_shards():
        start, stop = store.shard_range(shard)
        store.write_shard(shard, shard_rows(shard, stop - start))
    store.finalize()
    return store, False


def peak_rss_mib() -> float:
    """Peak RSS of this process image in MiB (``VmHWM``, see
    :func:`cl_core.cluster.assign_dask.peak_rss_bytes`)."""
    from cl_core.cluster.assign_dask import peak_rss_bytes

    return peak_rss_bytes() / 2**20


def reset_peak_rss() -> bool:
    """Reset the peak-RSS mark to the current RSS (Linux >= 4.0); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def run_child(script: str | os.PathLike[str], argv: list[str]) -> dict[str, Any]:
    """Run ``python script *argv`` from the repository root; its last JSON line."""
    completed = subprocess.run(
        [sys.executable, str(script), *argv], capture_output=True, text=True, cwd=ROOT
    )
    record = last_json(completed.stdout)
    if completed.returncode != 0 or record is None:
        raise RuntimeError(
            f"{Path(script).name} {' '.join(argv)} failed (exit {completed.returncode}):\n"
            f"{completed.stderr[-3000:]}"
        )
    return record


def run_children(
    script: str | os.PathLike[str], argvs: Mapping[str, list[str]]
) -> dict[str, dict[str, Any]]:
    """:func:`run_child` for every entry at once, side by side; the JSON lines by key.

    For children that measure their own peak RSS: running them together changes no peak.
    """
    with ThreadPoolExecutor(max_workers=len(argvs)) as pool:
        futures = {key: pool.submit(run_child, script, argv) for key, argv in argvs.items()}
    return {key: future.result() for key, future in futures.items()}


def blob_centres(true_k: int, dim: int, seed: int) -> np.ndarray:
    """``true_k`` random centres of unit scale, float32 (true_k, dim)."""
    rng = np.random.default_rng([seed, 1])
    return (rng.standard_normal((true_k, dim), dtype=np.float32) / math.sqrt(dim) * 4).astype(
        np.float32
    )


def blob_rows(centres: np.ndarray, n: int, seed: Any, std: float = 0.35) -> np.ndarray:
    """``n`` Gaussian rows around randomly drawn ``centres``, float32 (n, dim)."""
    dim = centres.shape[1]
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((n, dim), dtype=np.float32)
    rows *= std / math.sqrt(dim) * 4
    rows += centres[rng.integers(0, centres.shape[0], size=n)]
    return rows
