"""Experiment sweep of the GMG paper's main table: base vs +DST vs +GMG, several seeds.

    python apps/sweep.py --out runs/sweep --steps 3000 --seeds 0 1 2
    python apps/sweep.py --out runs/sweep --table-only        # just rebuild the table

Each cell trains ``apps/train.py`` (the quick preset with the overrides below) in its own
process, sequentially, into ``<out>/<dataset>-<base>-<variant>-seed<k>``; cells whose
``results.json`` exists are skipped, so an interrupted sweep continues where it stopped. The
regularised variants use the paper's best configuration: decoder, cosine cost (GMG paper §5).
Then ``<out>/summary.md`` gets a table of DCI-D (HFS-style, the paper's metric), DCI-D
(disentanglement_lib) and MIG as mean ± std over the seeds that finished.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Literal

import tyro

ROOT = Path(__file__).resolve().parent
VARIANTS = ("base", "dst", "gmg")
METRICS = {
    "DCI-D (HFS)": "dci_hfs.disentanglement",
    "DCI-D": "dci.disentanglement",
    "MIG": "mig.discrete_mig",
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


def summarize(args: Args) -> str:
    """Markdown table, one row per (dataset, base, cell): mean ± std over finished seeds."""
    lines = [
        f"Steps per run: {args.steps}; β = {args.beta}; λ_GMG = {args.gmg_weight}; "
        f"λ_DST = {args.dst_weight}.",
        "",
        "| dataset | base | variant | side | cost | seeds | " + " | ".join(METRICS) + " |",
        "|---|---|---|---|---|---:|" + "---:|" * len(METRICS),
    ]
    for dataset in args.datasets:
        for base in args.bases:
            for cell in cells(args):
                variant, side, cost = cell
                scores = []
                for seed in args.seeds:
                    name = f"{dataset}-{base}-{tag(*cell)}-seed{seed}"
                    path = args.out / name / "results.json"
                    if path.exists():
                        scores.append(json.loads(path.read_text())["scores"])
                if not scores:
                    continue
                row = []
                for key in METRICS.values():
                    vals = [s[key] for s in scores if s.get(key) is not None]
                    if not vals:
                        row.append("—")
                    elif len(vals) == 1:
                        row.append(f"{vals[0]:.3f}")
                    else:
                        row.append(f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f}")
                where = "— | —" if variant == "base" else f"{side} | {cost}"
                lines.append(
                    f"| {dataset} | {base} | {variant} | {where} | {len(scores)} | "
                    + " | ".join(row)
                    + " |"
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
