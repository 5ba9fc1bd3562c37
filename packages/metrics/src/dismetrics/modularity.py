"""Modularity and explicitness, Ridgeway & Mozer, NeurIPS 2018 (§3).

Follows disentanglement_lib ``evaluation/metrics/modularity_explicitness.py``
(``../papers/metrics.md`` §2.6).

* Modularity (Ridgeway & Mozer, eq. 2): from the (D, K) MI matrix of the 20-bin discretised
  train codes, with θ_i = max_k MI_ik²: δ_i = (Σ_k MI_ik² − θ_i) / (θ_i (K − 1)),
  score_i = 1 − δ_i, and score_i = 0 for a dead code (θ_i = 0). ``modularity_score`` is the mean
  over all D codes (dead codes included, so they pull the score down).
* Explicitness: codes z-scored with the train mean/std (ddof 0; done for every metric by
  :func:`~dismetrics.validation.check_train_test`); per factor a seeded
  ``LogisticRegression()`` with sklearn defaults on all codes; macro one-vs-rest ROC AUC of
  ``predict_proba`` on train and on test; mean over factors.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import ClassVar

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from .information import NUM_BINS, histogram_discretize, mutual_info_matrix
from .results import MetricResult
from .validation import (
    SeedLike,
    active_factors,
    as_int_seed,
    check_mutual_info,
    check_num_bins,
    check_train_test,
    require_samples,
)


@dataclasses.dataclass(frozen=True)
class ModularityExplicitnessResult(MetricResult):
    """Modularity (per code) and explicitness (per factor, NaN where skipped)."""

    SCALARS: ClassVar[tuple[str, ...]] = (
        "modularity_score",
        "explicitness_score_train",
        "explicitness_score_test",
    )

    modularity_score: float
    explicitness_score_train: float
    explicitness_score_test: float
    per_code_modularity: np.ndarray
    per_factor_explicitness_train: np.ndarray
    per_factor_explicitness_test: np.ndarray
    skipped_factors: tuple[int, ...]


def modularity_from_mutual_info(mutual_info: np.ndarray) -> tuple[float, np.ndarray]:
    """Modularity score and per-code scores (D,) from a (D, K) MI matrix over active factors.

    With a single factor every live code is perfectly modular (score 1).
    """
    mi2 = np.asarray(mutual_info, dtype=np.float64) ** 2
    theta = mi2.max(axis=1)
    n_factors = mi2.shape[1]
    per_code = np.zeros(mi2.shape[0])
    live = theta > 0
    if n_factors == 1:
        per_code[live] = 1.0
    else:
        delta = (mi2[live].sum(axis=1) - theta[live]) / (theta[live] * (n_factors - 1))
        per_code[live] = 1.0 - delta
    return float(per_code.mean()), per_code


def _macro_auc(y: np.ndarray, proba: np.ndarray, classes: np.ndarray, name: str, k: int) -> float:
    """Macro one-vs-rest ROC AUC over the classes present and absent in ``y``."""
    onehot = (y[:, None] == classes[None, :]).astype(np.int64)
    usable = (onehot.min(axis=0) == 0) & (onehot.max(axis=0) == 1)
    if not usable.any():
        raise ValueError(
            f"explicitness needs at least two classes of factor {k} in {name}; draw more samples"
        )
    return float(roc_auc_score(onehot[:, usable], proba[:, usable], average="macro"))


def explicitness(
    z_tr: np.ndarray,
    y_tr: np.ndarray,
    z_te: np.ndarray,
    y_te: np.ndarray,
    factors: np.ndarray,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-factor train and test explicitness (K,) for the given factor indices (NaN elsewhere).

    ``z_tr`` and ``z_te`` are codes standardised with the train statistics, as
    :func:`~dismetrics.validation.check_train_test` returns them (dlib z-scores them the same way).
    """
    out_tr = np.full(y_tr.shape[1], np.nan)
    out_te = np.full(y_tr.shape[1], np.nan)
    for k in factors:
        with warnings.catch_warnings():
            # dlib fits LogisticRegression() with sklearn defaults (lbfgs, max_iter=100);
            # the metric is defined with that budget, so the notice is not surfaced.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LogisticRegression(random_state=seed).fit(z_tr, y_tr[:, k])
        out_tr[k] = _macro_auc(
            y_tr[:, k], model.predict_proba(z_tr), model.classes_, "factors_train", k
        )
        out_te[k] = _macro_auc(
            y_te[:, k], model.predict_proba(z_te), model.classes_, "factors_test", k
        )
    return out_tr, out_te


def modularity_explicitness(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    *,
    num_bins: int = NUM_BINS,
    seed: SeedLike = 0,
    mutual_info: np.ndarray | None = None,
) -> ModularityExplicitnessResult:
    """Modularity (train sample) and explicitness (train and test) of codes (N, D).

    Keys ``modularity_score``, ``explicitness_score_train``, ``explicitness_score_test`` as in
    dlib. Deviation from dlib, on purpose: the one-hot labels of the test sample use the
    classes seen in training, so a class missing from the test sample no longer raises; AUC is
    averaged over the classes that are present. Both code samples are standardised with the
    train statistics first (:func:`~dismetrics.validation.check_train_test`; near-constant
    columns become constant), which changes neither score beyond float rounding. ``mutual_info``
    optionally passes the (D, K) MI matrix of the discretised standardised train codes and all
    factors when it is already computed.
    """
    num_bins = check_num_bins(num_bins)
    z_tr, y_tr, z_te, y_te = check_train_test(codes_train, factors_train, codes_test, factors_test)
    require_samples(z_tr.shape[0], 2, "codes_train", "modularity_explicitness")
    active, skipped = active_factors(y_tr, "factors_train", "modularity_explicitness")
    if mutual_info is None:
        mutual_info = mutual_info_matrix(histogram_discretize(z_tr, num_bins), y_tr)
    mi = check_mutual_info(mutual_info, z_tr.shape[1], y_tr.shape[1])[:, active]
    modularity, per_code = modularity_from_mutual_info(mi)
    exp_tr, exp_te = explicitness(z_tr, y_tr, z_te, y_te, active, as_int_seed(seed))
    return ModularityExplicitnessResult(
        modularity_score=modularity,
        explicitness_score_train=float(np.mean(exp_tr[active])),
        explicitness_score_test=float(np.mean(exp_te[active])),
        per_code_modularity=per_code,
        per_factor_explicitness_train=exp_tr,
        per_factor_explicitness_test=exp_te,
        skipped_factors=skipped,
    )
