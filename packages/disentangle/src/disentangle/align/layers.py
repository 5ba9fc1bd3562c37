"""Layers of the alignment flows. Each is a label-conditioned bijection of ℝ^d.

Every layer maps ``x`` (n, d) with class indices ``y`` (n,) (already converted to 0..C−1 by
the flow) and implements ``forward``, ``inverse`` and ``forward_and_log_det`` (log|det ∂z/∂x|
per sample). ``config()`` returns the JSON-able constructor arguments; the fitted state lives
in buffers (saved with safetensors by :class:`~disentangle.align.flow.IterativeAlignmentFlow`).

- :class:`ProjectedNBLayer`: one INB / Rand-NB layer (Zhou et al. 2022, §2.1):
  ``x ← x + W (t_y(Wᵀx) − Wᵀx)`` with orthonormal ``W`` (d, K); ``W = None`` (identity, no
  projection) gives the full-dimensional NB map.
- :class:`GaussianBarycenterLayer`: the GB baseline, ``T_y(x) = μ̄ + A_y (x − μ_y)`` with
  ``A_y`` the Gaussian OT map from class y to the Gaussian W₂ barycenter (§3).
- :class:`GaussianizeLayer`: one DD layer, an independent per-class rotation followed by a
  per-class marginal Gaussianisation (histogram CDF then Φ⁻¹).
- :class:`InverseCdfLayer` / :class:`CdfLayer`: the per-pixel Φ⁻¹ pre-layer and Φ post-layer
  for [0, 1] image data (§2.0).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from disentangle.align.marginals import TAIL_PROB, MarginalMaps

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def by_class_matmul(x: torch.Tensor, y: torch.Tensor, mats: torch.Tensor) -> torch.Tensor:
    """``out_i = x_i @ mats[y_i]`` for x (n, d), y (n,), mats (C, d, e), as one batched matmul.

    Rows are grouped by class into a zero-padded (C, n_max, d) block (no Python loop and no
    (n, d, e) gather of matrices).
    """
    if mats.shape[0] == 1:
        return x @ mats[0]
    c = mats.shape[0]
    order = torch.argsort(y, stable=True)
    ys = y[order]
    counts = torch.bincount(ys, minlength=c)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(len(ys), device=x.device) - starts[ys]
    block = x.new_zeros(c, int(counts.max()), x.shape[1])
    block[ys, pos] = x[order]
    out_block = torch.bmm(block, mats)
    out = x.new_empty(x.shape[0], mats.shape[2])
    out[order] = out_block[ys, pos]
    return out


class AlignmentLayer(nn.Module):
    """Base class: a label-conditioned bijection with a log-determinant."""

    kind: ClassVar[str] = ""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.forward_and_log_det(x, y, with_log_det=False)[0]

    def forward_and_log_det(
        self, x: torch.Tensor, y: torch.Tensor, *, with_log_det: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def inverse(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def config(self) -> dict:
        raise NotImplementedError


class ProjectedNBLayer(AlignmentLayer):
    """One INB / Rand-NB layer, or the full-dimensional NB map when ``n_dirs is None``.

    Forward ``x ← x + W (t_y(Wᵀx) − Wᵀx)``, inverse ``x ← x + W (t_y⁻¹(Wᵀx) − Wᵀx)``; the
    orthogonal complement of span(W) is untouched, so
    ``log|det J| = Σ_k log t'_{y,k}((Wᵀx)_k)`` (§2.2).
    """

    kind = "nb"

    def __init__(
        self,
        dim: int,
        n_classes: int,
        n_dirs: int | None,
        bins: int,
        n_grid: int = 100,
    ) -> None:
        super().__init__()
        self.dim, self.n_classes, self.n_dirs = dim, n_classes, n_dirs
        k = dim if n_dirs is None else n_dirs
        self.maps = MarginalMaps(n_classes, k, bins, n_grid, target="barycenter")
        if n_dirs is not None:
            self.register_buffer("w", torch.zeros(dim, n_dirs))
        else:
            self.w = None

    def config(self) -> dict:
        return {
            "dim": self.dim,
            "n_classes": self.n_classes,
            "n_dirs": self.n_dirs,
            "bins": self.maps.bins,
            "n_grid": self.maps.n_grid,
        }

    @torch.no_grad()
    def fit(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        w: torch.Tensor | None,
        *,
        alpha: float = 1e-6,
        bound_eps: float | None = None,
        weights: torch.Tensor | None = None,
    ) -> ProjectedNBLayer:
        """Set the directions ``w`` (d, K) (None for NB) and fit the maps on ``x``, ``y``."""
        if self.w is not None:
            # contiguous: a saved and reloaded flow (whose buffers are contiguous) must run
            # the same matrix-product kernels, bit for bit
            self.w = w.to(x).contiguous()
            x = x @ self.w
        self.maps.fit(x, y, alpha=alpha, bound_eps=bound_eps, weights=weights)
        return self

    def forward_and_log_det(self, x, y, *, with_log_det=True):
        if self.w is None:
            z, ld = self.maps(x, y, with_log_deriv=with_log_det)
            return z, (ld.sum(1) if with_log_det else None)
        p = x @ self.w
        t, ld = self.maps(p, y, with_log_deriv=with_log_det)
        return torch.addmm(x, t - p, self.w.T), (ld.sum(1) if with_log_det else None)

    def inverse(self, z, y):
        if self.w is None:
            return self.maps.inverse(z, y)
        p = z @ self.w
        return torch.addmm(z, self.maps.inverse(p, y) - p, self.w.T)


def _sym_fn(s: torch.Tensor, fn) -> torch.Tensor:
    """Apply ``fn`` to the eigenvalues of symmetric matrices s (..., d, d)."""
    evals, evecs = torch.linalg.eigh(s)
    return (evecs * fn(evals.clamp(min=0.0)).unsqueeze(-2)) @ evecs.transpose(-1, -2)


def gaussian_barycenter(
    covs: torch.Tensor,
    weights: torch.Tensor,
    *,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> torch.Tensor:
    """Covariance of the W₂ barycenter of centred Gaussians ``N(0, Σ_c)``.

    Fixed point ``S ← S^{-½} (Σ_c w_c (S^{½} Σ_c S^{½})^{½})² S^{-½}`` (Álvarez-Esteban et al.
    2016; Peyré & Cuturi, Remark 9.5), started from ``Σ_c w_c Σ_c`` and run until the relative
    change is below ``tol`` (the authors run 20 iterations from a random SPD start). For two
    classes the fixed point is the closed form ``Σ₁^{-½}(w₁Σ₁ + w₂(Σ₁^{½}Σ₂Σ₁^{½})^{½})²Σ₁^{-½}``.

    Args:
        covs: (C, d, d) SPD matrices; weights: (C,) summing to 1. Computed in float64.
    """
    covs = covs.double()
    w = weights.double()
    s = torch.einsum("c,cij->ij", w, covs)
    for _ in range(max_iter):
        r = _sym_fn(s, torch.sqrt)
        r_inv = _sym_fn(s, lambda e: 1.0 / torch.sqrt(e.clamp(min=1e-300)))
        inner = _sym_fn(r @ covs @ r, torch.sqrt)
        m = torch.einsum("c,cij->ij", w, inner)
        s_new = r_inv @ m @ m @ r_inv
        s_new = 0.5 * (s_new + s_new.T)
        done = float((s_new - s).norm() / s.norm()) < tol
        s = s_new
        if done:
            break
    return s


class GaussianBarycenterLayer(AlignmentLayer):
    """GB baseline: ``T_y(x) = μ̄ + A_y (x − μ_y)`` to the Gaussian W₂ barycenter.

    ``A_y = Σ_y^{-½} (Σ_y^{½} S Σ_y^{½})^{½} Σ_y^{-½}`` is the Gaussian OT map from class y to
    the barycenter covariance S, and ``μ̄ = Σ_y w_y μ_y``. For two classes this is the authors'
    McCann midpoint ``½(I + B_y)``; for k > 2 it is the exact map to the barycenter (the
    authors' code pairs each class with class 0 or 1 instead, a quirk not reproduced).
    Covariances get a ridge of ``ridge·tr(Σ)/d`` so that degenerate data stay invertible.
    """

    kind = "gb"

    def __init__(self, dim: int, n_classes: int) -> None:
        super().__init__()
        self.dim, self.n_classes = dim, n_classes
        self.register_buffer("mu", torch.zeros(n_classes, dim))
        self.register_buffer("mu_bar", torch.zeros(dim))
        self.register_buffer("a_t", torch.zeros(n_classes, dim, dim))
        self.register_buffer("a_inv_t", torch.zeros(n_classes, dim, dim))
        self.register_buffer("log_det_a", torch.zeros(n_classes))

    def config(self) -> dict:
        return {"dim": self.dim, "n_classes": self.n_classes}

    @torch.no_grad()
    def fit(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        weights: torch.Tensor | None = None,
        ridge: float = 1e-6,
    ) -> GaussianBarycenterLayer:
        c, d = self.n_classes, self.dim
        self.to(device=x.device, dtype=x.dtype)
        xd = x.double()
        counts = torch.bincount(y, minlength=c).double()
        mu = torch.zeros(c, d, dtype=torch.float64, device=x.device).index_add_(0, y, xd)
        mu = mu / counts[:, None]
        dev = xd - mu[y]
        covs = _grouped_gram(dev, y, c) / (counts[:, None, None] - 1).clamp(min=1)
        tr = torch.diagonal(covs, dim1=-2, dim2=-1).sum(-1) / d
        covs = covs + (ridge * tr.clamp(min=1e-300))[:, None, None] * torch.eye(
            d, dtype=torch.float64, device=x.device
        )
        w = torch.full((c,), 1.0 / c, dtype=torch.float64, device=x.device)
        if weights is not None:
            w = weights.double().to(x.device) / weights.sum()
        s = gaussian_barycenter(covs, w)
        r = _sym_fn(covs, torch.sqrt)
        r_inv = _sym_fn(covs, lambda e: 1.0 / torch.sqrt(e))
        mid = _sym_fn(r @ s @ r, torch.sqrt)
        mid_inv = _sym_fn(r @ s @ r, lambda e: 1.0 / torch.sqrt(e))
        a = r_inv @ mid @ r_inv
        a_inv = r @ mid_inv @ r
        self.mu.copy_(mu)
        self.mu_bar.copy_(torch.einsum("c,cd->d", w, mu))
        self.a_t.copy_(a.transpose(-1, -2))
        self.a_inv_t.copy_(a_inv.transpose(-1, -2))
        self.log_det_a.copy_(torch.linalg.slogdet(a)[1])
        self.barycenter_cov = s
        return self

    def forward_and_log_det(self, x, y, *, with_log_det=True):
        z = self.mu_bar + by_class_matmul(x - self.mu[y], y, self.a_t)
        return z, (self.log_det_a[y] if with_log_det else None)

    def inverse(self, z, y):
        return self.mu[y] + by_class_matmul(z - self.mu_bar, y, self.a_inv_t)


def _grouped_gram(dev: torch.Tensor, y: torch.Tensor, c: int) -> torch.Tensor:
    """Per-class Gram matrices Σ_{i: y_i = c} dev_i dev_iᵀ as one batched matmul."""
    order = torch.argsort(y, stable=True)
    ys = y[order]
    counts = torch.bincount(ys, minlength=c)
    starts = torch.cumsum(counts, 0) - counts
    pos = torch.arange(len(ys), device=dev.device) - starts[ys]
    block = dev.new_zeros(c, int(counts.max()), dev.shape[1])
    block[ys, pos] = dev[order]
    return block.transpose(1, 2) @ block


class GaussianizeLayer(AlignmentLayer):
    """One layer of the DD baseline: per-class rotation, then per-class Gaussianisation.

    ``z = g_y(R_yᵀ x)`` with ``g_y`` the per-coordinate map ``Φ⁻¹ ∘ H_y ∘ Φ((·−μ)/σ)``
    (histogram of ``bins`` bins, ``alpha`` pseudo-counts), i.e. each class is pushed towards
    N(0, I) independently of the others (the "estimate each flow independently" baseline of
    §3). ``rotation`` is ``"none"``, ``"random"`` (one Haar rotation shared by the classes) or
    ``"pca"`` (each class's principal axes).
    """

    kind = "dd"

    def __init__(self, dim: int, n_classes: int, bins: int, rotation: str = "random") -> None:
        super().__init__()
        if rotation not in ("none", "random", "pca"):
            raise ValueError(f"`rotation` must be 'none', 'random' or 'pca', got {rotation!r}.")
        self.dim, self.n_classes, self.rotation = dim, n_classes, rotation
        self.maps = MarginalMaps(n_classes, dim, bins, 0, target="normal")
        n_rot = {"none": 0, "random": 1, "pca": n_classes}[rotation]
        self.register_buffer("rot", torch.zeros(n_rot, dim, dim))

    def config(self) -> dict:
        return {
            "dim": self.dim,
            "n_classes": self.n_classes,
            "bins": self.maps.bins,
            "rotation": self.rotation,
        }

    @torch.no_grad()
    def fit(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        alpha: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> GaussianizeLayer:
        from otcore.sliced import random_stiefel

        d = self.dim
        if self.rotation == "random":
            self.rot = random_stiefel(d, d, generator=generator, dtype=x.dtype).to(x.device)[None]
        elif self.rotation == "pca":
            c = self.n_classes
            counts = torch.bincount(y, minlength=c).to(x.dtype)
            mu = torch.zeros(c, d, dtype=x.dtype, device=x.device).index_add_(0, y, x)
            dev = x - (mu / counts[:, None])[y]
            gram = _grouped_gram(dev.double(), y, c)
            self.rot = torch.linalg.eigh(gram)[1].flip(-1).to(x.dtype)
        if self.rotation != "none":
            x = by_class_matmul(x, y, self.rot)
        self.maps.fit(x, y, alpha=alpha)
        return self

    def forward_and_log_det(self, x, y, *, with_log_det=True):
        if self.rotation != "none":
            x = by_class_matmul(x, y, self.rot)
        z, ld = self.maps(x, y, with_log_deriv=with_log_det)
        return z, (ld.sum(1) if with_log_det else None)

    def inverse(self, z, y):
        x = self.maps.inverse(z, y)
        if self.rotation != "none":
            x = by_class_matmul(x, y, self.rot.transpose(-1, -2))
        return x


class InverseCdfLayer(AlignmentLayer):
    """Per-pixel standard-normal inverse CDF Φ⁻¹: (0, 1)^d → ℝ^d (the pre-layer, §2.0).

    Inputs must lie in [0, 1]; they are clamped to ``[clip, 1 − clip]`` (``clip`` = 1e-6, the
    authors' clamp) so that exact 0 or 1 pixels stay finite. Dequantise integer images first
    (:func:`disentangle.align.datasets.dequantize`).
    """

    kind = "phi_inv"

    def __init__(self, clip: float = TAIL_PROB) -> None:
        super().__init__()
        self.clip = clip

    def config(self) -> dict:
        return {"clip": self.clip}

    def forward_and_log_det(self, x, y, *, with_log_det=True):
        if bool(((x < 0) | (x > 1)).any()):
            lo, hi = float(x.min()), float(x.max())
            raise ValueError(
                f"`X` must lie in [0, 1] when the Φ pre-layer is on (image data); got values "
                f"in [{lo:.4g}, {hi:.4g}]. Rescale the images or fit without `image_data`."
            )
        z = torch.special.ndtri(x.clamp(self.clip, 1 - self.clip))
        ld = (0.5 * z * z + _LOG_SQRT_2PI).sum(1) if with_log_det else None
        return z, ld

    def inverse(self, z, y):
        return torch.special.ndtr(z)


class CdfLayer(AlignmentLayer):
    """Per-pixel standard-normal CDF Φ: ℝ^d → (0, 1)^d (the post-layer, §2.0)."""

    kind = "phi"

    def config(self) -> dict:
        return {}

    def forward_and_log_det(self, x, y, *, with_log_det=True):
        ld = (-0.5 * x * x - _LOG_SQRT_2PI).sum(1) if with_log_det else None
        return torch.special.ndtr(x), ld

    def inverse(self, z, y):
        tiny = torch.finfo(z.dtype).eps
        return torch.special.ndtri(z.clamp(tiny * tiny, 1 - tiny))


LAYER_TYPES: dict[str, type[AlignmentLayer]] = {
    cls.kind: cls
    for cls in (
        ProjectedNBLayer,
        GaussianBarycenterLayer,
        GaussianizeLayer,
        InverseCdfLayer,
        CdfLayer,
    )
}
