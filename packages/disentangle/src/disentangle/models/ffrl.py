"""Flow Factorized Representation Learning (FFRL): latent flows from learned potentials.

Song, Keller, Sebe, Welling, NeurIPS 2023 (arXiv 2309.13167); the brief ``papers/ffrl.md``
describes the authors' code (``KingJamesSong/latent-flow``), which this module follows unless a
bug fix says otherwise.

The model encodes the first frame ``x_0`` of a sequence, then moves the latent with the gradient
field of the potential ``u_k(z, t)`` of the batch's transformation k, one unit Euler step per
frame: ``z_t = z_{t−1} + ∇_z u_k(z_{t−1}, t)`` (ffrl.md §1.2), and decodes every step against the
true frame ``x_t``. Each field is pushed towards a dynamic-OT flow by the Hamilton–Jacobi (HJ)
penalty ``(∂_t u + ½‖∇_z u‖² + f_k²)²`` with a learned slack ``f_k`` (§1.4) and the
initial-condition penalty ``‖∇_z u(z, 0)‖² + f(z, 0)²``.

HJ variants (``hj_variant``):

- ``"code"``: as the authors' code: one time leaf shared by the batch, so ``∂_t u`` is the
  *batch sum* ``Σ_b ∂u(z_b, t)/∂t``; the kinetic term is the scalar ``½·mean_{b,d}(∂u/∂z_d)²``.
- ``"exact"`` (the default): the equation itself, per sample:
  ``∂_t u(z_b, t) + ½‖∇u(z_b, t)‖² + f(z_b, t)²``. It gave lower E_k than ``"code"`` on all
  three digit transformations over 3 seeds (docs/FFRL.md), so it is the default.

Density bookkeeping (``density``, ffrl.md §1.5–1.6): ``log q_t = log q_{t−1} − log|det J|``
for the step map ``z ↦ z + ∇u`` with ``J = I + ∇²u``, in three forms:

- ``"code"``: per dimension, ``log|1 + Σ_d ∂²u/∂z_d∂z_j|`` (Hessian row sums) — the authors'
  form; the prior's per-dimension term is ``log(1 + ∇²φ)`` of the diffusion prior; the KL term is
  their softmax-over-dimensions surrogate ``KL(softmax_d p ‖ softmax_d q)`` (batchmean);
- ``"laplacian"``: per sample, ``log|1 + Δu|`` (exact trace of the Hessian, or Hutchinson with
  ``hutchinson_probes > 0``) — the paper's written form;
- ``"exact"``: per sample, ``log|det(I + ∇²u)|`` from the full Hessian (small latents only).

For the two per-sample forms the prior term is summed over dimensions and the KL term is the
single-sample estimate ``mean_b(log q_t − log p_t)`` (our choice; not in the authors' code).

Bug fixes relative to the authors' code (ffrl.md §1.4, §1.5, §4.3), each deliberate:

- every module's gradients are zeroed each step: the model trains in the toolkit's one loop
  (:func:`disentangle.train.fit`), whose single optimizer covers the potentials, slacks and the
  prior (the authors' supervised trainer never zeroes the prior's gradients);
- the prior's diffusion coefficient D is a buffer, fixed at 1 on purpose (as the code, but
  stated), and the never-trained prior mean μ_t is dropped (it only enters the prior velocity,
  which training never uses);
- no ``set_detect_anomaly``; seeds come from the training loop.

>>> import torch
>>> model = FFRL((3, 8, 8), latent_dim=4, num_transformations=3, steps=2, architecture="mlp")
>>> frames = torch.rand(5, 3, 3, 8, 8)
>>> out = model({"frames": frames, "k": torch.zeros(5, dtype=torch.long)})
>>> sorted(out)
['hj', 'ic', 'kl', 'kl_flow', 'loss', 'rec', 'rec_flow']
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from disentangle.models.objectives import gaussian_log_density, kl_normal, reconstruction_loss
from disentangle.nn import Architecture, make_decoder, make_encoder

__all__ = [
    "DENSITY_FORMS",
    "FFRL",
    "HJ_VARIANTS",
    "DiffusionPrior",
    "FFRLWeights",
    "PotentialDerivatives",
    "PotentialNetworks",
    "code_log_likelihood",
    "equivariance_error",
    "hessian_row_sums",
    "hj_penalty",
    "hj_residual",
    "initial_condition_loss",
    "laplacian",
    "log_det_step",
    "log_likelihood",
    "sinusoidal_embedding",
    "sinusoidal_embedding_dt",
    "velocity",
]

HJVariant = Literal["code", "exact"]
HJ_VARIANTS: tuple[str, ...] = ("code", "exact")
DensityForm = Literal["code", "laplacian", "exact"]
DENSITY_FORMS: tuple[str, ...] = ("code", "laplacian", "exact")
Potential = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sinusoidal_embedding(t: torch.Tensor, dim: int, base: float = 10000.0) -> torch.Tensor:
    """Transformer/DDPM sinusoidal embedding ``(..., dim)`` of times ``t`` ``(...)``.

    ``[sin(t·ω_i), cos(t·ω_i)]`` with ``ω_i = base^(−i/half)``, ``i < half = dim // 2``; a zero
    column is appended when ``dim`` is odd. Differentiable in ``t`` (the HJ loss needs ∂_t).
    """
    freqs = _frequencies(t, dim, base)
    args = t[..., None] * freqs
    emb = torch.cat([torch.sin(args), torch.cos(args)], -1)
    return F.pad(emb, (0, dim - 2 * freqs.numel()))


def _frequencies(t: torch.Tensor, dim: int, base: float) -> torch.Tensor:
    half = dim // 2
    return torch.exp(
        -math.log(base) * torch.arange(half, dtype=t.dtype, device=t.device) / max(half, 1)
    )


def sinusoidal_embedding_dt(t: torch.Tensor, dim: int, base: float = 10000.0) -> torch.Tensor:
    """``d/dt`` of :func:`sinusoidal_embedding`, ``(..., dim)``: ``[ω cos(tω), −ω sin(tω)]``."""
    freqs = _frequencies(t, dim, base)
    args = t[..., None] * freqs
    emb = torch.cat([freqs * torch.cos(args), -freqs * torch.sin(args)], -1)
    return F.pad(emb, (0, dim - 2 * freqs.numel()))


class PotentialDerivatives(NamedTuple):
    """Closed-form derivatives of one potential network at ``(z, t)`` (see
    :meth:`PotentialNetworks.derivatives`)."""

    u: torch.Tensor
    """``(B,)`` values."""
    grad_z: torch.Tensor
    """``(B, n)`` velocity ``∇_z u``."""
    u_t: torch.Tensor
    """``(B,)`` per-sample time derivative ``∂_t u``."""
    hvp: torch.Tensor | None
    """``(B, n)`` Hessian-vector product ``∇²_z u · v`` (None without a direction)."""


class _BatchedLinear(nn.Module):
    """K independent linear layers applied at once: ``(K', B, in) -> (K', B, out)``."""

    def __init__(self, num: int, d_in: int, d_out: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)  # nn.Linear's default initialisation
        self.weight = nn.Parameter(torch.empty(num, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num, 1, d_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, which: slice) -> torch.Tensor:
        w, b = self.weight[which], self.bias[which]
        if x.shape[0] == 1 and w.shape[0] > 1:
            x = x.expand(w.shape[0], *x.shape[1:])
        return torch.baddbmm(b, x, w)


class PotentialNetworks(nn.Module):
    """K scalar networks ``u_k(z, t)`` of ffrl.md §1.3, evaluated as one batched network.

    Per network (width ``hidden``, default the latent size n as in the code):
    ``zf = tanh(W_z z)``, ``tf = W_2 gelu(W_1 emb(t))`` with the n-dimensional sinusoidal
    embedding, ``u = tanh(W_o tanh(W_f (zf + tf)))`` ∈ (−1, 1).

    ``forward(z, t, k)``: ``z`` ``(B, n)``, ``t`` broadcastable to ``(B,)`` (a ``(1,)`` tensor is
    one time shared by the batch); ``k`` an int gives ``(B,)``, ``k=None`` all K as ``(B, K)``.
    """

    def __init__(self, num: int, latent_dim: int, hidden: int | None = None) -> None:
        super().__init__()
        if num < 1:
            raise ValueError(f"num: need at least one potential, got {num}")
        if latent_dim < 1:
            raise ValueError(f"latent_dim: must be ≥ 1, got {latent_dim}")
        h = hidden or latent_dim
        self.num, self.latent_dim, self.hidden = num, latent_dim, h
        self.z_in = _BatchedLinear(num, latent_dim, h)
        self.t_in = _BatchedLinear(num, latent_dim, h)
        self.t_hidden = _BatchedLinear(num, h, h)
        self.fuse = _BatchedLinear(num, h, h)
        self.out = _BatchedLinear(num, h, 1)

    def forward(self, z: torch.Tensor, t: torch.Tensor | float, k: int | None = None):
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(
                f"z: expected (B, {self.latent_dim}) latents, got shape {tuple(z.shape)}"
            )
        if k is not None and not 0 <= int(k) < self.num:
            raise ValueError(f"k: potential index must be in 0..{self.num - 1}, got {k}")
        which = slice(None) if k is None else slice(int(k), int(k) + 1)
        t = torch.as_tensor(t, dtype=z.dtype, device=z.device).reshape(-1)
        zf = torch.tanh(self.z_in(z[None], which))  # (K', B, h)
        emb = sinusoidal_embedding(t, self.latent_dim)[None]  # (1, B or 1, n)
        tf = self.t_hidden(F.gelu(self.t_in(emb, which)), which)  # (K', B or 1, h)
        u = torch.tanh(self.out(torch.tanh(self.fuse(zf + tf, which)), which))[..., 0]
        return u.T if k is None else u[0]  # (B, K) or (B,)

    def network(self, k: int) -> tuple[torch.Tensor, ...]:
        """Parameters of network k as views ``(w_z, b_z, w_1, b_1, w_2, b_2, w_f, b_f, w_o,
        b_o)``, weights ``(in, out)`` and biases ``(out,)``, for :meth:`derivatives`."""
        if not 0 <= int(k) < self.num:
            raise ValueError(f"k: potential index must be in 0..{self.num - 1}, got {k}")
        k = int(k)
        layers = (self.z_in, self.t_in, self.t_hidden, self.fuse, self.out)
        return tuple(p for layer in layers for p in (layer.weight[k], layer.bias[k, 0]))

    def derivatives(
        self,
        z: torch.Tensor,
        t: torch.Tensor | float,
        k: int,
        direction: torch.Tensor | None = None,
        *,
        network: tuple[torch.Tensor, ...] | None = None,
    ) -> PotentialDerivatives:
        """``u_k``, ``∇_z u_k``, ``∂_t u_k`` and optionally ``∇²_z u_k · v`` in closed form.

        The chain rule through the network written out (reverse mode for the gradient, one
        forward-mode tangent of it for the Hessian-vector product), so training needs only a
        first-order backward pass instead of autograd's double (and, for the Hessian row
        sums, triple) backward. Equal to the autograd derivatives (tested); every output is
        itself differentiable in ``z`` and the parameters.

        Args:
            z: ``(B, n)`` latents; t: time, a float or ``(B,)`` / ``(1,)`` tensor.
            k: which network.
            direction: ``v``, ``(n,)`` or ``(B, n)``; ``ones(n)`` gives the authors' Hessian
                row sums ``Σ_d ∂²u/∂z_d∂z_j`` (ffrl.md §1.3).
            network: ``self.network(k)``, to reuse one set of parameter views over many calls
                (one slicing backward per training step instead of one per call).
        """
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(
                f"z: expected (B, {self.latent_dim}) latents, got shape {tuple(z.shape)}"
            )
        w_z, b_z, w_1, b_1, w_2, b_2, w_f, b_f, w_o, b_o = network or self.network(k)
        w_o = w_o[:, 0]
        t = torch.as_tensor(t, dtype=z.dtype, device=z.device).reshape(-1)
        zf = torch.tanh(torch.addmm(b_z, z, w_z))  # (B, h)
        pre = torch.addmm(b_1, sinusoidal_embedding(t, self.latent_dim), w_1)
        tf = torch.addmm(b_2, F.gelu(pre), w_2)  # (1 or B, h)
        g = torch.tanh(torch.addmm(b_f, zf + tf, w_f))
        u = torch.tanh(g @ w_o + b_o)  # (B,)
        du = 1 - u * u
        dzf, dg = 1 - zf * zf, 1 - g * g
        delta_c = du[:, None] * w_o * dg  # ∂u/∂(fuse pre-activation), (B, h)
        delta_s = delta_c @ w_f.T  # ∂u/∂(zf + tf)
        grad_z = (delta_s * dzf) @ w_z.T
        gelu_dt = torch.special.ndtr(pre) + pre * torch.exp(-0.5 * pre * pre) / math.sqrt(
            2 * math.pi
        )
        emb_dt = sinusoidal_embedding_dt(t, self.latent_dim)
        tf_dt = (gelu_dt * (emb_dt @ w_1)) @ w_2
        u_t = (delta_s * tf_dt).sum(1)
        if direction is None:
            return PotentialDerivatives(u, grad_z, u_t, None)
        zf_dot = dzf * (direction @ w_z)  # tangents along v
        g_dot = dg * (zf_dot @ w_f)
        u_dot = du * (g_dot @ w_o)
        delta_c_dot = w_o * ((-2 * u * u_dot)[:, None] * dg - 2 * du[:, None] * g * g_dot)
        hvp = ((delta_c_dot @ w_f.T) * dzf - 2 * delta_s * zf * zf_dot) @ w_z.T
        return PotentialDerivatives(u, grad_z, u_t, hvp)


def _grad_ready(z: torch.Tensor) -> torch.Tensor:
    return z if z.requires_grad else z.detach().requires_grad_(True)


def velocity(u_fn: Potential, z: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Velocity ``∇_z u(z, t)`` ``(B, n)`` by autograd with ``create_graph=True`` (§1.3)."""
    z = _grad_ready(z)
    t = torch.as_tensor(t, dtype=z.dtype, device=z.device).reshape(-1)
    return torch.autograd.grad(u_fn(z, t).sum(), z, create_graph=True)[0]


def hj_residual(
    u_fn: Potential,
    z: torch.Tensor,
    t: float,
    f_fn: Potential | None = None,
    variant: HJVariant = "exact",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hamilton–Jacobi penalty at ``(z, t)`` and the velocity (ffrl.md §1.2, §1.4).

    ``exact``: ``R_b = ∂_t u(z_b, t) + ½‖∇_z u(z_b, t)‖² + f(z_b, t)²`` with a per-sample time
    leaf. ``code``: the authors' ``R_b = Σ_b' ∂_t u(z_b', t) + ½·mean_{b,d}(∂u/∂z_d)² + f(z_b,
    t)²`` (one shared time leaf, scalar kinetic term). Returns ``(mean_b R_b², ∇_z u (B, n))``;
    both keep their graphs so the penalty trains ``u``, ``f`` and whatever produced ``z``.

    Args:
        u_fn: potential ``(z (B, n), t (B,) or (1,)) -> (B,)``.
        z: latents ``(B, n)``.
        t: the time step.
        f_fn: slack ``(z, t) -> (B,)``; None for no slack.
        variant: ``"code"`` or ``"exact"``.
    """
    if variant not in HJ_VARIANTS:
        raise ValueError(f"variant: expected one of {HJ_VARIANTS}, got {variant!r}")
    z = _grad_ready(z)
    t_leaf = torch.full((z.shape[0],), float(t), dtype=z.dtype, device=z.device)
    t_leaf.requires_grad_(True)
    u = u_fn(z, t_leaf)
    grad_z, u_t = torch.autograd.grad(u.sum(), (z, t_leaf), create_graph=True)
    slack = None if f_fn is None else f_fn(z, t_leaf)
    return hj_penalty(u_t, grad_z, slack, variant), grad_z


def hj_penalty(
    u_t: torch.Tensor,
    grad_z: torch.Tensor,
    slack: torch.Tensor | None,
    variant: HJVariant,
) -> torch.Tensor:
    """``mean_b R_b²`` from per-sample ``∂_t u`` ``(B,)``, ``∇_z u`` ``(B, n)`` and slack
    ``f`` ``(B,)`` (or None): the residuals of :func:`hj_residual` (``code`` sums ``∂_t u``
    over the batch, as the authors' shared time leaf does, and uses the scalar kinetic term)."""
    if variant == "exact":
        residual = u_t + 0.5 * grad_z.pow(2).sum(1)
    else:
        residual = u_t.sum() + 0.5 * grad_z.pow(2).mean()
    if slack is not None:
        residual = residual + slack.pow(2)
    return residual.expand(grad_z.shape[0]).pow(2).mean()


def initial_condition_loss(
    u_fn: Potential, z: torch.Tensor, f_fn: Potential | None = None
) -> torch.Tensor:
    """``mean(∇_z u(z, 0)²) + mean(f(z, 0)²)``: no motion and no slack at t = 0 (§1.4)."""
    loss = velocity(u_fn, z, 0.0).pow(2).mean()
    if f_fn is not None:
        loss = loss + f_fn(z, torch.zeros(1, dtype=z.dtype, device=z.device)).pow(2).mean()
    return loss


def hessian_row_sums(grad_z: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``Σ_d ∂²u/∂z_d∂z_j`` ``(B, n)``: the authors' "u_zz" (§1.3), one backward pass."""
    return torch.autograd.grad(grad_z.sum(), z, create_graph=True)[0]


def _hessian(grad_z: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    rows = [
        torch.autograd.grad(grad_z[:, j].sum(), z, create_graph=True)[0] for j in range(z.shape[1])
    ]
    return torch.stack(rows, 1)  # (B, n, n); samples are independent, so the batch sum is exact


def laplacian(
    grad_z: torch.Tensor,
    z: torch.Tensor,
    probes: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``Δu = tr ∇²u`` per sample ``(B,)``.

    ``probes = 0``: exact trace, n backward passes (small latents). ``probes > 0``: Hutchinson's
    estimator ``mean_p εᵀ(∇²u)ε`` with Rademacher ε, one backward pass per probe.
    """
    if probes == 0:
        return torch.diagonal(_hessian(grad_z, z), dim1=1, dim2=2).sum(1)
    total = grad_z.new_zeros(z.shape[0])
    for _ in range(probes):
        eps = torch.randint(0, 2, z.shape, generator=generator).to(z) * 2 - 1
        hv = torch.autograd.grad((grad_z * eps).sum(), z, create_graph=True)[0]
        total = total + (hv * eps).sum(1)
    return total / probes


def log_det_step(grad_z: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``log|det(I + ∇²u)|`` ``(B,)``: the exact log-Jacobian of the step ``z ↦ z + ∇u``."""
    eye = torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
    return torch.linalg.slogdet(eye + _hessian(grad_z, z)).logabsdet


def split_loader_batch(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x0, indices)`` of a loader batch of a sequence dataset (items ``(x0, index)``)."""
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise ValueError(
            "batch: expected a loader batch (x0, indices) of a sequence dataset, or "
            "{'frames': (B, T+1, C, H, W), 'k': (B,)}"
        )
    return batch[0], batch[1]


def check_frames(frames: torch.Tensor, observation_shape: tuple[int, ...], steps: int) -> None:
    """Raise unless ``frames`` is ``(B, T + 1, *observation_shape)`` with T ≥ ``steps``."""
    if frames.ndim != 5 or tuple(frames.shape[2:]) != tuple(observation_shape):
        raise ValueError(
            f"frames: expected (B, T+1, {', '.join(map(str, observation_shape))}), "
            f"got shape {tuple(frames.shape)}"
        )
    if frames.shape[1] < steps + 1:
        raise ValueError(
            f"frames: {frames.shape[1]} frames per sequence, the model trains "
            f"{steps} steps and needs {steps + 1}"
        )


def equivariance_error(decoded: torch.Tensor, frames: torch.Tensor) -> dict[str, torch.Tensor]:
    """E_k of one batch (ffrl.md §3.2): ``Σ_t (1/B) Σ_b Σ_{c,h,w} |Dec(z_t^b) − x_t^b|``.

    Args:
        decoded: ``(B, T, C, H, W)`` decoded flowed frames ``Dec(z_t)``, t = 1..T.
        frames: ``(B, T, C, H, W)`` the true frames ``x_t``, t = 1..T.

    Returns:
        ``{"sum": pixel L1 summed over pixels and steps, mean over the batch (the paper's E_k),
        "per_pixel": the same divided by T·C·H·W}``. Average ``sum`` over evaluation batches.
    """
    if decoded.shape != frames.shape or decoded.ndim != 5:
        raise ValueError(
            f"decoded, frames: expected equal (B, T, C, H, W) shapes, got "
            f"{tuple(decoded.shape)} and {tuple(frames.shape)}"
        )
    total = (decoded - frames).abs().sum((1, 2, 3, 4)).mean()
    return {"sum": total, "per_pixel": total / frames[0].numel()}


def log_likelihood(
    x: torch.Tensor,
    decode: Callable[[torch.Tensor], torch.Tensor],
    mean: torch.Tensor,
    logvar: torch.Tensor,
    num_samples: int = 10,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Importance-sampled ``log p(x)`` per sample ``(B,)`` under a σ = 1 Gaussian decoder.

    ``log (1/S) Σ_s p(x | z_s) p(z_s) / q(z_s | x)`` with ``z_s ~ q(z|x) = N(mean, exp(logvar))``,
    ``p(z) = N(0, I)`` and ``p(x|z) = N(x; decode(z), I)`` — the σ = 1 likelihood of the authors'
    evaluation (ffrl.md §3.1; its constant ``−(D/2)·log 2π`` is −2161.34 for 3×28×28) with
    Topographic-VAE's importance sampling (10 samples there). ``num_samples = 1`` is the
    single-sample ELBO. A lower bound on ``log p(x)`` in expectation, tight as S → ∞.

    Args:
        x: ``(B, ...)`` observations.
        decode: latents ``(N, n)`` → decoder means ``(N, ...)``.
        mean, logvar: posterior parameters ``(B, n)``.
        num_samples: S ≥ 1.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples: must be ≥ 1, got {num_samples}")
    eps = torch.randn(
        (num_samples, *mean.shape), generator=generator, dtype=mean.dtype, device=mean.device
    )
    z = mean + eps * torch.exp(0.5 * logvar)  # (S, B, n)
    x_hat = decode(z.flatten(0, 1)).unflatten(0, (num_samples, x.shape[0]))
    zeros = torch.zeros_like(x)
    log_px_z = gaussian_log_density(x, x_hat, zeros).flatten(2).sum(2)
    log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(2)
    log_qz = gaussian_log_density(z, mean, logvar).sum(2)
    return torch.logsumexp(log_px_z + log_pz - log_qz, 0) - math.log(num_samples)


def code_log_likelihood(
    x: torch.Tensor,
    decode: Callable[[torch.Tensor], torch.Tensor],
    mean: torch.Tensor,
    logvar: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The authors' printed ``logpx`` per sample ``(B,)``, exactly as coded (ffrl.md §3.1).

    ``x̂ = decode(z)`` with ``z ~ q(z|x)``, then a *second, independent* ``z′ ~ q(z|x)``, and
    ``−log N(x; x̂, I) + log p(z′) − log q(z′|x)``, summed over pixels and dimensions. The signs
    are the code's: the first term is the *negative* σ = 1 Gaussian log-likelihood, so the value
    sits near ``+(D/2)·log 2π`` (+2161.34 for 3×28×28), and it is not a bound on log p(x) under
    either sign (the prior/posterior part has the ELBO's sign, the likelihood part the
    opposite). Its negation lands on the paper's scale near the anchors −2161.34 / −11291.92.
    Use :func:`log_likelihood` for an estimate that is a bound.
    """
    std = torch.exp(0.5 * logvar)
    noise = torch.randn((2, *mean.shape), generator=generator, dtype=mean.dtype, device=mean.device)
    z, z2 = mean + noise[0] * std, mean + noise[1] * std
    neg_log_px = -gaussian_log_density(x, decode(z), torch.zeros_like(x)).flatten(1).sum(1)
    log_pz = gaussian_log_density(z2, torch.zeros_like(z2), torch.zeros_like(z2)).sum(1)
    return neg_log_px + log_pz - gaussian_log_density(z2, mean, logvar).sum(1)


class DiffusionPrior(nn.Module):
    """Prior flow of ffrl.md §1.5: ``log p_t = log p_{t−1} − log(1 + ∇²φ)`` per dimension.

    ``∇²φ = D`` at t = 1 (p_0 = N(0, I)) and ``D/(σ_{k,t}² + 1e-5)`` at t ≥ 2, with a learnable
    scalar σ per (k, t) initialised to 1 (``sigma[k, t − 1]``) and D = 1 fixed.
    """

    def __init__(self, num: int, steps: int, diffusion: float = 1.0) -> None:
        super().__init__()
        self.sigma = nn.Parameter(torch.ones(num, steps))
        self.register_buffer("diffusion", torch.tensor(float(diffusion)))

    def log_jacobian(self, k: int, t: int) -> torch.Tensor:
        """``log(1 + ∇²φ_k(t))``, a scalar: what one dimension's log-density loses at step t."""
        if t == 1:
            return torch.log1p(self.diffusion)
        return torch.log1p(self.diffusion / (self.sigma[k, t - 1].pow(2) + 1e-5))


@dataclass
class FFRLWeights:
    """Loss weights; all 1 in the paper's code (ffrl.md §1.7)."""

    rec: float = 1.0
    """Frame-0 reconstruction (Bernoulli, summed over pixels, mean over batch)."""
    kl: float = 1.0
    """Frame-0 analytic KL to N(0, I)."""
    rec_flow: float = 1.0
    """Reconstructions of the flowed frames t = 1..T′."""
    kl_flow: float = 1.0
    """Per-step KL term of the density bookkeeping."""
    hj: float = 1.0
    """Hamilton–Jacobi penalty (0: the "no HJ" ablation)."""
    ic: float = 1.0
    """Initial-condition penalty."""
    consensus: float = 1.0
    """Weakly supervised: batch-consensus loss −log p̄_argmax (ffrl.md §1.11)."""
    diversity: float = 0.5
    """Weakly supervised, not in the paper: weight of the index-usage balance term
    ``pixels · KL(ū ‖ uniform)``, ū the running (momentum 0.9) mean of the batches' one-hots.
    Without it the predictor collapses onto one index (0: the authors' model)."""


class FFRL(nn.Module):
    """The FFRL model (supervised, ffrl.md §1.7; or weakly supervised, §1.11) for
    :func:`disentangle.train.fit`.

    Args:
        observation_shape: ``(C, H, W)`` of a frame.
        latent_dim: n.
        num_transformations: K.
        steps: T′, flow steps trained (8 for the digit sequences).
        architecture: encoder/decoder of :mod:`disentangle.nn` (``"conv"`` needs H, W multiples
            of 16; ``"mlp"`` works for 28×28).
        hidden: width of the potential and slack networks (None: n, as the code).
        hj_variant: ``"exact"`` (default: the equation per sample, which gave lower E_k on
            the digit sequences, docs/FFRL.md) or ``"code"`` (reproduces the authors).
        density: ``"code"`` (default), ``"laplacian"`` or ``"exact"``.
        hutchinson_probes: for ``density="laplacian"``: 0 exact trace, > 0 Hutchinson probes.
        weights: :class:`FFRLWeights`.
        sequence_fn: ``(x0, k, indices) -> frames (B, T + 1, C, H, W)``; lets ``forward``
            take a loader batch ``(x0, indices)`` and draw one k per batch itself (e.g.
            ``DigitSequences.sequence_fn()``, which transforms ``x0``).
        weakly_supervised: hide k (ffrl.md §1.11): an index predictor reads all frames stacked
            along channels (an MLP here; the authors use a conv trunk) and gives a
            straight-through hard Gumbel-softmax one-hot per sample, temperature
            ``max(exp(−3e-5·iteration), 0.05)`` refreshed every 100 iterations; fields, HJ
            penalties and the prior are mixed by the one-hot, and the batch-consensus loss
            pushes one k per batch. The IC loss accumulates over k (the code overwrote it).
            Our addition: the usage-balance term of ``weights.diversity``. Consensus alone
            makes every batch agree, but nothing makes *different* batches use different
            indices: on a planted two-flow problem the predictor sent both flows to one index
            within 40 steps (a potential that nobody uses gets no gradient, so it can never
            win the straight-through comparison). Penalising the divergence of the running
            index usage from uniform, scaled by the pixels per frame so that it competes with
            the pixel-summed reconstruction, keeps every potential in use until they
            specialise; on that problem the predictor then separates the flows
            (tests/disentangle/test_models_ffrl.py).
    """

    def __init__(
        self,
        observation_shape: Sequence[int],
        latent_dim: int = 16,
        num_transformations: int = 3,
        steps: int = 8,
        architecture: Architecture = "mlp",
        hidden: int | None = None,
        hj_variant: HJVariant = "exact",
        density: DensityForm = "code",
        hutchinson_probes: int = 0,
        weights: FFRLWeights | None = None,
        sequence_fn: Callable[..., torch.Tensor] | None = None,
        weakly_supervised: bool = False,
    ) -> None:
        super().__init__()
        if hj_variant not in HJ_VARIANTS:
            raise ValueError(f"hj_variant: expected one of {HJ_VARIANTS}, got {hj_variant!r}")
        if density not in DENSITY_FORMS:
            raise ValueError(f"density: expected one of {DENSITY_FORMS}, got {density!r}")
        if steps < 1:
            raise ValueError(f"steps: must be ≥ 1, got {steps}")
        if hutchinson_probes < 0:
            raise ValueError(f"hutchinson_probes: must be ≥ 0, got {hutchinson_probes}")
        self.observation_shape = tuple(observation_shape)
        self.latent_dim, self.num_transformations, self.steps = (
            latent_dim,
            num_transformations,
            steps,
        )
        self.hj_variant, self.density, self.hutchinson_probes = (
            hj_variant,
            density,
            hutchinson_probes,
        )
        self.weights = weights or FFRLWeights()
        for name, value in vars(self.weights).items():
            if not value >= 0:
                raise ValueError(f"weights.{name}: must be ≥ 0, got {value}")
        self.sequence_fn = sequence_fn
        self.encoder = make_encoder(architecture, self.observation_shape, latent_dim)
        self.decoder = make_decoder(architecture, self.observation_shape, latent_dim)
        self.potentials = PotentialNetworks(num_transformations, latent_dim, hidden)
        self.slacks = PotentialNetworks(num_transformations, latent_dim, hidden)
        self.prior = DiffusionPrior(num_transformations, steps)
        self.weakly_supervised = weakly_supervised
        if weakly_supervised:
            frames_in = (steps + 1) * math.prod(self.observation_shape)
            self.index_predictor = nn.Sequential(
                nn.Flatten(),
                nn.Linear(frames_in, 256),
                nn.ReLU(),
                nn.Linear(256, num_transformations),
            )
            self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
            self.register_buffer(
                "usage", torch.full((num_transformations,), 1.0 / num_transformations)
            )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints of weakly supervised models saved before the usage buffer existed
        if self.weakly_supervised and prefix + "usage" not in state_dict:
            state_dict[prefix + "usage"] = self.usage.new_full(
                self.usage.shape, 1 / len(self.usage)
            )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def temperature(self) -> float:
        """Gumbel-softmax τ = max(exp(−3e-5·iteration), 0.05), refreshed every 100 iterations."""
        it = int(self.iteration) // 100 * 100 if self.training else 100_001
        return max(math.exp(-3e-5 * it), 0.05)

    def predict_index(self, frames: torch.Tensor, hard_sample: bool = True) -> torch.Tensor:
        """One-hot ``(B, K)`` over transformations from frames ``(B, T′+1, C, H, W)`` (weak).

        Training: straight-through hard Gumbel-softmax; ``hard_sample=False``: the argmax.
        """
        logits = self.index_predictor(frames[:, : self.steps + 1])
        if hard_sample:
            return F.gumbel_softmax(logits, tau=self.temperature(), hard=True)
        return F.one_hot(logits.argmax(1), self.num_transformations).to(logits.dtype)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior ``(mean, logvar)``, each ``(B, n)``, of first frames ``(B, C, H, W)``."""
        return self.encoder(x)

    @torch.no_grad()
    def represent(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior means ``(B, n)``."""
        return self.encoder(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder mean in [0, 1], ``(B, C, H, W)``."""
        return torch.sigmoid(self.decoder(z))

    def field(self, z: torch.Tensor, t: float, ks: int | Sequence[int]) -> torch.Tensor:
        """``Σ_{k ∈ ks} ∇_z u_k(z, t)`` ``(B, n)``: one field, or a composition of fields."""
        ks = [ks] if isinstance(ks, int) else list(ks)
        return sum(self.potentials.derivatives(z, float(t), k).grad_z for k in ks)

    def flow(
        self, z: torch.Tensor, ks: int | Sequence[int], steps: int | None = None
    ) -> torch.Tensor:
        """Latent path ``(B, steps + 1, n)`` from ``z`` along ``ks`` (more steps: extrapolation;
        several k: composition by adding fields), detached."""
        steps = self.steps if steps is None else steps
        path = [z.detach()]
        with torch.no_grad():
            for t in range(1, steps + 1):
                path.append(path[-1] + self.field(path[-1], t, ks))
        return torch.stack(path, 1)

    @torch.no_grad()
    def equivariance_error(
        self, frames: torch.Tensor, k: int, steps: int | None = None
    ) -> dict[str, torch.Tensor]:
        """E_k on one batch of sequences ``(B, T + 1, C, H, W)`` of transformation ``k``.

        As §3.2 with the flow applied (the Falcor/Isaac code forgot it): ``z_0`` is a sample of
        q(z|x_0), ``z_t = z_{t−1} + ∇u_k(z_{t−1}, t)``, t = 1..steps (default T′ − 1, the code's
        ``range(1, D//2)``). Weakly supervised models ignore ``k`` and flow along the batch's
        majority predicted index (as the authors' evaluation mixes by the prediction).
        """
        steps = self.steps - 1 if steps is None else steps
        if not 1 <= steps < frames.shape[1]:
            raise ValueError(f"steps: must be in 1..{frames.shape[1] - 1}, got {steps}")
        if self.weakly_supervised:  # the model's own index for the batch (k is hidden)
            k = int(self.predict_index(frames, hard_sample=False).sum(0).argmax())
        mean, logvar = self.encoder(frames[:, 0])
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        path = self.flow(z, k, steps)[:, 1:]
        decoded = self.decode(path.flatten(0, 1)).unflatten(0, path.shape[:2])
        return equivariance_error(decoded, frames[:, 1 : steps + 1])

    def _sequence(self, batch) -> tuple[torch.Tensor, int]:
        if isinstance(batch, dict) or hasattr(batch, "frames"):
            frames = batch["frames"] if isinstance(batch, dict) else batch.frames
            k = batch.get("k", None) if isinstance(batch, dict) else batch.k
            if self.weakly_supervised:
                return frames, -1
            if k is None:
                raise ValueError("k: the supervised model needs the batch's transformation 'k'")
            k = torch.as_tensor(k).reshape(-1)
            if k.unique().numel() != 1:
                raise ValueError("k: the supervised model takes one transformation per batch")
            return frames, int(k[0])
        if self.sequence_fn is None:
            raise ValueError(
                "batch: plain image batches need sequence_fn; otherwise pass "
                "{'frames': (B, T+1, C, H, W), 'k': (B,)}"
            )
        x0, indices = split_loader_batch(batch)
        k = int(torch.randint(self.num_transformations, (1,)))
        return self.sequence_fn(x0, k, indices), k

    def _log_det(self, grad_z: torch.Tensor, z: torch.Tensor, row_sums: torch.Tensor | None):
        if self.density == "code":
            return torch.log(torch.abs(1 + row_sums))
        if self.density == "laplacian":
            return torch.log(torch.abs(1 + laplacian(grad_z, z, self.hutchinson_probes)))
        return log_det_step(grad_z, z)

    def _kl_flow(self, log_q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
        if self.density == "code":
            return F.kl_div(
                torch.log_softmax(log_q.exp(), 1),
                torch.log_softmax(log_p.exp(), 1),
                reduction="batchmean",
                log_target=True,
            )
        return (log_q - log_p).mean()

    def forward(self, batch) -> dict[str, torch.Tensor]:
        """Loss terms of ffrl.md §1.7 on ``{"frames", "k"}``, a ``SequenceBatch``, or images.

        ``frames`` is ``(B, T + 1, C, H, W)`` with T ≥ T′; one k for the whole batch.
        """
        frames, k = self._sequence(batch)
        check_frames(frames, self.observation_shape, self.steps)
        if not self.weakly_supervised and not 0 <= k < self.num_transformations:
            raise ValueError(f"k: must be in 0..{self.num_transformations - 1}, got {k}")
        w = self.weights
        x0 = frames[:, 0]
        mean, logvar = self.encoder(x0)
        z = _grad_ready(mean + torch.randn_like(mean) * torch.exp(0.5 * logvar))
        out = {
            "rec": reconstruction_loss(self.decoder(z), x0, "bernoulli"),
            "kl": kl_normal(mean.float(), logvar.float()).sum(),
        }
        log_q = gaussian_log_density(z, mean, logvar)
        log_p = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
        if self.density != "code":
            log_q, log_p = log_q.sum(1), log_p.sum(1)
        if self.weakly_supervised:
            onehot = self.predict_index(frames)  # (B, K), straight-through
            mean_onehot = onehot.mean(0)
            # KL(onehot(argmax) ‖ p̄) = −log p̄_argmax (ffrl.md §1.11)
            out["consensus"] = -torch.log(mean_onehot.max().clamp_min(1e-8))
            usage = 0.9 * self.usage + 0.1 * mean_onehot
            n_k = self.num_transformations
            balance = (usage * torch.log(n_k * usage.clamp_min(1e-8))).sum()
            out["diversity"] = math.prod(self.observation_shape) * balance
            if self.training:
                self.iteration += 1
                self.usage.copy_(usage.detach())
            active = [j for j in range(self.num_transformations) if mean_onehot[j] > 0]
        else:
            onehot = F.one_hot(
                torch.full_like(mean[:, 0], k, dtype=torch.long), self.num_transformations
            )
            onehot, mean_onehot, active = onehot.to(z.dtype), None, [k]

        def share(j: int) -> torch.Tensor | float:
            return 1.0 if mean_onehot is None else mean_onehot[j]

        # Potentials' derivatives in closed form (PotentialNetworks.derivatives), so that the
        # backward pass is first order; the Hessian row sums only for the "code" density.
        ones = torch.ones_like(z[0]) if self.density == "code" else None
        nets = {j: self.potentials.network(j) for j in active}
        hj, kl_flow, path = z.new_zeros(()), z.new_zeros(()), []
        t0 = z.new_zeros(1)
        out["ic"] = sum(
            share(j)
            * (
                self.potentials.derivatives(z, t0, j, network=nets[j]).grad_z.pow(2).mean()
                + self.slacks(z, t0, j).pow(2).mean()
            )
            for j in active
        )
        for t in range(1, self.steps + 1):
            grad_z, row_sums = torch.zeros_like(z), None if ones is None else torch.zeros_like(z)
            t_now = z.new_full((1,), float(t))
            for j in active:  # one pass per active k (all K only when k is hidden)
                d = self.potentials.derivatives(z, t_now, j, ones, network=nets[j])
                slack = self.slacks(z, t_now, j)
                hj = hj + share(j) * hj_penalty(d.u_t, d.grad_z, slack, self.hj_variant)
                grad_z = grad_z + onehot[:, j : j + 1] * d.grad_z
                if row_sums is not None:
                    row_sums = row_sums + onehot[:, j : j + 1] * d.hvp
            log_q = log_q - self._log_det(grad_z, z, row_sums)
            prior = sum(onehot[:, j] * self.prior.log_jacobian(j, t) for j in active)
            log_p = log_p - (prior[:, None] if self.density == "code" else prior * self.latent_dim)
            z = z + grad_z
            kl_flow = kl_flow + self._kl_flow(log_q, log_p)
            path.append(z)
        logits = self.decoder(torch.cat(path))  # one decoder call for all flowed frames
        target = frames[:, 1 : self.steps + 1].transpose(0, 1).reshape(logits.shape)
        out["rec_flow"] = reconstruction_loss(logits, target, "bernoulli") * self.steps
        out["hj"], out["kl_flow"] = hj, kl_flow
        out["loss"] = (
            w.rec * out["rec"]
            + w.kl * out["kl"]
            + w.rec_flow * out["rec_flow"]
            + w.kl_flow * out["kl_flow"]
            + w.hj * out["hj"]
            + w.ic * out["ic"]
        )
        if self.weakly_supervised:
            out["loss"] = (
                out["loss"] + w.consensus * out["consensus"] + w.diversity * out["diversity"]
            )
        return out
