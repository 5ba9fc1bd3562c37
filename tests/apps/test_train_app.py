"""The command-line apps: apps/train.py (python and accelerate launch) and apps/evaluate.py."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from disentangle.train import Config

ROOT = Path(__file__).resolve().parents[2]
TRAIN, EVALUATE = str(ROOT / "apps" / "train.py"), str(ROOT / "apps" / "evaluate.py")

# A tiny run on the generated dSprites: its small sub-grid, an MLP, a few steps.
TINY = [
    "--data.tiny",
    "--model.architecture", "mlp",
    "--model.latent-dim", "4",
    "--train.steps", "4",
    "--train.batch-size", "16",
    "--train.log-every", "2",
    "--train.checkpoint-every", "2",
    "--train.no-progress",
    "--eval.metrics", "mig", "dci_hfs",
    "--eval.num-train", "200",
    "--eval.num-test", "100",
]  # fmt: skip


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HOME=str(tmp_path / "hf"), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return env


def _run(cmd: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, env=_env(tmp_path), capture_output=True, text=True, timeout=300, cwd=tmp_path
    )


def _flags(cls, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(cls):
        name = prefix + f.name.replace("_", "-")
        if dataclasses.is_dataclass(f.default_factory if callable(f.default_factory) else None):
            out += _flags(f.default_factory, name + ".")
        else:
            out.append("--" + name)
    return out


def test_help_documents_every_field(tmp_path):
    proc = _run([sys.executable, TRAIN, "--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    flags = _flags(Config)
    assert len(flags) > 40
    missing = [f for f in flags if f not in text]
    assert not missing, missing
    assert "--preset {quick,paper,ffrl,ffrl_paper}" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--regulariser.weight", "-1"], "regulariser.weight: λ must be ≥ 0"),
        (["--data.name", "mnist"], "unknown dataset 'mnist'"),
        (["--train.batch-size", "1"], "train.batch_size"),
        (["--regulariser.cost", "manhattan"], "regulariser.cost"),
    ],
)
def test_bad_values_fail_before_training(tmp_path, args, message):
    proc = _run([sys.executable, TRAIN, "--output-dir", "out", *args], tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not (tmp_path / "out").exists()


def test_accelerate_launch_then_evaluate(tmp_path):
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1"]
    proc = _run([*launch, TRAIN, "--output-dir", "run", *TINY], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    results = json.loads((run / "results.json").read_text())
    assert results["step"] == 4 and set(results["headline"]) == {"DCI-D (HFS)", "MIG"}
    assert (run / "images" / "traversals.png").exists()

    proc = _run([sys.executable, EVALUATE, "run", "--metrics", "mig", "dci_hfs"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scored = json.loads((run / "evaluation_00000004.json").read_text())
    assert scored["scores"] == results["scores"]  # same checkpoint, same seed: same numbers
    assert "dci_hfs.disentanglement" in proc.stdout


def test_python_train_and_resume(tmp_path):
    proc = _run([sys.executable, TRAIN, "--output-dir", "run", *TINY], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _run([sys.executable, TRAIN, "--output-dir", "run", *TINY], tmp_path)
    assert proc.returncode == 2 and "--resume" in proc.stderr
    more = [*TINY, "--train.steps", "6", "--resume"]
    proc = _run([sys.executable, TRAIN, "--output-dir", "run", *more], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["step"] == 6 and results["resumed_from"] == 4
