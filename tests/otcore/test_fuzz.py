"""Fuzz the public otcore API with bad and degenerate inputs.

Contract: every call either raises a ValueError or TypeError whose message names an argument
(in backticks), or returns finite values with honest diagnostics — a Sinkhorn or GW result
that is not converged comes with a ConvergenceWarning, and a converged Sinkhorn plan meets
the tolerance (recomputed in float64).

The default budget is small and derandomised (tests/conftest.py); ``HYPOTHESIS_PROFILE=fuzz``
(tests/otcore/conftest.py) draws 500 fresh examples.
"""

import math
import os
import re
import sys
import warnings
from pathlib import Path

import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st

import otcore

sys.path.insert(0, str(Path(__file__).parent))
from test_honest_convergence import violation64  # the float64 oracle of both files

BUDGET = settings(
    deadline=None,
    **({} if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else {"max_examples": 100}),
)
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64]
FUNCTIONS = [
    "sinkhorn",
    "sinkhorn_divergence",
    "gromov_wasserstein",
    "monge_gap",
    "gromov_monge_gap",
    "wasserstein_1d",
    "sliced_wasserstein",
]
NAMED = re.compile(r"`([A-Za-z_][A-Za-z_0-9]*)")


FAULTS = [
    "x nan",
    "x inf",
    "y nan",
    "empty",
    "dimension",
    "a negative",
    "a zero-sum",
    "a nan",
    "b shape",
    "epsilon 0",
    "epsilon -1",
    "epsilon nan",
    "epsilon inf",
    "p",
]


def cloud(shape, kind, scale, shift, dtype, g):
    z = torch.randn(shape, generator=g, dtype=torch.float64) * scale + shift
    if kind == "identical":
        z = z[..., :1, :].expand(shape).clone()
    elif kind == "zero":
        z = torch.zeros(shape, dtype=torch.float64)
    if dtype == torch.int64:
        z = z.clamp(-1e6, 1e6).round()
    return z.to(dtype)


def weights(kind, size, batch, g):
    if kind == "none":
        return None
    w = torch.rand(*batch, size, generator=g, dtype=torch.float64) + 0.1
    if kind == "some zero" and size > 1:
        w[..., 0] = 0.0
    return w / w.sum(-1, keepdim=True)


@st.composite
def calls(draw):
    """Half the calls are valid (if degenerate: one point, identical points, huge or tiny
    scales, far from the origin, half precision); the others carry one fault."""
    name = draw(st.sampled_from(FUNCTIONS))
    fault = draw(st.sampled_from([None] * len(FAULTS) + FAULTS))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    dtype = draw(st.sampled_from(DTYPES))
    batch = draw(st.sampled_from([(), (), (2,)]))
    n = draw(st.sampled_from([1, 2, 5, 8]))
    m = n if name in ("monge_gap", "gromov_monge_gap") else draw(st.sampled_from([1, 3, 7]))
    d = draw(st.sampled_from([1, 3]))
    dy = draw(st.sampled_from([d, 2])) if name in ("gromov_wasserstein", "gromov_monge_gap") else d
    if fault == "empty":
        n = 0
    if fault == "dimension":
        dy = d + 1
    kinds = ["normal", "normal", "normal", "identical", "zero"]
    scales = [1e-8, 1e-3, 1.0, 1.0, 1e3]
    x = cloud(
        (*batch, n, d),
        draw(st.sampled_from(kinds)),
        draw(st.sampled_from(scales)),
        draw(st.sampled_from([0.0, 0.0, 1e4])),
        dtype,
        g,
    )
    y = cloud(
        (*batch, m, dy),
        draw(st.sampled_from(kinds)),
        draw(st.sampled_from(scales)),
        draw(st.sampled_from([0.0, 0.0, 1e4])),
        dtype,
        g,
    )
    if fault in ("x nan", "x inf") and x.numel():
        x = x.double()
        x.view(-1)[0] = math.nan if fault == "x nan" else math.inf
    if fault == "y nan" and y.numel():
        y = y.double()
        y.view(-1)[0] = math.nan
    wkinds = ["none", "none", "valid", "some zero"]
    a = weights(draw(st.sampled_from(wkinds)), n, batch, g)
    b = weights(draw(st.sampled_from(wkinds)), m, batch, g)
    if fault and fault.startswith("a "):
        a = weights("valid", n, batch, g)
        if fault == "a zero-sum":
            a = torch.zeros_like(a)
        elif a.numel():
            a.view(-1)[0] = -0.5 if fault == "a negative" else math.nan
    if fault == "b shape":
        b = torch.full((m + 1,), 1.0 / (m + 1), dtype=torch.float64)
    eps = draw(st.sampled_from([0.05, 0.05, 1.0, 1e-4]))
    if fault and fault.startswith("epsilon"):
        eps = {"0": 0.0, "-1": -1.0, "nan": math.nan, "inf": math.inf}[fault.split()[1]]
    relative = draw(st.sampled_from(["mean", None]))
    cost = draw(st.sampled_from(["sqeuclidean", "cosine", "euclidean"]))
    p = (
        draw(st.sampled_from([1.0, 2.0]))
        if fault != "p"
        else draw(st.sampled_from([0.5, math.nan]))
    )
    event(f"fault: {fault}")
    return name, x, y, a, b, eps, relative, cost, p


def run(name, x, y, a, b, eps, relative, cost, p):
    inner = dict(max_iter=200)
    if name == "sinkhorn":
        out = otcore.sinkhorn(
            otcore.PointCloud(x, y, cost=cost),
            a,
            b,
            epsilon=eps,
            relative_epsilon=relative,
            **inner,
        )
        return out, [out.f, out.g]
    if name == "sinkhorn_divergence":
        return None, [
            otcore.sinkhorn_divergence(
                x, y, a, b, cost=cost, epsilon=eps, relative_epsilon=relative, **inner
            )
        ]
    if name == "gromov_wasserstein":
        out = otcore.gromov_wasserstein(
            otcore.PointCloud(x, cost=cost),
            otcore.PointCloud(y, cost=cost),
            a,
            b,
            epsilon=eps,
            relative_epsilon=relative,
            max_iter=8,
            inner_max_iter=200,
        )
        return out, [out.value, out.reg_value]
    if name == "monge_gap":
        return None, [otcore.monge_gap(x, y, cost, epsilon=eps, relative_epsilon=relative, **inner)]
    if name == "gromov_monge_gap":
        parts = otcore.gromov_monge_gap(
            x, y, cost, epsilon0=eps, return_parts=True, max_iter=8, inner_max_iter=200
        )
        return parts, [parts.value, parts.distortion, parts.gw_value]
    if name == "wasserstein_1d":
        x1, y1 = x.reshape(*x.shape[:-2], -1), y.reshape(*y.shape[:-2], -1)
        a1 = None if a is None or a.shape[-1] != x1.shape[-1] else a
        return None, [otcore.wasserstein_1d(x1, y1, a1, b, p=p)]
    return None, [otcore.sliced_wasserstein(x, y, a, b, n_projections=8, p=p)]


@BUDGET
@given(calls())
def test_every_call_raises_a_named_error_or_returns_honest_finite_values(call):
    name = call[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out, values = run(*call)
        except (ValueError, TypeError) as err:
            named = NAMED.findall(str(err))
            assert named, f"{name}: {type(err).__name__} names no argument: {err}"
            event(f"{name}: raised")
            return
    event(f"{name}: returned")
    warnings_ = [w for w in caught if issubclass(w.category, otcore.ConvergenceWarning)]
    warned = bool(warnings_)
    # non-finite results only where precision was lost, and said so (e.g. float32, C/ε ≈ 1e12)
    lost = any("precision" in str(w.message) for w in warnings_)
    for v in values:
        assert lost or bool(torch.isfinite(v).all()), f"{name} returned non-finite values {v}"
    if isinstance(out, otcore.SinkhornOutput):
        conv = torch.as_tensor(out.converged).reshape(-1)
        batched = out.f.ndim == 2
        for k in range(conv.numel()):
            if bool(conv[k]):
                assert violation64(out, k if batched else None) <= 2e-3
        assert bool(conv.all()) or warned
        assert bool(conv.any()) or math.isfinite(float(out.value.sum())) or warned
    if isinstance(out, otcore.GWOutput):
        assert bool(torch.as_tensor(out.converged).all()) or warned
    if isinstance(out, otcore.GMGParts):
        degenerate = out.degenerate
        assert bool((out.value[degenerate] == 0).all())
