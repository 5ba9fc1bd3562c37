"""Encoders and decoders of the disentanglement literature.

Images are channels-first ``(B, C, H, W)`` float tensors in [0, 1]; latents are ``(B, D)``.

- :class:`ConvEncoder` / :class:`ConvDecoder`: the architecture of Locatello et al. (ICML 2019,
  Table 1 of the appendix) as used by the HFS code (Roth et al., ICLR 2023,
  ``dent/models/{encoder,decoder}/locatello.py``): four 4×4 stride-2 convolutions with 32, 32, 64,
  64 channels, a 256-unit fully connected layer and a Gaussian head ``(mean, logvar)``; the
  decoder mirrors it with transposed convolutions and returns *logits* (a Bernoulli decoder's
  sigmoid is applied by the loss, never inside the network).
- :class:`MLPEncoder` / :class:`MLPDecoder`: the same interface for small images or vectors.

:func:`make_encoder` and :func:`make_decoder` pick one by name.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Literal

import torch
from einops.layers.torch import Rearrange
from torch import nn

__all__ = [
    "ConvDecoder",
    "ConvEncoder",
    "MLPDecoder",
    "MLPEncoder",
    "make_decoder",
    "make_encoder",
]

Architecture = Literal["conv", "mlp"]


class ConvEncoder(nn.Module):
    """Locatello et al. (2019) convolutional encoder, ``(B, C, 64, 64) -> (mean, logvar)``.

    Four Conv(4×4, stride 2, pad 1) layers with ``channels`` outputs and ReLU, a ``hidden``-unit
    linear layer with ReLU, and a linear head giving the ``(B, D)`` mean and log-variance.
    The spatial size must be a multiple of 16 (64 in the literature, 32 for fast tests).
    """

    def __init__(
        self,
        observation_shape: tuple[int, int, int],
        latent_dim: int = 10,
        channels: tuple[int, ...] = (32, 32, 64, 64),
        hidden: int = 256,
    ) -> None:
        super().__init__()
        c, h, w = observation_shape
        scale = 2 ** len(channels)
        if h % scale or w % scale:
            raise ValueError(
                f"observation_shape: height and width must be multiples of {scale} for the conv "
                f"encoder, got {observation_shape}"
            )
        layers: list[nn.Module] = []
        for out in channels:
            layers += [nn.Conv2d(c, out, 4, stride=2, padding=1), nn.ReLU()]
            c = out
        flat = c * (h // scale) * (w // scale)
        self.body = nn.Sequential(
            *layers, Rearrange("b c h w -> b (c h w)"), nn.Linear(flat, hidden), nn.ReLU()
        )
        self.head = nn.Linear(hidden, 2 * latent_dim)
        self.latent_dim = latent_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the posterior ``(mean, logvar)``, each ``(B, D)``."""
        mean, logvar = self.head(self.body(x)).chunk(2, dim=-1)
        return mean, logvar


class ConvDecoder(nn.Module):
    """Mirror of :class:`ConvEncoder`: ``(B, D) -> (B, C, H, W)`` Bernoulli logits.

    Linear ``D -> hidden -> 64·(H/16)·(W/16)`` with ReLU, then transposed Conv(4×4, stride 2,
    pad 1) layers with 64, 32, 32 channels and ReLU and a last one to C channels.
    """

    def __init__(
        self,
        observation_shape: tuple[int, int, int],
        latent_dim: int = 10,
        channels: tuple[int, ...] = (32, 32, 64, 64),
        hidden: int = 256,
    ) -> None:
        super().__init__()
        c, h, w = observation_shape
        scale = 2 ** len(channels)
        if h % scale or w % scale:
            raise ValueError(
                f"observation_shape: height and width must be multiples of {scale} for the conv "
                f"decoder, got {observation_shape}"
            )
        rev = list(reversed(channels))
        h0, w0 = h // scale, w // scale
        layers: list[nn.Module] = [
            nn.Linear(latent_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, rev[0] * h0 * w0),
            nn.ReLU(),
            Rearrange("b (c h w) -> b c h w", c=rev[0], h=h0, w=w0),
        ]
        for cin, cout in zip(rev, [*rev[1:], c]):
            layers.append(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1))
            layers.append(nn.ReLU())
        layers.pop()  # logits: no activation after the last layer
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Return ``(B, C, H, W)`` logits."""
        return self.net(z)


class MLPEncoder(nn.Module):
    """Fully connected Gaussian encoder, ``(B, *shape) -> (mean, logvar)``, ReLU hidden layers."""

    def __init__(
        self,
        observation_shape: tuple[int, ...],
        latent_dim: int = 10,
        hidden: tuple[int, ...] = (256, 256),
    ) -> None:
        super().__init__()
        sizes = [math.prod(observation_shape), *hidden]
        layers: list[nn.Module] = [nn.Flatten()]
        for a, b in pairwise(sizes):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(sizes[-1], 2 * latent_dim)
        self.latent_dim = latent_dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the posterior ``(mean, logvar)``, each ``(B, D)``."""
        mean, logvar = self.head(self.body(x)).chunk(2, dim=-1)
        return mean, logvar


class MLPDecoder(nn.Module):
    """Fully connected decoder, ``(B, D) -> (B, *shape)`` logits, ReLU hidden layers."""

    def __init__(
        self,
        observation_shape: tuple[int, ...],
        latent_dim: int = 10,
        hidden: tuple[int, ...] = (256, 256),
    ) -> None:
        super().__init__()
        sizes = [latent_dim, *reversed(hidden), math.prod(observation_shape)]
        layers: list[nn.Module] = []
        for a, b in pairwise(sizes):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.pop()
        layers.append(nn.Unflatten(1, tuple(observation_shape)))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Return ``(B, *shape)`` logits."""
        return self.net(z)


def make_encoder(
    architecture: Architecture, observation_shape: tuple[int, ...], latent_dim: int
) -> nn.Module:
    """Build the ``"conv"`` (Locatello) or ``"mlp"`` encoder for ``observation_shape``."""
    if architecture == "conv":
        if len(observation_shape) != 3:
            raise ValueError(f"observation_shape: conv needs (C, H, W), got {observation_shape}")
        return ConvEncoder(observation_shape, latent_dim)  # type: ignore[arg-type]
    if architecture == "mlp":
        return MLPEncoder(observation_shape, latent_dim)
    raise ValueError(f"architecture: expected 'conv' or 'mlp', got {architecture!r}")


def make_decoder(
    architecture: Architecture, observation_shape: tuple[int, ...], latent_dim: int
) -> nn.Module:
    """Build the ``"conv"`` (Locatello) or ``"mlp"`` decoder for ``observation_shape``."""
    if architecture == "conv":
        if len(observation_shape) != 3:
            raise ValueError(f"observation_shape: conv needs (C, H, W), got {observation_shape}")
        return ConvDecoder(observation_shape, latent_dim)  # type: ignore[arg-type]
    if architecture == "mlp":
        return MLPDecoder(observation_shape, latent_dim)
    raise ValueError(f"architecture: expected 'conv' or 'mlp', got {architecture!r}")
