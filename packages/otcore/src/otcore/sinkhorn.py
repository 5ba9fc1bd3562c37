"""Log-domain Sinkhorn for entropic (and unbalanced) linear optimal transport.

Problem (balanced; a, b with equal mass):

    OT_ε(a, b) = min_{P ≥ 0, P1 = a, Pᵀ1 = b} ⟨P, C⟩ + ε KL(P ‖ a⊗b)

and its dual, maximised by alternating soft C-transforms (Cuturi 2013; Peyré & Cuturi 2019,
"Computational OT", Prop. 4.4 and eq. 4.30 in log form):

    f_i = −ε log Σ_j b_j exp((g_j − C_ij)/ε),     g_j = −ε log Σ_i a_i exp((f_i − C_ij)/ε).

The optimal plan is P = a⊗b · exp((f ⊕ g − C)/ε). With KL-relaxed marginals of strengths
ρ_a, ρ_b (Chizat, Peyré, Schmitzer & Vialard 2018; Séjourné et al. 2019) each update is damped
by τ = ρ/(ρ + ε) (OTT-JAX's ``tau_a``, ``tau_b`` convention), and the objective adds
ρ_a KL(P1 ‖ a) + ρ_b KL(Pᵀ1 ‖ b).

Stopping rule: after the f-update the row marginal is exact, so the L1 marginal violation
is the column violation ``Σ_j b_j |exp((g_j^old − g_j^new)/ε) − 1|``, a by-product of the
g-update (no extra pass over the cost). ``tol`` is always this L1 violation divided by the
total mass (``‖P1 − a‖₁ + ‖Pᵀ1 − b‖₁ ≤ tol·Σb``), so that it means the same at any mass.

Honest convergence: the violation is computed from potentials stored in the input's dtype,
and once max(|f|) + max(|g|) is large against ε their rounding dominates it — in float32,
C/ε ≈ 2e8 made the computed violation exactly 0 for a plan whose marginals were off by
100 %. So a check that passes is trusted only if the rounding noise of the exponent,
``u·(max|f| + max|g|)/ε`` (u the dtype's machine epsilon; measured on random problems the
computed violation was within half of it of a float64 recomputation), is ≤ ``tol``;
otherwise the violation is recomputed from the potentials in float64 (dense, balanced
problems; one pass over the cost, only then) and decides, the iterations going on (with
sparser rechecks) while it is above ``tol``. When the float64 violation has not halved over a
doubling of the iterations, or cannot be computed (KeOps, unbalanced), the run stops with
``converged=False`` and a :class:`ConvergenceWarning` naming the loss of precision. Whenever
``converged`` is True, the plan's violation recomputed in float64 from the returned
potentials is ≤ 2·tol.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import torch

from otcore._validation import as_weights, check_finite, check_positive, equal_mass
from otcore.geometry import _CLAMP, Geometry

__all__ = ["ConvergenceWarning", "SinkhornOutput", "sinkhorn"]

GradMode = Literal["envelope", "implicit", "unroll"]
# Log-weight standing for a zero weight: far below any potential/ε (a sentinel of −1e4 was
# overtaken by |f|/ε ≈ 1.6e4 at a small ε, giving the zero-weight point mass and a NaN value),
# yet finite, so that sums and differences of sentinels stay finite (exp of it is 0).
_ZERO_LOG = -1e30
NEWTON_MAX_SIZE = 256  # `newton=None`: single problems up to this max(n, m) (O(m³) per step)
NEWTON_START = 0.05  # L1 violation at a check below which Newton steps take over
NEWTON_MAX_STEPS = 30
# Newton's ridge, in units of the machine epsilon of the plan's dtype times max(Pᵀ1): the
# gradient b − Pᵀ1 carries that dtype's rounding, which a smaller ridge would amplify along the
# Hessian's near-null directions (measured on float32 GMG problems: 1 ulp stalls, 5–1000 work)
NEWTON_RIDGE = 100.0


class ConvergenceWarning(UserWarning):
    """A solver stopped before reaching ``tol`` (``max_iter``, or a loss of precision)."""


def safe_log(w: torch.Tensor) -> torch.Tensor:
    """log(w) with log(0) replaced by a large negative number; finite gradients everywhere."""
    pos = w > 0
    return torch.where(pos, torch.where(pos, w, torch.ones_like(w)).log(), _ZERO_LOG)


def entropy(w: torch.Tensor) -> torch.Tensor:
    """H(w) = −Σ w log w over the last dimension (0 log 0 = 0)."""
    return -(w * safe_log(w)).sum(-1)


@dataclass(frozen=True, eq=False)
class SinkhornOutput:
    """Result of :func:`sinkhorn`.

    Attributes:
        f: (n,) or (B, n) potential of the source.
        g: (m,) or (B, m) potential of the target. ``P = a⊗b·exp((f⊕g − C)/ε)``.
        value: () or (B,) the dual objective, equal at the optimum to
            ``⟨P, C⟩ + ε KL(P‖a⊗b)`` (+ the marginal penalties when unbalanced). Its gradient
            with respect to the geometry's inputs and the weights follows ``grad``.
        converged: True (or a (B,) bool tensor) when the L1 marginal violation, relative to
            the mass, reached ``tol`` and that measurement was above the rounding of the
            potentials (see the module docstring): the returned potentials then give a plan
            whose violation, recomputed in float64, is ≤ 2·tol.
        n_iters: number of Sinkhorn iterations run (annealing included).
        errors: (k,) or (k, B) L1 marginal violations divided by the total mass, at each
            convergence check (where a float64 recheck ran, its value).
        epsilon: () or (B,) the absolute ε solved at.
    """

    f: torch.Tensor
    g: torch.Tensor
    value: torch.Tensor
    converged: bool | torch.Tensor
    n_iters: int
    errors: torch.Tensor
    epsilon: torch.Tensor
    geom: Geometry
    a: torch.Tensor
    b: torch.Tensor
    tau_a: float = 1.0
    tau_b: float = 1.0

    # internal (B, ·) views ------------------------------------------------------------
    def _b(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.geom.batched else t.unsqueeze(0)

    def _u(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.geom.batched else t[0]

    def _log_scalings(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        eps = self.epsilon.reshape(-1)
        u = self._b(self.f) / eps[:, None] + safe_log(self._b(self.a))
        v = self._b(self.g) / eps[:, None] + safe_log(self._b(self.b))
        return eps, u, v

    def plan(self) -> torch.Tensor:
        """The dense plan ``P`` (n, m) or (B, n, m); not available on the KeOps backend."""
        eps, u, v = self._log_scalings()
        return self._u(self.geom.kernel(eps, u, v))

    def apply(self, vec: torch.Tensor, axis: int = 1) -> torch.Tensor:
        """``P @ vec`` (axis 1, vec (m,) or (m, k)) or ``Pᵀ @ vec`` (axis 0), without forming P."""
        eps, u, v = self._log_scalings()
        squeeze = vec.ndim == (1 + self.geom.batched)
        vv = vec.unsqueeze(-1) if squeeze else vec
        out = self.geom.kernel_apply(eps, u, v, self._b(vv.to(u.dtype)), axis)
        out = self._u(out)
        return out.squeeze(-1) if squeeze else out

    @property
    def marginals(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(P1, Pᵀ1): the plan's row and column sums."""
        ones_m = torch.ones(*self.g.shape, dtype=self.g.dtype, device=self.g.device)
        ones_n = torch.ones(*self.f.shape, dtype=self.f.dtype, device=self.f.device)
        return self.apply(ones_m, axis=1), self.apply(ones_n, axis=0)

    def transport(self, y: torch.Tensor | None = None) -> torch.Tensor:
        """Barycentric projection ``T(x_i) = Σ_j P_ij y_j / Σ_j P_ij``: (n, d) or (B, n, d).

        ``y`` defaults to the target points of a :class:`~otcore.PointCloud` geometry.
        """
        if y is None:
            y = getattr(self.geom, "y", None)
            if y is None:
                raise ValueError("`y` is required when the geometry is not a PointCloud.")
            y = self._u(y)
        y = y.to(self.f.dtype)
        ones = torch.ones_like(y[..., :1])
        both = self.apply(torch.cat([y, ones], dim=-1), axis=1)  # one pass: P[y, 1]
        return both[..., :-1] / both[..., -1:].clamp_min(torch.finfo(y.dtype).tiny)

    @property
    def primal_cost(self) -> torch.Tensor:
        """⟨P, C⟩, () or (B,). Gradients treat the plan as fixed."""
        eps, u, v = self._log_scalings()
        return self._u(self.geom.kernel_cost(eps, u, v))

    @property
    def ent_reg_cost(self) -> torch.Tensor:
        """⟨P, C⟩ − ε H(P) = value − ε (H(a) + H(b)) (exact for balanced problems at convergence).

        This is OTT-JAX's ``ent_reg_cost``, the quantity the Monge gap subtracts.
        """
        return self.value - self.epsilon * (entropy(self.a) + entropy(self.b))


def sinkhorn(
    geom: Geometry,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    *,
    epsilon: float | torch.Tensor,
    relative_epsilon: Literal["mean", "std"] | None = None,
    tau_a: float = 1.0,
    tau_b: float = 1.0,
    tol: float = 1e-3,
    max_iter: int = 2000,
    min_iter: int = 0,
    epsilon_scaling: float | None = 0.5,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
    check_every: int = 5,
    momentum: bool = True,
    newton: bool | None = None,
    symmetric: bool = False,
    grad: GradMode = "envelope",
    warn: bool = True,
) -> SinkhornOutput:
    """Solve entropic OT on ``geom`` with log-domain Sinkhorn iterations.

    Args:
        geom: a :class:`~otcore.Geometry` or :class:`~otcore.PointCloud`, single (n, m) or
            batched (B, n, m).
        a: (n,) or (B, n) source weights, non-negative; uniform if None.
        b: (m,) or (B, m) target weights; uniform if None. Balanced problems need equal mass
            (to a relative 1e-5).
        epsilon: entropic regularisation ε > 0, absolute, or a multiplier of the cost's
            mean or std when ``relative_epsilon`` is set (statistic under stop-gradient).
            A (B,) tensor gives one ε per batched problem.
        relative_epsilon: ``None``, ``"mean"`` or ``"std"``.
        tau_a, tau_b: marginal relaxation τ = ρ/(ρ + ε) in (0, 1]; 1 is a hard constraint.
        tol: stop when the L1 marginal violation divided by the total mass,
            (‖P1 − a‖₁ + ‖Pᵀ1 − b‖₁)/Σb, is ≤ tol (for every batched problem). Reaching it
            in the potentials' dtype counts only above their rounding noise (module
            docstring); in float32 that noise is about 1.2e-7·(max|f| + max|g|)/ε.
        max_iter: iteration cap (annealing included); ``converged=False`` and a
            :class:`ConvergenceWarning` when reached. Runs whose precision cannot reach
            ``tol`` stop earlier, with the same outcome and a warning that says so.
        min_iter: iterations to run before testing convergence.
        epsilon_scaling: ratio of the geometric ε-annealing from the cost's diameter down to
            ε (one iteration per level, then iterations at ε until ``tol``); ``None`` or 1
            disables it. Ignored with ``init``.
        init: warm start ``(f, g)`` in the same convention as the outputs.
        check_every: iterations between convergence checks (the only host synchronisation).
        momentum: adaptive over-relaxation at the target ε (ω estimated from the observed
            contraction; check iterations stay plain so that ``errors`` are exact).
        newton: finish with Newton steps on the semi-dual (balanced, dense only): once a
            check at ε finds an L1 violation ≤ 0.05, each step solves the m × m Hessian system
            of g (in float64; float32 on MPS) and re-solves f exactly, with step halving on
            the violation (Sinkhorn-Newton, Brauer et al. 2017; Tang et al. 2024,
            "Accelerating Sinkhorn with sparse Newton iterations", warm-up then Newton). A
            step that does not lower the violation hands back to Sinkhorn iterations until
            the violation has halved. Each step costs O(m³) (several soft-mins and an m × m
            Cholesky solve), so ``None`` (default) turns it on for single (unbatched) problems
            with max(n, m) ≤ 256 only, not on MPS (measured on 10-d clouds, 2 CPU threads:
            n = 128 at ε = 0.01·mean(C) 10.8 → 6.0 ms; batches of 16–256 problems ran slower
            with Newton steps). Newton steps count one each in ``n_iters`` and ``errors`` (there
            the violation of both marginals).
        symmetric: the problem is OT(α, α) (a symmetric cost, ``b`` equal to ``a``): use the
            averaged update f ← (f + T(f))/2 with g = f, one soft-min per iteration (the
            debiasing terms of :func:`~otcore.sinkhorn_divergence`).
        grad: ``"envelope"`` (default): Danskin gradient of ``value`` w.r.t. the cost (P), the
            weights (f, g), and through the cost to points; no graph through iterations.
            ``"implicit"``: f, g (and hence plan, value) differentiable by implicit
            differentiation of the optimality conditions (dense, balanced only).
            ``"unroll"``: autograd through every iteration (memory grows with iterations).
        warn: emit a :class:`ConvergenceWarning` on non-convergence (its message names a loss
            of precision, with its remedies, when that is the cause).

    Returns:
        A :class:`SinkhornOutput`.

    Example:
        >>> import torch, otcore
        >>> x, y = torch.randn(200, 2), torch.randn(150, 2) + 1
        >>> out = otcore.sinkhorn(otcore.PointCloud(x, y), epsilon=0.05, relative_epsilon="mean")
        >>> bool(out.converged), out.plan().shape
        (True, torch.Size([200, 150]))
    """
    if not isinstance(geom, Geometry):
        raise ValueError(f"`geom` must be a Geometry or PointCloud, got {type(geom).__name__}.")
    if grad not in ("envelope", "implicit", "unroll"):
        raise ValueError(f"Unknown `grad` {grad!r}; expected 'envelope', 'implicit' or 'unroll'.")
    for name, tau in (("tau_a", tau_a), ("tau_b", tau_b)):
        if not (0.0 < float(tau) <= 1.0):
            raise ValueError(f"`{name}` must be in (0, 1], got {tau!r}.")
    check_positive("tol", tol)
    if int(max_iter) < 1:
        raise ValueError(f"`max_iter` must be >= 1, got {max_iter!r}.")
    if int(check_every) < 1:
        raise ValueError(f"`check_every` must be >= 1, got {check_every!r}.")
    if epsilon_scaling is not None and not (0.0 < float(epsilon_scaling) <= 1.0):
        raise ValueError(f"`epsilon_scaling` must be in (0, 1] or None, got {epsilon_scaling!r}.")
    balanced = tau_a == 1.0 and tau_b == 1.0
    if grad == "implicit" and (not balanced or getattr(geom, "backend", "dense") != "dense"):
        raise ValueError("grad='implicit' supports balanced problems on the dense backend only.")

    B, n, m, dt, dev = geom.batch, geom.n, geom.m, geom.dtype, geom.device
    a_ = as_weights("a", a, (B, n) if geom.batched else (n,), dtype=dt, device=dev)
    b_ = as_weights("b", b, (B, m) if geom.batched else (m,), dtype=dt, device=dev)
    A = a_ if geom.batched else a_.unsqueeze(0)
    Bw = b_ if geom.batched else b_.unsqueeze(0)
    if balanced:
        ma, mb = A.detach().sum(-1), Bw.detach().sum(-1)
        if not equal_mass(ma, mb):
            raise ValueError(
                "`a` and `b` must have equal total mass (to a relative 1e-5) in balanced mode "
                "(tau_a = tau_b = 1); "
                f"got {ma.tolist()} and {mb.tolist()}. Normalise them or relax with tau < 1."
            )
    eps = _absolute_epsilon(geom, epsilon, relative_epsilon)
    if symmetric and (n != m or tau_a != tau_b or not torch.equal(A, Bw)):
        raise ValueError("`symmetric=True` needs n == m, `b` equal to `a` and tau_a == tau_b.")

    f0 = g0 = None
    if init is not None:
        f0, g0 = _check_init(init, geom)
    dense = getattr(geom, "backend", "dense") == "dense"
    newton_ok = balanced and dense and not symmetric and grad != "unroll"
    if newton is None:  # (MPS has no float64 for the Hessian solve)
        small = B == 1 and max(n, m) <= NEWTON_MAX_SIZE
        newton = newton_ok and small and dev.type != "mps"
    elif newton and not newton_ok:
        raise ValueError(
            "`newton=True` needs a balanced problem (tau_a = tau_b = 1) on the dense backend, "
            "without `symmetric` or grad='unroll'."
        )

    run_grad = grad == "unroll" and torch.is_grad_enabled()
    with torch.set_grad_enabled(run_grad):
        f, g, converged, n_iters, errors, lost = _iterate(
            geom,
            A,
            Bw,
            eps,
            tau_a,
            tau_b,
            tol,
            int(max_iter),
            int(min_iter),
            epsilon_scaling if init is None else None,
            f0,
            g0,
            int(check_every),
            momentum,
            symmetric,
            bool(newton),
            balanced,
        )
    if grad == "implicit" and torch.is_grad_enabled():
        from otcore.implicit import implicit_potentials

        f, g = implicit_potentials(geom._cost(), A, Bw, eps, f, g)
    value = _dual_value(geom, A, Bw, eps, f, g, tau_a, tau_b)

    if not bool(torch.isfinite(f).all() and torch.isfinite(g).all()):
        raise FloatingPointError(
            "Sinkhorn produced non-finite potentials; try float64 inputs or a larger `epsilon`."
        )
    if warn and not bool(converged.all()):
        last = errors[-1].max().item()
        noise = float(_rounding_noise(f, g, eps).max())
        if lost or noise > tol:
            msg = (
                f"Sinkhorn lost precision: in {str(dt).replace('torch.', '')} the rounding of "
                f"the potentials (max|f| + max|g| = {noise / torch.finfo(dt).eps:.3g} ε) "
                f"limits the relative L1 marginal violation to about {noise:.2g}, above "
                f"tol={tol:g} (last violation {last:.3g}, {n_iters} iterations). Use float64 "
                "inputs, a larger `epsilon`, or smaller costs: centre the points (a cost "
                "with a large offset, e.g. ‖x‖² + ‖y‖² − 2⟨x, y⟩ far from the origin, loses "
                "precision)."
            )
        else:
            msg = (
                f"Sinkhorn did not reach tol={tol:g} in {n_iters} iterations (last relative "
                f"L1 marginal violation {last:.3g}); increase `max_iter` or `epsilon`."
            )
        warnings.warn(msg, ConvergenceWarning, stacklevel=2)
    unb = (lambda t: t) if geom.batched else (lambda t: t[0])
    return SinkhornOutput(
        f=unb(f),
        g=unb(g),
        value=unb(value),
        converged=converged if geom.batched else bool(converged[0]),
        n_iters=n_iters,
        errors=errors if geom.batched else errors[:, 0],
        epsilon=unb(eps),
        geom=geom,
        a=a_,
        b=b_,
        tau_a=float(tau_a),
        tau_b=float(tau_b),
    )


def _absolute_epsilon(
    geom: Geometry, epsilon: float | torch.Tensor, relative: str | None
) -> torch.Tensor:
    eps = torch.as_tensor(epsilon, dtype=geom.dtype, device=geom.device).detach()
    if eps.ndim > 1 or (eps.ndim == 1 and eps.shape[0] not in (1, geom.batch)):
        raise ValueError(f"`epsilon` must be a scalar or have shape ({geom.batch},).")
    check_finite("epsilon", eps)
    if not bool((eps > 0).all()):
        raise ValueError(f"`epsilon` must be > 0, got {epsilon!r}.")
    eps = eps.expand(geom.batch).clone()
    if relative is None:
        return eps
    if relative == "mean":
        stat = geom.mean_cost()
    elif relative == "std":
        stat = geom.std_cost()
    else:
        raise ValueError(
            f"Unknown `relative_epsilon` {relative!r}; expected 'mean', 'std' or None."
        )
    eps = eps * stat.detach()
    if not bool((eps > 0).all()):
        raise ValueError(
            f"`relative_epsilon={relative!r}` gives ε = 0: the cost's {relative} is zero. "
            "Pass an absolute `epsilon` instead."
        )
    return eps


def _check_init(init: tuple[torch.Tensor, torch.Tensor], geom: Geometry):
    if not (isinstance(init, tuple | list) and len(init) == 2):
        raise ValueError("`init` must be a pair (f, g) of potentials.")
    out = []
    for name, t, size in (("init[0] (f)", init[0], geom.n), ("init[1] (g)", init[1], geom.m)):
        t = torch.as_tensor(t).detach().to(geom.dtype)
        want = (geom.batch, size) if geom.batched else (size,)
        if t.shape != torch.Size(want):
            raise ValueError(f"`{name}` must have shape {want}, got {tuple(t.shape)}.")
        check_finite(name, t)
        out.append(t if geom.batched else t.unsqueeze(0))
    return out


def _rho(tau: float, eps: torch.Tensor) -> torch.Tensor | None:
    """Marginal strength ρ = ε τ / (1 − τ) at the target ε; None for a hard constraint."""
    return None if tau == 1.0 else eps * (tau / (1.0 - tau))


def _schedule(geom: Geometry, eps: torch.Tensor, scaling: float | None) -> list[torch.Tensor]:
    """ε levels of the annealing: diam·s^k down to (excluding) ε, per problem."""
    if scaling is None or scaling >= 1.0:
        return []
    start = geom.diameter().detach()
    ratio = float((start / eps).max())  # one host sync, before the loop
    if not ratio > 1.0:
        return []
    k = math.ceil(math.log(ratio) / -math.log(scaling))
    return [torch.maximum(start * scaling**i, eps) for i in range(k)]


def _iterate(
    geom,
    A,
    Bw,
    eps,
    tau_a,
    tau_b,
    tol,
    max_iter,
    min_iter,
    scaling,
    f,
    g,
    every,
    momentum,
    symmetric=False,
    newton=False,
    balanced=True,
):
    """The Sinkhorn loop.

    Returns (f, g, converged (B,), n_iters, errors (k, B), lost): ``lost`` is True when the
    run stopped because its precision could not certify ``tol`` (see :class:`_Certifier`).
    """
    log_a, log_b = safe_log(A.detach()), safe_log(Bw.detach())
    # violations are relative to the mass: of b (= that of a when balanced; a when symmetric)
    inv_mass = 1.0 / (A if symmetric else Bw).detach().sum(-1)
    cert = _Certifier(geom, A.detach(), Bw.detach(), tol, inv_mass, exact=balanced)
    rho_a, rho_b = _rho(tau_a, eps), _rho(tau_b, eps)
    levels = _schedule(geom, eps, scaling)
    B = A.shape[0]
    # The first f-update is redone exactly (no shift, hence no exponent clamp) where the fast
    # soft-min clamped a row (``_lse_unclamped``): from a start far from the solution the clamp
    # limits each step to 60–80ε — a cost far from 0 at that ε (a constant −17 at ε = 4e-4,
    # in a GW batch whose other problem set the annealing), or a warm start from the previous,
    # very different linearised cost of a GW step at a small ε, took thousands of iterations.
    # After it, f and g are each other's soft c-transforms, which the clamp spares.
    f = torch.zeros_like(A) if f is None else f
    g = torch.zeros_like(Bw) if g is None else g
    errors: list[torch.Tensor] = []
    converged = None  # set once a check (or the end of the run) decides
    omega, it = 1.0, 0
    last = None  # the previous check's violation, for the over-relaxation estimate
    newton_below = NEWTON_START
    level = None
    while it < max_iter:
        e = levels[it] if it < len(levels) else eps
        if level is None or level[0] is not e:  # per-level constants, computed once per ε
            ta = 1.0 if rho_a is None else (rho_a / (rho_a + e))[:, None]
            tb = 1.0 if rho_b is None else (rho_b / (rho_b + e))[:, None]
            ec = e[:, None]
            level = (e, ta, tb, ec, 1.0 / ec, -ta * ec, -tb * ec)
        _, ta, tb, ec, inv, step_a, step_b = level
        at_target = it >= len(levels)
        soft_min = _lse_unclamped if it == 0 else _lse
        it += 1
        check = it == max_iter or (at_target and it >= min_iter and (it - len(levels)) % every == 0)
        # Check iterations are plain Sinkhorn steps, so that the violation read from the
        # g-update is the exact L1 marginal violation; the others are over-relaxed by omega.
        w = 1.0 if check else omega
        if symmetric:  # OT(α, α): g = f, averaged update f ← (f + T(f)) / 2
            shift = f * inv
            f_t = step_a * soft_min(geom, e, shift + log_a, 1, shift)
            f_next = g_next = 0.5 * (f + f_t)
            if check:  # P = a⊗a·exp((f⊕f − C)/ε) has both marginals a·exp((f − T(f))/ε)
                log_norm = (f - f_t / ta) / ec
                err = 2 * (A.detach() * torch.expm1((f - f_t) / ec)).abs().sum(-1) * inv_mass
        else:
            h = torch.addcmul(log_b, g, inv)
            f_t = step_a * soft_min(geom, e, h, 1, f * inv)
            if check:  # log of the f-update's normaliser, log(P1/a) of the previous plan
                log_norm = (f - f_t / ta) / ec
            f = f_next = f_t if w == 1.0 else torch.lerp(f, f_t, w)
            g_t = step_b * geom.lse(e, torch.addcmul(log_a, f, inv), axis=0, shift=g * inv)
            g_next = g_t if w == 1.0 else torch.lerp(g, g_t, w)
            if check:  # column violation of the plan (f, g): its rows are exact
                err = (Bw.detach() * torch.expm1((g - g_t) / ec)).abs().sum(-1) * inv_mass
        if check:
            # On stopping, return the potentials whose violation was just measured. A check
            # counts only if no row was far from its marginal (|log(P1/a)| < 30), so that the
            # fast soft-min's exponent clamp cannot have altered the update.
            errors.append(err)
            if not bool(torch.isfinite(err).all()) or it == max_iter:
                break
            ok = (err <= tol) & (log_norm.abs().amax(-1) < 30.0)
            if at_target and bool(ok.all()):
                # trusted only above the potentials' rounding (else rechecked in float64)
                done = cert(f, f if symmetric else g, e, ok, errors, it)
                if done is not None:
                    converged = done
                    break
            if momentum and not symmetric and last is not None:
                omega = _overrelaxation(last, err, every, omega)
            last = err
            budget = min(NEWTON_MAX_STEPS, max_iter - it)
            if newton and at_target and budget > 0 and bool((err <= newton_below).all()):
                f_next, g_next, done, steps = _newton(
                    geom, A, Bw, e, g_next, tol, errors, budget, inv_mass
                )
                it += steps
                if done is not None:
                    done = cert(f_next, g_next, e, done, errors, it)
                if done is not None:
                    converged = done
                    f, g = f_next, g_next
                    break
                # Newton stalled (far from the optimum, its model is poor): more Sinkhorn
                # iterations, and another try once they have halved the violation; the
                # over-relaxation is re-estimated from plain checks
                newton_below = 0.5 * float(errors[-1].max())
                omega, last = 1.0, None
        f, g = f_next, g_next
    if converged is None:  # stopped at max_iter (or a non-finite violation)
        converged = torch.zeros(B, dtype=torch.bool, device=A.device)
        if it >= len(levels):
            last = errors[-1]
            ok = torch.isfinite(last) & (last <= tol)
            if bool(ok.any()):
                converged = cert(f, f if symmetric else g, eps, ok, errors, it, final=True)
    return f, g, converged, it, torch.stack(errors), cert.lost


def _lse(geom, eps, h, axis, shift):
    return geom.lse(eps, h, axis, shift=shift)


def _lse_unclamped(geom, eps, h, axis, shift):
    """``geom.lse(eps, h, axis, shift)``, recomputed without the shift (exactly) when the fast
    dense soft-min clamped some row's exponents: its log-sum before the shift is removed is
    then ≥ hi − 1 (an entry clamped from above) or ≤ lo + log(size) + 1 (all clamped from
    below). One host synchronisation; used on the first iteration only."""
    out = geom.lse(eps, h, axis, shift=shift)
    if getattr(geom, "backend", "dense") != "dense":  # KeOps reductions are exact
        return out
    lo, hi = _CLAMP[out.dtype]
    raw = out + shift
    if bool(((raw > hi - 1.0) | (raw < lo + math.log(h.shape[-1]) + 1.0)).any()):
        return geom.lse(eps, h, axis)
    return out


def _rounding_noise(f: torch.Tensor, g: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """u·(max|f| + max|g|)/ε per problem (B,): the rounding of the plan's exponent
    (f_i + g_j − C_ij)/ε on its support (there |C_ij| ≲ |f_i| + |g_j|), u the machine
    epsilon of the potentials' dtype. A violation computed in that dtype is uncertain by
    about this much (measured: within half of it of a float64 recomputation)."""
    u = torch.finfo(f.dtype).eps
    return u * (f.detach().abs().amax(-1) + g.detach().abs().amax(-1)) / eps


class _Certifier:
    """Decides whether a violation measured in the potentials' dtype proves convergence.

    A problem whose check passed (``ok``) is converged if the rounding noise of its potentials
    (:func:`_rounding_noise`) is ≤ tol. Otherwise its violation is recomputed in float64 from
    the potentials (dense, balanced problems: one pass over the cost) and that decides; the
    recomputed value replaces the last entry of ``errors``. While it fails, the iterations go
    on, rechecked at most every quarter of the iterations since the first recheck (so that
    rechecks stay a small share of the work), until the float64 violation has not halved
    over as many iterations as it took to reach its last halving (at least ``_FLOOR_WINDOW``):
    precision is then the limit, the run stops and ``lost`` is set. Where no recomputation is
    possible (KeOps, unbalanced) an uncertifiable check stops the run at once, ``lost`` set.
    """

    _FLOOR_WINDOW = 100

    def __init__(self, geom, A, Bw, tol, inv_mass, exact):
        self.geom, self.A, self.Bw, self.tol, self.inv_mass = geom, A, Bw, tol, inv_mass
        self.exact = exact and getattr(geom, "backend", "dense") == "dense"
        self.lost = False
        self._first: int | None = None  # iteration of the first float64 recheck
        self._next = 0  # no recheck before this iteration
        self._ref: tuple[int, float] | None = None  # (iteration, violation) at the last halving

    def __call__(self, f, g, eps, ok, errors, it, final=False) -> torch.Tensor | None:
        """Per-problem convergence (B,) of the potentials (f, g), whose violation is
        ``errors[-1]``, at iteration ``it``; None: not decided, iterate on (never when
        ``final``)."""
        need = ok & (_rounding_noise(f, g, eps) > self.tol)
        if not bool(need.any()):  # the only host sync on the common path, once per run
            return ok
        if not self.exact:
            self.lost = True
            return ok & ~need
        if not final and it < self._next:
            return None
        exact = _violation64(self.geom, self.A, self.Bw, eps, f, g, self.inv_mass)
        errors[-1] = torch.where(need, exact.to(errors[-1].dtype), errors[-1])
        good = ok & (~need | (exact <= self.tol))
        failing = need & ~good
        if not bool(failing.any()):
            return good
        if final:
            self.lost = True
            return good
        worst = float(exact[failing].max())
        if self._first is None:
            self._first = it
        if self._ref is None or worst <= 0.5 * self._ref[1]:
            self._ref = (it, worst)
        elif it - self._ref[0] >= max(self._FLOOR_WINDOW, self._ref[0]):
            self.lost = True  # no halving over a doubling of the iterations: the floor
            return good
        self._next = it + (it - self._first) // 4
        return None


def _violation64(geom, A, Bw, eps, f, g, inv_mass) -> torch.Tensor:
    """‖P1 − a‖₁ + ‖Pᵀ1 − b‖₁ relative to the mass, (B,), with P = a⊗b·exp((f ⊕ g − C)/ε)
    computed in float64 from the given potentials and the geometry's (dense) cost, by blocks
    of rows (on the CPU for MPS tensors, which have no float64)."""
    C = geom._cost().detach()
    dev = C.device if C.device.type != "mps" else torch.device("cpu")
    d64 = torch.float64
    C = C.to(dev)
    a, b = A.to(dev, d64), Bw.to(dev, d64)
    e = eps.to(dev, d64)[:, None]
    u = f.detach().to(dev, d64) / e + a.log()  # log 0 = −inf: zero weights carry no mass
    v = g.detach().to(dev, d64) / e + b.log()
    n = C.shape[1]
    step = max(1, (1 << 22) // max(1, C.shape[0] * C.shape[2]))
    rows, cols = [], torch.zeros_like(b)
    for i in range(0, n, step):
        P = torch.exp(
            u[:, i : i + step, None] + v[:, None, :] - C[:, i : i + step].to(d64) / e[..., None]
        )
        rows.append(P.sum(2))
        cols += P.sum(1)
    viol = (torch.cat(rows, 1) - a).abs().sum(-1) + (cols - b).abs().sum(-1)
    return (viol * inv_mass.to(dev, d64)).to(A.device)


def _newton(geom, A, Bw, eps, g, tol, errors, max_steps, inv_mass):
    """Newton steps on the semi-dual g ↦ ⟨a, f(g)⟩ + ⟨b, g⟩, f(g) the exact f-update.

    Its gradient is b − Pᵀ1 and its Hessian −(diag(Pᵀ1) − Pᵀ diag(1/a) P)/ε (rows exact, so
    P1 = a); the Hessian's null direction 1 (g + c, f − c give the same plan) is removed by
    adding q qᵀ/Σq. diag(q) − Pᵀ diag(1/a) P is positive semi-definite (Cauchy-Schwarz on each
    row of P), so with that term and a small ridge (``NEWTON_RIDGE``) it is solved by Cholesky.
    Each step halves its length until the L1 violation of both marginals drops (at most 3
    halvings). Appends each measured violation (relative to the mass) to ``errors``.

    Returns (f, g, converged (B,) or None, steps): ``converged`` is None when a step failed or
    the violation stalled before ``tol``, with (f, g) the last accepted potentials.
    """
    ec = eps[:, None]
    log_a, log_b = safe_log(A), safe_log(Bw)

    def f_of(g):
        return -ec * geom.lse(eps, torch.addcmul(log_b, g, 1.0 / ec), axis=1)

    def violation(f, g):
        P = geom.kernel(eps, f / ec + log_a, g / ec + log_b)
        q = P.sum(1)
        return P, q, ((P.sum(2) - A).abs().sum(-1) + (q - Bw).abs().sum(-1)) * inv_mass

    f = f_of(g)
    P, q, err = violation(f, g)
    errors.append(err)
    steps = 1
    hdt = torch.float32 if A.device.type == "mps" else torch.float64
    while steps < max_steps:
        active = err > tol  # converged problems of a batch keep their potentials
        if not bool(active.any()):
            return f, g, torch.ones_like(err, dtype=torch.bool), steps
        # sums of P taken in hdt (= a, q up to the rounding of P's dtype) keep M semi-definite
        Ph = P.to(hdt)
        qh, rh = Ph.sum(1), Ph.sum(2, keepdim=True)
        inv_r = torch.where(rh > 0, 1.0 / rh.clamp_min(torch.finfo(hdt).tiny), 0.0)
        M = torch.diag_embed(qh) - Ph.transpose(1, 2) @ (Ph * inv_r)
        M = M + qh[:, :, None] * qh[:, None, :] / qh.sum(-1)[:, None, None]
        ridge = NEWTON_RIDGE * torch.finfo(P.dtype).eps
        M.diagonal(dim1=1, dim2=2).add_(ridge * qh.amax(-1, keepdim=True))
        L, info = torch.linalg.cholesky_ex(M)  # M is positive definite (see above)
        dg = torch.cholesky_solve((ec * (Bw - q)).to(hdt).unsqueeze(-1), L)[..., 0]
        # one host check for a failed factorisation or a non-finite step (NaN in M ends here)
        if bool(((info != 0) & active).any() | ~torch.isfinite(dg).all()):
            return f, g, None, steps
        dg = dg.to(g.dtype) * active[:, None]
        step = torch.ones_like(err)[:, None]
        for _ in range(4):  # step halving, per problem, on the violation
            g2 = g + step * dg
            f2 = f_of(g2)
            P2, q2, err2 = violation(f2, g2)
            better = (err2 < err) & active
            if bool((better | ~active).all()):
                break
            step = torch.where(better[:, None], step, 0.5 * step)
        if not bool(better.any()):
            return f, g, None, steps
        keep = better[:, None]
        f, g = torch.where(keep, f2, f), torch.where(keep, g2, g)
        P = torch.where(keep[..., None], P2, P)
        q, err = torch.where(keep, q2, q), torch.where(better, err2, err)
        errors.append(err)
        steps += 1
        if not bool((better | ~active).all()):  # no progress somewhere: back to Sinkhorn
            return f, g, None, steps
    done = err <= tol
    return f, g, (done if bool(done.all()) else None), steps


def _overrelaxation(prev: torch.Tensor, err: torch.Tensor, every: int, omega: float) -> float:
    """Adaptive over-relaxation factor (Thibault et al. 2017; Lehmann et al. 2021, Thm. 1).

    With r the per-iteration contraction estimated from two checks, ω = 2 / (1 + √(1 − r))
    (the theorem's r is the *plain* iteration's). Sinkhorn's contraction often slows down after
    a fast transient, so, as a heuristic, ω is re-estimated at every check from the observed
    (already over-relaxed) contraction and only ever raised (capped at 1.9); it drops back to
    1 as soon as the violation grows. Measured on 64-point GMG problems and 300-point Sinkhorn
    problems: 12–16% fewer iterations than estimating ω once from the first two checks.
    """
    ratio = float((err / prev.clamp_min(torch.finfo(err.dtype).tiny)).detach().max())
    if not 0.0 < ratio < 1.0:
        return 1.0
    r = min(ratio ** (1.0 / every), 0.99)
    return max(omega, min(2.0 / (1.0 + math.sqrt(1.0 - r)), 1.9))


def _dual_value(geom, A, Bw, eps, f, g, tau_a, tau_b) -> torch.Tensor:
    """Dual objective D(f, g) with (f, g) as given; differentiable in (C, a, b).

    D = φ_a(f) + φ_b(g) − ε (Σ_ij P_ij − Σa·Σb), with φ(f) = ⟨a, f⟩ for a hard marginal and
    −ρ ⟨a, exp(−f/ρ) − 1⟩ for a KL-relaxed one. The plan's mass ΣP is computed through the
    soft-min with the live cost, so the gradient w.r.t. C is exactly P (Danskin).
    """
    ec = eps[:, None]
    lse = geom.lse(eps, g / ec + safe_log(Bw), axis=1)
    mass = (A * torch.exp(f / ec + lse)).sum(-1)

    def phi(w, pot, tau):
        if tau == 1.0:
            return (w * pot).sum(-1)
        rho = _rho(tau, eps)[:, None]
        return -(rho * w * torch.expm1(-pot / rho)).sum(-1)

    return phi(A, f, tau_a) + phi(Bw, g, tau_b) - eps * (mass - A.sum(-1) * Bw.sum(-1))
