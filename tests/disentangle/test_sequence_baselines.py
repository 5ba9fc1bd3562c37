"""FFRL baselines (VAE, β-VAE, SlowVAE) and the latent-traversal E_k that scores them."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

from disentangle.models.sequence_baselines import (
    SequenceVAE,
    SlowVAE,
    traversal_equivariance_error,
)
from disentangle.train import validate
from disentangle.train.config import (
    Config,
    DataConfig,
    EvalConfig,
    ModelConfig,
    RegulariserConfig,
    TrainConfig,
)
from disentangle.train.runner import dataset_names, run


class _Deterministic(nn.Module):
    """Encoder with posterior mean 0 and a vanishing variance (z_0 = 0 exactly in float64)."""

    def forward(self, x):
        z = torch.zeros(x.shape[0], 3, dtype=torch.float64)
        return z, torch.full_like(z, -1e4)


def test_traversal_error_is_zero_on_the_axis_that_generates_the_frames():
    # decode(z) is an image whose pixels are (z_0, z_1, z_2) scaled; the true frames move only
    # z_0 through the traversal quantiles, so axis 0 has E = 0 and the others do not.
    scale = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)

    def decode(z):
        return (z * scale).reshape(-1, 1, 1, 3)

    steps = 4
    q = torch.special.ndtri(torch.linspace(0.05, 0.95, steps + 2, dtype=torch.float64))
    frames = torch.zeros(2, steps + 1, 1, 1, 3, dtype=torch.float64)
    frames[:, 1:, 0, 0, 0] = q[1 : steps + 1]  # x_t = decode(z_0 = q_t, z_1 = z_2 = 0)
    err = traversal_equivariance_error(_Deterministic(), decode, frames, steps)
    per_dim = err["per_dim"]
    assert per_dim[0] == pytest.approx(0, abs=1e-12)
    # axis i ≠ 0 leaves pixel 0 at 0 (error |q_t|) and puts scale_i·q_t on pixel i
    expected = (1 + scale[1:]) * q[1 : steps + 1].abs().sum()
    torch.testing.assert_close(per_dim[1:], expected)
    assert float(err["best_dim"]) == pytest.approx(0, abs=1e-12)
    assert float(err["sum"]) == pytest.approx(float(expected.sum()))
    assert float(err["per_pixel"]) == pytest.approx(float(expected.sum()) / (3 * steps * 3))


def _frames(batch=8, steps=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = (torch.rand(batch, 1, 1, 1, 16, generator=g) > 0.5).float()
    shifts = [torch.roll(x0, t, dims=-1) for t in range(steps + 1)]  # squares moving right
    return torch.cat(shifts, 1).reshape(batch, steps + 1, 1, 4, 4)


@pytest.mark.parametrize("model_cls", [SequenceVAE, SlowVAE])
def test_a_few_steps_lower_the_loss(model_cls, one_thread):
    torch.manual_seed(0)
    model = model_cls((1, 4, 4), latent_dim=3, steps=3)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = {"frames": _frames(), "k": torch.zeros(8)}

    def loss():
        torch.manual_seed(1)  # the same posterior noise (and SlowVAE pairs) each time
        return model(batch)

    first = {k: float(v) for k, v in loss().items()}
    for _ in range(60):
        opt.zero_grad()
        model(batch)["loss"].backward()
        opt.step()
    last = {k: float(v) for k, v in loss().items()}
    assert last["loss"] < 0.9 * first["loss"]
    assert last["rec"] < first["rec"]


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="rate"):
        SlowVAE((1, 4, 4), rate=0.0)
    with pytest.raises(ValueError, match="beta"):
        SequenceVAE((1, 4, 4), beta=-1.0)
    model = SequenceVAE((1, 4, 4), latent_dim=2, steps=3)
    with pytest.raises(ValueError, match="frames"):
        model({"frames": torch.zeros(2, 2, 1, 4, 4)})  # fewer frames than T′ + 1
    with pytest.raises(ValueError, match="sequence_fn"):
        model(torch.zeros(2, 1, 4, 4))
    with_fn = SequenceVAE((1, 4, 4), latent_dim=2, steps=3, sequence_fn=lambda x0, k, i: x0)
    with pytest.raises(ValueError, match=r"loader batch \(x0, indices\)"):
        with_fn(torch.zeros(2, 1, 4, 4))  # a bare image batch carries no item indices


def _config(kind, tmp_path):
    return Config(
        output_dir=tmp_path / kind,
        data=DataConfig(name="digits_seq"),
        model=ModelConfig(architecture="mlp", latent_dim=4, kind=kind, flow_steps=2),
        regulariser=RegulariserConfig(kind="none"),
        train=TrainConfig(steps=3, batch_size=8, progress=False),
        eval=EvalConfig(num_test=16),
    )


@pytest.mark.parametrize("kind", ["seq_vae", "slow_vae"])
def test_baseline_runs_are_scored_by_traversal(kind, tmp_path, one_thread):
    results = run(_config(kind, tmp_path))
    scores = results["scores"]
    # recompute the scale scores from the saved model: the evaluator seeds torch with the run's
    # seed and scores all 16 eval sequences in one batch, scale (k = 0) first
    from disentangle.train.runner import build_dataset, load_run

    cfg, model, _, _ = load_run(tmp_path / kind)
    frames = build_dataset(cfg, "eval").frames(
        np.sort(np.random.default_rng(0).permutation(len(build_dataset(cfg, "eval")))[:16]), 0
    )
    torch.manual_seed(0)
    err = model.equivariance_error(frames, 0)
    assert scores["E_scale"] == pytest.approx(float(err["sum"]), rel=1e-5)
    assert scores["E_scale_best_dim"] == pytest.approx(float(err["per_dim"].min()), rel=1e-5)
    assert scores["E_scale_best_dim"] < scores["E_scale"] / 4  # 4 axes, not all equally bad
    saved = json.loads((tmp_path / kind / "results.json").read_text())
    assert saved["config"]["model"]["kind"] == kind
    assert (tmp_path / kind / "images" / "traversals.png").exists()


def test_baseline_config_validation(tmp_path):
    names = dataset_names()
    ok = _config("slow_vae", tmp_path)
    validate(ok, names)
    bad_rate = dataclasses.replace(ok, model=dataclasses.replace(ok.model, slow_rate=0.0))
    with pytest.raises(ValueError, match=r"model\.slow_rate"):
        validate(bad_rate, names)
    with pytest.raises(ValueError, match=r"data\.name"):
        validate(dataclasses.replace(ok, data=DataConfig(name="dsprites")), names)


def test_sequence_run_folders_name_the_settings_that_differ(tmp_path):
    base = _config("seq_vae", tmp_path)
    plain = dataclasses.replace(base, output_dir=None)
    beta4 = dataclasses.replace(plain, model=dataclasses.replace(plain.model, beta=4.0))
    assert plain.run_dir().name == "digits_seq-seq_vae-seed0"
    assert beta4.run_dir().name == "digits_seq-seq_vae-beta4-seed0"
    ffrl = dataclasses.replace(plain, model=dataclasses.replace(plain.model, kind="ffrl"))
    no_hj = dataclasses.replace(ffrl, model=dataclasses.replace(ffrl.model, hj_weight=0.0))
    assert ffrl.run_dir() != no_hj.run_dir() and no_hj.run_dir().name.endswith("hj0-seed0")
    one_step = dataclasses.replace(base, model=dataclasses.replace(base.model, flow_steps=1))
    with pytest.raises(ValueError, match=r"model\.flow_steps"):
        validate(one_step, dataset_names())
