"""Ground costs: precision far from the origin, exactness, gradients at zero vectors."""

import warnings

import pytest
import torch

import otcore

F32, F64 = torch.float32, torch.float64


def exact_sqdist(x, y):
    """‖x_i − y_j‖² of the given (rounded) points, by differences in float64."""
    return ((x.double()[..., :, None, :] - y.double()[..., None, :, :]) ** 2).sum(-1)


def rel_err(C, ref):
    return float((C.double() - ref).norm() / ref.norm())


# ------------------------------------------------------------------ item 2: centring
@pytest.mark.parametrize("shift", [1e2, 1e4, -3e4])
def test_sqeuclidean_cost_far_from_the_origin_keeps_float32_precision(shift):
    # ‖x‖² + ‖y‖² − 2⟨x, y⟩ on points shifted by 1e4 had a relative error of 2.3 in float32
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 3, generator=g) + shift
    y = torch.randn(25, 3, generator=g) + 0.5 + shift
    assert rel_err(otcore.PointCloud(x, y).cost_matrix, exact_sqdist(x, y)) < 1e-5
    assert rel_err(otcore.pairwise_cost(x), exact_sqdist(x, x)) < 1e-5  # the y-is-x path
    assert rel_err(otcore.SqEuclidean().pairwise(x, y), exact_sqdist(x, y)) < 1e-5
    C = otcore.Euclidean().pairwise(x, y)
    assert rel_err(C, exact_sqdist(x, y).sqrt()) < 1e-5
    # batched clouds, each far from the origin in its own way
    xb = torch.stack([x, x - 2 * shift])
    yb = torch.stack([y, y - 2 * shift])
    assert rel_err(otcore.PointCloud(xb, yb).cost_matrix, exact_sqdist(xb, yb)) < 1e-5


def test_sinkhorn_value_is_translation_invariant_in_float32():
    # the value was 0.20 instead of 5.37 (27× off) for clouds shifted by 1e4, converged=True
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 2, generator=g), torch.randn(25, 2, generator=g) + 1.5
    base = otcore.sinkhorn(otcore.PointCloud(x, y), epsilon=0.05, relative_epsilon="mean")
    with warnings.catch_warnings():
        warnings.simplefilter("error", otcore.ConvergenceWarning)
        far = otcore.sinkhorn(
            otcore.PointCloud(x + 1e4, y + 1e4), epsilon=0.05, relative_epsilon="mean"
        )
    assert far.converged
    torch.testing.assert_close(far.value, base.value, rtol=2e-3, atol=0)


def test_centring_keeps_exact_costs_and_gradients():
    # integer points keep integer costs (the shift is rounded to a power-of-two multiple)
    x = torch.tensor([[0.0, 1.0], [3.0, -2.0], [5.0, 5.0]])
    y = torch.tensor([[1.0, 1.0], [-4.0, 2.0]])
    assert torch.equal(otcore.PointCloud(x, y).cost_matrix.double(), exact_sqdist(x, y))
    assert torch.equal(otcore.pairwise_cost(x).double(), exact_sqdist(x, x))
    # a translation by such a number gives bitwise the same costs
    assert torch.equal(otcore.pairwise_cost(x + 1024.0), otcore.pairwise_cost(x))
    # the shift is a constant: gradients are those of ‖x − y‖², also far from the origin
    g = torch.Generator().manual_seed(0)
    xd = (torch.randn(6, 3, generator=g, dtype=F64) + 1e3).requires_grad_()
    yd = (torch.randn(5, 3, generator=g, dtype=F64) + 1e3).requires_grad_()
    torch.autograd.gradcheck(lambda a, b: otcore.SqEuclidean().pairwise(a, b), (xd, yd))
    torch.autograd.gradcheck(lambda a: otcore.SqEuclidean().pairwise(a, a), (xd,))


def test_low_rank_std_has_no_cancellation():
    # C = U Vᵀ with |mean(C)| ≫ std(C): mean(C²) − mean(C)² cancelled in float32
    g = torch.Generator().manual_seed(0)
    U = torch.cat([torch.full((40, 1), 1e3), torch.randn(40, 2, generator=g)], 1)
    V = torch.cat([torch.full((30, 1), 10.0), torch.randn(30, 2, generator=g)], 1)
    geom = otcore.LowRankGeometry(U, V)
    ref = (U.double() @ V.double().T).std(correction=0)
    torch.testing.assert_close(geom.std_cost()[0].double(), ref, rtol=1e-4, atol=0)
    UU, VV = U.double()[None].expand(2, -1, -1), V.double()[None].expand(2, -1, -1)
    lr = otcore.LowRankGeometry(UU, VV, scale_cost=2.0)
    torch.testing.assert_close(lr.std_cost(), (ref / 2).expand(2), rtol=1e-10, atol=0)


def test_gromov_relative_epsilon_of_far_clouds_on_the_low_rank_path():
    # mean_ik |x_i − x_k|² was 2 (mean |x|² − |mean x|²): garbage for clouds far from 0
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 3, generator=g), torch.randn(40, 2, generator=g)
    kw = dict(epsilon=0.05, relative_epsilon="mean", max_iter=3, warn=False)
    near = otcore.gromov_wasserstein(otcore.PointCloud(x), otcore.PointCloud(y), **kw)
    far = otcore.gromov_wasserstein(otcore.PointCloud(x + 3e3), otcore.PointCloud(y - 3e3), **kw)
    assert near.low_rank and far.low_rank
    torch.testing.assert_close(far.epsilon, near.epsilon, rtol=1e-4, atol=0)


# ------------------------------------------------------------------ item 4: cosine at 0
def test_cosine_gradient_at_a_zero_vector_is_finite():
    # a 1e-12 norm floor made the gradient at a zero vector ~1e12; the docstring says zero
    # vectors count as unit norm, so the gradient there is that of 1 − ⟨x, ŷ⟩: −ŷ
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, generator=g, dtype=F64)
    x[0] = 0.0
    y = torch.randn(4, 3, generator=g, dtype=F64)
    y_hat = y / y.norm(dim=-1, keepdim=True)
    cos = otcore.Cosine()
    xr = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(cos.pairwise(xr, y).sum(), xr)
    torch.testing.assert_close(grad[0], -y_hat.sum(0))
    assert bool(torch.isfinite(grad).all())
    # within one cloud (norms from the Gram diagonal): −Σ_j x̂_j over the other points
    (grad,) = torch.autograd.grad(cos.pairwise(xr, xr).sum(), xr)
    x_hat = x[1:] / x[1:].norm(dim=-1, keepdim=True)
    torch.testing.assert_close(grad[0], -2 * x_hat.sum(0))
    # paired rows (the Monge gap's cost) and the KeOps-side normalisation
    (grad,) = torch.autograd.grad(cos.elementwise(xr, y[:1].expand(5, 3)).sum(), xr)
    torch.testing.assert_close(grad[0], -y_hat[0])
    (grad,) = torch.autograd.grad(cos.prepare(xr).sum(), xr)
    torch.testing.assert_close(grad[0], torch.ones(3, dtype=F64))
    # forward values: cost 1 against everything, including itself
    C = cos.pairwise(x, x)
    assert float(C[0, 0]) == 1.0 and bool((C[0, 1:] == 1.0).all())


def test_cosine_cost_stays_in_its_range_and_is_differentiable_elsewhere():
    g = torch.Generator().manual_seed(1)
    y = (torch.randn(6, 3, generator=g) * 1e-3 + 1e4).to(F32)  # nearly parallel vectors
    C = otcore.Cosine().pairwise(y, y)
    assert float(C.min()) >= 0.0 and float(C.max()) <= 2.0
    xd = torch.randn(5, 3, generator=g, dtype=F64).requires_grad_()
    yd = torch.randn(4, 3, generator=g, dtype=F64).requires_grad_()
    torch.autograd.gradcheck(lambda a, b: otcore.Cosine().pairwise(a, b), (xd, yd))
