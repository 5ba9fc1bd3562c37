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
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from .information import NUM_BINS, histogram_discretize, mutual_info_matrix
from .results import MetricResult
from .validation import check_codes, require_dims, require_samples


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
    """Gaussian total correlation, Wasserstein dependency and MI score of codes (N, D ≥ 2)."""
    z = check_codes(codes, "codes")
    require_samples(z.shape[0], 2, "codes", "unsupervised")
    require_dims(z.shape[1], 2, "codes", "unsupervised")
    cov = np.atleast_2d(np.cov(z, rowvar=False))
    wc = gaussian_wasserstein_correlation(cov)
    trace = float(np.trace(cov))
    discrete = histogram_discretize(z, num_bins)
    mi = mutual_info_matrix(discrete, discrete)
    n_codes = z.shape[1]
    return UnsupervisedResult(
        gaussian_total_correlation=gaussian_total_correlation(cov),
        gaussian_wasserstein_correlation=wc,
        gaussian_wasserstein_correlation_norm=wc / trace if trace > 0 else 0.0,
        mutual_info_score=float((mi.sum() - np.trace(mi)) / (n_codes * (n_codes - 1))),
    )
