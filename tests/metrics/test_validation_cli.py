"""Bad input gives clear errors naming the argument; the command line on files it writes."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from dismetrics import (
    PRESETS,
    beta_vae_score,
    dci,
    dci_hfs,
    histogram_discretize,
    irs,
    mig,
    mig_hfs,
    sample_codes,
    sap,
    score,
    unsupervised,
)
from dismetrics.__main__ import main

from .conftest import ToyData, make_factors


@pytest.fixture
def codes(factors):
    return factors + 0.01 * np.random.default_rng(0).standard_normal(factors.shape)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (
            lambda z, f: (np.where(np.arange(z.size).reshape(z.shape) == 4, np.nan, z), f),
            r"codes contains 1 NaN or inf values \(first at row 1, column 1\)",
        ),
        (lambda z, f: (np.where(z > 3.5, np.inf, z), f), "codes contains .* NaN or inf"),
        (lambda z, f: (z[:-1], f), "factors has 1500 rows but codes has 1499"),
        (lambda z, f: (z, f + 0.5), r"factors must hold integer class indices, got 0.5|got .*\.5"),
        (lambda z, f: (z, f - 1), "factors must hold non-negative class indices"),
        (lambda z, f: (z[:0], f[:0]), "codes is empty"),
        (lambda z, f: (z[:, :0], f), "codes has D=0"),
        (lambda z, f: (z[:, 0], f), r"codes must be a 2-D \(N, D\) array"),
        (lambda z, f: (z, f[:, 0]), r"factors must be a 2-D \(N, K\) array"),
    ],
)
def test_bad_input_names_the_argument(codes, factors, mutate, match):
    z, f = mutate(codes, factors.astype(float))
    with pytest.raises(ValueError, match=match):
        mig(z, f)


def test_train_test_arguments_are_named(codes, factors):
    with pytest.raises(ValueError, match="codes_test has D=2 dimensions but codes_train has D=3"):
        dci(codes, factors, codes[:, :2], factors)
    with pytest.raises(ValueError, match="factors_train has 1500 rows but codes_train has 10"):
        dci(codes[:10], factors, codes, factors)


def test_too_few_samples_and_all_constant_factors(codes, factors):
    with pytest.raises(ValueError, match="needs at least 2 samples"):
        irs(codes[:1], factors[:1])
    with pytest.raises(ValueError, match="needs at least 2 code dimensions"):
        unsupervised(codes[:, :1])
    with pytest.raises(ValueError, match="every column of factors takes a single value"):
        mig(codes, np.zeros_like(factors))
    with pytest.raises(ValueError, match="too few to split"):
        score(codes[:2], factors[:2], ["dci"])


BIG = 10**10  # used to allocate 74.5 GiB of histogram edges


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        pytest.param(
            lambda z, f: mig(z, f, num_bins=BIG),
            ValueError,
            r"num_bins must be an integer between 1 and 100000, got 10000000000",
            id="mig-num_bins-huge",
        ),
        pytest.param(
            lambda z, f: histogram_discretize(z, BIG), ValueError, "num_bins", id="hist-huge"
        ),
        pytest.param(
            lambda z, f: mig_hfs(z, f, num_bins=BIG), ValueError, "num_bins", id="hfs-huge"
        ),
        pytest.param(
            lambda z, f: mig(z, f, num_bins=2.5),
            TypeError,
            r"num_bins must be an integer between 1 and 100000, got 2.5",
            id="mig-num_bins-float",
        ),
        pytest.param(
            lambda z, f: irs(z, f, num_bins=0), ValueError, "num_bins must be", id="irs-zero"
        ),
        pytest.param(lambda z, f: unsupervised(z, num_bins=True), TypeError, "num_bins", id="bool"),
        pytest.param(
            lambda z, f: score(z, f, ["mig"], seed=-1),
            ValueError,
            r"seed must be an integer >= 0, got -1",
            id="score-seed",
        ),
        pytest.param(
            lambda z, f: score(z, f, ["mig"], seed=2.5),
            TypeError,
            "seed must be a non-negative integer",
            id="score-seed-float",
        ),
        pytest.param(
            lambda z, f: dci(z, f, z, f, seed=-1),
            ValueError,
            "seed must be an integer >= 0",
            id="dci-seed",
        ),
        pytest.param(
            lambda z, f: dci_hfs(z, f, num_train=100, num_test=50, seed=-1),
            ValueError,
            "seed must be an integer >= 0",
            id="hfs-seed",
        ),
        pytest.param(
            lambda z, f: dci_hfs(z, f, num_train=100.5, num_test=50),
            TypeError,
            "num_train must be an integer >= 2, got 100.5",
            id="hfs-num_train",
        ),
        pytest.param(
            lambda z, f: dci_hfs(z, f, num_train=100, num_test=0),
            ValueError,
            "num_test must be an integer >= 1, got 0",
            id="hfs-num_test",
        ),
        pytest.param(
            lambda z, f: sap(z, f, z, f, n_jobs=0), ValueError, "n_jobs must be", id="n_jobs"
        ),
        pytest.param(
            lambda z, f: dataclasses.replace(PRESETS["fast"], num_bins=BIG),
            ValueError,
            "num_bins must be an integer between 1 and 100000",
            id="preset-num_bins",
        ),
        pytest.param(
            lambda z, f: dataclasses.replace(PRESETS["fast"], num_train=2.5),
            TypeError,
            "num_train must be an integer >= 1",
            id="preset-num_train",
        ),
        pytest.param(lambda z, f: score(z, f, 5), TypeError, "metrics must be", id="metrics"),
        pytest.param(
            lambda z, f: sample_codes(ToyData(), lambda x: x, 2.5, 0),
            TypeError,
            "num must be an integer >= 1",
            id="sample_codes-num",
        ),
        pytest.param(
            lambda z, f: beta_vae_score(ToyData(), lambda x: x, num_train=2.5),
            TypeError,
            "num_train must be an integer >= 1",
            id="beta_vae-num_train",
        ),
    ],
)
def test_integer_arguments_name_the_argument_and_the_allowed_range(
    codes, factors, call, error, match
):
    with pytest.raises(error, match=match):
        call(codes, factors)


def test_score_splits_and_warns_once_per_metric_on_single_valued_factor(codes, factors):
    f = factors.copy()
    f[:, 2] = 0
    with pytest.warns(UserWarning, match="skipped"):
        res = score(codes, f, ["mig", "sap"], preset="fast")
    assert res["mig"].skipped_factors == (2,) and res["sap"].skipped_factors == (2,)


def test_cli_writes_json_and_prints_table(tmp_path, capsys):
    f = make_factors(900, sizes=(3, 5))
    z = np.column_stack([f + 0.05 * np.random.default_rng(1).standard_normal(f.shape)])
    np.save(tmp_path / "codes.npy", z)
    np.save(tmp_path / "factors.npy", f)
    out = tmp_path / "res" / "results.json"
    rc = main(
        [
            str(tmp_path / "codes.npy"),
            str(tmp_path / "factors.npy"),
            "--metrics",
            "mig,dci,sap",
            "--preset",
            "fast",
            "--n-jobs",
            "1",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "discrete_mig" in printed and "SAP_score" in printed
    data = json.loads(out.read_text())
    assert data["scores"]["mig.discrete_mig"] > 0.9
    assert set(data["metrics"]) == {"mig", "dci", "sap"}


def test_cli_errors_and_module_entry_point(tmp_path):
    np.save(tmp_path / "codes.npy", np.zeros((10, 2)))
    np.save(tmp_path / "factors.npy", np.zeros((10, 1), dtype=int) - 1)
    with pytest.raises(SystemExit, match="codes: file not found"):
        main([str(tmp_path / "missing.npy"), str(tmp_path / "factors.npy")])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "dismetrics",
            str(tmp_path / "codes.npy"),
            str(tmp_path / "factors.npy"),
            "--metrics",
            "mig",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "factors must hold non-negative class indices" in proc.stderr
