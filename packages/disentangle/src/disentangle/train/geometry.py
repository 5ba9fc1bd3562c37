"""The geometry a GMG-regularised VAE targets, measured on fixed evaluation batches.

Uscidda et al. (ICLR 2025) regularise the decoder (or the encoder) towards a map that preserves
the geometry of its input as well as any map pushing the same distribution can: a small
Gromov-Monge gap GMG = DST − GW (§3, eq. 6). :class:`GeometryProbe` measures, for a trained
model, the decoder's and the encoder's distortion DST and GMG on ``num_batches`` fixed batches
of the dataset, so that every run reports whether its regulariser changed the map:

- decoder: reference = codes z ~ q(z|x) of the batch (as the training regulariser sees them;
  the noise is drawn from a fixed seed), image = their decoded means;
- encoder: reference = the flattened images, image = their posterior means.

The estimate is meant to be near-unbiased, unlike the training one: float64, a small ε0
(default 0.001) and the better of the two GW starts (``start="best"`` of
:func:`otcore.gromov_monge_gap`), so that GMG ≥ −ε log n with ε small. Values are twice the
paper's (otcore's no-½ convention).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch import nn

import otcore

__all__ = ["GeometryProbe"]


class GeometryProbe:
    """DST and GMG of a VAE's decoder and encoder on fixed batches.

    Parameters
    ----------
    data: the ground-truth dataset (``sample(n, rng) -> (factors, images)``).
    cost: ``"sqeuclidean"``, ``"scaled_sqeuclidean"`` or ``"cosine"`` (both spaces).
    num_batches, batch_size: the fixed batches (drawn once, seeded by ``seed``).
    epsilon0: ε0 of the GMG estimate.
    seed: seed of the batches.
    """

    def __init__(
        self,
        data: Any,
        cost: str = "cosine",
        num_batches: int = 6,
        batch_size: int = 64,
        epsilon0: float = 1e-3,
        seed: int = 0,
    ) -> None:
        if num_batches < 1 or batch_size < 2:
            raise ValueError(
                f"num_batches must be ≥ 1 and batch_size ≥ 2, got {num_batches}, {batch_size}"
            )
        if not epsilon0 > 0:
            raise ValueError(f"epsilon0: must be > 0, got {epsilon0}")
        self.cost, self.epsilon0, self.seed = cost, epsilon0, seed
        rng = np.random.default_rng([seed, 3])
        _, images = data.sample(num_batches * batch_size, rng)
        self.images = torch.as_tensor(images, dtype=torch.float32).reshape(
            num_batches, batch_size, *images.shape[1:]
        )

    def _gmg(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        parts = otcore.gromov_monge_gap(
            x.double(), y.double(), self.cost, epsilon0=self.epsilon0, return_parts=True
        )
        return float(parts.value), float(parts.distortion)

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> dict[str, float]:
        """``{"geometry.<side>.<gmg|dst>": mean over batches, "...<gmg|dst>_std": std}``.

        ``model`` is a :class:`~disentangle.models.VAE` (``encode``; ``decode`` unless it is
        decoder-free, in which case only the encoder is measured).
        """
        device = next(model.parameters()).device
        values: dict[str, list[float]] = {}
        noise = torch.Generator().manual_seed(self.seed)
        for batch in self.images:
            x = batch.to(device)
            mean, logvar = model.encode(x)
            pairs = {"encoder": (rearrange(x, "b ... -> b (...)"), mean)}
            if getattr(model, "decoder", None) is not None:
                eps = torch.randn(mean.shape, generator=noise).to(mean)
                z = mean + eps * torch.exp(0.5 * logvar)
                pairs["decoder"] = (z, rearrange(model.decode(z), "b ... -> b (...)"))
            for side, (ref, img) in pairs.items():
                gmg, dst = self._gmg(ref.cpu(), img.cpu())
                values.setdefault(f"geometry.{side}.gmg", []).append(gmg)
                values.setdefault(f"geometry.{side}.dst", []).append(dst)
        out: dict[str, float] = {}
        for key, vals in values.items():
            out[key] = float(np.mean(vals))
            out[key + "_std"] = float(np.std(vals))
        return out
