"""Boundary checks shared by all public entry points."""

from __future__ import annotations

import numpy as np
import pytest

from cl_core.validation import check_choice, check_finite, check_fraction, check_non_negative_int


def test_check_finite_names_count_and_first_index() -> None:
    values = np.array([0.1, np.nan, 0.3, np.inf, 0.5])
    with pytest.raises(ValueError, match=r"difficulty has 2 non-finite .* first at index 1"):
        check_finite("difficulty", values)


def test_check_finite_reports_rows_with_offset() -> None:
    block = np.ones((4, 3), dtype=np.float32)
    block[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"1 non-finite \(NaN/inf\) rows; first at index 102"):
        check_finite("features", block, offset=100)


def test_check_finite_accepts_clean_and_integer_input() -> None:
    check_finite("x", np.arange(5, dtype=np.float64))
    check_finite("x", np.arange(5))


def test_check_choice_lists_valid_options() -> None:
    assert check_choice("pacing", "cosine", ("linear", "cosine")) == "cosine"
    with pytest.raises(ValueError, match="unknown pacing 'cubic'; valid: linear, cosine"):
        check_choice("pacing", "cubic", ("linear", "cosine"))


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5, float("nan")])
def test_check_fraction_rejects_outside_unit_interval(bad: float) -> None:
    with pytest.raises(ValueError, match=r"initial_fraction must lie in \(0, 1\]"):
        check_fraction("initial_fraction", bad)


def test_check_fraction_accepts_small_targets_and_one() -> None:
    assert check_fraction("f", 0.08) == pytest.approx(0.08)
    assert check_fraction("f", 1) == 1.0


def test_check_non_negative_int() -> None:
    assert check_non_negative_int("warmup_iterations", 0) == 0
    with pytest.raises(ValueError, match="warmup_iterations must be >= 0, got -5"):
        check_non_negative_int("warmup_iterations", -5)
    with pytest.raises(TypeError, match="non-negative integer"):
        check_non_negative_int("warmup_iterations", 2.5)
