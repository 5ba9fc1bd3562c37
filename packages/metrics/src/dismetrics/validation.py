"""Input checking shared by every metric: array conversion, shapes, finiteness, factor classes.

Every public metric funnels its inputs through these helpers so that bad input fails early with
a message naming the argument (``codes``, ``factors_test``, ...) and what is wrong with it.
Torch tensors are accepted by duck typing (``.detach().cpu().numpy()``); torch is never imported.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

SeedLike = int | np.random.Generator | np.random.SeedSequence


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


def check_pair(
    codes: Any, factors: Any, codes_name: str = "codes", factors_name: str = "factors"
) -> tuple[np.ndarray, np.ndarray]:
    """Validate matching ``(N, D)`` codes and ``(N, K)`` factors."""
    z = check_codes(codes, codes_name)
    y = check_factors(factors, factors_name, n=z.shape[0], codes_name=codes_name)
    return z, y


def check_train_test(
    codes_train: Any, factors_train: Any, codes_test: Any, factors_test: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate a train/test pair of samples with the same D and K."""
    z_tr, y_tr = check_pair(codes_train, factors_train, "codes_train", "factors_train")
    z_te, y_te = check_pair(codes_test, factors_test, "codes_test", "factors_test")
    if z_te.shape[1] != z_tr.shape[1]:
        raise ValueError(
            f"codes_test has D={z_te.shape[1]} dimensions but codes_train has D={z_tr.shape[1]}"
        )
    if y_te.shape[1] != y_tr.shape[1]:
        raise ValueError(
            f"factors_test has K={y_te.shape[1]} factors but factors_train has K={y_tr.shape[1]}"
        )
    return z_tr, y_tr, z_te, y_te


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
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer | np.random.SeedSequence):
        raise TypeError(
            f"seed must be an int, a numpy SeedSequence or Generator, got {type(seed).__name__}"
        )
    return np.random.default_rng(seed)


def as_int_seed(seed: SeedLike) -> int:
    """An int seed for scikit-learn's ``random_state`` (drawn once from a Generator)."""
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool):
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        return int(seed) % (2**32)
    return int(as_generator(seed).integers(2**31 - 1))
