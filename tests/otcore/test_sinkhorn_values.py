"""Known answers and cross-checks of Sinkhorn values, plans and gradients."""

import numpy as np
import pytest
import scipy.optimize
import torch

import otcore


def test_small_epsilon_primal_cost_approaches_exact_assignment(problem):
    x, y, _, _ = problem(n=40, m=40, d=2, seed=3, weights=False)
    C = otcore.SqEuclidean().pairwise(x, y)
    rows, cols = scipy.optimize.linear_sum_assignment(C.numpy())
    exact = float(C[rows, cols].mean())
    gaps = []
    for rel in (0.1, 0.01, 0.001):
        out = otcore.sinkhorn(
            otcore.Geometry(C), epsilon=rel, relative_epsilon="mean", tol=1e-5, max_iter=50000
        )
        gaps.append(float(out.primal_cost) - exact)
    assert gaps[0] > gaps[1] > gaps[2] >= -1e-9
    assert gaps[2] < 1e-2 * exact


def test_value_and_primal_match_pot_sinkhorn_log(problem):
    ot = pytest.importorskip("ot")
    for seed in range(3):
        x, y, a, b = problem(n=25, m=18, d=3, seed=seed)
        geom = otcore.PointCloud(x, y)
        eps = 0.1 * float(geom.mean_cost())
        out = otcore.sinkhorn(geom, a, b, epsilon=eps, tol=1e-10, max_iter=100000)
        C = geom.cost_matrix.numpy()
        P = ot.sinkhorn(
            a.numpy(), b.numpy(), C, eps, method="sinkhorn_log", stopThr=1e-13, numItermax=200000
        )
        primal = float((P * C).sum())
        kl = float((P * np.log(P / np.outer(a, b))).sum() - P.sum() + 1.0)
        np.testing.assert_allclose(float(out.primal_cost), primal, rtol=1e-7)
        np.testing.assert_allclose(float(out.value), primal + eps * kl, rtol=1e-7)
        np.testing.assert_allclose(out.plan().numpy(), P, atol=1e-9)
        ent = float(-(P * np.log(P)).sum())
        np.testing.assert_allclose(float(out.ent_reg_cost), primal - eps * ent, rtol=1e-7)


def _unbalanced_dual_reference(C, a, b, eps, rho_a, rho_b):
    """Brute force: maximise the unbalanced dual with L-BFGS (Chizat et al. 2018, eq. 3.4)."""
    n, m = C.shape

    def neg_dual(z):
        f, g = z[:n], z[n:]
        K = np.outer(a, b) * np.exp((f[:, None] + g[None, :] - C) / eps)
        ea, eb = np.exp(-f / rho_a), np.exp(-g / rho_b)
        d = -rho_a * (a * (ea - 1)).sum() - rho_b * (b * (eb - 1)).sum()
        d -= eps * (K.sum() - a.sum() * b.sum())  # generalised KL(P | a x b) mass term
        grad = np.concatenate([a * ea - K.sum(1), b * eb - K.sum(0)])
        return -d, -grad

    res = scipy.optimize.minimize(
        neg_dual,
        np.zeros(n + m),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 20000, "gtol": 1e-12, "ftol": 1e-15},
    )
    return -res.fun


@pytest.mark.parametrize("tau_a,tau_b", [(0.5, 0.5), (0.9, 1.0), (0.7, 0.95)])
def test_unbalanced_value_matches_brute_force_dual(problem, tau_a, tau_b):
    x, y, a, b = problem(n=7, m=5, d=2, seed=1)
    b = b * 1.7  # unequal masses are allowed once relaxed
    C = otcore.SqEuclidean().pairwise(x, y)
    eps = 0.5
    out = otcore.sinkhorn(
        otcore.Geometry(C), a, b, epsilon=eps, tau_a=tau_a, tau_b=tau_b, tol=1e-12, max_iter=100000
    )
    rho = lambda t: eps * t / (1 - t) if t < 1 else 1e8  # noqa: E731
    if tau_b == 1.0:  # hard constraint on b: keep masses equal
        b = b / b.sum() * a.sum()
        out = otcore.sinkhorn(
            otcore.Geometry(C),
            a,
            b,
            epsilon=eps,
            tau_a=tau_a,
            tau_b=tau_b,
            tol=1e-12,
            max_iter=100000,
        )
    ref = _unbalanced_dual_reference(C.numpy(), a.numpy(), b.numpy(), eps, rho(tau_a), rho(tau_b))
    np.testing.assert_allclose(float(out.value), ref, rtol=1e-5)


def test_balanced_unequal_mass_requires_relaxation(problem):
    x, y, a, b = problem(n=6, m=5, seed=2)
    with pytest.raises(ValueError, match="equal total mass"):
        otcore.sinkhorn(otcore.PointCloud(x, y), a, 2 * b, epsilon=0.1)
    out = otcore.sinkhorn(otcore.PointCloud(x, y), a, 2 * b, epsilon=0.1, tau_a=0.9, tau_b=0.9)
    assert out.converged and torch.isfinite(out.value)


def test_batched_equals_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 20, 3, generator=g, dtype=torch.float64)
    y = torch.randn(6, 15, 3, generator=g, dtype=torch.float64)
    a = torch.rand(6, 20, generator=g, dtype=torch.float64) + 0.1
    a = a / a.sum(-1, keepdim=True)
    kw = dict(epsilon=0.1, relative_epsilon="mean", tol=1e-9, max_iter=20000)
    ob = otcore.sinkhorn(otcore.PointCloud(x, y), a, **kw)
    assert ob.value.shape == (6,) and ob.f.shape == (6, 20) and bool(ob.converged.all())
    for i in range(6):
        oi = otcore.sinkhorn(otcore.PointCloud(x[i], y[i]), a[i], **kw)
        torch.testing.assert_close(ob.value[i], oi.value, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(ob.plan()[i], oi.plan(), rtol=1e-6, atol=1e-9)


def test_per_problem_epsilon_in_batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 10, 2, generator=g, dtype=torch.float64)
    eps = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    ob = otcore.sinkhorn(otcore.PointCloud(x, x.flip(1) + 1), epsilon=eps, tol=1e-9)
    for i in range(3):
        oi = otcore.sinkhorn(
            otcore.PointCloud(x[i], x[i].flip(0) + 1), epsilon=float(eps[i]), tol=1e-9
        )
        torch.testing.assert_close(ob.value[i], oi.value, rtol=1e-8, atol=1e-10)


def _value_of(x, y, a, b, grad="envelope"):
    return otcore.sinkhorn(
        otcore.PointCloud(x, y), a, b, epsilon=0.3, tol=1e-12, max_iter=100000, grad=grad
    ).value


def test_envelope_gradients_match_central_finite_differences(problem):
    x, y, a, b = problem(n=12, m=9, d=2, seed=4)
    for wrt in ("x", "y", "a"):
        args = {"x": x.clone(), "y": y.clone(), "a": a.clone(), "b": b.clone()}
        args[wrt].requires_grad_(True)
        (grad,) = torch.autograd.grad(_value_of(**args), args[wrt])
        d = torch.randn(
            args[wrt].shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64
        )
        if wrt == "a":  # stay on the simplex: centred perturbations, sum preserved
            d = d - d.mean()
        h = 1e-6
        plus = {**args, wrt: args[wrt].detach() + h * d}
        minus = {**args, wrt: args[wrt].detach() - h * d}
        fd = (_value_of(**plus) - _value_of(**minus)) / (2 * h)
        np.testing.assert_allclose(float((grad * d).sum()), float(fd), rtol=1e-5, atol=1e-8)


def test_envelope_equals_implicit_and_unrolled_gradient(problem):
    x, y, a, b = problem(n=15, m=12, d=2, seed=6)
    grads = {}
    for mode in ("envelope", "implicit", "unroll"):
        xx, aa = x.clone().requires_grad_(), a.clone().requires_grad_()
        grads[mode] = torch.autograd.grad(_value_of(xx, y, aa, b, grad=mode), (xx, aa))
    for mode in ("implicit", "unroll"):
        torch.testing.assert_close(grads[mode][0], grads["envelope"][0], rtol=1e-7, atol=1e-9)
        ga, ge = grads[mode][1], grads["envelope"][1]  # weights: up to an additive constant
        torch.testing.assert_close(ga - ga.mean(), ge - ge.mean(), rtol=1e-7, atol=1e-9)


def test_implicit_plan_gradient_matches_finite_differences(problem):
    x, y, a, b = problem(n=8, m=7, d=2, seed=7)
    w = torch.randn(8, 7, generator=torch.Generator().manual_seed(8), dtype=torch.float64)

    def plan_loss(xx, grad):
        out = otcore.sinkhorn(
            otcore.PointCloud(xx, y), a, b, epsilon=0.5, tol=1e-13, max_iter=100000, grad=grad
        )
        return (out.plan() * w).sum()

    xx = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(plan_loss(xx, "implicit"), xx)
    d = torch.randn(x.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    h = 1e-6
    fd = (plan_loss(x + h * d, "envelope") - plan_loss(x - h * d, "envelope")) / (2 * h)
    np.testing.assert_allclose(float((g * d).sum()), float(fd), rtol=1e-5, atol=1e-9)


def test_grad_mode_is_restored(problem):
    x, y, _, _ = problem(seed=1)
    with torch.no_grad():
        otcore.sinkhorn(otcore.PointCloud(x, y), epsilon=0.1)
        assert not torch.is_grad_enabled()
    otcore.sinkhorn(otcore.PointCloud(x, y), epsilon=0.1, grad="unroll")
    assert torch.is_grad_enabled()


def test_envelope_keeps_no_graph_through_iterations(problem):
    x, y, _, _ = problem(seed=2)
    x.requires_grad_(True)
    out = otcore.sinkhorn(otcore.PointCloud(x, y), epsilon=0.1)
    assert out.value.requires_grad
    assert not out.f.requires_grad and not out.g.requires_grad


def test_warm_start_needs_fewer_iterations(problem):
    x, y, a, b = problem(n=60, m=50, seed=3)
    geom = otcore.PointCloud(x, y)
    cold = otcore.sinkhorn(geom, a, b, epsilon=0.05, relative_epsilon="mean", tol=1e-6)
    warm = otcore.sinkhorn(
        geom, a, b, epsilon=0.05, relative_epsilon="mean", tol=1e-6, init=(cold.f, cold.g)
    )
    assert warm.n_iters < cold.n_iters
    torch.testing.assert_close(warm.value, cold.value, rtol=1e-6, atol=1e-9)


def test_apply_transport_and_marginals_agree_with_dense_plan(problem):
    x, y, a, b = problem(n=20, m=16, d=3, seed=4)
    out = otcore.sinkhorn(otcore.PointCloud(x, y), a, b, epsilon=0.2, tol=1e-10)
    P = out.plan()
    v = torch.randn(16, 4, dtype=torch.float64)
    torch.testing.assert_close(out.apply(v), P @ v)
    torch.testing.assert_close(out.apply(torch.ones(20, dtype=torch.float64), axis=0), P.sum(0))
    torch.testing.assert_close(out.transport(), (P @ y) / P.sum(1, keepdim=True))
    r, c = out.marginals
    torch.testing.assert_close(r, a, atol=1e-9, rtol=0)
    torch.testing.assert_close(c, b, atol=1e-9, rtol=0)


def test_small_epsilon_identity_matching_transports_points_onto_themselves():
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = otcore.sinkhorn(
        otcore.PointCloud(x, x), epsilon=1e-3, relative_epsilon="mean", tol=1e-6, max_iter=20000
    )
    torch.testing.assert_close(out.transport(), x, atol=1e-3, rtol=0)


@pytest.mark.parametrize("cost", ["sqeuclidean", "euclidean", "cosine", "dot"])
def test_every_cost_solves_and_matches_its_dense_matrix(cost, problem):
    x, y, a, b = problem(n=15, m=11, d=3, seed=5)
    c = otcore.get_cost(cost)
    out = otcore.sinkhorn(otcore.PointCloud(x, y, cost=cost), a, b, epsilon=0.1, tol=1e-9)
    ref = otcore.sinkhorn(otcore.Geometry(c.pairwise(x, y)), a, b, epsilon=0.1, tol=1e-9)
    torch.testing.assert_close(out.value, ref.value)
    torch.testing.assert_close(
        c.elementwise(x, y[:15].repeat(2, 1)[:15]),
        torch.diagonal(c.pairwise(x, y[:15].repeat(2, 1)[:15])),
    )


@pytest.mark.parametrize("scale", ["mean", "max", "std", 2.5])
def test_scale_cost_divides_by_the_statistic(scale, problem):
    x, y, _, _ = problem(seed=6)
    C = otcore.SqEuclidean().pairwise(x, y)
    stat = {"mean": C.mean(), "max": C.max(), "std": C.std(correction=0), 2.5: 2.5}[scale]
    torch.testing.assert_close(otcore.PointCloud(x, y, scale_cost=scale).cost_matrix, C / stat)


def test_float32_small_epsilon_has_no_nan_or_inf():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(200, 2, generator=g), torch.rand(200, 2, generator=g)
    out = otcore.sinkhorn(
        otcore.PointCloud(x, y),
        epsilon=1e-4,
        relative_epsilon="mean",
        tol=1e-3,
        max_iter=3000,
        warn=False,
    )
    for t in (out.f, out.g, out.value, out.primal_cost, out.plan()):
        assert torch.isfinite(t).all()
    assert out.f.dtype == torch.float32


def test_half_precision_inputs_are_computed_in_float32(problem):
    x, y, _, _ = problem(seed=7)
    out = otcore.sinkhorn(otcore.PointCloud(x.half(), y.bfloat16()), epsilon=0.1)
    assert out.value.dtype == torch.float32 and out.converged


def test_non_convergence_warns_and_flags(problem):
    x, y, _, _ = problem(seed=8)
    with pytest.warns(otcore.ConvergenceWarning, match="did not reach"):
        out = otcore.sinkhorn(
            otcore.PointCloud(x, y), epsilon=1e-3, relative_epsilon="mean", max_iter=12, tol=1e-9
        )
    assert out.converged is False and out.n_iters == 12 and len(out.errors) >= 1


def test_outputs_follow_input_device_and_dtype(problem):
    x, y, _, _ = problem(seed=9)
    out = otcore.sinkhorn(otcore.PointCloud(x, y), epsilon=0.1)
    assert out.f.dtype == torch.float64 and out.f.device == x.device


def test_symmetric_updates_equal_alternating_updates(problem):
    x, _, a, _ = problem(n=30, m=30, d=2, seed=10)
    kw = dict(epsilon=0.5, relative_epsilon="mean", tol=1e-9, max_iter=20000)
    sym = otcore.sinkhorn(otcore.PointCloud(x, x), a, a, symmetric=True, **kw)
    alt = otcore.sinkhorn(otcore.PointCloud(x, x), a, a, newton=False, **kw)
    assert sym.converged and sym.n_iters < 2 * alt.n_iters  # one soft-min per iteration vs two
    torch.testing.assert_close(sym.value, alt.value, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(sym.plan(), alt.plan(), rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="symmetric=True"):
        otcore.sinkhorn(otcore.PointCloud(x, x), a, a.flip(0), symmetric=True, **kw)


@pytest.mark.parametrize("mass", [1e-3, 1e3])
def test_tol_is_relative_to_the_mass(problem, mass):
    # with an absolute tol, a total mass of 1e-3 reported converged=True at a 23 % relative
    # marginal violation; the violation and `errors` are now divided by the mass
    x, y, a, b = problem(40, 35, dtype=torch.float64, seed=3)
    kw = dict(epsilon=0.01, relative_epsilon="mean", newton=False)
    unit = otcore.sinkhorn(otcore.PointCloud(x, y), a, b, **kw)
    out = otcore.sinkhorn(otcore.PointCloud(x, y), a * mass, b * mass, **kw)
    assert out.converged and out.n_iters == unit.n_iters
    torch.testing.assert_close(out.errors, unit.errors, rtol=1e-6, atol=0)
    P = out.plan()
    viol = ((P.sum(1) - a * mass).abs().sum() + (P.sum(0) - b * mass).abs().sum()) / mass
    assert float(viol) <= 1e-3
    torch.testing.assert_close(float(viol), float(out.errors[-1]), rtol=1e-6, atol=0)
    # the Newton finish measures its violation relative to the mass too
    newton = otcore.sinkhorn(
        otcore.PointCloud(x, y),
        a * mass,
        b * mass,
        epsilon=0.01,
        relative_epsilon="mean",
        tol=1e-6,
        newton=True,
    )
    P = newton.plan()
    viol = ((P.sum(1) - a * mass).abs().sum() + (P.sum(0) - b * mass).abs().sum()) / mass
    assert newton.converged and float(viol) <= 1e-6
