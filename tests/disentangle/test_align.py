"""The iterative alignment flow and its baselines (disentangle.align)."""

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from disentangle.align import (
    METHODS,
    IterativeAlignmentFlow,
    MarginalMaps,
    fit_alignment,
    gaussian_barycenter,
)
from disentangle.align.datasets import two_moons
from otcore.univariate import quantile_barycenter

torch.set_default_dtype(torch.float32)


@pytest.fixture(scope="module")
def moons():
    x, y = two_moons(600, 0.1, seed=0)
    return torch.tensor(x), y


def _images(n=240, d=9, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2], n // 3)
    x = rng.beta(2 + y[:, None], 3, size=(n, d)) * 0.98 + 0.01
    return torch.tensor(x), y


@pytest.mark.parametrize("method", METHODS)
def test_inverse_of_forward_is_identity_float64(method, moons):
    x, y = moons
    flow = fit_alignment(method, x, y, n_layers=4, k_directions=2, dd_bins=20, seed=0)
    z = flow(x, y)
    assert z.dtype == torch.float64
    torch.testing.assert_close(flow.inverse(z, y), x, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", ["inb", "nb", "gb", "gbnb", "dd"])
def test_inverse_with_phi_pre_and_post_layers(method):
    x, y = _images()
    flow = fit_alignment(
        method, x, y, n_layers=3, k_directions=3, image_data=True, dd_bins=10, seed=1
    )
    z = flow(x, y)
    assert bool(((z > 0) & (z < 1)).all())
    torch.testing.assert_close(flow.inverse(z, y), x, rtol=0, atol=1e-6)
    tr = flow.translate(x[y == 0], 0, 2)
    torch.testing.assert_close(flow.translate(tr, 2, 0), x[y == 0], rtol=0, atol=1e-6)


def test_each_one_dimensional_map_is_strictly_monotone():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat_interleave(400)
    x = torch.randn(1200, 2, dtype=torch.float64, generator=g) * (1 + y[:, None]) + y[:, None]
    maps = MarginalMaps(3, 2, 35, 100).fit(x, y)
    grid = torch.linspace(-60, 60, 6001, dtype=torch.float64)[:, None].expand(-1, 2)
    for c in range(3):
        cls = torch.full((grid.shape[0],), c)
        z, _ = maps(grid, cls)
        assert bool((z.diff(dim=0) > 0).all()), f"map of class {c} is not strictly increasing"
        torch.testing.assert_close(maps.inverse(z, cls), grid, rtol=0, atol=1e-6)


def test_after_one_nb_layer_class_marginals_match_the_barycenter():
    g = torch.Generator().manual_seed(1)
    n = 3000
    y = torch.arange(2).repeat_interleave(n)
    x = torch.randn(2 * n, 3, dtype=torch.float64, generator=g)
    x[y == 1] = x[y == 1] * torch.tensor([2.0, 0.5, 1.0]) + torch.tensor([3.0, -1.0, 0.5])
    flow = fit_alignment("nb", x, y.numpy())
    z = flow(x, y.numpy())
    bary = quantile_barycenter(torch.stack([x[y == 0], x[y == 1]]).permute(2, 0, 1))  # (3, 2, n)
    for k in range(3):
        before = ks_2samp(x[y == 0, k].numpy(), x[y == 1, k].numpy()).statistic
        after = ks_2samp(z[y == 0, k].numpy(), z[y == 1, k].numpy()).statistic
        assert after < 0.03 < before or before < 0.03
        for c in (0, 1):
            assert ks_2samp(z[y == c, k].numpy(), bary[k].numpy()).statistic < 0.03


@pytest.mark.parametrize("method, image", [("inb", False), ("dd", False), ("gbnb", True)])
def test_log_det_matches_autograd_jacobian(method, image):
    if image:
        x, y = _images(n=150, d=3, seed=2)
    else:
        g = torch.Generator().manual_seed(2)
        y = np.repeat([0, 1], 150)
        x = torch.randn(300, 3, dtype=torch.float64, generator=g) + torch.tensor(y)[:, None]
    flow = fit_alignment(method, x, y, n_layers=3, k_directions=2, dd_bins=12, image_data=image)
    ld = flow.log_det(x[:6], y[:6])
    for i in range(6):
        jac = torch.autograd.functional.jacobian(
            lambda v, i=i: flow(v[None], y[i : i + 1])[0], x[i]
        )
        assert float(ld[i]) == pytest.approx(float(torch.linalg.slogdet(jac)[1]), abs=1e-6)


def test_gb_matches_the_analytic_two_gaussian_barycenter():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(2000, 3, dtype=torch.float64, generator=g) @ torch.tensor(
        [[2.0, 0.3, 0.0], [0.0, 1.0, 0.5], [0.0, 0.0, 0.7]], dtype=torch.float64
    )
    b = torch.randn(2000, 3, dtype=torch.float64, generator=g) * torch.tensor([0.5, 2.0, 1.0])
    x, y = torch.cat([a, b + 4.0]), np.repeat([0, 1], 2000)
    flow = fit_alignment("gb", x, y)
    eye = torch.eye(3, dtype=torch.float64)
    s1, s2 = (s + 1e-6 * torch.trace(s) / 3 * eye for s in (torch.cov(a.T), torch.cov(b.T)))
    e1, v1 = torch.linalg.eigh(s1)
    r1 = v1 @ torch.diag(e1.sqrt()) @ v1.T
    r1i = v1 @ torch.diag(1 / e1.sqrt()) @ v1.T
    e, v = torch.linalg.eigh(r1 @ s2 @ r1)
    mid = 0.5 * (s1 + v @ torch.diag(e.sqrt()) @ v.T)
    closed = r1i @ mid @ mid @ r1i  # iaf.md §3: Σ₁^{-½}(½(Σ₁ + (Σ₁^{½}Σ₂Σ₁^{½})^{½}))²Σ₁^{-½}
    torch.testing.assert_close(flow.layers[0].barycenter_cov, closed, rtol=1e-6, atol=1e-6)
    fixed = gaussian_barycenter(torch.stack([s1, s2]), torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(fixed, closed, rtol=1e-8, atol=1e-8)
    z = flow(x, y)  # the mapped classes have the barycenter's moments
    for c in (0, 1):
        torch.testing.assert_close(torch.cov(z[y == c].T), closed, rtol=1e-2, atol=1e-2)


def test_alignment_improves_with_layers_on_the_moons(moons):
    from dismetrics.alignment import blockwise_wasserstein

    x, y = moons
    flow = fit_alignment("inb", x, y, n_layers=10, k_directions=2, seed=0)
    wd = {}
    for l, z in flow.forward_iter(x, y):
        if l in (0, 1, 3, 10):
            z = z.numpy()
            wd[l] = blockwise_wasserstein(z[y == 0], z[y == 1], block_size=300, solver="exact")
    assert wd[0] > wd[1] > wd[3] > wd[10]
    assert wd[10] < 0.05 * wd[0]


def test_determinism_and_seed_dependence(moons):
    x, y = moons
    opts = {"n_layers": 2, "k_directions": 1, "max_swd_iter": 25}
    a = fit_alignment("inb", x, y, seed=3, **opts)(x, y)
    b = fit_alignment("inb", x, y, seed=3, **opts)(x, y)
    c = fit_alignment("inb", x, y, seed=4, **opts)(x, y)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_save_load_round_trip(tmp_path, dtype):
    x, y = _images(n=120, d=4)
    x = x.to(dtype)
    flow = fit_alignment("nb-inb", x, y, n_layers=3, k_directions=2, image_data=True, seed=0)
    flow.save(tmp_path / "flow")
    loaded = IterativeAlignmentFlow.load(tmp_path / "flow")
    assert torch.equal(loaded(x, y), flow(x, y))
    assert torch.equal(loaded.inverse(flow(x, y), y), flow.inverse(flow(x, y), y))
    assert loaded.fit_info == flow.fit_info
    with pytest.raises(FileNotFoundError, match=r"flow\.json"):
        IterativeAlignmentFlow.load(tmp_path / "nothing")


def test_gb_and_dd_save_load(tmp_path, moons):
    x, y = moons
    for method in ("gbnb", "dd"):
        flow = fit_alignment(method, x, y, n_layers=2, dd_rotation="pca")
        flow.save(tmp_path / method)
        assert torch.equal(IterativeAlignmentFlow.load(tmp_path / method)(x, y), flow(x, y))


def test_split_modes_unequal_classes_and_weights(moons):
    x, y = moons
    keep = np.r_[np.flatnonzero(y == 0), np.flatnonzero(y == 1)[:200]]
    with pytest.warns(UserWarning, match="class sizes differ"):
        flow = fit_alignment("inb", x[keep], y[keep], n_layers=2, k_directions=2)
    torch.testing.assert_close(flow.inverse(flow(x, y), y), x, rtol=0, atol=1e-6)
    half = fit_alignment("inb", x, y, n_layers=2, k_directions=2, split="half")
    torch.testing.assert_close(half.inverse(half(x, y), y), x, rtol=0, atol=1e-6)
    # a barycenter weighted towards class 0 moves class 0 less than class 1
    flow_w = fit_alignment("nb", x, y, weights=[0.9, 0.1])
    z = flow_w(x, y)
    move = [float(((z - x)[y == c] ** 2).sum(1).mean()) for c in (0, 1)]
    assert move[0] < move[1]


def test_labels_can_be_arbitrary_integers(moons):
    x, y = moons
    flow = fit_alignment("gb", x, np.where(y == 0, 7, -3))
    assert flow.classes.tolist() == [-3, 7]
    with pytest.raises(ValueError, match="not fitted on"):
        flow(x[:3], np.array([7, 7, 5]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"X": "nan"}, "NaN"),
        ({"X": "inf"}, "inf"),
        ({"y": "float"}, "integer class labels"),
        ({"y": "single"}, "single class"),
        ({"y": "short"}, "shape"),
        ({"k_directions": 3}, "exceeds the data dimension"),
        ({"k_directions": 0}, "positive integer"),
        ({"y": "tiny_class", "k_directions": 2}, "fewer than"),
        ({"method": "sig"}, "`method`"),
        ({"X": "outside", "image_data": True}, r"\[0, 1\]"),
        ({"bound_eps": 0.0}, "bound_eps"),
        ({"n_grid": 1}, "n_grid"),
    ],
)
def test_bad_input_raises_clear_errors(kwargs, match, moons):
    x, y = moons
    x, y = x.clone(), y.copy()
    method = kwargs.pop("method", "inb")
    image = kwargs.pop("image_data", False)
    k = kwargs.pop("k_directions", 2)
    opts = {name: kwargs.pop(name) for name in ("bound_eps", "n_grid") if name in kwargs}
    if kwargs.get("X") == "nan":
        x[3, 1] = float("nan")
    elif kwargs.get("X") == "inf":
        x[3, 1] = float("inf")
    elif kwargs.get("X") == "outside":
        x = x.abs() + 0.5
    if kwargs.get("y") == "float":
        y = y.astype(float) + 0.5
    elif kwargs.get("y") == "single":
        y = np.zeros_like(y)
    elif kwargs.get("y") == "short":
        y = y[:-1]
    elif kwargs.get("y") == "tiny_class":
        y = np.zeros_like(y)
        y[0] = 1
    with pytest.raises(ValueError, match=match):
        fit_alignment(method, x, y, n_layers=2, k_directions=k, image_data=image, **opts)


def test_fit_callback_and_fit_info(moons):
    x, y = moons
    seen = []
    flow = IterativeAlignmentFlow.create(x, y)
    flow.fit(x, y, 3, 2, callback=lambda f, i, z: seen.append((i, z.shape)))
    assert [s[0] for s in seen] == [1, 2, 3]
    info = flow.fit_info[0]
    assert info["kind"] == "inb" and info["swd_iters"] >= 1 and info["objective"] > 0
    with pytest.raises(ValueError, match="columns"):
        flow(x[:, :1], y)
