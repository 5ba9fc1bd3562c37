"""Implicit differentiation of balanced Sinkhorn potentials (dense cost matrices).

At the optimum the first-order conditions R(f, g; C, a, b) = (a − P1, b − Pᵀ1) = 0 hold with
P = a⊗b·exp((f ⊕ g − C)/ε). By the implicit function theorem (Luise et al. 2018; Cuturi,
Teboul & Vert 2020; OTT-JAX ``ImplicitDiff``), for a cotangent v = (v_f, v_g):

    ∂R/∂(f, g) = −M/ε,   M = [[diag(P1), P], [Pᵀ, diag(Pᵀ1)]],
    vjp_θ = ε · wᵀ ∂R/∂θ   with   M w = v.

M is singular along (1, −1) (potentials are defined up to f + c, g − c); we solve with the
rank-one completion M + u uᵀ, u = (1_n, −1_m)/√(n+m), which fixes that gauge.
"""

from __future__ import annotations

import torch

__all__ = ["implicit_potentials"]


def _residual(C, a, b, eps, f, g):
    P = (
        a[:, :, None]
        * b[:, None, :]
        * torch.exp((f[:, :, None] + g[:, None, :] - C) / eps[:, None, None])
    )
    return a - P.sum(-1), b - P.sum(-2), P


class _ImplicitPotentials(torch.autograd.Function):
    @staticmethod
    def forward(ctx, C, a, b, eps, f, g):
        ctx.save_for_backward(C, a, b, eps, f, g)
        return f.clone(), g.clone()

    @staticmethod
    def backward(ctx, grad_f, grad_g):
        C, a, b, eps, f, g = ctx.saved_tensors
        n, m = f.shape[-1], g.shape[-1]
        with torch.enable_grad():
            Cd, ad, bd = (t.detach().requires_grad_(t.requires_grad) for t in (C, a, b))
            rf, rg, P = _residual(Cd, ad, bd, eps, f, g)
            Pd = P.detach()
            top = torch.cat([torch.diag_embed(Pd.sum(-1)), Pd], dim=-1)
            bot = torch.cat([Pd.transpose(-1, -2), torch.diag_embed(Pd.sum(-2))], dim=-1)
            M = torch.cat([top, bot], dim=-2)
            u = torch.cat([torch.ones(n, dtype=f.dtype), -torch.ones(m, dtype=f.dtype)])
            u = (u / (n + m) ** 0.5).to(f.device)
            M = M + u[:, None] * u[None, :]
            v = torch.cat([grad_f, grad_g], dim=-1)
            w = torch.linalg.solve(M, v.unsqueeze(-1)).squeeze(-1) * eps[:, None]
            inputs = [t for t in (Cd, ad, bd) if t.requires_grad]
            grads = (
                torch.autograd.grad((rf, rg), inputs, grad_outputs=(w[:, :n], w[:, n:]))
                if inputs
                else ()
            )
        it = iter(grads)
        out = [next(it) if t.requires_grad else None for t in (Cd, ad, bd)]
        return out[0], out[1], out[2], None, None, None


def implicit_potentials(
    C: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    eps: torch.Tensor,
    f: torch.Tensor,
    g: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (f, g) equal to the given converged potentials, differentiable in (C, a, b).

    Shapes: C (B, n, m), a (B, n), b (B, m), eps (B,), f (B, n), g (B, m).
    """
    return _ImplicitPotentials.apply(C, a, b, eps, f.detach(), g.detach())
