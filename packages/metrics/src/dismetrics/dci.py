"""DCI: disentanglement, completeness, informativeness (Eastwood & Williams, ICLR 2018).

``dci`` follows disentanglement_lib ``evaluation/metrics/dci.py`` (``../papers/metrics.md``
§2.4): one gradient-boosted classifier per factor predicts the factor's class from all D codes;
its importances fill column k of the (D, K) importance matrix R. Then (Eastwood & Williams,
§3, eqs. 1–3; dlib's aggregation):

* disentanglement: D_i = 1 − H_K(P_i·) with P_i· = (R_i· + 1e-11) normalised over factors and the
  entropy in base K; weighted by ρ_i = Σ_k R_ik / Σ R;
* completeness: C_k = 1 − H_D(P_·k) (base D, same smoothing), weighted by Σ_i R_ik / Σ R;
* informativeness: mean classification **accuracy** over factors on the train and test samples
  (dlib's definition; Eastwood & Williams use a regression error).

``dci_hfs`` is the variant of the HFS code (Roth et al. 2023, ``dent/metrics/dci_d.py``) whose
disentanglement the GMG paper (Uscidda et al., ICLR 2025) reports as "DCI-D".
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
from scipy.stats import entropy as _entropy
from threadpoolctl import threadpool_limits

from .estimators import Estimator, feature_importances, make_classifier, map_factors
from .results import MetricResult
from .validation import (
    SeedLike,
    active_factors,
    as_generator,
    as_int_seed,
    check_codes,
    check_int,
    check_train_test,
    require_samples,
    standardize,
)

_SMOOTH = 1e-11  # dlib adds this to every importance before taking entropies


@dataclasses.dataclass(frozen=True)
class DCIResult(MetricResult):
    """DCI scores, per-code / per-factor parts and the (D, K) importance matrix.

    Skipped factors have a zero importance column, NaN per-factor entries, and are left out of
    every aggregate.
    """

    SCALARS: ClassVar[tuple[str, ...]] = (
        "disentanglement",
        "completeness",
        "informativeness_train",
        "informativeness_test",
    )

    disentanglement: float
    completeness: float
    informativeness_train: float
    informativeness_test: float
    importance_matrix: np.ndarray
    per_code_disentanglement: np.ndarray
    per_factor_completeness: np.ndarray
    per_factor_informativeness_train: np.ndarray
    per_factor_informativeness_test: np.ndarray
    estimator: str
    skipped_factors: tuple[int, ...]


def dci_from_importance(
    importance: np.ndarray,
) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Aggregate a (D, K) importance matrix R into DCI disentanglement and completeness.

    Returns ``(disentanglement, completeness, per_code (D,), per_factor (K,))``. With a single
    factor every code is trivially disentangled (D_i = 1); with a single code every factor is
    complete (C_k = 1). An all-zero R gets uniform weights (as in dlib): D = 0 and C ≈ 0.
    """
    r = np.asarray(importance, dtype=np.float64)
    if r.ndim != 2 or 0 in r.shape:
        raise ValueError(f"importance must be a non-empty (D, K) matrix, got shape {r.shape}")
    if not np.isfinite(r).all() or (r < 0).any():
        raise ValueError("importance must hold finite, non-negative values")
    n_codes, n_factors = r.shape
    per_code = 1.0 - _entropy(r.T + _SMOOTH, base=n_factors) if n_factors > 1 else np.ones(n_codes)
    per_factor = 1.0 - _entropy(r + _SMOOTH, base=n_codes) if n_codes > 1 else np.ones(n_factors)
    weights = r if r.sum() > 0 else np.ones_like(r)
    code_w = weights.sum(axis=1) / weights.sum()
    factor_w = weights.sum(axis=0) / weights.sum()
    return (
        float(np.sum(per_code * code_w)),
        float(np.sum(per_factor * factor_w)),
        per_code,
        per_factor,
    )


def _fit_importances(
    z_tr: np.ndarray,
    y_tr: np.ndarray,
    z_te: np.ndarray,
    y_te: np.ndarray,
    factors: np.ndarray,
    estimator: Estimator,
    seed: int,
    n_jobs: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit a classifier per factor in ``factors``: importances (D, K), train/test accuracy (K,)."""
    n_codes, n_factors = z_tr.shape[1], y_tr.shape[1]

    def fit(k: int) -> tuple[np.ndarray, float, float]:
        # One OpenMP thread per fit: parallelism comes from fitting factors side by side, and
        # histogram GBT's OpenMP threads slow down badly on a busy machine.
        with threadpool_limits(limits=1, user_api="openmp"):
            model = make_classifier(estimator, seed).fit(z_tr, y_tr[:, k])
            return (
                feature_importances(model, z_tr, y_tr[:, k]),
                float(np.mean(model.predict(z_tr) == y_tr[:, k])),
                float(np.mean(model.predict(z_te) == y_te[:, k])),
            )

    n_classes = [len(np.unique(y_tr[:, k])) for k in factors]
    fits = map_factors(fit, [int(k) for k in factors], n_classes, n_jobs)
    importance = np.zeros((n_codes, n_factors))
    acc_tr = np.full(n_factors, np.nan)
    acc_te = np.full(n_factors, np.nan)
    for k, (imp, a_tr, a_te) in fits.items():
        importance[:, k], acc_tr[k], acc_te[k] = imp, a_tr, a_te
    return importance, acc_tr, acc_te


def dci(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    *,
    estimator: Estimator = "gbt",
    seed: SeedLike = 0,
    n_jobs: int | None = None,
) -> DCIResult:
    """DCI of train codes (N, D) / factors (N, K), informativeness also on a test sample.

    Both code samples are standardised with the training sample's column means and standard
    deviations before fitting (:func:`~dismetrics.validation.check_train_test`; near-constant
    columns become constant), so codes of any scale give the same scores. ``estimator``:
    ``"gbt"`` (dlib default) or ``"hist_gbt"`` (fast; see :mod:`dismetrics.estimators`). Every
    classifier gets ``random_state`` from ``seed``. ``n_jobs`` fits factors in parallel threads
    (same numbers as sequential). Factors with a single value in the training sample are skipped
    with a warning. Keys ``disentanglement``, ``completeness``, ``informativeness_train``,
    ``informativeness_test`` as in dlib.
    """
    z_tr, y_tr, z_te, y_te = check_train_test(codes_train, factors_train, codes_test, factors_test)
    require_samples(z_tr.shape[0], 2, "codes_train", "dci")
    active, skipped = active_factors(y_tr, "factors_train", "dci")
    importance, acc_tr, acc_te = _fit_importances(
        z_tr, y_tr, z_te, y_te, active, estimator, as_int_seed(seed), n_jobs
    )
    dis, comp, per_code, per_factor_act = dci_from_importance(importance[:, active])
    per_factor = np.full(y_tr.shape[1], np.nan)
    per_factor[active] = per_factor_act
    return DCIResult(
        disentanglement=dis,
        completeness=comp,
        informativeness_train=float(np.mean(acc_tr[active])),
        informativeness_test=float(np.mean(acc_te[active])),
        importance_matrix=importance,
        per_code_disentanglement=per_code,
        per_factor_completeness=per_factor,
        per_factor_informativeness_train=acc_tr,
        per_factor_informativeness_test=acc_te,
        estimator=estimator,
        skipped_factors=skipped,
    )


@dataclasses.dataclass(frozen=True)
class DCIHFSResult(MetricResult):
    """Output of :func:`dci_hfs`, keyed as the HFS code keys it (scores *and* errors)."""

    SCALARS: ClassVar[tuple[str, ...]] = (
        "disentanglement",
        "completeness",
        "informativeness_train_scores",
        "informativeness_test_scores",
    )

    disentanglement: float
    completeness: float
    informativeness_train_scores: float
    informativeness_test_scores: float
    informativeness_train_errors: float
    informativeness_test_errors: float
    importance_matrix: np.ndarray
    estimator: str
    skipped_factors: tuple[int, ...]


def dci_hfs(
    codes: np.ndarray,
    factor_values: np.ndarray,
    *,
    num_train: int = 10_000,
    num_test: int = 5_000,
    estimator: Estimator = "gbt",
    seed: SeedLike = 0,
    n_jobs: int | None = None,
) -> DCIHFSResult:
    """DCI as in the HFS code, whose disentanglement the GMG paper reports as "DCI-D".

    Input: a whole encoded dataset, ``codes`` (N, D) (posterior means) and ``factor_values``
    (N, K) (factor values or classes, any reals). Steps (``dent/metrics/dci_d.py``;
    ``../papers/gmg.md`` §4, ``../papers/metrics.md`` §3):

    1. codes and factors are min-max scaled over the N samples (column-wise to [0, 1]);
    2. each factor column is re-indexed by its sorted unique values (0..L-1);
    3. ``num_train`` training and ``num_test`` test indices are drawn **without replacement**
       from the N samples (train first, test from the rest), here from ``seed``;
    4. a default classifier per factor, then dlib's aggregation (:func:`dci_from_importance`).

    The HFS code leaves the split and the classifiers unseeded; here both come from ``seed``.
    The codes are standardised first like every metric's (this changes only near-constant
    columns, which become constant: min-max scaling is affine invariant). Needs integers
    ``num_train`` ≥ 2, ``num_test`` ≥ 1 and N ≥ num_train + num_test.
    """
    num_train = check_int(num_train, "num_train", 2)
    num_test = check_int(num_test, "num_test", 1)
    z = standardize(check_codes(codes, "codes"))
    v = check_codes(factor_values, "factor_values", n=z.shape[0])
    require_samples(z.shape[0], num_train + num_test, "codes", "dci_hfs (num_train + num_test)")
    lo, hi = z.min(axis=0), z.max(axis=0)
    z = (z - lo) / np.where(hi > lo, hi - lo, 1.0)
    y = np.stack([np.unique(col, return_inverse=True)[1].ravel() for col in v.T], axis=1)
    rng = as_generator(seed)
    perm = rng.permutation(z.shape[0])
    train, test = perm[:num_train], perm[num_train : num_train + num_test]
    res = dci(z[train], y[train], z[test], y[test], estimator=estimator, seed=rng, n_jobs=n_jobs)
    return DCIHFSResult(
        disentanglement=res.disentanglement,
        completeness=res.completeness,
        informativeness_train_scores=res.informativeness_train,
        informativeness_test_scores=res.informativeness_test,
        informativeness_train_errors=1.0 - res.informativeness_train,
        informativeness_test_errors=1.0 - res.informativeness_test,
        importance_matrix=res.importance_matrix,
        estimator=estimator,
        skipped_factors=res.skipped_factors,
    )
