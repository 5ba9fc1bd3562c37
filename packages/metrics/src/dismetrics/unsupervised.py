"""Unsupervised scores of a representation (no factors needed).

Follows disentanglement_lib ``evaluation/metrics/unsupervised_metrics.py``
(``../papers/metrics.md`` §2.8), with C the (D, D) sample covariance of the codes (ddof 1) and
Λ = diag(C):

* ``gaussian_total_correlation`` = ½ (Σ_i log C_ii − log det C): the total correlation of a
  Gaussian with covariance C (nats);
* ``gaussian_wasserstein_correlation`` = 2 tr C − 2 tr (Λ^½ C Λ^½)^½: the squared 2-Wasserstein
  distance between N(0, C) and N(0, Λ) (dlib forms ``sqrtm(Λ C)``, which has the same trace);
  ``..._norm`` divides it by tr C;
* ``mutual_info_score``: mean of the off-diagonal entries of the (D, D) plug-in MI matrix of the
  20-bin discretised codes (nats).

Codes with zero variance are independent of everything; they contribute 0 to both Gaussian
scores and are left out of them (dlib would return NaN). A singular covariance among the
varying codes (an exact linear dependence, e.g. a duplicated code) gives an infinite total
correlation.

The codes are standardised column by column first, like every metric's
(:func:`~dismetrics.validation.standardize`; near-constant columns become constant). The total
correlation, the normalised Wasserstein dependency and the MI score are scale free, so they
keep their values. The Wasserstein dependency itself is in squared code units (dlib's
definition): it is computed from the standardised codes' covariance and each column's standard
deviation, which gives dlib's value without underflow or overflow on the way; for codes
``a * c + b`` it is ``a²`` times that of ``c``, and it is inf only when it exceeds the float64
range (codes beyond about 1e154).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from .information import NUM_BINS, histogram_discretize, mutual_info_matrix
from .results import MetricResult
from .validation import (
    check_codes,
    check_num_bins,
    code_scales,
    require_dims,
    require_samples,
    standardize,
)


@dataclasses.dataclass(frozen=True)
class UnsupervisedResult(MetricResult):
    """The four unsupervised scores, keyed as in dlib."""

    SCALARS: ClassVar[tuple[str, ...]] = (
        "gaussian_total_correlation",
        "gaussian_wasserstein_correlation",
        "gaussian_wasserstein_correlation_norm",
        "mutual_info_score",
    )

    gaussian_total_correlation: float
    gaussian_wasserstein_correlation: float
    gaussian_wasserstein_correlation_norm: float
    mutual_info_score: float


def gaussian_total_correlation(cov: np.ndarray) -> float:
    """½ (Σ log C_ii − log det C) of a (D, D) covariance restricted to its non-zero diagonal."""
    live = np.diag(cov) > 0
    c = cov[np.ix_(live, live)]
    if c.size == 0:
        return 0.0
    sign, logdet = np.linalg.slogdet(c)
    if sign <= 0:
        return float("inf")
    return float(max(0.5 * (np.sum(np.log(np.diag(c))) - logdet), 0.0))


def gaussian_wasserstein_correlation(cov: np.ndarray) -> float:
    """2 tr C − 2 tr (Λ^½ C Λ^½)^½ for a (D, D) covariance C and Λ = diag(C)."""
    root = np.sqrt(np.diag(cov))
    eig = np.linalg.eigvalsh(root[:, None] * cov * root[None, :])
    return float(max(2.0 * np.trace(cov) - 2.0 * np.sum(np.sqrt(np.clip(eig, 0.0, None))), 0.0))


def unsupervised(codes: np.ndarray, *, num_bins: int = NUM_BINS) -> UnsupervisedResult:
    """Gaussian total correlation, Wasserstein dependency and MI score of codes (N, D ≥ 2).

    The codes are standardised first; ``gaussian_wasserstein_correlation`` stays in squared
    code units (see the module docstring).
    """
    num_bins = check_num_bins(num_bins)
    raw = check_codes(codes, "codes")
    require_samples(raw.shape[0], 2, "codes", "unsupervised")
    require_dims(raw.shape[1], 2, "codes", "unsupervised")
    z = standardize(raw)
    cov_std = np.atleast_2d(np.cov(z, rowvar=False))
    # The covariance of the raw codes is top² · cov_rel (up to the columns' signs, which change
    # neither Gaussian score); WC is homogeneous of degree 2 in it.
    scale = code_scales(raw)
    top = float(scale.max())
    rel = scale / top if top > 0 else scale
    cov_rel = rel[:, None] * cov_std * rel[None, :]
    wc_rel = gaussian_wasserstein_correlation(cov_rel)
    trace_rel = float(np.trace(cov_rel))
    discrete = histogram_discretize(z, num_bins)
    mi = mutual_info_matrix(discrete, discrete)
    n_codes = z.shape[1]
    return UnsupervisedResult(
        gaussian_total_correlation=gaussian_total_correlation(cov_std),
        gaussian_wasserstein_correlation=top * (top * wc_rel),
        gaussian_wasserstein_correlation_norm=wc_rel / trace_rel if trace_rel > 0 else 0.0,
        mutual_info_score=float((mi.sum() - np.trace(mi)) / (n_codes * (n_codes - 1))),
    )
