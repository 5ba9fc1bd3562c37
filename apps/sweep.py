"""Experiment sweep of the GMG paper's main table: base vs +DST vs +GMG, several seeds.

    python apps/sweep.py --out runs/sweep --steps 3000 --seeds 0 1 2
    python apps/sweep.py --out runs/sweep --table-only        # just rebuild the table

Each cell trains ``apps/train.py`` (the quick preset with the overrides below) in its own
process, sequentially, into ``<out>/<dataset>-<base>-<variant>-seed<k>``; cells whose
``results.json`` exists are skipped, so an interrupted sweep continues where it stopped. The
regularised variants use the paper's best configuration: decoder, cosine cost (GMG paper §5).
Then ``<out>/summary.md`` gets a table of DCI-D (HFS-style, the paper's metric), DCI-D
(disentanglement_lib), MIG, the held-out decoder GMG and DST (``geometry.*`` of
``results.json``) and the final reconstruction loss as mean ± std over the seeds that finished,
and a paired comparison over seeds for each of the paper's claims (GMG > DST > base, decoder >
encoder, cosine > squared Euclidean): the mean per-seed difference, its 95 % bootstrap interval,
the effect size d_z (mean / std of the differences), the one-sided Wilcoxon signed-rank p-value
and whether the claim holds (interval above 0).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import tyro
from scipy.stats import wilcoxon

ROOT = Path(__file__).resolve().parent
VARIANTS = ("base", "dst", "gmg")
METRICS = {
    "DCI-D (HFS)": "dci_hfs.disentanglement",
    "DCI-D": "dci.disentanglement",
    "MIG": "mig.discrete_mig",
}
#: Held-out geometry and the reconstruction loss, reported beside the scores.
EXTRA = {
    "decoder GMG": "geometry.decoder.gmg",
    "decoder DST": "geometry.decoder.dst",
    "rec": "train.rec",
}


@dataclasses.dataclass
class Args:
    out: Path = Path("runs/sweep")
    """Folder of the sweep's runs and summary.md."""
    datasets: tuple[str, ...] = ("dsprites", "shapes3d")
    """Datasets (disentangle.data names)."""
    bases: tuple[Literal["beta_vae", "beta_tcvae"], ...] = ("beta_vae", "beta_tcvae")
    """Base objectives."""
    variants: tuple[Literal["base", "dst", "gmg"], ...] = VARIANTS
    """Regularisers: none, DST or GMG (decoder side, cosine cost)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds."""
    steps: int = 3000
    """Optimizer steps per run."""
    beta: float = 4.0
    """β of β-VAE (KL weight) and β-TCVAE (TC weight)."""
    gmg_weight: float = 5000.0
    """λ of the GMG regulariser."""
    dst_weight: float = 5000.0
    """λ of the DST regulariser."""
    sides: tuple[Literal["encoder", "decoder"], ...] = ("decoder",)
    """Regularised map(s) of the dst/gmg variants (the paper's best: decoder)."""
    costs: tuple[Literal["sqeuclidean", "scaled_sqeuclidean", "cosine"], ...] = ("cosine",)
    """Cost(s) of the dst/gmg variants (the paper's best: cosine)."""
    metrics: tuple[str, ...] = ("dci", "mig", "dci_hfs")
    """dismetrics metrics of each run's final evaluation (the table needs these three)."""
    extra: tuple[str, ...] = ()
    """More apps/train.py flags for every run, e.g. --extra --train.lr 5e-4."""
    table_only: bool = False
    """Only rebuild summary.md from the finished runs."""


def cells(args: Args) -> list[tuple[str, str, str]]:
    """(variant, side, cost) of every cell of a seed; base runs have no regulariser."""
    out = []
    for variant in args.variants:
        if variant == "base":
            out.append(("base", "decoder", "cosine"))
        else:
            out += [(variant, side, cost) for side in args.sides for cost in args.costs]
    return out


def tag(variant: str, side: str, cost: str) -> str:
    """Run-name tag: the variant, plus side and cost unless they are the default decoder/cosine."""
    if variant == "base" or (side, cost) == ("decoder", "cosine"):
        return variant
    return f"{variant}-{side}-{cost}"


def cell_args(
    args: Args, dataset: str, base: str, cell: tuple[str, str, str], seed: int
) -> list[str]:
    """apps/train.py flags of one cell."""
    variant, side, cost = cell
    flags = [
        "--output-dir",
        str(args.out / f"{dataset}-{base}-{tag(*cell)}-seed{seed}"),
        "--data.name",
        dataset,
        "--model.base",
        base,
        "--model.beta",
        str(args.beta),
        "--train.seed",
        str(seed),
        "--train.steps",
        str(args.steps),
        "--train.no-progress",
        "--eval.metrics",
        *args.metrics,
        "--regulariser.side",
        side,
        "--regulariser.cost",
        cost,
    ]
    if variant == "base":
        flags += ["--regulariser.kind", "none"]
    else:
        weight = args.gmg_weight if variant == "gmg" else args.dst_weight
        flags += ["--regulariser.kind", variant, "--regulariser.weight", str(weight)]
    return flags + list(args.extra)


def _value(result: dict, key: str) -> float | None:
    if key.startswith("train."):
        return result.get("train", {}).get(key.removeprefix("train."))
    return result.get("scores", {}).get(key)


def _results(args: Args, dataset: str, base: str, cell: tuple[str, str, str]) -> dict[int, dict]:
    out = {}
    for seed in args.seeds:
        path = args.out / f"{dataset}-{base}-{tag(*cell)}-seed{seed}" / "results.json"
        if path.exists():
            out[seed] = json.loads(path.read_text())
    return out


def _mean_std(vals: list[float], digits: str = ".3f") -> str:
    if not vals:
        return "—"
    if len(vals) == 1:
        return f"{vals[0]:{digits}}"
    return f"{statistics.mean(vals):{digits}} ± {statistics.stdev(vals):{digits}}"


def paired(a: list[float], b: list[float], seed: int = 0) -> dict[str, float]:
    """Paired comparison of a − b over seeds: mean, 95 % bootstrap CI, d_z, Wilcoxon p (a > b)."""
    d = np.asarray(a) - np.asarray(b)
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, len(d), (10_000, len(d)))].mean(1)
    lo, hi = np.quantile(boots, [0.025, 0.975])
    sd = float(d.std(ddof=1)) if len(d) > 1 else float("nan")
    p = float("nan")
    if len(d) > 1 and np.any(d != 0):
        p = float(wilcoxon(d, alternative="greater").pvalue)
    return {"mean": float(d.mean()), "lo": float(lo), "hi": float(hi), "dz": d.mean() / sd, "p": p}


#: The paper's claims as (better cell, worse cell) pairs of (variant, side, cost).
CLAIMS = (
    ("GMG > base", ("gmg", "decoder", "cosine"), ("base", "decoder", "cosine")),
    ("DST > base", ("dst", "decoder", "cosine"), ("base", "decoder", "cosine")),
    ("GMG > DST", ("gmg", "decoder", "cosine"), ("dst", "decoder", "cosine")),
    ("decoder > encoder (GMG)", ("gmg", "decoder", "cosine"), ("gmg", "encoder", "cosine")),
    ("cosine > sqeuclidean (GMG)", ("gmg", "decoder", "cosine"), ("gmg", "decoder", "sqeuclidean")),
)


def summarize(args: Args) -> str:
    """Markdown tables: one row per (dataset, base, cell), mean ± std over finished seeds; then
    the paired comparisons of the paper's claims over the seeds both cells finished."""
    columns = {**METRICS, **EXTRA}
    lines = [
        f"Steps per run: {args.steps}; β = {args.beta}; λ_GMG = {args.gmg_weight}; "
        f"λ_DST = {args.dst_weight}.",
        "",
        "| dataset | base | variant | side | cost | seeds | " + " | ".join(columns) + " |",
        "|---|---|---|---|---|---:|" + "---:|" * len(columns),
    ]
    for dataset in args.datasets:
        for base in args.bases:
            for cell in cells(args):
                variant, side, cost = cell
                results = list(_results(args, dataset, base, cell).values())
                if not results:
                    continue
                row = []
                for name, key in columns.items():
                    vals = [v for r in results if (v := _value(r, key)) is not None]
                    row.append(_mean_std(vals, ".3f" if name in METRICS else ".3g"))
                where = "— | —" if variant == "base" else f"{side} | {cost}"
                lines.append(
                    f"| {dataset} | {base} | {variant} | {where} | {len(results)} | "
                    + " | ".join(row)
                    + " |"
                )
    lines += [
        "",
        "Paired over seeds (difference better − worse as claimed; higher is better for the "
        "scores, lower for the decoder's GMG, so its sign is flipped): mean, 95 % bootstrap "
        "interval, effect size d_z, one-sided Wilcoxon p; the claim holds when the interval "
        "is above 0.",
        "",
        "| dataset | base | claim | metric | seeds | mean diff | 95 % CI | d_z | p | holds |",
        "|---|---|---|---|---:|---:|---|---:|---:|---|",
    ]
    metrics = {**METRICS, "decoder GMG (lower)": EXTRA["decoder GMG"]}
    for dataset in args.datasets:
        for base in args.bases:
            for claim, better, worse in CLAIMS:
                good = _results(args, dataset, base, better)
                bad = _results(args, dataset, base, worse)
                seeds = sorted(set(good) & set(bad))
                if len(seeds) < 2:
                    continue
                for name, key in metrics.items():
                    sign = -1.0 if key == EXTRA["decoder GMG"] else 1.0
                    a = [_value(good[s], key) for s in seeds]
                    b = [_value(bad[s], key) for s in seeds]
                    if None in a or None in b:
                        continue
                    c = paired([sign * v for v in a], [sign * v for v in b])
                    lines.append(
                        f"| {dataset} | {base} | {claim} | {name} | {len(seeds)} | "
                        f"{c['mean']:.3g} | [{c['lo']:.3g}, {c['hi']:.3g}] | {c['dz']:.2f} | "
                        f"{c['p']:.3f} | {'yes' if c['lo'] > 0 else 'no'} |"
                    )
    return "\n".join(lines) + "\n"


def main(args: Args) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    if not args.table_only:
        for seed in args.seeds:
            for dataset in args.datasets:
                for base in args.bases:
                    for cell in cells(args):
                        flags = cell_args(args, dataset, base, cell, seed)
                        run_dir = Path(flags[1])
                        if (run_dir / "results.json").exists():
                            continue
                        resume = ["--resume"] if (run_dir / "checkpoints").exists() else []
                        print(f"== {run_dir.name}", flush=True)
                        cmd = [sys.executable, str(ROOT / "train.py"), *flags, *resume]
                        if subprocess.call(cmd) != 0:
                            failed.append(run_dir.name)
    table = summarize(args)
    (args.out / "summary.md").write_text(table)
    print(table)
    if failed:
        print("failed runs: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(tyro.cli(Args, description=__doc__)))
