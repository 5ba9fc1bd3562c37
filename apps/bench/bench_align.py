"""Benchmark of the iterative alignment flow (issue 8 §6) and of otcore's 1-D / sliced OT.

    python apps/bench/bench_align.py            # full run (a few minutes on 2 cores)
    python apps/bench/bench_align.py --quick    # smoke version

Measures, on two-class MNIST-shaped data (d = 784, 9000 training images: real MNIST {0, 1}
when ``$MNIST_PATH`` points to an .npz / IDX folder, otherwise scikit-learn's 8×8 digits
upsampled to 28×28 plus noise):

1. the authors' "fast" configuration, INB with L = 20, K = 56 and the original repository's
   half split (the directions are fitted on half of each class, the maps on the other half,
   as in the code that took 435 s): fit time, time per layer split into the direction search
   (Stiefel ascent) and the maps, and memory (peak RSS, flow size);
2. forward + inverse of 10 000 images through 250 layers (K = 30; the layers' directions are
   Haar-random because a layer's evaluation cost does not depend on how W was chosen);
3. the direction search's time per objective evaluation against n and against d (plot);
4. otcore's 1-D and sliced Wasserstein against POT in the same run.

Writes docs/benchmarks/align.md (and align_scaling.png next to it).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "benchmarks" / "align.md"
TARGETS = {"fit": 60.0, "fwd_inv": 5.0}


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    from disentangle.align import datasets as ds

    path = os.environ.get("MNIST_PATH")
    if path:
        x, y = ds.load_mnist(path, (0, 1), seed=seed)
        return x[:n], y[:n], f"MNIST {{0,1}} from {path}"
    x, y = ds.upsampled_digits((0, 1), n=n, seed=seed)
    return x, y, "8×8 digits {0,1} upsampled to 28×28 + N(0, 0.05²) noise"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench_fit(n: int, n_layers: int, k: int, dtype) -> dict:
    from disentangle.align import fit_alignment

    x, y, source = _data(n)
    xt = torch.as_tensor(x, dtype=dtype)
    t0, c0 = time.perf_counter(), time.process_time()
    flow = fit_alignment(
        "inb", xt, y, n_layers=n_layers, k_directions=k, image_data=True, split="half"
    )
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    dirs = [i["seconds_directions"] for i in flow.fit_info]
    per = [i["seconds"] for i in flow.fit_info]
    size = sum(v.numel() * v.element_size() for v in flow.state_dict().values())
    return {
        "source": source,
        "n": n,
        "fit_s": total,
        "fit_cpu_s": cpu,
        "dir_s": float(np.mean(dirs)),
        "maps_s": float(np.mean(np.subtract(per, dirs))),
        "swd_iters": float(np.mean([i["swd_iters"] for i in flow.fit_info])),
        "flow_mb": size / 2**20,
        "peak_rss_mb": _peak_rss_mb(),
    }


def bench_forward_inverse(n: int, n_layers: int, k: int, dtype) -> dict:
    from disentangle.align import fit_alignment

    x, y, _ = _data(n)
    xt = torch.as_tensor(x, dtype=dtype)
    t0 = time.perf_counter()
    flow = fit_alignment("rand-nb", xt, y, n_layers=n_layers, k_directions=k, image_data=True)
    fit_s = time.perf_counter() - t0
    with torch.no_grad():
        flow(xt[:100], y[:100])  # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        z = flow(xt, y)
        t_fwd = time.perf_counter() - t0
        t1 = time.perf_counter()
        back = flow.inverse(z, y)
        t_inv = time.perf_counter() - t1
        cpu = time.process_time() - c0
    return {
        "n": n,
        "layers": n_layers,
        "fwd_s": t_fwd,
        "inv_s": t_inv,
        "cpu_s": cpu,
        "rand_fit_s": fit_s,
        "max_err": float((back - xt).abs().max()),
    }


def bench_scaling(ns: list[int], ds_: list[int], k: int, iters: int, dtype) -> dict:
    from otcore.sliced import max_k_sliced_barycentric

    def per_eval(n: int, d: int) -> float:
        g = torch.Generator().manual_seed(0)
        xs = torch.randn(2, n // 2, d, generator=g, dtype=dtype)
        xs[1] = xs[1] * 1.3 + 0.2
        t0 = time.perf_counter()
        out = max_k_sliced_barycentric(xs, min(k, d), generator=g, max_iter=iters, tol=1e-30)
        return (time.perf_counter() - t0) / out.n_evals

    d_ref, n_ref = ds_[-1], ns[len(ns) // 2]
    return {
        "n": [(n, per_eval(n, d_ref)) for n in ns],
        "d": [(d, per_eval(n_ref, d)) for d in ds_],
        "d_ref": d_ref,
        "n_ref": n_ref,
    }


def bench_peers(quick: bool) -> list[tuple[str, float, float]]:
    import ot

    from otcore.sliced import sliced_wasserstein
    from otcore.univariate import wasserstein_1d

    rows = []
    rng = np.random.default_rng(0)
    b, n = (100, 2000) if quick else (1000, 2000)
    x, y = rng.normal(size=(n, b)), rng.normal(1, 2, size=(n, b))
    xt, yt = torch.as_tensor(x.T.copy()), torch.as_tensor(y.T.copy())
    t0 = time.perf_counter()
    ours = wasserstein_1d(xt, yt, p=2)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    pot = ot.wasserstein_1d(x, y, p=2)
    t_pot = time.perf_counter() - t0
    assert np.allclose(ours.numpy(), pot)
    rows.append((f"W₂² of {b} 1-D problems, n = {n} (float64)", t_ours, t_pot))
    n, d, p = (2000, 784, 50) if quick else (5000, 784, 200)
    xs, ys = rng.random((n, d)), rng.random((n, d))
    t0 = time.perf_counter()
    sliced_wasserstein(torch.as_tensor(xs), torch.as_tensor(ys), n_projections=p)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ot.sliced_wasserstein_distance(xs, ys, n_projections=p, seed=0)
    t_pot = time.perf_counter() - t0
    rows.append((f"sliced W, n = {n}, d = {d}, {p} projections (float64)", t_ours, t_pot))
    return rows


def _slope(pairs: list[tuple[int, float]]) -> float:
    a = np.log([p[0] for p in pairs])
    b = np.log([p[1] for p in pairs])
    return float(np.polyfit(a, b, 1)[0])


def _plot(scaling: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, key, label, fixed in (
        (axes[0], "n", "n (samples, 2 classes)", f"d = {scaling['d_ref']}"),
        (axes[1], "d", "d (dimension)", f"n = {scaling['n_ref']}"),
    ):
        xs = np.array([p[0] for p in scaling[key]], dtype=float)
        ts = np.array([p[1] for p in scaling[key]]) * 1e3
        ax.loglog(xs, ts, "o-", label="measured")
        ax.loglog(xs, ts[0] * xs / xs[0], "k--", lw=0.8, label="linear reference")
        ax.set_xlabel(label)
        ax.set_ylabel("ms per objective evaluation")
        ax.set_title(f"direction search, {fixed}, slope {_slope(scaling[key]):.2f}")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke version")
    args = parser.parse_args(argv)
    quick = args.quick
    dtype = torch.float32
    n_fit = 1000 if quick else 9000
    fit = bench_fit(n_fit, 3 if quick else 20, 56, dtype)
    print(f"fit: {fit}", flush=True)
    fi = bench_forward_inverse(1000 if quick else 10_000, 10 if quick else 250, 30, dtype)
    print(f"forward/inverse: {fi}", flush=True)
    scaling = bench_scaling(
        [500, 1000, 2000] if quick else [1000, 2000, 4000, 8000, 16000],
        [98, 196, 392] if quick else [98, 196, 392, 784, 1568],
        56,
        5 if quick else 20,
        dtype,
    )
    print(f"scaling: {scaling}", flush=True)
    peers = bench_peers(quick)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    _plot(scaling, OUT.with_name("align_scaling.png"))

    def ok(value: float, target: float) -> str:
        return "met" if value < target else "**not met**"

    cmd = "python apps/bench/bench_align.py" + (" --quick" if quick else "")
    lines = [
        "## Iterative alignment flows (`bench_align.py`)",
        "",
        f"Command: `{cmd}` · {datetime.date.today()} · {platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()} · float32 · data: {fit['source']}"
        + (" · **quick smoke run, not the issue's configuration**" if quick else ""),
        "",
        f"Load average (1 min) when the table was written: {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs (the machine is shared); CPU time is the process's "
        "user + system time over all threads.",
        "",
        "| Measurement | Value | Target (issue 8 §6) |",
        "|---|---|---|",
        f"| Fit INB, L = {3 if quick else 20}, K = 56, n = {fit['n']}, d = 784, half split | "
        f"{fit['fit_s']:.1f} s wall, {fit['fit_cpu_s']:.1f} s CPU | < {TARGETS['fit']:.0f} s: "
        f"{ok(fit['fit_s'], TARGETS['fit'])} "
        "(authors' CPU code: 435 s on MNIST) |",
        f"| per layer: direction search (Stiefel ascent, mean {fit['swd_iters']:.0f} "
        f"iterations) | {fit['dir_s']:.2f} s | |",
        f"| per layer: NB maps (fit + apply) | {fit['maps_s']:.2f} s | |",
        f"| memory: peak RSS of the process / fitted flow | {fit['peak_rss_mb']:.0f} MB / "
        f"{fit['flow_mb']:.1f} MB | |",
        f"| forward + inverse, {fi['n']} images, {fi['layers']} layers (K = 30) | "
        f"{fi['fwd_s']:.2f} s + {fi['inv_s']:.2f} s = {fi['fwd_s'] + fi['inv_s']:.2f} s wall, "
        f"{fi['cpu_s']:.2f} s CPU | "
        f"< {TARGETS['fwd_inv']:.0f} s: {ok(fi['fwd_s'] + fi['inv_s'], TARGETS['fwd_inv'])} |",
        f"| round-trip error max abs (float32) | {fi['max_err']:.1e} | |",
        f"| direction search vs n (d = {scaling['d_ref']}): log-log slope | "
        f"{_slope(scaling['n']):.2f} | linear (≈ 1; sorting adds log n) |",
        f"| direction search vs d (n = {scaling['n_ref']}): log-log slope | "
        f"{_slope(scaling['d']):.2f} | linear (≈ 1) |",
        "",
        "Time per objective evaluation of the direction search (K = 56, 2 classes):",
        "",
        "| n | ms | | d | ms |",
        "|---|---|---|---|---|",
    ]
    for (n, tn), (d, td) in zip(scaling["n"], scaling["d"]):
        lines.append(f"| {n} | {tn * 1e3:.1f} | | {d} | {td * 1e3:.1f} |")
    lines += [
        "",
        "![direction-search scaling](align_scaling.png)",
        "",
        "otcore against POT in the same run:",
        "",
        "| Problem | otcore | POT | POT / otcore |",
        "|---|---|---|---|",
    ]
    for name, t_ours, t_pot in peers:
        lines.append(
            f"| {name} | {t_ours * 1e3:.1f} ms | {t_pot * 1e3:.1f} ms | {t_pot / t_ours:.2f}× |"
        )
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
