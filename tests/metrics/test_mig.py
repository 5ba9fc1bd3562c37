"""MIG: behaviour on hand-built codes, exact aggregation, invariances, HFS variant."""

from __future__ import annotations

import numpy as np
import pytest

from dismetrics import SkippedFactorWarning, mig, mig_from_mutual_info, mig_hfs


def test_perfect_codes_score_near_one(perfect_codes, factors):
    assert mig(perfect_codes, factors).discrete_mig > 0.97


def test_permuted_and_rescaled_perfect_codes_score_near_one(perfect_codes, factors):
    codes = perfect_codes[:, [2, 0, 1]] * np.array([3.0, -0.5, 100.0]) + 7.0
    assert mig(codes, factors).discrete_mig > 0.97


def test_duplicated_code_lowers_mig_to_zero(perfect_codes, factors):
    codes = np.column_stack([perfect_codes, perfect_codes])
    assert mig(codes, factors).discrete_mig < 0.02


def test_noise_and_constant_codes_score_near_zero(factors):
    rng = np.random.default_rng(3)
    assert mig(rng.standard_normal((len(factors), 4)), factors).discrete_mig < 0.05
    assert mig(np.ones((len(factors), 4)), factors).discrete_mig == 0.0


def test_aggregation_from_given_mi_matrix():
    mi = np.array([[0.9, 0.1], [0.3, 0.5], [0.2, 0.0]])
    entropy = np.array([1.2, 0.8])
    res = mig_from_mutual_info(mi, entropy)
    np.testing.assert_allclose(res.per_factor, [(0.9 - 0.3) / 1.2, (0.5 - 0.1) / 0.8])
    assert res.discrete_mig == pytest.approx(((0.9 - 0.3) / 1.2 + (0.5 - 0.1) / 0.8) / 2)


def test_invariant_to_permutation_and_affine_rescaling(factors):
    rng = np.random.default_rng(4)
    codes = factors @ rng.standard_normal((3, 5)) + rng.standard_normal((len(factors), 5))
    base = mig(codes, factors).discrete_mig
    perm = mig(codes[:, [4, 2, 0, 1, 3]], factors).discrete_mig
    scaled = mig(codes * np.array([2.0, 0.5, 8.0, 1.0, 4.0]), factors).discrete_mig
    assert perm == pytest.approx(base, abs=1e-12)
    assert scaled == pytest.approx(base, abs=1e-12)


def test_single_valued_factor_is_skipped_and_reported(perfect_codes, factors):
    f = factors.copy()
    f[:, 1] = 2
    with pytest.warns(SkippedFactorWarning, match=r"\[1\]"):
        res = mig(perfect_codes, f)
    assert res.skipped_factors == (1,)
    assert np.isnan(res.per_factor[1])
    assert res.discrete_mig > 0.97
    assert res.to_dict()["skipped_factors"] == [1]


def test_needs_two_code_dimensions(factors):
    with pytest.raises(ValueError, match="at least 2 code dimensions in codes"):
        mig(factors[:, :1].astype(float), factors)


def test_hfs_variant_merges_factor_values_into_twenty_bins():
    rng = np.random.default_rng(5)
    f = np.column_stack([rng.integers(40, size=4000), rng.integers(3, size=4000)])
    codes = f + 0.01 * rng.standard_normal(f.shape)
    hfs = mig_hfs(codes, f)
    dlib = mig(codes, f)
    # HFS bins the 40-value factor into 20 bins as well, so the gap is ~1 there; dlib's
    # 20-bin code cannot carry the 40-value factor's entropy (cap ln 20 / ln 40).
    assert hfs.per_factor[0] > 0.97
    assert dlib.per_factor[0] == pytest.approx(np.log(20) / np.log(40), abs=0.02)
