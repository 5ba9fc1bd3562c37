"""Closed-form 1-D optimal transport (otcore.univariate)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import wasserstein_distance

from otcore.univariate import (
    monotone_map,
    piecewise_linear,
    quantile_barycenter,
    quantile_function,
    wasserstein_1d,
)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), st.integers(0, 10_000))
def test_w1_matches_scipy_on_weighted_samples(n, m, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=n), rng.normal(1.0, 2.0, size=m)
    a, b = rng.random(n) + 0.01, rng.random(m) + 0.01
    ours = wasserstein_1d(torch.tensor(x), torch.tensor(y), torch.tensor(a), torch.tensor(b), p=1)
    assert float(ours) == pytest.approx(wasserstein_distance(x, y, a, b), rel=1e-9, abs=1e-12)


def test_w2_equal_sizes_is_sorted_closed_form_and_weighted_path_agrees():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 40, dtype=torch.float64, generator=g)
    y = torch.randn(3, 40, dtype=torch.float64, generator=g) * 3
    closed = ((x.sort(-1).values - y.sort(-1).values) ** 2).mean(-1)
    torch.testing.assert_close(wasserstein_1d(x, y), closed)
    ones = torch.ones(40, dtype=torch.float64)
    torch.testing.assert_close(wasserstein_1d(x, y, ones, ones), closed)


def test_integer_weights_equal_repeated_atoms():
    x = torch.tensor([0.0, 1.0, 5.0], dtype=torch.float64)
    y = torch.tensor([2.0, 3.0], dtype=torch.float64)
    a = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)
    rep = torch.tensor([0.0, 1.0, 1.0, 5.0], dtype=torch.float64)
    w_rep = wasserstein_1d(rep, torch.tensor([2.0, 2.0, 3.0, 3.0], dtype=torch.float64))
    assert float(wasserstein_1d(x, y, a, None)) == pytest.approx(float(w_rep))


def test_quantile_function_matches_numpy_inverted_cdf():
    rng = np.random.default_rng(1)
    x = rng.normal(size=57)
    u = np.linspace(0.001, 1.0, 200)
    ours = quantile_function(torch.tensor(x), torch.tensor(u)).numpy()
    np.testing.assert_allclose(ours, np.quantile(x, u, method="inverted_cdf"))


def test_monotone_map_is_sorted_matching_and_monotone_for_weights():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(30, dtype=torch.float64, generator=g)
    y = torch.randn(30, dtype=torch.float64, generator=g)
    t = monotone_map(x, y)
    torch.testing.assert_close(t[x.argsort()], y.sort().values)
    a = torch.rand(30, dtype=torch.float64, generator=g) + 0.1
    b = torch.rand(45, dtype=torch.float64, generator=g) + 0.1
    y2 = torch.randn(45, dtype=torch.float64, generator=g)
    t2 = monotone_map(x, y2, a, b)
    assert bool((t2[x.argsort()].diff() >= -1e-12).all())
    # the barycentric projection preserves the mean: Σ a_i T(x_i) = Σ b_j y_j (normalised)
    lhs = (a / a.sum() * t2).sum()
    rhs = (b / b.sum() * y2).sum()
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-10)


def test_quantile_barycenter_of_gaussians_averages_means_and_stds():
    g = torch.Generator().manual_seed(3)
    base = torch.randn(20_000, dtype=torch.float64, generator=g)
    xs = torch.stack([base * 1.0 - 2.0, base * 3.0 + 4.0])
    bar = quantile_barycenter(xs, torch.tensor([0.25, 0.75]))
    assert float(bar.mean()) == pytest.approx(0.25 * -2 + 0.75 * 4, abs=0.05)
    assert float(bar.std()) == pytest.approx(0.25 * 1 + 0.75 * 3, rel=0.02)
    u = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    at_u = quantile_barycenter(xs, torch.tensor([0.25, 0.75]), u=u)
    expected = 0.25 * quantile_function(xs[0], u) + 0.75 * quantile_function(xs[1], u)
    torch.testing.assert_close(at_u, expected)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000))
def test_piecewise_linear_matches_numpy_interp_batched_and_by_row(seed):
    rng = np.random.default_rng(seed)
    xp = np.sort(rng.normal(size=(4, 9)), axis=1)
    fp = rng.normal(size=(4, 9))
    q = rng.normal(scale=2, size=(4, 15))
    got = piecewise_linear(torch.tensor(q), torch.tensor(xp), torch.tensor(fp)).numpy()
    want = np.stack([np.interp(q[r], xp[r], fp[r]) for r in range(4)])
    np.testing.assert_allclose(got, want, atol=1e-12)
    rows = rng.integers(0, 4, size=33)
    qq = rng.normal(scale=2, size=33)
    got = piecewise_linear(
        torch.tensor(qq), torch.tensor(xp), torch.tensor(fp), row=torch.tensor(rows)
    ).numpy()
    want = np.array([np.interp(v, xp[r], fp[r]) for v, r in zip(qq, rows)])
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_dtypes_and_gradients():
    x = torch.randn(50, dtype=torch.float16)
    y = torch.randn(50, dtype=torch.float16)
    assert wasserstein_1d(x, y).dtype == torch.float32
    x32 = torch.randn(50, requires_grad=True)
    w = wasserstein_1d(x32, torch.randn(60), p=2)
    (g,) = torch.autograd.grad(w, x32)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: wasserstein_1d(torch.tensor([float("nan")]), torch.tensor([1.0])), "`x`.*NaN"),
        (lambda: wasserstein_1d(torch.tensor([1.0]), torch.tensor([1.0]), p=0.5), "`p`"),
        (
            lambda: wasserstein_1d(
                torch.tensor([1.0, 2.0]), torch.tensor([1.0]), torch.tensor([-1.0, 2.0])
            ),
            "`a`.*negative",
        ),
        (lambda: wasserstein_1d(torch.zeros(0), torch.tensor([1.0])), "`x`"),
        (lambda: quantile_function(torch.tensor([1.0, 2.0]), torch.tensor([1.5])), "`u`"),
        (
            lambda: piecewise_linear(torch.zeros(3), torch.zeros(2, 1), torch.zeros(2, 1)),
            "G >= 2",
        ),
    ],
)
def test_bad_input_raises_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sort_fast_path_matches_torch_sort_and_keeps_gradients(dtype):
    from otcore._sorting import argsort_last, sort_last, sorted_last

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 257, generator=g).to(dtype)
    ref = torch.sort(x, dim=-1).values
    assert torch.equal(sorted_last(x), ref)
    assert torch.equal(torch.gather(x, -1, argsort_last(x)), ref)
    assert torch.equal(sorted_last(x.transpose(0, 1)), ref.transpose(0, 1))  # strided input
    assert torch.equal(sorted_last(x[:1].expand(5, -1, -1)), ref[:1].expand(5, -1, -1))
    xg = x.clone().requires_grad_(True)
    vals, _ = sort_last(xg)
    (vals * torch.arange(257, dtype=dtype)).sum().backward()
    # d/dx_i of sum_j j * sort(x)_j = rank of x_i
    assert torch.equal(xg.grad, torch.argsort(torch.argsort(x, -1), -1).to(dtype))
    assert sorted_last(xg).requires_grad


def test_sort_fast_path_keeps_forward_mode_and_functorch_derivatives():
    import torch.autograd.forward_ad as fwAD

    from otcore._sorting import sorted_last

    x = torch.randn(3, 40, dtype=torch.float64)
    tangent = torch.randn_like(x)
    order = torch.argsort(x, -1)
    with fwAD.dual_level():
        out = sorted_last(fwAD.make_dual(x, tangent))
        assert torch.equal(fwAD.unpack_dual(out).tangent, torch.gather(tangent, -1, order))
    _, jvp = torch.func.jvp(sorted_last, (x,), (tangent,))
    assert torch.equal(jvp, torch.gather(tangent, -1, order))
    assert torch.equal(torch.func.vmap(sorted_last)(x), torch.sort(x, -1).values)


def test_take_equals_flat_indexing():
    from otcore.univariate import take

    table = torch.randn(5, 7)
    idx = torch.randint(0, 35, (11, 3))
    assert torch.equal(take(table, idx), table.reshape(-1)[idx])
