"""The dense kernel snapshot: soft-mins and plan products reused as matrix-vector products.

Above 2¹⁶ entries, ``Geometry.lse`` keeps the matrix its fast path exponentiated and answers
later reductions at the same ε with one product on it. These tests check that every answer
equals the exact log-sum-exp, whether the snapshot was reused or the exact path took over.
"""

import pytest
import torch

import otcore


def _geometry(n=300, m=250, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=dtype)
    y = torch.randn(m, 3, generator=g, dtype=dtype) + 0.5
    geom = otcore.PointCloud(x, y)
    eps = torch.tensor([0.01 * float(geom.mean_cost())], dtype=dtype)
    return geom, eps, g


def _spy_products(geom):
    """Record each ``_snapshot_product`` answer of ``geom`` (None: refused, exact path ran)."""
    calls, real = [], geom._snapshot_product

    def spy(*args):
        calls.append(real(*args))
        return calls[-1]

    geom._snapshot_product = spy
    return calls


def _exact(geom, eps, h, axis):
    S = -geom.cost_matrix.unsqueeze(0) / eps
    return torch.logsumexp(S + (h[:, None, :] if axis == 1 else h[:, :, None]), dim=axis + 1)


def _converged_potentials(geom, eps):
    out = otcore.sinkhorn(geom, epsilon=eps[0], tol=1e-6, max_iter=20000)
    geom._snap = None  # drop the solver's snapshot: each test takes its own
    return out.f.unsqueeze(0), out.g.unsqueeze(0)


@pytest.mark.parametrize("axis", [1, 0])
def test_reused_soft_min_equals_exact_log_sum_exp(axis):
    geom, eps, g = _geometry()
    f, gg = _converged_potentials(geom, eps)
    log_a = torch.full_like(f, -torch.log(torch.tensor(300.0, dtype=f.dtype)))
    log_b = torch.full_like(gg, -torch.log(torch.tensor(250.0, dtype=f.dtype)))
    geom.lse(eps, gg / eps + log_b, 1, shift=f / eps)  # an exact fast-path call: snapshot
    snap = geom._snap
    assert snap is not None
    calls = _spy_products(geom)
    h0 = (gg / eps + log_b) if axis == 1 else (f / eps + log_a)
    for k, scale in enumerate((0.0, 0.5, 5.0)):  # drifts of up to a few units of the exponent
        h = h0 + scale * torch.randn(h0.shape, generator=g, dtype=h0.dtype)
        got = geom.lse(eps, h, axis, shift=None)
        assert geom._snap is snap  # answered by the product, no new snapshot
        assert len(calls) == k + 1 and calls[-1] is not None
        torch.testing.assert_close(got, _exact(geom, eps, h, axis), rtol=0, atol=1e-10)


def test_one_dominant_column_is_still_exact():
    geom, eps, _ = _geometry()
    f, gg = _converged_potentials(geom, eps)
    geom.lse(eps, gg / eps, 1, shift=f / eps)
    h = gg / eps
    h[0, 0] += 2000.0  # one column dominates every row, far past the snapshot's centre
    got = geom.lse(eps, h, 1, shift=f / eps)
    torch.testing.assert_close(got, _exact(geom, eps, h, 1), rtol=1e-12, atol=1e-9)


def test_snapshot_near_the_clamp_floor_falls_back_to_the_exact_path():
    geom, eps, _ = _geometry()
    f, gg = _converged_potentials(geom, eps)
    # A shift 690 too low: the snapshot's entries sit at the clamp floor (e^-700).
    geom.lse(eps, gg / eps, 1, shift=f / eps - 690.0)
    assert geom._snap is not None
    calls = _spy_products(geom)
    got = geom.lse(eps, gg / eps + 0.1, 1)
    assert calls == [None]  # the product was tried and refused
    torch.testing.assert_close(got, _exact(geom, eps, gg / eps + 0.1, 1), rtol=1e-12, atol=0)


@pytest.mark.parametrize("axis", [1, 0])
def test_reused_plan_product_equals_dense_plan(axis):
    geom, eps, g = _geometry()
    f, gg = _converged_potentials(geom, eps)
    geom.lse(eps, gg / eps, 1, shift=f / eps)
    assert geom._snap is not None
    u = f / eps - torch.log(torch.tensor(300.0, dtype=f.dtype)) + 0.3
    v = gg / eps - torch.log(torch.tensor(250.0, dtype=f.dtype)) - 0.2
    vec = torch.randn(1, geom.m if axis == 1 else geom.n, 4, generator=g, dtype=f.dtype)
    K = torch.exp(u[:, :, None] + v[:, None, :] - geom.cost_matrix.unsqueeze(0) / eps)
    want = K @ vec if axis == 1 else K.transpose(1, 2) @ vec
    calls = _spy_products(geom)
    got = geom.kernel_apply(eps, u, v, vec, axis)
    assert len(calls) == 1 and calls[0] is not None  # answered from the snapshot
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)


def test_float32_snapshot_matches_float64_reference():
    geom, eps, g = _geometry(dtype=torch.float32)
    f, gg = _converged_potentials(geom, eps)
    geom.lse(eps, gg / eps, 1, shift=f / eps)
    assert geom._snap is not None
    h = gg / eps + 0.5 * torch.randn(gg.shape, generator=g)
    calls = _spy_products(geom)
    got = geom.lse(eps, h, 1)
    assert len(calls) == 1 and calls[0] is not None
    g64 = otcore.PointCloud(geom.x[0].double(), geom.y[0].double())
    want = _exact(g64, eps.double(), h.double(), 1)
    exact32 = _exact(geom, eps, h, 1).double()  # the float32 log-sum-exp's own rounding
    err = float((got.double() - want).abs().max())
    assert err <= 4 * max(float((exact32 - want).abs().max()), 1e-6 * float(want.abs().max()))


def test_rows_far_apart_in_float32_keep_the_reused_update_exact():
    # Snapshot rows shifted by +50 (half) and -50 (half): a g-update with h = 0 then weighs
    # the +50 rows by e^-100, below float32's smallest normal, so the product alone would
    # drop half of every column's mass (log 128 instead of log 256). It must not be used.
    n = 256
    geom, eps = otcore.Geometry(torch.zeros(n, n)), torch.ones(1)
    shift = torch.cat([torch.full((n // 2,), 50.0), torch.full((n // 2,), -50.0)])[None]
    geom.lse(eps, torch.zeros(1, n), 1, shift=shift)
    assert geom._snap is not None
    calls = _spy_products(geom)
    got = geom.lse(eps, torch.zeros(1, n), 0)
    assert calls == [None]  # refused: the flushed weights could carry most of the mass
    torch.testing.assert_close(got, torch.full((1, n), float(torch.log(torch.tensor(256.0)))))


def test_small_problems_take_no_snapshot():
    geom, eps, _ = _geometry(n=60, m=50)
    f = torch.zeros(1, 60, dtype=torch.float64)
    geom.lse(eps, torch.zeros(1, 50, dtype=torch.float64), 1, shift=f)
    assert geom._snap is None


def test_sinkhorn_on_snapshots_reaches_the_unique_gibbs_optimum():
    # A Gibbs-form plan exp((f ⊕ g − C)/ε)·a⊗b with both marginals right is the optimum; the
    # plan here is formed densely (no snapshot), so it checks the products the solver used.
    geom, eps, _ = _geometry(n=300, m=260)
    out = otcore.sinkhorn(geom, epsilon=eps[0], tol=1e-10, max_iter=100000)
    assert out.converged and out.geom._snap is not None
    P = out.plan()
    torch.testing.assert_close(P.sum(1), out.a, rtol=0, atol=1e-10)
    torch.testing.assert_close(P.sum(0), out.b, rtol=0, atol=1e-10)
    primal = (P * geom.cost_matrix).sum() + eps[0] * (P * (P / out.a[:, None] / out.b).log()).sum()
    torch.testing.assert_close(out.value, primal, rtol=1e-9, atol=0)


def test_gromov_wasserstein_low_rank_with_snapshots_equals_dense_path():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 3, generator=g, dtype=torch.float64)
    R = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))[0]
    y = x @ R + 0.05 * torch.randn(300, 3, generator=g, dtype=torch.float64)
    kw = dict(epsilon=0.1, relative_epsilon="mean", inner_tol=1e-6, tol=1e-6, max_iter=100)
    lr = otcore.gromov_wasserstein(otcore.PointCloud(x), otcore.PointCloud(y), low_rank=True, **kw)
    de = otcore.gromov_wasserstein(otcore.PointCloud(x), otcore.PointCloud(y), low_rank=False, **kw)
    assert lr.low_rank and not de.low_rank and lr.converged and de.converged
    assert lr.linear_output.geom._snap is not None  # the low-rank path ran on snapshots
    torch.testing.assert_close(lr.value, de.value, rtol=1e-5, atol=0)
    torch.testing.assert_close(lr.plan(), de.plan(), rtol=0, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dense_kernel_has_no_subnormal_entries(dtype):
    # Exponents spread over [-800, 0]: float32 underflows below -87 (subnormal to -103),
    # float64 below -708 (subnormal to -745). Subnormals make CPU products ~100x slower.
    C = torch.linspace(0.0, 800.0, 400 * 300, dtype=dtype).reshape(400, 300)
    geom = otcore.Geometry(C)
    eps = torch.ones(1, dtype=dtype)
    K = geom.kernel(eps, torch.zeros(1, 400, dtype=dtype), torch.zeros(1, 300, dtype=dtype))
    tiny = torch.finfo(dtype).tiny
    assert not bool(((K > 0) & (K < tiny)).any())
    assert bool((K[K > 0] >= tiny).all()) and bool((K == 0).any())
    torch.testing.assert_close(K, torch.exp(-C).unsqueeze(0), rtol=1e-6, atol=2 * tiny)
