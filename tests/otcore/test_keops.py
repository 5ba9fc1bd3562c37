"""Dense and KeOps backends agree (few distinct formulas: d = 3, float32, one cost)."""

import pytest
import torch

import otcore

pytestmark = [
    pytest.mark.keops,
    pytest.mark.skipif(not otcore.keops_available(), reason="pykeops not installed"),
]


@pytest.mark.parametrize("n,m", [(200, 150), (600, 500)])
def test_keops_equals_dense(n, m):
    g = torch.Generator().manual_seed(n)
    x, y = torch.randn(n, 3, generator=g), torch.randn(m, 3, generator=g) + 0.5
    a = torch.rand(n, generator=g) + 0.1
    a = a / a.sum()
    kw = dict(epsilon=0.05, relative_epsilon="mean", tol=1e-4)
    dense = otcore.sinkhorn(otcore.PointCloud(x, y, backend="dense"), a, **kw)
    lazy = otcore.sinkhorn(otcore.PointCloud(x, y, backend="keops"), a, **kw)
    assert lazy.converged and dense.converged
    torch.testing.assert_close(lazy.value, dense.value, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(lazy.primal_cost, dense.primal_cost, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(lazy.transport(), dense.transport(), rtol=1e-3, atol=1e-3)
    # potentials agree up to the gauge (f + c, g - c)
    df = lazy.f - dense.f
    torch.testing.assert_close(df - df.mean(), torch.zeros_like(df), atol=2e-3, rtol=0)


def test_keops_envelope_gradient_equals_dense():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(300, 3, generator=g), torch.randn(250, 3, generator=g)
    grads = []
    for backend in ("dense", "keops"):
        xx = x.clone().requires_grad_()
        out = otcore.sinkhorn(
            otcore.PointCloud(xx, y, backend=backend),
            epsilon=0.1,
            relative_epsilon="mean",
            tol=1e-5,
        )
        grads.append(torch.autograd.grad(out.value, xx)[0])
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-5)


def test_keops_plan_is_never_formed():
    x = torch.randn(50, 3)
    out = otcore.sinkhorn(otcore.PointCloud(x, x + 1, backend="keops"), epsilon=0.1)
    with pytest.raises(ValueError, match="never formed"):
        out.plan()


def test_keops_std_of_far_apart_clouds_has_no_cancellation():
    # mean(C²) − mean(C)² lost 2e-3 of the std of clouds 1000 apart (mean/std ≈ 600)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(200, 3, generator=g), torch.randn(150, 3, generator=g) + 1000.0
    ref = ((x.double()[:, None] - y.double()[None]) ** 2).sum(-1).std(correction=0)
    lazy = otcore.PointCloud(x, y, backend="keops").std_cost()
    torch.testing.assert_close(lazy[0].double(), ref, rtol=1e-4, atol=0)
