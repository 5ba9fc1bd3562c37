"""Ground costs c(x, y) between points, in dense and KeOps symbolic forms.

Conventions (shared by every otcore solver):

* ``SqEuclidean``: c(x, y) = ‖x − y‖² (no ½ factor, as in POT and OTT-JAX; GeomLoss halves it).
  The dense matrix uses ‖x‖² + ‖y‖² − 2⟨x, y⟩ (one matrix product) on clouds first centred by
  a common shift: the cost is translation invariant, and without it the expansion cancels
  catastrophically for clouds far from the origin (float32 points shifted by 1e4 gave costs
  with relative error 2.3).
* ``Euclidean``: c(x, y) = ‖x − y‖.
* ``Cosine``: c(x, y) = 1 − ⟨x, y⟩ / (‖x‖‖y‖), in [0, 2]; a zero vector counts as having unit
  norm (cos = 0 with everything, cost 1), with a finite gradient there.
* ``Dot``: c(x, y) = −⟨x, y⟩.

Every cost is also accepted as its lower-case string name wherever a cost is expected
(``"sqeuclidean"``, ``"euclidean"``, ``"cosine"``, ``"dot"``).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["Cosine", "Cost", "Dot", "Euclidean", "SqEuclidean", "get_cost"]

_NORM_FLOOR = 1e-12


def _common_centre(*clouds: torch.Tensor) -> torch.Tensor:
    """A shift (..., 1, d) common to the clouds (..., n, d): near the mean of their means.

    Subtracting it from every cloud leaves a translation-invariant cost unchanged (and its
    gradient: the shift is detached, a constant) and puts the clouds near the origin, where
    ‖x‖² + ‖y‖² − 2⟨x, y⟩ keeps the precision of ‖x − y‖². Per coordinate, the mean is rounded
    to a multiple of the largest power of two not above the clouds' joint range: at most half
    the range away from the mean, and the subtraction stays exact on integer (or dyadic)
    points, so that exact inputs keep exact costs (and a translation by such a number gives
    the same centred clouds, hence bitwise the same costs).
    """
    zs = [z.detach() for z in clouds]
    mean = sum(z.mean(-2, keepdim=True) for z in zs) / len(zs)
    hi = torch.stack([z.amax(-2, keepdim=True) for z in zs]).amax(0)
    lo = torch.stack([z.amin(-2, keepdim=True) for z in zs]).amin(0)
    span = hi - lo
    _, e = torch.frexp(span)  # span = m·2^e, m in [0.5, 1): 2^(e−1) ≤ span
    q = torch.ldexp(torch.ones_like(span), e - 1)
    q = torch.where((span > 0) & torch.isfinite(span), q, torch.ones_like(span))
    return torch.round(mean / q) * q


def _unit_floor(norm: torch.Tensor, floor: float) -> torch.Tensor:
    """``norm`` with the entries ≤ ``floor`` replaced by 1 (a zero vector counts as unit norm).

    The replaced entries get a zero gradient through ``where`` and no inf/NaN is formed on
    either branch, so dividing by the result has a finite gradient at a zero vector (a clamp
    to the floor instead gave gradients of 1/floor = 1e12 there).
    """
    return torch.where(norm > floor, norm, torch.ones_like(norm))


def _safe_norm(x: torch.Tensor, keepdim: bool = False) -> torch.Tensor:
    # torch's norm has a zero gradient at 0, and is safe from overflow (unlike Σ x²)
    return _unit_floor(x.norm(dim=-1, keepdim=keepdim), _NORM_FLOOR)


class Cost:
    """Base class of a ground cost c(x, y) on points of ``R^d``.

    Subclasses implement :meth:`pairwise` (the dense ``(..., n, m)`` matrix), :meth:`elementwise`
    (``c(x_i, y_i)`` for paired rows, used by the Monge gap) and :meth:`keops` (the same cost
    as a symbolic KeOps ``LazyTensor`` from i- and j-indexed variables). :meth:`bound` gives an
    upper bound of the cost over the two clouds (the start of ε-annealing).
    """

    name: str = "cost"
    #: c(x + t, y + t) = c(x, y) for every shift t: solvers may centre the clouds first.
    translation_invariant: bool = False

    def pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Dense cost matrix ``C[..., i, j] = c(x[..., i, :], y[..., j, :])``: (..., n, m)."""
        raise NotImplementedError

    def elementwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Costs of paired rows ``c(x[..., i, :], y[..., i, :])``: (..., n)."""
        raise NotImplementedError

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Transform applied to the points before the KeOps formula (identity by default)."""
        return x

    def keops(self, x_i: Any, y_j: Any) -> Any:
        """Symbolic cost from KeOps LazyTensors ``x_i`` (n, 1, d) and ``y_j`` (1, m, d)."""
        raise NotImplementedError

    def bound(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """An upper bound of ``max_ij c(x_i, y_j)`` computable in O((n + m) d)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


def _bbox_diameter(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    z = torch.cat([x, y], dim=-2)
    return (z.amax(-2) - z.amin(-2)).norm(dim=-1)


class SqEuclidean(Cost):
    """c(x, y) = ‖x − y‖² (no ½)."""

    name = "sqeuclidean"
    translation_invariant = True

    def pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # ‖x‖² + ‖y‖² − 2⟨x, y⟩ on centred clouds (module docstring): the rounding of the
        # expansion is then relative to the clouds' spread, not to their distance to 0.
        if y is x:  # within-cloud cost: squared norms from the Gram diagonal
            x = x - _common_centre(x)
            gram = x @ x.transpose(-1, -2)
            xx = gram.diagonal(dim1=-2, dim2=-1)
            return (xx.unsqueeze(-1) + xx.unsqueeze(-2) - 2.0 * gram).clamp_min(0.0)
        c = _common_centre(x, y)
        x, y = x - c, y - c
        gram = x @ y.transpose(-1, -2)
        xx = (x * x).sum(-1, keepdim=True)
        yy = (y * y).sum(-1).unsqueeze(-2)
        return (xx + yy - 2.0 * gram).clamp_min(0.0)

    def elementwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ((x - y) ** 2).sum(-1)

    def keops(self, x_i: Any, y_j: Any) -> Any:
        return x_i.sqdist(y_j)  # KeOps' SqDist is SqNorm2(x − y): no expansion to cancel

    def bound(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _bbox_diameter(x, y) ** 2


class Euclidean(Cost):
    """c(x, y) = ‖x − y‖."""

    name = "euclidean"
    translation_invariant = True

    def pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return SqEuclidean().pairwise(x, y).clamp_min(_NORM_FLOOR**2).sqrt()

    def elementwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ((x - y) ** 2).sum(-1).clamp_min(_NORM_FLOOR**2).sqrt()

    def keops(self, x_i: Any, y_j: Any) -> Any:
        return x_i.sqdist(y_j).sqrt()

    def bound(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _bbox_diameter(x, y)


class Cosine(Cost):
    """c(x, y) = 1 − cos(x, y), in [0, 2]; zero vectors are treated as having unit norm.

    A vector of norm ≤ 1e-12 is divided by 1 instead of its norm: the cost of a zero vector
    is 1 against everything, and its gradient is finite (that of 1 − ⟨x, ŷ⟩, i.e. −ŷ).
    """

    name = "cosine"

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x / _safe_norm(x, keepdim=True)

    def pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # 1 − ⟨x_i, y_j⟩ / (‖x_i‖ ‖y_j‖) from the Gram matrix: the only d-sized work is the
        # product (and its backward), which matters for flattened images (d = 4096).
        gram = x @ y.transpose(-1, -2)
        if y is x:  # within-cloud cost: the norms are the Gram diagonal
            nx = ny = _unit_floor(gram.diagonal(dim1=-2, dim2=-1), _NORM_FLOOR**2).sqrt()
        else:
            nx, ny = _safe_norm(x), _safe_norm(y)
        # clamped to its range [0, 2]: rounding gave −1e-7 for nearly parallel vectors, and a
        # negative mean cost (hence ε < 0 in the Gromov-Monge gap)
        return (1.0 - gram / (nx.unsqueeze(-1) * ny.unsqueeze(-2))).clamp(0.0, 2.0)

    def elementwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (1.0 - (self.prepare(x) * self.prepare(y)).sum(-1)).clamp(0.0, 2.0)

    def keops(self, x_i: Any, y_j: Any) -> Any:
        return 1.0 - (x_i | y_j)

    def bound(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.full(x.shape[:-2], 2.0, dtype=x.dtype, device=x.device)


class Dot(Cost):
    """c(x, y) = −⟨x, y⟩ (can be negative; OT is invariant to the shift)."""

    name = "dot"

    def pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -(x @ y.transpose(-1, -2))

    def elementwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -(x * y).sum(-1)

    def keops(self, x_i: Any, y_j: Any) -> Any:
        return -(x_i | y_j)

    def bound(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x.norm(dim=-1).amax(-1) * y.norm(dim=-1).amax(-1)


_COSTS: dict[str, type[Cost]] = {c.name: c for c in (SqEuclidean, Euclidean, Cosine, Dot)}


def get_cost(cost: str | Cost) -> Cost:
    """Return a :class:`Cost` instance from a cost or its name (case-insensitive)."""
    if isinstance(cost, Cost):
        return cost
    if isinstance(cost, str) and cost.lower() in _COSTS:
        return _COSTS[cost.lower()]()
    raise ValueError(
        f"Unknown `cost` {cost!r}; expected one of {sorted(_COSTS)} or a Cost instance."
    )
