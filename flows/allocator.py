"""glibc malloc tunables for CPU inference: the values, and one re-exec so that they take effect.

With glibc's defaults every allocation above the mmap threshold (dynamic, at most 32 MiB) is a
fresh ``mmap`` that is unmapped on ``free``, and the heap is trimmed back to the kernel as soon as
128 KiB are free. A CNN forward at batch 64 allocates and frees ~100 MB of activations per layer,
so every batch faulted every page in again: on a 2-core machine the bare EfficientNet-Lite0
forward spent about as much CPU in the kernel as in the model (sys 21.5 s -> 0.9 s with the
tunables, README "embed, allocator"). The price is a peak RSS that stays at its high-water mark.

glibc reads the variables only when a process starts, so the ``cl-curriculum`` launcher
(:mod:`flows.launcher`) re-executes its own command once with them (:func:`reexec`; one extra
interpreter start, ~50 ms); every process it starts (DataLoader and Dask workers) inherits them.
Any other command gets them from ``python -m flows.allocator COMMAND [ARGS...]``.

``CL_CURRICULUM_ALLOCATOR=system`` leaves the allocator alone; values already in the environment
win. Standard library only: imported before anything large.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping, Sequence

CHOICE_ENV = "CL_CURRICULUM_ALLOCATOR"
CHOICES = ("glibc", "system")
REEXEC_MARKER = "_CL_CURRICULUM_ALLOCATOR_REEXEC"
"""Set in the re-executed process: a wrapper that strips the tunables cannot cause a loop."""

TUNABLES: dict[str, str] = {
    # Allocations up to ~4 GB come from the heap instead of a fresh mmap per call.
    "MALLOC_MMAP_THRESHOLD_": "4000000000",
    # Freed heap memory is kept for the next batch instead of being trimmed back to the kernel.
    "MALLOC_TRIM_THRESHOLD_": "4000000000",
    # One arena: a thread arena's heaps are at most 64 MiB, so a larger activation allocated in a
    # worker thread (Prefect runs tasks in threads) was always a fresh mmap (the demo kept 70 s
    # of kernel time without it).
    "MALLOC_ARENA_MAX": "1",
}


def missing_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The tunables a new process should start with that ``environ`` does not set yet.

    Empty with ``CL_CURRICULUM_ALLOCATOR=system``, off glibc Linux, or when all are set.

    Raises
    ------
    ValueError
        ``CL_CURRICULUM_ALLOCATOR`` is neither ``glibc`` nor ``system``.
    """
    env = os.environ if environ is None else environ
    choice = (env.get(CHOICE_ENV) or "glibc").strip().lower()
    if choice not in CHOICES:
        raise ValueError(
            f"{CHOICE_ENV}={choice!r} is not one of {list(CHOICES)}; unset it for the glibc "
            "tunables or set it to 'system' to leave the allocator alone"
        )
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    if choice == "system" or not glibc:
        return {}
    return {key: value for key, value in TUNABLES.items() if key not in env}


def reexec(command: Sequence[str] | None = None) -> None:
    """Re-execute ``command`` (default: this interpreter's own command line) once with
    :func:`missing_env` added; return when nothing is missing, after one re-exec, or when
    ``execve`` fails. Raises ValueError for a bad ``CL_CURRICULUM_ALLOCATOR``."""
    extra = missing_env()
    if not extra or os.environ.get(REEXEC_MARKER) == "1":
        return
    argv = list(command) if command else [sys.executable, *sys.orig_argv[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(argv[0], argv, {**os.environ, **extra, REEXEC_MARKER: "1"})
    except OSError:  # carry on without the tunables
        return


if __name__ == "__main__":  # python -m flows.allocator COMMAND [ARGS...]
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m flows.allocator COMMAND [ARGS...]")
    try:
        tunables = missing_env()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    os.execvpe(sys.argv[1], sys.argv[1:], {**os.environ, **tunables})
