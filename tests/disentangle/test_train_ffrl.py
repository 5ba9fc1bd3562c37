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
    with pytest.raises(ValueError, match=r"model\.diversity_weight"):
        bad = ModelConfig("mlp", kind="ffrl", weakly_supervised=True, diversity_weight=-1.0)
        validate(dataclasses.replace(ok, model=bad), names)
    tuned = ModelConfig("mlp", kind="ffrl", weakly_supervised=True, diversity_weight=2.0)
    assert build_model(dataclasses.replace(ok, model=tuned), (3, 28, 28), 10).weights.diversity == 2
    with pytest.raises(ValueError, match=r"model\.kind"):
        validate(dataclasses.replace(PRESETS["quick"], data=DataConfig(name="digits_seq")), names)


def test_flow_evaluator_scores_k_recovery_of_weak_models_up_to_relabelling(one_thread):
    import torch
    import torch.nn.functional as F

    from disentangle.data.sequences import make_sequence_dataset
    from disentangle.models.ffrl import FFRL
    from disentangle.train.flow_evaluation import FlowEvaluator

    data = make_sequence_dataset("digits_seq", split="eval", steps=2)
    model = FFRL((3, 28, 28), 4, 3, steps=2, architecture="mlp", weakly_supervised=True)
    evaluator = FlowEvaluator(data, num_sequences=8, batch_size=4, is_samples=1)
    true_k = {}  # which k the evaluator is scoring: read back from the frames object

    def relabelled(frames, hard_sample=True):  # index = (k + 1) mod 3, for every sequence
        return F.one_hot(torch.full((frames.shape[0],), (true_k["k"] + 1) % 3), 3).float()

    frames_of = data.frames

    def spy(idx, k):
        true_k["k"] = k
        return frames_of(idx, k)

    data.frames = spy
    model.predict_index = relabelled
    scores = evaluator(model, step=0)
    assert scores["k_accuracy"] == 1.0
    assert evaluator.last["details"]["k_confusion"] == [[0, 8, 0], [0, 0, 8], [8, 0, 0]]
    model.predict_index = lambda frames, hard_sample=True: F.one_hot(
        torch.zeros(frames.shape[0], dtype=torch.long), 3
    ).float()
    assert evaluator(model, step=0)["k_accuracy"] == pytest.approx(1 / 3)


def test_evaluate_app_rescores_a_weak_ffrl_run(tmp_path, one_thread):
    import importlib.util
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("evaluate_app", root / "apps" / "evaluate.py")
    app = importlib.util.module_from_spec(spec)
    sys.modules["evaluate_app"] = app
    spec.loader.exec_module(app)
    cfg = ffrl_config(tmp_path / "weak")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, weakly_supervised=True))
    trained = run(cfg)["scores"]
    out = app.main(app.Args(tmp_path / "weak"))
    assert out["step"] == 3 and 0 < out["scores"]["k_accuracy"] <= 1
    assert out["scores"]["E_scale"] == pytest.approx(trained["E_scale"])
    assert (tmp_path / "weak" / "evaluation_00000003.json").exists()
