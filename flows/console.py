"""One-line errors, exit codes and a quiet console, shared by every ``cl-curriculum`` command.

Exit codes: 0 success, :data:`EXIT_FAILED` (1) a run failed, :data:`EXIT_BAD_INPUT` (2) bad input
found before the run (one line on stderr saying what and how to fix).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """Raised for input the user can fix; printed as one line, exit code 2."""


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def one_line(error: BaseException) -> str:
    """A one-line description of a bad-input error (pydantic errors flattened)."""
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        parts = []
        for item in error.errors():
            where = ".".join(str(part) for part in item["loc"]) or "input"
            parts.append(f"{where}: {item['msg'].removeprefix('Value error, ')}")
        return "; ".join(parts)
    return " ".join(str(error).split()) or type(error).__name__


@contextmanager
def bad_input_exits() -> Iterator[None]:
    """Turn the validation errors of the library and the parameter models into exit code 2.

    Also a model that cannot be loaded (``RuntimeError``: offline without weights), a file
    that cannot be read (``OSError``) and a missing optional package (``ImportError``: an
    ``s3://`` URL without ``s3fs``, naming the package): before the run starts, the fix is
    always the user's.
    """
    from pydantic import ValidationError

    try:
        yield
    except (
        BadInput,
        ValidationError,
        ValueError,
        TypeError,
        RuntimeError,
        OSError,
        ImportError,
    ) as error:
        fail(one_line(error))


def keep_on_console(record: logging.LogRecord) -> bool:
    """Console filter of a quiet run: flow-level lines and warnings only.

    Per-task INFO lines, Dask's cluster chatter, tracebacks and the engine's error lines are
    dropped from the console (all of them still reach the run's log in Prefect); the CLI prints
    one line for a failure instead.
    """
    if record.exc_info or record.levelno >= logging.ERROR:
        return False
    if record.levelno >= logging.WARNING:
        return True
    noisy = record.name == "prefect.task_runs" or record.name.startswith("distributed")
    return not noisy and not _failed_run_state(record)


def _failed_run_state(record: logging.LogRecord) -> bool:
    """``Finished in state Failed(<the error>)``: the CLI's one error line says the same."""
    message = record.getMessage()
    return message.startswith("Finished in state ") and "Completed" not in message.split("(")[0]


@contextmanager
def console_logs(verbose: bool) -> Iterator[None]:
    """Everything on the console with ``verbose``; otherwise :func:`keep_on_console` only."""
    if verbose:
        yield
        return
    from flows.progress import prefect_console_handlers

    handlers = prefect_console_handlers()
    for handler in handlers:
        handler.addFilter(keep_on_console)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(keep_on_console)
