"""cl_core.difficulty: per-group normalisation and streamed distances to centroids."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cl_core.difficulty import NORMALIZATIONS, distances_to_centroids, normalize_difficulty

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None)
GROUPED = ("minmax", "rank", "zscore")


def _phi(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


# --------------------------------------------------------------------------- each method


def test_minmax_per_group() -> None:
    d = np.array([1.0, 3.0, 2.0, 10.0, 20.0, 15.0])
    g = np.array([0, 0, 0, 1, 1, 1])
    np.testing.assert_allclose(normalize_difficulty(d, g), [0.0, 1.0, 0.5, 0.0, 1.0, 0.5])


def test_rank_is_within_group_ecdf_with_averaged_ties() -> None:
    d = np.array([5.0, 1.0, 2.0, 2.0, 3.0, 7.0, 7.0])
    g = np.array([1, 0, 0, 0, 0, 1, 1])
    # group 0: 1, 2, 2, 3 -> ranks 1, 2.5, 2.5, 4 -> (r - 1) / 3
    # group 1: 5, 7, 7 -> ranks 1, 2.5, 2.5 -> (r - 1) / 2
    expected = [0.0, 0.0, 0.5, 0.5, 1.0, 0.75, 0.75]
    np.testing.assert_allclose(normalize_difficulty(d, g, "rank"), expected)


def test_rank_without_ties_is_uniform(rng: np.random.Generator) -> None:
    d = rng.permutation(101).astype(float)
    out = normalize_difficulty(d, method="rank")
    np.testing.assert_allclose(np.sort(out), np.linspace(0, 1, 101), atol=1e-7)
    np.testing.assert_allclose(out, d / 100, atol=1e-7)


def test_zscore_is_normal_cdf_of_group_zscore() -> None:
    d = np.array([1.0, 2.0, 3.0, 100.0, 300.0])
    g = np.array([0, 0, 0, 1, 1])
    z0 = (np.array([1.0, 2.0, 3.0]) - 2.0) / np.sqrt(2.0 / 3.0)
    expected = [_phi(z) for z in z0] + [_phi(-1.0), _phi(1.0)]
    np.testing.assert_allclose(normalize_difficulty(d, g, "zscore"), expected, rtol=1e-6)
    assert normalize_difficulty(d, g, "zscore")[1] == pytest.approx(0.5)


def test_none_scales_by_global_maximum_and_ignores_groups() -> None:
    d = np.array([0.0, 1.0, 4.0, 2.0])
    out = normalize_difficulty(d, np.array([0, 0, 1, 1]), "none")
    np.testing.assert_allclose(out, [0.0, 0.25, 1.0, 0.5])
    assert np.all(normalize_difficulty(np.zeros(3), method="none") == 0.0)


@pytest.mark.parametrize("method", GROUPED)
def test_one_member_and_zero_spread_groups_get_zero(method: str) -> None:
    d = np.array([4.0, 2.0, 2.0, 2.0, 1.0, 9.0])
    g = np.array([7, 3, 3, 3, 5, 5])  # group 7 has one member, group 3 zero spread
    out = normalize_difficulty(d, g, method)
    assert not np.any(np.isnan(out))
    np.testing.assert_array_equal(out[:4], 0.0)
    assert out[4] < out[5]


@pytest.mark.parametrize("method", NORMALIZATIONS)
def test_output_is_float32_in_unit_interval(method: str, rng: np.random.Generator) -> None:
    d = rng.gamma(2.0, 1.0, 5000)
    g = rng.integers(0, 17, 5000)
    out = normalize_difficulty(d, g, method)
    assert out.dtype == np.float32 and out.shape == (5000,)
    assert np.all((out >= 0.0) & (out <= 1.0))


def test_no_groups_means_one_group(rng: np.random.Generator) -> None:
    d = rng.random(50)
    for method in NORMALIZATIONS:
        np.testing.assert_array_equal(
            normalize_difficulty(d, None, method),
            normalize_difficulty(d, np.zeros(50, int), method),
        )


@pytest.mark.parametrize("method", GROUPED)
def test_labels_are_arbitrary_ids(method: str, rng: np.random.Generator) -> None:
    d = rng.random(60)
    codes = rng.integers(0, 4, 60)
    names = np.array(["cat", "dog", "eel", "fox"])[codes]
    sparse = np.array([-5, 10, 999, 3])[codes]
    expected = normalize_difficulty(d, codes, method)
    np.testing.assert_array_equal(normalize_difficulty(d, names, method), expected)
    np.testing.assert_array_equal(normalize_difficulty(d, sparse, method), expected)


# --------------------------------------------------------------------------- properties

samples = st.integers(1, 80).flatmap(
    lambda n: st.tuples(
        arrays(np.float64, n, elements=st.floats(0.0, 50.0, width=32)),
        arrays(np.int64, n, elements=st.integers(0, 4)),
    )
)


@PROPERTY
@given(data=samples, method=st.sampled_from(NORMALIZATIONS))
def test_property_monotone_within_group_and_bounded(data, method: str) -> None:
    d, g = data
    out = normalize_difficulty(d, g, method).astype(np.float64)
    assert np.all((out >= 0.0) & (out <= 1.0))
    same = g[:, None] == g[None, :] if method != "none" else np.ones((d.size, d.size), bool)
    less = (d[:, None] < d[None, :]) & same
    assert np.all(out[:, None][less.any(axis=1)] <= 1.0)
    i, j = np.nonzero(less)
    assert np.all(out[i] <= out[j])
    tied = (d[:, None] == d[None, :]) & same
    i, j = np.nonzero(tied)
    assert np.all(out[i] == out[j])


@PROPERTY
@given(data=samples, method=st.sampled_from(NORMALIZATIONS), seed=st.integers(0, 2**16))
def test_property_permutation_equivariant(data, method: str, seed: int) -> None:
    d, g = data
    perm = np.random.default_rng(seed).permutation(d.size)
    out = normalize_difficulty(d, g, method)
    np.testing.assert_allclose(normalize_difficulty(d[perm], g[perm], method), out[perm], atol=1e-7)


@PROPERTY
@given(data=samples, method=st.sampled_from(GROUPED))
def test_property_group_minimum_is_the_lowest_value(data, method: str) -> None:
    d, g = data
    out = normalize_difficulty(d, g, method)
    for group in np.unique(g):
        members = g == group
        at_min = members & (d == d[members].min())
        spread = d[members].max() > d[members].min()
        if method == "zscore" and spread:
            assert np.all(out[at_min] < 0.5)
        elif method == "rank" and spread:  # m tied minima share the average rank (m + 1) / 2
            tied, size = at_min.sum(), members.sum()
            assert np.allclose(out[at_min], (tied - 1) / 2 / (size - 1))
        else:
            assert np.all(out[at_min] == 0.0)


# --------------------------------------------------------------------------- bad input


def test_nan_distances_name_count_and_first_index() -> None:
    d = np.ones(10)
    d[[4, 8]] = [np.nan, -np.inf]
    with pytest.raises(ValueError, match=r"distances has 2 non-finite .*first at index 4"):
        normalize_difficulty(d)


def test_empty_distances_are_rejected() -> None:
    with pytest.raises(ValueError, match="distances is empty"):
        normalize_difficulty(np.array([]))


def test_unknown_method_lists_valid_ones() -> None:
    with pytest.raises(
        ValueError, match="unknown method 'robust'; valid: minmax, rank, zscore, none"
    ):
        normalize_difficulty(np.ones(3), method="robust")


def test_groups_of_wrong_length_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"groups must have shape \(4,\)"):
        normalize_difficulty(np.ones(4), np.zeros(3, int))


def test_non_integral_float_groups_are_rejected() -> None:
    with pytest.raises(TypeError, match="integer"):
        normalize_difficulty(np.ones(2), np.array([0.5, 1.0]))


def test_negative_distances_with_method_none_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"non-negative distances, got -1.0 at index 1"):
        normalize_difficulty(np.array([1.0, -1.0]), method="none")


def test_two_dimensional_distances_are_rejected() -> None:
    with pytest.raises(ValueError, match="must be 1-D"):
        normalize_difficulty(np.ones((2, 2)))


# --------------------------------------------------------------------------- streamed distances


def _chunks(x: np.ndarray, rows: int):
    return [(start, x[start : start + rows]) for start in range(0, x.shape[0], rows)]


def test_streamed_distances_match_direct_computation(rng: np.random.Generator) -> None:
    x = rng.normal(size=(103, 6)).astype(np.float32)
    c = rng.normal(size=(4, 6)).astype(np.float32)
    a = rng.integers(0, 4, 103)
    expected = np.linalg.norm(x.astype(np.float64) - c[a], axis=1)
    chunks = _chunks(x, 10)[::-1]  # any order
    out = distances_to_centroids(iter(chunks), c, a)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    exact = distances_to_centroids(_chunks(x, 103), x[:4], np.arange(103) % 4)
    assert np.all(exact[:4] == 0.0)


def test_streamed_distances_feed_normalisation(rng: np.random.Generator) -> None:
    x = rng.normal(size=(50, 3))
    c = rng.normal(size=(2, 3))
    a = rng.integers(0, 2, 50)
    difficulty = normalize_difficulty(distances_to_centroids(_chunks(x, 16), c, a), a)
    for cluster in (0, 1):
        assert difficulty[a == cluster].min() == 0.0
        assert difficulty[a == cluster].max() == 1.0


def test_streamed_distances_validate_coverage_and_inputs(rng: np.random.Generator) -> None:
    x = rng.normal(size=(20, 3))
    c = rng.normal(size=(2, 3))
    a = rng.integers(0, 2, 20)
    with pytest.raises(ValueError, match="first missing: 10"):
        distances_to_centroids(_chunks(x, 10)[:1], c, a)
    with pytest.raises(ValueError, match="overlap"):
        distances_to_centroids([*_chunks(x, 10), (5, x[5:7])], c, a)
    with pytest.raises(ValueError, match=r"expected \(rows, 3\)"):
        distances_to_centroids([(0, x[:, :2])], c, a)
    with pytest.raises(ValueError, match=r"assignment\[3\] = 2 is not a centroid index"):
        distances_to_centroids(_chunks(x, 10), c, np.where(np.arange(20) == 3, 2, a))
    bad = x.copy()
    bad[13, 1] = np.nan
    with pytest.raises(ValueError, match="first at index 13"):
        distances_to_centroids(_chunks(bad, 10), c, a)
