"""UI artifacts created off the flow's critical path (flows.ui.UIArtifacts)."""

from __future__ import annotations

import contextvars
import threading

import pytest

from flows.ui import UIArtifacts, ui_artifacts

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
