"""Benchmark of dismetrics: the whole suite under the ``default`` and ``fast`` presets.

Ground truth comes from a small synthetic ``GroundTruthData`` defined here (no dataset package):
five factors (sizes 3, 6, 10, 8, 4) normalised to [0, 1] are rendered by a fixed random
nonlinear map ``x = tanh(A u + b)`` (16-d observations) plus small noise. A representation of
tunable quality inverts the rendering and returns 10 codes: 5 that carry the factors (mixed by
a random rotation and blurred by noise) and 5 pure-noise codes. Three qualities are scored,
from pure noise to near-perfect, with ``dismetrics.evaluate`` and every metric, at the study
sizes (10 000 / 5 000 points; ``--quick``: 1 000 / 500).

Reported: wall time per preset, speedup, |Δ DCI-disentanglement|, the largest difference over
all other scores (which fit the same or no estimator), and the default preset's DCI against the
plain reference (one GBT fit per factor in a loop) on the same sample.

    python apps/bench/bench_metrics.py            # writes docs/benchmarks/metrics.md
    python apps/bench/bench_metrics.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import sklearn

import dismetrics
from dismetrics import PRESETS, dci, evaluate, sample_codes

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "benchmarks" / "metrics.md"
SIZES = (3, 6, 10, 8, 4)
LEVELS = {  # name: (mixing weight of a random rotation, noise std on informative codes)
    "noise": None,
    "entangled": (0.3, 0.1),
    "near-perfect": (0.0, 0.02),
}


class SyntheticData:
    """Factors rendered by a fixed random nonlinear map (implements dismetrics.GroundTruthData)."""

    factor_names = tuple(f"f{k}" for k in range(len(SIZES)))
    factor_sizes = SIZES
    observation_shape = (16,)

    def __init__(self, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.a = rng.standard_normal((len(SIZES), 16)) * 0.8
        self.b = rng.standard_normal(16) * 0.2

    def sample_factors(self, n, rng):
        return np.stack([rng.integers(s, size=n) for s in SIZES], axis=1)

    def latent(self, factors):
        return factors / (np.asarray(SIZES) - 1.0)

    def sample_observations_from_factors(self, factors, rng):
        x = np.tanh(self.latent(factors) @ self.a + self.b)
        return x + 1e-3 * rng.standard_normal(x.shape)

    def sample(self, n, rng):
        f = self.sample_factors(n, rng)
        return f, self.sample_observations_from_factors(f, rng)

    def invert(self, x):
        """Least-squares inverse of the rendering: observations -> normalised factors."""
        return (np.arctanh(np.clip(x, -0.999, 0.999)) - self.b) @ np.linalg.pinv(self.a)


def make_represent(data: SyntheticData, level: str, seed: int):
    """A representation function of the given quality; its noise stream restarts per call."""
    rng = np.random.default_rng(seed)
    rot = np.linalg.qr(rng.standard_normal((len(SIZES), len(SIZES))))[0]
    state = {"rng": np.random.default_rng(seed + 1)}

    def represent(x):
        noise = state["rng"].standard_normal((len(x), 2 * len(SIZES)))
        if LEVELS[level] is None:
            return noise
        mix, sigma = LEVELS[level]
        u = data.invert(x)
        informative = (1 - mix) * np.sin(1.3 * u) + mix * (u @ rot) + sigma * noise[:, : len(SIZES)]
        return np.column_stack([informative, noise[:, len(SIZES) :]])

    def reset():
        state["rng"] = np.random.default_rng(seed + 1)

    return represent, reset


def run(quick: bool) -> str:
    data = SyntheticData()
    sizes = (
        dict(
            num_train=1000,
            num_test=500,
            beta_vae_num_train=500,
            beta_vae_num_eval=250,
            factor_vae_num_train=500,
            factor_vae_num_eval=250,
            factor_vae_num_variance_estimate=1000,
        )
        if quick
        else {}
    )
    presets = {name: dataclasses.replace(PRESETS[name], **sizes) for name in ("default", "fast")}
    rows, ref_rows = [], []
    for level in LEVELS:
        represent, reset = make_represent(data, level, seed=7)
        out = {}
        for name, preset in presets.items():
            reset()
            start = time.perf_counter()
            out[name] = evaluate(data, represent, seed=0, preset=preset)
            out[name + "_time"] = time.perf_counter() - start
            print(f"{level:>13} {name:>7}: {out[name + '_time']:.1f} s", flush=True)
        d, f = out["default"].scalars(), out["fast"].scalars()
        others = [abs(d[k] - f[k]) for k in d if not k.startswith("dci.")]
        rows.append(
            (
                level,
                out["default_time"],
                out["fast_time"],
                out["default"].timings["dci"],
                out["fast"].timings["dci"],
                d["dci.disentanglement"],
                f["dci.disentanglement"],
                max(others),
            )
        )
        if level == "entangled":
            reset()
            rng = np.random.default_rng(np.random.SeedSequence(0).spawn(4)[0])
            z_tr, y_tr = sample_codes(data, represent, presets["default"].num_train, rng)
            z_te, y_te = sample_codes(data, represent, presets["default"].num_test, rng)
            timing = {}
            for label, n_jobs in (("reference loop", 1), ("default preset", -1)):
                start = time.perf_counter()
                res = dci(z_tr, y_tr, z_te, y_te, estimator="gbt", seed=0, n_jobs=n_jobs)
                timing[label] = (time.perf_counter() - start, res.disentanglement)
                print(f"DCI {label}: {timing[label][0]:.1f} s", flush=True)
            ref_rows.append(timing)

    cmd = "python apps/bench/bench_metrics.py" + (" --quick" if quick else "")
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("n/a",) * 3
    lines = [
        "# dismetrics benchmark",
        "",
        f"Command: `{cmd}`  ",
        f"Date: {datetime.datetime.now().isoformat(timespec='seconds')}  ",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs (shared; load average at end "
        f"{load[0]:.1f}), Python {platform.python_version()}, numpy {np.__version__}, "
        f"scikit-learn {sklearn.__version__}, dismetrics {dismetrics.__version__}",
        "",
        f"Data: synthetic factors {SIZES} rendered by a fixed random nonlinear map; 10 codes "
        "(5 informative at the given quality + 5 noise). Every metric of `dismetrics.evaluate` "
        f"(BetaVAE, FactorVAE, MIG, DCI, SAP, modularity/explicitness, IRS, unsupervised) at "
        f"num_train={presets['default'].num_train}, num_test={presets['default'].num_test}.",
        "",
        "## Whole suite: default vs fast preset",
        "",
        "| representation | default (s) | fast (s) | speedup | DCI default (s) | DCI fast (s) "
        "| DCI-D default | DCI-D fast | abs(Δ DCI-D) | max abs(Δ) other scores |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lv, td, tf, dd, df, d_def, d_fast, other in rows:
        lines.append(
            f"| {lv} | {td:.1f} | {tf:.1f} | {td / tf:.1f}x | {dd:.1f} | {df:.1f} | {d_def:.4f} "
            f"| {d_fast:.4f} | {abs(d_def - d_fast):.4f} | {other:.1e} |"
        )
    total_d, total_f = sum(r[1] for r in rows), sum(r[2] for r in rows)
    lines += [
        f"| **all** | {total_d:.1f} | {total_f:.1f} | {total_d / total_f:.1f}x | | | | | "
        f"{max(abs(r[5] - r[6]) for r in rows):.4f} | {max(r[7] for r in rows):.1e} |",
        "",
        "Targets (issue 5 §4): fast ≥ 10x faster for the whole suite; abs(Δ DCI-D) ≤ 0.02; "
        "identical values for the metrics that need no estimator (the last column covers every "
        "non-DCI score; 0 means identical).",
        "",
        "## DCI: default preset vs the plain reference algorithm (entangled codes)",
        "",
        "| variant | time (s) | DCI-D |",
        "|---|---|---|",
    ]
    for timing in ref_rows:
        for label, (t, d) in timing.items():
            how = "in a loop" if "loop" in label else "processes in parallel"
            lines.append(f"| {label} (one GBT per factor, {how}) | {t:.1f} | {d:.6f} |")
        ratio = timing["reference loop"][0] / timing["default preset"][0]
        lines.append(f"| ratio reference / default | {ratio:.2f}x | |")
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--out", type=Path, default=OUT, help="Markdown table destination")
    args = parser.parse_args()
    table = run(args.quick)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".md.tmp")
    tmp.write_text(table)
    tmp.replace(args.out)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
