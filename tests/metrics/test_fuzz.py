"""Fuzz the public array APIs: any input gives a named error or finite, in-range scores.

Shapes (N = 2 included, constant columns, single-valued factors), dtypes (float32/float64/int
codes, signed/unsigned/float factors), scales 1e-300..1e300, NaN/inf entries and settings
(``num_bins``, ``seed``, sample counts) are drawn at random. Every call must either raise a
``ValueError``/``TypeError`` whose message names an argument, or return scores that are finite
and inside each score's documented range.

25 examples per test; ``HYPOTHESIS_PROFILE=fuzz`` runs 500 (fresh ones on every run).
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import dismetrics
from dismetrics import PRESETS
from dismetrics.validation import MAX_NUM_BINS

FUZZ = settings(
    max_examples=(
        settings.get_profile("fuzz").max_examples
        if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"
        else 25
    ),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Words one of which every error message must contain: the arguments of the public APIs.
ARGUMENTS = (
    "codes",
    "factors",
    "factor_values",
    "num_bins",
    "seed",
    "num_train",
    "num_test",
    "train_fraction",
    "metrics",
    "n_jobs",
)

UNIT = (0.0, 1.0)
#: Documented range of every headline score (``EvaluationResult.scalars()`` keys, without the
#: metric prefix). The Gaussian total correlation is inf for an exact linear dependence between
#: codes, and the Wasserstein dependency (squared code units) beyond float64's range.
RANGES: dict[str, tuple[float, float]] = {
    "discrete_mig": UNIT,
    "disentanglement": UNIT,
    "completeness": UNIT,
    "informativeness_train": UNIT,
    "informativeness_test": UNIT,
    "informativeness_train_scores": UNIT,
    "informativeness_test_scores": UNIT,
    "SAP_score": UNIT,
    "modularity_score": UNIT,
    "explicitness_score_train": UNIT,
    "explicitness_score_test": UNIT,
    "IRS": (-1.0, 1.0),  # negative on degenerate samples (dlib's formula)
    "gaussian_total_correlation": (0.0, math.inf),
    "gaussian_wasserstein_correlation": (0.0, math.inf),
    "gaussian_wasserstein_correlation_norm": (0.0, 2.0),
    "mutual_info_score": (0.0, math.log(MAX_NUM_BINS)),
}
MAY_BE_INF = {"gaussian_total_correlation", "gaussian_wasserstein_correlation"}

METRICS = list(dismetrics.ARRAY_METRICS + dismetrics.VARIANT_METRICS)
PRESET = dataclasses.replace(PRESETS["fast"], n_jobs=1, num_train=6, num_test=3)


def mostly(valid: st.SearchStrategy, rare: st.SearchStrategy) -> st.SearchStrategy:
    """Draw from ``rare`` about one time in ten, from ``valid`` otherwise.

    (A middle value picks ``rare``: hypothesis draws the ends of a range far more often.)
    """
    return st.integers(0, 9).flatmap(lambda i: rare if i == 4 else valid)


@st.composite
def codes_arrays(draw, n: int, d: int) -> np.ndarray:
    """(n, d) codes: some columns constant, any dtype and scale, now and then a NaN/inf."""
    base = draw(arrays(np.float64, (n, d), elements=st.floats(-10, 10), fill=st.nothing()))
    for j in range(d):
        if draw(st.integers(0, 4)) == 0:
            base[:, j] = base[0, j]
    dtype = draw(st.sampled_from([np.float64, np.float64, np.float32, np.int64]))
    exponents = {np.float64: [0, 0, -300, 300, -150, 150, -15, 15], np.float32: [0, -30, 30]}
    scale = 10.0 ** draw(st.sampled_from(exponents.get(dtype, [0])))
    offset = draw(st.sampled_from([0.0, 1.0, -7.5]))
    codes = (scale * (base + offset)).astype(dtype)
    if draw(mostly(st.just(False), st.just(True))):
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, d - 1))
        codes = codes.astype(np.float64)
        codes[i, j] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    return codes


@st.composite
def factor_arrays(draw, n: int, k: int) -> np.ndarray:
    """(n, k) factor classes with 1..4 values each, any integer dtype (or integral floats)."""
    sizes = draw(st.lists(mostly(st.integers(2, 4), st.just(1)), min_size=k, max_size=k))
    cols = [
        draw(arrays(np.int64, n, elements=st.integers(0, s - 1), fill=st.nothing())) for s in sizes
    ]
    dtype = draw(st.sampled_from([np.int64, np.int8, np.uint8, np.float64]))
    return np.stack(cols, axis=1).astype(dtype)


@st.composite
def problems(draw) -> dict[str, Any]:
    """Codes and factors, and a test pair with the same D and K (or the same arrays again)."""
    n = draw(st.integers(2, 30))
    d = draw(st.sampled_from([1, 2, 2, 3, 3, 4]))
    k = draw(st.integers(1, 3))
    out = {"codes": draw(codes_arrays(n, d)), "factors": draw(factor_arrays(n, k))}
    if draw(st.booleans()):
        m = draw(st.integers(1, 15))
        out["codes_test"] = draw(codes_arrays(m, d))
        out["factors_test"] = draw(factor_arrays(m, k))
    else:
        out["codes_test"], out["factors_test"] = out["codes"], out["factors"]
    return out


num_bins_values = mostly(
    st.integers(1, 30), st.sampled_from([0, -1, MAX_NUM_BINS + 1, 10**10, 2.5, True])
)
seed_values = mostly(st.integers(0, 2**40), st.sampled_from([-1, 2.5, None]))
size_values = st.tuples(
    mostly(st.integers(2, 12), st.sampled_from([1, 2.5])), mostly(st.integers(1, 8), st.just(0))
)


def _check_error(err: Exception) -> None:
    message = str(err)
    assert any(name in message for name in ARGUMENTS), f"no argument named in: {message!r}"


def _check_scores(scalars: dict[str, float]) -> None:
    for key, value in scalars.items():
        name = key.rsplit(".", 1)[-1]
        lo, hi = RANGES[name]
        if name in MAY_BE_INF and value == math.inf:
            continue
        assert math.isfinite(value), f"{key} = {value}"
        assert lo - 1e-9 <= value <= hi + 1e-9, f"{key} = {value} outside [{lo}, {hi}]"


def _call(fn, *args, **kwargs):
    """``fn(...)`` with warnings silenced; None when it raised an allowed, named error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fn(*args, **kwargs)
    except (ValueError, TypeError) as err:
        _check_error(err)
        event(f"{type(err).__name__}: {str(err)[:40]}")  # --hypothesis-show-statistics
        return None
    event("result")
    return out


@pytest.mark.parametrize("metric", METRICS)
@FUZZ
@given(problem=problems(), seed=seed_values, split=st.booleans())
def test_score_gives_a_named_error_or_scores_in_range(metric, problem, seed, split):
    test = {} if split else {k: problem[k] for k in ("codes_test", "factors_test")}
    res = _call(
        dismetrics.score,
        problem["codes"],
        problem["factors"],
        [metric],
        seed=seed,
        preset=PRESET,
        **test,
    )
    if res is not None:
        _check_scores(res.scalars())


def _metric_call(name: str, p: dict[str, Any], num_bins: Any, seed: Any, sizes: tuple):
    z, y, z_te, y_te = p["codes"], p["factors"], p["codes_test"], p["factors_test"]
    calls = {
        "mig": lambda: dismetrics.mig(z, y, num_bins=num_bins),
        "mig_hfs": lambda: dismetrics.mig_hfs(z, y, num_bins=num_bins),
        "dci": lambda: dismetrics.dci(z, y, z_te, y_te, estimator="hist_gbt", seed=seed),
        "dci_hfs": lambda: dismetrics.dci_hfs(
            z, y, num_train=sizes[0], num_test=sizes[1], estimator="hist_gbt", seed=seed
        ),
        "sap": lambda: dismetrics.sap(z, y, z_te, y_te, seed=seed),
        "sap_continuous": lambda: dismetrics.sap(z, y, z_te, y_te, continuous_factors=True),
        "modularity_explicitness": lambda: dismetrics.modularity_explicitness(
            z, y, z_te, y_te, num_bins=num_bins, seed=seed
        ),
        "irs": lambda: dismetrics.irs(z, y, num_bins=num_bins),
        "unsupervised": lambda: dismetrics.unsupervised(z, num_bins=num_bins),
    }
    return calls[name]


@pytest.mark.parametrize(
    "name",
    [
        "mig",
        "mig_hfs",
        "dci",
        "dci_hfs",
        "sap",
        "sap_continuous",
        "modularity_explicitness",
        "irs",
        "unsupervised",
    ],
)
@FUZZ
@given(
    problem=problems(),
    num_bins=num_bins_values,
    seed=seed_values,
    sizes=size_values,
)
def test_metric_functions_give_a_named_error_or_scores_in_range(
    name, problem, num_bins, seed, sizes
):
    res = _call(_metric_call(name, problem, num_bins, seed, sizes))
    if res is not None:
        _check_scores(res.scalars())


@FUZZ
@given(codes=st.integers(2, 30).flatmap(lambda n: codes_arrays(n, 3)), num_bins=num_bins_values)
def test_histogram_discretize_gives_a_named_error_or_labels_in_range(codes, num_bins):
    labels = _call(dismetrics.histogram_discretize, codes, num_bins)
    if labels is not None:
        assert labels.shape == codes.shape
        assert labels.min() >= 0 and labels.max() < num_bins
