"""Entry point of the ``cl-curriculum`` console script: the allocator set-up, then the CLI.

The console script re-executes itself once with the glibc malloc tunables
(:func:`flows.allocator.reexec`) before torch or anything large is imported; a bad
``CL_CURRICULUM_ALLOCATOR`` is one line on stderr and exit 2.

When the command is done, the console script freezes the garbage collector (:func:`gc.freeze`)
before the interpreter exits: Python's shutdown otherwise runs full collections over every object
of the ~5000 modules a run has imported (torch, Prefect, Dask), 2-3 s on a 2-core machine after
the result is printed. Objects are still freed by reference counting and ``atexit`` handlers
still run; only objects in reference cycles are left to the operating system, whose
``__del__`` Python does not promise to call at exit anyway.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

from flows.allocator import reexec

__all__ = ["main"]


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry: re-exec once with the allocator tunables, then run ``flows.cli``.

    Parameters
    ----------
    argv : list of str, optional
        CLI arguments (without the program name); ``sys.argv[1:]`` when None. When given (a call
        from Python), the process is neither re-executed nor is its collector frozen.
    """
    from_python = argv is not None
    if not from_python:
        try:
            reexec()
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
    from flows.cli import main as cli_main

    try:
        return cli_main(argv)
    finally:
        if not from_python:
            gc.freeze()  # the process exits next: no full collections during its shutdown


if __name__ == "__main__":
    main()
