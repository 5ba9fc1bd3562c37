"""GMG and DST regularisers (through otcore): zero on isometries, each lowers its own measure."""

from __future__ import annotations

import math

import pytest
import torch

import otcore
from disentangle.models import VAE, GeometricRegulariser


def _isometry(d_in: int, d_out: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d_out, d_in, generator=g, dtype=torch.float64))
    return q.float()


@pytest.mark.parametrize("cost", ["sqeuclidean", "scaled_sqeuclidean", "cosine"])
def test_gmg_and_dst_vanish_for_an_isometric_decoder(cost):
    q = _isometry(10, 64)
    decoder = lambda z: z @ q.T  # noqa: E731  (a linear isometry R^10 -> R^64)
    z = torch.randn(64, 10, generator=torch.Generator().manual_seed(1))
    gmg = GeometricRegulariser("gmg", "decoder", cost).measure(decoder, z)
    dst = GeometricRegulariser("dst", "decoder", cost).measure(decoder, z)
    warped = lambda z: torch.tanh(3 * z) @ q.T  # noqa: E731  (not an isometry)
    dst_warped = GeometricRegulariser("dst", "decoder", cost).measure(warped, z)
    assert dst.abs().item() < 1e-6 * max(1.0, dst_warped.item())
    assert abs(gmg.item()) < 1e-3 * dst_warped.item()
    assert dst_warped.item() > 0


def test_gmg_is_at_most_the_distortion():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 5))
    x = torch.randn(32, 3)
    for cost in ("sqeuclidean", "cosine"):
        gmg = GeometricRegulariser("gmg", "encoder", cost).measure(net, x).item()
        dst = GeometricRegulariser("dst", "encoder", cost).measure(net, x).item()
        # GMG ≥ −ε log n, the entropic bias, with ε = ε0·mean(Cx)·mean(Cy), ε0 = 0.01
        with torch.no_grad():
            z = net(x)
        cx, cz = otcore.pairwise_cost(x, cost), otcore.pairwise_cost(z, cost)
        eps = 0.01 * float(cx.mean() * cz.mean())
        assert -eps * math.log(32) <= gmg <= dst + 1e-6


@pytest.mark.parametrize("kind", ["gmg", "dst"])
def test_regulariser_trained_alone_lowers_its_measure(kind):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3))
    with torch.no_grad():  # start far from any isometry: a strong anisotropic warp
        net[0].weight.mul_(torch.tensor([[4.0, 0.3]]))
    reg = GeometricRegulariser(kind, "decoder", "sqeuclidean", epsilon0=0.05)
    x = torch.randn(32, 2)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    first = reg.measure(net, x).item()
    for _ in range(40):
        value = reg.measure(net, x)
        opt.zero_grad()
        value.backward()
        opt.step()
    last = reg.measure(net, x).item()
    assert math.isfinite(last) and last < 0.5 * first


def test_detach_reference_blocks_gradients_through_the_reference():
    x = torch.randn(16, 4, requires_grad=True)
    y = torch.randn(16, 6, requires_grad=True)
    for detach in (True, False):
        x.grad = None
        reg = GeometricRegulariser("dst", "decoder", "cosine", detach_reference=detach)
        reg.measure(lambda t: t, x, y).backward()
        assert (x.grad is None) == detach
        assert y.grad is not None


@pytest.mark.parametrize("side", ["encoder", "decoder"])
def test_vae_with_gmg_trains_on_either_side(side):
    torch.manual_seed(0)
    reg = GeometricRegulariser("gmg", side, "cosine", weight=10.0)
    model = VAE((1, 16, 16), 4, "mlp", regulariser=reg)
    out = model(torch.rand(16, 1, 16, 16))
    logs = {
        f"gmg_{k}" for k in ("dst", "gw", "epsilon", "fell_back", "from_identity", "degenerate")
    }
    assert set(out) == {"loss", "rec", "kl", "gmg"} | logs and out["gmg"] >= -1e-4
    out["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())


def test_decoder_free_vae_trains_with_encoder_gmg():
    torch.manual_seed(0)
    reg = GeometricRegulariser("gmg", "encoder", "cosine", weight=10.0)
    model = VAE((1, 16, 16), 4, "mlp", reconstruction="none", regulariser=reg)
    out = model(torch.rand(16, 1, 16, 16))
    logs = {
        f"gmg_{k}" for k in ("dst", "gw", "epsilon", "fell_back", "from_identity", "degenerate")
    }
    assert set(out) == {"loss", "kl", "gmg"} | logs
    out["loss"].backward()
    assert model.encoder.head.weight.grad.abs().sum() > 0
