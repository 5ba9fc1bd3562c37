"""Markdown table of FFRL runs and baselines: mean ± std of ``results.json`` scores over seeds.

    python apps/ffrl_table.py --root runs/ffrl3d --prefix s3

Run folders are named ``<prefix>-<model>-seed<S>`` (as the commands in ``docs/FFRL.md`` write
them). Each row is one model; each column one E_k (the flow E_k for FFRL models, the
authors' traversal E_k for the baselines, with the best single latent axis in brackets) and
the importance-sampled log p(x_0); ± is the sample std (ddof 1) over seeds. Seeds without a
``results.json`` are skipped; the seeds column counts those used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tyro


@dataclass
class Args:
    root: Path = Path("runs/ffrl")
    """Folder holding the run folders."""
    prefix: str = "digits"
    """Run-name prefix (the dataset tag)."""
    models: list[str] = field(
        default_factory=lambda: ["ffrl", "ffrl-nohj", "ffrl-weak", "vae", "betavae4", "slowvae"]
    )
    """Model tags, one row each, in this order."""


def _fmt(values: list[float]) -> str:
    if not values:
        return "–"
    v = np.asarray(values)
    std = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():,.1f} ± {std:,.1f}".replace(",", " ")


def table(args: Args) -> str:
    """The markdown table for the runs under ``args.root``."""
    runs = {
        m: [
            json.loads(p.read_text())["scores"]
            for p in sorted(args.root.glob(f"{args.prefix}-{m}-seed*/results.json"))
        ]
        for m in args.models
    }
    found = [s for scores in runs.values() for s in scores]
    if not found:
        raise SystemExit(f"no results.json under {args.root} for prefix {args.prefix!r}")
    names = [
        k[2:]
        for k in found[0]
        if k.startswith("E_") and k != "E_mean" and not k.endswith(("_per_pixel", "_best_dim"))
    ]
    head = "| model | seeds | " + " | ".join(f"E_{n} ↓" for n in names) + " | log p(x_0) ↑ |"
    lines = [head, "|" + "---|" * (len(names) + 3)]
    for m, scores in runs.items():
        cells = []
        for n in names:
            cell = _fmt([s[f"E_{n}"] for s in scores])
            best = [s[f"E_{n}_best_dim"] for s in scores if f"E_{n}_best_dim" in s]
            cells.append(cell + (f" ({_fmt(best)})" if best else ""))
        cells.append(_fmt([s["log_px0"] for s in scores]))
        lines.append(f"| {m} | {len(scores)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(tyro.cli(Args)))
