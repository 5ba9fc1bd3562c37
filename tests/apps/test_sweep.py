"""apps/sweep.py: the grid of cells, the flags handed to apps/train.py and the summary table."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

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


def test_paired_comparison_known_answers():
    # every difference is +1: mean 1, the bootstrap interval is the point 1, d_z is infinite
    c = sweep.paired([2.0, 3.0, 4.0, 5.0, 6.0], [1.0, 2.0, 3.0, 4.0, 5.0])
    assert c["mean"] == 1.0 and c["lo"] == 1.0 and c["hi"] == 1.0
    # five positive differences: the exact one-sided Wilcoxon p is 1/2^5
    assert abs(c["p"] - 1 / 32) < 1e-12
    # differences (1, −1, 2, −2): mean 0, the interval straddles 0, d_z = 0
    c = sweep.paired([1.0, 0.0, 2.0, 0.0], [0.0, 1.0, 0.0, 2.0])
    assert c["mean"] == 0.0 and c["lo"] < 0 < c["hi"] and c["dz"] == 0.0


def test_summary_compares_claims_paired_over_common_seeds(tmp_path):
    args = sweep.Args(
        out=tmp_path, datasets=("dsprites",), bases=("beta_vae",), variants=("base", "gmg")
    )
    for variant, gmg in (("base", 0.002), ("gmg", 0.0005)):
        for seed in (0, 1, 2):
            run = tmp_path / f"dsprites-beta_vae-{variant}-seed{seed}"
            run.mkdir()
            scores = {
                "dci_hfs.disentanglement": 0.1 + 0.01 * seed,
                "dci.disentanglement": 0.1,
                "mig.discrete_mig": 0.05,
                "geometry.decoder.gmg": gmg + 1e-4 * seed,
            }
            result = {"scores": scores, "train": {"rec": 100.0}}
            (run / "results.json").write_text(json.dumps(result))
    lines = sweep.summarize(args).splitlines()
    claim = [ln for ln in lines if "GMG > base" in ln and "decoder GMG" in ln]
    assert len(claim) == 1
    cols = [c.strip() for c in claim[0].strip("|").split("|")]
    # sign flipped (lower GMG is better): the difference is 0.002 − 0.0005 on every seed
    assert cols[4] == "3" and float(cols[5]) == pytest.approx(0.0015) and cols[-1] == "yes"
    same = [ln for ln in lines if "GMG > base" in ln and "| DCI-D (HFS) |" in ln]
    assert same and same[0].strip("|").split("|")[-1].strip() == "no"  # equal scores
