"""Benchmark suite `train`: GMG regulariser overhead and training-loop overhead.

    python apps/bench/bench_train.py            # full (a few minutes on 2 cores)
    python apps/bench/bench_train.py --quick    # smoke version

Measures, on the Locatello conv VAE at batch 64 with 64×64 single-channel images (the GMG
paper's dSprites setting; Uscidda et al. 2025, HFS settings):

1. the cost of a training step (forward, backward, Adam) of β-VAE, β-VAE + GMG (decoder, cosine)
   and β-VAE + DST (decoder, cosine); target: GMG adds at most 15 %;
2. the throughput of ``disentangle.train.fit`` (Accelerate, logging, progress bar, sampler)
   against a bare PyTorch loop with the same model, batch, DataLoader and optimizer; target:
   within 5 %.

Variants run interleaved, several rounds each, and the table reports medians and ratios: the
machine is shared, so only ratios from the same run are comparable. Writes
docs/benchmarks/train.md.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "benchmarks" / "train.md"


class SyntheticSprites(Dataset):
    """In-memory binary images (1, 64, 64) with rectangles, so data loading costs the same."""

    def __init__(self, n: int = 2048, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        x = np.zeros((n, 1, 64, 64), dtype=np.float32)
        for i in range(n):
            r, c, s = rng.integers(4, 48), rng.integers(4, 48), rng.integers(4, 14)
            x[i, 0, r : r + s, c : c + s] = 1.0
        self.x = torch.from_numpy(x)
        self.f = torch.from_numpy(rng.integers(0, 10, (n, 3)))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.f[i]


def make_model(kind: str):
    from disentangle.models import VAE, GeometricRegulariser

    reg = None if kind == "base" else GeometricRegulariser(kind, "decoder", "cosine", weight=1.0)
    return VAE((1, 64, 64), 10, "conv", base="beta_vae", beta=4.0, regulariser=reg)


def step_times(
    kinds: list[str], steps: int, rounds: int, pretrain: int, batch: int = 64
) -> dict[str, float]:
    """Median seconds per training step of each variant, measured in interleaved rounds.

    Every variant starts from the same β-VAE trained ``pretrain`` steps on the synthetic
    images: the GW solves of GMG on a trained decoder's outputs take more Sinkhorn iterations
    than on the near-constant outputs of a fresh one.
    """
    data = SyntheticSprites(batch * 16)
    xs = [data.x[i * batch : (i + 1) * batch] for i in range(4)]
    torch.manual_seed(0)
    trained = make_model("base")
    opt = torch.optim.Adam(trained.parameters(), 1e-3, fused=True)
    for i in range(pretrain):
        trained(data.x[(i % 16) * batch : (i % 16 + 1) * batch])["loss"].backward()
        opt.step()
        opt.zero_grad()
    models, opts = {}, {}
    for k in kinds:
        models[k] = make_model(k)
        models[k].load_state_dict(trained.state_dict())
        opts[k] = torch.optim.Adam(models[k].parameters(), 1e-4, fused=True)
    samples: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(rounds):
        for k in kinds:
            m, opt = models[k], opts[k]
            for i in range(2):  # warm-up
                m(xs[i % 4])["loss"].backward()
                opt.step()
                opt.zero_grad()
            t0 = time.perf_counter()
            for i in range(steps):
                m(xs[i % 4])["loss"].backward()
                opt.step()
                opt.zero_grad()
            samples[k].append((time.perf_counter() - t0) / steps)
    return {k: statistics.median(v) for k, v in samples.items()}


def bare_loop_throughput(data: Dataset, steps: int, batch: int = 64) -> float:
    """Images/s of a plain PyTorch loop (steady state, after 5 warm-up steps)."""
    torch.manual_seed(0)
    model = make_model("base")
    opt = torch.optim.Adam(model.parameters(), 1e-4, fused=True)
    loader = DataLoader(data, batch_size=batch, shuffle=True, drop_last=True)
    it = iter(loader)
    t0 = None
    for i in range(steps + 5):
        if i == 5:
            t0 = time.perf_counter()
        try:
            x = next(it)
        except StopIteration:
            it = iter(loader)
            x = next(it)
        out = model(x)
        out["loss"].backward()
        opt.step()
        opt.zero_grad()
        if (i + 1) % 25 == 0:
            float(out["loss"])
    return steps * batch / (time.perf_counter() - t0)


def fit_throughput(data: Dataset, steps: int, batch: int = 64) -> float:
    """Images/s of ``disentangle.train.fit`` (median of its logged intervals after the first)."""
    from disentangle.train import TrainConfig, fit, read_history

    torch.manual_seed(0)
    model = make_model("base")
    cfg = TrainConfig(
        steps=steps + 5, batch_size=batch, log_every=5, checkpoint_every=0, progress=True
    )
    with tempfile.TemporaryDirectory() as tmp:
        fit(model, data, cfg, Path(tmp))
        speeds = [r["images_per_s"] for r in read_history(Path(tmp) / "metrics.jsonl")]
    return statistics.median(speeds[1:])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke version")
    args = parser.parse_args(argv)
    steps, rounds = (4, 2) if args.quick else (15, 5)
    pretrain = 20 if args.quick else 300
    loop_steps, loop_rounds = (20, 1) if args.quick else (60, 3)

    import otcore

    kinds = ["base", "gmg", "dst"]
    times = step_times(kinds, steps, rounds, pretrain)
    data = SyntheticSprites(2048)
    bare, framed = [], []
    for _ in range(loop_rounds):
        bare.append(bare_loop_throughput(data, loop_steps))
        framed.append(fit_throughput(data, loop_steps))
    bare_med, fit_med = statistics.median(bare), statistics.median(framed)

    gmg_over = times["gmg"] / times["base"] - 1
    dst_over = times["dst"] / times["base"] - 1
    loop_gap = 1 - fit_med / bare_med
    cmd = "python apps/bench/bench_train.py" + (" --quick" if args.quick else "")
    lines = [
        "## train: GMG overhead and training-loop overhead",
        "",
        f"Command: `{cmd}` — {datetime.date.today().isoformat()}, {platform.machine()} "
        f"{platform.processor() or ''}, {torch.get_num_threads()} torch threads, "
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"otcore {getattr(otcore, '__version__', '?')}.",
        "",
        "Locatello conv VAE (β-VAE, β = 4, latent 10), batch 64, 1×64×64 images, Adam (fused). "
        "Medians over interleaved rounds; the machine is shared, compare ratios only.",
        "",
        f"### Training step ({rounds} rounds × {steps} steps, after {pretrain} β-VAE steps)",
        "",
        "| variant | ms / step | overhead vs β-VAE | target | met |",
        "|---|---:|---:|---:|:--:|",
        f"| β-VAE | {times['base'] * 1e3:.1f} | — | | |",
        f"| + GMG (decoder, cosine) | {times['gmg'] * 1e3:.1f} | {gmg_over:+.1%} | ≤ +15% "
        f"| {'yes' if gmg_over <= 0.15 else 'no'} |",
        f"| + DST (decoder, cosine) | {times['dst'] * 1e3:.1f} | {dst_over:+.1%} | | |",
        "",
        f"### Training loop ({loop_rounds} rounds × {loop_steps} steps, β-VAE)",
        "",
        "| loop | images / s | vs bare loop | target | met |",
        "|---|---:|---:|---:|:--:|",
        f"| bare PyTorch (DataLoader, Adam) | {bare_med:.0f} | — | | |",
        f"| `disentangle.train.fit` (Accelerate, JSONL + TensorBoard, tqdm) | {fit_med:.0f} | "
        f"{-loop_gap:+.1%} | ≥ −5% | {'yes' if loop_gap <= 0.05 else 'no'} |",
        "",
        f"Per-round images/s — bare: {', '.join(f'{v:.0f}' for v in bare)}; "
        f"fit: {', '.join(f'{v:.0f}' for v in framed)}.",
        "",
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
