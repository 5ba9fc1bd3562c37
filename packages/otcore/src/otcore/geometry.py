"""Geometries: what the cost between two measures' supports is, and the one soft-min on it.

A geometry holds a cost matrix, given densely (:class:`Geometry`) or implied by two point
clouds and a ground cost (:class:`PointCloud`, dense or KeOps-symbolic). Every solver in otcore
talks to a geometry through a single primitive, the log-sum-exp kernel reduction

    lse(ε, h, axis=1)_i = log Σ_j exp(h_j − C_ij / ε)        (reduce over j, one value per i)
    lse(ε, h, axis=0)_j = log Σ_i exp(h_i − C_ij / ε)        (reduce over i, one value per j)

from which the soft C-transform (soft-min) is ``softmin = −ε · lse``. Plan-vector products and
the plan's transport cost are the same reduction with weights.

Shapes: a geometry is either single, with an (n, m) cost, or batched, with a (B, n, m) cost
(dense backend only). Internally everything carries a leading batch dimension B (B = 1 when
single); potentials are (B, n) and (B, m), ε is (B,).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal, NamedTuple

import torch

from otcore._validation import as_points, check_finite, check_positive, compute_dtype
from otcore.costs import Cost, get_cost

__all__ = ["Geometry", "PointCloud", "keops_available"]

Backend = Literal["auto", "dense", "keops"]
ScaleCost = float | Literal["mean", "max", "std"] | None

#: ``auto`` picks KeOps above this many cost entries (the GeomLoss rule, 5000²).
AUTO_KEOPS_ENTRIES = 5000 * 5000

# Exponents are clamped to these bounds before ``exp`` in the fast dense path: below the lower
# bound the term is < 1e-34 relative to the leading term (and exp leaves its slow underflow
# path); above the upper bound the row is far from converged and the clamp only shortens the
# step (the next update corrects it). See ``Geometry.lse``.
_CLAMP = {torch.float32: (-80.0, 60.0), torch.float64: (-700.0, 600.0)}

# Kernel snapshots (``Geometry.lse``): reuse needs every result's log-mass to exceed the clamp
# floor by this margin plus log(reduced size), so that entries clamped up to the floor weigh
# less than e^-margin of any reduced sum (below the dtype's rounding).
_SNAPSHOT_MARGIN = {torch.float32: 20.0, torch.float64: 40.0}
# Below this many entries (B·n·m) a soft-min is dispatch-bound and the snapshot does not pay.
_SNAPSHOT_MIN_ENTRIES = 1 << 16


@functools.cache
def keops_available() -> bool:
    """True if pykeops imports (a C++ compiler is then needed at the first call)."""
    try:
        import pykeops  # noqa: F401
        from pykeops.torch import LazyTensor  # noqa: F401
    except Exception:  # pragma: no cover - depends on the environment
        return False
    return True


def _lazy(t: torch.Tensor) -> Any:
    from pykeops.torch import LazyTensor

    return LazyTensor(t)


class _Snapshot(NamedTuple):
    """The last exact fast-path reduction of a dense geometry (see ``Geometry.lse``)."""

    eps: torch.Tensor  # (B,) the ε it was taken at
    T: torch.Tensor  # (B, n, m) exp(−C/ε + rows ⊕ cols)
    rows: torch.Tensor  # (B, n)
    cols: torch.Tensor  # (B, m)
    t_max: float  # bound on the log of every entry of T
    version: int  # the cost tensor's version counter (in-place edits invalidate)


class Geometry:
    """A dense cost matrix ``C`` of shape (n, m) or (B, n, m).

    Args:
        cost_matrix: the costs ``C[i, j]``; finite. Gradients flow through it.
        scale_cost: divide ``C`` by a statistic of itself taken under stop-gradient:
            ``"mean"``, ``"max"``, ``"std"``, or a positive float; ``None`` keeps ``C``.

    Example:
        >>> import torch, otcore
        >>> geom = otcore.Geometry(cost_matrix=torch.rand(5, 7))
        >>> geom.shape
        (5, 7)
    """

    backend: str = "dense"
    _snap: _Snapshot | None = None
    _fast_eps: torch.Tensor | None = None  # the ε of the last fast-path call

    def __init__(self, cost_matrix: torch.Tensor, *, scale_cost: ScaleCost = None) -> None:
        C = torch.as_tensor(cost_matrix)
        if C.ndim not in (2, 3):
            raise ValueError(
                f"`cost_matrix` must have shape (n, m) or (B, n, m), got {tuple(C.shape)}."
            )
        if C.shape[-1] == 0 or C.shape[-2] == 0 or (C.ndim == 3 and C.shape[0] == 0):
            raise ValueError(f"`cost_matrix` is empty (shape {tuple(C.shape)}).")
        C = C.to(compute_dtype(C))
        check_finite("cost_matrix", C)
        self.batched = C.ndim == 3
        self._C_raw = C if self.batched else C.unsqueeze(0)
        self._scale: torch.Tensor | None = None
        self._scale = _scale_factor(self, scale_cost)
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self._buf: torch.Tensor | None = None

    # ----------------------------------------------------------------- basic properties
    @property
    def shape(self) -> tuple[int, ...]:
        """(n, m) or (B, n, m)."""
        s = (self.n, self.m)
        return (self.batch, *s) if self.batched else s

    @property
    def batch(self) -> int:
        return self._C_raw.shape[0]

    @property
    def n(self) -> int:
        return self._C_raw.shape[-2]

    @property
    def m(self) -> int:
        return self._C_raw.shape[-1]

    @property
    def dtype(self) -> torch.dtype:
        return self._C_raw.dtype

    @property
    def device(self) -> torch.device:
        return self._C_raw.device

    def _cost(self) -> torch.Tensor:
        """The (scaled) cost, (B, n, m), with gradient."""
        return self._C_raw if self._scale is None else self._C_raw * self._scale[:, None, None]

    @property
    def cost_matrix(self) -> torch.Tensor:
        """The (scaled) cost matrix, (n, m) or (B, n, m)."""
        C = self._cost()
        return C if self.batched else C[0]

    # ----------------------------------------------------------------- statistics
    def mean_cost(self) -> torch.Tensor:
        """Mean of the cost matrix per problem, (B,), detached."""
        return self._cost().detach().mean((-1, -2))

    def std_cost(self) -> torch.Tensor:
        """Standard deviation of the cost entries per problem, (B,), detached."""
        return self._cost().detach().std((-1, -2), correction=0)

    def max_cost(self) -> torch.Tensor:
        """Largest cost per problem, (B,), detached."""
        return self._cost().detach().amax((-1, -2))

    def diameter(self) -> torch.Tensor:
        """Upper bound of max(C) − min(C) per problem, (B,): the start of ε-annealing."""
        C = self._cost().detach()
        return C.amax((-1, -2)) - C.amin((-1, -2))

    # ----------------------------------------------------------------- the primitive
    def _neg_scaled(self, eps: torch.Tensor) -> torch.Tensor:
        """−C/ε, cached for the last ε tensor (one per annealing level)."""
        if self._cache is not None and self._cache[0] is eps:
            return self._cache[1]
        S = self._cost().detach() * (-1.0 / eps)[:, None, None]
        self._cache = (eps, S)
        return S

    def lse(
        self,
        eps: torch.Tensor,
        h: torch.Tensor,
        axis: int,
        shift: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Log-sum-exp kernel reduction, the primitive behind every solver.

        Args:
            eps: (B,) regularisation strengths.
            h: (B, m) if ``axis == 1`` (or (B, n) if ``axis == 0``), unitless: typically
                ``g/ε + log b``.
            axis: 1 reduces over j and returns (B, n); 0 reduces over i and returns (B, m).
            shift: optional (B, n) (resp. (B, m)) estimate of minus the result (for example
                the previous ``f/ε``). When given and no gradient is needed, the fast path
                computes ``exp(h_j + shift_i − C_ij/ε)`` in place with its exponent clamped,
                which is exact once the shift is within ~60 of the true value and otherwise
                moves the result by a bounded, self-correcting step.

        Returns:
            ``log Σ_j exp(h_j − C_ij/ε)`` (B, n) for ``axis == 1``; the transpose for 0.

        Kernel snapshot (CPU, no gradient needed, at least 2¹⁶ entries): the fast path keeps
        the matrix it exponentiated, ``T = exp(−C/ε + r ⊕ c)``, and later reductions at the same
        ε are matrix-vector products on it, ``log Σ_j T_ij exp(h_j − c_j) − r_i`` (the
        stabilised scaling of Schmitzer 2019, "Stabilized sparse scaling algorithms for
        entropy regularized transport problems", §3.1), one memory pass instead of five.
        A product is used only if every reduced sum exceeds, by a margin (e⁴⁰ in float64,
        e²⁰ in float32), both what the entries clamped up to the floor can add and what
        the weights flushed to zero can remove; otherwise the exact path runs and takes a
        new snapshot. The result equals the exact one to rounding. (CPU only: each product
        needs a host synchronisation for its check.)
        """
        needs_grad = torch.is_grad_enabled() and (
            self._C_raw.requires_grad or h.requires_grad or eps.requires_grad
        )
        if not needs_grad:
            reused = self._snapshot_lse(eps, h, axis)
            if reused is not None:
                return reused
        if shift is None or needs_grad:
            S = self._cost() * (-1.0 / eps)[:, None, None] if needs_grad else self._neg_scaled(eps)
            if axis == 1:
                return torch.logsumexp(S + h[:, None, :], dim=2)
            return torch.logsumexp(S + h[:, :, None], dim=1)
        self._snap = None  # the buffer is about to be overwritten
        rows, cols = (shift, h) if axis == 1 else (h, shift)
        # −C/ε is kept for small problems and once an ε comes back (no snapshot answered it)
        keep_scaled = self._fast_eps is eps or self._C_raw.numel() < _SNAPSHOT_MIN_ENTRIES
        C = self._neg_scaled(eps) if keep_scaled else self._C_raw.detach()
        if self._buf is None or self._buf.shape != C.shape:
            self._buf = torch.empty_like(C)
        if keep_scaled:
            T = torch.add(C, rows.unsqueeze(2), out=self._buf)
        else:  # first call at this ε (often the only one, with snapshots): one pass over C
            factor = -1.0 / eps if self._scale is None else -self._scale / eps
            T = torch.addcmul(rows.unsqueeze(2), C, factor[:, None, None], out=self._buf)
        self._fast_eps = eps
        T.add_(cols.unsqueeze(1))
        lo, hi = _CLAMP[T.dtype]
        T.clamp_(lo, hi).exp_()
        out = T.sum(dim=2 if axis == 1 else 1).log_()
        if T.numel() >= _SNAPSHOT_MIN_ENTRIES and T.device.type == "cpu":
            # Every entry is at most its row's (column's) sum: below hi, none was clamped from
            # above, and t_max bounds the log of every entry.
            t_max = float(out.amax())
            if t_max < hi:
                self._snap = _Snapshot(eps, T, rows, cols, t_max, self._C_raw._version)
        return out.sub_(shift)

    def _snapshot_at(self, eps: torch.Tensor) -> _Snapshot | None:
        """The kernel snapshot taken at this ε (and this cost, unmodified), or None."""
        snap = self._snap
        if snap is None or snap.version != self._C_raw._version:
            return None
        if not (snap.eps is eps or torch.equal(snap.eps, eps)):
            return None
        return snap

    def _snapshot_product(
        self, snap: _Snapshot, d: torch.Tensor, vec: torch.Tensor | None, axis: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """``T @ (exp(d − max d) ⊙ vec)`` along ``axis`` with the reduced masses' logs.

        Returns (log mass (B, k), product (B, k, ·) or None, max d (B, 1)), or None when a
        mass is not exact to rounding. Two errors are bounded, each below e^-margin of every
        reduced sum: entries of T clamped up to e^lo (at most k·e^lo in all) and weights
        exp(d − max d) flushed to 0 below the smallest normal number (at most
        k·e^(t_max)·tiny in all, t_max bounding the log of T's entries).
        """
        T, t_max = snap.T, snap.t_max
        tiny = torch.finfo(T.dtype).tiny
        top = d.amax(-1, keepdim=True)
        w = (d - top).exp_()
        w = w.masked_fill_(w < tiny, 0.0).unsqueeze(-1)
        if vec is not None:
            w = torch.cat([w, w * vec], -1)
        prod = T @ w if axis == 1 else T.transpose(-1, -2) @ w
        log_mass = prod[..., 0].log()
        lo = _CLAMP[T.dtype][0]
        lost = max(lo, t_max + math.log(tiny))
        floor = lost + _SNAPSHOT_MARGIN[T.dtype] + math.log(T.shape[2 if axis == 1 else 1])
        if not bool(log_mass.amin() > floor):  # also False for NaN
            return None
        return log_mass, (prod[..., 1:] if vec is not None else None), top

    def _snapshot_lse(self, eps: torch.Tensor, h: torch.Tensor, axis: int) -> torch.Tensor | None:
        """``lse`` answered by one product on the snapshot at this ε, or None."""
        snap = self._snapshot_at(eps)
        if snap is None:
            return None
        rows, cols = snap.rows, snap.cols
        ref, other = (cols, rows) if axis == 1 else (rows, cols)
        got = self._snapshot_product(snap, h - ref, None, axis)
        if got is None:
            return None
        log_mass, _, top = got
        return log_mass.add_(top).sub_(other)

    def kernel_apply(
        self,
        eps: torch.Tensor,
        u: torch.Tensor,
        v: torch.Tensor,
        vec: torch.Tensor,
        axis: int = 1,
    ) -> torch.Tensor:
        """Σ_j exp(u_i + v_j − C_ij/ε) vec_j (axis 1, (B, n, k)) or its transpose (axis 0).

        With ``u = f/ε + log a`` and ``v = g/ε + log b`` this applies the plan ``P`` (or ``Pᵀ``)
        to ``vec`` of shape (B, m, k) (resp. (B, n, k)).
        """
        if not torch.is_grad_enabled() or not any(
            t.requires_grad for t in (self._C_raw, eps, u, v, vec)
        ):
            snap = self._snapshot_at(eps)
            if snap is not None:  # P = e^(u − r) T e^(v − c), T the snapshot
                rows, cols = snap.rows, snap.cols
                if axis == 1:  # reduce over j: v enters the product, u scales its rows
                    d_in, d_out = v - cols, u - rows
                else:
                    d_in, d_out = u - rows, v - cols
                got = self._snapshot_product(snap, d_in, vec, axis)
                if got is not None:
                    _, prod, top = got
                    scale = (d_out + top).exp()
                    if bool(torch.isfinite(scale).all()):
                        return prod * scale.unsqueeze(-1)
        K = self.kernel(eps, u, v)
        return K @ vec if axis == 1 else K.transpose(-1, -2) @ vec

    def kernel(self, eps: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Dense ``exp(u_i + v_j − C_ij/ε)``, (B, n, m).

        Entries below the dtype's smallest normal number are set to zero: subnormal operands
        slow CPU matrix products down by two orders of magnitude (measured 0.26 → 44 ms for a
        256 × 256 float32 product), and they weigh < 1e-38 of a unit mass.
        """
        K = torch.exp(u[:, :, None] + v[:, None, :] - self._cost() / eps[:, None, None])
        return K.masked_fill(K < torch.finfo(K.dtype).tiny, 0.0)

    def kernel_cost(self, eps: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Σ_ij exp(u_i + v_j − C_ij/ε) C_ij per problem, (B,): ⟨P, C⟩ for the plan's (u, v)."""
        return (self.kernel(eps, u, v) * self._cost()).sum((-1, -2))


class KeOpsReductions:
    """The geometry primitives on KeOps symbolic matrices, for any subclass defining
    ``_keops_cost()`` (the symbolic cost); with ``backend != "keops"`` they defer to
    :class:`Geometry`'s dense versions."""

    def _keops_exponent(self, eps: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> Any:
        C = self._keops_cost()
        inv = _lazy((1.0 / eps).reshape(1))
        return _lazy(u[0][:, None, None]) + _lazy(v[0][None, :, None]) - C * inv, C

    def lse(
        self,
        eps: torch.Tensor,
        h: torch.Tensor,
        axis: int,
        shift: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.backend != "keops":
            return super().lse(eps, h, axis, shift)
        C = self._keops_cost()
        inv = _lazy((1.0 / eps).reshape(1))
        if axis == 1:
            return (_lazy(h[0][None, :, None]) - C * inv).logsumexp(dim=1).reshape(1, -1)
        return (_lazy(h[0][:, None, None]) - C * inv).logsumexp(dim=0).reshape(1, -1)

    def kernel_apply(
        self,
        eps: torch.Tensor,
        u: torch.Tensor,
        v: torch.Tensor,
        vec: torch.Tensor,
        axis: int = 1,
    ) -> torch.Tensor:
        if self.backend != "keops":
            return super().kernel_apply(eps, u, v, vec, axis)
        K = self._keops_exponent(eps, u, v)[0].exp()
        if axis == 1:
            return (K * _lazy(vec[0][None, :, :])).sum(dim=1).unsqueeze(0)
        return (K * _lazy(vec[0][:, None, :])).sum(dim=0).unsqueeze(0)

    def kernel(self, eps: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.backend == "keops":
            raise ValueError(
                "The plan of a KeOps geometry is never formed; use `apply` / `transport`, or "
                "backend='dense'."
            )
        return super().kernel(eps, u, v)

    def kernel_cost(self, eps: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.backend != "keops":
            return super().kernel_cost(eps, u, v)
        E, C = self._keops_exponent(eps, u, v)
        return (E.exp() * C).sum(dim=1).sum().reshape(1)


class PointCloud(KeOpsReductions, Geometry):
    """The cost between two point clouds, dense or as a KeOps symbolic matrix.

    Args:
        x: (n, d) or (B, n, d) source points.
        y: (m, d) or (B, m, d) target points; ``None`` means ``y = x``.
        cost: a :class:`~otcore.costs.Cost` or its name.
        backend: ``"dense"`` builds the (n, m) matrix once; ``"keops"`` never forms it and
            reduces symbolically in O(n + m) memory; ``"auto"`` picks dense up to
            5000 × 5000 entries and KeOps above when pykeops is installed.
        scale_cost: as for :class:`Geometry`.

    Example:
        >>> import torch, otcore
        >>> geom = otcore.PointCloud(torch.randn(100, 3), torch.randn(80, 3))
        >>> geom.backend, geom.shape
        ('dense', (100, 80))
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        cost: str | Cost = "sqeuclidean",
        backend: Backend = "auto",
        scale_cost: ScaleCost = None,
    ) -> None:
        x = as_points("x", x)
        y = x if y is None else as_points("y", y)
        dtype = compute_dtype(x, y)
        x, y = x.to(dtype), y.to(dtype)
        if x.ndim != y.ndim or x.ndim not in (2, 3):
            raise ValueError(
                f"`x` and `y` must both be (n, d) or both (B, n, d); got shapes "
                f"{tuple(x.shape)} and {tuple(y.shape)}."
            )
        if x.shape[-1] != y.shape[-1]:
            raise ValueError(
                f"`x` and `y` must have the same dimension d; got {x.shape[-1]} and {y.shape[-1]}."
            )
        if x.ndim == 3 and x.shape[0] != y.shape[0]:
            raise ValueError(
                f"`x` and `y` must have the same batch size; got {x.shape[0]} and {y.shape[0]}."
            )
        self.cost = get_cost(cost)
        self.batched = x.ndim == 3
        self.x = x if self.batched else x.unsqueeze(0)
        self.y = y if self.batched else y.unsqueeze(0)
        self.backend = _resolve_backend(backend, self.batched, x.shape[-2] * y.shape[-2])
        # Built once, here, so that it carries the caller's autograd graph.
        self._C_dense = self.cost.pairwise(self.x, self.y) if self.backend == "dense" else None
        self._cache = None
        self._buf = None
        self._scale = None
        self._scale = _scale_factor(self, scale_cost)

    @property
    def batch(self) -> int:
        return self.x.shape[0]

    @property
    def n(self) -> int:
        return self.x.shape[-2]

    @property
    def m(self) -> int:
        return self.y.shape[-2]

    @property
    def dtype(self) -> torch.dtype:
        return self.x.dtype

    @property
    def device(self) -> torch.device:
        return self.x.device

    @property
    def _C_raw(self) -> torch.Tensor:  # type: ignore[override]
        if self.backend == "keops":
            raise ValueError(
                "This PointCloud uses the KeOps backend, which never forms the cost matrix; "
                "build it with backend='dense' to get a dense matrix or plan."
            )
        return self._C_dense

    # ----------------------------------------------------------------- KeOps forms
    def _keops_cost(self) -> Any:
        xi = _lazy(self.cost.prepare(self.x[0])[:, None, :])
        yj = _lazy(self.cost.prepare(self.y[0])[None, :, :])
        C = self.cost.keops(xi, yj)
        if self._scale is not None:
            C = C * _lazy(self._scale.reshape(1))
        return C

    def mean_cost(self) -> torch.Tensor:
        if self.backend != "keops":
            return super().mean_cost()
        with torch.no_grad():
            s = self._keops_cost().sum(dim=1).sum()
        return (s / (self.n * self.m)).reshape(1)

    def std_cost(self) -> torch.Tensor:
        if self.backend != "keops":
            return super().std_cost()
        with torch.no_grad():  # two passes: mean(C²) − mean(C)² cancels when std ≪ |mean|
            C = self._keops_cost()
            mean = C.sum(dim=1).sum() / (self.n * self.m)
            D = C - _lazy(mean.reshape(1))
            var = (D * D).sum(dim=1).sum() / (self.n * self.m)
        return var.clamp_min(0).sqrt().reshape(1)

    def max_cost(self) -> torch.Tensor:
        if self.backend != "keops":
            return super().max_cost()
        with torch.no_grad():
            return self._keops_cost().max(dim=1).max().reshape(1)

    def diameter(self) -> torch.Tensor:
        if self.backend != "keops":
            return super().diameter()
        b = self.cost.bound(self.x.detach(), self.y.detach())
        return b if self._scale is None else b * self._scale


def _resolve_backend(backend: str, batched: bool, entries: int) -> str:
    if backend not in ("auto", "dense", "keops"):
        raise ValueError(f"Unknown `backend` {backend!r}; expected 'auto', 'dense' or 'keops'.")
    if backend == "keops":
        if not keops_available():
            raise ImportError(
                "backend='keops' needs pykeops: `pip install otcore[keops]` (and a C++ compiler)."
            )
        if batched:
            raise ValueError(
                "Batched (B, n, d) point clouds are supported on backend='dense' only."
            )
        return "keops"
    if backend == "auto" and not batched and entries > AUTO_KEOPS_ENTRIES and keops_available():
        return "keops"
    return "dense"


def _scale_factor(geom: Geometry, scale_cost: ScaleCost) -> torch.Tensor | None:
    """Per-problem multiplier (B,) implementing ``scale_cost``; computed under stop-gradient."""
    if scale_cost is None:
        return None
    if isinstance(scale_cost, str):
        stats = {"mean": geom.mean_cost, "max": geom.max_cost, "std": geom.std_cost}
        if scale_cost not in stats:
            raise ValueError(
                f"Unknown `scale_cost` {scale_cost!r}; expected 'mean', 'max', 'std', a "
                "positive float or None."
            )
        stat = stats[scale_cost]().detach()
        if not bool((stat > 0).all()):
            raise ValueError(f"`scale_cost={scale_cost!r}` is zero: the cost matrix is constant 0.")
        return 1.0 / stat
    s = check_positive("scale_cost", scale_cost)
    return torch.full((geom.batch,), 1.0 / s, dtype=geom.dtype, device=geom.device)
