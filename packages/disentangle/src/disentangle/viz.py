"""Pictures of a run: latent traversals, reconstructions, loss and metric curves (PNG).

Every function writes one PNG with matplotlib's Agg backend and returns its path. Images are
``(N, C, H, W)`` arrays in [0, 1]; the model-facing functions need ``encode(x) -> (mean, logvar)``
and ``decode(z) -> images`` (any model of :mod:`disentangle.models`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from einops import rearrange

__all__ = ["plot_curves", "plot_reconstructions", "plot_traversals", "save_grid"]


def save_grid(
    images: np.ndarray,
    path: Path,
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Save a ``(rows, cols, C, H, W)`` array of images in [0, 1] as one tiled PNG."""
    rows, cols, c, h, _ = images.shape
    tiles = rearrange(np.clip(images, 0, 1), "r k c h w -> (r h) (k w) c")
    fig, ax = plt.subplots(figsize=(max(2.0, cols * 0.9), max(1.5, rows * 0.9) + 0.4), dpi=100)
    ax.imshow(tiles[..., 0] if c == 1 else tiles, cmap="gray" if c == 1 else None, vmin=0, vmax=1)
    ax.set_xticks([])
    if row_labels is not None:
        ax.set_yticks([h * (i + 0.5) for i in range(rows)], list(row_labels), fontsize=7)
    else:
        ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


@torch.no_grad()
def plot_traversals(
    model: torch.nn.Module,
    x: torch.Tensor,
    path: Path,
    steps: int = 9,
    limit: float = 2.5,
) -> Path:
    """Latent traversals of the first image of ``x``, one row per latent dimension.

    Each row decodes the posterior mean with one coordinate swept over ``[-limit, limit]``.
    Rows are labelled with the dimension's average KL on the batch ``x`` (nats): dimensions with
    KL ≈ 0 are inactive (the prior) and should show no change.
    """
    mean, logvar = model.encode(x)
    kl = (0.5 * (mean.pow(2) + logvar.exp() - logvar - 1)).mean(0)
    d = mean.shape[1]
    base = mean[:1].repeat(d * steps, 1)
    sweep = torch.linspace(-limit, limit, steps, device=mean.device)
    for i in range(d):
        base[i * steps : (i + 1) * steps, i] = sweep
    images = model.decode(base).float().cpu().numpy().reshape(d, steps, *x.shape[1:])
    labels = [f"z{i} KL={kl[i]:.2f}" for i in range(d)]
    return save_grid(images, path, labels, f"traversals, z_i in [-{limit}, {limit}]")


@torch.no_grad()
def plot_reconstructions(model: torch.nn.Module, x: torch.Tensor, path: Path) -> Path:
    """Images ``x`` (top row) and the decoder mean at their posterior means (bottom row)."""
    recon = model.decode(model.encode(x)[0]).float().cpu().numpy()
    grid = np.stack([x.float().cpu().numpy(), recon.reshape(x.shape)])
    return save_grid(grid, path, ["data", "recon"], "reconstructions")


def plot_curves(
    records: Sequence[dict],
    path: Path,
    split: str = "train",
    keys: Sequence[str] | None = None,
    title: str | None = None,
) -> Path | None:
    """One panel per logged value of ``split`` records (``metrics.jsonl``) against the step.

    Positive series spanning more than two decades get a log scale. Returns ``None`` when there
    is nothing to plot.
    """
    recs = [r for r in records if r.get("split") == split]
    if keys is None:
        keys = sorted({k for r in recs for k in r if k not in ("step", "split")})
    series = {}
    for k in keys:
        pts = [(r["step"], r[k]) for r in recs if isinstance(r.get(k), (int, float))]
        if pts:
            series[k] = np.asarray(pts, dtype=float)
    if not series:
        return None
    n = len(series)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), dpi=100, squeeze=False)
    for ax, (k, pts) in zip(axes.flat, series.items()):
        ax.plot(pts[:, 0], pts[:, 1], marker="." if len(pts) < 30 else None, lw=1.2)
        y = pts[:, 1]
        if (y > 0).all() and y.max() / y.min() > 100:
            ax.set_yscale("log")
        ax.set_title(k, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
