"""Entry point of the ``cl-curriculum`` console script: allocator set-up, then the CLI.

glibc reads its malloc tunables only when a process starts, so the launcher re-executes the same
command once with :func:`cl_core.allocator.recommended_env` added to the environment (before torch
or anything large is imported; the cost is one extra interpreter start, ~50 ms). Every process the
CLI starts (DataLoader workers, local Dask workers) inherits the environment.

Opt out with ``CL_CURRICULUM_ALLOCATOR=system``; ``tcmalloc`` / ``jemalloc`` preload those
libraries instead when installed. A re-executed process carries ``_CL_CURRICULUM_ALLOCATOR_REEXEC=1``
and is never re-executed again. Where ``execve`` is impossible the tunables are applied in-process
with ``mallopt``.

When the command is done, the console script freezes the garbage collector (:func:`gc.freeze`)
before the interpreter exits: Python's shutdown otherwise runs full collections over every object
of the ~5000 modules a run has imported (torch, Prefect, Dask), 2-3 s on a 2-core machine after
the result is printed. Objects are still freed by reference counting and ``atexit`` handlers
still run; only objects in reference cycles are left to the operating system, whose
``__del__`` Python does not promise to call at exit anyway.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Sequence
from typing import Any

from cl_core.allocator import REEXEC_MARKER, apply_mallopt, recommended_env

__all__ = ["main", "reexec_with_allocator"]


def _command_line() -> list[str]:
    """The command that started this interpreter (interpreter flags and ``-m`` included)."""
    original = getattr(sys, "orig_argv", None)
    if original:
        return [sys.executable, *original[1:]]
    return [sys.executable, *sys.argv]


def _missing_env() -> dict[str, str]:
    """recommended_env(), or exit 2 with one line when CL_CURRICULUM_ALLOCATOR is unusable."""
    try:
        return recommended_env()
    except ValueError as error:
        print(f"Error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def reexec_with_allocator(argv: Sequence[str] | None = None) -> None:
    """Re-execute the current command with the allocator environment, once; return if not needed.

    Parameters
    ----------
    argv : sequence of str, optional
        The full command line to execute (program first); the command that started this
        interpreter when None.

    Notes
    -----
    Returns without doing anything when ``CL_CURRICULUM_ALLOCATOR=system``, when nothing is
    missing from the environment, or when this process is already the re-executed one. A bad
    ``CL_CURRICULUM_ALLOCATOR`` value or a missing preload library prints one line to stderr and
    exits with status 2 (the CLI's bad-input code).
    """
    extra = _missing_env()
    if not extra:
        return
    if os.environ.get(REEXEC_MARKER) == "1":
        # Already re-executed once and still missing something (a wrapper stripped it): carry on.
        apply_mallopt()
        return
    command = list(argv) if argv is not None else _command_line()
    env = {**os.environ, **extra, REEXEC_MARKER: "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(command[0], command, env)
    except OSError:
        apply_mallopt()


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry: apply the allocator set-up (re-exec once), then run ``flows.cli``.

    Parameters
    ----------
    argv : list of str, optional
        CLI arguments (without the program name); ``sys.argv[1:]`` when None. When given, the
        allocator is applied in-process with ``mallopt`` instead of re-executing (the caller's
        command line is not the CLI's) and the garbage collector is not frozen at the end.
    """
    from_python = argv is not None  # the caller's process goes on: leave its collector alone
    if not from_python:
        reexec_with_allocator()
    elif _missing_env():
        apply_mallopt()
    from flows.cli import main as cli_main

    try:
        return cli_main(argv)
    finally:
        if not from_python:
            gc.freeze()  # the process exits next: no full collections during its shutdown


if __name__ == "__main__":
    main()
