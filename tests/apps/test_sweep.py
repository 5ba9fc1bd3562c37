"""apps/sweep.py: the grid of cells, the flags handed to apps/train.py and the summary table."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("sweep", ROOT / "apps" / "sweep.py")
sweep = importlib.util.module_from_spec(spec)
sys.modules["sweep"] = sweep  # dataclasses resolve the module's annotations through it
spec.loader.exec_module(sweep)


def _flag(flags: list[str], name: str) -> str:
    return flags[flags.index(name) + 1]


def test_cells_cover_sides_and_costs_for_regularised_variants_only():
    args = sweep.Args(variants=("base", "gmg"), sides=("encoder", "decoder"), costs=("cosine",))
    assert sweep.cells(args) == [
        ("base", "decoder", "cosine"),
        ("gmg", "encoder", "cosine"),
        ("gmg", "decoder", "cosine"),
    ]
    # the default decoder/cosine cells keep the short run names of earlier sweeps
    assert sweep.tag("gmg", "decoder", "cosine") == "gmg"
    assert sweep.tag("gmg", "encoder", "sqeuclidean") == "gmg-encoder-sqeuclidean"


def test_cell_flags(tmp_path):
    args = sweep.Args(out=tmp_path, steps=7, gmg_weight=3.0, metrics=("mig",))
    flags = sweep.cell_args(args, "shapes3d", "beta_tcvae", ("gmg", "encoder", "cosine"), 2)
    assert _flag(flags, "--output-dir") == str(
        tmp_path / "shapes3d-beta_tcvae-gmg-encoder-cosine-seed2"
    )
    assert _flag(flags, "--regulariser.kind") == "gmg"
    assert _flag(flags, "--regulariser.side") == "encoder"
    assert _flag(flags, "--regulariser.weight") == "3.0"
    assert _flag(flags, "--train.steps") == "7" and _flag(flags, "--eval.metrics") == "mig"
    base = sweep.cell_args(args, "dsprites", "beta_vae", ("base", "decoder", "cosine"), 0)
    assert _flag(base, "--regulariser.kind") == "none"


def test_summary_is_mean_and_std_over_finished_seeds(tmp_path):
    args = sweep.Args(out=tmp_path, datasets=("dsprites",), bases=("beta_vae",), variants=("gmg",))
    for seed, dci in ((0, 0.2), (1, 0.4)):
        run = tmp_path / f"dsprites-beta_vae-gmg-seed{seed}"
        run.mkdir()
        scores = {
            "dci_hfs.disentanglement": dci,
            "dci.disentanglement": dci,
            "mig.discrete_mig": 0.1,
        }
        (run / "results.json").write_text(json.dumps({"scores": scores}))
    row = [ln for ln in sweep.summarize(args).splitlines() if ln.startswith("| dsprites")]
    assert len(row) == 1
    cols = [c.strip() for c in row[0].strip("|").split("|")]
    assert cols[:6] == ["dsprites", "beta_vae", "gmg", "decoder", "cosine", "2"]
    assert cols[6] == "0.300 ± 0.141"  # std of (0.2, 0.4) with n − 1
    assert cols[8] == "0.100 ± 0.000"
