"""SAP, modularity/explicitness, IRS and the unsupervised scores."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from dismetrics import irs, modularity_explicitness, sap, unsupervised
from dismetrics.modularity import modularity_from_mutual_info

from .conftest import make_factors


def _split(codes, factors, n):
    return codes[:n], factors[:n], codes[n:], factors[n:]


# -- SAP -----------------------------------------------------------------------------------


def test_sap_perfect_vs_duplicated(perfect_codes, factors):
    good = sap(*_split(perfect_codes, factors, 1000), n_jobs=1)
    dup = sap(*_split(np.column_stack([perfect_codes] * 2), factors, 1000), n_jobs=1)
    assert good.sap_score > 0.3
    assert dup.sap_score < 0.02
    assert good.to_dict()["SAP_score"] == good.sap_score
    assert good.score_matrix.shape == (3, 3)


def test_sap_continuous_mode_by_hand():
    f = make_factors(1000, sizes=(5, 5))
    codes = np.column_stack([f[:, 0], f[:, 1], np.zeros(1000)]).astype(float)
    res = sap(codes, f, codes, f, continuous_factors=True)
    np.testing.assert_allclose(res.score_matrix[[0, 1], [0, 1]], 1.0)
    np.testing.assert_allclose(res.score_matrix[2], 0.0)  # constant code: guarded to 0
    assert res.sap_score > 0.99


def test_sap_invariant_to_code_permutation(perfect_codes, factors):
    a = sap(*_split(perfect_codes, factors, 1000), n_jobs=1)
    b = sap(*_split(perfect_codes[:, [1, 2, 0]], factors, 1000), n_jobs=1)
    assert a.sap_score == pytest.approx(b.sap_score, abs=1e-12)


# -- modularity and explicitness -------------------------------------------------------------


def test_modularity_from_mi_by_hand():
    mi = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    score, per_code = modularity_from_mutual_info(mi)
    # code 0 perfect; code 1: θ=1, δ=(2−1)/(1·2)=0.5; dead code 2 scores 0
    np.testing.assert_allclose(per_code, [1.0, 0.5, 0.0])
    assert score == pytest.approx(0.5)


def test_modularity_explicitness_perfect_and_noise(perfect_codes, factors):
    good = modularity_explicitness(*_split(perfect_codes, factors, 1000))
    assert good.modularity_score > 0.97
    assert good.explicitness_score_test > 0.97
    noise = np.random.default_rng(1).standard_normal(perfect_codes.shape)
    bad = modularity_explicitness(*_split(noise, factors, 1000))
    assert bad.explicitness_score_test < 0.6


def test_explicitness_tolerates_a_class_missing_from_test(perfect_codes, factors):
    z_tr, y_tr, z_te, y_te = _split(perfect_codes, factors, 1000)
    keep = y_te[:, 0] != 3
    res = modularity_explicitness(z_tr, y_tr, z_te[keep], y_te[keep])
    assert res.explicitness_score_test > 0.97


def test_modularity_invariant_to_permutation_and_affine_maps(factors):
    rng = np.random.default_rng(2)
    codes = factors @ rng.standard_normal((3, 4)) + rng.standard_normal((len(factors), 4))
    a = modularity_explicitness(*_split(codes, factors, 1000))
    b = modularity_explicitness(*_split(codes[:, [3, 1, 0, 2]] * 4.0 + 1.0, factors, 1000))
    assert a.modularity_score == pytest.approx(b.modularity_score, abs=1e-12)
    assert a.explicitness_score_test == pytest.approx(b.explicitness_score_test, abs=1e-6)


# -- IRS ------------------------------------------------------------------------------------


def test_irs_exact_on_codes_equal_to_factors(factors):
    res = irs(factors.astype(float), factors)
    assert res.irs == pytest.approx(1.0)
    np.testing.assert_array_equal(res.parents, [0, 1, 2])
    assert res.to_dict()["IRS"] == res.irs


def test_irs_constant_codes_zero_and_noise_low(factors):
    assert irs(np.ones((len(factors), 3)), factors).irs == 0.0
    noise = np.random.default_rng(3).standard_normal((len(factors), 3))
    assert irs(noise, factors).irs < 0.3


def test_irs_drops_constant_codes_and_is_permutation_invariant(perfect_codes, factors):
    codes = np.column_stack([perfect_codes, np.zeros(len(factors))])
    res = irs(codes, factors)
    assert res.num_active_dims == 3 and np.isnan(res.disentanglement_scores[3])
    perm = irs(codes[:, [3, 2, 0, 1]], factors)
    assert perm.irs == pytest.approx(res.irs, abs=1e-12)


# -- unsupervised ---------------------------------------------------------------------------


def test_unsupervised_closed_forms():
    rng = np.random.default_rng(4)
    z = rng.multivariate_normal([0, 0, 0], [[1, 0.6, 0], [0.6, 1, 0], [0, 0, 2]], size=3000)
    res = unsupervised(z)
    c = np.cov(z, rowvar=False)
    tc = 0.5 * (np.sum(np.log(np.diag(c))) - np.linalg.slogdet(c)[1])
    assert res.gaussian_total_correlation == pytest.approx(tc, rel=1e-10)
    # dlib's form: 2 tr C − 2 tr sqrtm(diag(C)[:, None] * C)
    wc = 2 * np.trace(c) - 2 * np.trace(scipy.linalg.sqrtm(np.diag(c)[:, None] * c)).real
    assert res.gaussian_wasserstein_correlation == pytest.approx(wc, rel=1e-8)
    assert res.gaussian_wasserstein_correlation_norm == pytest.approx(wc / np.trace(c), rel=1e-8)
    assert res.mutual_info_score > 0


def test_unsupervised_independent_and_degenerate_codes():
    z = np.random.default_rng(5).standard_normal((4000, 3))
    res = unsupervised(z)
    assert res.gaussian_total_correlation < 0.01
    assert res.mutual_info_score < 0.1
    dup = unsupervised(np.column_stack([z[:, 0], z[:, 0], np.zeros(4000)]))
    assert dup.gaussian_total_correlation == float("inf")
    assert np.isfinite(dup.gaussian_wasserstein_correlation)
