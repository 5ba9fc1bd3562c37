"""End-to-end training run on tiny data: every artefact of the run folder, config validation."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from disentangle.train import (
    Config,
    EvalConfig,
    Evaluator,
    ModelConfig,
    RegulariserConfig,
    TrainConfig,
    read_history,
    run,
    validate,
)
from disentangle.train.runner import build_evaluator, load_run

sys.path.insert(0, str(Path(__file__).parent))
from test_train_toydata import Blobs


def tiny_config(out: Path, **train) -> Config:
    """A few steps of a small MLP VAE on 32×32 blobs with a fast evaluation."""
    return Config(
        output_dir=out,
        model=ModelConfig(architecture="mlp", latent_dim=4, beta=2.0),
        regulariser=RegulariserConfig(kind="jacobian", side="decoder", weight=1.0),
        train=TrainConfig(
            **{
                "steps": 6,
                "batch_size": 16,
                "lr": 1e-3,
                "log_every": 2,
                "checkpoint_every": 3,
                "progress": False,
                **train,
            }
        ),
        eval=EvalConfig(
            every=0,
            metrics=("mig", "dci", "beta_vae", "factor_vae", "dci_hfs"),
            num_train=200,
            num_test=100,
            num_sampled=40,
        ),
    )


def test_tiny_run_writes_every_artefact(tmp_path):
    out = tmp_path / "run"
    results = run(tiny_config(out), dataset=Blobs())
    assert json.loads((out / "config.json").read_text())["train"]["steps"] == 6
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step_00000003",
        "step_00000006",
    ]
    assert (out / "checkpoints" / "step_00000006" / "model.safetensors").exists()
    assert (out / "checkpoints" / "step_00000006" / "random_states_0.pkl").exists()
    records = read_history(out / "metrics.jsonl")
    assert [r["step"] for r in records if r["split"] == "train"] == [2, 4, 6]
    assert [r["step"] for r in records if r["split"] == "eval"] == [6]
    assert {"loss", "rec", "kl", "jacobian", "images_per_s"} <= set(records[0])
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))
    saved = json.loads((out / "results.json").read_text())
    assert saved["step"] == 6 and saved == json.loads(json.dumps(results, default=str))
    assert set(saved["headline"]) == {"DCI-D", "DCI-D (HFS)", "MIG"}
    for key in ("beta_vae.eval_accuracy", "factor_vae.eval_accuracy", "mig.discrete_mig"):
        assert 0.0 <= saved["scores"][key] <= 1.0
    images = {p.name for p in (out / "images").iterdir()}
    assert images == {"traversals.png", "reconstructions.png", "losses.png", "metrics.png"}
    assert all((out / "images" / name).stat().st_size > 1000 for name in images)
    # apps/evaluate.py's path: reload the last checkpoint and score it again, identically.
    cfg, model, data, ckpt = load_run(out, dataset=Blobs())
    assert ckpt.name == "step_00000006" and cfg == tiny_config(out)
    assert build_evaluator(cfg, data)(model) == saved["scores"]
    # the held-out geometry of the decoder and the encoder, in the scores and on its own
    geometry = {f"geometry.{s}.{k}" for s in ("decoder", "encoder") for k in ("gmg", "dst")}
    assert (
        geometry <= set(saved["geometry"]) and saved["geometry"].items() <= saved["scores"].items()
    )
    plain = Evaluator(data, cfg.eval, seed=cfg.train.seed)(model)
    assert plain == {k: v for k, v in saved["scores"].items() if not k.startswith("geometry.")}


def test_gmg_run_logs_its_diagnostics(tmp_path):
    cfg = tiny_config(tmp_path / "run", steps=4)
    cfg.regulariser = RegulariserConfig(kind="gmg", side="decoder", cost="cosine", weight=10.0)
    cfg.eval.metrics = ()
    cfg.eval.images = False
    cfg.eval.geometry_batches = 2
    saved = run(cfg, dataset=Blobs())
    records = [r for r in read_history(tmp_path / "run" / "metrics.jsonl") if r["split"] == "train"]
    for r in records:
        assert 0.0 <= r["gmg_fell_back"] <= 1.0 and 0.0 <= r["gmg_from_identity"] <= 1.0
        assert r["gmg_epsilon"] > 0 and r["gmg_gw"] >= 0
        assert abs(r["gmg"] - (r["gmg_dst"] - r["gmg_gw"])) <= 1e-4 * max(1.0, r["gmg_dst"])
        assert 0.0 <= r["reg_grad_share"] < 1.0  # 0 where the GMG fell back (zero gradient)
    assert set(saved["geometry"]) == {
        f"geometry.{s}.{k}"
        for s in ("decoder", "encoder")
        for k in ("gmg", "dst", "gmg_std", "dst_std")
    }


def test_existing_run_is_not_overwritten(tmp_path):
    cfg = tiny_config(tmp_path / "run", steps=3)
    cfg.eval.metrics = ()
    cfg.eval.images = False
    run(cfg, dataset=Blobs())
    with pytest.raises(FileExistsError, match="--resume"):
        run(cfg, dataset=Blobs())
    changed = dataclasses.replace(cfg, resume=True, model=ModelConfig("mlp", latent_dim=5))
    with pytest.raises(ValueError, match=r"model.latent_dim"):
        run(changed, dataset=Blobs())


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"regulariser": RegulariserConfig(weight=-0.5)}, "regulariser.weight"),
        ({"regulariser": RegulariserConfig(cost="euclid")}, "regulariser.cost"),
        ({"regulariser": RegulariserConfig(epsilon0=-1)}, "regulariser.epsilon0"),
        ({"train": TrainConfig(batch_size=1)}, "train.batch_size"),
        ({"model": ModelConfig(beta=-1)}, "model.beta"),
        ({"model": ModelConfig(reconstruction="none")}, "regulariser.side"),
        ({"train": TrainConfig(steps=0)}, "train.steps"),
    ],
)
def test_bad_config_values_are_named(change, match):
    with pytest.raises(ValueError, match=match):
        validate(dataclasses.replace(Config(), **change))


def test_unknown_dataset_is_named():
    cfg = dataclasses.replace(Config(), data=dataclasses.replace(Config().data, name="mnist"))
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        validate(cfg, ("dsprites", "shapes3d"))


def test_bad_values_fail_before_any_training(tmp_path):
    cfg = tiny_config(tmp_path / "run")
    cfg.regulariser.kind = "gmg"
    cfg.train.batch_size = 1
    with pytest.raises(ValueError, match="at least 2"):
        run(cfg, dataset=Blobs())
    assert not (tmp_path / "run").exists()
