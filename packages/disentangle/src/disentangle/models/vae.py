"""The VAE family of the GMG paper: β-VAE, β-TCVAE, HFS, a geometric regulariser, decoder-free.

One module covers the four base objectives of the GMG paper (β-VAE, β-TCVAE, each with or without
the HFS support term; Uscidda et al. ICLR 2025, §5 "Main results") plus the decoder-free variant
(prior matching and a regulariser on the encoder, no reconstruction term; GMG paper, appendix):

    L = rec + KL-part + γ_HFS · HFS(μ) + λ · R(T)

- β-VAE (Higgins et al. 2017): KL-part = β · KL(q(z|x) ‖ N(0, I)).
- β-TCVAE (Chen et al. 2018, eq. 4): KL-part = α·MI + β·TC + γ·dim-KL with the
  minibatch-stratified estimator (:func:`~disentangle.models.objectives.tc_decomposition`).
- HFS (Roth et al. 2023): Hausdorff factorised support on the posterior means.
- R: :class:`~disentangle.models.regularisers.GeometricRegulariser` (GMG, DST, Jacobian).

``forward(batch)`` takes ``(images, factors)`` or images alone and returns a dict of scalar
tensors whose ``"loss"`` entry is minimised; the other entries are logged. This is the contract of
:func:`disentangle.train.fit`.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from disentangle.models.objectives import (
    hausdorff_factorised_support,
    kl_normal,
    reconstruction_loss,
    tc_decomposition,
)
from disentangle.models.regularisers import GeometricRegulariser
from disentangle.nn import Architecture, make_decoder, make_encoder

__all__ = ["BASES", "VAE"]

Base = Literal["beta_vae", "beta_tcvae"]
BASES: tuple[str, ...] = ("beta_vae", "beta_tcvae")


class VAE(nn.Module):
    """Gaussian-posterior VAE with a base objective, optional HFS and a geometric regulariser.

    Parameters
    ----------
    observation_shape: ``(C, H, W)`` of the images (or any shape for ``architecture="mlp"``).
    latent_dim: D.
    architecture: ``"conv"`` (Locatello et al.) or ``"mlp"``.
    base: ``"beta_vae"`` or ``"beta_tcvae"``.
    beta: weight of the KL (β-VAE) or of the total correlation (β-TCVAE).
    tc_alpha, tc_gamma: β-TCVAE weights of the mutual information and the dimension-wise KL.
    hfs_gamma: weight of the HFS support term (0 disables it).
    hfs_pairs: latent pairs drawn per step for HFS (HFS code default 25).
    reconstruction: ``"bernoulli"``, ``"gaussian"`` or ``"none"`` (decoder-free: no decoder).
    regulariser: a :class:`GeometricRegulariser` or ``None``.
    dataset_size: N, needed by the β-TCVAE estimator.
    """

    def __init__(
        self,
        observation_shape: tuple[int, ...],
        latent_dim: int = 10,
        architecture: Architecture = "conv",
        base: Base = "beta_vae",
        beta: float = 1.0,
        tc_alpha: float = 1.0,
        tc_gamma: float = 1.0,
        hfs_gamma: float = 0.0,
        hfs_pairs: int = 25,
        reconstruction: Literal["bernoulli", "gaussian", "none"] = "bernoulli",
        regulariser: GeometricRegulariser | None = None,
        dataset_size: int | None = None,
    ) -> None:
        super().__init__()
        if base not in BASES:
            raise ValueError(f"base: expected one of {BASES}, got {base!r}")
        for name, value in [("beta", beta), ("tc_alpha", tc_alpha), ("tc_gamma", tc_gamma)]:
            if not value >= 0:
                raise ValueError(f"{name}: must be ≥ 0, got {value}")
        if not hfs_gamma >= 0:
            raise ValueError(f"hfs_gamma: must be ≥ 0, got {hfs_gamma}")
        if reconstruction not in ("bernoulli", "gaussian", "none"):
            raise ValueError(
                "reconstruction: expected 'bernoulli', 'gaussian' or 'none', "
                f"got {reconstruction!r}"
            )
        decoder_free = reconstruction == "none"
        if decoder_free and regulariser is not None and regulariser.side == "decoder":
            raise ValueError(
                "regulariser.side: the decoder-free variant (reconstruction='none') has no "
                "decoder; put the regulariser on the encoder"
            )
        if base == "beta_tcvae" and dataset_size is None:
            raise ValueError("dataset_size: β-TCVAE's stratified estimator needs the dataset size")
        self.observation_shape = tuple(observation_shape)
        self.latent_dim = latent_dim
        self.base, self.beta, self.tc_alpha, self.tc_gamma = base, beta, tc_alpha, tc_gamma
        self.hfs_gamma, self.hfs_pairs = hfs_gamma, hfs_pairs
        self.reconstruction = reconstruction
        self.regulariser = regulariser
        self.dataset_size = dataset_size
        self.encoder = make_encoder(architecture, self.observation_shape, latent_dim)
        self.decoder = (
            None if decoder_free else make_decoder(architecture, self.observation_shape, latent_dim)
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior ``(mean, logvar)``, each ``(B, D)``, of images ``(B, *observation_shape)``."""
        return self.encoder(x)

    @torch.no_grad()
    def represent(self, x: torch.Tensor) -> torch.Tensor:
        """The representation scored by the metrics: posterior means ``(B, D)``."""
        return self.encoder(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder mean in [0, 1] ``(B, *observation_shape)`` of latents ``(B, D)``."""
        if self.decoder is None:
            raise RuntimeError("decode: this decoder-free model has no decoder")
        return torch.sigmoid(self.decoder(z))

    def _encoder_mean(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)[0]

    def forward(self, batch: torch.Tensor | tuple | list) -> dict[str, torch.Tensor]:
        """Loss terms on a batch ``(images, factors)`` or ``images``; ``"loss"`` is minimised."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        mean, logvar = self.encoder(x)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        out: dict[str, torch.Tensor] = {}
        loss = mean.new_zeros((), dtype=torch.float32)
        logits = None
        if self.decoder is not None:
            logits = self.decoder(z)
            out["rec"] = reconstruction_loss(logits, x, self.reconstruction)
            loss = loss + out["rec"]
        kl = kl_normal(mean.float(), logvar.float())
        out["kl"] = kl.sum()
        if self.base == "beta_vae":
            loss = loss + self.beta * out["kl"]
        else:
            parts = tc_decomposition(z.float(), mean.float(), logvar.float(), self.dataset_size)
            out.update(parts)
            loss = (
                loss
                + self.tc_alpha * parts["mi"]
                + self.beta * parts["tc"]
                + self.tc_gamma * parts["dim_kl"]
            )
        if self.hfs_gamma > 0:
            out["hfs"] = hausdorff_factorised_support(mean, self.hfs_pairs)
            loss = loss + self.hfs_gamma * out["hfs"]
        reg = self.regulariser
        if reg is not None:
            if reg.side == "decoder":
                image = None if reg.kind == "jacobian" else torch.sigmoid(logits)
                value, logs = reg.measure_with_logs(self.decode, z, image)
            else:
                image = None if reg.kind == "jacobian" else mean
                value, logs = reg.measure_with_logs(self._encoder_mean, x, image)
            out[reg.kind] = value
            out.update({f"{reg.kind}_{k}": v for k, v in logs.items()})
            if reg.weight > 0:
                loss = loss + reg.weight * value
        out["loss"] = loss
        return out

    def gradient_probe(self, out: dict[str, torch.Tensor]) -> dict[str, float]:
        """The regulariser's share of the gradient norm on the network it regularises.

        Called by :func:`~disentangle.train.fit` on logged steps, after ``forward`` and before
        the backward pass (the graph is kept). With θ the parameters of the regularised side
        (decoder or encoder), g_R = ∇_θ λR and g_o = ∇_θ (loss − λR):
        ``reg_grad_share`` = ‖g_R‖ / (‖g_R‖ + ‖g_o‖) ∈ [0, 1] (0.5: equal norms). Empty without
        a weighted regulariser.
        """
        reg = self.regulariser
        if reg is None or reg.weight == 0 or not out[reg.kind].requires_grad:
            return {}
        params = list((self.decoder if reg.side == "decoder" else self.encoder).parameters())
        weighted = reg.weight * out[reg.kind]
        g_reg = torch.autograd.grad(weighted, params, retain_graph=True, allow_unused=True)
        g_all = torch.autograd.grad(out["loss"], params, retain_graph=True, allow_unused=True)
        squares = torch.zeros(2, dtype=torch.float64, device=weighted.device)
        for p, gr, ga in zip(params, g_reg, g_all):
            gr = torch.zeros_like(p) if gr is None else gr
            ga = torch.zeros_like(p) if ga is None else ga
            squares += torch.stack([gr.double().pow(2).sum(), (ga - gr).double().pow(2).sum()])
        norm_reg, norm_other = squares.sqrt().tolist()  # one host synchronisation
        total = norm_reg + norm_other
        return {"reg_grad_share": norm_reg / total if total > 0 else 0.0}
