"""Mutual Information Gap (MIG), discrete estimator, and the HFS-code variant.

``mig`` follows disentanglement_lib ``evaluation/metrics/mig.py`` (``../papers/metrics.md``
§2.3), from Chen et al., "Isolating Sources of Disentanglement in VAEs", NeurIPS 2018, eq. (6),
with the discrete plug-in estimator of Locatello et al. (ICML 2019):

    MIG = 1/K Σ_k (I(z_(1); v_k) − I(z_(2); v_k)) / H(v_k)

where the codes are discretised with the 20-bin histogram, ``I`` is the plug-in MI in nats,
z_(1), z_(2) are the two code dimensions with the largest MI with factor v_k and ``H(v_k)`` is
the empirical entropy of the sampled factor.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from .information import NUM_BINS, discrete_entropy, histogram_discretize, mutual_info_matrix
from .results import MetricResult
from .validation import (
    active_factors,
    check_codes,
    check_mutual_info,
    check_num_bins,
    check_pair,
    require_dims,
    require_samples,
    standardize,
)


@dataclasses.dataclass(frozen=True)
class MIGResult(MetricResult):
    """MIG and its ingredients.

    ``per_factor`` is (K,) with NaN for skipped factors; ``mutual_info`` is the (D, K) MI matrix
    in nats and ``entropy`` the (K,) factor entropies.
    """

    SCALARS: ClassVar[tuple[str, ...]] = ("discrete_mig",)
    KEYS: ClassVar[dict[str, str]] = {"per_factor": "discrete_mig_per_factor"}

    discrete_mig: float
    per_factor: np.ndarray
    mutual_info: np.ndarray
    entropy: np.ndarray
    skipped_factors: tuple[int, ...]


def mig_from_mutual_info(mutual_info: np.ndarray, entropy: np.ndarray) -> MIGResult:
    """MIG from a precomputed (D, K) MI matrix and (K,) factor entropies (both in nats).

    Factors with zero entropy are skipped (they must have been reported by the caller).
    """
    mutual_info = np.asarray(mutual_info, dtype=np.float64)
    entropy = np.asarray(entropy, dtype=np.float64)
    require_dims(mutual_info.shape[0], 2, "mutual_info", "mig")
    active = entropy > 0
    if not active.any():
        raise ValueError("mig: every factor has zero entropy; nothing to score")
    top2 = -np.sort(-mutual_info, axis=0)[:2]
    per_factor = np.full(entropy.shape, np.nan)
    per_factor[active] = (top2[0, active] - top2[1, active]) / entropy[active]
    return MIGResult(
        discrete_mig=float(np.mean(per_factor[active])),
        per_factor=per_factor,
        mutual_info=mutual_info,
        entropy=entropy,
        skipped_factors=tuple(int(k) for k in np.flatnonzero(~active)),
    )


def mig(
    codes: np.ndarray,
    factors: np.ndarray,
    *,
    num_bins: int = NUM_BINS,
    mutual_info: np.ndarray | None = None,
) -> MIGResult:
    """Discrete MIG of ``codes`` (N, D) against integer ``factors`` (N, K).

    Needs D ≥ 2 and N ≥ 2. The codes are standardised column by column
    (:func:`~dismetrics.validation.standardize`; near-constant columns become constant) before
    the ``num_bins``-bin histogram, which is affine invariant, so this changes no value beyond
    float rounding. Single-valued factors are skipped with a ``SkippedFactorWarning``. Key
    ``discrete_mig`` as in disentanglement_lib. ``mutual_info`` optionally passes the (D, K)
    MI matrix of the discretised standardised codes when it is already computed (as
    :func:`score` does).
    """
    num_bins = check_num_bins(num_bins)
    z, y = check_pair(codes, factors)
    require_samples(z.shape[0], 2, "codes", "mig")
    require_dims(z.shape[1], 2, "codes", "mig")
    active_factors(y, "factors", "mig")
    if mutual_info is None:
        mutual_info = mutual_info_matrix(histogram_discretize(z, num_bins), y)
    mutual_info = check_mutual_info(mutual_info, z.shape[1], y.shape[1])
    return mig_from_mutual_info(mutual_info, discrete_entropy(y))


def _minmax_bins(x: np.ndarray, num_bins: int) -> np.ndarray:
    """HFS binning: min-max scale each column to [0, 1], then fixed bins of width 1/num_bins."""
    lo, hi = x.min(axis=0), x.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    scaled = (x - lo) / span
    return np.digitize(scaled, np.linspace(0.0, 1.0, num_bins + 1)[:-1]) - 1


def mig_hfs(codes: np.ndarray, factors: np.ndarray, *, num_bins: int = NUM_BINS) -> MIGResult:
    """MIG as computed by the HFS code (Roth et al. 2023, ``dent/metrics/mig.py``).

    Differs from :func:`mig` on purpose (``../papers/metrics.md`` §3): codes **and factors** are
    min-max scaled over the given sample and cut by the fixed edges ``linspace(0, 1, 21)``, so a
    factor with more than ``num_bins`` values is merged into ``num_bins`` bins and its entropy is
    that of the binned factor. Meant for a whole encoded dataset (the HFS "full" mode).
    Factors may here be any real values (the HFS code feeds factor values, not classes). The
    codes are standardised first like every metric's (this changes only near-constant columns,
    which become constant: min-max scaling is affine invariant).
    """
    num_bins = check_num_bins(num_bins)
    z = standardize(check_codes(codes, "codes"))
    y = check_codes(factors, "factors", n=z.shape[0])
    require_samples(z.shape[0], 2, "codes", "mig_hfs")
    require_dims(z.shape[1], 2, "codes", "mig_hfs")
    yb = _minmax_bins(y, num_bins)
    active_factors(yb, "factors", "mig_hfs")
    zb = _minmax_bins(z, num_bins)
    return mig_from_mutual_info(mutual_info_matrix(zb, yb), discrete_entropy(yb))
