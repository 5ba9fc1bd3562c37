"""Separated Attribute Predictability (SAP), Kumar, Sattigeri & Balakrishnan, ICLR 2018 (§3).

Follows disentanglement_lib ``evaluation/metrics/sap_score.py`` (``../papers/metrics.md`` §2.5).
A (D, K) score matrix S measures how well each single code predicts each factor:

* discrete factors (the study setting): ``S[i, k]`` is the test accuracy of
  ``LinearSVC(C=0.01, class_weight="balanced")`` fitted on code i alone to predict factor k;
* continuous factors: ``S[i, k] = cov(z_i, v_k)² / (var z_i · var v_k)`` on the training sample
  (0 when var z_i ≤ 1e-12, i.e. for a constant code: the codes are standardised).

SAP = mean over factors of the gap between the largest and second largest entry of S's column.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import ClassVar

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from .estimators import map_factors
from .results import MetricResult
from .validation import (
    SeedLike,
    active_factors,
    as_int_seed,
    check_train_test,
    require_dims,
    require_samples,
)


@dataclasses.dataclass(frozen=True)
class SAPResult(MetricResult):
    """SAP score and the (D, K) score matrix (skipped factors have a zero column)."""

    SCALARS: ClassVar[tuple[str, ...]] = ("sap_score",)
    KEYS: ClassVar[dict[str, str]] = {"sap_score": "SAP_score"}

    sap_score: float
    score_matrix: np.ndarray
    continuous_factors: bool
    skipped_factors: tuple[int, ...]


def sap_from_matrix(score_matrix: np.ndarray) -> float:
    """Mean over columns of (largest − second largest entry) of a (D, K) score matrix, D ≥ 2."""
    s = np.asarray(score_matrix, dtype=np.float64)
    require_dims(s.shape[0], 2, "score_matrix", "sap")
    top2 = -np.sort(-s, axis=0)[:2]
    return float(np.mean(top2[0] - top2[1]))


def _continuous_matrix(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Squared correlation matrix (D, K) with the dlib guard on near-constant codes."""
    zc, yc = z - z.mean(axis=0), y - y.mean(axis=0)
    n = z.shape[0]
    cov = zc.T @ yc / (n - 1)
    var_z = (zc**2).sum(axis=0) / (n - 1)
    var_y = (yc**2).sum(axis=0) / (n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = cov**2 / (var_z[:, None] * var_y[None, :])
    return np.where(var_z[:, None] > 1e-12, s, 0.0)


def sap(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    *,
    continuous_factors: bool = False,
    seed: SeedLike = 0,
    n_jobs: int | None = None,
) -> SAPResult:
    """SAP of codes (N, D) against integer factors (N, K); needs D ≥ 2.

    With ``continuous_factors=False`` (dlib study default) it fits D·K seeded one-feature linear
    SVMs on the train sample and scores them on the test sample; ``n_jobs`` fits factors in
    parallel threads (same numbers). With ``continuous_factors=True`` only the train sample is
    used. Key ``SAP_score`` as in dlib.

    Both code samples are standardised with the training sample's column means and standard
    deviations first (:func:`~dismetrics.validation.check_train_test`; near-constant columns
    become constant). Deviation from dlib, on purpose: dlib fits the SVMs (``C = 0.01``) on raw
    codes, so its SAP depends on the codes' scale (codes scaled by 1e-300 score 0); here SAP is
    the same for codes ``c`` and ``a * c + b``, and equals dlib's for unit-variance codes.
    """
    z_tr, y_tr, z_te, y_te = check_train_test(codes_train, factors_train, codes_test, factors_test)
    require_samples(z_tr.shape[0], 2, "codes_train", "sap")
    require_dims(z_tr.shape[1], 2, "codes_train", "sap")
    active, skipped = active_factors(y_tr, "factors_train", "sap")
    n_codes = z_tr.shape[1]
    matrix = np.zeros((n_codes, y_tr.shape[1]))
    if continuous_factors:
        matrix[:, active] = _continuous_matrix(z_tr, y_tr[:, active].astype(np.float64))
    else:
        rs = as_int_seed(seed)

        def fit(k: int) -> np.ndarray:
            col = np.empty(n_codes)
            for i in range(n_codes):
                svm = LinearSVC(C=0.01, class_weight="balanced", random_state=rs)
                with warnings.catch_warnings():
                    # dlib's estimator with sklearn defaults; liblinear's iteration cap is part
                    # of the metric's definition, so its convergence notice is not surfaced.
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    svm.fit(z_tr[:, i : i + 1], y_tr[:, k])
                col[i] = np.mean(svm.predict(z_te[:, i : i + 1]) == y_te[:, k])
            return col

        n_classes = [len(np.unique(y_tr[:, k])) for k in active]
        for k, col in map_factors(fit, [int(k) for k in active], n_classes, n_jobs).items():
            matrix[:, k] = col
    return SAPResult(
        sap_score=sap_from_matrix(matrix[:, active]),
        score_matrix=matrix,
        continuous_factors=continuous_factors,
        skipped_factors=skipped,
    )
