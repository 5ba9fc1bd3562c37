"""Benchmark suite `gmg`: the Gromov-Monge gap's value + gradient at training batch sizes.

    python apps/bench/bench_gmg.py [--quick] [--threads 1]

``otcore.gromov_monge_gap`` (default ε0, float32) followed by the gradient with respect
to the mapped points, as one training step calls it, at n ∈ {64, 256} for the three shapes the
GMG paper's regulariser meets (Uscidda et al. 2025, §3): latents to latents (10 → 10), encoder
(images 4096 → latents 10) and decoder (latents 10 → images 4096), with the cosine and the
squared-Euclidean costs. Maps: y = tanh(x W / √dx) (to 10-D) or sigmoid(x W) (to images);
references uniform in [0, 1]^dx (images) or standard normal (latents). Reports the median over
up to 30 calls, the interquartile range, the GW outer and inner iteration counts and the value,
for each start of the GW solve (``product`` a⊗b, ``identity`` (1/n)·I, ``best`` of both, one
batched solve) side by side in one run. Target: under 10 ms at n = 64 with the default start.
No peer library computes the GMG (OTT-JAX needs JAX, which is not installed here). Writes
docs/benchmarks/gmg.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import time
from datetime import date
from pathlib import Path

import torch

import otcore

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "benchmarks" / "gmg.md"
SHAPES = {
    "latents 10 → 10": (10, 10),
    "encoder 4096 → 10": (4096, 10),
    "decoder 10 → 4096": (10, 4096),
}


def instance(n: int, dx: int, dy: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference points (n, dx) and their images (n, dy) (requires_grad)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, dx, generator=g) if dx > 100 else torch.randn(n, dx, generator=g)
    W = torch.randn(dx, dy, generator=g)
    y = torch.sigmoid(x @ W) if dy > 100 else torch.tanh(x @ W / dx**0.5)
    return x, y.requires_grad_()


def measure(n: int, dx: int, dy: int, cost: str, reps: int, start: str, epsilon0: float) -> dict:
    """Median / IQR ms of value + gradient, iterations and value of one configuration."""
    x, y = instance(n, dx, dy)
    kw = {"start": start, "epsilon0": epsilon0}

    def step() -> float:
        v = otcore.gromov_monge_gap(x, y, cost, **kw)
        torch.autograd.grad(v, y)
        return float(v.detach())

    for _ in range(3):
        step()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t)
    parts = otcore.gromov_monge_gap(x, y.detach(), cost, return_parts=True, **kw)
    q = statistics.quantiles(ts, n=4)
    return {
        "ms": 1e3 * statistics.median(ts),
        "iqr": 1e3 * (q[2] - q[0]),
        "outer": parts.gw.n_iters,
        "inner": parts.gw.n_inner_iters,
        "value": float(parts.value),
        "dst": float(parts.distortion),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="n = 64 only, fewer calls")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--starts", nargs="+", default=list(otcore.STARTS), choices=otcore.STARTS)
    ap.add_argument("--epsilon0", type=float, default=otcore.DEFAULT_EPSILON0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    reps = 10 if a.quick else 30
    rows = []
    for n in (64,) if a.quick else (64, 256):
        for shape, (dx, dy) in SHAPES.items():
            for cost in ("cosine", "sqeuclidean"):
                for start in a.starts:
                    r = measure(n, dx, dy, cost, reps, start, a.epsilon0)
                    rows.append((n, shape, cost, start, r))
                    print(n, shape, cost, start, r, flush=True)
    write(rows, a)


def write(rows: list, a: argparse.Namespace) -> None:
    sha = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    cmd = "python apps/bench/bench_gmg.py" + (" --quick" if a.quick else "")
    cmd += f" --threads {a.threads}" if a.threads != 1 else ""
    cmd += f" --epsilon0 {a.epsilon0:g}" if a.epsilon0 != otcore.DEFAULT_EPSILON0 else ""
    cmd += "" if tuple(a.starts) == otcore.STARTS else " --starts " + " ".join(a.starts)
    load = os.getloadavg()[0]
    L = [
        "## Gromov-Monge gap: value + gradient (`bench_gmg`)",
        "",
        f"`{cmd}` — {date.today()}, {platform.machine()}, {os.cpu_count()} cores (shared; load "
        f"average {load:.1f} when written), {a.threads} torch thread(s), torch "
        f"{torch.__version__}, otcore {otcore.__version__} @ {sha}. float32, ε0 = {a.epsilon0:g}, "
        "median (IQR) over the timed calls of `gromov_monge_gap` + `autograd.grad` w.r.t. the "
        "mapped points. Target: under 10 ms at n = 64 (default start: `best`).",
        "",
        "| n | map | cost | start | ms (IQR) | GW outer / inner it. | GMG | DST | < 10 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n, shape, cost, start, r in rows:
        ok = ("yes" if r["ms"] < 10 else "no") if n == 64 else ""
        L.append(
            f"| {n} | {shape} | {cost} | {start} | {r['ms']:.1f} ({r['iqr']:.1f}) | {r['outer']} / "
            f"{r['inner']} | {r['value']:.3g} | {r['dst']:.3g} | {ok} |"
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(L) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
