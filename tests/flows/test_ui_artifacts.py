"""UI artifacts created off the flow's critical path (flows.ui.UIArtifacts)."""

from __future__ import annotations

import contextvars
import threading
from pathlib import Path

import pytest

from flows.ui import UIArtifacts, png_markdown, publish_report_plots, ui_artifacts

MARK: contextvars.ContextVar[str] = contextvars.ContextVar("mark", default="unset")


def test_calls_run_in_the_background_with_the_callers_context() -> None:
    seen: list[tuple[str, bool]] = []

    def record() -> None:
        seen.append((MARK.get(), threading.current_thread() is threading.main_thread()))

    token = MARK.set("flow-run-context")
    try:
        with UIArtifacts() as ui:
            ui.create(record)
    finally:
        MARK.reset(token)
    assert seen == [("flow-run-context", False)]  # waited for on exit


def test_an_artifact_error_is_raised_when_the_block_ends() -> None:
    def fail() -> None:
        raise RuntimeError("artifact API down")

    with pytest.raises(RuntimeError, match="artifact API down"), UIArtifacts() as ui:
        ui.create(fail)


def test_the_flows_own_error_takes_precedence() -> None:
    def fail() -> None:
        raise RuntimeError("artifact API down")

    with pytest.raises(ValueError, match="the flow failed"), UIArtifacts() as ui:
        ui.create(fail)
        raise ValueError("the flow failed")


def test_stage_flows_share_the_outermost_queue() -> None:
    done: list[str] = []
    with ui_artifacts() as outer, ui_artifacts() as inner:
        assert inner is outer
        inner.create(done.append, "stage artifact")
    assert done == ["stage artifact"]
    with ui_artifacts() as fresh:
        assert fresh is not outer


def test_report_plots_become_one_artifact_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.ui

    png = b"\x89PNG\r\n\x1a\n" + b"pixels"
    for file in ("difficulty.png", "schedule.png", "samples.png"):
        (tmp_path / file).write_bytes(png + file.encode())
    made: dict[str, tuple[bytes, str | None]] = {}
    monkeypatch.setattr(
        flows.ui, "publish_png", lambda data, key, **kw: made.update({key: (data, kw["title"])})
    )
    files = ["difficulty.png", "report.md", "samples.png", "schedule.png"]  # explicit k: no sweep
    with UIArtifacts() as ui:
        assert publish_report_plots(ui, str(tmp_path), files, "My Data") == 3
    assert set(made) == {"my-data-plot-difficulty", "my-data-plot-schedule", "my-data-plot-samples"}
    assert made["my-data-plot-samples"][0] == png + b"samples.png"  # read on the pool


def test_png_markdown_embeds_the_png() -> None:
    data = b"\x89PNG\r\n\x1a\n" + bytes(range(10))
    text = png_markdown(data, alt="a [plot]")
    assert text.startswith("![a plot](data:image/png;base64,")
    with pytest.raises(ValueError, match="not a PNG"):
        png_markdown(b"GIF89a", alt="x")
