"""Measure the Gromov-Monge gap's ε0 and GW start before choosing the defaults.

Uscidda, Eyring et al. (ICLR 2025) estimate GW at ε = ε0·mean(Cx)·mean(Cy) (Algorithm 1) and do
not publish ε0; the non-convex GW solve also depends on its start. This script measures the
grid ε0 × start (``otcore.gromov_monge_gap``'s ``"product"``, ``"identity"`` and ``"best"``) on

(a) the toy of ``apps/gmg_toy.py`` (paper Fig. 2), both costs: the learned map's distortion and
    Sinkhorn divergence to the target (fresh sample), next to the unregularised and DST maps;
(b) a β-VAE trained for ``--steps`` steps of the quick preset without a regulariser, on fixed
    batches of generated dSprites: for the decoder (reference: codes z ~ q(z|x)) and the encoder
    (reference: images), with the cosine and squared-Euclidean costs, in float32 as in training —
    the GMG value and its ratio to DST, the fall-back rate, the gradient norm of GMG on the
    network's parameters relative to DST's and to the reconstruction term's, and the time of
    one forward + backward.

Usage::

    python apps/gmg_calibrate.py --out docs/gmg_calibration      # ~15 min on 2 CPU cores

Writes ``toy.json``, ``networks.json`` and ``tables.md`` (the tables of
``docs/EXPERIMENTS_GMG.md``) under ``--out``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import tyro
from einops import rearrange
from tqdm.auto import tqdm

import otcore
from disentangle.models.objectives import reconstruction_loss
from disentangle.train import PRESETS, EvalConfig, RegulariserConfig, run
from disentangle.train.runner import load_run, write_json

ROOT = Path(__file__).resolve().parent
EPSILONS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
COSTS = ("cosine", "sqeuclidean")
SIDES = ("decoder", "encoder")


@dataclasses.dataclass
class Args:
    out: Path = Path("docs/gmg_calibration")
    """Folder of the JSON results and tables.md (the trained model goes to runs/)."""
    epsilons: tuple[float, ...] = EPSILONS
    """ε0 grid."""
    starts: tuple[str, ...] = otcore.STARTS
    """GW starts."""
    steps: int = 500
    """Training steps of the measured VAE (quick preset, no regulariser)."""
    toy_steps: int = 300
    """Steps of each toy fit (apps/gmg_toy.py's default)."""
    batches: int = 6
    """Fixed batches of 64 images for the network measurements."""
    seed: int = 0
    """Seed of the VAE, the batches and the toy."""
    skip_toy: bool = False
    """Only the network measurements."""
    toy_epsilons: tuple[float, ...] | None = None
    """ε0 grid of the toy (None: ``epsilons``)."""
    reuse_networks: bool = False
    """Read the network measurements from ``out/networks.json`` instead of measuring."""
    toy_debias: bool = False
    """Add toy fits of the debiased GMG (start "best") at each toy ε0."""
    reuse_toy: bool = False
    """Read earlier toy fits from ``out/toy.json`` and run only the cells it lacks."""


def estimator_table() -> str:
    """Each start (and the debiased form) on maps of known GW: n = 64, d = 10, float64, the
    default ε0. An isometry and a shuffled isometry both have GW = 0, so GMG must be ≈ 0 and
    ≈ DST; tanh(xW)³ is a generic smooth map."""
    g = torch.Generator().manual_seed(0)
    n, d, dt = 64, 10, torch.float64
    x = torch.randn(n, d, generator=g, dtype=dt)
    Q = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=dt))[0]
    perm = torch.randperm(n, generator=g)
    W = torch.randn(d, d, generator=g, dtype=dt)
    maps = {
        "isometry x ↦ Qx": x @ Q,
        "shuffled isometry (Qx permuted)": (x @ Q)[perm],
        "tanh(xW)³": torch.tanh(x @ W) ** 3,
    }
    lines = [
        "| map | cost | DST | ε log n | product | identity | best | best, debiased |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, y in maps.items():
        for cost in COSTS:
            dst = float(otcore.distortion(x, y, cost))
            parts = {
                s: otcore.gromov_monge_gap(x, y, cost, start=s, return_parts=True)
                for s in otcore.STARTS
            }
            deb = float(otcore.gromov_monge_gap(x, y, cost, debias=True))
            bias = float(parts["best"].epsilon) * np.log(n)
            vals = " | ".join(
                f"{float(parts[s].value):.4g}" for s in ("product", "identity", "best")
            )
            lines.append(f"| {name} | {cost} | {dst:.4g} | {bias:.3g} | {vals} | {deb:.4g} |")
    return "\n".join(lines) + "\n"


def _toy_module():
    spec = importlib.util.spec_from_file_location("gmg_toy", ROOT / "gmg_toy.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gmg_toy"] = mod
    spec.loader.exec_module(mod)
    return mod


def toy_grid(a: Args) -> list[dict]:
    """(a): one toy fit per cost × (none, DST, GMG at each ε0 × start)."""
    toy = _toy_module()
    rows = json.loads((a.out / "toy.json").read_text()) if a.reuse_toy else []
    done = {
        (r["cost"], r["regulariser"], r["epsilon0"], r["start"], r.get("debias", False))
        for r in rows
    }
    cells = [(c, "none", None, None, False) for c in COSTS]
    cells += [(c, "dst", None, None, False) for c in COSTS]
    epsilons = a.epsilons if a.toy_epsilons is None else a.toy_epsilons
    cells += [(c, "gmg", e, s, False) for c in COSTS for e in epsilons for s in a.starts]
    if a.toy_debias:
        cells += [(c, "gmg", e, "best", True) for c in COSTS for e in epsilons]
    for cell in tqdm([c for c in cells if c not in done], desc="toy"):
        cost, reg, eps0, start, debias = cell
        kw = {} if reg != "gmg" else {"epsilon0": eps0, "start": start, "debias": debias}
        t = time.perf_counter()
        f = toy.fit(cost, reg, steps=a.toy_steps, seed=a.seed, **kw)
        rows.append(
            {
                "cost": cost,
                "regulariser": reg,
                "epsilon0": eps0,
                "start": start,
                "debias": debias,
                "distortion": f.distortion,
                "divergence": f.divergence,
                "seconds": time.perf_counter() - t,
            }
        )
    return rows


def trained_vae(a: Args):
    """The quick preset without a regulariser, ``a.steps`` steps (reused when present)."""
    out = Path("runs") / f"gmg-calibration-base-{a.steps}-seed{a.seed}"
    if not (out / "results.json").exists():
        q = PRESETS["quick"]
        cfg = dataclasses.replace(
            q,
            output_dir=out,
            resume=True,
            regulariser=RegulariserConfig(kind="none"),
            train=dataclasses.replace(q.train, steps=a.steps, seed=a.seed, progress=False),
            eval=EvalConfig(metrics=(), images=False, geometry_batches=0),
        )
        run(cfg)
    _, model, data, _ = load_run(out)
    return model, data


def _norm(grads) -> float:
    return float(sum(g.double().pow(2).sum() for g in grads if g is not None)) ** 0.5


def network_grid(a: Args) -> list[dict]:
    """(b): GMG against ε0 × start on fixed batches of a trained VAE's decoder and encoder."""
    model, data = trained_vae(a)
    model.train()  # gradients flow; the conv VAE has no dropout or batch norm
    rng = np.random.default_rng([a.seed, 4])
    _, images = data.sample(a.batches * 64, rng)
    images = torch.as_tensor(images).reshape(a.batches, 64, *images.shape[1:])
    noise = torch.Generator().manual_seed(a.seed)
    nets = {
        "decoder": list(model.decoder.parameters()),
        "encoder": list(model.encoder.parameters()),
    }
    acc: dict[tuple, list[dict]] = {}
    for b in tqdm(range(a.batches), desc="batches"):
        x = images[b]
        mean, logvar = model.encode(x)
        z = mean + torch.randn(mean.shape, generator=noise) * torch.exp(0.5 * logvar)
        logits = model.decoder(z)
        rec = reconstruction_loss(logits, x, "bernoulli")
        pairs = {
            "decoder": (z.detach(), rearrange(torch.sigmoid(logits), "b ... -> b (...)")),
            "encoder": (rearrange(x, "b ... -> b (...)"), mean),
        }
        for side in SIDES:
            params = nets[side]
            g_rec = _norm(torch.autograd.grad(rec, params, retain_graph=True, allow_unused=True))
            ref, img = pairs[side]
            for cost in COSTS:
                dst = otcore.distortion(ref, img, cost)
                g_dst = _norm(
                    torch.autograd.grad(dst, params, retain_graph=True, allow_unused=True)
                )
                for eps0 in a.epsilons:
                    for start in a.starts:
                        t = time.perf_counter()
                        parts = otcore.gromov_monge_gap(
                            ref, img, cost, epsilon0=eps0, start=start, return_parts=True
                        )
                        grads = torch.autograd.grad(
                            parts.value, params, retain_graph=True, allow_unused=True
                        )
                        seconds = time.perf_counter() - t
                        g = _norm(grads)
                        acc.setdefault((side, cost, eps0, start), []).append(
                            {
                                "gmg": float(parts.value),
                                "dst": float(dst),
                                "bias": float(parts.epsilon) * np.log(64),
                                "fell_back": float(parts.fell_back),
                                "from_identity": float(parts.from_identity),
                                "grad_vs_dst": g / g_dst if g_dst > 0 else float("nan"),
                                "grad_vs_rec": g / g_rec if g_rec > 0 else float("nan"),
                                "ms": 1e3 * seconds,
                            }
                        )
    rows = []
    for (side, cost, eps0, start), recs in acc.items():
        row = {"side": side, "cost": cost, "epsilon0": eps0, "start": start}
        for k in recs[0]:
            vals = [r[k] for r in recs]
            row[k] = (
                statistics.median(vals)
                if k in ("grad_vs_dst", "grad_vs_rec", "ms")
                else (statistics.fmean(vals))
            )
            if k == "gmg":
                row["gmg_std"] = statistics.pstdev(vals)
        rows.append(row)
    return rows


def tables(toy: list[dict], nets: list[dict]) -> str:
    lines = []
    if toy:
        lines += [
            "### (a) The toy (paper Fig. 2): the learned map",
            "",
            "| cost | regulariser | ε0 | start | distortion | S_ε to target |",
            "|---|---|---:|---|---:|---:|",
        ]
        for r in toy:
            eps = "" if r["epsilon0"] is None else f"{r['epsilon0']:g}"
            start = (r["start"] or "") + (", debiased" if r.get("debias") else "")
            lines.append(
                f"| {r['cost']} | {r['regulariser']} | {eps} | {start} | "
                f"{r['distortion']:.4g} | {r['divergence']:.4g} |"
            )
        lines.append("")
    lines += [
        "### (b) Trained β-VAE (500 steps, no regulariser): GMG per ε0 and start",
        "",
        "Means over the batches (GMG ± std); gradient ratios and times are medians.",
        "",
        "| side | cost | ε0 | start | GMG | GMG / DST | ε log n | fall-back | "
        "‖∇GMG‖/‖∇DST‖ | ‖∇GMG‖/‖∇rec‖ | ms |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in nets:
        lines.append(
            f"| {r['side']} | {r['cost']} | {r['epsilon0']:g} | {r['start']} | "
            f"{r['gmg']:.3g} ± {r['gmg_std']:.2g} | {r['gmg'] / r['dst']:.3f} | {r['bias']:.2g} | "
            f"{r['fell_back']:.2f} | {r['grad_vs_dst']:.3g} | {r['grad_vs_rec']:.3g} | "
            f"{r['ms']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(a: Args) -> None:
    a.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # n = 64 to 128 problems: one thread is fastest here
    if a.reuse_networks:
        nets = json.loads((a.out / "networks.json").read_text())
    else:
        nets = network_grid(a)
        write_json(a.out / "networks.json", nets)
    toy = []
    if not a.skip_toy:
        toy = toy_grid(a)
        write_json(a.out / "toy.json", toy)
    text = "### Each start on maps of known GW\n\n" + estimator_table() + "\n" + tables(toy, nets)
    (a.out / "tables.md").write_text(text)
    print(text)
    print(f"wrote {a.out}/tables.md")


if __name__ == "__main__":
    main(tyro.cli(Args, description=__doc__.splitlines()[0]))
