"""Nets, VAE-family objectives and the Jacobian regulariser (no OT solver needed)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from disentangle.models import (
    VAE,
    GeometricRegulariser,
    hausdorff_factorised_support,
    jacobian_isometry,
    kl_normal,
    log_importance_weights,
    reconstruction_loss,
    tc_decomposition,
)
from disentangle.nn import ConvDecoder, ConvEncoder, make_decoder, make_encoder


@pytest.mark.parametrize("channels", [1, 3])
def test_locatello_nets_shapes_and_size(channels):
    enc, dec = ConvEncoder((channels, 64, 64)), ConvDecoder((channels, 64, 64))
    mean, logvar = enc(torch.rand(2, channels, 64, 64))
    assert mean.shape == logvar.shape == (2, 10)
    assert dec(mean).shape == (2, channels, 64, 64)
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
    tconvs = [m for m in dec.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [c.out_channels for c in tconvs] == [64, 32, 32, channels]
    # Parameter count from the layer sizes: 4 convs + FC 1024->256 + head 256->20.
    conv = sum(4 * 4 * a * b + b for a, b in [(channels, 32), (32, 32), (32, 64), (64, 64)])
    assert sum(p.numel() for p in enc.parameters()) == conv + 1024 * 256 + 256 + 256 * 20 + 20


def test_nets_reject_bad_shapes():
    with pytest.raises(ValueError, match="multiples of 16"):
        ConvEncoder((1, 40, 40))
    with pytest.raises(ValueError, match="architecture"):
        make_encoder("resnet", (1, 64, 64), 10)
    assert make_decoder("mlp", (1, 8, 8), 3)(torch.zeros(2, 3)).shape == (2, 1, 8, 8)


def test_kl_closed_form_matches_torch_distributions():
    mean, logvar = torch.randn(5, 3), torch.randn(5, 3)
    q = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    ref = torch.distributions.kl_divergence(q, p).mean(0)
    torch.testing.assert_close(kl_normal(mean, logvar), ref)


def test_bernoulli_reconstruction_is_summed_bce():
    logits, x = torch.randn(4, 1, 3, 3), torch.rand(4, 1, 3, 3)
    p = torch.sigmoid(logits)
    ref = -(x * p.log() + (1 - x) * (1 - p).log()).sum() / 4
    torch.testing.assert_close(reconstruction_loss(logits, x), ref)
    with pytest.raises(ValueError, match="reconstruction"):
        reconstruction_loss(logits, x, "laplace")


@given(st.integers(2, 40), st.integers(0, 1000))
@settings(max_examples=25, deadline=None)
def test_stratified_weights_are_a_distribution(b, extra):
    w = log_importance_weights(b, b + extra).exp().double()
    torch.testing.assert_close(w.sum(1), torch.ones(b, dtype=torch.float64), rtol=0, atol=1e-6)
    torch.testing.assert_close(w.diagonal(), torch.full((b,), 1 / (b + extra), dtype=w.dtype))


def test_tc_decomposition_sums_to_the_kl_estimate():
    torch.manual_seed(0)
    mean, logvar = torch.randn(32, 4), torch.randn(32, 4) * 0.3
    z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
    parts = tc_decomposition(z, mean, logvar, dataset_size=1000)
    from disentangle.models import gaussian_log_density

    kl_mc = (
        gaussian_log_density(z, mean, logvar).sum(1) - gaussian_log_density(z, 0 * z, 0 * z).sum(1)
    ).mean()
    torch.testing.assert_close(parts["mi"] + parts["tc"] + parts["dim_kl"], kl_mc)


def test_total_correlation_detects_dependent_latents():
    torch.manual_seed(0)
    n, logvar = 512, torch.full((512, 2), math.log(0.01))
    indep = torch.randn(n, 2)
    dep = torch.randn(n, 1).repeat(1, 2)
    tc_indep = tc_decomposition(indep, indep, logvar, 10_000)["tc"]
    tc_dep = tc_decomposition(dep, dep, logvar, 10_000)["tc"]
    assert tc_dep > tc_indep + 1.0
    assert abs(tc_indep) < 0.5


def test_hausdorff_factorised_support_known_answers():
    diagonal = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert hausdorff_factorised_support(diagonal).item() == pytest.approx(1.0)
    grid = torch.cartesian_prod(torch.arange(3.0), torch.arange(3.0))
    assert hausdorff_factorised_support(grid).item() == 0.0


def test_jacobian_isometry_on_linear_maps():
    q, _ = torch.linalg.qr(torch.randn(6, 3))
    x = torch.randn(20, 3)
    iso, scaled = (lambda z: z @ q.T), (lambda z: 3 * z @ q.T)
    a = torch.diag(torch.tensor([1.0, 2.0, 4.0]))
    stretch = lambda z: z @ a @ q.T  # noqa: E731
    assert jacobian_isometry(iso, x, "sqeuclidean") < 1e-10
    assert jacobian_isometry(scaled, x, "sqeuclidean") > 10
    assert jacobian_isometry(scaled, x, "scaled_sqeuclidean") < 1e-10
    assert jacobian_isometry(scaled, x, "cosine") < 1e-10
    assert jacobian_isometry(stretch, x, "cosine", probes=4) > 0.05
    # Reverse mode (a map to a smaller space): the transpose of an isometry is a co-isometry.
    assert jacobian_isometry(lambda y: y @ q, torch.randn(20, 6), "sqeuclidean") < 1e-10


def test_jacobian_regulariser_lowers_its_measure():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 5))
    reg = GeometricRegulariser("jacobian", "decoder", "scaled_sqeuclidean")
    x = torch.randn(64, 2)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    gen = torch.Generator().manual_seed(1)
    first = jacobian_isometry(net, x, "scaled_sqeuclidean", probes=8, generator=gen).item()
    for _ in range(200):
        loss = reg.measure(net, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    gen = torch.Generator().manual_seed(1)
    last = jacobian_isometry(net, x, "scaled_sqeuclidean", probes=8, generator=gen).item()
    assert last < 0.2 * first


@pytest.mark.parametrize("base", ["beta_vae", "beta_tcvae"])
def test_vae_terms_and_gradients(base):
    torch.manual_seed(0)
    model = VAE(
        (1, 16, 16),
        4,
        "mlp",
        base=base,
        beta=4,
        hfs_gamma=10,
        dataset_size=100,
        regulariser=GeometricRegulariser("jacobian", "encoder", "cosine", weight=2.0),
    )
    out = model((torch.rand(8, 1, 16, 16), torch.zeros(8, 3)))
    expected = {"loss", "rec", "kl", "hfs", "jacobian"}
    expected |= {"mi", "tc", "dim_kl"} if base == "beta_tcvae" else set()
    assert set(out) == expected
    kl_part = 4 * out["kl"] if base == "beta_vae" else out["mi"] + 4 * out["tc"] + out["dim_kl"]
    total = out["rec"] + kl_part + 10 * out["hfs"] + 2 * out["jacobian"]
    torch.testing.assert_close(out["loss"], total)
    out["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())


def test_decoder_free_variant_has_no_decoder():
    reg = GeometricRegulariser("jacobian", "encoder", "sqeuclidean")
    model = VAE((1, 16, 16), 3, "mlp", reconstruction="none", regulariser=reg)
    assert model.decoder is None
    assert set(model(torch.rand(4, 1, 16, 16))) == {"loss", "kl", "jacobian"}
    with pytest.raises(ValueError, match="decoder-free"):
        VAE(
            (1, 16, 16),
            3,
            "mlp",
            reconstruction="none",
            regulariser=GeometricRegulariser("gmg", "decoder"),
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weight": -1.0}, "weight"),
        ({"cost": "l1"}, "cost"),
        ({"side": "middle"}, "side"),
        ({"kind": "mmd"}, "kind"),
        ({"epsilon0": 0.0}, "epsilon0"),
    ],
)
def test_regulariser_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GeometricRegulariser(**kwargs)


def test_regulariser_needs_two_points():
    reg = GeometricRegulariser("dst", "decoder", "cosine")
    with pytest.raises(ValueError, match="at least 2"):
        reg.measure(lambda z: z, torch.zeros(1, 3))


# --- FFRL's ConvVAE (papers/ffrl.md §1.9) ----------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "shape", "s", "params"),
    [
        ("flow_conv", (3, 28, 28), 324, 70_896_711),
        ("flow_conv", (3, 64, 64), 226, 161_375_529),
        ("flow_conv2", (3, 128, 128), 324, 32_574_639),
    ],
)
def test_flow_conv_has_the_papers_parameter_counts(arch, shape, s, params):
    from disentangle.nn import make_decoder, make_encoder

    with torch.device("meta"):  # count without allocating 0.1–0.6 GB
        n = sum(
            p.numel()
            for m in (make_encoder(arch, shape, s), make_decoder(arch, shape, s))
            for p in m.parameters()
        )
    assert n == params  # the brief's ≈70.9M (MNIST), ≈161.4M (Shapes3D), ≈32.6M (128×128)


@pytest.mark.parametrize(
    ("arch", "shape", "factor"),
    [("flow_conv", (3, 28, 28), 4), ("flow_conv", (1, 64, 64), 4), ("flow_conv2", (3, 32, 32), 16)],
)
def test_flow_conv_round_trip_shapes(arch, shape, factor):
    from disentangle.nn import make_decoder, make_encoder

    enc, dec = make_encoder(arch, shape, 6), make_decoder(arch, shape, 6)
    mean, logvar = enc(torch.rand(2, *shape))
    assert mean.shape == logvar.shape == (2, 6)
    assert dec(mean).shape == (2, *shape)
    with pytest.raises(ValueError, match=f"multiple of {factor}"):
        make_encoder(arch, (3, 30, 30), 6)


def test_gradient_probe_known_shares():
    """The regulariser's gradient share: 1 when it is the only loss on the network, → 0 as λ → 0."""
    x = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    only = VAE(
        (1, 16, 16),
        latent_dim=3,
        architecture="mlp",
        beta=0.0,
        reconstruction="none",
        regulariser=GeometricRegulariser("dst", "encoder", "sqeuclidean", weight=2.0),
    )
    assert only.gradient_probe(only(x)) == {"reg_grad_share": pytest.approx(1.0, abs=1e-12)}
    shares = []
    for weight in (1e-9, 1e3):
        torch.manual_seed(0)
        model = VAE(
            (1, 16, 16),
            latent_dim=3,
            architecture="mlp",
            regulariser=GeometricRegulariser("gmg", "decoder", "cosine", weight=weight),
        )
        shares.append(model.gradient_probe(model(x))["reg_grad_share"])
    assert shares[0] < 1e-6 < shares[1]
    torch.manual_seed(0)
    plain = VAE((1, 16, 16), latent_dim=3, architecture="mlp")
    assert plain.gradient_probe(plain(x)) == {}
