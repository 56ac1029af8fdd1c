"""The one run path of the CLI (``run``, ``demo``, ``ab``): environment, server, lock, flow.

:func:`run_flow` applies the Prefect environment defaults (before Prefect is imported), starts
the run's temporary Prefect server in the background unless one is configured (and takes its
turn on the Prefect home: :mod:`flows.server`), runs the command's remaining checks while it
starts (bad input: exit 2, one line), runs the flow on a quiet console and turns any failure into
one line and exit 1.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

import typer

from flows.console import EXIT_FAILED, BadInput, bad_input_exits, console_logs, fail, one_line


def run_flow(
    flow: str,
    params: dict[str, Any],
    *,
    checks: Callable[[], None] | None = None,
    show_progress: bool = False,
    verbose: bool = False,
) -> tuple[Any, float]:
    """``flow(**params)`` as a command runs it; returns its result and the seconds it took.

    Parameters
    ----------
    flow : str
        ``module:name`` of the flow, imported here once the environment is applied (Prefect
        reads it when first imported).
    checks : callable, optional
        Checks that may overlap the server's start (loading the model); their library errors
        exit 2 with one line, and a server that no flow used is stopped as if never started.
    show_progress : bool
        Terminal progress bars for the stages.
    verbose : bool
        Every log line on the console, and the traceback of a failed run.
    """
    from flows import prefect_env

    prefect_env.configure_environment()  # before Prefect is first imported
    from flows import progress
    from flows.server import temporary_server

    module, _, name = flow.partition(":")

    with temporary_server(on_wait=lambda message: typer.echo(message, err=True)) as server:
        if checks is not None:
            with bad_input_exits():
                checks()
        flow_function = getattr(importlib.import_module(module), name)  # overlaps the start too
        started = time.perf_counter()
        try:
            server.wait_until_ready()  # this run's temporary Prefect server, if it has one
            with (
                console_logs(verbose),
                prefect_env.embedded_run_settings(),
                progress.terminal_progress(show_progress),
            ):
                state = flow_function(**params, return_state=True)
        except Exception as error:  # the run could not start (server, API): no flow run to name
            fail(f"the run failed: {_error_line(error)}", EXIT_FAILED)
        if not state.is_completed():
            from prefect.states import get_state_exception

            where = _flow_run_label(state.state_details.flow_run_id)
            error_line = _error_line(get_state_exception(state))
            hint = "" if verbose else "; --verbose prints the traceback"
            fail(f"the run failed: {error_line} ({where}{hint})", EXIT_FAILED)
        return state.result(), time.perf_counter() - started


def _error_line(error: BaseException) -> str:
    """One line for a run failure: the error's own message (with its type if it is a bug)."""
    from cl_core.embed import BadSampleError

    text = one_line(error)
    if isinstance(error, (BadSampleError, BadInput)):
        return text
    return f"{type(error).__name__}: {text}"


def _flow_run_label(flow_run_id: Any) -> str:
    """``flow run 'name' <link or id>``: where the run's log and traceback are."""
    name = None
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            name = client.read_flow_run(flow_run_id).name
    except Exception:  # the label is a courtesy; the error line is what matters
        pass
    from prefect.settings import get_current_settings

    ui_url = get_current_settings().ui_url
    where = f"{ui_url}/runs/flow-run/{flow_run_id}" if ui_url else f"id {flow_run_id}"
    return f"flow run {name!r}, {where}" if name else f"flow run {where}"
