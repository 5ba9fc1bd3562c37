"""Low-rank cost geometry C = U Vᵀ, dense or KeOps-symbolic.

A cost matrix of rank r, ``C_ij = ⟨u_i, v_j⟩`` with factors U (n, r) and V (m, r), is applied in
O(n·m·r) time without ever being stored on the KeOps backend (O((n + m)·r) memory), and its
mean and standard deviation come in closed form from the factors:

    mean(C) = ⟨ū, v̄⟩,    mean(C²) = ⟨UᵀU, VᵀV⟩_F / (n m).

The linearised squared-Euclidean Gromov-Wasserstein cost is such a matrix
(``papers/ot.md`` §3.5): ``−4|x̃_i|²|ỹ_j|² − 16⟨x̃_i, Z ỹ_j⟩`` has rank ``min(d_x, d_y) + 1``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from otcore._validation import check_finite, compute_dtype
from otcore.geometry import (
    AUTO_KEOPS_ENTRIES,
    Geometry,
    KeOpsReductions,
    ScaleCost,
    _lazy,
    _scale_factor,
)
from otcore.geometry import keops_available as _keops_available

__all__ = ["LowRankGeometry"]


class LowRankGeometry(KeOpsReductions, Geometry):
    """The rank-r cost ``C = U Vᵀ`` of shape (n, m), or (B, n, m) from batched factors.

    Args:
        U: (n, r) or (B, n, r) row factors; finite. Gradients flow through both factors.
        V: (m, r) or (B, m, r) column factors.
        backend: ``"dense"`` forms ``C`` once (O(n·m) memory, fastest for small problems);
            ``"keops"`` reduces the symbolic ``⟨u_i, v_j⟩`` in O(n + m) memory; ``"auto"``
            picks KeOps above 5000 × 5000 entries when pykeops is installed. Batched factors
            use the dense backend.
        scale_cost: as for :class:`~otcore.Geometry` (``"mean"``, ``"max"``, ``"std"``, a
            float or None), computed under stop-gradient.

    Example:
        >>> import torch, otcore
        >>> U, V = torch.randn(6, 2), torch.randn(4, 2)
        >>> geom = otcore.LowRankGeometry(U, V)
        >>> torch.allclose(geom.cost_matrix, U @ V.T)
        True
    """

    def __init__(
        self,
        U: torch.Tensor,
        V: torch.Tensor,
        *,
        backend: Literal["auto", "dense", "keops"] = "auto",
        scale_cost: ScaleCost = None,
    ) -> None:
        U, V = torch.as_tensor(U), torch.as_tensor(V)
        if U.ndim not in (2, 3) or U.ndim != V.ndim:
            raise ValueError(
                "`U` and `V` must both be (n, r) or both (B, n, r); got shapes "
                f"{tuple(U.shape)} and {tuple(V.shape)}."
            )
        if U.shape[-1] != V.shape[-1]:
            raise ValueError(
                f"`U` and `V` must have the same rank r (last dimension); got {U.shape[-1]} "
                f"and {V.shape[-1]}."
            )
        if U.ndim == 3 and U.shape[0] != V.shape[0]:
            raise ValueError(
                f"`U` and `V` must have the same batch size; got {U.shape[0]} and {V.shape[0]}."
            )
        if 0 in U.shape or 0 in V.shape:
            raise ValueError(f"empty factors: shapes {tuple(U.shape)} and {tuple(V.shape)}.")
        dtype = compute_dtype(U, V)
        U, V = U.to(dtype), V.to(dtype)
        check_finite("U", U)
        check_finite("V", V)
        self.batched = U.ndim == 3
        self.U = U if self.batched else U.unsqueeze(0)
        self.V = V if self.batched else V.unsqueeze(0)
        if backend not in ("auto", "dense", "keops"):
            raise ValueError(f"Unknown `backend` {backend!r}; expected 'auto', 'dense' or 'keops'.")
        if backend == "keops":
            if not _keops_available():
                raise ImportError(
                    "backend='keops' needs pykeops: `pip install otcore[keops]` "
                    "(and a C++ compiler)."
                )
            if self.batched:
                raise ValueError("Batched (B, n, r) factors are supported on backend='dense' only.")
        elif backend == "auto":
            entries = self.U.shape[1] * self.V.shape[1]
            big = not self.batched and entries > AUTO_KEOPS_ENTRIES and _keops_available()
            backend = "keops" if big else "dense"
        self.backend = backend
        # Built once, here, so that it carries the caller's autograd graph.
        self._C_dense = self.U @ self.V.transpose(-1, -2) if backend == "dense" else None
        self._cache = None
        self._buf = None
        self._scale = None
        self._scale = _scale_factor(self, scale_cost)

    # ----------------------------------------------------------------- basic properties
    @property
    def rank(self) -> int:
        """The factors' inner dimension r."""
        return self.U.shape[-1]

    @property
    def batch(self) -> int:
        return self.U.shape[0]

    @property
    def n(self) -> int:
        return self.U.shape[1]

    @property
    def m(self) -> int:
        return self.V.shape[1]

    @property
    def dtype(self) -> torch.dtype:
        return self.U.dtype

    @property
    def device(self) -> torch.device:
        return self.U.device

    @property
    def _C_raw(self) -> torch.Tensor:  # type: ignore[override]
        if self.backend == "keops":
            raise ValueError(
                "This LowRankGeometry uses the KeOps backend, which never forms the cost "
                "matrix; build it with backend='dense' to get a dense matrix or plan."
            )
        return self._C_dense

    # ----------------------------------------------------------------- statistics
    def _factor_scale(self) -> torch.Tensor:
        s = torch.ones(self.batch, dtype=self.dtype, device=self.device)
        return s if self._scale is None else s * self._scale

    def mean_cost(self) -> torch.Tensor:
        """Mean cost per problem, (B,), exact from the factors in O((n + m) r)."""
        U, V = self.U.detach(), self.V.detach()
        return (U.mean(1) * V.mean(1)).sum(-1) * self._factor_scale()

    def std_cost(self) -> torch.Tensor:
        """Standard deviation of the entries per problem, (B,), exact in O((n + m) r²).

        With centred factors Ũ = U − ū, Ṽ = V − v̄, C − mean(C) = α ⊕ β + ŨṼᵀ with α = Ũv̄,
        β = Ṽū; the three parts are orthogonal (each has zero row or column means), so
        var(C) = mean(α²) + mean(β²) + ⟨ŨᵀŨ, ṼᵀṼ⟩_F / (n m): a sum of non-negative terms,
        without the cancellation of mean(C²) − mean(C)² when |mean(C)| ≫ std(C).
        """
        U, V = self.U.detach(), self.V.detach()
        ub, vb = U.mean(1, keepdim=True), V.mean(1, keepdim=True)
        Ut, Vt = U - ub, V - vb
        alpha = (Ut * vb).sum(-1)
        beta = (Vt * ub).sum(-1)
        gu, gv = Ut.transpose(1, 2) @ Ut, Vt.transpose(1, 2) @ Vt
        var = (alpha**2).mean(1) + (beta**2).mean(1) + (gu * gv).sum((1, 2)) / (self.n * self.m)
        return var.clamp_min(0).sqrt() * self._factor_scale().abs()

    def max_cost(self) -> torch.Tensor:
        if self.backend != "keops":
            return super().max_cost()
        with torch.no_grad():
            return self._keops_cost().max(dim=1).max().reshape(1)

    def diameter(self) -> torch.Tensor:
        """max(C) − min(C) per problem, (B,) (two KeOps reductions on that backend)."""
        if self.backend != "keops":
            return super().diameter()
        with torch.no_grad():
            C = self._keops_cost()
            return (C.max(dim=1).max() - C.min(dim=1).min()).reshape(1)

    # ----------------------------------------------------------------- KeOps forms
    def _keops_cost(self) -> Any:
        C = _lazy(self.U[0][:, None, :]) | _lazy(self.V[0][None, :, :])
        if self._scale is not None:
            C = C * _lazy(self._scale.reshape(1))
        return C
