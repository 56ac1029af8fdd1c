"""Prefect UI artifacts created off a flow's critical path (tables, summaries, links)."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class UIArtifacts:
    """Creates Prefect UI artifacts on background threads, off the flow's critical path.

    Each artifact is an API round trip (15-40 ms against a busy ephemeral server on a small
    machine) whose answer the flow does not need, so it runs beside the flow's next step. Leaving
    the ``with`` block waits for every artifact and re-raises the first error, so all of them
    exist when the flow returns. Calls run in a copy of the caller's context: they attach to the
    caller's flow run and share its API client.
    """

    def __init__(self, max_workers: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="ui-artifacts")
        self._pending: list[Future[Any]] = []

    def create(self, function: Any, *args: Any, **kwargs: Any) -> None:
        """Call ``function(*args, **kwargs)`` (an artifact creator) in the background."""
        context = contextvars.copy_context()
        self._pending.append(self._pool.submit(context.run, function, *args, **kwargs))

    def __enter__(self) -> UIArtifacts:
        return self

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        try:
            for future in self._pending:
                error = future.exception()
                if error is not None and exc_type is None:
                    raise error  # the flow's own exception, if any, takes precedence
        finally:
            self._pool.shutdown(wait=True)


_ui_scope: contextvars.ContextVar[UIArtifacts | None] = contextvars.ContextVar(
    "cl_ui_artifacts", default=None
)


@contextlib.contextmanager
def ui_artifacts() -> Iterator[UIArtifacts]:
    """The UI-artifact queue of the outermost flow in this call stack.

    Stage flows run as subflows share the parent's queue, so a stage's last artifact overlaps
    the next stage's start and the parent waits for all of them before it returns; a stage flow
    run on its own waits for its artifacts itself. (The API client the artifacts use is the
    outermost flow's, open until it returns.)
    """
    current = _ui_scope.get()
    if current is not None:
        yield current
        return
    with UIArtifacts() as ui:
        token = _ui_scope.set(ui)
        try:
            yield ui
        finally:
            _ui_scope.reset(token)
