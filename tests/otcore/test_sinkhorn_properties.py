"""Property-based tests of Sinkhorn (hypothesis)."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import otcore

SETTINGS = settings(max_examples=25, deadline=None)


def l1_violation(out):
    """L1 marginal violation recomputed by the test from the dense plan, in float64."""
    P = out.plan().double()
    return float((P.sum(-1) - out.a).abs().sum() + (P.sum(-2) - out.b).abs().sum())


@st.composite
def problems(draw):
    n = draw(st.integers(2, 12))
    m = draw(st.integers(2, 12))
    d = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * draw(st.floats(0.1, 5.0))
    y = torch.randn(m, d, generator=g, dtype=torch.float64) + draw(st.floats(-2.0, 2.0))
    a = torch.rand(n, generator=g, dtype=torch.float64) + 0.05
    b = torch.rand(m, generator=g, dtype=torch.float64) + 0.05
    eps = draw(st.floats(0.02, 1.0))
    return x, y, a / a.sum(), b / b.sum(), eps


@SETTINGS
@given(problems(), st.sampled_from([1e-3, 1e-5]))
def test_marginal_violation_within_tol_at_convergence(problem, tol):
    x, y, a, b, eps = problem
    out = otcore.sinkhorn(
        otcore.PointCloud(x, y),
        a,
        b,
        epsilon=eps,
        relative_epsilon="mean",
        tol=tol,
        max_iter=20000,
    )
    assert out.converged
    assert l1_violation(out) <= tol * 1.01


@SETTINGS
@given(problems(), st.integers(0, 2**31 - 1))
def test_value_invariant_under_permutation(problem, seed):
    x, y, a, b, eps = problem
    g = torch.Generator().manual_seed(seed)
    pi, pj = torch.randperm(len(x), generator=g), torch.randperm(len(y), generator=g)
    kw = dict(epsilon=eps, relative_epsilon="mean", tol=1e-8, max_iter=20000)
    v1 = otcore.sinkhorn(otcore.PointCloud(x, y), a, b, **kw).value
    v2 = otcore.sinkhorn(otcore.PointCloud(x[pi], y[pj]), a[pi], b[pj], **kw).value
    torch.testing.assert_close(v1, v2, rtol=1e-6, atol=1e-9)


@SETTINGS
@given(problems(), st.lists(st.floats(-10, 10), min_size=3, max_size=3))
def test_sqeuclidean_plan_invariant_under_translation(problem, shift):
    x, y, a, b, eps = problem
    t = torch.tensor(shift[: x.shape[1]], dtype=x.dtype)
    kw = dict(epsilon=eps, tol=1e-9, max_iter=20000)  # absolute ε: same problem up to f, g shifts
    P1 = otcore.sinkhorn(otcore.PointCloud(x, y), a, b, **kw).plan()
    P2 = otcore.sinkhorn(otcore.PointCloud(x + t, y + t), a, b, **kw).plan()
    torch.testing.assert_close(P1, P2, rtol=1e-5, atol=1e-8)


@SETTINGS
@given(problems())
def test_divergence_nonnegative_symmetric_zero_on_identical(problem):
    x, y, a, b, eps = problem
    kw = dict(epsilon=5 * eps, tol=1e-8, max_iter=5000)
    sxy = otcore.sinkhorn_divergence(x, y, a, b, **kw)
    syx = otcore.sinkhorn_divergence(y, x, b, a, **kw)
    assert float(sxy) >= -1e-7  # >= 0 up to the solvers' tolerance
    torch.testing.assert_close(sxy, syx, rtol=1e-6, atol=1e-9)
    assert float(otcore.sinkhorn_divergence(x, x, a, a, **kw)) == 0.0
