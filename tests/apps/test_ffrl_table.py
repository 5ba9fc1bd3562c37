"""apps/ffrl_table.py: mean ± std over seeds of the FFRL runs' results.json."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("ffrl_table", ROOT / "apps" / "ffrl_table.py")
ffrl_table = importlib.util.module_from_spec(spec)
sys.modules["ffrl_table"] = ffrl_table  # dataclasses resolve annotations through it
spec.loader.exec_module(ffrl_table)


def _write(root: Path, name: str, scores: dict) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "results.json").write_text(json.dumps({"scores": scores}))


def test_table_rows_columns_and_statistics(tmp_path):
    for seed, e in enumerate([10.0, 14.0]):
        _write(
            tmp_path,
            f"s3-ffrl-seed{seed}",
            {"E_scale": e, "E_scale_per_pixel": 0.1, "E_mean": e, "log_px0": -5.0 - seed},
        )
    _write(tmp_path, "s3-vae-seed0", {"E_scale": 100.0, "E_scale_best_dim": 7.0, "log_px0": -4.0})
    _write(tmp_path, "other-ffrl-seed0", {"E_scale": 1.0, "log_px0": 0.0})  # other prefix
    out = ffrl_table.table(
        ffrl_table.Args(tmp_path, prefix="s3", models=["ffrl", "vae", "slowvae"])
    )
    lines = out.splitlines()
    assert lines[0] == "| model | seeds | E_scale ↓ | log p(x_0) ↑ |"
    assert lines[2] == "| ffrl | 2 | 12.0 ± 2.8 | -5.5 ± 0.7 |"  # sample std, ddof 1
    assert lines[3] == "| vae | 1 | 100.0 ± 0.0 (7.0 ± 0.0) | -4.0 ± 0.0 |"
    assert lines[4] == "| slowvae | 0 | – | – |"


def test_no_runs_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match=r"no results\.json"):
        ffrl_table.table(ffrl_table.Args(tmp_path, prefix="s3"))
