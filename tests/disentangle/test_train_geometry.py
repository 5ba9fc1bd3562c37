"""GeometryProbe: the held-out DST and GMG of a model's decoder and encoder."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from disentangle.train.geometry import GeometryProbe

sys.path.insert(0, str(Path(__file__).parent))
from test_train_toydata import Blobs


class LinearVAE(nn.Module):
    """encode: x ↦ (x W, log σ² = 0); decode: z ↦ z Q (Q with orthonormal rows: an isometry)."""

    def __init__(self, d_in: int, d_z: int, warp: bool = False) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.W = nn.Parameter(torch.randn(d_in, d_z, generator=g) / d_in**0.5)
        q = torch.linalg.qr(torch.randn(d_in, d_z, generator=g))[0]
        self.register_buffer("Q", q.T.contiguous())
        self.decoder = nn.Identity()
        self.warp = warp

    def encode(self, x):
        z = x.flatten(1) @ self.W
        return z, torch.full_like(z, -30.0)  # σ ≈ 3e-7: codes ≈ means

    def decode(self, z):
        y = z @ self.Q
        return (torch.tanh(3 * y) if self.warp else y).reshape(len(z), 1, 16, 16)


def test_isometric_decoder_has_zero_gap_and_a_warped_one_does_not():
    data = Blobs(16)
    probe = GeometryProbe(data, "sqeuclidean", num_batches=2, batch_size=32, epsilon0=1e-3)
    iso = probe(LinearVAE(256, 4))
    assert iso["geometry.decoder.dst"] < 1e-8
    # |GMG| ≤ ε log n, ε = ε0·mean(Cz)·mean(Cy) with Cy = Cz here
    assert abs(iso["geometry.decoder.gmg"]) < 1e-3 * iso["geometry.encoder.dst"] + 1e-6
    warped = probe(LinearVAE(256, 4, warp=True))
    assert warped["geometry.decoder.dst"] > 1e-4
    assert warped["geometry.decoder.gmg"] <= warped["geometry.decoder.dst"]
    # fixed batches and noise: the same model gives the same numbers
    assert probe(LinearVAE(256, 4)) == iso
    assert set(iso) == {
        f"geometry.{s}.{k}"
        for s in ("decoder", "encoder")
        for k in ("gmg", "dst", "gmg_std", "dst_std")
    }
