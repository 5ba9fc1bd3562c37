"""The training app under careless use: one writer per run folder, verified checkpoints, no
non-finite checkpoint, an idempotent final evaluation, non-finite settings refused up front."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from disentangle.train import (
    CheckpointError,
    Config,
    DataConfig,
    ModelConfig,
    RegulariserConfig,
    RunFolderInUseError,
    RunLock,
    TrainConfig,
    fit,
    read_history,
    run,
    validate,
)
from disentangle.train.state import latest_intact_checkpoint

sys.path.insert(0, str(Path(__file__).parent))
from test_train_run import tiny_config
from test_train_toydata import Blobs

DATA = TensorDataset(torch.linspace(-1, 1, 60).reshape(20, 3))


class Regression(nn.Module):
    """A linear model; ``poison_at`` sets its weight to NaN in that forward call."""

    def __init__(self, poison_at: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(3, 1)
        self.calls, self.poison_at = 0, poison_at

    def forward(self, batch):
        (x,) = batch
        self.calls += 1
        if self.calls == self.poison_at:
            with torch.no_grad():
                self.lin.weight.fill_(float("nan"))
        return {"loss": (self.lin(x) ** 2).mean()}


def _cfg(steps: int, **kw) -> TrainConfig:
    return TrainConfig(
        **{
            "steps": steps,
            "batch_size": 4,
            "log_every": 100,
            "checkpoint_every": 2,
            "keep_checkpoints": 3,
            "cpu": True,
            "progress": False,
            **kw,
        }
    )


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    with pytest.raises(FloatingPointError, match=r"step 4.*step_00000002"):
        fit(Regression(poison_at=4), DATA, _cfg(6), tmp_path / "run")
    steps = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert steps == ["step_00000002"]


def test_damaged_newest_checkpoint_falls_back_to_an_intact_one(tmp_path):
    fit(Regression(), DATA, _cfg(4), tmp_path / "run")
    root = tmp_path / "run" / "checkpoints"
    weights = root / "step_00000004" / "model.safetensors"
    weights.write_bytes(b"\0" * weights.stat().st_size)  # zeroed, same size
    with pytest.warns(UserWarning, match=r"step_00000004/model\.safetensors is damaged"):
        assert latest_intact_checkpoint(root) == root / "step_00000002"
    with pytest.warns(UserWarning, match="damaged"):
        resumed = fit(Regression(), DATA, _cfg(4), tmp_path / "run", resume=True)
    assert resumed.resumed_from == 2 and resumed.step == 4
    # every checkpoint damaged: an error naming the file, nothing resumed silently
    rng = root / "step_00000004" / "random_states_0.pkl"
    rng.write_bytes(rng.read_bytes()[:-7])
    for ckpt in root.iterdir():
        (ckpt / "optimizer.bin").write_bytes(b"garbage")
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match=r"optimizer\.bin"):
        fit(Regression(), DATA, _cfg(4), tmp_path / "run", resume=True)


def test_second_writer_is_refused_and_a_stale_lock_is_not_an_obstacle(tmp_path):
    cfg = tiny_config(tmp_path / "run", steps=2)
    cfg.eval.metrics, cfg.eval.images, cfg.eval.geometry_batches = (), False, 0
    with RunLock(tmp_path / "run"), pytest.raises(RunFolderInUseError, match="in use"):
        run(cfg, dataset=Blobs())
    assert not (tmp_path / "run" / "config.json").exists()
    # a lock file left by a dead process (its pid, no lock held) does not block
    (tmp_path / "run" / ".lock").write_text("999999\n")
    assert run(cfg, dataset=Blobs())["step"] == 2


def test_output_dir_under_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", tmp_path / "file" / "run"):
        with pytest.raises(FileExistsError, match="is an existing file"):
            run(tiny_config(out), dataset=Blobs())


def test_final_evaluation_is_redone_once_after_a_kill(tmp_path):
    out = tmp_path / "run"
    cfg = tiny_config(out, steps=4)
    cfg.eval.metrics, cfg.eval.images, cfg.eval.geometry_batches = ("mig",), False, 0
    first = run(cfg, dataset=Blobs())
    # a kill during the final evaluation: results.json not written, the eval record written
    (out / "results.json").unlink()
    again = run(dataclasses.replace(cfg, resume=True), dataset=Blobs())
    assert again["train"] == first["train"] != {}
    assert again["scores"] == first["scores"]
    evals = [r for r in read_history(out / "metrics.jsonl") if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [4]
    assert json.loads((out / "results.json").read_text())["train"] == first["train"]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"train": TrainConfig(lr=float("inf"))}, "train.lr"),
        ({"train": TrainConfig(lr=1e10)}, "train.lr"),
        ({"regulariser": RegulariserConfig(weight=float("inf"))}, "regulariser.weight"),
        ({"regulariser": RegulariserConfig(epsilon0=float("inf"))}, "regulariser.epsilon0"),
        ({"regulariser": RegulariserConfig(start="eye")}, "regulariser.start"),
        ({"model": ModelConfig(beta=float("inf"))}, "model.beta"),
        ({"model": ModelConfig(beta=float("nan"))}, "model.beta"),
        ({"output_dir": Path("")}, "output_dir"),
    ],
)
def test_non_finite_and_absurd_settings_are_named(change, match):
    with pytest.raises(ValueError, match=match):
        validate(dataclasses.replace(Config(), **change))


def test_checkpoint_folder_copy_keeps_its_manifest_valid(tmp_path):
    fit(Regression(), DATA, _cfg(2), tmp_path / "run")
    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    root = tmp_path / "copy" / "checkpoints"
    assert latest_intact_checkpoint(root) == root / "step_00000002"
    (root / "step_00000002" / "extra.txt").write_text("planted")
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match="not listed"):
        latest_intact_checkpoint(root)


def test_a_file_with_part_of_the_grid_is_refused_before_training(tmp_path):
    from disentangle.data.dsprites import generate_dsprites, save_dsprites_npz

    path = tmp_path / "dsprites.npz"
    save_dsprites_npz(path, generate_dsprites(np.arange(0, 737_280, 4099)))
    cfg = dataclasses.replace(
        tiny_config(tmp_path / "run"),
        data=DataConfig(name="dsprites_real", path=str(path)),
        model=ModelConfig(architecture="mlp", latent_dim=4),
    )
    with pytest.raises(ValueError, match=r"data.path: .* holds 180 of the 737280"):
        run(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()
