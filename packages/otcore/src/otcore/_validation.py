"""Input checks shared by every otcore entry point.

Each check raises a ``ValueError`` that names the offending argument and says what is wrong,
so that bad input never turns into a silent NaN further down.
"""

from __future__ import annotations

import torch

_HALF = (torch.float16, torch.bfloat16)

#: Relative tolerance of the equal-mass check of balanced problems (|Σa − Σb| ≤ it·max).
MASS_RTOL = 1e-5


def compute_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    """The floating dtype computations run in: float64 if any input is float64, else float32.

    Half-precision and integer inputs are computed in float32.
    """
    dtypes = [t.dtype for t in tensors if isinstance(t, torch.Tensor)]
    return torch.float64 if torch.float64 in dtypes else torch.float32


def check_finite(name: str, t: torch.Tensor) -> None:
    """Raise if ``t`` holds a NaN or an infinity.

    A NaN or an infinity anywhere makes the sum non-finite, so a finite sum (one reduction,
    several times cheaper than ``isfinite`` over a large tensor) proves every entry finite;
    only a non-finite sum (a bad entry, or an overflow of the sum) checks entry by entry.
    """
    if t.is_floating_point() and bool(torch.isfinite(t.sum())):
        return
    if not bool(torch.isfinite(t).all()):
        bad = "NaN" if bool(torch.isnan(t).any()) else "inf"
        raise ValueError(f"`{name}` contains {bad} values; all entries must be finite.")


def check_positive(name: str, value: float) -> float:
    """Raise unless ``value`` is a finite number > 0; return it as a float."""
    v = float(value)
    if not (v > 0.0) or v != v or v == float("inf"):
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}.")
    return v


def as_points(
    name: str, x: torch.Tensor, *, dtype: torch.dtype | None = None, min_ndim: int = 2
) -> torch.Tensor:
    """Validate a point cloud ``(..., n, d)``: a non-empty, finite tensor of at least 2 dims."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    if x.ndim < min_ndim:
        raise ValueError(
            f"`{name}` must have shape (..., n, d) with at least {min_ndim} dimensions, "
            f"got shape {tuple(x.shape)}."
        )
    if x.shape[-2] == 0 or x.shape[-1] == 0:
        raise ValueError(f"`{name}` is empty (shape {tuple(x.shape)}).")
    x = x.to(dtype or compute_dtype(x))
    check_finite(name, x)
    return x


def as_weights(
    name: str,
    w: torch.Tensor | None,
    shape: tuple[int, ...],
    *,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """Validate a weight vector of ``shape`` (``(..., n)``), or make uniform weights if None.

    Weights must be finite, non-negative and have positive total mass (per batch entry).
    """
    if w is None:
        return torch.full(shape, 1.0 / shape[-1], dtype=dtype, device=device)
    w = torch.as_tensor(w).to(dtype=dtype, device=device)
    if w.shape != torch.Size(shape):
        if w.ndim == 1 and len(shape) > 1 and w.shape[0] == shape[-1]:
            w = w.expand(shape)
        else:
            raise ValueError(
                f"`{name}` must have shape {tuple(shape)} to match the points, "
                f"got {tuple(w.shape)}."
            )
    check_finite(name, w)
    if bool((w < 0).any()):
        raise ValueError(f"`{name}` has negative entries; weights must be >= 0.")
    if bool((w.sum(-1) <= 0).any()):
        raise ValueError(f"`{name}` has zero total mass; weights must sum to a positive number.")
    return w


def equal_mass(ma: torch.Tensor, mb: torch.Tensor) -> bool:
    """True when the total masses agree to ``MASS_RTOL`` relative to the larger (per problem).

    Relative, not absolute: masses 1e-9 and 2e-9 differ, whatever their size.
    """
    return bool(((ma - mb).abs() <= MASS_RTOL * torch.maximum(ma.abs(), mb.abs())).all())
