"""Encoders and decoders of the disentanglement literature.

Images are channels-first ``(B, C, H, W)`` float tensors in [0, 1]; latents are ``(B, D)``.

- :class:`ConvEncoder` / :class:`ConvDecoder`: the architecture of Locatello et al. (ICML 2019,
  Table 1 of the appendix) as used by the HFS code (Roth et al., ICLR 2023,
  ``dent/models/{encoder,decoder}/locatello.py``): four 4×4 stride-2 convolutions with 32, 32, 64,
  64 channels, a 256-unit fully connected layer and a Gaussian head ``(mean, logvar)``; the
  decoder mirrors it with transposed convolutions and returns *logits* (a Bernoulli decoder's
  sigmoid is applied by the loss, never inside the network).
- :class:`MLPEncoder` / :class:`MLPDecoder`: the same interface for small images or vectors.
- :class:`FlowConvEncoder` / :class:`FlowConvDecoder`: the ``ConvVAE`` of the FFRL code (Song et
  al., NeurIPS 2023; ``papers/ffrl.md`` §1.9) for 28×28 and 64×64 images, whose channel
  width equals the latent size s (MNIST s = 324: 70.9M parameters).
- :class:`FlowConv2Encoder` / :class:`FlowConv2Decoder`: the FFRL code's ``ConvVAE2`` for the
  128×128 Falcor3D / Isaac3D images (``papers/ffrl.md`` §1.9; s = 324: 32.6M parameters).

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
    "FlowConv2Decoder",
    "FlowConv2Encoder",
    "FlowConvDecoder",
    "FlowConvEncoder",
    "MLPDecoder",
    "MLPEncoder",
    "make_decoder",
    "make_encoder",
]

Architecture = Literal["conv", "mlp", "flow_conv", "flow_conv2"]
_ARCHITECTURES = ("conv", "mlp", "flow_conv", "flow_conv2")


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


def _flow_conv_kernel(
    observation_shape: tuple[int, ...], which: str = "flow_conv", factor: int = 4
) -> int:
    """Kernel H/factor of the ConvVAE's valid convolution (to a 1×1 map); checks the shape."""
    if len(observation_shape) != 3 or observation_shape[1] != observation_shape[2]:
        raise ValueError(
            f"observation_shape: {which} needs square (C, H, W), got {observation_shape}"
        )
    if observation_shape[1] % factor:
        raise ValueError(
            f"observation_shape: {which} needs H a multiple of {factor}, got {observation_shape}"
        )
    return observation_shape[1] // factor


class FlowConvEncoder(nn.Module):
    """FFRL's ConvVAE encoder (``papers/ffrl.md`` §1.9), channel width s = latent size.

    Conv4×4/2 (C→s), Conv4×4/2 (s→2s), a valid Conv with kernel H/4 (2s→3s, to 1×1), Conv1×1
    (3s→2s), Conv1×1 (2s→2s), each with ReLU, then linear heads (2s→s) for mean and logvar.
    """

    def __init__(self, observation_shape: tuple[int, int, int], latent_dim: int = 324) -> None:
        super().__init__()
        kernel, c, s = _flow_conv_kernel(observation_shape), observation_shape[0], latent_dim
        self.body = nn.Sequential(
            nn.Conv2d(c, s, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(s, 2 * s, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(2 * s, 3 * s, kernel), nn.ReLU(),
            nn.Conv2d(3 * s, 2 * s, 1), nn.ReLU(),
            nn.Conv2d(2 * s, 2 * s, 1), nn.ReLU(),
            nn.Flatten(),
        )  # fmt: skip
        self.mean, self.logvar = nn.Linear(2 * s, s), nn.Linear(2 * s, s)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the posterior ``(mean, logvar)``, each ``(B, s)``."""
        h = self.body(x)
        return self.mean(h), self.logvar(h)


class FlowConvDecoder(nn.Module):
    """Mirror of :class:`FlowConvEncoder` (``papers/ffrl.md`` §1.9), returning logits.

    Linear (s→s), ReLU, ConvT1×1 (s→2s), ConvT1×1 (2s→3s), ConvT with kernel H/4 (3s→2s),
    ConvT4×4/2 (2s→s), ConvT4×4/2 (s→C); ReLU between them, no sigmoid (the loss applies it).
    """

    def __init__(self, observation_shape: tuple[int, int, int], latent_dim: int = 324) -> None:
        super().__init__()
        kernel, c, s = _flow_conv_kernel(observation_shape), observation_shape[0], latent_dim
        self.net = nn.Sequential(
            nn.Linear(s, s), Rearrange("b s -> b s 1 1"), nn.ReLU(),
            nn.ConvTranspose2d(s, 2 * s, 1), nn.ReLU(),
            nn.ConvTranspose2d(2 * s, 3 * s, 1), nn.ReLU(),
            nn.ConvTranspose2d(3 * s, 2 * s, kernel), nn.ReLU(),
            nn.ConvTranspose2d(2 * s, s, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(s, c, 4, 2, 1),
        )  # fmt: skip

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Return ``(B, C, H, W)`` logits."""
        return self.net(z)


class FlowConv2Encoder(nn.Module):
    """FFRL's ConvVAE2 encoder for 128×128 images (``papers/ffrl.md`` §1.9), width s.

    Four blocks of Conv4×4/2 and Conv3×3 (pad 1), the first from C channels and all others
    s→s, then a valid Conv with kernel H/16 (to 1×1), two Conv1×1, each with ReLU, and linear
    heads (s→s) for mean and logvar. The brief gives only "two Conv1×1" and "≈32.6M
    parameters"; with every width s the count is 32.57M at s = 324, so that is the reading.
    """

    def __init__(self, observation_shape: tuple[int, int, int], latent_dim: int = 324) -> None:
        super().__init__()
        kernel = _flow_conv_kernel(observation_shape, "flow_conv2", 16)
        c, s = observation_shape[0], latent_dim
        blocks: list[nn.Module] = []
        for i in range(4):
            blocks += [nn.Conv2d(c if i == 0 else s, s, 4, 2, 1), nn.ReLU()]
            blocks += [nn.Conv2d(s, s, 3, 1, 1), nn.ReLU()]
        self.body = nn.Sequential(
            *blocks,
            nn.Conv2d(s, s, kernel), nn.ReLU(),
            nn.Conv2d(s, s, 1), nn.ReLU(),
            nn.Conv2d(s, s, 1), nn.ReLU(),
            nn.Flatten(),
        )  # fmt: skip
        self.mean, self.logvar = nn.Linear(s, s), nn.Linear(s, s)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the posterior ``(mean, logvar)``, each ``(B, s)``."""
        h = self.body(x)
        return self.mean(h), self.logvar(h)


class FlowConv2Decoder(nn.Module):
    """Mirror of :class:`FlowConv2Encoder`, returning logits.

    Linear (s→s), ReLU, two ConvT1×1, ConvT with kernel H/16 (1×1 → H/16), then four blocks
    of ConvT4×4/2 and ConvT3×3 (pad 1), all s→s except the last ConvT3×3 (s→C); ReLU between
    layers, no sigmoid (the loss applies it).
    """

    def __init__(self, observation_shape: tuple[int, int, int], latent_dim: int = 324) -> None:
        super().__init__()
        kernel = _flow_conv_kernel(observation_shape, "flow_conv2", 16)
        c, s = observation_shape[0], latent_dim
        layers: list[nn.Module] = [
            nn.Linear(s, s), Rearrange("b s -> b s 1 1"), nn.ReLU(),
            nn.ConvTranspose2d(s, s, 1), nn.ReLU(),
            nn.ConvTranspose2d(s, s, 1), nn.ReLU(),
            nn.ConvTranspose2d(s, s, kernel), nn.ReLU(),
        ]  # fmt: skip
        for i in range(4):
            layers += [nn.ConvTranspose2d(s, s, 4, 2, 1), nn.ReLU()]
            layers += [nn.ConvTranspose2d(s, c if i == 3 else s, 3, 1, 1), nn.ReLU()]
        layers.pop()
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Return ``(B, C, H, W)`` logits."""
        return self.net(z)


def make_encoder(
    architecture: Architecture, observation_shape: tuple[int, ...], latent_dim: int
) -> nn.Module:
    """Build the ``"conv"`` (Locatello), ``"mlp"``, ``"flow_conv"`` or ``"flow_conv2"`` (FFRL)
    encoder."""
    if architecture == "conv":
        if len(observation_shape) != 3:
            raise ValueError(f"observation_shape: conv needs (C, H, W), got {observation_shape}")
        return ConvEncoder(observation_shape, latent_dim)  # type: ignore[arg-type]
    if architecture == "mlp":
        return MLPEncoder(observation_shape, latent_dim)
    if architecture == "flow_conv":
        return FlowConvEncoder(observation_shape, latent_dim)  # type: ignore[arg-type]
    if architecture == "flow_conv2":
        return FlowConv2Encoder(observation_shape, latent_dim)  # type: ignore[arg-type]
    raise ValueError(f"architecture: expected one of {_ARCHITECTURES}, got {architecture!r}")


def make_decoder(
    architecture: Architecture, observation_shape: tuple[int, ...], latent_dim: int
) -> nn.Module:
    """Build the ``"conv"`` (Locatello), ``"mlp"``, ``"flow_conv"`` or ``"flow_conv2"`` (FFRL)
    decoder."""
    if architecture == "conv":
        if len(observation_shape) != 3:
            raise ValueError(f"observation_shape: conv needs (C, H, W), got {observation_shape}")
        return ConvDecoder(observation_shape, latent_dim)  # type: ignore[arg-type]
    if architecture == "mlp":
        return MLPDecoder(observation_shape, latent_dim)
    if architecture == "flow_conv":
        return FlowConvDecoder(observation_shape, latent_dim)  # type: ignore[arg-type]
    if architecture == "flow_conv2":
        return FlowConv2Decoder(observation_shape, latent_dim)  # type: ignore[arg-type]
    raise ValueError(f"architecture: expected one of {_ARCHITECTURES}, got {architecture!r}")
