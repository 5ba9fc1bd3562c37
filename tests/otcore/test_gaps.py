"""Monge gap, distortion and Gromov-Monge gap: bounds, known answers, gradients."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import otcore

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny problems: one intra-op thread avoids OpenMP start-up latency on a shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _orthogonal(d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))[0]


@st.composite
def random_maps(draw):
    n = draw(st.integers(4, 24))
    # d >= 2: in 1-D the cosine cost is 0 between same-sign points (a degenerate geometry)
    dx, dy = draw(st.integers(2, 4)), draw(st.integers(2, 4))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    x = torch.randn(n, dx, generator=g, dtype=F64)
    W1 = torch.randn(dx, 8, generator=g, dtype=F64)
    if draw(st.booleans()):  # an MLP-like map
        W2 = torch.randn(8, dy, generator=g, dtype=F64)
        y = torch.tanh(x @ W1) @ W2 * draw(st.floats(0.1, 3.0))
    else:  # a decoder-like map: smooth, saturating, into many more dimensions
        W2 = torch.randn(8, 256, generator=g, dtype=F64)
        y = torch.sigmoid(torch.tanh(x @ W1) @ W2 * draw(st.floats(0.3, 3.0)))
    return x, y, draw(st.sampled_from(["sqeuclidean", "scaled_sqeuclidean", "cosine"]))


@settings(max_examples=20, deadline=None)
@given(random_maps(), st.sampled_from(["best", "identity"]))
def test_gmg_between_entropic_bias_and_distortion(problem, start):
    x, y, cost = problem
    parts = otcore.gromov_monge_gap(x, y, cost, start=start, return_parts=True)
    bias = float(parts.epsilon) * math.log(len(x))
    assert float(parts.value) <= float(parts.distortion) + 1e-12
    assert float(parts.value) >= -bias - 1e-9
    assert torch.isfinite(parts.value)


@settings(max_examples=20, deadline=None)
@given(random_maps())
def test_best_start_has_the_lowest_regularised_objective(problem):
    """``best`` keeps, per problem, the coupling of lower E + ε KL: never above one start
    (to the solver's relative tolerance, 1e-3: batched and single solves stop apart)."""
    x, y, cost = problem

    def reg(start):
        p = otcore.gromov_monge_gap(x, y, cost, start=start, return_parts=True)
        plan = p.plan
        kl = float((plan * (plan * len(x) ** 2).clamp_min(1e-300).log()).sum())
        return float(p.gw_value) + float(p.epsilon) * kl, p

    best, parts = reg("best")
    for start in ("product", "identity"):
        other, _ = reg(start)
        assert best <= other + 2e-3 * abs(other) + 1e-12
    # and the product-start estimate obeys the upper bound too
    assert (
        float(otcore.gromov_monge_gap(x, y, cost, start="product"))
        <= float(parts.distortion) + 1e-12
    )


@st.composite
def isometries(draw):
    n = draw(st.integers(16, 48))
    d = draw(st.integers(3, 12))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    x = torch.randn(n, d, generator=g, dtype=F64) * draw(st.floats(0.2, 5.0))
    Q = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))[0]
    return (
        x,
        x @ Q,
        torch.randperm(n, generator=g),
        draw(st.sampled_from(["sqeuclidean", "cosine"])),
    )


@settings(max_examples=15, deadline=None)
@given(isometries())
def test_isometry_gives_zero_and_a_shuffled_one_its_distortion(problem):
    """GW = 0 for both maps, so GMG = 0 for the isometry and GMG = DST for the shuffled one."""
    x, y, perm, cost = problem
    iso = otcore.gromov_monge_gap(x, y, cost, return_parts=True)
    bias = float(iso.epsilon) * math.log(len(x))
    assert abs(float(iso.value)) <= bias
    shuffled = otcore.gromov_monge_gap(x, y[perm], cost, return_parts=True)
    bias = float(shuffled.epsilon) * math.log(len(x))
    assert float(shuffled.value) >= 0.95 * float(shuffled.distortion) - bias


@settings(max_examples=20, deadline=None)
@given(random_maps())
def test_monge_gap_nonnegative(problem):
    x, _, _ = problem
    y = x * 2.0 + torch.sin(3 * x)
    gap, out = otcore.monge_gap(x, y, return_output=True)
    assert float(gap) >= float(out.epsilon) * math.log(len(x)) * (1 - 1e-6) - 1e-9


def test_distortion_closed_form():
    x = torch.tensor([[0.0], [1.0], [3.0]], dtype=F64)
    y = torch.tensor([[0.0], [2.0], [3.0]], dtype=F64)
    # Cx = [[0,1,9],[1,0,4],[9,4,0]], Cy = [[0,4,9],[4,0,1],[9,1,0]]: differences 3, 0, 3 twice
    torch.testing.assert_close(otcore.distortion(x, y), torch.tensor(4 * 9 / 9, dtype=F64))
    assert float(otcore.distortion(x, lambda z: -z + 5.0)) == 0.0


@pytest.mark.parametrize("cost", ["sqeuclidean", "cosine"])
def test_gmg_vanishes_on_isometries_not_on_shuffled_maps(cost):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 10, generator=g, dtype=F64)
    y = x @ _orthogonal(10, 1)  # isometry for ‖·‖², orthogonal map for the cosine
    iso = otcore.gromov_monge_gap(x, y, cost, return_parts=True)
    shuffled = otcore.gromov_monge_gap(
        x, y[torch.randperm(64, generator=g)], cost, return_parts=True
    )
    bias = float(iso.epsilon) * math.log(64)
    assert float(iso.distortion) < 1e-20
    assert abs(float(iso.value)) <= bias  # the entropic bias bound
    assert abs(float(iso.value)) < 1e-2 * float(shuffled.distortion)
    assert float(shuffled.value) > 0.95 * float(shuffled.distortion)


def test_identity_start_underestimates_a_shuffled_isometry_that_best_does_not():
    """The regression of the (1/n)·I start alone: it stays near the shuffled coupling."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 10, generator=g, dtype=F64)
    y = (x @ _orthogonal(10, 1))[torch.randperm(64, generator=g)]
    dst = float(otcore.distortion(x, y, "cosine"))
    gaps = {s: float(otcore.gromov_monge_gap(x, y, "cosine", start=s)) for s in otcore.STARTS}
    assert gaps["identity"] < 0.8 * dst
    assert gaps["best"] > 0.99 * dst and gaps["product"] > 0.99 * dst


def test_three_point_example():
    """Paper Fig. 1: an optimal map has GMG = 0 with DST > 0; swapping two images gives GMG > 0."""
    x = torch.tensor([[0.0], [1.0], [3.0]], dtype=F64)
    y = torch.tensor([[0.0], [1.0], [1.5]], dtype=F64)  # no isometry onto these distances
    import itertools

    perms = [list(p) for p in itertools.permutations(range(3))]
    dst = [float(otcore.distortion(x, y[p])) for p in perms]
    best, worst = perms[dst.index(min(dst))], perms[dst.index(max(dst))]
    opt = otcore.gromov_monge_gap(x, y[best], epsilon0=1e-3, return_parts=True)
    bad = otcore.gromov_monge_gap(x, y[worst], epsilon0=1e-3, return_parts=True)
    assert float(opt.distortion) > 0.1
    assert abs(float(opt.value)) < 1e-3 * float(opt.distortion)
    assert float(bad.value) > 0.5 * (float(bad.distortion) - float(opt.distortion))


def test_monge_gap_known_answers():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(128, 2, generator=g, dtype=F64)
    A = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=F64)  # SPD: x ↦ Ax is a Brenier map
    gap, out = otcore.monge_gap(x, x @ A, epsilon=0.002, return_output=True)
    bias = float(out.epsilon) * math.log(128)
    assert bias * (1 - 1e-6) <= float(gap) <= 1.5 * bias
    R = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=F64)  # a quarter turn: not monotone
    assert float(otcore.monge_gap(x, x @ R, epsilon=0.002)) > 20 * bias


@pytest.mark.parametrize("start", ["product", "identity"])
def test_gmg_gradient_matches_finite_differences(start):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(12, 3, generator=g, dtype=F64)
    y = (torch.tanh(x @ torch.randn(3, 2, generator=g, dtype=F64))).requires_grad_()
    kw = dict(epsilon0=0.5, tol=1e-12, inner_tol=1e-11, max_iter=200, inner_max_iter=5000)
    parts = otcore.gromov_monge_gap(x, y, "cosine", start=start, return_parts=True, **kw)
    assert not bool(parts.fell_back)
    (grad,) = torch.autograd.grad(parts.value, y)
    D = torch.randn(12, 2, generator=g, dtype=F64)
    eps = parts.epsilon  # hold ε fixed (it is a stop-gradient statistic)
    init = torch.eye(12, dtype=F64) / 12 if start == "identity" else torch.full((12, 12), 1 / 144)

    def f(t):  # DST − (E + εKL): the envelope of the frozen-coupling gradient
        yt = y.detach() + t * D
        Cx, Cy = otcore.pairwise_cost(x, "cosine"), otcore.pairwise_cost(yt, "cosine")
        gw = otcore.gromov_wasserstein(
            otcore.Geometry(Cx),
            otcore.Geometry(Cy),
            epsilon=eps,
            init=init.to(F64),
            **{k: v for k, v in kw.items() if k != "epsilon0"},
        )
        return float(otcore.distortion(x, yt, "cosine") - gw.reg_value)

    h = 1e-5
    fd = (f(h) - f(-h)) / (2 * h)
    assert abs(fd - float((grad * D).sum())) < 1e-4 * max(1.0, abs(fd))


def test_monge_gap_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(20, 2, generator=g, dtype=F64)
    y = (x @ torch.randn(2, 2, generator=g, dtype=F64)).requires_grad_()
    kw = dict(epsilon=0.5, relative_epsilon=None, tol=1e-12, max_iter=20000)
    (grad,) = torch.autograd.grad(otcore.monge_gap(x, y, **kw), y)
    D = torch.randn(20, 2, generator=g, dtype=F64)
    h = 1e-6
    fd = (
        float(otcore.monge_gap(x, y.detach() + h * D, **kw))
        - float(otcore.monge_gap(x, y.detach() - h * D, **kw))
    ) / (2 * h)
    assert abs(fd - float((grad * D).sum())) < 1e-6 * max(1.0, abs(fd))


def test_batched_gmg_equals_single_and_detach_reference():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 16, 4, generator=g, dtype=F64).requires_grad_()
    y = torch.randn(3, 16, 2, generator=g, dtype=F64).requires_grad_()
    batched = otcore.gromov_monge_gap(x, y, "scaled_sqeuclidean")
    assert batched.shape == (3,)
    for k in range(3):
        single = otcore.gromov_monge_gap(x[k], y[k], "scaled_sqeuclidean")
        # same algorithm; batched stops when every problem meets tol=1e-3 (relative)
        torch.testing.assert_close(batched[k], single, rtol=1e-2, atol=1e-9)
    batched.sum().backward()
    assert x.grad is not None and y.grad is not None
    x2 = x.detach().clone().requires_grad_()
    otcore.gromov_monge_gap(x2, y, detach_reference=True).sum().backward()
    assert x2.grad is None


def test_gmg_falls_back_to_the_maps_coupling_when_the_solver_ends_worse():
    # A saturated decoder-like map 10-D → 4096-D: from (1/n)·I the mirror descent ends at a
    # larger E + ε KL than its start, so the start is kept: GMG = 0, zero gradient.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 10, generator=g)
    y = torch.sigmoid(x @ torch.randn(10, 4096, generator=g)).requires_grad_()
    parts = otcore.gromov_monge_gap(x, y, "cosine", start="identity", return_parts=True)
    assert bool(parts.fell_back) and float(parts.value) == 0.0
    assert float(parts.gw.reg_value) > float(parts.distortion) + float(parts.epsilon) * math.log(64)
    torch.testing.assert_close(parts.plan, torch.eye(64) / 64)
    (grad,) = torch.autograd.grad(parts.value, y)
    assert float(grad.abs().max()) == 0.0
    # a contracting map where the solver improves on its start does not fall back
    z = torch.tanh(x @ torch.randn(10, 10, generator=g) / 10**0.5)
    other = otcore.gromov_monge_gap(x, z, "cosine", start="identity", return_parts=True)
    assert not bool(other.fell_back) and float(other.value) != 0.0
    # the product start never falls back: it is the paper's estimator as it stands
    product = otcore.gromov_monge_gap(x, y, "cosine", start="product", return_parts=True)
    assert not bool(product.fell_back) and not bool(product.from_identity)


def test_gaps_accept_float32_and_high_dimension():
    g = torch.Generator().manual_seed(6)
    x = torch.rand(32, 4096, generator=g)  # flattened 64 × 64 images
    z = torch.randn(32, 10, generator=g, requires_grad=True)
    v = otcore.gromov_monge_gap(x, z, "cosine")
    v.backward()
    assert v.dtype == torch.float32 and torch.isfinite(z.grad).all()


def test_bad_input_is_rejected():
    x = torch.randn(10, 3)
    with pytest.raises(ValueError, match="start"):
        otcore.gromov_monge_gap(x, x, start="eye")
    with pytest.raises(TypeError, match="init"):
        otcore.gromov_monge_gap(x, x, init=torch.eye(10) / 10)
    with pytest.raises(ValueError, match="same points"):
        otcore.gromov_monge_gap(x, torch.randn(9, 3))
    with pytest.raises(ValueError, match="Flatten"):
        otcore.distortion(torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5))
    with pytest.raises(ValueError, match="Unknown cost"):
        otcore.distortion(x, x, "manhattan")
    with pytest.raises(ValueError, match="NaN"):
        otcore.monge_gap(x, torch.full((10, 3), float("nan")))


@settings(max_examples=10, deadline=None)
@given(isometries(), st.sampled_from([0.01, 0.1, 1.0]))
def test_debiased_gap_is_exact_on_isometries_at_any_epsilon(problem, epsilon0):
    """Debiased: GMG = 0 for an isometry and = DST for a shuffled one, without the −ε log n
    slack of the plain estimate (which at ε0 = 1 is far below 0 on the same maps)."""
    x, y, perm, cost = problem
    iso = otcore.gromov_monge_gap(x, y, cost, epsilon0=epsilon0, debias=True)
    shuffled = otcore.gromov_monge_gap(x, y[perm], cost, epsilon0=epsilon0, debias=True)
    dst = float(otcore.distortion(x, y[perm], cost))
    assert abs(float(iso)) <= 1e-3 * dst
    assert abs(float(shuffled) - dst) <= 1e-2 * dst


def test_debiased_gap_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(10, 3, generator=g, dtype=F64)
    y = torch.tanh(x @ torch.randn(3, 2, generator=g, dtype=F64)).requires_grad_()
    kw = dict(epsilon0=0.5, tol=1e-12, inner_tol=1e-11, max_iter=200, inner_max_iter=5000)
    parts = otcore.gromov_monge_gap(
        x, y, "cosine", start="identity", debias=True, return_parts=True, **kw
    )
    (grad,) = torch.autograd.grad(parts.value, y)
    D = torch.randn(10, 2, generator=g, dtype=F64)
    eye = torch.eye(10, dtype=F64) / 10
    solve = {k: v for k, v in kw.items() if k != "epsilon0"}
    # each term's ε = 0.5·mean(C1)·mean(C2), held fixed (a stop-gradient statistic)
    means = {
        "x": float(otcore.pairwise_cost(x, "cosine").mean()),
        "y": float(otcore.pairwise_cost(y.detach(), "cosine").mean()),
    }

    def reg(C1, C2, e1, e2):
        geoms = otcore.Geometry(C1), otcore.Geometry(C2)
        eps = 0.5 * means[e1] * means[e2]
        return otcore.gromov_wasserstein(*geoms, epsilon=eps, init=eye, **solve).reg_value

    def f(t):  # DST − [GW(x, y) − ½ GW(x, x) − ½ GW(y, y)], regularised values
        yt = y.detach() + t * D
        Cx, Cy = otcore.pairwise_cost(x, "cosine"), otcore.pairwise_cost(yt, "cosine")
        s = reg(Cx, Cy, "x", "y") - 0.5 * reg(Cx, Cx, "x", "x") - 0.5 * reg(Cy, Cy, "y", "y")
        return float(otcore.distortion(x, yt, "cosine") - s)

    h = 1e-5
    fd = (f(h) - f(-h)) / (2 * h)
    assert abs(fd - float((grad * D).sum())) < 1e-4 * max(1.0, abs(fd))


@pytest.mark.parametrize("cost", ["sqeuclidean", "scaled_sqeuclidean", "cosine"])
def test_gmg_of_a_degenerate_problem_is_zero_with_zero_gradient(cost):
    # n = 1 or a collapsed decoder (identical images) raised "ε = 0 ... pass an absolute
    # `epsilon`", and passing `epsilon` then failed with a TypeError. Every coupling is
    # optimal there: GW = DST, GMG = 0.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 5, generator=g, dtype=F64).requires_grad_()
    collapsed = (torch.randn(1, 3, generator=g, dtype=F64) + 1.0).expand(16, 3)
    collapsed = collapsed.clone().requires_grad_()
    for xx, yy in ((x, collapsed), (x[:1], collapsed[:1]), (collapsed, x)):
        parts = otcore.gromov_monge_gap(xx, yy, cost, return_parts=True)
        assert bool(parts.degenerate) and float(parts.value) == 0.0
        assert not bool(parts.fell_back) and not bool(parts.from_identity)
        torch.testing.assert_close(parts.plan, torch.eye(len(xx), dtype=F64) / len(xx))
        grads = torch.autograd.grad(parts.value, (x, collapsed), allow_unused=True)
        assert all(gr is None or float(gr.abs().max()) == 0.0 for gr in grads)
        assert float(parts.distortion) == float(otcore.distortion(xx, yy, cost))
    for start in otcore.STARTS:
        assert float(otcore.gromov_monge_gap(x, collapsed, cost, start=start)) == 0.0


def test_one_degenerate_problem_leaves_the_rest_of_the_batch_alone():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 12, 4, generator=g, dtype=F64)
    y = torch.tanh(x @ torch.randn(4, 3, generator=g, dtype=F64))
    y[1] = 0.5  # a collapsed decoder in the middle of the batch
    y.requires_grad_()
    parts = otcore.gromov_monge_gap(x, y, return_parts=True)
    assert parts.degenerate.tolist() == [False, True, False]
    assert float(parts.value[1]) == 0.0
    keep = [0, 2]
    alone = otcore.gromov_monge_gap(x[keep], y.detach()[keep], return_parts=True)
    torch.testing.assert_close(parts.value[keep], alone.value, rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(parts.epsilon[keep], alone.epsilon, rtol=0, atol=0)
    (grad,) = torch.autograd.grad(parts.value.sum(), y)
    assert float(grad[1].abs().max()) == 0.0 and float(grad[0].abs().max()) > 0.0


def test_gmg_says_which_argument_sets_epsilon():
    x = torch.randn(8, 3, dtype=F64)
    with pytest.raises(TypeError, match="epsilon0"):
        otcore.gromov_monge_gap(x, x * 2, epsilon=0.1)
    with pytest.raises(TypeError, match="epsilon0"):
        otcore.gromov_monge_gap(x, x * 2, relative_epsilon=None)
    with pytest.raises(ValueError, match="`epsilon0`"):
        otcore.gromov_monge_gap(x, x * 2, epsilon0=0.0)
    with pytest.raises(ValueError, match="`epsilon0`"):  # a cost with a negative mean
        otcore.gromov_monge_gap(x + 5.0, x * 2, "dot", "cosine")


def test_debiased_gap_of_a_degenerate_problem_is_zero():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 16, 4, generator=g, dtype=F64)
    y = torch.randn(3, 16, 2, generator=g, dtype=F64)
    y[1] = 0.5  # a collapsed decoder in the middle of the batch
    y.requires_grad_()
    parts = otcore.gromov_monge_gap(x, y, "sqeuclidean", debias=True, return_parts=True)
    assert parts.degenerate.tolist() == [False, True, False]
    assert float(parts.value[1]) == 0.0 and torch.isfinite(parts.value).all()
    (grad,) = torch.autograd.grad(parts.value.sum(), y)
    assert float(grad[1].abs().max()) == 0.0 and float(grad[0].abs().max()) > 0.0
