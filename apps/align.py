"""Align labelled distributions with iterative alignment flows and their baselines.

    python apps/align.py moons                      # Figure 1(e)-style convergence on the moons
    python apps/align.py gaussians --seeds 0 1 2 3 4
    python apps/align.py digits2 --methods inb gb
    python apps/align.py mnist2 --data-path ~/data/mnist.npz
    python apps/align.py --help                     # presets; every field can be overridden

Each run writes ``<out>/<preset>/``: ``config.json``, ``results.json`` (transport cost and
Wasserstein metrics per method, per seed and mean ± std), one fitted flow per method
(``flows/<method>/``, safetensors + JSON), and PNGs: 2-D scatter plots or image translation
grids (real row, shared-latent row, translated rows), and with ``--convergence`` the test WD
and TC against the number of layers (mean ± std over seeds, semilog y; Figure 1(e)).
Metric conventions: ``dismetrics.alignment`` (Zhou et al. 2022, §4).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro
from sklearn.model_selection import train_test_split

from disentangle.align import METHODS, fit_alignment
from disentangle.align import datasets as ds
from dismetrics.alignment import blockwise_wasserstein, pairwise_wasserstein, transport_cost

Dataset = Literal[
    "moons", "pattern", "gaussians", "digits2", "digits3", "digits10", "mnist", "fmnist"
]


@dataclass
class AlignConfig:
    """One alignment experiment (all fields can be set on the command line)."""

    dataset: Dataset = "moons"
    methods: tuple[str, ...] = ("inb", "rand-nb", "dd")
    n_layers: int = 30
    k_directions: int = 2
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    split: Literal["all", "half"] = "all"
    """direction/map data split inside each INB layer (see disentangle.align.flow)"""
    test_fraction: float = 1 / 3
    classes: tuple[int, ...] | None = None
    """digit classes (digits / mnist / fmnist); default from the preset"""
    data_path: Path | None = None
    """MNIST / Fashion-MNIST .npz file or IDX folder"""
    data_source: Literal["local", "hf"] = "local"
    image_data: bool = False
    """Φ⁻¹ / Φ pre- and post-layers for [0, 1] pixels"""
    dd_layers: int = 29
    dd_bins: int = 40
    dd_alpha: float = 1.0
    dd_rotation: Literal["random", "pca"] = "random"
    dd_initial_bins: int | None = None
    wd_solver: Literal["exact", "otcore", "authors"] = "authors"
    """WD solver (dismetrics.alignment): authors' 100-iteration Sinkhorn, otcore, or exact"""
    wd_epsilon: float = 0.1
    wd_block: int | None = None
    """block size of the WD (500 for images); None = whole classes"""
    convergence: bool = False
    """record test WD/TC after each listed layer (Figure 1(e))"""
    convergence_layers: tuple[int, ...] = (0, 1, 2, 3, 5, 7, 10, 15, 20, 25, 30)
    convergence_solver: Literal["exact", "otcore", "authors"] = "exact"
    dtype: Literal["float64", "float32"] = "float64"
    device: str = "cpu"
    out: Path = Path("runs/align")
    name: str | None = None
    """run folder name (default: the dataset)"""
    progress: bool = True
    plots: bool = True
    save_flows: bool = True


_IMG = {
    "image_data": True,
    "wd_solver": "exact",
    "wd_epsilon": 1e-4,
    "wd_block": 500,
    "dd_layers": 10,
    "dd_alpha": 100.0,
    "dd_rotation": "pca",
    "dd_initial_bins": 256,
}
_DIGIT_METHODS = ("inb", "gb", "nb", "gbnb", "dd")
_TOY_METHODS = ("nb", "inb", "nb-inb", "rand-nb", "nb-rand-nb", "dd")

PRESETS: dict[str, tuple[str, AlignConfig]] = {
    "moons": (
        "two moons, INB / Rand-NB / DD, L=30, K=2, 5 seeds, convergence curves (Fig. 1(e))",
        AlignConfig(dataset="moons", methods=("inb", "rand-nb", "dd"), convergence=True),
    ),
    "pattern": (
        "4-class 2-D pattern, all methods of §4.5, L=30, K=2",
        AlignConfig(dataset="pattern", methods=_TOY_METHODS),
    ),
    "gaussians": (
        "three 2-D Gaussians, all methods of §4.5, L=30, K=2",
        AlignConfig(dataset="gaussians", methods=_TOY_METHODS),
    ),
    "digits2": (
        "8x8 digits {0,1}, INB (L=100, K=10) vs GB, NB, GBNB, DD",
        AlignConfig(
            dataset="digits2",
            methods=_DIGIT_METHODS,
            n_layers=100,
            k_directions=10,
            classes=(0, 1),
            **_IMG,
        ),
    ),
    "digits3": (
        "8x8 digits {0,1,9}, INB (L=100, K=10) vs GB, NB, GBNB, DD",
        AlignConfig(
            dataset="digits3",
            methods=_DIGIT_METHODS,
            n_layers=100,
            k_directions=10,
            classes=(0, 1, 9),
            **_IMG,
        ),
    ),
    "digits10": (
        "8x8 digits, all 10 classes, INB (L=100, K=10) vs GB, NB, GBNB, DD",
        AlignConfig(
            dataset="digits10",
            methods=_DIGIT_METHODS,
            n_layers=100,
            k_directions=10,
            classes=tuple(range(10)),
            **_IMG,
        ),
    ),
    "mnist2": (
        "MNIST {0,1} from --data-path, INB L=250, K=30 (the paper's setting)",
        AlignConfig(
            dataset="mnist",
            methods=_DIGIT_METHODS,
            n_layers=250,
            k_directions=30,
            classes=(0, 1),
            seeds=(0,),
            **_IMG,
        ),
    ),
    "fmnist2": (
        "Fashion-MNIST {0,1} from --data-path, INB L=250, K=30",
        AlignConfig(
            dataset="fmnist",
            methods=_DIGIT_METHODS,
            n_layers=250,
            k_directions=30,
            classes=(0, 1),
            seeds=(0,),
            **_IMG,
        ),
    ),
}


def load_data(cfg: AlignConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) of the configured dataset; toys are drawn with ``seed``."""
    if cfg.dataset == "moons":
        return ds.two_moons(3000, 0.1, seed)
    if cfg.dataset == "pattern":
        return ds.four_class_pattern(4000, seed)
    if cfg.dataset == "gaussians":
        return ds.three_gaussians(6000, seed)
    if cfg.dataset.startswith("digits"):
        return ds.digits(cfg.classes or (0, 1), seed=seed)
    name = "mnist" if cfg.dataset == "mnist" else "fashion_mnist"
    return ds.load_mnist(
        cfg.data_path, cfg.classes or (0, 1), source=cfg.data_source, name=name, seed=seed
    )


def _wd(a: np.ndarray, b: np.ndarray, solver: str, cfg: AlignConfig) -> float:
    block = cfg.wd_block if cfg.wd_block is not None else (10**9 if solver == "exact" else None)
    return blockwise_wasserstein(a, b, block_size=block, epsilon=cfg.wd_epsilon, solver=solver)


def latent_wd(z: np.ndarray, y: np.ndarray, solver: str, cfg: AlignConfig) -> float:
    """Mean WD between the latent samples of every unordered pair of classes."""
    cls = np.unique(y)
    return float(
        np.mean(
            [
                _wd(z[y == a], z[y == b], solver, cfg)
                for i, a in enumerate(cls)
                for b in cls[i + 1 :]
            ]
        )
    )


def evaluate(flow, x: np.ndarray, y: np.ndarray, cfg: AlignConfig) -> dict:
    """Transport cost, latent WD and original-space (translation) WD on a test set."""
    dt = getattr(torch, cfg.dtype)
    xt = torch.as_tensor(x, dtype=dt, device=cfg.device)
    z = flow(xt, y).cpu().numpy()
    classes = [int(c) for c in np.unique(y)]
    translated = {}
    for l in classes:
        for m in classes:
            if l != m:
                translated[(l, m)] = flow.translate(xt[torch.as_tensor(y == l)], l, m).cpu().numpy()
    block = (
        cfg.wd_block if cfg.wd_block is not None else (10**9 if cfg.wd_solver == "exact" else None)
    )
    pw = pairwise_wasserstein(
        {m: x[y == m] for m in classes},
        translated,
        convention="images" if cfg.image_data else "2d",
        block_size=block,
        epsilon=cfg.wd_epsilon,
        solver=cfg.wd_solver,
    )
    return {
        "transport_cost": transport_cost(x, z, y),
        "latent_wd": latent_wd(z, y, cfg.wd_solver, cfg),
        "wd": pw.authors,
        "wd_true_mean": pw.mean,
        "wd_matrix": pw.matrix,
    }


def convergence_curve(flow, x, y, cfg: AlignConfig) -> dict:
    """Test latent WD and TC after each layer listed in ``cfg.convergence_layers``."""
    dt = getattr(torch, cfg.dtype)
    keep = set(cfg.convergence_layers)
    out = {"layer": [], "wd": [], "tc": []}
    for l, z in flow.forward_iter(torch.as_tensor(x, dtype=dt, device=cfg.device), y):
        if l in keep:
            z = z.cpu().numpy()
            out["layer"].append(l)
            out["wd"].append(latent_wd(z, y, cfg.convergence_solver, cfg))
            out["tc"].append(transport_cost(x, z, y))
    return out


def _summary(values: list[float]) -> dict:
    a = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
        "values": a.tolist(),
    }


def run(cfg: AlignConfig) -> dict:
    """Fit every method for every seed, evaluate, write the run folder; return the results."""
    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}.")
    run_dir = cfg.out / (cfg.name or cfg.dataset)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1, default=str))
    per_method: dict[str, dict] = {m: {"runs": []} for m in cfg.methods}
    curves: dict[str, list[dict]] = {m: [] for m in cfg.methods}
    first: dict[str, tuple] = {}
    dt = getattr(torch, cfg.dtype)
    for seed in cfg.seeds:
        x, y = load_data(cfg, seed)
        x_tr, x_te, y_tr, y_te = train_test_split(
            x, y, test_size=cfg.test_fraction, random_state=seed, stratify=y
        )
        for method in cfg.methods:
            t0 = time.perf_counter()
            flow = fit_alignment(
                method,
                torch.as_tensor(x_tr, dtype=dt, device=cfg.device),
                y_tr,
                n_layers=cfg.dd_layers if method == "dd" else cfg.n_layers,
                k_directions=cfg.k_directions,
                image_data=cfg.image_data,
                split=cfg.split,
                dd_bins=cfg.dd_bins,
                dd_alpha=cfg.dd_alpha,
                dd_rotation=cfg.dd_rotation,
                dd_initial_bins=cfg.dd_initial_bins,
                seed=seed,
                progress=cfg.progress,
            )
            fit_s = time.perf_counter() - t0
            res = {"seed": seed, "fit_seconds": fit_s, **evaluate(flow, x_te, y_te, cfg)}
            per_method[method]["runs"].append(res)
            print(
                f"[{cfg.dataset}] {method:>10s} seed {seed}: TC {res['transport_cost']:.4f}  "
                f"latent WD {res['latent_wd']:.4f}  WD {res['wd']:.4f}  ({fit_s:.1f} s)",
                flush=True,
            )
            if cfg.convergence:
                curves[method].append(convergence_curve(flow, x_te, y_te, cfg))
            if method not in first:
                first[method] = (flow, x_te, y_te)
                if cfg.save_flows:
                    flow.save(run_dir / "flows" / method)
    for entry in per_method.values():
        runs = entry["runs"]
        for key in ("transport_cost", "latent_wd", "wd", "wd_true_mean", "fit_seconds"):
            entry[key] = _summary([r[key] for r in runs])
    results = {"dataset": cfg.dataset, "methods": per_method}
    if cfg.convergence:
        results["convergence"] = curves
    (run_dir / "results.json").write_text(json.dumps(results, indent=1))
    (run_dir / "table.md").write_text(markdown_table(results, cfg))
    if cfg.plots:
        plot_run(run_dir, cfg, first, curves)
    print(f"wrote {run_dir}")
    return results


def markdown_table(results: dict, cfg: AlignConfig) -> str:
    """Mean ± std over seeds of every metric, one row per method."""
    wd_name = "WD (authors' avg.)" if len(cfg.classes or (0, 1)) > 2 or not cfg.image_data else "WD"
    head = ["method", "TC", "latent WD", wd_name, "WD (true mean)", "fit s", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method, e in results["methods"].items():
        cells = [
            f"{e[k]['mean']:.4f} ± {e[k]['std']:.4f}"
            for k in ("transport_cost", "latent_wd", "wd", "wd_true_mean")
        ]
        lines.append(
            f"| {method} | "
            + " | ".join(cells)
            + f" | {e['fit_seconds']['mean']:.1f} | {len(e['runs'])} |"
        )
    return "\n".join(lines) + "\n"


def plot_run(run_dir: Path, cfg: AlignConfig, first: dict, curves: dict) -> None:
    """Scatter plots (2-D) or translation grids (images), and the convergence plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dt = getattr(torch, cfg.dtype)
    for method, (flow, x, y) in first.items():
        xt = torch.as_tensor(x, dtype=dt, device=cfg.device)
        classes = [int(c) for c in np.unique(y)]
        if x.shape[1] == 2:
            z = flow(xt, y).cpu().numpy()
            fig, axes = plt.subplots(1, 3, figsize=(12, 4))
            shifted = {c: classes[(i + 1) % len(classes)] for i, c in enumerate(classes)}
            for c in classes:
                sel = y == c
                axes[0].scatter(*x[sel].T, s=3, label=str(c))
                axes[1].scatter(*z[sel].T, s=3)
                tr = flow.translate(xt[torch.as_tensor(sel)], c, shifted[c]).cpu().numpy()
                axes[2].scatter(*tr.T, s=3, label=f"{c}→{shifted[c]}")
            for ax, title in zip(axes, ("test data", "shared latent", "translated")):
                ax.set_title(f"{method}: {title}")
            axes[0].legend(markerscale=4)
            axes[2].legend(markerscale=4)
            fig.tight_layout()
            fig.savefig(run_dir / f"scatter_{method}.png", dpi=110)
            plt.close(fig)
        else:
            side = round(np.sqrt(x.shape[1]))
            n_col = 8
            rows, labels = [], []
            for l in classes:
                sel = torch.as_tensor(y == l)
                xs = xt[sel][:n_col]
                rows.append(xs.cpu().numpy())
                labels.append(f"real {l}")
                rows.append(flow(xs, np.full(len(xs), l)).cpu().numpy())
                labels.append("shared")
                for m in classes:
                    if m != l:
                        rows.append(flow.translate(xs, np.full(len(xs), l), m).cpu().numpy())
                        labels.append(f"{l}→{m}")
            mosaic = np.ones((len(rows) * (side + 1), n_col * (side + 1)))
            for r, row in enumerate(rows):
                for c_, img in enumerate(row[:n_col]):
                    mosaic[
                        r * (side + 1) : r * (side + 1) + side,
                        c_ * (side + 1) : c_ * (side + 1) + side,
                    ] = img.reshape(side, side)
            fig, ax = plt.subplots(figsize=(n_col * 0.9 + 1.2, len(rows) * 0.9 + 0.6))
            ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1)
            ax.set_yticks([r * (side + 1) + side / 2 for r in range(len(rows))], labels)
            ax.set_xticks([])
            fig.suptitle(f"{method}: real, shared latent, translated")
            fig.savefig(run_dir / f"translation_{method}.png", dpi=100)
            plt.close(fig)
    if cfg.convergence and any(curves.values()):
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for method, runs in curves.items():
            if not runs:
                continue
            layers = np.asarray(runs[0]["layer"])
            for ax, key in zip(axes, ("wd", "tc")):
                vals = np.asarray([r[key] for r in runs])
                mean, std = vals.mean(0), vals.std(0)
                keep = layers > 0 if key == "tc" else layers >= 0  # TC is 0 before any layer
                lo = np.maximum(mean - std, 0.05 * mean)
                ax.plot(layers[keep], mean[keep], marker="o", ms=3, label=method)
                ax.fill_between(layers[keep], lo[keep], (mean + std)[keep], alpha=0.2)
        axes[0].set_ylabel(f"test WD (latent, {cfg.convergence_solver} W₂²)")
        axes[1].set_ylabel("test transport cost")
        for ax in axes:
            ax.set_yscale("log")
            ax.set_xlabel("number of layers")
            ax.legend()
        fig.suptitle(f"{cfg.dataset}: mean ± std over {len(cfg.seeds)} seeds")
        fig.tight_layout()
        fig.savefig(run_dir / "convergence.png", dpi=110)
        plt.close(fig)


def main() -> None:
    cfg = tyro.extras.overridable_config_cli(PRESETS)
    run(cfg)


if __name__ == "__main__":
    main()
