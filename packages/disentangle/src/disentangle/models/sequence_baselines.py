"""Baselines of the FFRL experiments (Song et al., NeurIPS 2023, Table 1): VAE, β-VAE and SlowVAE
trained on the same sequence data, and the latent-traversal E_k that scores them.

The baselines have no flows, so E_k is computed by the traversal protocol of the authors'
deleted ``lib/trainer_slowvae.py`` (``papers/ffrl.md`` §3.2): z_0 is a sample of q(z|x_0);
for each latent dimension i and step t = 1..T_e, coordinate i of z_0 is set to the t-th of
T_e + 2 standard-normal quantiles ``Φ⁻¹(linspace(0.05, 0.95, T_e + 2))``, decoded and compared
with the true frame x_t (pixel L1 summed over pixels and steps, mean over the batch). The
authors **sum over all dimensions** (so the figure grows with the latent size); this module
returns that sum and also the error of the best single dimension (an oracle choice of the
traversed axis, the fairer comparison with one FFRL flow).

- :class:`SequenceVAE`: a VAE (β = 1) or β-VAE on every frame x_0..x_T′ of the training
  sequences (Bernoulli decoder, the frames FFRL sees).
- :class:`SlowVAE` (Klindt et al., ICLR 2021): consecutive frame pairs (x_t, x_{t+1}) through one
  shared encoder; q(z_t|x_t) is matched to N(0, I) with weight β and q(z_{t+1}|x_{t+1}) to the
  sparse transition prior p(z_{t+1}|z_t) = Laplace(z_t, 1/rate) with weight γ, the latter KL
  estimated with one sample of each posterior. Defaults β = 1, γ = 10, rate 6 (the authors'
  baseline, ``papers/ffrl.md`` §3.2).

Both take the batches FFRL takes (``(x0, index)`` image batches with ``sequence_fn``, or
``{"frames", "k"}``) and expose ``encoder``, ``decode``, ``represent``, ``steps`` and
``equivariance_error(frames, k)``, so :class:`~disentangle.train.flow_evaluation.FlowEvaluator`
scores them unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from disentangle.models.ffrl import check_frames, split_loader_batch
from disentangle.models.objectives import gaussian_log_density, kl_normal, reconstruction_loss
from disentangle.nn import Architecture, make_decoder, make_encoder

__all__ = ["SequenceVAE", "SlowVAE", "traversal_equivariance_error"]

#: Images decoded per call by :func:`traversal_equivariance_error` (a memory bound only).
TRAVERSAL_DECODES = 4096


@torch.no_grad()
def traversal_equivariance_error(
    encoder: nn.Module,
    decode: Callable[[torch.Tensor], torch.Tensor],
    frames: torch.Tensor,
    steps: int,
) -> dict[str, torch.Tensor]:
    """Latent-traversal E_k of one batch of sequences ``(B, T + 1, C, H, W)`` (module doc).

    Returns ``{"sum": Σ over latent dimensions (the authors' protocol), "per_pixel": that sum
    divided by D·T_e·C·H·W, "best_dim": the smallest single-dimension E_k, "per_dim": (D,)}``.
    """
    if frames.ndim != 5 or not 1 <= steps < frames.shape[1]:
        raise ValueError(
            f"frames, steps: need (B, T+1, C, H, W) frames and 1 ≤ steps ≤ T, got shape "
            f"{tuple(frames.shape)} and steps={steps}"
        )
    mean, logvar = encoder(frames[:, 0])
    z0 = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
    B, D = z0.shape
    q = torch.linspace(0.05, 0.95, steps + 2, dtype=z0.dtype, device=z0.device)
    values = torch.special.ndtri(q)[1 : steps + 1]  # (T_e,)
    target = frames[:, None, 1 : steps + 1]
    per_dim = []
    chunk = max(1, TRAVERSAL_DECODES // (B * steps))  # bound the decoder batch (D can be 324)
    for start in range(0, D, chunk):
        dims = torch.arange(start, min(start + chunk, D), device=z0.device)
        z = z0[:, None, None, :].repeat(1, len(dims), steps, 1)  # (B, d, T_e, D)
        z[:, torch.arange(len(dims)), :, dims] = values  # axis i of copy (i, t): t-th quantile
        decoded = decode(z.flatten(0, 2)).unflatten(0, (B, len(dims), steps))
        per_dim.append((decoded - target).abs().sum((2, 3, 4, 5)).mean(0))
    per_dim = torch.cat(per_dim)  # (D,)
    total = per_dim.sum()
    return {
        "sum": total,
        "per_pixel": total / (D * frames[0, 1 : steps + 1].numel()),
        "best_dim": per_dim.min(),
        "per_dim": per_dim,
    }


class SequenceVAE(nn.Module):
    """VAE (``beta = 1``) or β-VAE on all frames x_0..x_T′ of the sequences (module doc); also
    the base of :class:`SlowVAE` (the batch format of FFRL and the traversal E_k)."""

    def __init__(
        self,
        observation_shape: Sequence[int],
        latent_dim: int = 16,
        steps: int = 8,
        beta: float = 1.0,
        architecture: Architecture = "mlp",
        sequence_fn: Callable[..., torch.Tensor] | None = None,
        num_transformations: int = 3,
    ) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps: must be ≥ 1, got {steps}")
        if not beta >= 0:
            raise ValueError(f"beta: must be ≥ 0, got {beta}")
        self.observation_shape = tuple(observation_shape)
        self.latent_dim, self.steps, self.beta = latent_dim, steps, beta
        self.sequence_fn, self.num_transformations = sequence_fn, num_transformations
        self.encoder = make_encoder(architecture, self.observation_shape, latent_dim)
        self.decoder = make_decoder(architecture, self.observation_shape, latent_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior ``(mean, logvar)`` of frames ``(B, C, H, W)``."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder mean in [0, 1], ``(B, C, H, W)``."""
        return torch.sigmoid(self.decoder(z))

    @torch.no_grad()
    def represent(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior means ``(B, n)``."""
        return self.encoder(x)[0]

    def equivariance_error(
        self, frames: torch.Tensor, k: int, steps: int | None = None
    ) -> dict[str, torch.Tensor]:
        """Traversal E_k (module doc) over t = 1..steps (default T′ − 1, as FFRL's)."""
        steps = self.steps - 1 if steps is None else steps
        return traversal_equivariance_error(self.encoder, self.decode, frames, steps)

    def _frames(self, batch) -> torch.Tensor:
        """``(B, T′ + 1, C, H, W)`` training frames from any batch format FFRL accepts."""
        if isinstance(batch, dict) or hasattr(batch, "frames"):
            frames = batch["frames"] if isinstance(batch, dict) else batch.frames
        else:
            if self.sequence_fn is None:
                raise ValueError(
                    "batch: plain image batches need sequence_fn; otherwise pass "
                    "{'frames': (B, T+1, C, H, W)}"
                )
            x0, indices = split_loader_batch(batch)
            k = int(torch.randint(self.num_transformations, (1,)))
            frames = self.sequence_fn(x0, k, indices)
        check_frames(frames, self.observation_shape, self.steps)
        return frames[:, : self.steps + 1]

    def _vae_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Posterior sample ``z`` of frames ``x`` with its ``mean`` and ``logvar``, and ``rec``,
        the Bernoulli reconstruction loss per image."""
        mean, logvar = self.encoder(x)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        rec = reconstruction_loss(self.decoder(z), x, "bernoulli")
        return {"z": z, "mean": mean, "logvar": logvar, "rec": rec}

    def forward(self, batch) -> dict[str, torch.Tensor]:
        """``{"loss", "rec", "kl"}`` per image (mean over the B·(T′+1) frames)."""
        t = self._vae_terms(self._frames(batch).flatten(0, 1))
        kl = kl_normal(t["mean"].float(), t["logvar"].float()).sum()
        return {"loss": t["rec"] + self.beta * kl, "rec": t["rec"], "kl": kl}


class SlowVAE(SequenceVAE):
    """SlowVAE on consecutive frame pairs with a Laplace transition prior (module doc)."""

    def __init__(
        self,
        observation_shape: Sequence[int],
        latent_dim: int = 16,
        steps: int = 8,
        beta: float = 1.0,
        gamma: float = 10.0,
        rate: float = 6.0,
        **kwargs,
    ) -> None:
        super().__init__(observation_shape, latent_dim, steps, beta, **kwargs)
        if not gamma >= 0:
            raise ValueError(f"gamma: must be ≥ 0, got {gamma}")
        if not rate > 0:
            raise ValueError(f"rate: must be > 0, got {rate}")
        self.gamma, self.rate = gamma, rate

    def forward(self, batch) -> dict[str, torch.Tensor]:
        """``{"loss", "rec", "kl", "kl_slow"}`` per pair (one random t per sequence)."""
        frames = self._frames(batch)
        B = frames.shape[0]
        t = torch.randint(self.steps, (B,), device=frames.device)
        rows = torch.arange(B, device=frames.device)
        terms = self._vae_terms(torch.cat([frames[rows, t], frames[rows, t + 1]]))  # 2B frames
        z, mean, logvar = terms["z"], terms["mean"], terms["logvar"]
        rec = terms["rec"] * 2  # per pair
        kl = kl_normal(mean[:B].float(), logvar[:B].float()).sum()
        # KL(q(z_{t+1}|x_{t+1}) ‖ Laplace(z_t, 1/rate)), one sample of each posterior
        z_t, z_next = z[:B].float(), z[B:].float()
        log_q = gaussian_log_density(z_next, mean[B:].float(), logvar[B:].float()).sum(1)
        log_p = (math.log(self.rate / 2) - self.rate * (z_next - z_t).abs()).sum(1)
        kl_slow = (log_q - log_p).mean()
        loss = rec + self.beta * kl + self.gamma * kl_slow
        return {"loss": loss, "rec": rec, "kl": kl, "kl_slow": kl_slow}
