"""Codes are standardised once for every metric: scale and shift never change a score."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

from dismetrics import (
    PRESETS,
    histogram_discretize,
    mig,
    mig_from_mutual_info,
    mutual_info_matrix,
    score,
)
from dismetrics.information import discrete_entropy
from dismetrics.validation import NEAR_CONSTANT_RTOL, code_scales, standardize

from .conftest import make_factors

ALL = ["mig", "dci", "sap", "modularity_explicitness", "irs", "unsupervised", "mig_hfs", "dci_hfs"]


def _preset(name: str):
    return dataclasses.replace(PRESETS[name], n_jobs=1, num_train=150, num_test=100)


@pytest.fixture(scope="module")
def sample():
    f = make_factors(300, sizes=(3, 3))
    rng = np.random.default_rng(0)
    z = np.column_stack([f + 0.3 * rng.standard_normal(f.shape), rng.standard_normal(300)])
    return z, f


def _scores(codes, factors, preset):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return score(codes, factors, ALL, preset=_preset(preset)).scalars()


@pytest.fixture(scope="module")
def base_scores(sample):
    return {p: _scores(*sample, p) for p in ("default", "fast")}


def test_standardize_maps_affine_images_to_the_same_codes():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((50, 3)) * [1.0, 10.0, 0.1] + [0.0, 5.0, -3.0]
    ref = standardize(z)
    np.testing.assert_allclose(ref.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(ref.std(axis=0), 1.0, rtol=1e-12)
    for a in (1e-300, 1e300, -2.5, 7.0):
        b = a * np.array([3.0, -1.0, 100.0])
        np.testing.assert_allclose(standardize(a * z + b), ref, atol=1e-9)
    # test codes use the training statistics
    np.testing.assert_allclose(standardize(z[:10], reference=z), ref[:10], atol=1e-12)


def test_near_constant_columns_become_constant():
    z = np.random.default_rng(2).standard_normal((40, 4))
    codes = np.column_stack([1 + 1e-15 * z[:, 0], np.full(40, 3.0), z[:, 2], 1 + 1e-12 * z[:, 3]])
    labels = histogram_discretize(codes, 20)  # used to bin rounding noise, or raise "Too many bins"
    np.testing.assert_array_equal(labels[:, :2], 0)
    assert len(np.unique(labels[:, 3])) > 5  # 1e-12 relative spread is still a signal
    out = standardize(codes)
    np.testing.assert_array_equal(out[:, :2], 0.0)
    assert np.all(out[:, 2:].std(axis=0) > 0.99)
    np.testing.assert_array_equal(code_scales(codes)[:2], 0.0)
    assert NEAR_CONSTANT_RTOL == pytest.approx(1.42e-14, rel=0.01)


def test_discretiser_bins_do_not_depend_on_the_scale():
    z = np.random.default_rng(3).standard_normal((200, 2))
    ref = histogram_discretize(z, 20)
    for a in (1e-300, 1e300):
        np.testing.assert_array_equal(histogram_discretize(a * z, 20), ref)


def test_mig_equals_the_raw_histogram_value(sample):
    # MIG's equal-width bins span each column's own range (dlib), so standardising before
    # discretising must give the MI matrix of the raw codes.
    z, f = sample
    raw_mi = mutual_info_matrix(histogram_discretize(z, 20), f)
    expected = mig_from_mutual_info(raw_mi, discrete_entropy(f)).discrete_mig
    assert mig(z, f).discrete_mig == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("preset", ["default", "fast"])
@pytest.mark.parametrize("a", [1e-300, 1e300, -2.5, 7.0])
def test_every_metric_gives_the_same_scores_for_affine_maps_of_the_codes(
    sample, base_scores, preset, a
):
    z, f = sample
    b = a * np.array([4.0, -2.0, 50.0])
    got = _scores(a * z + b, f, preset)
    base = base_scores[preset]
    assert set(got) == set(base)
    wc = "unsupervised.gaussian_wasserstein_correlation"
    for key, value in got.items():
        # the Wasserstein dependency is in squared code units (inf beyond float64's range)
        expected = a * (a * base[key]) if key == wc else base[key]
        assert value == pytest.approx(expected, rel=1e-9, abs=1e-12), key


def test_near_constant_codes_score_like_constant_codes(sample):
    z, f = sample
    near = z.copy()
    near[:, 2] = 1 + 1e-15 * z[:, 2]
    const = z.copy()
    const[:, 2] = 1.0
    assert _scores(1 + 1e-15 * z, f, "fast") == _scores(np.ones_like(z), f, "fast")
    assert _scores(near, f, "fast") == _scores(const, f, "fast")
