"""Input checking shared by every metric: arrays, shapes, finiteness, factor classes, integers.

Every public metric funnels its inputs through these helpers so that bad input fails early with
a message naming the argument (``codes``, ``factors_test``, ``num_bins``, ``seed``, ...) and what
is wrong with it. Torch tensors are accepted by duck typing (``.detach().cpu().numpy()``); torch
is never imported.

Codes are **standardised** here, once for every metric (:func:`standardize`): each column minus
its mean, divided by its standard deviation (with its sign fixed), before any estimator is
fitted and before any histogram is taken. So every array metric gives the same scores for codes
``c`` and ``a * c + b`` (scalar ``a ≠ 0``, vector ``b``) up to float rounding; only the
unsupervised Wasserstein dependency, in squared code units by definition, scales with ``a²``.
MIG, DCI, modularity/explicitness, IRS and the other unsupervised scores are invariant in exact
arithmetic already, so their values move only at rounding level; SAP's fixed-``C`` SVMs now see
unit-variance codes (see :func:`dismetrics.sap`). Standardising also keeps codes of any scale
(1e-300 or 1e300) inside the range where scikit-learn (float32 in places) and ``np.histogram``
behave. A column whose spread is lost in float64 rounding counts as constant
(:data:`NEAR_CONSTANT_RTOL`).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

SeedLike = int | np.random.Generator | np.random.SeedSequence

#: A code column whose standard deviation is at most this fraction of its largest absolute value
#: (64 float64 ulps, about 1.4e-14) varies only at rounding level and is treated as constant:
#: ``1 + 1e-15 * z`` is constant, ``1 + 1e-13 * z`` is not.
NEAR_CONSTANT_RTOL = 64 * float(np.finfo(np.float64).eps)
#: Standardised codes are clipped to ± this value. A column standardised with its own statistics
#: lies within ±√N anyway; the clip only bounds test codes far outside the training range, so
#: that they stay finite and inside float32 range (as scikit-learn's trees need).
STANDARDIZED_CLIP = 1e12
#: Largest accepted ``num_bins`` (the histogram keeps ``num_bins + 1`` edges per column).
MAX_NUM_BINS = 100_000


class SkippedFactorWarning(UserWarning):
    """A ground-truth factor takes a single value in the scored sample and was left out."""


def to_numpy(x: Any, name: str) -> np.ndarray:
    """Convert ``x`` (numpy array, nested sequence or torch tensor) to a numpy array."""
    if hasattr(x, "detach") and hasattr(x, "cpu") and hasattr(x, "numpy"):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be array-like, got {type(x).__name__}") from err


def check_codes(codes: Any, name: str = "codes", n: int | None = None) -> np.ndarray:
    """Validate a representation: a finite ``(N, D)`` numeric array, returned as float64.

    ``n`` (optional) is the number of rows the array must have.
    """
    arr = to_numpy(codes, name)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D (N, D) array of codes, got shape {arr.shape}"
            + (" (use codes.reshape(-1, 1) for a single dimension)" if arr.ndim == 1 else "")
        )
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has N=0 samples")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has D=0 code dimensions; a representation needs at least one")
    arr = arr.astype(np.float64, copy=False)
    finite = np.isfinite(arr)
    if not finite.all():
        i, j = np.argwhere(~finite)[0]
        raise ValueError(
            f"{name} contains {int((~finite).sum())} NaN or inf values "
            f"(first at row {i}, column {j}); metrics need finite codes"
        )
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} rows but {n} were expected")
    return arr


def check_factors(
    factors: Any, name: str = "factors", n: int | None = None, codes_name: str = "codes"
) -> np.ndarray:
    """Validate ground-truth factors: a ``(N, K)`` array of non-negative integer classes.

    Float arrays are accepted when every entry is integral. ``n`` is the number of rows of the
    matching codes array (named ``codes_name`` in the error message).
    """
    arr = to_numpy(factors, name)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D (N, K) array of integer classes, got shape {arr.shape}"
            + (" (use factors.reshape(-1, 1) for a single factor)" if arr.ndim == 1 else "")
        )
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has N=0 samples")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has K=0 factors")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or inf; factors must be integer class indices")
        frac = arr != np.round(arr)
        if frac.any():
            i, j = np.argwhere(frac)[0]
            raise ValueError(
                f"{name} must hold integer class indices, got {arr[i, j]!r} at row {i}, column "
                f"{j}; map factor values to classes with np.unique(column, return_inverse=True)"
            )
    if (arr < 0).any():
        i, j = np.argwhere(arr < 0)[0]
        raise ValueError(
            f"{name} must hold non-negative class indices, got {arr[i, j]!r} at row {i}, column {j}"
        )
    if n is not None and arr.shape[0] != n:
        raise ValueError(
            f"{name} has {arr.shape[0]} rows but {codes_name} has {n}: "
            "codes and factors must describe the same samples"
        )
    return arr.astype(np.int64, copy=False)


def _column_stats(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of finite (N, D) codes: ``(peak, mean, scale)`` such that
    ``(column / peak - mean) / scale`` is the standardised, oriented column.

    ``peak`` is the largest absolute value; dividing by it first keeps every intermediate in
    [-1, 1], so codes near the float64 limits (1e-300, 1e300) neither underflow nor overflow.
    ``mean`` and ``|scale|`` are the mean and standard deviation (ddof 0) of ``column / peak``;
    ``scale`` is 0 for a constant or near-constant column (:data:`NEAR_CONSTANT_RTOL`). Its
    sign orients the column: the first entry more than ``1e-6`` standard deviations away from
    the mean comes out positive. Every score is invariant to flipping a code's sign; fixing the
    sign makes codes ``-c`` run through the same floating-point computation as ``c`` (tree
    ensembles otherwise break near-ties in the other direction).
    """
    peak = np.max(np.abs(reference), axis=0)
    peak = np.where(peak > 0, peak, 1.0)
    unit = reference / peak
    mean = unit.mean(axis=0)
    dev = unit - mean
    std = np.sqrt(np.mean(dev**2, axis=0))
    std = np.where(std > NEAR_CONSTANT_RTOL, std, 0.0)
    first = np.argmax(np.abs(dev) > 1e-6 * std, axis=0)
    sign = np.where(dev[first, np.arange(dev.shape[1])] < 0, -1.0, 1.0)
    return peak, mean, sign * std


def standardize(codes: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Standardise each column of validated codes with the statistics of ``reference``.

    ``codes`` (N, D) and ``reference`` (M, D) are finite float arrays (:func:`check_codes`);
    without ``reference`` a column is standardised with its own mean and standard deviation
    (ddof 0), then oriented (its sign fixed by its first entry clearly away from the mean, see
    ``_column_stats``). A constant or near-constant reference column
    (:data:`NEAR_CONSTANT_RTOL`) becomes 0 everywhere. Results are clipped to
    ±:data:`STANDARDIZED_CLIP`. For a scalar ``a ≠ 0`` and a vector ``b``, ``a * codes + b``
    (with the same map applied to ``reference``) gives the same output up to float rounding.
    """
    peak, mean, scale = _column_stats(codes if reference is None else reference)
    live = scale != 0
    with np.errstate(over="ignore"):
        out = (codes / peak - mean) / np.where(live, scale, 1.0)
    out[:, ~live] = 0.0
    return np.clip(out, -STANDARDIZED_CLIP, STANDARDIZED_CLIP)


def code_scales(codes: np.ndarray) -> np.ndarray:
    """Standard deviation (ddof 0) of each column of finite codes, 0 for a near-constant column."""
    peak, _, scale = _column_stats(codes)
    return peak * np.abs(scale)


def check_pair(
    codes: Any, factors: Any, codes_name: str = "codes", factors_name: str = "factors"
) -> tuple[np.ndarray, np.ndarray]:
    """Validate matching ``(N, D)`` codes and ``(N, K)`` factors; return the codes standardised.

    The codes come back standardised column by column (:func:`standardize`), the factors as
    int64 classes.
    """
    z = check_codes(codes, codes_name)
    y = check_factors(factors, factors_name, n=z.shape[0], codes_name=codes_name)
    return standardize(z), y


def validate_train_test(
    codes_train: Any, factors_train: Any, codes_test: Any, factors_test: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate a train/test pair of samples with the same D and K (codes left as they are)."""
    z_tr = check_codes(codes_train, "codes_train")
    y_tr = check_factors(factors_train, "factors_train", z_tr.shape[0], "codes_train")
    z_te = check_codes(codes_test, "codes_test")
    y_te = check_factors(factors_test, "factors_test", z_te.shape[0], "codes_test")
    if z_te.shape[1] != z_tr.shape[1]:
        raise ValueError(
            f"codes_test has D={z_te.shape[1]} dimensions but codes_train has D={z_tr.shape[1]}"
        )
    if y_te.shape[1] != y_tr.shape[1]:
        raise ValueError(
            f"factors_test has K={y_te.shape[1]} factors but factors_train has K={y_tr.shape[1]}"
        )
    return z_tr, y_tr, z_te, y_te


def check_train_test(
    codes_train: Any, factors_train: Any, codes_test: Any, factors_test: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate a train/test pair (:func:`validate_train_test`) and standardise the codes.

    Both code samples are standardised with the **training** sample's column means and standard
    deviations (:func:`standardize`), so the estimators fitted on the training codes see the
    test codes on the same scale.
    """
    z_tr, y_tr, z_te, y_te = validate_train_test(
        codes_train, factors_train, codes_test, factors_test
    )
    return standardize(z_tr), y_tr, standardize(z_te, reference=z_tr), y_te


def check_int(value: Any, name: str, minimum: int, maximum: int | None = None) -> int:
    """``value`` as a Python int; a ``TypeError``/``ValueError`` naming ``name`` and the allowed
    range when it is not an integer (bools and floats such as ``2.5`` or ``1e10`` included) or
    lies outside ``[minimum, maximum]``.
    """
    allowed = (
        f"an integer >= {minimum}"
        if maximum is None
        else f"an integer between {minimum} and {maximum}"
    )
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be {allowed}, got {value!r} of type {type(value).__name__}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {allowed}, got {value}")
    return int(value)


def check_num_bins(num_bins: Any) -> int:
    """Validate a histogram size: an integer between 1 and :data:`MAX_NUM_BINS`."""
    return check_int(num_bins, "num_bins", 1, MAX_NUM_BINS)


def check_n_jobs(n_jobs: Any) -> int | None:
    """Validate a joblib ``n_jobs``: None or a non-zero integer (-1: all cores)."""
    if n_jobs is None:
        return None
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int | np.integer) or n_jobs == 0:
        raise ValueError(
            f"n_jobs must be None or a non-zero integer (-1: all cores), got {n_jobs!r}"
        )
    return int(n_jobs)


def require_samples(n: int, minimum: int, name: str, metric: str) -> None:
    """Raise when a metric is given fewer samples than it needs."""
    if n < minimum:
        raise ValueError(f"{metric} needs at least {minimum} samples in {name}, got {n}")


def require_dims(d: int, minimum: int, name: str, metric: str) -> None:
    """Raise when a metric is given fewer code dimensions than it needs."""
    if d < minimum:
        raise ValueError(f"{metric} needs at least {minimum} code dimensions in {name}, got D={d}")


def active_factors(
    factors: np.ndarray, name: str, metric: str
) -> tuple[np.ndarray, tuple[int, ...]]:
    """Indices of the factors with at least two values; warn about (and return) the others.

    A factor with a single value in the scored sample carries no information (entropy 0), so
    every metric leaves it out and reports it in its result's ``skipped_factors``.
    """
    single = tuple(int(k) for k in np.flatnonzero((factors == factors[:1]).all(axis=0)))
    if len(single) == factors.shape[1]:
        raise ValueError(
            f"every column of {name} takes a single value; {metric} has no factor to score"
        )
    if single:
        warnings.warn(
            f"{metric}: factor column(s) {list(single)} of {name} take a single value in this "
            "sample and are skipped (reported in the result's skipped_factors)",
            SkippedFactorWarning,
            stacklevel=3,
        )
    return np.setdiff1d(np.arange(factors.shape[1]), single), single


def check_mutual_info(mutual_info: Any, n_codes: int, n_factors: int) -> np.ndarray:
    """Validate a precomputed (D, K) mutual-information matrix against the codes and factors."""
    mi = np.asarray(mutual_info, dtype=np.float64)
    if mi.shape != (n_codes, n_factors):
        raise ValueError(
            f"mutual_info must have shape (D, K) = ({n_codes}, {n_factors}), got {mi.shape}"
        )
    if not np.isfinite(mi).all() or (mi < 0).any():
        raise ValueError("mutual_info must hold finite, non-negative values (nats)")
    return mi


def as_generator(seed: SeedLike) -> np.random.Generator:
    """An explicit ``numpy.random.Generator`` from an int seed, SeedSequence or Generator."""
    if isinstance(seed, np.random.Generator | np.random.SeedSequence):
        return np.random.default_rng(seed)
    return np.random.default_rng(check_seed(seed))


def check_seed(seed: Any) -> int:
    """Validate an integer seed: a non-negative int (bools and floats are refused)."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(
            "seed must be a non-negative integer, a numpy SeedSequence or Generator, "
            f"got {seed!r} of type {type(seed).__name__}"
        )
    return check_int(seed, "seed", 0)


def as_int_seed(seed: SeedLike) -> int:
    """An int seed for scikit-learn's ``random_state`` (drawn once from a Generator)."""
    if isinstance(seed, np.random.Generator | np.random.SeedSequence):
        return int(as_generator(seed).integers(2**31 - 1))
    return check_seed(seed) % (2**32)
