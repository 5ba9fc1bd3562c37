"""Geometric regularisers of a map T (encoder or decoder): GMG, DST and Jacobian isometry.

Uscidda et al., *Disentangled Representation Learning with the Gromov-Monge Gap*, ICLR 2025
(arXiv 2407.07829), §3: a VAE is regularised by λ·R(T) where T is the encoder (reference: the data
batch) or the decoder (reference: the encoded batch) and R is

- ``"gmg"``: the Gromov-Monge gap GMG = DST − GW (eq. 3.2), via :func:`otcore.gromov_monge_gap`
  (``start`` chooses where its non-convex GW solve starts; default: the better of a⊗b and the
  map's own coupling);
- ``"dst"``: the distortion DST (eq. 3.1), via :func:`otcore.distortion`;
- ``"jacobian"``: a Jacobian isometry penalty in the style of Lee et al. (ICLR 2022), computed here
  with forward- or reverse-mode products (no OT involved).

All OT is done by ``otcore``: with its conventions the losses carry no ½, so GMG = 0 at an optimal
map (twice the paper's definitions). Costs: ``"sqeuclidean"`` (distances), ``"scaled_sqeuclidean"``
(distances up to a global scale) and ``"cosine"`` (angles, 1 − cos-sim).

For the Jacobian penalty the cost selects which isometry is asked for. With random unit probes v
in the smaller of the input and output spaces and s = ‖J v‖² (J v by forward mode when T maps to a
larger space, Jᵀ v by reverse mode otherwise):

- ``"sqeuclidean"``: strict isometry, E (s − 1)²;
- ``"scaled_sqeuclidean"``: scaled isometry (Lee et al. 2022), E (s / E s − 1)², the mean over the
  whole batch;
- ``"cosine"``: conformality (angle preservation), E (s / E_v s − 1)², the mean over the probes of
  each point, so each point may have its own scale.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from einops import rearrange

import otcore

__all__ = ["COSTS", "KINDS", "SIDES", "GeometricRegulariser", "jacobian_isometry"]

Kind = Literal["gmg", "dst", "jacobian"]
Side = Literal["encoder", "decoder"]
Cost = Literal["sqeuclidean", "scaled_sqeuclidean", "cosine"]
KINDS: tuple[str, ...] = ("gmg", "dst", "jacobian")
SIDES: tuple[str, ...] = ("encoder", "decoder")
COSTS: tuple[str, ...] = ("sqeuclidean", "scaled_sqeuclidean", "cosine")


def _flat(t: torch.Tensor) -> torch.Tensor:
    return rearrange(t, "b ... -> b (...)")


def jacobian_isometry(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    cost: Cost = "scaled_sqeuclidean",
    probes: int = 2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Jacobian isometry penalty of ``fn`` at the points ``x`` ``(B, ...)`` (see module doc).

    ``probes`` random unit directions are drawn per point. Differentiable in the parameters of
    ``fn``; returns a scalar.
    """
    if cost not in COSTS:
        raise ValueError(f"cost: expected one of {COSTS}, got {cost!r}")
    xs = x.detach().repeat_interleave(probes, dim=0)
    with torch.no_grad():
        out_shape = fn(xs[:1]).shape[1:]
    n_in, n_out = xs[0].numel(), out_shape.numel()
    if n_in <= n_out:  # forward mode: s = ‖J v‖², v in the input space
        v = torch.randn(xs.shape, generator=generator, dtype=xs.dtype).to(xs.device)
        v = v / _flat(v).norm(dim=1).view(-1, *[1] * (v.dim() - 1))
        _, jv = torch.func.jvp(fn, (xs,), (v,))
        s = _flat(jv).float().pow(2).sum(1)
    else:  # reverse mode: s = ‖Jᵀ u‖², u in the output space
        xs = xs.clone().requires_grad_(True)
        y = fn(xs)
        u = torch.randn(y.shape, generator=generator, dtype=y.dtype).to(y.device)
        u = u / _flat(u).norm(dim=1).view(-1, *[1] * (u.dim() - 1))
        (jtu,) = torch.autograd.grad(y, xs, grad_outputs=u, create_graph=True)
        s = _flat(jtu).float().pow(2).sum(1)
    if cost == "sqeuclidean":
        scale = torch.ones_like(s)
    elif cost == "scaled_sqeuclidean":
        scale = s.mean().expand_as(s)
    else:
        scale = s.view(-1, probes).mean(1).repeat_interleave(probes)
    return (s / scale - 1).pow(2).mean()


class GeometricRegulariser:
    """λ·R(T) for R ∈ {GMG, DST, Jacobian isometry} on the encoder or the decoder.

    Parameters
    ----------
    kind: ``"gmg"``, ``"dst"`` or ``"jacobian"``.
    side: ``"encoder"`` (T = posterior mean map, reference = images) or ``"decoder"``
        (T = decoder mean, reference = encoded batch).
    cost: ``"sqeuclidean"``, ``"scaled_sqeuclidean"`` or ``"cosine"``, used in both spaces.
    weight: λ ≥ 0.
    epsilon0: relative entropic regularisation of the GW solve, ε = ε0·mean(Cx)·mean(Cy)
        (GMG paper, Algorithm 1); GMG only.
    start: where the GW solve starts (``"best"``, ``"product"`` — the paper's a⊗b — or
        ``"identity"``), see :func:`otcore.gromov_monge_gap`; GMG only.
    debias: subtract the entropic self-transport terms from GW (ours, not the paper's; see
        :func:`otcore.gromov_monge_gap`); GMG only.
    detach_reference: treat the reference cost matrix Cx as a constant (no gradient through the
        reference points; the GMG brief's default).
    """

    def __init__(
        self,
        kind: Kind = "gmg",
        side: Side = "decoder",
        cost: Cost = "cosine",
        weight: float = 1.0,
        epsilon0: float = otcore.DEFAULT_EPSILON0,
        detach_reference: bool = True,
        start: otcore.gaps.Start = "best",
        debias: bool = False,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
        if side not in SIDES:
            raise ValueError(f"side: expected one of {SIDES}, got {side!r}")
        if cost not in COSTS:
            raise ValueError(f"cost: expected one of {COSTS}, got {cost!r}")
        if not weight >= 0:
            raise ValueError(f"weight: λ must be ≥ 0, got {weight}")
        if not epsilon0 > 0:
            raise ValueError(f"epsilon0: must be > 0, got {epsilon0}")
        if start not in otcore.STARTS:
            raise ValueError(f"start: expected one of {otcore.STARTS}, got {start!r}")
        self.kind, self.side, self.cost = kind, side, cost
        self.weight, self.epsilon0, self.detach_reference = weight, epsilon0, detach_reference
        self.start, self.debias = start, debias

    def __repr__(self) -> str:
        return (
            f"GeometricRegulariser(kind={self.kind!r}, side={self.side!r}, cost={self.cost!r}, "
            f"weight={self.weight}, epsilon0={self.epsilon0}, "
            f"detach_reference={self.detach_reference}, start={self.start!r}, "
            f"debias={self.debias})"
        )

    def measure(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        reference: torch.Tensor,
        image: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Unweighted R(T) on a batch: ``reference`` ``(n, ...)``, ``image = fn(reference)``.

        ``image`` may be passed when already computed (the decoder's reconstructions), saving a
        forward pass. Needs n ≥ 2 points.
        """
        return self.measure_with_logs(fn, reference, image)[0]

    def measure_with_logs(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        reference: torch.Tensor,
        image: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """:meth:`measure` and its diagnostics (detached scalars).

        Diagnostics of GMG: ``dst`` (its distortion), ``gw`` (E(P*)), ``epsilon`` (the absolute
        ε of the solve), ``fell_back``, ``from_identity`` and ``degenerate`` (1.0 or 0.0, see
        :class:`otcore.GMGParts`; a degenerate batch, e.g. a collapsed decoder, has GMG = 0
        and no gradient instead of stopping the run); of DST and the Jacobian penalty: none.
        """
        if reference.shape[0] < 2:
            raise ValueError(
                f"reference: the {self.kind} regulariser needs a batch of at least 2 points, "
                f"got {reference.shape[0]}"
            )
        if self.kind == "jacobian":
            return jacobian_isometry(fn, reference, self.cost), {}
        if image is None:
            image = fn(reference)
        x = _flat(reference)
        x = x.detach() if self.detach_reference else x
        y = _flat(image)
        if self.kind == "dst":
            return otcore.distortion(x, y, cost_x=self.cost, cost_y=self.cost), {}
        parts = otcore.gromov_monge_gap(
            x,
            y,
            cost_x=self.cost,
            epsilon0=self.epsilon0,
            start=self.start,
            debias=self.debias,
            return_parts=True,
        )
        logs = {
            "dst": parts.distortion.detach(),
            "gw": parts.gw_value.detach(),
            "epsilon": parts.epsilon.detach(),
            "fell_back": parts.fell_back.to(parts.value.dtype),
            "from_identity": parts.from_identity.to(parts.value.dtype),
            "degenerate": parts.degenerate.to(parts.value.dtype),
        }
        return parts.value, logs
