"""Sampling metrics over the protocol, evaluate(), determinism, presets."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

import dismetrics
from dismetrics import PRESETS, beta_vae_score, evaluate, factor_vae_score, sample_codes

from .conftest import ToyData

TINY = dataclasses.replace(
    PRESETS["fast"],
    num_train=600,
    num_test=300,
    batch_size=64,
    beta_vae_num_train=200,
    beta_vae_num_eval=100,
    beta_vae_batch_size=16,
    factor_vae_num_train=200,
    factor_vae_num_eval=100,
    factor_vae_num_variance_estimate=500,
    factor_vae_batch_size=16,
    n_jobs=1,
)


def identity(x):
    return x


def test_sample_codes_shapes_and_chunking(toy_data):
    z, f = sample_codes(toy_data, identity, 50, np.random.default_rng(0), batch_size=16)
    assert z.shape == (50, 3) and f.shape == (50, 3)
    np.testing.assert_array_equal(z, f)
    _, f2 = sample_codes(toy_data, identity, 50, np.random.default_rng(0), batch_size=16)
    np.testing.assert_array_equal(f, f2)  # same seed, same draws
    with pytest.raises(ValueError, match="num must be an integer >= 1, got 0"):
        sample_codes(toy_data, identity, 0, np.random.default_rng(0))


def test_beta_vae_identity_scores_high_constant_low(toy_data):
    res = beta_vae_score(toy_data, identity, seed=0, batch_size=16, num_train=200, num_eval=100)
    assert res.train_accuracy > 0.9 and res.eval_accuracy > 0.9
    const = beta_vae_score(
        toy_data, lambda x: np.zeros((len(x), 3)), batch_size=8, num_train=150, num_eval=150
    )
    assert const.eval_accuracy < 0.6  # chance is 1/3


def test_factor_vae_identity_permuted_and_constant(toy_data):
    kw = dict(batch_size=16, num_train=200, num_eval=100, num_variance_estimate=500)
    good = factor_vae_score(toy_data, identity, seed=0, **kw)
    assert good.eval_accuracy > 0.9 and good.num_active_dims == 3
    perm = factor_vae_score(toy_data, lambda x: 5.0 * x[:, [2, 0, 1]], seed=0, **kw)
    assert perm.eval_accuracy == good.eval_accuracy  # same draws, permuted votes
    const = factor_vae_score(toy_data, lambda x: np.zeros((len(x), 3)), **kw)
    assert const.eval_accuracy == 0.0 and const.num_active_dims == 0


def test_sampling_metrics_deterministic_and_seed_sensitive(toy_data):
    data = ToyData(noise=1.5)
    kw = dict(batch_size=8, num_train=600, num_eval=600, num_variance_estimate=300)
    a = factor_vae_score(data, identity, seed=1, **kw)
    b = factor_vae_score(data, identity, seed=1, **kw)
    c = factor_vae_score(data, identity, seed=2, **kw)
    assert a.to_dict() == b.to_dict()
    assert a.eval_accuracy != c.eval_accuracy or a.train_accuracy != c.train_accuracy
    assert abs(a.eval_accuracy - c.eval_accuracy) < 0.1


def test_evaluate_all_metrics_on_identity(toy_data):
    res = evaluate(toy_data, identity, seed=0, preset=TINY)
    assert list(res.results) == list(dismetrics.ALL_METRICS)
    s = res.scalars()
    assert s["mig.discrete_mig"] > 0.9
    assert s["dci.disentanglement"] > 0.9
    assert s["modularity_explicitness.modularity_score"] > 0.9
    assert s["beta_vae.eval_accuracy"] > 0.9 and s["factor_vae.eval_accuracy"] > 0.9
    d = res.to_dict()
    assert d["preset"]["name"] == "fast" and d["factor_names"] == ["a", "b", "c"]
    assert d["metrics"]["sap"]["SAP_score"] == s["sap.SAP_score"]
    assert "encode" in d["timings_s"]
    assert "IRS" in res.table()


def test_evaluate_is_deterministic_and_metric_streams_independent():
    data = ToyData(noise=0.8)
    full = evaluate(data, identity, ["mig", "irs", "factor_vae"], seed=5, preset=TINY)
    again = evaluate(data, identity, ["mig", "irs", "factor_vae"], seed=5, preset=TINY)
    alone = evaluate(data, identity, ["mig"], seed=5, preset=TINY)
    other = evaluate(data, identity, ["mig"], seed=6, preset=TINY)
    assert full.scalars() == again.scalars()
    assert alone["mig"].discrete_mig == full["mig"].discrete_mig
    assert other["mig"].discrete_mig != full["mig"].discrete_mig
    assert abs(other["mig"].discrete_mig - full["mig"].discrete_mig) < 0.1


def test_presets_agree_on_estimator_free_metrics():
    data = ToyData(noise=0.5)
    names = ["mig", "dci", "modularity_explicitness", "irs", "unsupervised"]
    tiny_default = dataclasses.replace(TINY, name="default", dci_estimator="gbt")
    fast = evaluate(data, identity, names, seed=0, preset=TINY).scalars()
    default = evaluate(data, identity, names, seed=0, preset=tiny_default).scalars()
    for key, value in fast.items():
        if not key.startswith("dci."):
            assert default[key] == value, key


def test_evaluate_accepts_torch_codes(toy_data):
    torch = pytest.importorskip("torch")
    res = evaluate(
        toy_data, lambda x: torch.as_tensor(x, dtype=torch.float32), ["mig"], preset=TINY
    )
    assert res["mig"].discrete_mig > 0.9


def test_evaluate_rejects_bad_arguments(toy_data):
    with pytest.raises(ValueError, match="metrics: unknown"):
        evaluate(toy_data, identity, ["mig", "nope"], preset=TINY)
    with pytest.raises(ValueError, match="preset must be one of"):
        evaluate(toy_data, identity, ["mig"], preset="slow")
    with pytest.raises(TypeError, match="GroundTruthData"):
        evaluate(object(), identity, ["mig"], preset=TINY)
    with pytest.raises(ValueError, match=r"represent returned 1 codes"):
        evaluate(toy_data, lambda x: x[:1], ["mig"], preset=TINY)
    with pytest.raises(ValueError, match="NaN or inf"):
        evaluate(toy_data, lambda x: x * np.nan, ["mig"], preset=TINY)


def test_torch_is_never_imported_at_module_level():
    code = "import sys, dismetrics, dismetrics.__main__; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
