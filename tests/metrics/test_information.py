"""Exact values of the discretiser, entropy and mutual information."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import mutual_info_score

from dismetrics import discrete_entropy, histogram_discretize, mutual_info_matrix


def test_discretiser_bins_match_hand_computed_edges():
    # 3 equal-width bins on [0.1, 0.6]: edges 0.1, 0.2667, 0.4333, 0.6 (dlib utils_test).
    x = np.array([[0.1], [0.2], [0.3], [0.4], [0.5], [0.6]])
    np.testing.assert_array_equal(histogram_discretize(x, 3).ravel(), [0, 0, 1, 1, 2, 2])


def test_discretiser_per_column_and_extremes():
    x = np.column_stack([np.arange(40.0), -np.arange(40.0) * 3.0, np.full(40, 7.0)])
    d = histogram_discretize(x, 20)
    assert d[:, 0].min() == 0 and d[:, 0].max() == 19  # min in first bin, max in last
    np.testing.assert_array_equal(d[:, 0], np.arange(40) // 2)  # two values per bin
    np.testing.assert_array_equal(d[:, 1], 19 - np.arange(40) // 2)
    assert np.unique(d[:, 2]).size == 1  # a constant column lands in one bin


def test_entropy_of_balanced_labels_is_log_of_classes():
    labels = np.column_stack([np.tile([0, 1, 2], 10), np.tile([0, 1], 15), np.zeros(30)])
    np.testing.assert_allclose(discrete_entropy(labels), [np.log(3), np.log(2), 0.0])


def test_mutual_info_of_small_tables_by_hand():
    a = np.array([0, 0, 1, 1])
    # identical balanced binaries: I = ln 2
    np.testing.assert_allclose(mutual_info_matrix(a[:, None], a[:, None]), [[np.log(2)]])
    # independent: joint uniform over 4 cells -> I = 0
    b = np.array([0, 1, 0, 1])
    np.testing.assert_allclose(mutual_info_matrix(a[:, None], b[:, None]), [[0.0]], atol=1e-15)
    # table [[2, 0], [1, 1]] (n=4): I = Σ p log(p / (p_i p_j))
    x = np.array([0, 0, 1, 1])
    y = np.array([0, 0, 0, 1])
    hand = 0.5 * np.log(0.5 / (0.5 * 0.75)) + 0.25 * np.log(0.25 / (0.5 * 0.75))
    hand += 0.25 * np.log(0.25 / (0.5 * 0.25))
    np.testing.assert_allclose(mutual_info_matrix(x[:, None], y[:, None]), [[hand]])


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 60).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(0, 4), min_size=n, max_size=n),
            st.lists(st.integers(-3, 3), min_size=n, max_size=n),
        )
    )
)
def test_mutual_info_matches_sklearn(pair):
    a, b = (np.asarray(v) for v in pair)
    ours = mutual_info_matrix(a[:, None], b[:, None])[0, 0]
    np.testing.assert_allclose(ours, mutual_info_score(a, b), atol=1e-12)
    np.testing.assert_allclose(discrete_entropy(a[:, None])[0], mutual_info_score(a, a), atol=1e-12)
