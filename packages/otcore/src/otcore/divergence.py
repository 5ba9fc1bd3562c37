"""The Sinkhorn divergence: entropic OT debiased so that it vanishes on equal measures.

S_ε(α, β) = OT_ε(α, β) − ½ OT_ε(α, α) − ½ OT_ε(β, β)    (Genevay, Peyré & Cuturi 2018;
Feydy et al. 2019, eq. 4), with OT_ε the dual value of :func:`otcore.sinkhorn`. For the
squared-Euclidean and Euclidean costs (positive-definite kernels exp(−C/ε)) it is ≥ 0 and
zero iff α = β (Feydy et al. 2019, Thm. 1). For unbalanced problems the mass term
(ε/2)(Σa − Σb)² of Séjourné et al. (2019, Def. 6) is added.
"""

from __future__ import annotations

from typing import Literal

import torch

from otcore.costs import Cost
from otcore.geometry import PointCloud
from otcore.sinkhorn import sinkhorn

__all__ = ["sinkhorn_divergence"]


def sinkhorn_divergence(
    x: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    *,
    cost: str | Cost = "sqeuclidean",
    epsilon: float = 0.05,
    relative_epsilon: Literal["mean", "std"] | None = "mean",
    backend: Literal["auto", "dense", "keops"] = "auto",
    **sinkhorn_kwargs,
) -> torch.Tensor:
    """Debiased Sinkhorn divergence between weighted point clouds.

    Args:
        x: (n, d) or (B, n, d) source points; y: (m, d) or (B, m, d) target points.
        a, b: weights (uniform if None).
        cost: ground cost (default ‖x − y‖²).
        epsilon: ε, absolute or relative (default 0.05 × mean of the cross cost). One
            absolute ε, computed on the cross term, is used for all three terms.
        relative_epsilon: ``"mean"``, ``"std"`` or None (absolute).
        backend: as for :class:`~otcore.PointCloud`.
        **sinkhorn_kwargs: passed to :func:`~otcore.sinkhorn` (tol, tau_a, tau_b, ...).

    Returns:
        () or (B,) divergence, differentiable in x, y, a, b (envelope gradients).

    Example:
        >>> import torch, otcore
        >>> x = torch.randn(100, 2)
        >>> float(otcore.sinkhorn_divergence(x, x))
        0.0
        >>> float(otcore.sinkhorn_divergence(x, x + 1)) > 0
        True
    """
    gxx = PointCloud(x, x, cost=cost, backend=backend)
    eps = epsilon
    if relative_epsilon is not None:  # one absolute ε, from the cross cost, for all terms
        gxy = PointCloud(x, y, cost=cost, backend=backend)
        stat = gxy.mean_cost() if relative_epsilon == "mean" else gxy.std_cost()
        if not bool((stat > 0).all()):
            raise ValueError(
                f"`relative_epsilon={relative_epsilon!r}` gives ε = 0: the {relative_epsilon} of "
                "the cost between `x` and `y` is zero. Pass an absolute `epsilon` with "
                "relative_epsilon=None."
            )
        eps = epsilon * (stat if gxy.batched else stat[0])
    oxx = sinkhorn(gxx, a, a, epsilon=eps, symmetric=True, **sinkhorn_kwargs)
    if _same_measure(x, y, oxx.a, b):  # the cross problem is the symmetric one: S = 0
        return oxx.value - oxx.value
    gyy = PointCloud(y, y, cost=cost, backend=gxx.backend)
    oyy = sinkhorn(gyy, b, b, epsilon=eps, symmetric=True, **sinkhorn_kwargs)
    out = sinkhorn(
        PointCloud(x, y, cost=cost, backend=backend), a, b, epsilon=eps, **sinkhorn_kwargs
    )
    div = out.value - 0.5 * (oxx.value + oyy.value)
    if sinkhorn_kwargs.get("tau_a", 1.0) != 1.0 or sinkhorn_kwargs.get("tau_b", 1.0) != 1.0:
        div = div + 0.5 * out.epsilon * (out.a.sum(-1) - out.b.sum(-1)) ** 2
    return div


def _same_measure(
    x: torch.Tensor, y: torch.Tensor, a: torch.Tensor, b: torch.Tensor | None
) -> bool:
    if x.shape != y.shape or not torch.equal(x, y):
        return False
    return b is None or torch.equal(a, torch.as_tensor(b).to(a))
