"""The seeded scikit-learn estimators behind DCI, and fitting one model per factor in parallel.

Two DCI estimators (``../papers/metrics.md`` §2.4):

* ``"gbt"`` — ``sklearn.ensemble.GradientBoostingClassifier`` with all defaults (100 stages,
  learning rate 0.1, depth 3), exactly as disentanglement_lib, but seeded. Importances are its
  impurity-based ``feature_importances_``.
* ``"hist_gbt"`` — ``HistGradientBoostingClassifier`` shaped like the default model (100
  iterations, learning rate 0.1, depth 3, one sample per leaf allowed, no early stopping) on
  255-bin histograms: tens of times faster. It has no ``feature_importances_``; the importance
  of a code is the total split gain of the splits on it, normalised to sum to one (the
  analogue of impurity importance). Used by the ``fast`` preset.

Per-factor fits are independent and individually seeded, so fitting them in parallel gives the
same numbers as fitting them in a loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

import numpy as np
from joblib import Parallel, delayed
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier

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


def feature_importances(model) -> np.ndarray:
    """(D,) non-negative importances summing to 1 (or all zero when the model never splits)."""
    if isinstance(model, HistGradientBoostingClassifier):
        predictors = getattr(model, "_predictors", None)
        if predictors is None:
            raise RuntimeError(
                "this scikit-learn version does not expose HistGradientBoostingClassifier's "
                "trees (_predictors); use estimator='gbt'"
            )
        imp = np.zeros(model.n_features_in_)
        for stage in predictors:
            for tree in stage:
                nodes = tree.nodes
                split = nodes["is_leaf"] == 0
                np.add.at(imp, nodes["feature_idx"][split], nodes["gain"][split])
        imp = np.abs(imp)
        total = imp.sum()
        return imp / total if total > 0 else imp
    return np.abs(np.asarray(model.feature_importances_, dtype=np.float64))


def map_factors(
    fit: Callable[[int], T], factors: Sequence[int], cost: Sequence[float], n_jobs: int | None
) -> dict[int, T]:
    """Run ``fit(k)`` for each factor ``k``; in threads when ``n_jobs`` is not 1/None.

    ``cost`` (for example the number of classes) orders the jobs largest first so that the
    parallel schedule stays balanced. Returns ``{k: fit(k)}``.
    """
    order = [k for _, k in sorted(zip(cost, factors), key=lambda t: -t[0])]
    if n_jobs in (None, 1) or len(order) == 1:
        outs = [fit(k) for k in order]
    else:
        outs = Parallel(n_jobs=n_jobs, prefer="threads")(delayed(fit)(k) for k in order)
    return dict(zip(order, outs))
