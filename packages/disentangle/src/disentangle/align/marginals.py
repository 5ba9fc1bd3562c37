"""Class-conditional monotone 1-D maps: the "naive barycenter" (NB) of IAF.

For every class y and coordinate k (a projected direction, or a pixel), the map is
``t_{y,k} = G⁻¹ ∘ F_{y,k}`` (Zhou et al., AISTATS 2022, §2.1 subproblem 2), with the
estimators of the authors' code:

1. ``F_{y,k}(x) = H_{y,k}(Φ((x − μ_{y,k}) / σ_{y,k}))``: Gaussian standardisation (MLE mean
   and std, ddof = 0 as in ``ddl``), then a histogram CDF on [0, 1] with ``bins`` equal-width
   bins (``'auto'`` = round(√N), N = rows of the fit, all classes together), ``alpha``
   pseudo-counts per bin (1e-6) and piecewise-linear interpolation.
2. The barycenter quantile function on the grid ``u = linspace(−½, ½, n_grid)·(1 − ε) + ½``
   (ε = ``bound_eps`` = 1/n_grid, so u ∈ [0.005, 0.995]): ``x̄(u) = Σ_y w_y F_y⁻¹(u)``.
3. ``G``: a Gaussian fit (μ_b, σ_b) of the n_grid values ``x̄(u_i)``, then the piecewise-linear
   CDF through ``(0, 0), (v_i, u_i), (1, 1)`` with ``v_i = Φ((x̄(u_i) − μ_b)/σ_b)``, i.e. the
   pseudo-histogram with edges ``[0, v_1..v_G, 1]`` and masses ``[ε/2, diff(u), ε/2]``.
   So ``t(x) = μ_b + σ_b·Φ⁻¹(PL⁻¹(F_y(x)))``.

With ``target="normal"`` step 2–3 are skipped and ``t(x) = Φ⁻¹(F_y(x))`` maps each class to a
standard normal marginal (the Gaussianisation used by the DD baseline).

Tails: the authors clamp Φ outputs to [1e-6, 1 − 1e-6] (fedinb), which flattens the map
beyond about ±4.75 σ and makes it non-invertible there. Here the map is evaluated exactly for
standardised inputs with ``Φ(s) ∈ [1e-6, 1 − 1e-6]`` and continued *linearly* beyond, with the
slope at the boundary: identical where the authors' map is defined, and a strictly monotone
bijection of ℝ everywhere (exact inverse, finite log-derivative).

All evaluations are vectorised over samples, classes and coordinates: the per-sample table
row is ``y·K + k`` and the lookups are single gathers (uniform histogram bins) or one
row-batched search (:func:`otcore.univariate.piecewise_linear`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from otcore.univariate import piecewise_linear, take

TAIL_PROB = 1e-6  # Φ clamp of the authors' code (fedinb GaussianTransformer)
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def _log_normal_pdf(s: torch.Tensor) -> torch.Tensor:
    return -0.5 * s * s - _LOG_SQRT_2PI


def resolve_bins(bins: int | str, n_rows: int) -> int:
    """``'auto'`` → round(√N) as in the authors' code; otherwise a positive integer."""
    if bins == "auto":
        return max(1, round(math.sqrt(n_rows)))
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
        raise ValueError(f"`bins` must be 'auto' or a positive integer, got {bins!r}.")
    return bins


class MarginalMaps(nn.Module):
    """Per-class, per-coordinate monotone maps ``t_{y,k}`` (see the module docstring).

    Buffers (C classes, K coordinates, B bins, G = n_grid + 2 barycenter knots):
    ``mu, sigma`` (C, K); ``cdf`` (C, K, B + 1); ``bary_mu, bary_sigma`` (K,);
    ``bary_v, bary_u`` (K, G); tail constants ``x_lo, x_hi, z_lo, z_hi, slope_lo, slope_hi``
    (C, K).
    """

    def __init__(
        self, n_classes: int, n_coords: int, bins: int, n_grid: int, target: str = "barycenter"
    ) -> None:
        super().__init__()
        if target not in ("barycenter", "normal"):
            raise ValueError(f"`target` must be 'barycenter' or 'normal', got {target!r}.")
        if target == "barycenter" and not (isinstance(n_grid, int) and n_grid >= 2):
            raise ValueError(f"`n_grid` must be an integer >= 2, got {n_grid!r}.")
        self.n_classes, self.n_coords, self.bins, self.n_grid = n_classes, n_coords, bins, n_grid
        self.target = target
        c, k = n_classes, n_coords
        g = n_grid + 2 if target == "barycenter" else 2
        for name, shape in {
            "mu": (c, k),
            "sigma": (c, k),
            "cdf": (c, k, bins + 1),
            "bary_mu": (k,),
            "bary_sigma": (k,),
            "bary_v": (k, g),
            "bary_u": (k, g),
            "x_lo": (c, k),
            "x_hi": (c, k),
            "z_lo": (c, k),
            "z_hi": (c, k),
            "slope_lo": (c, k),
            "slope_hi": (c, k),
        }.items():
            self.register_buffer(name, torch.zeros(shape))

    def config(self) -> dict:
        return {
            "n_classes": self.n_classes,
            "n_coords": self.n_coords,
            "bins": self.bins,
            "n_grid": self.n_grid,
            "target": self.target,
        }

    # ------------------------------------------------------------------ fitting
    @torch.no_grad()
    def fit(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        alpha: float = 1e-6,
        bound_eps: float | None = None,
        weights: torch.Tensor | None = None,
    ) -> MarginalMaps:
        """Fit from ``x`` (n, K) with class indices ``y`` (n,) in [0, C).

        Every class must have at least two rows. ``weights`` (C,) are the barycentric
        weights (normalised; default uniform). ``bound_eps`` defaults to 1/n_grid.
        """
        c, k, b = self.n_classes, self.n_coords, self.bins
        self.to(device=x.device, dtype=x.dtype)
        counts = torch.bincount(y, minlength=c).to(x.dtype)  # (C,)
        sums = torch.zeros(c, k, dtype=x.dtype, device=x.device).index_add_(0, y, x)
        mu = sums / counts[:, None]
        dev = x - mu[y]
        var = torch.zeros_like(mu).index_add_(0, y, dev * dev) / counts[:, None]
        scale = x.abs().amax(0).clamp(min=1.0)  # floor on σ, relative to the data scale
        sigma = var.sqrt().clamp(min=1e-12 * scale)
        self.mu.copy_(mu)
        self.sigma.copy_(sigma)
        p = torch.special.ndtr(dev / sigma[y])
        bin_idx = (p * b).floor().clamp(0, b - 1).long()
        flat = (y[:, None] * k + torch.arange(k, device=x.device)) * b + bin_idx
        hist = torch.zeros(c * k * b, dtype=x.dtype, device=x.device)
        hist.index_add_(
            0, flat.reshape(-1), torch.ones(flat.numel(), dtype=x.dtype, device=x.device)
        )
        hist = hist.reshape(c, k, b) + alpha
        cdf = torch.cumsum(hist / hist.sum(-1, keepdim=True), -1)
        cdf = torch.nn.functional.pad(cdf, (1, 0))
        cdf[..., -1] = 1.0
        self.cdf.copy_(cdf)

        if self.target == "barycenter":
            eps = 1.0 / self.n_grid if bound_eps is None else float(bound_eps)
            if not 0.0 < eps < 1.0:
                raise ValueError(f"`bound_eps` must lie in (0, 1), got {bound_eps!r}.")
            u = torch.linspace(-0.5, 0.5, self.n_grid, dtype=x.dtype, device=x.device)
            u = u * (1 - eps) + 0.5
            w = torch.full((c,), 1.0 / c, dtype=x.dtype, device=x.device)
            if weights is not None:
                w = weights.to(dtype=x.dtype, device=x.device)
                w = w / w.sum()
            q = self._class_quantiles(u)  # (C, K, G)
            xbar = torch.einsum("c,ckg->kg", w, q)
            bmu = xbar.mean(-1)
            bsig = xbar.std(-1, correction=0).clamp(min=1e-12 * scale)
            v = torch.special.ndtr((xbar - bmu[:, None]) / bsig[:, None])
            v = torch.cummax(v, -1).values  # guard exact ties from rounding
            zeros = torch.zeros(k, 1, dtype=x.dtype, device=x.device)
            ones = torch.ones(k, 1, dtype=x.dtype, device=x.device)
            self.bary_v.copy_(torch.cat([zeros, v, ones], -1))
            self.bary_u.copy_(torch.cat([zeros, u.expand(k, -1), ones], -1))
            self.bary_mu.copy_(bmu)
            self.bary_sigma.copy_(bsig)
        else:
            self.bary_v.copy_(torch.tensor([0.0, 1.0]).to(x).expand(k, 2))
            self.bary_u.copy_(self.bary_v)
            self.bary_mu.zero_()
            self.bary_sigma.fill_(1.0)

        s_lo = torch.special.ndtri(torch.tensor(TAIL_PROB, dtype=torch.float64)).item()
        cls = torch.arange(c, device=x.device)[:, None].expand(c, k)
        for lo_hi, s_b in (("lo", s_lo), ("hi", -s_lo)):
            xb = self.mu + self.sigma * s_b
            zb, ld = self._interior(xb, cls, with_log_deriv=True)
            getattr(self, f"x_{lo_hi}").copy_(xb)
            getattr(self, f"z_{lo_hi}").copy_(zb)
            getattr(self, f"slope_{lo_hi}").copy_(ld.exp())
        return self

    def _class_quantiles(self, u: torch.Tensor) -> torch.Tensor:
        """``F_{y,k}⁻¹(u)`` for every class and coordinate: (C, K, len(u))."""
        c, k, b = self.n_classes, self.n_coords, self.bins
        edges = torch.linspace(0, 1, b + 1, dtype=u.dtype, device=u.device).expand(c, k, b + 1)
        p = piecewise_linear(u.expand(c, k, -1), self.cdf, edges)
        p = p.clamp(TAIL_PROB, 1 - TAIL_PROB)
        return self.mu[..., None] + self.sigma[..., None] * torch.special.ndtri(p)

    # --------------------------------------------------------------- evaluation
    def _hist_cdf(self, p: torch.Tensor, rows: torch.Tensor):
        """Uniform-bin histogram CDF and density at p ∈ [0, 1] for table rows ``y·K + k``."""
        b = self.bins
        cdf = self.cdf.reshape(-1)
        pb = p * b
        j = pb.floor().clamp(0, b - 1).long()
        base = rows * (b + 1) + j
        c0, c1 = take(cdf, base), take(cdf, base + 1)
        return c0 + (pb - j) * (c1 - c0), (c1 - c0) * b

    def _interior(self, x: torch.Tensor, cls: torch.Tensor, *, with_log_deriv: bool = False):
        """Exact map (no tail continuation) for x (m, K) with class indices cls (m, K)."""
        k = self.n_coords
        kk = torch.arange(k, device=x.device).expand_as(x)
        rows = cls * k + kk
        mu, sig = take(self.mu, rows), take(self.sigma, rows)
        s = (x - mu) / sig
        p = torch.special.ndtr(s)
        u, dens = self._hist_cdf(p, rows)
        tiny = torch.finfo(x.dtype).eps
        if self.target == "barycenter":
            v, du_dv = self._bary_cdf_inverse(u)
            v = v.clamp(tiny, 1 - tiny)
            sb = torch.special.ndtri(v)
            z = self.bary_mu + self.bary_sigma * sb
        else:
            v = u.clamp(tiny, 1 - tiny)
            sb = torch.special.ndtri(v)
            z = sb
        if not with_log_deriv:
            return z, None
        ld = torch.log(dens) + _log_normal_pdf(s) - torch.log(sig)
        if self.target == "barycenter":
            ld = ld - torch.log(du_dv) - _log_normal_pdf(sb) + torch.log(self.bary_sigma)
        else:
            ld = ld - _log_normal_pdf(sb)
        return z, ld

    def _bary_cdf_inverse(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``v = PL⁻¹(u)`` and the slope ``du/dv`` of its knot interval, for u (m, K).

        The knots ``bary_u`` are [0, u_1..u_G, 1] with a uniform interior grid, so the
        interval is found in closed form (no search).
        """
        g = self.n_grid
        first, last = self.bary_u[0, 1], self.bary_u[0, g]
        hi = torch.floor((u - first) * ((g - 1) / (last - first))).long().add_(2).clamp_(1, g + 1)
        flat = hi + torch.arange(self.n_coords, device=u.device) * (g + 2)
        u0, u1 = take(self.bary_u, flat - 1), take(self.bary_u, flat)
        v0, v1 = take(self.bary_v, flat - 1), take(self.bary_v, flat)
        t = ((u - u0) / (u1 - u0)).clamp_(0.0, 1.0)
        return v0 + t * (v1 - v0), (u1 - u0) / (v1 - v0)

    def _tail_params(self, y: torch.Tensor):
        return tuple(
            getattr(self, n).index_select(0, y)
            for n in ("x_lo", "x_hi", "z_lo", "z_hi", "slope_lo", "slope_hi")
        )

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, *, with_log_deriv: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``t_y(x)`` for x (n, K) and class indices y (n,); optionally ``log t'`` (n, K)."""
        cls = y[:, None].expand_as(x)
        x_lo, x_hi, z_lo, z_hi, sl_lo, sl_hi = self._tail_params(y)
        xc = torch.minimum(torch.maximum(x, x_lo), x_hi)
        z, ld = self._interior(xc, cls, with_log_deriv=with_log_deriv)
        below, above = x < x_lo, x > x_hi
        z = torch.where(below, z_lo + sl_lo * (x - x_lo), z)
        z = torch.where(above, z_hi + sl_hi * (x - x_hi), z)
        if ld is not None:
            ld = torch.where(below, sl_lo.log(), ld)
            ld = torch.where(above, sl_hi.log(), ld)
        return z, ld

    def inverse(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``t_y⁻¹(z)`` for z (n, K) and class indices y (n,)."""
        k = self.n_coords
        x_lo, x_hi, z_lo, z_hi, sl_lo, sl_hi = self._tail_params(y)
        zc = torch.minimum(torch.maximum(z, z_lo), z_hi)
        tiny = torch.finfo(z.dtype).eps
        if self.target == "barycenter":
            v = torch.special.ndtr((zc - self.bary_mu) / self.bary_sigma)
            u = piecewise_linear(v.T, self.bary_v, self.bary_u).T
        else:
            u = torch.special.ndtr(zc)
        rows = y[:, None] * k + torch.arange(k, device=z.device)
        b = self.bins
        edges = torch.linspace(0, 1, b + 1, dtype=z.dtype, device=z.device)
        edges = edges.expand(self.n_classes * k, b + 1)
        p = piecewise_linear(u, self.cdf.reshape(-1, b + 1), edges, row=rows)
        p = p.clamp(tiny * tiny, 1 - tiny)
        x = self.mu.index_select(0, y) + self.sigma.index_select(0, y) * torch.special.ndtri(p)
        x = torch.minimum(torch.maximum(x, x_lo), x_hi)
        x = torch.where(z < z_lo, x_lo + (z - z_lo) / sl_lo, x)
        return torch.where(z > z_hi, x_hi + (z - z_hi) / sl_hi, x)
