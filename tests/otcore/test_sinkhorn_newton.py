"""Newton steps on the semi-dual after the Sinkhorn warm-up (``sinkhorn(newton=...)``)."""

import importlib

import pytest
import torch

import otcore

sinkhorn_module = importlib.import_module("otcore.sinkhorn")  # the function shadows the module


def _count_newton(monkeypatch):
    """Spy on the Newton phase: returns the list of step counts of each call."""
    calls, inner = [], sinkhorn_module._newton

    def spy(*args):
        out = inner(*args)
        calls.append(out[3])
        return out

    monkeypatch.setattr(sinkhorn_module, "_newton", spy)
    return calls


def _problem(n=50, m=40, seed=0, dtype=torch.float64, zeros=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=dtype)
    y = torch.randn(m, 3, generator=g, dtype=dtype) + 0.3
    a = torch.rand(n, generator=g, dtype=dtype) + 0.1
    b = torch.rand(m, generator=g, dtype=dtype) + 0.1
    if zeros:
        a[:5] = 0.0
        b[-3:] = 0.0
    return otcore.PointCloud(x, y), a / a.sum(), b / b.sum()


@pytest.mark.parametrize("zeros", [False, True])
def test_newton_reaches_the_sinkhorn_fixed_point_in_fewer_iterations(zeros):
    geom, a, b = _problem(zeros=zeros)
    kw = dict(epsilon=0.005, relative_epsilon="mean", tol=1e-9, max_iter=100000)
    plain = otcore.sinkhorn(geom, a, b, newton=False, **kw)
    fast = otcore.sinkhorn(geom, a, b, newton=True, **kw)
    assert plain.converged and fast.converged
    assert fast.n_iters < plain.n_iters / (1.5 if zeros else 4)  # measured: 221/401, 141/711
    torch.testing.assert_close(fast.plan(), plain.plan(), rtol=0, atol=1e-9)
    torch.testing.assert_close(fast.value, plain.value, rtol=1e-9, atol=0)
    P = fast.plan()
    torch.testing.assert_close(P.sum(1), a, rtol=0, atol=1e-9)
    torch.testing.assert_close(P.sum(0), b, rtol=0, atol=1e-9)
    if zeros:
        assert float(P[:5].abs().max()) == 0.0 and float(P[:, -3:].abs().max()) == 0.0


def test_newton_in_float32_meets_the_tolerance(monkeypatch):
    calls = _count_newton(monkeypatch)
    geom, a, b = _problem(dtype=torch.float32)
    out = otcore.sinkhorn(geom, a, b, epsilon=0.005, relative_epsilon="mean", tol=1e-4)
    assert out.converged and out.f.dtype == torch.float32
    assert calls and sum(calls) > 1  # the default ran Newton steps
    P = out.plan().double()
    viol = float((P.sum(1) - a).abs().sum() + (P.sum(0) - b).abs().sum())
    assert viol <= 1.5e-4  # the reported violation, recomputed in float64


def test_float32_newton_steps_survive_a_nearly_singular_hessian(monkeypatch):
    # At ε = 0.005·mean the plan of 128 Gaussian points is nearly block-diagonal: its Hessian
    # has eigenvalues ~1e-11 of its largest, below float32's rounding of the gradient b − Pᵀ1.
    # With a float64-sized ridge (1e-12) the steps failed and Sinkhorn took 4740 iterations;
    # a ridge of NEWTON_RIDGE float32 ulps keeps the Newton phase working (34–37).
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 10, generator=g, dtype=torch.float64).float()
    y = torch.randn(128, 10, generator=g, dtype=torch.float64).float()
    calls = _count_newton(monkeypatch)
    kw = dict(epsilon=0.005, relative_epsilon="mean", tol=1e-5, max_iter=100000)
    out = otcore.sinkhorn(otcore.PointCloud(x, y), **kw)
    assert out.converged and calls and out.n_iters < 200
    plain = otcore.sinkhorn(otcore.PointCloud(x, y), newton=False, **kw)
    assert plain.converged and out.n_iters < plain.n_iters / 5


def test_batched_newton_equals_one_problem_at_a_time(monkeypatch):
    geoms = [_problem(n=30, m=30, seed=s) for s in range(3)]
    x = torch.stack([g.x[0] for g, _, _ in geoms])
    y = torch.stack([g.y[0] for g, _, _ in geoms])
    a = torch.stack([a for _, a, _ in geoms])
    b = torch.stack([b for _, _, b in geoms])
    # unequal difficulty: the ε = 2 problem converges long before the ε = 0.01 one, so Newton
    # steps run on a batch whose members are partly done
    eps = torch.tensor([0.01, 0.05, 2.0], dtype=torch.float64)
    kw = dict(tol=1e-10, max_iter=50000, newton=True)
    calls = _count_newton(monkeypatch)
    batch = otcore.sinkhorn(otcore.PointCloud(x, y), a, b, epsilon=eps, **kw)
    assert bool(batch.converged.all()) and calls
    for k in range(3):
        one = otcore.sinkhorn(otcore.PointCloud(x[k], y[k]), a[k], b[k], epsilon=eps[k], **kw)
        torch.testing.assert_close(batch.plan()[k], one.plan(), rtol=0, atol=1e-10)


def test_default_uses_newton_for_single_problems_up_to_256_points_only():
    small, a, b = _problem(n=100, m=100)
    kw = dict(epsilon=0.005, relative_epsilon="mean", tol=1e-6, max_iter=100000)
    auto = otcore.sinkhorn(small, a, b, **kw)
    assert auto.n_iters == otcore.sinkhorn(small, a, b, newton=True, **kw).n_iters
    assert auto.n_iters < otcore.sinkhorn(small, a, b, newton=False, **kw).n_iters
    big, a, b = _problem(n=300, m=260)
    auto = otcore.sinkhorn(big, a, b, **kw)
    assert auto.n_iters == otcore.sinkhorn(big, a, b, newton=False, **kw).n_iters
    batch = otcore.PointCloud(small.x.expand(2, -1, -1), small.y.expand(2, -1, -1))
    auto = otcore.sinkhorn(batch, a=None, b=None, **kw)
    assert auto.n_iters == otcore.sinkhorn(batch, newton=False, **kw).n_iters


def test_newton_is_refused_where_it_does_not_apply():
    geom, a, b = _problem(n=20, m=20)
    with pytest.raises(ValueError, match="newton=True"):
        otcore.sinkhorn(geom, a, b, epsilon=0.1, tau_a=0.9, newton=True)
    with pytest.raises(ValueError, match="newton=True"):
        otcore.sinkhorn(geom, a, a[:20], epsilon=0.1, symmetric=True, newton=True)
    with pytest.raises(ValueError, match="newton=True"):
        otcore.sinkhorn(geom, a, b, epsilon=0.1, grad="unroll", newton=True)
    # where the default would pick it, unbalanced problems just run plain Sinkhorn
    out = otcore.sinkhorn(geom, a, b, epsilon=0.1, tau_a=0.9, tau_b=0.9)
    assert out.converged
