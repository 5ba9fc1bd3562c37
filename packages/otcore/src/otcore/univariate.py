"""One-dimensional optimal transport in closed form.

In one dimension the optimal coupling between two measures is the monotone (quantile)
coupling, so every quantity here is computed by sorting: Wasserstein distances, the monotone
map, and barycenters by quantile averaging (Peyré & Cuturi, *Computational Optimal
Transport*, Remark 2.30 and Eq. 9.17). These are the building blocks of the sliced distances
(:mod:`otcore.sliced`) and of the iterative alignment flows (Zhou et al., AISTATS 2022).

Conventions (shared with the rest of otcore):

- the ground cost is ``|x - y|^p`` with no ½; ``wasserstein_1d(..., p=2)`` returns the OT
  *cost* W₂² (the value a Sinkhorn solver with ``cost="sqeuclidean"`` approaches as ε → 0),
  not its square root;
- every function is batched over leading dimensions: ``x`` of shape ``(..., n)`` holds one
  1-D sample per leading index (e.g. ``(directions, classes, n)``);
- weights are non-negative and are normalised to unit mass; ``None`` means uniform;
- float32 and float64 both work; half precision is computed in float32; any device;
- all functions are differentiable in the sample locations (through ``sort``/``gather``);
  CPU sorts go through NumPy's SIMD sort when NumPy is installed (:mod:`otcore._sorting`).
"""

from __future__ import annotations

import torch

from otcore._sorting import argsort_last, sort_last, sorted_last
from otcore._validation import as_weights, check_finite, compute_dtype

__all__ = [
    "monotone_map",
    "piecewise_linear",
    "quantile_barycenter",
    "quantile_function",
    "take",
    "wasserstein_1d",
]


def take(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table.reshape(-1)[index]`` (``torch.take``), shaped like ``index``.

    Done with ``index_select``, which on CPU is 3–5× faster than advanced indexing or
    ``torch.take`` for the (n, K) lookups of the 1-D maps (0.28 vs 1.39 ms for 300 000
    lookups, one thread).
    """
    return table.reshape(-1).index_select(0, index.reshape(-1)).view(index.shape)


def _as_samples(name: str, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    if x.ndim < 1 or x.shape[-1] == 0:
        raise ValueError(f"`{name}` must have shape (..., n) with n >= 1, got {tuple(x.shape)}.")
    x = x.to(dtype or compute_dtype(x))
    check_finite(name, x)
    return x


def _sorted_with_cdf(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort ``x`` along the last dim; return sorted values and the cumulative normalised mass."""
    xs, order = sort_last(x)
    ws = torch.gather(w, -1, order)
    cdf = torch.cumsum(ws / ws.sum(-1, keepdim=True), dim=-1)
    return xs, cdf


def quantile_function(
    x: torch.Tensor, u: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Quantile function (generalised inverse CDF) of a weighted empirical measure.

    ``Q(u) = min{x_(i) : F(x_(i)) >= u}``, the left-continuous inverse of the step CDF.

    Args:
        x: sample locations, shape ``(..., n)``.
        u: levels in ``[0, 1]``, shape ``(..., m)`` (broadcast against the leading dims of
            ``x``) or ``(m,)``.
        weights: non-negative weights ``(..., n)`` or ``(n,)``; ``None`` is uniform.

    Returns:
        Quantiles, shape ``(..., m)``.
    """
    x = _as_samples("x", x)
    u = torch.as_tensor(u, dtype=x.dtype, device=x.device)
    check_finite("u", u)
    if bool(((u < 0) | (u > 1)).any()):
        raise ValueError("`u` must lie in [0, 1].")
    w = as_weights("weights", weights, tuple(x.shape), dtype=x.dtype, device=x.device)
    xs, cdf = _sorted_with_cdf(x, w)
    lead = torch.broadcast_shapes(xs.shape[:-1], u.shape[:-1])
    xs = xs.expand(*lead, xs.shape[-1]).contiguous()
    cdf = cdf.expand(*lead, cdf.shape[-1]).contiguous()
    u = u.expand(*lead, u.shape[-1]).contiguous()
    idx = torch.searchsorted(cdf, u, right=False).clamp_(max=xs.shape[-1] - 1)
    return torch.gather(xs, -1, idx)


def _monotone_coupling(
    x: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor | None,
    b: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The monotone plan as a list of pieces: (x index, y index, mass, order_x, order_y).

    Indices refer to the sorted samples; ``order_x[i]`` is the original index of sorted i.
    """
    dtype = compute_dtype(x, y)
    x = _as_samples("x", x, dtype)
    y = _as_samples("y", y, dtype).to(x.device)
    lead = torch.broadcast_shapes(x.shape[:-1], y.shape[:-1])
    x = x.expand(*lead, x.shape[-1])
    y = y.expand(*lead, y.shape[-1])
    a = as_weights("a", a, tuple(x.shape), dtype=dtype, device=x.device)
    b = as_weights("b", b, tuple(y.shape), dtype=dtype, device=x.device)
    ox = argsort_last(x)
    oy = argsort_last(y)
    ca = torch.cumsum(torch.gather(a, -1, ox) / a.sum(-1, keepdim=True), -1)
    cb = torch.cumsum(torch.gather(b, -1, oy) / b.sum(-1, keepdim=True), -1)
    t = sorted_last(torch.cat([ca, cb], -1))
    t = t.clamp(max=1.0)
    t_prev = torch.nn.functional.pad(t[..., :-1], (1, 0))
    mass = (t - t_prev).clamp(min=0.0)
    mid = (0.5 * (t + t_prev)).contiguous()
    i = torch.searchsorted(ca.contiguous(), mid).clamp_(max=x.shape[-1] - 1)
    j = torch.searchsorted(cb.contiguous(), mid).clamp_(max=y.shape[-1] - 1)
    return i, j, mass, ox, oy


def wasserstein_1d(
    x: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    *,
    p: float = 2.0,
) -> torch.Tensor:
    """p-Wasserstein OT cost between two weighted 1-D empirical measures, in closed form.

    ``W_p^p(α, β) = ∫₀¹ |F_α⁻¹(t) − F_β⁻¹(t)|^p dt`` (Peyré & Cuturi, Remark 2.30), evaluated
    exactly on the merged breakpoints of the two CDFs. For p = 1 this equals
    ``scipy.stats.wasserstein_distance``; for p = 2 it is W₂² (no square root, no ½).

    Args:
        x: ``(..., n)`` samples of the first measure.
        y: ``(..., m)`` samples of the second measure (leading dims broadcast with ``x``).
        a, b: non-negative weights ``(..., n)`` / ``(..., m)``; ``None`` is uniform.
            Each is normalised to unit mass.
        p: exponent ``>= 1``.

    Returns:
        ``W_p^p`` of shape ``(...)``, differentiable in ``x`` and ``y``.
    """
    if not float(p) >= 1.0:
        raise ValueError(f"`p` must be >= 1, got {p!r}.")
    if a is None and b is None and x.shape[-1] == y.shape[-1]:
        dtype = compute_dtype(x, y)
        x = _as_samples("x", x, dtype)
        y = _as_samples("y", y, dtype).to(x.device)
        diff = sorted_last(x) - sorted_last(y)
        return diff.abs().pow(p).mean(-1)
    i, j, mass, ox, oy = _monotone_coupling(x, y, a, b)
    dtype = mass.dtype
    x = torch.as_tensor(x).to(dtype=dtype, device=mass.device).expand(*ox.shape)
    y = torch.as_tensor(y).to(dtype=dtype, device=mass.device).expand(*oy.shape)
    xs = torch.gather(x, -1, ox)
    ys = torch.gather(y, -1, oy)
    diff = torch.gather(xs, -1, i) - torch.gather(ys, -1, j)
    return (mass * diff.abs().pow(p)).sum(-1)


def monotone_map(
    x: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
) -> torch.Tensor:
    """Image of each source atom under the 1-D optimal (monotone) transport map.

    For equal sizes and uniform weights this is the exact Monge map ``x_(i) ↦ y_(i)``. In
    general it is the barycentric projection ``T(x_i) = Σ_j P_ij y_j / a_i`` of the optimal
    (north-west-corner) plan ``P``, which is non-decreasing in ``x``.

    Args:
        x: ``(..., n)`` source samples; y: ``(..., m)`` target samples.
        a, b: optional non-negative weights (normalised to unit mass).

    Returns:
        ``(..., n)`` transported positions, in the original order of ``x``.
    """
    i, j, mass, ox, oy = _monotone_coupling(x, y, a, b)
    dtype = mass.dtype
    y = torch.as_tensor(y).to(dtype=dtype, device=mass.device).expand(*oy.shape)
    ys = torch.gather(y, -1, oy)
    contrib = mass * torch.gather(ys, -1, j)
    num = torch.zeros(*ox.shape, dtype=dtype, device=mass.device).scatter_add(-1, i, contrib)
    den = torch.zeros(*ox.shape, dtype=dtype, device=mass.device).scatter_add(-1, i, mass)
    sorted_t = num / den.clamp(min=torch.finfo(dtype).tiny)
    out = torch.empty_like(sorted_t)
    out.scatter_(-1, ox, sorted_t)
    return out


def quantile_barycenter(
    xs: torch.Tensor,
    weights: torch.Tensor | None = None,
    *,
    u: torch.Tensor | None = None,
) -> torch.Tensor:
    """Wasserstein-2 barycenter of 1-D measures by quantile averaging.

    In 1-D the barycenter's quantile function is the weighted average of the input quantile
    functions, ``Q_bar(u) = Σ_j w_j Q_j(u)`` (Peyré & Cuturi, Eq. 9.17; the "naive
    barycenter" of Zhou et al. 2022, §2.1).

    Args:
        xs: ``(..., k, n)``: k uniform empirical measures with n atoms each.
        weights: barycentric weights ``(k,)`` or ``(..., k)``, non-negative; ``None`` is 1/k.
        u: optional levels ``(m,)`` in [0, 1]. ``None`` returns the n atoms of the
            barycenter (element-wise weighted average of the sorted samples); otherwise the
            barycenter quantile function evaluated at ``u``.

    Returns:
        ``(..., n)`` barycenter atoms (each of mass 1/n), or ``(..., m)`` quantiles.
    """
    xs = _as_samples("xs", xs)
    if xs.ndim < 2:
        raise ValueError(f"`xs` must have shape (..., k, n), got {tuple(xs.shape)}.")
    w = as_weights("weights", weights, tuple(xs.shape[:-1]), dtype=xs.dtype, device=xs.device)
    w = w / w.sum(-1, keepdim=True)
    if u is None:
        q = sorted_last(xs)
    else:
        u = torch.as_tensor(u, dtype=xs.dtype, device=xs.device)
        q = quantile_function(xs, u.expand(*xs.shape[:-1], u.shape[-1]))
    return (w.unsqueeze(-1) * q).sum(-2)


def piecewise_linear(
    x: torch.Tensor,
    xp: torch.Tensor,
    fp: torch.Tensor,
    *,
    row: torch.Tensor | None = None,
) -> torch.Tensor:
    """Evaluate many piecewise-linear functions at once (batched ``numpy.interp``).

    Each function is given by knots ``xp`` (non-decreasing along the last dim) and values
    ``fp``; queries outside ``[xp[0], xp[-1]]`` are clamped to the end values. Used for the
    monotone 1-D maps of the alignment flows (histogram CDFs and their inverses).

    Args:
        x: queries. Without ``row``: shape ``(..., m)``, batched against ``xp`` ``(..., G)``.
            With ``row``: any shape, and ``row`` (same shape, integer) selects, for every
            query, which of the ``R`` knot rows of ``xp``/``fp`` ``(R, G)`` to use: this is
            how per-sample functions (one per class and coordinate) are evaluated without a
            Python loop.
        xp, fp: knots and values, ``(..., G)`` or ``(R, G)``, G >= 2.
        row: optional integer tensor of row indices.

    Returns:
        Interpolated values with the shape of ``x``.
    """
    g = xp.shape[-1]
    if g < 2 or fp.shape != xp.shape:
        raise ValueError(
            f"`xp` and `fp` must share a shape (..., G) with G >= 2, got {tuple(xp.shape)} "
            f"and {tuple(fp.shape)}."
        )
    if row is None:
        lead = torch.broadcast_shapes(x.shape[:-1], xp.shape[:-1])
        xq = x.expand(*lead, x.shape[-1]).contiguous()
        xpb = xp.expand(*lead, g).contiguous()
        fpb = fp.expand(*lead, g)
        hi = torch.searchsorted(xpb, xq, right=True).clamp_(1, g - 1)
        x0, x1 = torch.gather(xpb, -1, hi - 1), torch.gather(xpb, -1, hi)
        f0, f1 = torch.gather(fpb, -1, hi - 1), torch.gather(fpb, -1, hi)
    else:
        if xp.ndim != 2:
            raise ValueError(f"with `row`, `xp` must have shape (R, G), got {tuple(xp.shape)}.")
        shape = x.shape
        xq = x.reshape(-1)
        r = row.reshape(-1).to(torch.long)
        hi = _row_search(xq, xp, r)
        flat = r * g
        xpf, fpf = xp.reshape(-1), fp.reshape(-1)
        lo_i, hi_i = flat + hi - 1, flat + hi
        x0, x1 = take(xpf, lo_i), take(xpf, hi_i)
        f0, f1 = take(fpf, lo_i), take(fpf, hi_i)
        out = _lerp(xq, x0, x1, f0, f1)
        return out.reshape(shape)
    return _lerp(xq, x0, x1, f0, f1)


def _lerp(x, x0, x1, f0, f1):
    width = x1 - x0
    safe = torch.where(width > 0, width, torch.ones_like(width))
    t = torch.where(width > 0, (x - x0) / safe, torch.zeros_like(x)).clamp(0.0, 1.0)
    return f0 + t * (f1 - f0)


def _row_search(x: torch.Tensor, xp: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """Index ``hi`` in [1, G-1] with ``xp[row, hi-1] <= x < xp[row, hi]`` for per-query rows.

    All rows are laid end to end in one sorted key array (row r shifted by r·2·span), searched
    once, then the index is corrected by one step where rounding of the shifted keys put it
    on the wrong side of a knot. Keys are float64 so the shift costs no precision that matters.
    """
    n_rows, g = xp.shape
    kd = torch.float64 if xp.device.type != "mps" else torch.float32
    xpk = xp.to(kd)
    lo = xpk.min()
    span = (xpk.max() - lo) + 1.0
    offs = torch.arange(n_rows, device=xp.device, dtype=kd).unsqueeze(1) * (2.0 * span)
    keys = (xpk - lo + offs).reshape(-1).contiguous()
    q = (x.to(kd).clamp(min=lo, max=lo + span - 1.0) - lo) + row.to(kd) * (2.0 * span)
    pos = torch.searchsorted(keys, q.contiguous(), right=True) - row * g
    hi = pos.clamp(1, g - 1)
    xpf = xp.reshape(-1)
    base = row * g
    left = take(xpf, base + hi - 1)
    hi = torch.where((x < left) & (hi > 1), hi - 1, hi)
    right = take(xpf, base + hi)
    hi = torch.where((x >= right) & (hi < g - 1), hi + 1, hi)
    return hi
