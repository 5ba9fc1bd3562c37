"""The FFRL model in the toolkit's training run (config, runner, FlowEvaluator)."""

import dataclasses
import json

import pytest
import torch

from disentangle.train import PRESETS, validate
from disentangle.train.config import (
    Config,
    DataConfig,
    EvalConfig,
    ModelConfig,
    RegulariserConfig,
    TrainConfig,
)
from disentangle.train.runner import dataset_names, run


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def ffrl_config(output_dir=None, **train):
    """A tiny FFRL run on digits_seq: MLP VAE, latent 4, T′ = 2, 3 steps of batch 8."""
    return Config(
        output_dir=output_dir,
        data=DataConfig(name="digits_seq"),
        model=ModelConfig(architecture="mlp", latent_dim=4, kind="ffrl", flow_steps=2),
        regulariser=RegulariserConfig(kind="none"),
        train=TrainConfig(**{"steps": 3, "batch_size": 8, "progress": False, **train}),
        eval=EvalConfig(num_test=16, images=True),
    )


def test_ffrl_run_writes_results_with_equivariance_errors(tmp_path, one_thread):
    results = run(ffrl_config(tmp_path / "run"))
    assert results["step"] == 3
    scores = results["scores"]
    for name in ("scale", "rotate", "hue"):
        assert scores[f"E_{name}"] > 0 and 0 < scores[f"E_{name}_per_pixel"] <= 1
    assert -1e5 < scores["log_px0"] < 0
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["scores"] == pytest.approx(scores)
    assert saved["config"]["model"]["kind"] == "ffrl"
    assert (tmp_path / "run" / "images" / "losses.png").exists()


def test_ffrl_config_validation():
    names = dataset_names()
    assert "digits_seq" in names and "dsprites" in names
    ok = ffrl_config()
    validate(ok, names)
    with pytest.raises(ValueError, match=r"data\.name"):
        validate(dataclasses.replace(ok, data=DataConfig(name="dsprites")), names)
    with pytest.raises(ValueError, match=r"regulariser\.kind"):
        validate(dataclasses.replace(ok, regulariser=PRESETS["quick"].regulariser), names)
    with pytest.raises(ValueError, match=r"model\.flow_steps"):
        validate(dataclasses.replace(ok, model=ModelConfig(kind="ffrl", flow_steps=0)), names)
    with pytest.raises(ValueError, match=r"model\.kind"):
        validate(dataclasses.replace(PRESETS["quick"], data=DataConfig(name="digits_seq")), names)
