"""Map regularisers built on OT: the Monge gap, the distortion and the Gromov-Monge gap.

For a map T and reference points x_1..x_n (uniform weights), with y_i = T(x_i):

* Monge gap (Uscidda & Cuturi 2023; OTT-JAX ``monge_gap_from_samples``):
  MG = (1/n) Σ_i c(x_i, y_i) − W_{c,ε}(x, y), with W_{c,ε} the ``ent_reg_cost`` ⟨P,C⟩ − εH(P)
  of :func:`otcore.sinkhorn`. It is ≥ ε log n (the identity coupling is feasible) and close to
  that bias when T is c-optimal (Uscidda & Cuturi 2023, §3).
* Distortion (Uscidda, Eyring et al. 2025, "Disentangled Representation Learning with the
  Gromov-Monge Gap", ICLR 2025, §3): DST = (1/n²) Σ_ij (Cx_ij − Cy_ij)²
  with Cx_ij = c_X(x_i, x_j), Cy_ij = c_Y(y_i, y_j).
* Gromov-Monge gap (same paper, §3): GMG = DST − GW, with GW the
  quadratic objective E(P*) = Σ (Cx_ik − Cy_jl)² P*_ij P*_kl at the entropic GW coupling P*
  of :func:`otcore.gromov_wasserstein` at ε = ε0·mean(Cx)·mean(Cy) (stop-gradient; the
  paper's Algorithm 1 with stat = mean), P* frozen (envelope/Danskin gradient, as OTT-JAX).

Convention: no ½ in DST nor in GW (square loss (a − b)²), so our DST and GMG are **twice** the
paper's definitions, and GMG = 0 at a Gromov-Monge-optimal map.

Costs for DST/GMG: ``"sqeuclidean"`` ‖u − v‖², ``"scaled_sqeuclidean"`` (each n × n matrix
divided by its own mean under stop-gradient — the scaled squared-Euclidean cost of the same
paper, §3; a cloud of identical points keeps its zero matrix), ``"cosine"``
1 − cos(u, v) (the gaps are unchanged by the constant 1 − ·, and the non-negative form keeps
ε > 0), or any :class:`~otcore.Cost` / cost name.

Degenerate problems: when one of the two n × n costs is constant (n = 1, all points of a
cloud identical — a collapsed decoder —, or any constant matrix), every coupling has
E(P) = DST, so GW = DST and GMG = 0 exactly; such a problem gets GMG = 0 with a zero
gradient (``GMGParts.degenerate``), without a GW solve of its own (its ε, a mean cost
being 0, would be 0), and the other problems of a batch are solved as usual.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from otcore._validation import as_points, check_positive
from otcore.costs import Cost, get_cost
from otcore.geometry import Geometry, PointCloud
from otcore.gromov import GWOutput, gromov_wasserstein
from otcore.sinkhorn import SinkhornOutput, sinkhorn

__all__ = [
    "STARTS",
    "GMGParts",
    "distortion",
    "gromov_monge_gap",
    "monge_gap",
    "pairwise_cost",
]

#: Default ε0 of :func:`gromov_monge_gap`. The GMG paper (Uscidda et al., ICLR 2025) does not
#: publish its ε0; 0.01 is the largest value of the grid {0.003, …, 1} whose estimate on trained
#: VAEs stays within 2 % of DST below 0 and whose toy fit does not diverge
#: (``docs/EXPERIMENTS_GMG.md`` §2).
DEFAULT_EPSILON0 = 0.01

_SCALED = "scaled_sqeuclidean"


def _points(name: str, z: torch.Tensor) -> torch.Tensor:
    z = as_points(name, z)
    if z.ndim > 3:
        raise ValueError(
            f"`{name}` must be (n, d) or (B, n, d); got shape {tuple(z.shape)}. Flatten each "
            "point first (e.g. images with `x.flatten(1)`)."
        )
    return z


def _pair(x, y, cost_x, cost_y):
    x = _points("x", x)
    y = _points("y", y(x) if callable(y) else y)
    if x.ndim != y.ndim or x.shape[:-1] != y.shape[:-1]:
        raise ValueError(
            "`x` and `y` must hold the same points (n, ·) or (B, n, ·): y_i is the image of "
            f"x_i; got shapes {tuple(x.shape)} and {tuple(y.shape)}."
        )
    dtype = torch.promote_types(x.dtype, y.dtype)
    return x.to(dtype), y.to(dtype), cost_x, cost_x if cost_y is None else cost_y


def pairwise_cost(z: torch.Tensor, cost: str | Cost = "sqeuclidean") -> torch.Tensor:
    """The within-cloud cost matrix C_ij = c(z_i, z_j): (n, n) or (B, n, n).

    ``cost`` is a :class:`~otcore.Cost`, a cost name, or ``"scaled_sqeuclidean"``
    (‖z_i − z_j‖² divided by its mean over the (n, n) matrix, mean under stop-gradient; the
    zero matrix of identical points, or of n = 1, stays zero).
    """
    if isinstance(cost, str) and cost.lower() == _SCALED:
        C = get_cost("sqeuclidean").pairwise(z, z)
        mean = C.detach().mean((-1, -2), keepdim=True)
        return C / torch.where(mean > 0, mean, torch.ones_like(mean))
    try:
        c = get_cost(cost)
    except ValueError:
        raise ValueError(
            f"Unknown cost {cost!r}; expected 'sqeuclidean', 'scaled_sqeuclidean', 'cosine', "
            "another cost name or a Cost instance."
        ) from None
    return c.pairwise(z, z)


def distortion(
    x: torch.Tensor,
    y: torch.Tensor | Callable[[torch.Tensor], torch.Tensor],
    cost_x: str | Cost = "sqeuclidean",
    cost_y: str | Cost | None = None,
) -> torch.Tensor:
    """Distortion DST = (1/n²) Σ_ij (Cx_ij − Cy_ij)² of the map x_i ↦ y_i (no ½).

    Args:
        x: (n, dx) or (B, n, dx) reference points.
        y: (n, dy) or (B, n, dy) their images, or the map itself (called on ``x``).
        cost_x, cost_y: costs within each space (``cost_y=None`` means ``cost_x``); see
            :func:`pairwise_cost`.

    Returns:
        () or (B,) tensor, differentiable in x and y. Twice the paper's DST (gmg.md §1.2).

    Example:
        >>> import torch, otcore
        >>> x = torch.randn(8, 3)
        >>> bool(otcore.distortion(x, x + 1.0) < 1e-8)  # a translation is an isometry
        True
    """
    x, y, cx, cy = _pair(x, y, cost_x, cost_y)
    return ((pairwise_cost(x, cx) - pairwise_cost(y, cy)) ** 2).mean((-1, -2))


def monge_gap(
    x: torch.Tensor,
    y: torch.Tensor | Callable[[torch.Tensor], torch.Tensor],
    cost: str | Cost = "sqeuclidean",
    *,
    epsilon: float = 0.05,
    relative_epsilon: Literal["mean", "std"] | None = "mean",
    return_output: bool = False,
    **sinkhorn_kwargs,
) -> torch.Tensor | tuple[torch.Tensor, SinkhornOutput]:
    """Monge gap MG = (1/n) Σ_i c(x_i, y_i) − (⟨P,C⟩ − εH(P)) of the map x_i ↦ y_i.

    Uscidda & Cuturi (2023), "The Monge Gap", eq. (4) with the entropic estimator (OTT-JAX
    ``monge_gap_from_samples``). Uniform weights; ≥ 0 (at least ε log n); ≈ ε log n when the
    map is c-optimal (e.g. the gradient of a convex function for ‖·‖²).

    Args:
        x: (n, d) or (B, n, d) reference points.
        y: their images (same shape), or the map itself (called on ``x``).
        cost: ground cost c (default ‖x − y‖²).
        epsilon, relative_epsilon: ε of the entropic problem, absolute or relative to the
            mean/std of the cost matrix (default 0.05 × mean, statistic under stop-gradient).
        return_output: also return the :class:`~otcore.SinkhornOutput`.
        **sinkhorn_kwargs: passed to :func:`~otcore.sinkhorn` (tol, max_iter, backend via
            a PointCloud is "auto").

    Returns:
        () or (B,) gap, differentiable in x and y (envelope gradient of the OT term).

    Example:
        >>> import torch, otcore
        >>> x = torch.randn(256, 2, dtype=torch.float64)
        >>> A = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)  # SPD: optimal
        >>> R = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)  # a rotation: not
        >>> gap = lambda y: otcore.monge_gap(x, y, epsilon=0.002)
        >>> bool(gap(x @ A) < 0.1 * gap(x @ R))
        True
    """
    x, y, c, _ = _pair(x, y, cost, None)
    c = get_cost(c)
    out = sinkhorn(
        PointCloud(x, y, cost=c),
        epsilon=epsilon,
        relative_epsilon=relative_epsilon,
        **sinkhorn_kwargs,
    )
    gap = c.elementwise(x, y).mean(-1) - out.ent_reg_cost
    return (gap, out) if return_output else gap


#: The starts of the GW solve inside :func:`gromov_monge_gap` (see its docstring).
STARTS: tuple[str, ...] = ("best", "product", "identity")
Start = Literal["best", "product", "identity"]


@dataclass(frozen=True, eq=False)
class GMGParts:
    """The Gromov-Monge gap and its parts (for logging).

    Attributes:
        value: () or (B,) GMG = distortion − gw_value (≤ distortion; ≥ −ε log n).
        distortion: () or (B,) DST (no ½).
        gw_value: () or (B,) E(P*), the quadratic GW objective at the frozen coupling (with
            ``debias``: the debiased S_ε).
        plan: (n, n) or (B, n, n) the coupling P* used (detached).
        gw: the :class:`~otcore.GWOutput` of the solve. With ``start="best"`` the two solves
            run as one batch: its per-problem fields have a leading axis of 2 (index 0: the
            solve started from a⊗b, index 1: from (1/n)·I), before any batch axis of x; with
            ``debias`` two more, the self problems (x, x) and (y, y).
        epsilon: () or (B,) the absolute ε = ε0·mean(Cx)·mean(Cy) of the solve.
        from_identity: () or (B,) bool, True where the coupling came from the solve started at
            the map's own coupling (1/n)·I (always with ``start="identity"``, never with
            ``"product"``).
        fell_back: () or (B,) bool, True where every solve ended at a larger regularised cost
            than the map's own coupling (1/n)·I and that coupling was used (GMG = 0, zero
            gradient). Never with ``start="product"``.
        degenerate: () or (B,) bool, True where Cx or Cy is constant (n = 1, identical
            points): every coupling is optimal, GW = DST, and GMG = 0 with a zero gradient;
            ``plan`` is then (1/n)·I and the entries of ``gw`` for that problem are those of
            a stand-in solve on zero costs (at ε = 1; ``epsilon`` keeps ε0·mean(Cx)·mean(Cy)).
            ``from_identity`` and ``fell_back`` are False there.
    """

    value: torch.Tensor
    distortion: torch.Tensor
    gw_value: torch.Tensor
    plan: torch.Tensor
    gw: GWOutput
    epsilon: torch.Tensor
    from_identity: torch.Tensor
    fell_back: torch.Tensor
    degenerate: torch.Tensor


def gromov_monge_gap(
    x: torch.Tensor,
    y: torch.Tensor | Callable[[torch.Tensor], torch.Tensor],
    cost_x: str | Cost = "sqeuclidean",
    cost_y: str | Cost | None = None,
    *,
    epsilon0: float = DEFAULT_EPSILON0,
    start: Start = "best",
    debias: bool = False,
    detach_reference: bool = False,
    return_parts: bool = False,
    **gw_kwargs,
) -> torch.Tensor | GMGParts:
    """Gromov-Monge gap GMG = DST − GW of the map x_i ↦ y_i (no ½; twice the paper's value).

    Uscidda, Eyring, Roth, Theis, Akata & Cuturi (ICLR 2025), GMG_r(T) = DST_r(T) −
    GW(r, T♯r) (§3), estimated on a batch as in their Algorithm 1: Cx, Cy are the
    n × n costs of the reference points and of their images; the entropic GW coupling P* is
    solved at ε = ε0·mean(Cx)·mean(Cy) (stop-gradient, stat = mean) and frozen, so gradients
    are the envelope (Danskin) gradient of E(P*).

    The GW problem is not convex, so P* depends on where the mirror descent starts:

    * ``"product"``: from a⊗b, the paper's estimator (OTT-JAX's default start). It can end
      in a poor stationary point of a map whose own coupling is nearly optimal (a trained
      decoder): then E(P*) > DST and GMG < 0 well below the entropic bias −ε log n.
    * ``"identity"``: from the map's own coupling (1/n)·I, whose objective is DST; the
      descent may stay in that basin when a far better coupling exists (a shuffled
      isometry, GW = 0, can report GMG ≈ DST/2), underestimating the gap.
    * ``"best"`` (default; ours, not the paper's): both solves, run as one batch, and per
      problem the coupling with the lower regularised objective E + ε KL(P ‖ a⊗b): the
      better estimate of the entropic GW problem the paper defines.

    A problem whose Cx or Cy is constant (n = 1, a cloud of identical points: a collapsed
    decoder) is degenerate: GW = DST for every coupling, so GMG = 0, returned with a zero
    gradient and without solving it (``GMGParts.degenerate``); the other problems of a batch
    are unaffected.

    With ``"identity"`` and ``"best"``, should every solve end above the regularised cost
    of (1/n)·I itself (DST + ε log n), that coupling is kept (``fell_back``: GMG = 0, zero
    gradient). Bounds, uniform weights: with ``"identity"`` or ``"best"``, −ε log n ≤ GMG
    ≤ DST (the chosen P* has E(P*) + ε KL ≤ DST + ε log n and E ≥ 0), and the regularised
    objective ``"best"`` keeps is no larger than either single start's; with ``"product"``
    only GMG ≤ DST holds. ``"best"`` doubles the work of one solve (batched, so less than
    twice the time).

    ε0 matters: with our (no-½) convention the entropic coupling is only sharp for small ε0
    (``docs/EXPERIMENTS_GMG.md`` measures ε0 ∈ [0.003, 1]).

    Args:
        x: (n, dx) or (B, n, dx) reference points (flatten images first: (n, C·H·W)).
        y: (n, dy) or (B, n, dy) their images under the map, or the map (called on ``x``).
        cost_x: cost within the reference space: ``"sqeuclidean"``, ``"scaled_sqeuclidean"``,
            ``"cosine"`` or any :class:`~otcore.Cost`; ``cost_y=None`` uses the same.
        epsilon0: ε0 > 0 of ε = ε0·mean(Cx)·mean(Cy) (default :data:`DEFAULT_EPSILON0`).
        start: ``"best"``, ``"product"`` or ``"identity"``, as above.
        debias: subtract the entropic self-transport terms (ours, not the paper's), as the
            Sinkhorn divergence debiases OT: GW is replaced by
            S_ε = GW_ε(x, y) − ½ GW_ε(x, x) − ½ GW_ε(y, y), each the regularised objective
            E + ε KL, the self terms at their own ε0·mean(C)² (ε0·mean(Cx)·mean(Cy) is their
            geometric mean; all three coincide for an isometry), solved from (1/n)·I and
            capped at ε log n. An isometry then has GMG = 0 at any ε, not only up to
            −ε log n, so a larger ε0 (a smoother, cheaper solve) no longer biases the value or
            its gradient; the bound GMG ≤ DST no longer holds. Costs two more problems in the
            same batch.
        detach_reference: stop gradients into ``x`` (the reference treated as a fixed sample).
        return_parts: return a :class:`GMGParts` (value, distortion, gw_value, plan, ...).
        **gw_kwargs: passed to :func:`~otcore.gromov_wasserstein` (tol, max_iter, ...; here
            ``min_iter=2`` and ``warn=False`` unless given). ``init`` is set by ``start``, and
            ``epsilon`` / ``relative_epsilon`` by ``epsilon0`` (a TypeError otherwise).

    Returns:
        () or (B,) tensor (or :class:`GMGParts`), differentiable in y (and x unless detached).

    Example:
        >>> import torch, otcore
        >>> x = torch.randn(64, 10, dtype=torch.float64)
        >>> Q = torch.linalg.qr(torch.randn(10, 10, dtype=torch.float64))[0]
        >>> iso = otcore.gromov_monge_gap(x, x @ Q)  # an isometry: GMG ≈ 0 (≥ −ε log n)
        >>> y = (x @ Q)[torch.randperm(64)]  # shuffled: GW = 0 too, so GMG = DST
        >>> gap, dst = otcore.gromov_monge_gap(x, y), otcore.distortion(x, y)
        >>> bool(abs(iso) < 1e-4 * gap), bool(gap > 0.95 * dst)
        (True, True)
    """
    if start not in STARTS:
        raise ValueError(f"`start` must be one of {STARTS}, got {start!r}.")
    if "init" in gw_kwargs:
        raise TypeError("`init` is set by `start` ('best', 'product' or 'identity').")
    for name in ("epsilon", "relative_epsilon"):
        if name in gw_kwargs:
            raise TypeError(
                f"`{name}` is set by `epsilon0` (ε = epsilon0·mean(Cx)·mean(Cy)); pass "
                "`epsilon0` instead."
            )
    check_positive("epsilon0", epsilon0)
    x, y, cx, cy = _pair(x, y, cost_x, cost_y)
    if detach_reference:
        x = x.detach()
    Cx, Cy = pairwise_cost(x, cx), pairwise_cost(y, cy)
    dst = ((Cx - Cy) ** 2).mean((-1, -2))
    gw_kwargs.setdefault("warn", False)
    gw_kwargs.setdefault("min_iter", 2)
    n = x.shape[-2]
    eye = torch.eye(n, dtype=Cx.dtype, device=Cx.device) / n
    product = torch.full_like(eye, 1.0 / n**2)
    batch = Cx.shape[:-2]
    # Degenerate problems (a constant Cx or Cy: GW = DST for every coupling) are solved as a
    # stand-in on zero costs at ε = 1, which converges at once: GMG = 0 is set below.
    cx_d, cy_d = Cx.detach(), Cy.detach()
    degenerate = _constant(cx_d) | _constant(cy_d)
    mean_x, mean_y = cx_d.mean((-1, -2)), cy_d.mean((-1, -2))
    eps = torch.as_tensor(epsilon0, dtype=Cx.dtype, device=Cx.device) * (mean_x * mean_y)
    bad = ~degenerate & ~(torch.isfinite(eps) & (eps > 0))
    if bool(bad.any()):
        raise ValueError(
            f"ε = `epsilon0`·mean(Cx)·mean(Cy) is {eps[bad].flatten()[0].item():.3g}: the "
            "Gromov-Monge gap needs `cost_x` and `cost_y` with positive means (e.g. "
            "'sqeuclidean', 'scaled_sqeuclidean' or 'cosine')."
        )
    eps_solve = torch.where(degenerate, torch.ones_like(eps), eps)
    if bool(degenerate.any()):
        stand_in = degenerate[..., None, None]
        cx_solve = torch.where(stand_in, torch.zeros_like(Cx), Cx)
        cy_solve = torch.where(stand_in, torch.zeros_like(Cy), Cy)
    else:
        cx_solve, cy_solve = Cx, Cy
    starts = {"best": (product, eye), "product": (product,), "identity": (eye,)}[start]
    k = len(starts)
    # the k solves (and any batch of x) as one batch: problem index = start · B + b; with
    # ``debias`` two more, GW_ε(x, x) and GW_ε(y, y), both from (1/n)·I
    pairs = [(cx_solve, cy_solve)] * k
    eps_all = [eps_solve] * k
    inits = list(starts)
    if debias:  # each self problem at its own ε0·mean(C)² (scale-invariant; = ε for an isometry)
        pairs += [(cx_solve, cx_solve), (cy_solve, cy_solve)]
        eps_all += [
            torch.where(degenerate, torch.ones_like(eps), epsilon0 * m * m)
            for m in (mean_x, mean_y)
        ]
        inits += [eye, eye]
    init = torch.stack([s.expand(*batch, n, n) for s in inits]).reshape(-1, n, n)
    gw = gromov_wasserstein(
        Geometry(torch.stack([c1 for c1, _ in pairs]).reshape(-1, n, n)),
        Geometry(torch.stack([c2 for _, c2 in pairs]).reshape(-1, n, n)),
        epsilon=torch.stack([e.expand(batch) for e in eps_all]).reshape(-1),
        init=init,
        **gw_kwargs,
    )
    per = (len(pairs), *batch)
    regs = gw.reg_value.detach().view(per)
    # E(P*) (the paper's estimate), or with ``debias`` the regularised values E + ε KL
    values = (gw.reg_value if debias else gw.value).view(per)
    pick = regs[:k].argmin(0)  # index into ``starts``
    gw_value = values[:k].gather(0, pick.unsqueeze(0)).squeeze(0)
    plan = None
    if return_parts:
        plans = gw.plan().detach().view(*per, n, n)
        idx = pick[None, ..., None, None].expand(1, *batch, n, n)
        plan = plans[:k].gather(0, idx).squeeze(0)
    from_identity = (
        (pick == k - 1) if start != "product" else torch.zeros_like(pick, dtype=torch.bool)
    )
    fell_back = torch.zeros_like(from_identity)
    bias = eps * math.log(n)  # ε KL((1/n)·I ‖ a⊗b)
    if start != "product":
        # Mirror descent is not monotone: if every solve ends at a coupling whose regularised
        # cost E + ε KL exceeds that of the map's own coupling (DST + ε log n), that
        # coupling is the better solution of the entropic problem (GMG = 0, zero gradient).
        best_reg = regs[:k].gather(0, pick.unsqueeze(0)).squeeze(0)
        fell_back = (best_reg > dst.detach() + bias) & ~degenerate
    from_identity = from_identity & ~degenerate
    # the map's own coupling (1/n)·I: E = DST, E + ε KL = DST + ε log n (zero gradient in GW)
    own = fell_back | degenerate
    if bool(own.any()):
        gw_value = torch.where(own, dst + bias if debias else dst, gw_value)
        if plan is not None:
            plan = torch.where(own[..., None, None], eye, plan)
    if debias:  # the self terms, each no larger than its identity coupling's ε log n
        self_xx, self_yy = (
            torch.minimum(values[k + i], eps_all[k + i] * math.log(n)) for i in (0, 1)
        )
        gw_value = gw_value - 0.5 * (self_xx + self_yy)
        gw_value = torch.where(degenerate, dst, gw_value)  # GMG = 0 there, as documented
    value = dst - gw_value
    if not return_parts:
        return value
    return GMGParts(
        value=value,
        distortion=dst,
        gw_value=gw_value,
        plan=plan,
        gw=gw,
        epsilon=eps,
        from_identity=from_identity,
        fell_back=fell_back,
        degenerate=degenerate,
    )


def _constant(C: torch.Tensor) -> torch.Tensor:
    """(…,) bool: the (…, n, n) matrix has a single value (n = 1, identical points, …)."""
    return C.amax((-1, -2)) == C.amin((-1, -2))
