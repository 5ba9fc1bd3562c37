"""The FFRL model in the toolkit's training run (config, runner, FlowEvaluator)."""

import dataclasses
import json

import pytest

from disentangle.train import PRESETS, validate
from disentangle.train.config import (
    Config,
    DataConfig,
    EvalConfig,
    ModelConfig,
    RegulariserConfig,
    TrainConfig,
)
from disentangle.train.runner import build_model, dataset_names, run


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
    images = tmp_path / "run" / "images"
    assert (images / "losses.png").exists()
    for name in ("scale", "rotate", "hue"):  # sequence + extrapolation grid and its GIF
        assert str(images / f"flow_{name}.png") in saved["images"]
        assert (images / f"flow_{name}.gif").stat().st_size > 0
    assert (images / "compose_scale+rotate.png").exists()
    from PIL import Image

    gif = Image.open(images / "flow_scale.gif")
    assert gif.n_frames == 2 + 1  # T′ + 1 time steps
    assert gif.size == (2 * 28, 3 * 28)  # true | flow side by side, 3 sequences of 28 px


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
        validate(
            dataclasses.replace(ok, model=ModelConfig("mlp", kind="ffrl", flow_steps=0)), names
        )
    with pytest.raises(ValueError, match=r"model\.architecture"):
        validate(dataclasses.replace(ok, model=ModelConfig("conv", kind="ffrl")), names)
    with pytest.raises(ValueError, match=r"model\.hj_weight"):
        validate(
            dataclasses.replace(ok, model=ModelConfig("mlp", kind="ffrl", hj_weight=-1.0)), names
        )
    ablation = dataclasses.replace(ok, model=ModelConfig("mlp", kind="ffrl", hj_weight=0.0))
    model = build_model(ablation, (3, 28, 28), 10)
    assert model.weights.hj == 0 and model.weights.ic == 0 and model.weights.rec == 1
    assert not model.weakly_supervised
    weak = dataclasses.replace(ok, model=ModelConfig("mlp", kind="ffrl", weakly_supervised=True))
    assert build_model(weak, (3, 28, 28), 10).weakly_supervised
    with pytest.raises(ValueError, match=r"model\.kind"):
        validate(dataclasses.replace(PRESETS["quick"], data=DataConfig(name="digits_seq")), names)
