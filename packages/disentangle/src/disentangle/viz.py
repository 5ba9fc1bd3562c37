"""Pictures of a run: latent traversals, reconstructions, loss and metric curves (PNG), and the
latent flows of an FFRL model (PNG grids and GIFs).

Every ``plot_*`` function but :func:`plot_flows` writes one PNG with matplotlib's Agg backend and
returns its path. Images are ``(N, C, H, W)`` arrays in [0, 1]; the model-facing functions need
``encode(x) -> (mean, logvar)`` and ``decode(z) -> images`` (any model of
:mod:`disentangle.models`).
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

__all__ = [
    "plot_curves",
    "plot_flows",
    "plot_reconstructions",
    "plot_traversals",
    "save_gif",
    "save_grid",
]


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


def save_gif(frames: np.ndarray, path: Path, ms_per_frame: int = 250) -> Path:
    """Save ``(T, rows, cols, C, H, W)`` images in [0, 1] as an animated GIF, one tiled frame per
    time step (pillow, which matplotlib already depends on)."""
    from PIL import Image

    tiles = rearrange(np.clip(frames, 0, 1), "t r k c h w -> t (r h) (k w) c")
    tiles = (tiles * 255).round().astype(np.uint8)
    mode = "L" if tiles.shape[-1] == 1 else "RGB"
    images = [Image.fromarray(t[..., 0] if mode == "L" else t, mode) for t in tiles]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=ms_per_frame, loop=0)
    return path


@torch.no_grad()
def plot_flows(model: torch.nn.Module, data, out_dir: Path, num: int = 3, seed: int = 0) -> list:
    """The FFRL pictures of issue 9 §3 for ``num`` sequences of ``data`` (a sequence dataset with
    ``frames(indices, k)`` and ``transformations``), written under ``out_dir``:

    - ``flow_<name>.png`` per transformation k: for each sequence a row of true frames
      x_0..x_T′ above a row of decoded latents z_0..z_2T′ flowed along ∇u_k, so the columns
      past T′ show the extrapolation to twice the trained number of steps;
    - ``flow_<name>.gif``: the same, animated over t (true frame and flow side by side);
    - ``compose_<a>+<b>.png`` for the first pairs of transformations: the flow along
      ∇u_a + ∇u_b (composition by adding fields), T′ steps.

    Latents start at the posterior mean of x_0. Returns the paths written.
    """
    device = next(model.parameters()).device
    idx = np.sort(np.random.default_rng(seed).choice(len(data), num, replace=False))
    steps = model.steps
    out_dir = Path(out_dir)
    paths: list = []
    names = list(data.transformations)

    def decode_path(z0: torch.Tensor, ks, n_steps: int) -> np.ndarray:
        path = model.flow(z0, ks, n_steps)
        decoded = model.decode(path.flatten(0, 1)).unflatten(0, path.shape[:2])
        return decoded.float().cpu().numpy()  # (num, n_steps + 1, C, H, W)

    for k, name in enumerate(names):
        frames = data.frames(idx, k).to(device)  # (num, T + 1, C, H, W)
        z0 = model.encoder(frames[:, 0])[0]
        flow = decode_path(z0, k, 2 * steps)
        true = np.zeros_like(flow)
        t_true = min(frames.shape[1], flow.shape[1])
        true[:, :t_true] = frames[:, :t_true].float().cpu().numpy()
        grid = rearrange(np.stack([true, flow], 1), "n two t c h w -> (n two) t c h w")
        labels = [lab for i in range(num) for lab in (f"seq {i}: true", f"seq {i}: flow")]
        title = f"{name}: flow along ∇u_k; columns past t = {steps} extrapolate"
        paths.append(save_grid(grid, out_dir / f"flow_{name}.png", labels, title))
        gif = rearrange(
            np.stack([true, flow], 1)[:, :, : steps + 1], "n two t c h w -> t n two c h w"
        )
        paths.append(save_gif(gif, out_dir / f"flow_{name}.gif"))
    for a, b in list(zip(range(len(names)), range(1, len(names))))[:2]:
        z0 = model.encoder(data.frames(idx, a).to(device)[:, 0])[0]
        grid = decode_path(z0, (a, b), steps)
        labels = [f"seq {i}" for i in range(num)]
        title = f"composition: flow along ∇u_{names[a]} + ∇u_{names[b]}"
        paths.append(save_grid(grid, out_dir / f"compose_{names[a]}+{names[b]}.png", labels, title))
    return paths
