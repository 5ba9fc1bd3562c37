"""Entropic Gromov-Wasserstein: invariances, known answers, paths agreeing, POT, gradients."""

import sys
import warnings

import pytest
import torch

import otcore

requires_keops = pytest.mark.skipif(not otcore.keops_available(), reason="pykeops not installed")

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny problems: one intra-op thread avoids OpenMP start-up latency on a shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _rotation(d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))[0]


def _clouds(n=30, m=25, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=g, dtype=F64), torch.randn(m, 2, generator=g, dtype=F64)


def _brute_energy(Cx, Cy, P):
    L = (Cx[:, None, :, None] - Cy[None, :, None, :]) ** 2
    return torch.einsum("ijkl,ij,kl->", L, P, P)


TIGHT = dict(tol=1e-9, inner_tol=1e-9, max_iter=300, inner_max_iter=5000)


def test_value_is_the_quadratic_objective_at_the_plan():
    x, y = _clouds()
    out = otcore.gromov_wasserstein(
        otcore.PointCloud(x), otcore.PointCloud(y), epsilon=0.05, relative_epsilon="mean"
    )
    Cx, Cy = otcore.pairwise_cost(x), otcore.pairwise_cost(y)
    torch.testing.assert_close(out.value, _brute_energy(Cx, Cy, out.plan()), rtol=1e-10, atol=0)
    assert out.converged and out.n_iters >= 5 and out.n_inner_iters >= out.n_iters
    assert out.costs.shape == (out.n_iters,)
    P = out.plan()
    assert abs(float(P.sum()) - 1) < 1e-9
    assert float(out.reg_value) >= float(out.value) - 1e-12  # ε KL ≥ 0


def test_invariant_under_isometries_of_either_cloud():
    x, y = _clouds()
    kw = dict(epsilon=0.05, relative_epsilon="mean", **TIGHT)
    base = otcore.gromov_wasserstein(otcore.PointCloud(x), otcore.PointCloud(y), **kw).value
    xr = x @ _rotation(3, 1) + torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    yr = y @ _rotation(2, 2) - 3.0
    for gx, gy in ((xr, y), (x, yr)):
        v = otcore.gromov_wasserstein(otcore.PointCloud(gx), otcore.PointCloud(gy), **kw).value
        torch.testing.assert_close(v, base, rtol=1e-6, atol=0)


def test_isometric_copy_has_zero_gw_and_identity_plan():
    x, _ = _clouds(n=40)
    y = x @ _rotation(3, 3) + 2.0
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(0))
    out = otcore.gromov_wasserstein(
        otcore.PointCloud(x), otcore.PointCloud(y[perm]), epsilon=1e-3, relative_epsilon="mean"
    )
    Cx = otcore.pairwise_cost(x)
    assert float(out.value) < 1e-3 * float((Cx**2).mean())
    assert torch.equal(out.plan().argmax(1), torch.argsort(perm))


def test_symmetric_in_its_arguments():
    x, y = _clouds()
    kw = dict(epsilon=0.05, relative_epsilon="mean", **TIGHT)
    o1 = otcore.gromov_wasserstein(otcore.PointCloud(x), otcore.PointCloud(y), **kw)
    o2 = otcore.gromov_wasserstein(otcore.PointCloud(y), otcore.PointCloud(x), **kw)
    torch.testing.assert_close(o1.value, o2.value, rtol=1e-6, atol=0)
    torch.testing.assert_close(o1.plan(), o2.plan().T, rtol=0, atol=1e-6)


def test_low_rank_path_equals_dense_path():
    x, y = _clouds()
    kw = dict(epsilon=0.02, relative_epsilon="mean", **TIGHT)
    lr = otcore.gromov_wasserstein(otcore.PointCloud(x), otcore.PointCloud(y), low_rank=True, **kw)
    de = otcore.gromov_wasserstein(
        otcore.Geometry(otcore.pairwise_cost(x)), otcore.Geometry(otcore.pairwise_cost(y)), **kw
    )
    assert lr.low_rank and not de.low_rank
    torch.testing.assert_close(lr.value, de.value, rtol=1e-7, atol=0)
    torch.testing.assert_close(lr.reg_value, de.reg_value, rtol=1e-7, atol=0)
    torch.testing.assert_close(lr.plan(), de.plan(), rtol=0, atol=1e-6)


def test_scaled_point_clouds_use_the_scale():
    x, y = _clouds()
    kw = dict(epsilon=0.05, **TIGHT)
    gx, gy = otcore.PointCloud(x, scale_cost="mean"), otcore.PointCloud(y, scale_cost="mean")
    lr = otcore.gromov_wasserstein(gx, gy, low_rank=True, **kw)
    de = otcore.gromov_wasserstein(
        otcore.Geometry(gx.cost_matrix), otcore.Geometry(gy.cost_matrix), **kw
    )
    torch.testing.assert_close(lr.value, de.value, rtol=1e-7, atol=0)


@requires_keops
@pytest.mark.keops
def test_keops_path_equals_dense_path():
    x, y = _clouds(n=60, m=50)
    x, y = x.float(), y.float()
    P0 = torch.full((60, 50), 1 / 3000)  # an init skips annealing: fewer KeOps formulas
    kw = dict(epsilon=0.05, relative_epsilon="mean", init=P0, tol=1e-6, inner_tol=1e-5)
    ke = otcore.gromov_wasserstein(
        otcore.PointCloud(x, backend="keops"), otcore.PointCloud(y, backend="keops"), **kw
    )
    de = otcore.gromov_wasserstein(otcore.PointCloud(x), otcore.PointCloud(y), low_rank=True, **kw)
    torch.testing.assert_close(ke.value, de.value, rtol=1e-4, atol=0)
    v = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    # P @ v has entries ~1/60: atol 1e-5 is a relative agreement of ~6e-4 in float32
    torch.testing.assert_close(ke.apply(v), de.apply(v), rtol=1e-3, atol=1e-5)


def test_agrees_with_pot_entropic_gw():
    ot = pytest.importorskip("ot")
    x, y = _clouds(n=25, m=20, seed=4)
    Cx, Cy = otcore.pairwise_cost(x), otcore.pairwise_cost(y)
    Cx, Cy = Cx / Cx.mean(), Cy / Cy.mean()
    eps = 0.05
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        T = ot.gromov.entropic_gromov_wasserstein(
            Cx.numpy(), Cy.numpy(), epsilon=eps, loss_fun="square_loss", max_iter=2000, tol=1e-11
        )
    pot_value = _brute_energy(Cx, Cy, torch.as_tensor(T))
    ours = otcore.gromov_wasserstein(
        otcore.Geometry(Cx), otcore.Geometry(Cy), epsilon=eps, epsilon_scaling=None, **TIGHT
    )
    torch.testing.assert_close(ours.value, pot_value, rtol=1e-4, atol=0)
    torch.testing.assert_close(ours.plan(), torch.as_tensor(T), rtol=0, atol=1e-4)


def test_batched_equals_single_problems():
    g = torch.Generator().manual_seed(5)
    x, y = (
        torch.randn(3, 12, 2, generator=g, dtype=F64),
        torch.randn(3, 12, 3, generator=g, dtype=F64),
    )
    Cx, Cy = otcore.pairwise_cost(x), otcore.pairwise_cost(y)
    kw = dict(epsilon=0.1, relative_epsilon="mean", max_iter=30, warn=False)
    batched = otcore.gromov_wasserstein(otcore.Geometry(Cx), otcore.Geometry(Cy), **kw)
    assert batched.value.shape == (3,) and batched.plan().shape == (3, 12, 12)
    for k in range(3):
        single = otcore.gromov_wasserstein(otcore.Geometry(Cx[k]), otcore.Geometry(Cy[k]), **kw)
        torch.testing.assert_close(batched.value[k], single.value, rtol=1e-2, atol=0)


def test_small_relative_epsilon_does_not_fail():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(200, 3, generator=g)
    y = x[:, :2] @ _rotation(2, 7).float() + 0.05 * torch.randn(200, 2, generator=g)
    out = otcore.gromov_wasserstein(
        otcore.PointCloud(x, scale_cost="mean"),
        otcore.PointCloud(y, scale_cost="mean"),
        epsilon=0.01,
    )
    P = out.plan()
    assert torch.isfinite(P).all() and abs(float(P.sum()) - 1) < 1e-3
    assert float(P.max()) > 0.5 / 200  # a sharp coupling, not the product a⊗b


def test_an_oscillating_descent_is_damped_and_a_damped_cycle_stops_the_loop():
    # At ε0 = 0.01, with plain Sinkhorn inner solves (violation 1e-3), the mirror descent on
    # this instance (64 images of [0, 1]^4096 and a contracting map to 10-D, cosine costs)
    # oscillates; damping starts after two sign changes, and the damped descent still cycles,
    # so the loop stops early with a warning. Newton-finished inner solves converge.
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 4096, generator=g)
    y = torch.tanh(x @ torch.randn(4096, 10, generator=g) / 64)
    Cx, Cy = otcore.pairwise_cost(x, "cosine"), otcore.pairwise_cost(y, "cosine")
    kw = dict(epsilon=0.01, relative_epsilon="mean", init=torch.eye(64, dtype=x.dtype) / 64)
    with pytest.warns(otcore.ConvergenceWarning, match="alternates between two couplings"):
        out = otcore.gromov_wasserstein(
            otcore.Geometry(Cx), otcore.Geometry(Cy), newton=False, **kw
        )
    assert not out.converged and out.n_iters < 50
    c = out.costs
    steps = c[1:] - c[:-1]
    assert bool((steps[1:] * steps[:-1] < 0).all())  # every step reverses the previous one
    assert abs(c[-1] - c[-3]) <= 1e-3 * abs(c[-1]) < abs(c[-1] - c[-2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = otcore.gromov_wasserstein(otcore.Geometry(Cx), otcore.Geometry(Cy), **kw)
    assert out.converged


def test_damped_linearisation_is_the_average_of_gradients():
    x, y = _clouds(n=12, m=10)
    G = sys.modules["otcore.gromov"]
    Cx, Cy = otcore.pairwise_cost(x), otcore.pairwise_cost(y)
    P1 = torch.full((1, 12, 10), 1 / 120, dtype=x.dtype)
    P2 = torch.softmax(torch.randn(1, 12, 10, dtype=x.dtype), -1) / 12
    dense = G._DenseQuadratic(Cx[None], Cy[None], symmetric=True)
    s1, s2 = dense.state(P1), dense.state(P2)
    mixed = dense.damp(s1, s2, 0.25)
    want = 0.25 * (-4 * Cx @ P2[0] @ Cy) + 0.75 * (-4 * Cx @ P1[0] @ Cy)
    torch.testing.assert_close(dense.linearize(mixed, "dense", False).cost_matrix, want)
    torch.testing.assert_close(dense.lin_cost(mixed, s2), (want * P2[0]).sum()[None])
    a, b = torch.full((1, 12), 1 / 12, dtype=x.dtype), torch.full((1, 10), 1 / 10, dtype=x.dtype)
    lr = G._SqEuclideanQuadratic(x[None], y[None], a, b)
    l1, l2 = lr.initial(P1[0][None]), lr.initial(P2[0][None])
    damped = lr.damp(l1, l2, 0.25)
    torch.testing.assert_close(damped["Z"], 0.25 * l2["Z"] + 0.75 * l1["Z"])
    # the KL term of the cost uses ⟨G, P⟩ with G the damped cost that Sinkhorn was given
    G_lr = lr.linearize(damped, "dense", False).cost_matrix
    for P, st in ((P2[0], l2), (P1[0], l1)):
        torch.testing.assert_close(lr.lin_cost(damped, st), (G_lr * P).sum()[None])


def test_envelope_gradient_is_the_frozen_plan_gradient_on_both_paths():
    x, y = _clouds(n=15, m=12)
    for low_rank in (True, False):
        xx, yy = x.clone().requires_grad_(), y.clone().requires_grad_()
        out = otcore.gromov_wasserstein(
            otcore.PointCloud(xx),
            otcore.PointCloud(yy),
            epsilon=0.05,
            relative_epsilon="mean",
            low_rank=low_rank,
        )
        gx, gy = torch.autograd.grad(out.value, (xx, yy))
        P = out.plan().detach()
        xx2, yy2 = x.clone().requires_grad_(), y.clone().requires_grad_()
        E = _brute_energy(otcore.pairwise_cost(xx2), otcore.pairwise_cost(yy2), P)
        ex, ey = torch.autograd.grad(E, (xx2, yy2))
        torch.testing.assert_close(gx, ex, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(gy, ey, rtol=1e-8, atol=1e-10)


def test_envelope_gradient_matches_finite_differences_of_the_regularised_value():
    x, y = _clouds(n=10, m=8, seed=8)
    Cy = otcore.pairwise_cost(y).requires_grad_()
    kw = dict(epsilon=0.1, relative_epsilon=None, epsilon_scaling=None, **TIGHT)
    gx = otcore.Geometry(otcore.pairwise_cost(x))
    out = otcore.gromov_wasserstein(gx, otcore.Geometry(Cy), **kw)
    (grad,) = torch.autograd.grad(out.reg_value, Cy)
    D = torch.randn(8, 8, dtype=F64, generator=torch.Generator().manual_seed(1))
    D = D + D.T
    h = 1e-4  # the solves are exact to ~1e-10: a smaller step would measure their noise

    def f(t):
        return float(
            otcore.gromov_wasserstein(gx, otcore.Geometry(Cy.detach() + t * D), **kw).reg_value
        )

    fd = (f(h) - f(-h)) / (2 * h)
    assert abs(fd - float((grad * D).sum())) < 1e-5 * max(1.0, abs(fd))


def test_bad_input_is_rejected():
    x, y = _clouds()
    Cx = otcore.pairwise_cost(x)
    gy = otcore.PointCloud(y)
    with pytest.raises(ValueError, match="square"):
        otcore.gromov_wasserstein(otcore.Geometry(Cx[:, :10]), gy, epsilon=0.1)
    A = Cx + torch.triu(torch.ones_like(Cx))
    with pytest.raises(ValueError, match="allow_asymmetric"):
        otcore.gromov_wasserstein(otcore.Geometry(A), gy, epsilon=0.1)
    out = otcore.gromov_wasserstein(otcore.Geometry(A), gy, epsilon=1.0, allow_asymmetric=True)
    assert torch.isfinite(out.value)
    with pytest.raises(ValueError, match="itself"):
        otcore.gromov_wasserstein(otcore.PointCloud(x, x + 1), gy, epsilon=0.1)
    with pytest.raises(ValueError, match="epsilon"):
        otcore.gromov_wasserstein(otcore.PointCloud(x), gy, epsilon=-1.0)
    with pytest.raises(ValueError, match="init"):
        otcore.gromov_wasserstein(otcore.PointCloud(x), gy, epsilon=0.1, init=torch.ones(3, 3))
    with pytest.raises(ValueError, match="batched"):
        otcore.gromov_wasserstein(otcore.Geometry(Cx[None]), gy, epsilon=0.1)
    with pytest.raises(ValueError, match="`a`"):
        otcore.gromov_wasserstein(otcore.PointCloud(x), gy, -torch.ones(30), epsilon=0.1)


def test_low_rank_geometry_statistics_and_lse_match_dense():
    g = torch.Generator().manual_seed(9)
    U, V = (
        torch.randn(2, 7, 3, generator=g, dtype=F64),
        torch.randn(2, 5, 3, generator=g, dtype=F64),
    )
    lr, de = otcore.LowRankGeometry(U, V), otcore.Geometry(U @ V.transpose(1, 2))
    for stat in ("mean_cost", "std_cost", "max_cost", "diameter"):
        torch.testing.assert_close(getattr(lr, stat)(), getattr(de, stat)())
    eps, h = torch.tensor([0.3, 0.7], dtype=F64), torch.randn(2, 5, generator=g, dtype=F64)
    torch.testing.assert_close(lr.lse(eps, h, 1), de.lse(eps, h, 1))
    with pytest.raises(ValueError, match="rank"):
        otcore.LowRankGeometry(torch.randn(4, 2), torch.randn(4, 3))


def test_final_inner_tolerance_tightens_the_returned_plan():
    x, y = _clouds(60, 50, seed=3)
    gx, gy = otcore.PointCloud(x, scale_cost="mean"), otcore.PointCloud(y, scale_cost="mean")
    kw = dict(epsilon=0.02, inner_tol=1e-3, warn=False)
    loose = otcore.gromov_wasserstein(gx, gy, **kw)
    tight = otcore.gromov_wasserstein(gx, gy, final_inner_tol=1e-6, **kw)

    def violation(out):
        P = out.plan()
        return float((P.sum(1) - 1 / 60).abs().sum() + (P.sum(0) - 1 / 50).abs().sum())

    assert violation(tight) <= 1e-6 < violation(loose)
    assert tight.n_iters > loose.n_iters and tight.converged
    with pytest.raises(ValueError, match="final_inner_tol"):
        otcore.gromov_wasserstein(gx, gy, final_inner_tol=-1.0, **kw)


def test_final_inner_tolerance_applies_even_when_the_test_passes_on_the_last_step():
    x, y = _clouds(60, 50, seed=3)
    gx, gy = otcore.PointCloud(x, scale_cost="mean"), otcore.PointCloud(y, scale_cost="mean")
    kw = dict(epsilon=0.02, inner_tol=1e-3, warn=False)
    steps = otcore.gromov_wasserstein(gx, gy, **kw).n_iters  # the test first passes here
    out = otcore.gromov_wasserstein(gx, gy, max_iter=steps, final_inner_tol=1e-6, **kw)
    P = out.plan()
    violation = float((P.sum(1) - 1 / 60).abs().sum() + (P.sum(0) - 1 / 50).abs().sum())
    # one step past max_iter, solved at the final tolerance (the loose plan's violation is
    # ≈ 1e-3; one warm-started step does not always reach 1e-6 within inner_max_iter)
    assert out.n_iters == steps + 1 and violation < 1e-4
