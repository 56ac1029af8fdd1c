"""flows.progress: bars and Prefect's log lines share one console; the display never fails a run."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest

from flows import progress


@pytest.fixture
def captured_console(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """Route the shared console (built by the real code, theme included) into a buffer."""
    buffer = io.StringIO()
    real = progress.shared_console

    def into_buffer(handlers: list[Any]) -> Any:
        console = real(handlers)
        console.file = buffer
        return console

    monkeypatch.setattr(progress, "shared_console", into_buffer)
    return buffer


def test_track_is_a_no_op_without_a_display() -> None:
    bar = progress.track("nothing to show", total=2)
    bar.advance()
    bar.close()  # no display installed: nothing happens, nothing raises


def test_bars_and_log_lines_render_through_one_console(captured_console: io.StringIO) -> None:
    handlers = progress.prefect_console_handlers()
    assert handlers, "Prefect's console handler should be configured"
    originals = [handler.console for handler in handlers]
    with progress.terminal_progress(True):
        assert all(
            handler.console is not original
            for handler, original in zip(handlers, originals, strict=True)
        )
        bar = progress.track("embedding shards", total=3)
        bar.advance()
        bar.advance(2)
        logging.getLogger("prefect").warning("a line logged [while] the bars are live")
        bar.close()
    text = captured_console.getvalue()
    assert "embedding shards" in text and "3/3" in text
    assert "a line logged [while] the bars are live" in text  # not eaten as markup
    assert [handler.console for handler in handlers] == originals  # restored afterwards


def test_a_broken_display_does_not_fail_the_run(
    captured_console: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.progress import Progress

    def broken_stop(self: Any) -> None:
        raise RuntimeError("terminal went away")

    monkeypatch.setattr(Progress, "stop", broken_stop)
    with progress.terminal_progress(True):
        progress.track("k sweep", total=1).advance()
    added: list[str] = []
    monkeypatch.setattr(
        Progress, "add_task", lambda self, description, **_: added.append(description)
    )
    progress.track("after", total=1).advance()
    assert added == []  # the display is uninstalled: a new bar goes nowhere
