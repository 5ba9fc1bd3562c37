"""Bad input gives clear errors naming the argument; the command line on files it writes."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

import dismetrics
import dismetrics.__main__ as cli
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
from dismetrics.__main__ import build_parser, main

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


def test_cli_errors_and_module_entry_point(tmp_path, capsys):
    np.save(tmp_path / "codes.npy", np.zeros((10, 2)))
    np.save(tmp_path / "factors.npy", np.zeros((10, 1), dtype=int) - 1)
    assert main([str(tmp_path / "missing.npy"), str(tmp_path / "factors.npy")]) == 2
    assert "error: codes: file not found" in capsys.readouterr().err
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


# -- command line: bad files and paths fail early, with one line and exit status 2 ----------


def _small_pair(n: int = 90) -> tuple[np.ndarray, np.ndarray]:
    f = make_factors(n, sizes=(3, 3))
    return f + 0.05 * np.random.default_rng(1).standard_normal(f.shape), f


@pytest.fixture
def files(tmp_path):
    z, f = _small_pair()
    np.save(tmp_path / "codes.npy", z)
    np.save(tmp_path / "factors.npy", f)
    np.savez(tmp_path / "pair.npz", codes=z, factors=f)
    return tmp_path


@pytest.fixture
def no_scoring(monkeypatch):
    """Fail the test if the CLI reaches the computation."""

    def forbidden(*args, **kwargs):
        raise AssertionError("score() ran although the arguments were bad")

    monkeypatch.setattr(cli, "score", forbidden)


def _run(argv, capsys) -> tuple[int, str]:
    """Exit status and stderr of the CLI; a SystemExit counts as its code."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    return rc, capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.npy", b""),
        ("empty.npz", b""),
        ("garbage.npz", b"PK\x03\x04" + b"garbage" * 20),
        ("text.npy", b"1 2 3\n4 5 6\n"),
        ("truncated.npz", None),
        ("truncated.npy", None),
    ],
)
def test_cli_unreadable_codes_file_is_one_line_and_status_2(
    files, capsys, no_scoring, name, content
):
    path = files / name
    if content is None:
        source = files / ("pair.npz" if name.endswith(".npz") else "codes.npy")
        data = source.read_bytes()
        content = data[: len(data) // 2]
    path.write_bytes(content)
    rc, err = _run([path, files / "factors.npy", "--metrics", "mig"], capsys)
    assert rc == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: codes: cannot read {path}")


def test_cli_unreadable_factors_and_test_files_are_named(files, capsys, no_scoring):
    (files / "bad.npz").write_bytes(b"")
    rc, err = _run([files / "codes.npy", files / "bad.npz"], capsys)
    assert rc == 2 and err.startswith(f"error: factors: cannot read {files / 'bad.npz'}")
    rc, err = _run([files / "pair.npz", "--codes-test", files / "bad.npz"], capsys)
    assert rc == 2 and err.startswith(f"error: --codes-test: cannot read {files / 'bad.npz'}")


@pytest.mark.parametrize("where", ["folder", "under_file", "under_file_deeper"])
def test_cli_bad_out_path_fails_before_scoring(files, capsys, no_scoring, where):
    (files / "a_file").write_text("x")
    out = {
        "folder": files,
        "under_file": files / "a_file" / "r.json",
        "under_file_deeper": files / "a_file" / "sub" / "r.json",
    }[where]
    rc, err = _run([files / "codes.npy", files / "factors.npy", "--out", out], capsys)
    assert rc == 2
    assert err.startswith("error: --out: ") and str(out) in err and err.count("\n") == 1
    assert not list(files.rglob("*.tmp"))


def test_cli_failed_write_leaves_no_temporary_file(files, capsys, monkeypatch):
    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(cli.os, "replace", refuse)
    out = files / "res" / "r.json"
    rc, err = _run(
        [files / "codes.npy", files / "factors.npy", "--metrics", "mig", "--out", out], capsys
    )
    assert rc == 2 and err.startswith(f"error: --out: cannot write {out}")
    assert not out.exists() and not list(files.rglob("*.tmp"))


def test_cli_one_npz_with_codes_and_factors(files, capsys):
    argv = ["--metrics", "mig,dci", "--preset", "fast", "--n-jobs", "1"]
    assert main([str(files / "codes.npy"), str(files / "factors.npy"), *argv]) == 0
    two_files = capsys.readouterr().out
    assert main([str(files / "pair.npz"), *argv]) == 0
    assert capsys.readouterr().out == two_files
    assert main([str(files / "pair.npz"), str(files / "pair.npz"), *argv]) == 0
    assert capsys.readouterr().out == two_files
    # one file for the test pair as well; single-array .npz files work as before
    z, f = _small_pair(60)
    np.savez(files / "test.npz", codes=z, factors=f)
    np.savez(files / "z.npz", z)
    np.savez(files / "f.npz", values=f)
    assert main([str(files / "pair.npz"), "--codes-test", str(files / "test.npz"), *argv]) == 0
    split = capsys.readouterr().out
    z_path, f_path = str(files / "z.npz"), str(files / "f.npz")
    argv_test = ["--codes-test", z_path, "--factors-test", f_path]
    assert main([str(files / "pair.npz"), *argv_test, *argv]) == 0
    assert capsys.readouterr().out == split


def test_cli_missing_arrays_are_named(files, capsys, no_scoring):
    rc, err = _run([files / "codes.npy"], capsys)
    assert rc == 2 and err.startswith(f"error: factors: not given, and {files / 'codes.npy'}")
    np.savez(files / "other.npz", codes=np.zeros((4, 2)), labels=np.zeros((4, 1), dtype=int))
    rc, err = _run([files / "other.npz"], capsys)
    assert rc == 2 and "holds no array named 'factors'" in err
    np.savez(files / "many.npz", a=np.zeros(3), b=np.zeros(3))
    rc, err = _run([files / "many.npz", files / "factors.npy"], capsys)
    assert rc == 2 and err.startswith("error: codes: ") and "one named 'codes'" in err
    rc, err = _run([files / "pair.npz", "--factors-test", files / "factors.npy"], capsys)
    assert rc == 2 and err.startswith("error: --factors-test: given without --codes-test")


def test_cli_bad_settings_fail_before_scoring(files, capsys, no_scoring):
    rc, err = _run([files / "pair.npz", "--num-bins", "10000000000"], capsys)
    assert rc == 2 and "num_bins must be an integer between 1 and 100000" in err
    rc, err = _run([files / "pair.npz", "--n-jobs", "0"], capsys)
    assert rc == 2 and "n_jobs must be None or a non-zero integer" in err


def test_cli_help_names_the_program_and_reports_the_version(capsys):
    assert build_parser().format_usage().startswith("usage: dismetrics ")
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"dismetrics {dismetrics.__version__}"
