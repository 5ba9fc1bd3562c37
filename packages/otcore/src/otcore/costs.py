"""Ground costs c(x, y) between points, in dense and KeOps symbolic forms.

Conventions (shared by every otcore solver):

* ``SqEuclidean``: c(x, y) = ‖x − y‖² (no ½ factor, as in POT and OTT-JAX; GeomLoss halves it).
* ``Euclidean``: c(x, y) = ‖x − y‖.
* ``Cosine``: c(x, y) = 1 − ⟨x, y⟩ / (‖x‖‖y‖), in [0, 2].
* ``Dot``: c(x, y) = −⟨x, y⟩.

Every cost is also accepted as its lower-case string name wherever a cost is expected
(``"sqeuclidean"``, ``"euclidean"``, ``"cosine"``, ``"dot"``).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["Cosine", "Cost", "Dot", "Euclidean", "SqEuclidean", "get_cost"]

_NORM_FLOOR = 1e-12


class Cost:
    """Base class of a ground cost c(x, y) on points of ``R^d``.

    Subclasses implement :meth:`pairwise` (the dense ``(..., n, m)`` matrix), :meth:`elementwise`
    (``c(x_i, y_i)`` for paired rows, used by the Monge gap) and :meth:`keops` (the same cost
    as a symbolic KeOps ``LazyTensor`` from i- and j-indexed variables). :meth:`bound` gives an
    upper bound of the cost over the two clouds (the start of ε-annealing).
    """

    name: str = "cost"

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

    def pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gram = x @ y.transpose(-1, -2)
        if y is x:  # within-cloud cost: squared norms from the Gram diagonal
            xx = gram.diagonal(dim1=-2, dim2=-1)
            return (xx.unsqueeze(-1) + xx.unsqueeze(-2) - 2.0 * gram).clamp_min(0.0)
        xx = (x * x).sum(-1, keepdim=True)
        yy = (y * y).sum(-1).unsqueeze(-2)
        return (xx + yy - 2.0 * gram).clamp_min(0.0)

    def elementwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ((x - y) ** 2).sum(-1)

    def keops(self, x_i: Any, y_j: Any) -> Any:
        return x_i.sqdist(y_j)

    def bound(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _bbox_diameter(x, y) ** 2


class Euclidean(Cost):
    """c(x, y) = ‖x − y‖."""

    name = "euclidean"

    def pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return SqEuclidean().pairwise(x, y).clamp_min(_NORM_FLOOR**2).sqrt()

    def elementwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ((x - y) ** 2).sum(-1).clamp_min(_NORM_FLOOR**2).sqrt()

    def keops(self, x_i: Any, y_j: Any) -> Any:
        return x_i.sqdist(y_j).sqrt()

    def bound(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _bbox_diameter(x, y)


class Cosine(Cost):
    """c(x, y) = 1 − cos(x, y), in [0, 2]; zero vectors are treated as having unit norm."""

    name = "cosine"

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x / x.norm(dim=-1, keepdim=True).clamp_min(_NORM_FLOOR)

    def pairwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # 1 − ⟨x_i, y_j⟩ / (‖x_i‖ ‖y_j‖) from the Gram matrix: the only d-sized work is the
        # product (and its backward), which matters for flattened images (d = 4096).
        gram = x @ y.transpose(-1, -2)
        if y is x:  # within-cloud cost: the norms are the Gram diagonal
            nx = ny = gram.diagonal(dim1=-2, dim2=-1).clamp_min(_NORM_FLOOR**2).sqrt()
        else:
            nx = x.norm(dim=-1).clamp_min(_NORM_FLOOR)
            ny = y.norm(dim=-1).clamp_min(_NORM_FLOOR)
        return 1.0 - gram / (nx.unsqueeze(-1) * ny.unsqueeze(-2))

    def elementwise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 1.0 - (self.prepare(x) * self.prepare(y)).sum(-1)

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
