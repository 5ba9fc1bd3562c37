"""Interventional Robustness Score (IRS), Suter et al., ICML 2019 (§4, Algorithm 1).

Follows disentanglement_lib ``evaluation/metrics/irs.py`` (``../papers/metrics.md`` §2.7). The
factors are discretised with the same 20-bin histogram as codes (merging the values of factors
with more than 20 classes), code dimensions with zero variance are dropped, then for every
factor k and each of its values v, with e = mean(z | v_k = v):

    cum[:, k] += quantile_q(|z − e| over the group)  (per code; q = ``diff_quantile`` = 0.99)

divided by the number of values of the factor. With max_dev_d = max_n |z_nd − mean_d|,
``IRS_matrix = 1 − cum / max_dev``, a code's score is its row maximum and
``IRS = average(per-code score, weights=max_dev)``.

Range: IRS ≤ 1, and IRS ≥ −1 since |z − e| ≤ 2·max_dev. It is negative (dlib's formula, kept)
only when the deviations within the groups of every factor exceed the largest deviation from
the overall mean, which takes a tiny or degenerate sample (a few points away from a constant).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from .information import NUM_BINS, histogram_discretize
from .results import MetricResult
from .validation import active_factors, check_num_bins, check_pair, require_samples

DIFF_QUANTILE = 0.99  # disentanglement_lib irs.diff_quantile default


@dataclasses.dataclass(frozen=True)
class IRSResult(MetricResult):
    """IRS, the per-code scores (NaN for dropped constant codes) and the parent factor of each.

    ``num_active_dims`` counts the codes with non-zero variance (dlib's key of the same name
    holds the *sum of code values* of those dims, a known quirk not reproduced).
    """

    SCALARS: ClassVar[tuple[str, ...]] = ("irs",)
    KEYS: ClassVar[dict[str, str]] = {"irs": "IRS"}

    irs: float
    disentanglement_scores: np.ndarray
    parents: np.ndarray
    num_active_dims: int
    skipped_factors: tuple[int, ...]


def _irs_matrix(factors: np.ndarray, codes: np.ndarray, diff_quantile: float):
    """(D', K) IRS matrix and (D',) max deviations of active codes given discrete factors."""
    max_dev = np.max(np.abs(codes - codes.mean(axis=0)), axis=0)
    cum = np.zeros((codes.shape[1], factors.shape[1]))
    for k in range(factors.shape[1]):
        values = np.unique(factors[:, k])
        for v in values:
            group = codes[factors[:, k] == v]
            dev = np.abs(group - group.mean(axis=0))
            cum[:, k] += np.quantile(dev, diff_quantile, axis=0)
        cum[:, k] /= len(values)
    return 1.0 - cum / max_dev[:, None], max_dev


def irs(
    codes: np.ndarray,
    factors: np.ndarray,
    *,
    diff_quantile: float = DIFF_QUANTILE,
    num_bins: int = NUM_BINS,
) -> IRSResult:
    """IRS of codes (N, D) against integer factors (N, K). Key ``IRS`` as in dlib.

    The codes are standardised column by column first
    (:func:`~dismetrics.validation.standardize`), which changes no value beyond float rounding
    (IRS is a ratio of deviations); near-constant codes count as constant. IRS is 0 when every
    code is constant. Factors that are single-valued (after the histogram discretisation) are
    skipped with a warning. IRS lies in [-1, 1] (negative only on degenerate samples; see the
    module docstring).
    """
    num_bins = check_num_bins(num_bins)
    z, y = check_pair(codes, factors)
    require_samples(z.shape[0], 2, "codes", "irs")
    if not 0.0 <= diff_quantile <= 1.0:
        raise ValueError(f"diff_quantile must lie in [0, 1], got {diff_quantile}")
    y_disc = histogram_discretize(y, num_bins)
    active, skipped = active_factors(y_disc, "factors", "irs")
    live = z.var(axis=0) > 0
    scores = np.full(z.shape[1], np.nan)
    parents = np.full(z.shape[1], -1)
    if not live.any():
        return IRSResult(0.0, scores, parents, 0, skipped)
    matrix, max_dev = _irs_matrix(y_disc[:, active], z[:, live], diff_quantile)
    per_code = matrix.max(axis=1)
    scores[live] = per_code
    parents[live] = active[matrix.argmax(axis=1)]
    return IRSResult(
        irs=float(np.average(per_code, weights=max_dev)),
        disentanglement_scores=scores,
        parents=parents,
        num_active_dims=int(live.sum()),
        skipped_factors=skipped,
    )
