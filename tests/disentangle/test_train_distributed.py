"""Multi-process training and SIGKILL-and-resume, each in real subprocesses.

- Two CPU processes (gloo) started by ``torchrun --nproc_per_node 2`` (what
  ``accelerate launch --multi_gpu --num_processes 2`` runs on a CPU machine) train one model:
  parameters end identical on both, the logged loss is the mean of the two processes' losses,
  and the run folder is written once, by the main process.
- A run killed with SIGKILL (checkpoints every step, so the kill usually lands in a write) and
  resumed logs exactly the losses of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
DRIVER = """
import sys, pathlib
sys.path.insert(0, {here!r})
import torch
from torch import nn
import disentangle.train.runner as run_module
from test_train_run import tiny_config
from test_train_toydata import Blobs

out, steps, every = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
record = sys.argv[4]
resume = "--resume" in sys.argv


class Recorder(nn.Module):
    # Keeps this process's own losses, to check what the loop logs against.
    def __init__(self, inner):
        super().__init__()
        self.inner, self.losses = inner, []

    def forward(self, batch):
        terms = self.inner(batch)
        self.losses.append(terms["loss"].item())
        return terms


models = []
build = run_module.build_model
def build_and_record(*args):
    models.append(Recorder(build(*args)))
    return models[-1]
run_module.build_model = build_and_record

cfg = tiny_config(out, steps=steps, log_every=1, checkpoint_every=every)
cfg.eval.metrics = ()
cfg.eval.images = False
cfg.eval.geometry_batches = 0  # the recorder wraps the model: no encode() to probe
cfg.resume = resume
run_module.run(cfg, dataset=Blobs())
if record != "-":
    import os
    rank = int(os.environ.get("RANK", 0))
    state = {{k: v.detach().clone() for k, v in models[0].state_dict().items()}}
    torch.save({{"losses": models[0].losses, "params": state}}, f"{{record}}.rank{{rank}}.pt")
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "HF_HOME": str(tmp_path / "hf"),  # no accelerate config file: defaults only
            "OMP_NUM_THREADS": "1",
            "PYTHONWARNINGS": "ignore",
            "TQDM_DISABLE": "1",
        }
    )
    return env


def _driver(tmp_path: Path) -> Path:
    path = tmp_path / "driver.py"
    path.write_text(DRIVER.format(here=str(HERE)))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_losses(run_dir: Path) -> list[tuple[int, float]]:
    from disentangle.train import read_history

    return [
        (r["step"], r["loss"])
        for r in read_history(run_dir / "metrics.jsonl")
        if r["split"] == "train"
    ]


def test_two_cpu_processes_train_one_model(tmp_path):
    out, record = tmp_path / "run", tmp_path / "record"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        str(_driver(tmp_path)),
        str(out),
        "6",
        "3",
        str(record),
    ]
    proc = subprocess.run(cmd, env=_env(tmp_path), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(f"{record}.rank0.pt")
    r1 = torch.load(f"{record}.rank1.pt")
    assert r0["params"].keys() == r1["params"].keys()
    for name in r0["params"]:
        assert torch.equal(r0["params"][name], r1["params"][name]), name
    assert r0["losses"] != r1["losses"]  # the processes saw different data
    logged = _train_losses(out)
    assert [s for s, _ in logged] == list(range(1, 7))  # one record per step: written once
    expected = [(a + b) / 2 for a, b in zip(r0["losses"], r1["losses"])]
    assert [loss for _, loss in logged] == pytest.approx(expected, rel=1e-6)
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1
    ckpt = out / "checkpoints" / "step_00000006"
    assert {"random_states_0.pkl", "random_states_1.pkl", "model.safetensors"} <= {
        p.name for p in ckpt.iterdir()
    }
    assert json.loads((out / "results.json").read_text())["step"] == 6


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    env, driver = _env(tmp_path), str(_driver(tmp_path))
    steps = "60"
    ref = tmp_path / "ref"
    proc = subprocess.run(
        [sys.executable, driver, str(ref), steps, "1", "-"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    out = tmp_path / "killed"
    victim = subprocess.Popen(
        [sys.executable, driver, str(out), steps, "1", "-"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 200
    while time.monotonic() < deadline and victim.poll() is None:
        if len(_train_losses(out)) >= 25:
            break
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    killed_at = len(_train_losses(out))
    assert 25 <= killed_at < 60, "the run must be killed mid-way"
    assert not (out / "results.json").exists()
    # A torn write of a later checkpoint must be ignored.
    torn = out / "checkpoints" / ".tmp-step_00000059"
    torn.mkdir(parents=True, exist_ok=True)
    (torn / "model.safetensors").write_bytes(b"\x00garbage")

    proc = subprocess.run(
        [sys.executable, driver, str(out), steps, "1", "-", "--resume"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not torn.exists()
    resumed = json.loads((out / "results.json").read_text())["resumed_from"]
    assert 1 <= resumed <= killed_at
    assert _train_losses(out) == _train_losses(ref)
