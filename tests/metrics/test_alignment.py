"""Alignment metrics (dismetrics.alignment): transport cost and block-wise Wasserstein."""

import subprocess
import sys

import numpy as np
import ot
import pytest

from dismetrics.alignment import (
    blockwise_wasserstein,
    latent_wasserstein,
    pairwise_wasserstein,
    transport_cost,
)


def test_module_does_not_import_torch_or_otcore():
    code = (
        "import sys, dismetrics.alignment; "
        "assert 'torch' not in sys.modules and 'otcore' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_transport_cost_is_the_class_weighted_mean_squared_displacement():
    x = np.zeros((5, 2))
    z = np.array([[1.0, 0], [1, 0], [1, 0], [0, 2], [0, 2]])
    y = np.array([0, 0, 0, 1, 1])
    assert transport_cost(x, z, y) == pytest.approx(0.5 * 1 + 0.5 * 4)
    assert transport_cost(x, z, y, weights=[1.0, 0.0]) == pytest.approx(1.0)
    imgs = np.zeros((5, 2, 2))
    assert transport_cost(imgs, imgs + 1.0, y) == pytest.approx(4.0)  # flattened pixels


def test_exact_blocks_equal_pot_emd_and_weight_by_block_size():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(130, 5)), rng.normal(1.0, 1.0, size=(130, 5))
    blocks = [(0, 50), (50, 100), (100, 130)]
    want = sum((b - a) * ot.emd2([], [], ot.dist(x[a:b], y[a:b])) for a, b in blocks) / 130
    assert blockwise_wasserstein(x, y, block_size=50) == pytest.approx(want, rel=1e-10)


def test_otcore_and_authors_solvers_agree_with_the_exact_cost_at_small_epsilon():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(80, 2)), rng.normal(2.0, 1.0, size=(80, 2))
    exact = blockwise_wasserstein(x, y, block_size=None)
    ours = blockwise_wasserstein(x, y, block_size=None, epsilon=1e-2, solver="otcore")
    assert ours == pytest.approx(exact, rel=0.01)
    # at a large ε both entropic solvers converge to the same primal cost <P, C>
    a = blockwise_wasserstein(x, y, block_size=None, epsilon=1.0, solver="otcore", tol=1e-6)
    b = blockwise_wasserstein(x, y, block_size=None, epsilon=1.0, solver="authors")
    plan = ot.sinkhorn([], [], ot.dist(x, y), 1.0, stopThr=1e-12, numItermax=10_000)
    want = float((plan * ot.dist(x, y)).sum())
    assert a == pytest.approx(want, rel=1e-3) and b == pytest.approx(want, rel=1e-2)


def test_pairwise_normalisations():
    rng = np.random.default_rng(2)
    real = {c: rng.normal(c, 1.0, size=(40, 3)) for c in range(3)}
    translated = {(l, m): real[m] + 0.1 * (l + 1) for l in range(3) for m in range(3) if l != m}
    res = pairwise_wasserstein(real, translated)
    mat = np.array(res.matrix)
    assert np.allclose(np.diag(mat), 0)
    assert mat[0, 1] == pytest.approx(0.1**2 * 3) and mat[2, 0] == pytest.approx(0.3**2 * 3)
    assert res.mean == pytest.approx(mat.sum() / 6)
    assert res.authors == pytest.approx(mat.sum() / 4)  # (k − 1)² for images
    res2d = pairwise_wasserstein(real, translated, convention="2d")
    assert res2d.authors == pytest.approx(mat.sum() / 2)  # (l − 1)·l with l = 2
    two = pairwise_wasserstein({0: real[0], 1: real[1]}, {(0, 1): real[1], (1, 0): real[0]})
    assert two.authors == two.mean == pytest.approx(0.0)
    assert set(res.to_dict()) == {"matrix", "mean", "authors", "classes"}


def test_latent_wasserstein_zero_for_identical_classes_under_exact_solver():
    z = np.random.default_rng(3).normal(size=(50, 2))
    assert latent_wasserstein(np.r_[z, z], np.repeat([0, 1], 50), solver="exact") < 1e-12
    assert latent_wasserstein(np.r_[z, z[:40]], np.repeat([0, 1], [50, 40]), solver="exact") > 0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: transport_cost(np.zeros((3, 2)), np.zeros((3, 3)), [0, 1, 1]), "same shape"),
        (lambda: transport_cost(np.zeros((3, 2)), np.zeros((3, 2)), [0.5, 1, 1]), "integer"),
        (lambda: blockwise_wasserstein(np.full((3, 2), np.nan), np.zeros((3, 2))), "NaN"),
        (lambda: blockwise_wasserstein(np.zeros((3, 2)), np.zeros((3, 2)), epsilon=0), "epsilon"),
        (
            lambda: blockwise_wasserstein(np.zeros((3, 2)), np.zeros((4, 2)), block_size=None),
            "equal size",
        ),
        (lambda: blockwise_wasserstein(np.zeros((3, 2)), np.zeros((3, 2)), solver="emd"), "solver"),
        (lambda: pairwise_wasserstein({0: np.zeros((2, 2)), 1: np.zeros((2, 2))}, {}), "pair"),
        (lambda: latent_wasserstein(np.zeros((4, 2)), [0, 0, 0, 0]), "two classes"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
