"""Every bad input of the Sinkhorn API raises a clear error naming the argument."""

import math

import pytest
import torch

import otcore
import otcore.geometry


@pytest.fixture
def xy():
    g = torch.Generator().manual_seed(0)
    return torch.randn(6, 2, generator=g), torch.randn(5, 2, generator=g)


def _nan_at(t, value=math.nan):
    t = t.clone()
    t.view(-1)[1] = value
    return t


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_points_weights_and_costs(xy, bad):
    x, y = xy
    with pytest.raises(ValueError, match="`x` contains"):
        otcore.PointCloud(_nan_at(x, bad), y)
    with pytest.raises(ValueError, match="`y` contains"):
        otcore.PointCloud(x, _nan_at(y, bad))
    with pytest.raises(ValueError, match="`cost_matrix` contains"):
        otcore.Geometry(_nan_at(torch.rand(4, 3), bad))
    with pytest.raises(ValueError, match="`a` contains"):
        otcore.sinkhorn(otcore.PointCloud(x, y), _nan_at(torch.full((6,), 1 / 6), bad), epsilon=0.1)
    with pytest.raises(ValueError, match="`epsilon` contains"):
        otcore.sinkhorn(otcore.PointCloud(x, y), epsilon=bad)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_finite_check_names_the_bad_value_and_tolerates_an_overflowing_sum(bad):
    # the check first sums the tensor: a sum that overflows (finite entries) must still pass,
    # and one bad entry among large finite ones must still be named
    big = torch.full((8, 3), 3e38)  # float32: the sum overflows to inf
    geom = otcore.Geometry(big)
    assert torch.equal(geom.cost_matrix, big)
    want = "NaN" if math.isnan(bad) else "inf"
    with pytest.raises(ValueError, match=f"`cost_matrix` contains {want}"):
        otcore.Geometry(_nan_at(big, bad))
    with pytest.raises(ValueError, match=f"`cost_matrix` contains {want}"):
        otcore.Geometry(_nan_at(torch.rand(64, 4096), bad))


def test_mismatched_shapes(xy):
    x, y = xy
    with pytest.raises(ValueError, match="same dimension d"):
        otcore.PointCloud(x, torch.randn(5, 3))
    with pytest.raises(ValueError, match="both be"):
        otcore.PointCloud(x, torch.randn(2, 5, 2))
    with pytest.raises(ValueError, match="same batch size"):
        otcore.PointCloud(torch.randn(2, 6, 2), torch.randn(3, 5, 2))
    with pytest.raises(ValueError, match=r"`a` must have shape \(6,\)"):
        otcore.sinkhorn(otcore.PointCloud(x, y), torch.full((4,), 0.25), epsilon=0.1)
    with pytest.raises(ValueError, match=r"`x` must have shape"):
        otcore.PointCloud(torch.randn(6), y)
    with pytest.raises(ValueError, match=r"`cost_matrix` must have shape"):
        otcore.Geometry(torch.rand(2, 2, 2, 2))
    with pytest.raises(ValueError, match=r"init\[0\] \(f\)"):
        otcore.sinkhorn(otcore.PointCloud(x, y), epsilon=0.1, init=(torch.zeros(3), torch.zeros(5)))


def test_empty_inputs(xy):
    _, y = xy
    with pytest.raises(ValueError, match="`x` is empty"):
        otcore.PointCloud(torch.empty(0, 2), y)
    with pytest.raises(ValueError, match="`cost_matrix` is empty"):
        otcore.Geometry(torch.empty(3, 0))


def test_negative_weights_and_zero_mass(xy):
    x, y = xy
    geom = otcore.PointCloud(x, y)
    a = torch.full((6,), 1 / 6)
    a[0] = -0.1
    with pytest.raises(ValueError, match="`a` has negative entries"):
        otcore.sinkhorn(geom, a, epsilon=0.1)
    with pytest.raises(ValueError, match="`b` has zero total mass"):
        otcore.sinkhorn(geom, None, torch.zeros(5), epsilon=0.1)


def test_unequal_mass_in_balanced_mode(xy):
    x, y = xy
    with pytest.raises(ValueError, match="equal total mass"):
        otcore.sinkhorn(otcore.PointCloud(x, y), None, torch.full((5,), 0.5), epsilon=0.1)


@pytest.mark.parametrize("eps", [0.0, -1.0])
def test_non_positive_epsilon(xy, eps):
    with pytest.raises(ValueError, match="`epsilon` must be > 0"):
        otcore.sinkhorn(otcore.PointCloud(*xy), epsilon=eps)


def test_relative_epsilon_of_a_zero_cost():
    with pytest.raises(ValueError, match="gives ε = 0"):
        otcore.sinkhorn(otcore.Geometry(torch.zeros(3, 3)), epsilon=0.1, relative_epsilon="std")


@pytest.mark.parametrize("name,tau", [("tau_a", 0.0), ("tau_a", 1.5), ("tau_b", -0.2)])
def test_tau_outside_unit_interval(xy, name, tau):
    with pytest.raises(ValueError, match=f"`{name}` must be in"):
        otcore.sinkhorn(otcore.PointCloud(*xy), epsilon=0.1, **{name: tau})


def test_unknown_names(xy):
    x, y = xy
    with pytest.raises(ValueError, match="Unknown `cost`"):
        otcore.PointCloud(x, y, cost="manhattan")
    with pytest.raises(ValueError, match="Unknown `backend`"):
        otcore.PointCloud(x, y, backend="cuda")
    with pytest.raises(ValueError, match="Unknown `relative_epsilon`"):
        otcore.sinkhorn(otcore.PointCloud(x, y), epsilon=0.1, relative_epsilon="median")
    with pytest.raises(ValueError, match="Unknown `grad`"):
        otcore.sinkhorn(otcore.PointCloud(x, y), epsilon=0.1, grad="autodiff")
    with pytest.raises(ValueError, match="Unknown `scale_cost`"):
        otcore.PointCloud(x, y, scale_cost="median")


def test_keops_backend_without_pykeops(xy, monkeypatch):
    monkeypatch.setattr(otcore.geometry, "keops_available", lambda: False)
    with pytest.raises(ImportError, match=r"pip install otcore\[keops\]"):
        otcore.PointCloud(*xy, backend="keops")
    assert otcore.PointCloud(*xy, backend="auto").backend == "dense"


def test_solver_parameters(xy):
    geom = otcore.PointCloud(*xy)
    with pytest.raises(ValueError, match="`tol` must be"):
        otcore.sinkhorn(geom, epsilon=0.1, tol=0.0)
    with pytest.raises(ValueError, match="`max_iter` must be"):
        otcore.sinkhorn(geom, epsilon=0.1, max_iter=0)
    with pytest.raises(ValueError, match="`epsilon_scaling` must be"):
        otcore.sinkhorn(geom, epsilon=0.1, epsilon_scaling=2.0)
    with pytest.raises(ValueError, match="`geom` must be"):
        otcore.sinkhorn(torch.rand(3, 3), epsilon=0.1)
    with pytest.raises(ValueError, match="implicit"):
        otcore.sinkhorn(geom, epsilon=0.1, tau_a=0.5, grad="implicit")


def test_equal_mass_check_is_relative():
    # masses 1e-9 and 2e-9 passed the old absolute check (atol = 1e-8)
    x, y = torch.randn(6, 2), torch.randn(5, 2)
    a, b = torch.full((6,), 1e-9 / 6), torch.full((5,), 2e-9 / 5)
    with pytest.raises(ValueError, match="equal total mass"):
        otcore.sinkhorn(otcore.PointCloud(x, y), a, b, epsilon=0.1)
    with pytest.raises(ValueError, match="equal total mass"):
        otcore.gromov_wasserstein(otcore.PointCloud(x), otcore.PointCloud(y), a, b, epsilon=0.1)
    # equal tiny masses, and masses equal to a relative 1e-6, are accepted
    otcore.sinkhorn(otcore.PointCloud(x, y), a, a[:5] * 6 / 5, epsilon=0.1)
    otcore.sinkhorn(
        otcore.PointCloud(x, y), a * 1e12, a[:5] * (6 / 5 * 1e12 * (1 + 1e-6)), epsilon=0.1
    )
