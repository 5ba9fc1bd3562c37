"""The seeded scikit-learn estimators behind DCI, and fitting one model per factor in parallel.

Two DCI estimators (``../papers/metrics.md`` §2.4):

* ``"gbt"`` — ``sklearn.ensemble.GradientBoostingClassifier`` with all defaults (100 stages,
  learning rate 0.1, depth 3), exactly as disentanglement_lib, but seeded. Importances are its
  impurity-based ``feature_importances_``.
* ``"hist_gbt"`` — ``HistGradientBoostingClassifier`` shaped like the default model (100
  iterations, learning rate 0.1, depth 3, one sample per leaf allowed, no early stopping) on
  255-bin histograms: tens of times faster. It has no ``feature_importances_``, so
  :func:`residual_impurity_importances` computes them the way GBT does: replay the boosting on
  the training sample and credit each split with the squared-error decrease of the residuals
  ``y_onehot − p`` that its tree was fitted to (N_t·MSE_t − N_L·MSE_L − N_R·MSE_R), summed over
  trees and normalised. Used by the ``fast`` preset.

Per-factor fits are independent and individually seeded, so fitting them in parallel gives the
same numbers as fitting them in a loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

import numpy as np
from joblib import Parallel, delayed
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier

from .validation import check_n_jobs

Estimator = Literal["gbt", "hist_gbt"]
ESTIMATORS: tuple[str, ...] = ("gbt", "hist_gbt")
T = TypeVar("T")


def make_classifier(estimator: Estimator, seed: int):
    """A fresh, seeded classifier of the given kind (see module docstring)."""
    if estimator == "gbt":
        return GradientBoostingClassifier(random_state=seed)
    if estimator == "hist_gbt":
        return HistGradientBoostingClassifier(
            max_iter=100,
            learning_rate=0.1,
            max_depth=3,
            max_leaf_nodes=None,
            min_samples_leaf=1,
            early_stopping=False,
            random_state=seed,
        )
    raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")


def _tree_pass(tree, x: np.ndarray, resid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Route ``x`` through one fitted histogram tree.

    Returns the per-feature squared-error decrease of ``resid`` over the tree's splits (D,)
    and the tree's raw prediction for every row (N,).
    """
    nodes = tree.nodes
    n_nodes = len(nodes)
    leaf = nodes["is_leaf"].astype(bool)
    feat = nodes["feature_idx"].astype(np.intp)
    thr = nodes["num_threshold"]
    left = nodes["left"].astype(np.intp)
    right = nodes["right"].astype(np.intp)
    node = np.zeros(len(x), dtype=np.intp)
    rows = np.arange(len(x))
    sums = np.zeros(n_nodes)
    counts = np.zeros(n_nodes)
    while rows.size:
        at = node[rows]
        sums += np.bincount(at, resid[rows], n_nodes)
        counts += np.bincount(at, minlength=n_nodes)
        inner = ~leaf[at]
        rows, at = rows[inner], at[inner]
        node[rows] = np.where(x[rows, feat[at]] <= thr[at], left[at], right[at])
    split = np.flatnonzero(~leaf)
    lo, hi = left[split], right[split]
    decrease = (sums[lo] / counts[lo] - sums[hi] / counts[hi]) ** 2 * (
        counts[lo] * counts[hi] / counts[split]
    )
    out = np.zeros(x.shape[1])
    np.add.at(out, feat[split], decrease)
    return out, nodes["value"][node]


def residual_impurity_importances(
    model: HistGradientBoostingClassifier, x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """GBT-style impurity importances (D,) of a fitted histogram GBT on its training data.

    ``x`` (N, D) and ``y`` (N,) must be the training sample. The boosting is replayed stage by
    stage from the model's baseline; before each stage the residuals are ``onehot(y) − softmax``
    (``y − sigmoid`` for two classes), the negative log-loss gradients each tree was fitted to.
    """
    predictors = getattr(model, "_predictors", None)
    baseline = getattr(model, "_baseline_prediction", None)
    if predictors is None or baseline is None:
        raise RuntimeError(
            "this scikit-learn version does not expose HistGradientBoostingClassifier's trees; "
            "use estimator='gbt'"
        )
    onehot = (y[:, None] == model.classes_[None, :]).astype(np.float64)
    raw = np.repeat(np.asarray(baseline, dtype=np.float64).reshape(1, -1), len(x), axis=0)
    imp = np.zeros(x.shape[1])
    for stage in predictors:
        if raw.shape[1] == 1:
            resid = (onehot[:, 1] - 1.0 / (1.0 + np.exp(-raw[:, 0])))[None, :]
        else:
            e = np.exp(raw - raw.max(axis=1, keepdims=True))
            resid = (onehot - e / e.sum(axis=1, keepdims=True)).T
        for k, tree in enumerate(stage):
            dec, pred = _tree_pass(tree, x, resid[k])
            imp += dec
            raw[:, k] += pred
    total = imp.sum()
    return imp / total if total > 0 else imp


def feature_importances(model, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(D,) non-negative importances summing to 1 (all zero when the model never splits).

    ``x``, ``y``: the training sample (used by the histogram model only).
    """
    if isinstance(model, HistGradientBoostingClassifier):
        return residual_impurity_importances(model, x, y)
    return np.abs(np.asarray(model.feature_importances_, dtype=np.float64))


def map_factors(
    fit: Callable[[int], T], factors: Sequence[int], cost: Sequence[float], n_jobs: int | None
) -> dict[int, T]:
    """Run ``fit(k)`` for each factor ``k``; in joblib worker processes unless ``n_jobs`` is 1/None.

    ``cost`` (for example the number of classes) orders the jobs largest first so that the
    parallel schedule stays balanced. Processes, not threads: a GBT fit holds the GIL for much
    of its Python-level stage loop. ``n_jobs`` is None or a non-zero integer (joblib's meaning).
    Returns ``{k: fit(k)}``.
    """
    n_jobs = check_n_jobs(n_jobs)
    order = [k for _, k in sorted(zip(cost, factors), key=lambda t: -t[0])]
    if n_jobs in (None, 1) or len(order) == 1:
        outs = [fit(k) for k in order]
    else:
        outs = Parallel(n_jobs=n_jobs)(delayed(fit)(k) for k in order)
    return dict(zip(order, outs))
