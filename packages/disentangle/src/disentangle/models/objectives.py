"""Terms of the VAE-family objectives: reconstruction, KL, β-TCVAE decomposition, HFS support.

Conventions (those of the HFS code, Roth et al. ICLR 2023, ``dent/losses/utils.py``): every term is
summed over pixels or latent dimensions and averaged over the batch. Posteriors are diagonal
Gaussians given by ``mean`` and ``logvar``, each ``(B, D)``; the prior is N(0, I).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "gaussian_log_density",
    "hausdorff_factorised_support",
    "kl_normal",
    "log_importance_weights",
    "reconstruction_loss",
    "tc_decomposition",
]

Reconstruction = Literal["bernoulli", "gaussian"]
_LOG_2PI = math.log(2 * math.pi)


def reconstruction_loss(
    logits: torch.Tensor, x: torch.Tensor, kind: Reconstruction = "bernoulli"
) -> torch.Tensor:
    """Negative log-likelihood of ``x`` under the decoder, summed over pixels, mean over batch.

    ``"bernoulli"``: BCE of ``sigmoid(logits)`` against ``x`` in [0, 1] (HFS default).
    ``"gaussian"``: squared error of ``sigmoid(logits)`` (unit variance, constants dropped).
    ``logits`` and ``x`` are ``(B, ...)`` of the same shape.
    """
    batch = x.shape[0]
    if kind == "bernoulli":
        return (
            F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="sum") / batch
        )
    if kind == "gaussian":
        return 0.5 * F.mse_loss(torch.sigmoid(logits.float()), x.float(), reduction="sum") / batch
    raise ValueError(f"reconstruction: expected 'bernoulli' or 'gaussian', got {kind!r}")


def kl_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) ‖ N(0, I)) per dimension, averaged over the batch: ``(D,)``.

    Closed form ½(μ² + σ² − log σ² − 1) (Kingma & Welling 2014, Appendix B).
    """
    return 0.5 * (mean.pow(2) + logvar.exp() - logvar - 1).mean(0)


def gaussian_log_density(x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(x | mean, exp(logvar)); broadcasts its arguments."""
    return -0.5 * (_LOG_2PI + logvar + (x - mean).pow(2) * torch.exp(-logvar))


def log_importance_weights(batch_size: int, dataset_size: int) -> torch.Tensor:
    """Log weights ``(B, B)`` of minibatch-stratified sampling (Chen et al. 2018, App. C.2).

    Row i estimates q(z_i) = (1/N) Σ_n q(z_i | n) from the batch: the sample's own posterior
    gets weight 1/N, one other batch element (the stratum, here i+1 mod B) gets (N − M)/(N M)
    and the remaining B − 2 get 1/M, with M = B − 1. Each row sums to 1.
    """
    if batch_size < 2:
        raise ValueError(
            f"batch_size: β-TCVAE needs at least 2 samples per batch, got {batch_size}"
        )
    if dataset_size < batch_size:
        raise ValueError(
            f"dataset_size: must be at least the batch size ({batch_size}), got {dataset_size}"
        )
    n, m = float(dataset_size), float(batch_size - 1)
    w = torch.full((batch_size, batch_size), 1.0 / m, dtype=torch.float64)
    idx = torch.arange(batch_size)
    w[idx, (idx + 1) % batch_size] = (n - m) / (n * m)
    w[idx, idx] = 1.0 / n
    return w.log().float()


def tc_decomposition(
    z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, dataset_size: int
) -> dict[str, torch.Tensor]:
    """β-TCVAE decomposition of the KL term with the minibatch-stratified estimator.

    Chen et al. 2018, eq. (2): E KL(q(z|x) ‖ p(z)) = I_q(x; z) + TC(z) + Σ_j KL(q(z_j) ‖ p(z_j)),
    with ``mi = E[log q(z|x) − log q(z)]``, ``tc = E[log q(z) − Σ_j log q(z_j)]`` and
    ``dim_kl = E[Σ_j log q(z_j) − log p(z)]``, expectations over the batch of samples ``z``
    ``(B, D)`` drawn from the posteriors ``(mean, logvar)``.
    """
    b = z.shape[0]
    log_qz_x = gaussian_log_density(z, mean, logvar).sum(1)
    log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    # mat[i, j, d] = log q(z_i,d | x_j)
    mat = gaussian_log_density(z[:, None], mean[None], logvar[None])
    log_w = log_importance_weights(b, dataset_size).to(z.device)
    log_qz = torch.logsumexp(mat.sum(2) + log_w, dim=1)
    log_prod_qzi = torch.logsumexp(mat + log_w[:, :, None], dim=1).sum(1)
    return {
        "mi": (log_qz_x - log_qz).mean(),
        "tc": (log_qz - log_prod_qzi).mean(),
        "dim_kl": (log_prod_qzi - log_pz).mean(),
    }


def hausdorff_factorised_support(
    mean: torch.Tensor, pairs: int | None = 25, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Hausdorff factorised-support (HFS) penalty on posterior means (Roth et al. 2023, eq. 6).

    For a latent pair (i, j) the batch's joint support is S = {(μ_bi, μ_bj)} and its factorised
    support the product S_i × S_j; since S ⊂ S_i × S_j, the Hausdorff distance reduces to
    ``max_{a,b} min_c (μ_ai − μ_ci)² + (μ_bj − μ_cj)²`` (the hard variant, squared distances).
    The penalty averages it over ``pairs`` latent pairs drawn at random (all pairs when ``None``
    or when there are fewer). ``mean`` is ``(B, D)``; returns a scalar.
    """
    d = mean.shape[1]
    if d < 2:
        return mean.new_zeros(())
    ii, jj = torch.triu_indices(d, d, offset=1, device=mean.device)
    if pairs is not None and pairs < ii.numel():
        pick = torch.randperm(ii.numel(), generator=generator)[:pairs].to(mean.device)
        ii, jj = ii[pick], jj[pick]
    m = mean.float()
    # diff[p, a, c] = (μ_a,i_p − μ_c,i_p)²
    di = (m[:, ii].T[:, :, None] - m[:, ii].T[:, None, :]).pow(2)
    dj = (m[:, jj].T[:, :, None] - m[:, jj].T[:, None, :]).pow(2)
    dist = di[:, :, None, :] + dj[:, None, :, :]  # (P, a, b, c)
    return dist.amin(dim=3).amax(dim=(1, 2)).mean()
