"""Histogram discretiser, plug-in entropy and mutual information (natural log, nats).

These are disentanglement_lib's ``evaluation/metrics/utils.py`` helpers on sample-major arrays
(``../papers/metrics.md`` §1.4):

* the discretiser bins every code dimension separately into ``num_bins`` equal-width bins
  spanning that dimension's own minimum to maximum on the scored sample
  (``np.histogram`` edges, then ``np.digitize``); labels here are 0-based (dlib's are 1-based,
  which changes no entropy or MI);
* entropy and mutual information are plug-in estimates on the empirical contingency table,
  in nats, equal to ``sklearn.metrics.mutual_info_score``.
"""

from __future__ import annotations

import numpy as np

from .validation import check_codes, check_num_bins, code_scales

NUM_BINS = 20  # disentanglement_lib study configs: discretizer.num_bins = 20


def histogram_discretize(codes: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
    """Discretise each column of ``codes`` (N, D) into ``num_bins`` equal-width bins.

    Returns (N, D) int64 labels in ``0 .. num_bins-1``. The edges of column d come from
    ``np.histogram(codes[:, d], num_bins)``: the minimum lands in bin 0, the maximum in the last
    bin. A constant or near-constant column (spread at float rounding level,
    :data:`~dismetrics.validation.NEAR_CONSTANT_RTOL`) gets label 0 everywhere. Each column is
    first divided by a power of two near its largest absolute value (exact in floating point
    short of subnormal underflow, so the bins are those of the raw column) so that no scale
    overflows. Invariant under per-column increasing affine maps (not under general monotone
    maps, since the bins have equal width). ``codes`` must be finite (a ``ValueError`` names
    them otherwise) and ``num_bins`` an integer between 1 and
    :data:`~dismetrics.validation.MAX_NUM_BINS`. The metrics pass standardised codes.
    """
    num_bins = check_num_bins(num_bins)
    codes = check_codes(codes, "codes")
    live = code_scales(codes) > 0
    exponents = np.frexp(np.max(np.abs(codes), axis=0))[1]
    out = np.zeros(codes.shape, dtype=np.int64)
    for d in np.flatnonzero(live):
        col = np.ldexp(codes[:, d], -exponents[d])
        edges = np.histogram(col, bins=num_bins)[1]
        out[:, d] = np.digitize(col, edges[:-1]) - 1
    return out


def _dense_labels(labels: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """Per column: labels renumbered to 0..L-1 and the number L of distinct labels."""
    out = []
    for col in labels.T:
        uniq, inv = np.unique(col, return_inverse=True)
        out.append((inv.ravel(), len(uniq)))
    return out


def _mi_from_counts(joint: np.ndarray, n: int) -> float:
    """Plug-in MI (nats) of a contingency table of counts summing to ``n``."""
    rows, cols = np.nonzero(joint)
    counts = joint[rows, cols].astype(np.float64)
    row_tot = joint.sum(axis=1)[rows].astype(np.float64)
    col_tot = joint.sum(axis=0)[cols].astype(np.float64)
    mi = np.sum(counts / n * (np.log(counts) + np.log(n) - np.log(row_tot) - np.log(col_tot)))
    return max(float(mi), 0.0)


def mutual_info_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise plug-in mutual information between the columns of two label arrays.

    ``a`` is (N, P) and ``b`` is (N, Q), both holding discrete labels (any integers). Returns the
    (P, Q) matrix ``M[i, j] = I(a[:, i]; b[:, j])`` in nats; with discretised codes as ``a``
    and factors as ``b`` this is dlib's ``discrete_mutual_info`` transposed to (D, K).
    """
    a = np.asarray(a)
    b = np.asarray(b)
    n = a.shape[0]
    da, db = _dense_labels(a), _dense_labels(b)
    out = np.zeros((len(da), len(db)))
    for i, (ai, na) in enumerate(da):
        for j, (bj, nb) in enumerate(db):
            joint = np.bincount(ai * nb + bj, minlength=na * nb).reshape(na, nb)
            out[i, j] = _mi_from_counts(joint, n)
    return out


def discrete_entropy(labels: np.ndarray) -> np.ndarray:
    """Empirical entropy (nats) of each column of ``labels`` (N, K): ``-Σ p log p``.

    This is the entropy of the *sampled* labels (dlib's ``discrete_entropy``), not log|V_k|.
    """
    labels = np.asarray(labels)
    out = np.empty(labels.shape[1])
    for k, (lab, _) in enumerate(_dense_labels(labels)):
        p = np.bincount(lab) / labels.shape[0]
        p = p[p > 0]
        out[k] = max(float(-np.sum(p * np.log(p))), 0.0)
    return out
