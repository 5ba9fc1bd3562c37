"""The GMG toy (apps/gmg_toy.py, paper Fig. 2) at small scale: the paper's claim, measured."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def _toy():
    spec = importlib.util.spec_from_file_location("gmg_toy", ROOT / "apps" / "gmg_toy.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gmg_toy"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_gmg_map_keeps_geometry_and_fits_the_target(tmp_path):
    toy = _toy()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny problems: avoid OpenMP latency on a shared CPU
    try:
        fits = {r: toy.fit("sqeuclidean", r, steps=120, n=64, lam=10.0) for r in toy.REGULARISERS}
    finally:
        torch.set_num_threads(threads)
    none, dst, gmg = fits["none"], fits["dst"], fits["gmg"]
    assert gmg.distortion < 0.8 * none.distortion  # keeps more of the geometry than no reg.
    assert gmg.divergence < 0.5 * dst.divergence  # fits the target far better than DST
    assert dst.distortion < gmg.distortion  # DST alone preserves distances, but does not fit
    out = tmp_path / "toy.png"
    toy.plot(list(fits.values()), out)
    assert out.stat().st_size > 10_000
