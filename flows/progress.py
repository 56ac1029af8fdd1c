"""Terminal progress bars for flow stages, shown only when a terminal front end asks for them.

Flows report progress through :func:`track`; by default that is a no-op (a worker started by a
deployment has no terminal to draw on, its progress is the Prefect progress artifact). The CLI
wraps a run in :func:`terminal_progress`, which draws rich bars on the same rich console that
Prefect's log handler writes to, so log lines scroll above the bars instead of tearing them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()
_progress: Any = None  # the active rich.progress.Progress, if a front end installed one


class StageProgress:
    """Handle of one bar; every method is a no-op when no terminal progress is active."""

    def __init__(self, progress: Any, task_id: Any) -> None:
        self._progress = progress
        self._task_id = task_id

    def advance(self, steps: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task_id, steps)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.update(self._task_id, visible=True)
            self._progress.stop_task(self._task_id)


def track(description: str, total: int, completed: int = 0) -> StageProgress:
    """Start a bar for ``total`` steps (``completed`` already done) in the active display."""
    with _lock:
        progress = _progress
    if progress is None:
        return StageProgress(None, None)
    task_id = progress.add_task(description, total=total, completed=completed)
    return StageProgress(progress, task_id)


def prefect_console_handlers() -> list[Any]:
    """Prefect's console log handlers (configuring Prefect's logging first if needed)."""
    from prefect.logging.configuration import PROCESS_LOGGING_CONFIG, setup_logging
    from prefect.logging.handlers import PrefectConsoleHandler

    if not PROCESS_LOGGING_CONFIG:
        setup_logging()
    found = []
    for name in ("", "prefect", "prefect.flow_runs"):  # root in Prefect 3.8; "prefect" earlier
        found += [
            h for h in logging.getLogger(name).handlers if isinstance(h, PrefectConsoleHandler)
        ]
    return found


def shared_console(handlers: list[Any]) -> Any:
    """A console for bars *and* Prefect's log lines: Prefect's log styles on top of rich's
    defaults (Prefect's own console drops the defaults, which the bars need)."""
    import prefect.logging.configuration as logging_configuration
    from rich.console import Console
    from rich.theme import Theme

    config = logging_configuration.PROCESS_LOGGING_CONFIG or {}
    styles = config.get("handlers", {}).get("console", {}).get("styles") or {}
    first = handlers[0] if handlers else None
    return Console(
        file=first.stream if first is not None else None,
        theme=Theme(styles),  # inherit=True: rich's default styles (bar.back, ...) stay
        highlighter=first.console.highlighter if first is not None else None,
        markup=False,  # log messages are plain text; "[...]" in them is not markup
    )


@contextlib.contextmanager
def terminal_progress(enabled: bool = True) -> Iterator[None]:
    """Show rich progress bars for the stages run inside this block.

    While the bars are live, Prefect's console log handlers print through the same console,
    so log lines scroll above the bars. A display problem never fails the run.
    """
    global _progress
    if not enabled:
        yield
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    handlers = prefect_console_handlers()
    console = shared_console(handlers)
    progress = Progress(
        TextColumn("{task.description:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    originals = [(handler, handler.console) for handler in handlers]
    for handler, _ in originals:
        handler.console = console
    progress.start()
    with _lock:
        _progress = progress
    try:
        yield
    finally:
        with _lock:
            _progress = None
        try:
            progress.stop()
        except Exception as error:  # cosmetic: the run's outcome must not depend on it
            logging.getLogger(__name__).debug("progress display failed to stop: %s", error)
        for handler, original in originals:
            handler.console = original
