"""Sliced / max-sliced Wasserstein and the Stiefel optimiser (otcore.sliced)."""

import numpy as np
import pytest
import torch

from otcore.sliced import (
    _cayley_step,
    barycentric_sliced_objective,
    max_k_sliced_barycentric,
    max_sliced_wasserstein,
    random_stiefel,
    sliced_wasserstein,
    stiefel_ascent,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_sliced_of_identical_measures_is_zero_and_positive_otherwise():
    x = torch.randn(200, 5, dtype=torch.float64, generator=_gen())
    assert float(sliced_wasserstein(x, x.clone(), generator=_gen(1))) == 0.0
    assert float(sliced_wasserstein(x, x + 1.0, generator=_gen(1))) > 0.1


def test_max_sliced_finds_planted_direction():
    g = _gen(4)
    d = 12
    x = torch.randn(600, d, dtype=torch.float64, generator=g)
    y = torch.randn(600, d, dtype=torch.float64, generator=g)
    planted = torch.zeros(d, dtype=torch.float64)
    planted[7] = 1.0
    y = y + 1.5 * planted  # the two Gaussians differ along e_7 only
    out = max_sliced_wasserstein(x, y, k=1, generator=g)
    assert abs(float(out.directions[:, 0] @ planted)) > 0.98
    assert out.value == pytest.approx(1.5**2, rel=0.2)


@pytest.mark.parametrize("d, k", [(10, 3), (4, 3)])  # Woodbury (2K < d) and full Cayley
def test_stiefel_iterates_stay_orthonormal_and_armijo_never_decreases(d, k):
    g = _gen(5)
    xs = torch.randn(3, 150, d, dtype=torch.float64, generator=g)
    xs[1] *= torch.linspace(0.5, 2.0, d, dtype=torch.float64)
    xs[2] += torch.linspace(-1, 1, d, dtype=torch.float64)
    seen = []

    def objective(w):
        seen.append(w.detach().clone())
        return barycentric_sliced_objective(xs, w)

    out = stiefel_ascent(objective, random_stiefel(d, k, generator=g, dtype=torch.float64))
    eye = torch.eye(k, dtype=torch.float64)
    assert len(seen) > 5
    for w in seen:
        assert float((w.T @ w - eye).abs().max()) < 1e-10
    assert all(b >= a for a, b in zip(out.values, out.values[1:]))
    assert out.values[-1] > out.values[0]


def test_woodbury_and_full_cayley_steps_agree():
    g = _gen(6)
    w = random_stiefel(9, 2, generator=g, dtype=torch.float64).T.contiguous()
    grad = torch.randn(2, 9, dtype=torch.float64, generator=g)
    lr = 0.37
    woodbury = _cayley_step(w, grad, lr)  # 2K = 4 < 9
    a = w.T @ grad - grad.T @ w
    eye = torch.eye(9, dtype=torch.float64)
    full = w @ (eye - lr / 2 * a) @ torch.linalg.inv(eye + lr / 2 * a)
    torch.testing.assert_close(woodbury, full, rtol=1e-10, atol=1e-12)


def test_barycentric_directions_sorted_orthonormal_and_deterministic():
    g = _gen(7)
    xs = torch.randn(2, 300, 6, dtype=torch.float64, generator=g)
    xs[1, :, 2] *= 3.0
    xs[1, :, 4] += 1.0
    a = max_k_sliced_barycentric(xs, 2, generator=_gen(8))
    b = max_k_sliced_barycentric(xs, 2, generator=_gen(8))
    torch.testing.assert_close(a.directions, b.directions)
    assert bool((a.per_direction[:-1] >= a.per_direction[1:]).all())
    eye = torch.eye(2, dtype=torch.float64)
    assert float((a.directions.T @ a.directions - eye).abs().max()) < 1e-10
    top = a.directions[:, 0].abs()
    assert int(top.argmax()) == 2  # the variance change dominates the objective


def test_two_class_objective_is_half_the_pairwise_form():
    g = _gen(9)
    xs = torch.randn(2, 50, 3, dtype=torch.float64, generator=g)
    w = random_stiefel(3, 2, generator=g, dtype=torch.float64)
    s = torch.sort(xs @ w, dim=1).values
    pairwise = ((s[0] - s[1]) ** 2).mean()
    assert float(barycentric_sliced_objective(xs, w)) == pytest.approx(0.5 * float(pairwise))


def test_float32_and_haar_init():
    w = random_stiefel(30, 4, generator=_gen(1))
    assert w.dtype == torch.float32
    np.testing.assert_allclose((w.T @ w).numpy(), np.eye(4), atol=1e-5)
    xs = torch.randn(2, 100, 5, generator=_gen(2))
    out = max_k_sliced_barycentric(xs, 2, generator=_gen(3), max_iter=20)
    assert out.directions.dtype == torch.float32


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: max_k_sliced_barycentric(torch.randn(2, 10, 3), 4), "exceeds the dimension"),
        (lambda: max_k_sliced_barycentric(torch.randn(1, 10, 3), 1), "c >= 2"),
        (lambda: max_k_sliced_barycentric(torch.randn(2, 10, 3), 0), "positive integer"),
        (
            lambda: max_k_sliced_barycentric(torch.full((2, 10, 3), float("nan")), 1),
            "NaN",
        ),
        (
            lambda: max_k_sliced_barycentric(torch.randn(2, 10, 3), 1, weights=torch.ones(3)),
            "`weights`",
        ),
        (lambda: max_sliced_wasserstein(torch.randn(5, 3), torch.randn(5, 4)), "same d"),
        (
            lambda: sliced_wasserstein(torch.randn(5, 3), torch.randn(5, 3), n_projections=0),
            "n_projections",
        ),
        (lambda: random_stiefel(3, 4), "1 <= k <= d"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_fast_barycentric_ascent_follows_the_generic_optimiser():
    from otcore.sliced import _barycentric_ascent

    g = _gen(11)
    xs = torch.randn(3, 200, 16, dtype=torch.float64, generator=g)
    xs[1] *= torch.linspace(0.5, 2.0, 16, dtype=torch.float64)
    xs[2] += torch.linspace(-1, 1, 16, dtype=torch.float64)
    w0 = random_stiefel(16, 3, generator=g, dtype=torch.float64)
    fast = _barycentric_ascent(xs, w0, None, lr=0.1, max_iter=15, tol=1e-6)
    slow = stiefel_ascent(lambda w: barycentric_sliced_objective(xs, w), w0, max_iter=15)
    assert fast.n_evals == slow.n_evals
    np.testing.assert_allclose(fast.values, slow.values, rtol=1e-9)
    torch.testing.assert_close(fast.w, slow.w, rtol=0, atol=1e-7)
    eye = torch.eye(3, dtype=torch.float64)
    assert float((fast.w.T @ fast.w - eye).abs().max()) < 1e-10
