"""Sliced, max-sliced and max-K-sliced Wasserstein distances, with a Stiefel optimiser.

- :func:`sliced_wasserstein`: the average of 1-D OT costs over random directions
  (Rabin et al. 2011; Bonneel et al. 2015).
- :func:`max_sliced_wasserstein`: the K orthonormal directions (K = 1 is max-sliced,
  Deshpande et al. 2019) that maximise the average 1-D OT cost between two measures.
- :func:`max_k_sliced_barycentric`: the barycentric multi-class objective of the iterative
  alignment flows (Zhou, Gong, Ravikumar, Inouye, AISTATS 2022, §2.1 "subproblem 1"):
  ``max_{WᵀW = I_K} Σ_j c·w_j · mean_{k,i} (sort(X_j θ_k)_i − bary_k,i)²`` with the 1-D
  barycenter ``bary_k = Σ_j w_j sort(X_j θ_k)`` (quantile averaging of equal-size classes)
  and ``c`` the number of classes (so uniform weights give the authors' plain sum over
  classes).
- :func:`stiefel_ascent`: Riemannian gradient ascent on the Stiefel manifold with the Cayley
  retraction (Wen & Yin 2013; the low-rank Woodbury form when 2K < d) and Armijo
  backtracking, with the step-size schedule of the authors' code (adapted by them from
  Dai & Seljak's SIG): lr₀ = 0.1; at each iteration the first trial uses the previous step
  (×1/0.5 then ×0.5), the step is halved until ``f(w') ≥ f(w) + c·lr·slope`` with c = 0.5,
  and multiplied by 1.5 after an accepted step; stop when ``max|w' − w| < tol`` (1e-6) or
  after ``max_iter`` (200) iterations.

Conventions: cost ``|x − y|^p`` with no ½ (p = 2 gives W₂² per direction, not W₂);
directions are returned as the *columns* of a ``(d, K)`` matrix with orthonormal columns,
sorted by their own sliced distance (largest first); float32 and float64 work (half precision
is computed in float32; the Cayley step is always solved in float64); any device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from otcore._sorting import argsort_last, sorted_last
from otcore._validation import as_points, check_positive, compute_dtype
from otcore.univariate import wasserstein_1d

__all__ = [
    "SlicedOutput",
    "StiefelOutput",
    "barycentric_sliced_objective",
    "max_k_sliced_barycentric",
    "max_sliced_wasserstein",
    "random_stiefel",
    "sliced_wasserstein",
    "stiefel_ascent",
]


def random_stiefel(
    d: int,
    k: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A Haar-distributed ``(d, k)`` matrix with orthonormal columns.

    QR of a standard Gaussian matrix with the signs of ``diag(R)`` moved into Q (Mezzadri
    2007), which makes the distribution exactly uniform on the Stiefel manifold.
    """
    if not (isinstance(k, int) and isinstance(d, int) and 1 <= k <= d):
        raise ValueError(f"need integers 1 <= k <= d, got k={k!r}, d={d!r}.")
    gen_device = generator.device if generator is not None else device
    g = torch.randn(d, k, generator=generator, dtype=torch.float64, device=gen_device)
    q, r = torch.linalg.qr(g.to(device))
    sign = torch.sign(torch.diagonal(r))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return (q * sign).to(dtype)


@dataclass
class StiefelOutput:
    """Result of :func:`stiefel_ascent`.

    Attributes:
        w: ``(d, K)`` final point, orthonormal columns.
        value: objective at ``w``.
        n_iters: outer iterations run.
        n_evals: objective evaluations (including every backtracking trial).
        converged: True if the step fell below ``tol`` (or no ascent step exists).
        values: objective after each accepted step (starting with the initial value);
            non-decreasing by construction of the Armijo rule.
    """

    w: torch.Tensor
    value: float
    n_iters: int
    n_evals: int
    converged: bool
    values: list[float] = field(default_factory=list)


def _cayley_step(w: torch.Tensor, g: torch.Tensor, lr: float) -> torch.Tensor:
    """Cayley retraction of the rows of ``w`` (K, d) along the skew field A = wᵀg − gᵀw.

    ``w' = w (I − lr/2·A)(I + lr/2·A)⁻¹``; when 2K < d, the Woodbury form
    ``w' = w − lr·w V (I₂ₖ + lr/2·U V)⁻¹ U`` with ``U = [g; w]``, ``V = [wᵀ, −gᵀ]``
    (``V U = A``) costs O(K²d) instead of O(d³). Solved in float64 (the authors use
    ``pinverse``; the matrix is never singular because A is skew, so ``solve`` is exact).
    """
    k, d = w.shape
    wd, gd = w.double(), g.double()
    if 2 * k < d:
        u = torch.cat([gd, wd], 0)
        v = torch.cat([wd.T, -gd.T], 1)
        m = torch.eye(2 * k, dtype=torch.float64, device=w.device) + (lr / 2) * (u @ v)
        out = wd - lr * (wd @ v) @ torch.linalg.solve(m, u)
    else:
        a = wd.T @ gd - gd.T @ wd
        eye = torch.eye(d, dtype=torch.float64, device=w.device)
        rhs = wd @ (eye - (lr / 2) * a)
        # out = rhs (I + lr/2 A)⁻¹  ⇔  (I + lr/2 A)ᵀ outᵀ = rhsᵀ, with (I + lr/2 A)ᵀ = I − lr/2 A
        out = torch.linalg.solve(eye - (lr / 2) * a, rhs.T).T
    return out.to(w.dtype)


def stiefel_ascent(
    objective: Callable[[torch.Tensor], torch.Tensor],
    w0: torch.Tensor,
    *,
    lr: float = 0.1,
    max_iter: int = 200,
    tol: float = 1e-6,
    armijo_c: float = 0.5,
    shrink: float = 0.5,
    grow: float = 1.5,
    max_backtracks: int = 60,
) -> StiefelOutput:
    """Maximise ``objective(W)`` over matrices ``W`` ``(d, K)`` with orthonormal columns.

    Riemannian gradient ascent with the Cayley retraction and Armijo backtracking, exactly the
    schedule of the IAF code (Zhou et al. 2022, §2.1; see the module docstring). Every accepted
    step satisfies ``f(w') ≥ f(w) − armijo_c·lr·slope`` with ``slope < 0`` the directional
    derivative of ``−f``, so the objective never decreases.

    Args:
        objective: differentiable map ``(d, K) -> scalar`` to maximise.
        w0: ``(d, K)`` starting point with orthonormal columns.
        lr: initial step; armijo_c, shrink, grow: Armijo constant and step factors.
        max_iter: cap on outer iterations; tol: stop when ``max|w' − w| < tol``.
        max_backtracks: cap on halvings per iteration (a safeguard the original lacks: if no
            trial is accepted the current point is returned as converged).
    """
    if w0.ndim != 2 or w0.shape[1] > w0.shape[0]:
        raise ValueError(f"`w0` must have shape (d, K) with K <= d, got {tuple(w0.shape)}.")
    lr = check_positive("lr", lr)
    check_positive("tol", tol)
    if int(max_iter) < 0:
        raise ValueError(f"`max_iter` must be >= 0, got {max_iter!r}.")

    def evaluate(w_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w_rows = w_rows.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = -objective(w_rows.T)
            (grad,) = torch.autograd.grad(loss, w_rows)
        return loss.detach(), grad

    w = w0.T.contiguous()  # authors' row convention: w is (K, d)
    loss, grad = evaluate(w)
    n_evals, values, converged, n_iters = 1, [-float(loss)], False, 0
    while n_iters < int(max_iter):
        n_iters += 1
        e = -(grad - (w @ grad.T) @ w)  # −w A with A = wᵀG − Gᵀw, using w wᵀ = I
        slope = float((grad * e).sum())
        if not slope < 0:  # stationary point: no ascent direction
            converged = True
            break
        lr /= shrink
        accepted = None
        for _ in range(max_backtracks):
            lr *= shrink
            w1 = _cayley_step(w, grad, lr)
            loss1, grad1 = evaluate(w1)
            n_evals += 1
            if float(loss1) <= float(loss) + armijo_c * slope * lr:
                accepted = (w1, loss1, grad1)
                break
        if accepted is None:
            converged = True
            break
        w1, loss1, grad1 = accepted
        step = float((w1 - w).abs().max())
        w, loss, grad = w1, loss1, grad1
        values.append(-float(loss))
        if step < tol:
            converged = True
            break
        lr *= grow
    return StiefelOutput(
        w=w.T.contiguous(),
        value=-float(loss),
        n_iters=n_iters,
        n_evals=n_evals,
        converged=converged,
        values=values,
    )


@dataclass
class SlicedOutput:
    """Result of the max-(K-)sliced searches.

    Attributes:
        directions: ``(d, K)`` orthonormal columns, sorted by ``per_direction`` (descending).
        value: mean over the K directions of the per-direction objective.
        per_direction: ``(K,)`` objective of each direction (W_p^p for two measures; the
            barycentric sum over classes for the multi-class objective).
        n_iters, n_evals, converged, values: from :class:`StiefelOutput`.
    """

    directions: torch.Tensor
    value: float
    per_direction: torch.Tensor
    n_iters: int
    n_evals: int
    converged: bool
    values: list[float] = field(default_factory=list)


def barycentric_sliced_objective(
    xs: torch.Tensor,
    w: torch.Tensor,
    weights: torch.Tensor | None = None,
    *,
    per_direction: bool = False,
) -> torch.Tensor:
    """Barycentric max-K-sliced objective of IAF (Zhou et al. 2022, §2.1, subproblem 1).

    ``Σ_j c·w_j · mean_{k,i} (sort(X_j θ_k)_i − bary_k,i)²`` with
    ``bary_k = Σ_j w_j sort(X_j θ_k)`` and c classes. With uniform weights this is the
    authors' ``Σ_j mean (s_j − bary)²`` (for two classes: half of ``mean (s_0 − s_1)²``).

    Args:
        xs: ``(c, n, d)``, c classes with n samples each.
        w: ``(d, K)`` directions (columns).
        weights: ``(c,)`` barycentric weights summing to 1; ``None`` is uniform.
        per_direction: return the ``(K,)`` per-direction values instead of the mean.
    """
    c = xs.shape[0]
    s = sorted_last(torch.matmul(w.T, xs.transpose(1, 2)))  # (c, K, n)
    if weights is None:
        wt = torch.full((c,), 1.0 / c, dtype=s.dtype, device=s.device)
    else:
        wt = weights.to(dtype=s.dtype, device=s.device)
    bary = torch.einsum("c,ckn->kn", wt, s)
    per = ((s - bary).pow(2).mean(-1) * (c * wt).unsqueeze(1)).sum(0)  # (K,)
    return per if per_direction else per.mean()


def _finish(out: StiefelOutput, per_dir: Callable[[torch.Tensor], torch.Tensor]) -> SlicedOutput:
    """Sort directions by their own objective (descending), re-orthonormalise (sign-fixed QR)."""
    with torch.no_grad():
        vals = per_dir(out.w)
        vals, order = torch.sort(vals, descending=True)
        w = out.w[:, order]
        q, r = torch.linalg.qr(w.double())
        sign = torch.sign(torch.diagonal(r))
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        w = (q * sign).to(out.w.dtype)
    return SlicedOutput(
        directions=w,
        value=float(vals.mean()),
        per_direction=vals,
        n_iters=out.n_iters,
        n_evals=out.n_evals,
        converged=out.converged,
        values=out.values,
    )


def _check_k(k: int, d: int) -> int:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"`k` (number of directions) must be a positive integer, got {k!r}.")
    if k > d:
        raise ValueError(f"`k` = {k} directions exceeds the dimension d = {d}.")
    return k


def _init(w0: torch.Tensor | None, d: int, k: int, generator, dtype, device) -> torch.Tensor:
    if w0 is None:
        return random_stiefel(d, k, generator=generator, dtype=dtype, device=device)
    w0 = torch.as_tensor(w0).to(dtype=dtype, device=device)
    if w0.shape != (d, k):
        raise ValueError(f"`init` must have shape ({d}, {k}), got {tuple(w0.shape)}.")
    return w0


def max_k_sliced_barycentric(
    xs: torch.Tensor,
    k: int,
    *,
    weights: torch.Tensor | None = None,
    init: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    lr: float = 0.1,
    max_iter: int = 200,
    tol: float = 1e-6,
) -> SlicedOutput:
    """K orthonormal directions maximising the barycentric sliced objective of IAF.

    Args:
        xs: ``(c, n, d)``: c >= 2 classes with the same number n of samples (the quantile
            averaging of the 1-D barycenter needs equal sizes; subsample first otherwise).
        k: number of directions, ``1 <= k <= d``.
        weights: ``(c,)`` barycentric weights (non-negative, normalised); ``None`` is 1/c.
        init: optional ``(d, k)`` start; default Haar-random from ``generator``.
        lr, max_iter, tol: see :func:`stiefel_ascent` (defaults of the authors' code).

    Returns:
        :class:`SlicedOutput` with directions sorted by their per-direction objective.
    """
    xs = as_points("xs", xs, min_ndim=3)
    if xs.ndim != 3 or xs.shape[0] < 2:
        raise ValueError(
            f"`xs` must have shape (c, n, d) with c >= 2 classes, got {tuple(xs.shape)}."
        )
    d = xs.shape[-1]
    k = _check_k(k, d)
    wt = None
    if weights is not None:
        wt = torch.as_tensor(weights).to(dtype=xs.dtype, device=xs.device)
        if wt.shape != (xs.shape[0],) or bool((wt < 0).any()) or not bool(wt.sum() > 0):
            raise ValueError(
                f"`weights` must be {xs.shape[0]} non-negative numbers with positive sum."
            )
        wt = wt / wt.sum()
    w0 = _init(init, d, k, generator, xs.dtype, xs.device)
    if 2 * k < d:
        out = _barycentric_ascent(xs, w0, wt, lr=lr, max_iter=max_iter, tol=tol)
    else:
        out = stiefel_ascent(
            lambda w: barycentric_sliced_objective(xs, w, wt),
            w0,
            lr=lr,
            max_iter=max_iter,
            tol=tol,
        )
    return _finish(out, lambda w: barycentric_sliced_objective(xs, w, wt, per_direction=True))


def _barycentric_ascent(
    xs: torch.Tensor,
    w0: torch.Tensor,
    weights: torch.Tensor | None,
    *,
    lr: float,
    max_iter: int,
    tol: float,
    armijo_c: float = 0.5,
    shrink: float = 0.5,
    grow: float = 1.5,
    max_backtracks: int = 60,
    refresh: int = 20,
) -> StiefelOutput:
    """:func:`stiefel_ascent` specialised to the barycentric objective (same iterates).

    Two facts make it cheap. (1) The gradient is analytic: with ``s_j = sort(X_j wᵀ)`` and
    ``Σ_j w_j (s_j − bary) = 0``, ``∂f/∂s_j = 2c·w_j (s_j − bary)/(nK)``, scattered back
    through the sorting permutation and multiplied by ``X_j``. (2) The Woodbury-Cayley step
    is ``w' = (I − C₂) w − C₁ G`` for K×K matrices C₁, C₂, so the projections of every trial
    step are ``P' = (I − C₂) P − C₁ (G Xᵀ)``: O(nK²) instead of O(ndK). An iteration thus
    costs two (n, d)×(d, K) products, whatever the number of backtracking trials. P is
    recomputed exactly every ``refresh`` accepted steps to stop rounding drift. Trials sort
    values only; the sorting permutation is computed once, for the accepted step.
    """
    c, n, _ = xs.shape
    k = w0.shape[1]
    wt = torch.full((c,), 1.0 / c, dtype=xs.dtype, device=xs.device) if weights is None else weights
    scale = (2.0 * c / (n * k)) * wt[:, None, None]
    xt = xs.transpose(1, 2)  # (c, d, n) view: projections are laid out (c, K, n)

    def project(w_rows: torch.Tensor) -> torch.Tensor:
        return torch.matmul(w_rows, xt)  # (c, K, n), sorted along the contiguous last dim

    def value_and_dev(s: torch.Tensor):
        bary = torch.einsum("c,ckn->kn", wt, s)  # s: projections sorted along n
        dev = s - bary
        val = ((dev * dev).mean((1, 2)) * c * wt).sum()
        return val, dev

    def grad_of(dev: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        h = torch.zeros_like(dev).scatter_(-1, idx, scale * dev)  # ∂f/∂P, (c, K, n)
        return -torch.matmul(h, xs).sum(0)  # gradient of the loss −f, (K, d)

    w = w0.T.contiguous()
    p = project(w)
    f, dev = value_and_dev(sorted_last(p))
    grad = grad_of(dev, argsort_last(p))
    loss = -float(f)
    values, n_evals, converged, n_iters, accepted_steps = [float(f)], 1, False, 0, 0
    eye_k = torch.eye(k, dtype=torch.float64, device=xs.device)
    while n_iters < int(max_iter):
        n_iters += 1
        e = -(grad - (w @ grad.T) @ w)
        slope = float((grad * e).sum())
        if not slope < 0:
            converged = True
            break
        wd, gd = w.double(), grad.double()
        wwt, wgt, gwt, ggt = wd @ wd.T, wd @ gd.T, gd @ wd.T, gd @ gd.T
        wv = torch.cat([wwt, -wgt], 1)  # w V, (K, 2K)
        uv = torch.cat([torch.cat([gwt, -ggt], 1), torch.cat([wwt, -wgt], 1)], 0)  # U V
        xg = project(grad)  # G Xᵀ, (c, K, n)
        lr /= shrink
        accepted = None
        for _ in range(max_backtracks):
            lr *= shrink
            m = torch.eye(2 * k, dtype=torch.float64, device=xs.device) + (lr / 2) * uv
            coef = lr * torch.linalg.solve(m.T, wv.T).T  # lr·wV·M⁻¹ = [C₁, C₂]
            c1, c2 = coef[:, :k], coef[:, k:]
            a = (eye_k - c2).to(xs.dtype)
            b = c1.to(xs.dtype)
            p1 = torch.matmul(a, p) - torch.matmul(b, xg)
            f1, dev1 = value_and_dev(sorted_last(p1))
            n_evals += 1
            if -float(f1) <= loss + armijo_c * slope * lr:
                accepted = (a @ w - b @ grad, p1, f1, dev1)
                break
        if accepted is None:
            converged = True
            break
        w1, p, f, dev = accepted
        accepted_steps += 1
        if accepted_steps % refresh == 0:
            p = project(w1)
            f, dev = value_and_dev(sorted_last(p))
        step = float((w1 - w).abs().max())
        w, loss = w1, -float(f)
        grad = grad_of(dev, argsort_last(p))
        values.append(float(f))
        if step < tol:
            converged = True
            break
        lr *= grow
    return StiefelOutput(
        w=w.T.contiguous(),
        value=-loss,
        n_iters=n_iters,
        n_evals=n_evals,
        converged=converged,
        values=values,
    )


def _pair(x, y, a, b):
    dtype = compute_dtype(x, y)
    x = as_points("x", x, dtype=dtype)
    y = as_points("y", y, dtype=dtype).to(x.device)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"`x` and `y` must have shapes (n, d) and (m, d) with the same d, got "
            f"{tuple(x.shape)} and {tuple(y.shape)}."
        )
    return x, y


def _projected_cost(x, y, a, b, w, p):
    """``(K,)`` 1-D OT costs of the projections of x and y on the columns of w."""
    px, py = (x @ w).T, (y @ w).T  # (K, n), (K, m)
    return wasserstein_1d(px, py, a, b, p=p)


def sliced_wasserstein(
    x: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    *,
    n_projections: int = 100,
    p: float = 2.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sliced Wasserstein cost ``mean_θ W_p^p(θ#α, θ#β)`` over random unit directions.

    Args:
        x: ``(n, d)``; y: ``(m, d)``; a, b: optional weights ``(n,)``, ``(m,)``.
        n_projections: number of directions (uniform on the sphere, from ``generator``).
        p: exponent >= 1 (no root is taken: p = 2 gives the mean of W₂²).

    Returns:
        A scalar tensor, differentiable in ``x`` and ``y``; zero for identical inputs.
    """
    x, y = _pair(x, y, a, b)
    if not isinstance(n_projections, int) or n_projections < 1:
        raise ValueError(f"`n_projections` must be a positive integer, got {n_projections!r}.")
    gen_device = generator.device if generator is not None else x.device
    theta = torch.randn(
        x.shape[1], n_projections, generator=generator, dtype=torch.float64, device=gen_device
    ).to(x.device)
    theta = (theta / theta.norm(dim=0, keepdim=True)).to(x.dtype)
    return _projected_cost(x, y, a, b, theta, p).mean()


def max_sliced_wasserstein(
    x: torch.Tensor,
    y: torch.Tensor,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    *,
    k: int = 1,
    p: float = 2.0,
    init: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    lr: float = 0.1,
    max_iter: int = 200,
    tol: float = 1e-6,
) -> SlicedOutput:
    """Max-K-sliced Wasserstein between two measures: ``max_{WᵀW=I_K} mean_k W_p^p(θ_k)``.

    K = 1 is the max-sliced distance of Deshpande et al. (2019). Optimised with
    :func:`stiefel_ascent` from a Haar-random start; the returned ``value`` is a lower bound
    on the maximum (the problem is non-convex).

    Args:
        x: ``(n, d)``; y: ``(m, d)``; a, b: optional weights; k: number of directions.
        p: exponent >= 1; init, generator, lr, max_iter, tol: see :func:`stiefel_ascent`.
    """
    x, y = _pair(x, y, a, b)
    k = _check_k(k, x.shape[1])
    w0 = _init(init, x.shape[1], k, generator, x.dtype, x.device)
    out = stiefel_ascent(
        lambda w: _projected_cost(x, y, a, b, w, p).mean(),
        w0,
        lr=lr,
        max_iter=max_iter,
        tol=tol,
    )
    return _finish(out, lambda w: _projected_cost(x, y, a, b, w, p))
