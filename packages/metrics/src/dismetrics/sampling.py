"""Sampling over a ``GroundTruthData``: the encoding helper, BetaVAE and FactorVAE scores.

A *representation function* ``represent`` maps an observation batch ``(n, *observation_shape)``
(float numpy) to codes ``(n, D)`` (numpy, or a torch tensor, converted here). Every random draw
comes from the ``numpy.random.Generator`` passed in; the order of draws follows
disentanglement_lib (``../papers/metrics.md`` §1.2, §2.1, §2.2). Encoding is batched for speed:
observations of several training points are rendered in draw order, then encoded together,
which changes no number.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from .protocol import GroundTruthData
from .results import MetricResult
from .validation import (
    SeedLike,
    as_generator,
    as_int_seed,
    check_codes,
    check_factors,
    check_int,
)

Represent = Callable[[np.ndarray], Any]

#: Observations handed to ``represent`` per call by the sampling metrics (a memory bound only).
ENCODE_CHUNK = 1024


def encode(represent: Represent, observations: np.ndarray) -> np.ndarray:
    """Apply ``represent`` to (n, ...) observations; check and return (n, D) float64 codes."""
    codes = check_codes(represent(observations), "represent(observations)")
    if codes.shape[0] != len(observations):
        raise ValueError(
            f"represent returned {codes.shape[0]} codes for {len(observations)} observations"
        )
    return codes


def sample_codes(
    data: GroundTruthData,
    represent: Represent,
    num: int,
    rng: SeedLike,
    batch_size: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``num`` samples in chunks of ``batch_size`` and encode them.

    Each chunk calls ``data.sample(n, rng)`` then ``represent`` (dlib's
    ``generate_batch_factor_code``). Returns sample-major codes (num, D) and factors (num, K)
    as encoded (not standardised: the metrics do that). ``num`` and ``batch_size`` are positive
    integers.
    """
    num = check_int(num, "num", 1)
    batch_size = check_int(batch_size, "batch_size", 1)
    rng = as_generator(rng)
    codes, factors = [], []
    for start in range(0, num, batch_size):
        f, x = data.sample(min(batch_size, num - start), rng)
        factors.append(check_factors(f, "data.sample(...) factors"))
        codes.append(encode(represent, np.asarray(x)))
    return np.concatenate(codes), np.concatenate(factors)


def _check_sampler_args(**kwargs: int) -> None:
    for name, value in kwargs.items():
        check_int(value, name, 1)


@dataclasses.dataclass(frozen=True)
class BetaVAEResult(MetricResult):
    """BetaVAE score: accuracy of a linear classifier predicting the fixed factor."""

    SCALARS: ClassVar[tuple[str, ...]] = ("train_accuracy", "eval_accuracy")

    train_accuracy: float
    eval_accuracy: float


def _beta_vae_points(
    data: GroundTruthData,
    represent: Represent,
    num_points: int,
    batch_size: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """``num_points`` (feature (D,), label) pairs of the BetaVAE score (dlib draw order)."""
    n_factors = len(data.factor_sizes)
    per_call = max(1, ENCODE_CHUNK // (2 * batch_size))
    features, labels = [], []
    for start in range(0, num_points, per_call):
        obs = []
        for _ in range(min(per_call, num_points - start)):
            k = int(rng.integers(n_factors))
            f1 = np.array(data.sample_factors(batch_size, rng))
            f2 = np.array(data.sample_factors(batch_size, rng))
            f2[:, k] = f1[:, k]
            obs.append(np.asarray(data.sample_observations_from_factors(f1, rng)))
            obs.append(np.asarray(data.sample_observations_from_factors(f2, rng)))
            labels.append(k)
        z = encode(represent, np.concatenate(obs)).reshape(len(obs) // 2, 2, batch_size, -1)
        features.append(np.abs(z[:, 0] - z[:, 1]).mean(axis=1))
    return np.concatenate(features), np.asarray(labels)


def beta_vae_score(
    data: GroundTruthData,
    represent: Represent,
    *,
    seed: SeedLike = 0,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
) -> BetaVAEResult:
    """BetaVAE score (Higgins et al., ICLR 2017, §3 / Appendix A.4) as in dlib's ``beta_vae``.

    One point: pick a factor k, draw ``batch_size`` pairs of factor vectors that share factor
    k's value, encode both; the feature is the mean absolute code difference (D,), the label k.
    A seeded ``LogisticRegression`` (sklearn defaults, no scaling) is fitted on ``num_train``
    points; ``eval_accuracy`` is its accuracy on ``num_eval`` fresh points. Defaults: dlib's
    ``beta_vae_sklearn`` study config (64, 10 000, 5 000).
    """
    _check_sampler_args(batch_size=batch_size, num_train=num_train, num_eval=num_eval)
    rng = as_generator(seed)
    x_tr, y_tr = _beta_vae_points(data, represent, num_train, batch_size, rng)
    x_ev, y_ev = _beta_vae_points(data, represent, num_eval, batch_size, rng)
    if len(np.unique(y_tr)) < 2:
        raise ValueError(
            f"beta_vae_score drew a single factor in {num_train} training points; "
            "increase num_train"
        )
    with warnings.catch_warnings():
        # dlib uses LogisticRegression() with sklearn defaults; they are part of the metric.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(random_state=as_int_seed(rng)).fit(x_tr, y_tr)
    return BetaVAEResult(
        train_accuracy=float(np.mean(model.predict(x_tr) == y_tr)),
        eval_accuracy=float(np.mean(model.predict(x_ev) == y_ev)),
    )


@dataclasses.dataclass(frozen=True)
class FactorVAEResult(MetricResult):
    """FactorVAE score: accuracy of the majority-vote classifier, and the active dims.

    ``num_active_dims`` is the number of codes kept by pruning (dlib reports D there, a quirk).
    """

    SCALARS: ClassVar[tuple[str, ...]] = ("train_accuracy", "eval_accuracy")

    train_accuracy: float
    eval_accuracy: float
    num_active_dims: int
    global_variances: np.ndarray
    votes: np.ndarray


def _factor_vae_votes(
    data: GroundTruthData,
    represent: Represent,
    num_votes: int,
    batch_size: int,
    global_var: np.ndarray,
    active: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """(K, D) vote counts: votes[k, d] = how often code d had the least normalised variance."""
    n_factors = len(data.factor_sizes)
    votes = np.zeros((n_factors, len(global_var)), dtype=np.int64)
    active_idx = np.flatnonzero(active)
    per_call = max(1, ENCODE_CHUNK // batch_size)
    for start in range(0, num_votes, per_call):
        obs, ks = [], []
        for _ in range(min(per_call, num_votes - start)):
            k = int(rng.integers(n_factors))
            f = np.array(data.sample_factors(batch_size, rng))
            f[:, k] = f[0, k]
            obs.append(np.asarray(data.sample_observations_from_factors(f, rng)))
            ks.append(k)
        z = encode(represent, np.concatenate(obs)).reshape(len(ks), batch_size, -1)
        local = z[:, :, active].var(axis=1, ddof=1)
        best = active_idx[np.argmin(local / global_var[active], axis=1)]
        np.add.at(votes, (np.asarray(ks), best), 1)
    return votes


def factor_vae_score(
    data: GroundTruthData,
    represent: Represent,
    *,
    seed: SeedLike = 0,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    num_variance_estimate: int = 10_000,
    prune_threshold: float = 0.05,
) -> FactorVAEResult:
    """FactorVAE score (Kim & Mnih, ICML 2018, §4) as in dlib's ``factor_vae``.

    1. Global variance of each code over ``num_variance_estimate`` observations (ddof 1); codes
       with std ≥ ``prune_threshold`` (and std > 0) are active.
    2. One vote: pick factor k, draw ``batch_size`` factor vectors sharing factor k's value,
       encode, and vote for (k, the active code with the least variance divided by its global
       variance).
    3. Majority-vote classifier from ``num_train`` votes; accuracies on those and on
       ``num_eval`` fresh votes. No active code gives 0 accuracies.

    Defaults: dlib's ``factor_vae_score`` study config (64, 10 000, 5 000, 10 000, 0.05).
    Deviations from dlib, on purpose: a vote names the original code index (dlib indexes the
    active subset; accuracy is the same) and ``num_active_dims`` counts active codes.
    """
    _check_sampler_args(num_train=num_train, num_eval=num_eval)
    check_int(batch_size, "batch_size", 2)
    check_int(num_variance_estimate, "num_variance_estimate", 2)
    rng = as_generator(seed)
    codes, _ = sample_codes(data, represent, num_variance_estimate, rng, ENCODE_CHUNK)
    global_var = codes.var(axis=0, ddof=1)
    std = np.sqrt(global_var)
    active = (std >= prune_threshold) & (std > 0)
    n_factors = len(data.factor_sizes)
    if not active.any():
        empty = np.zeros((n_factors, codes.shape[1]), dtype=np.int64)
        return FactorVAEResult(0.0, 0.0, 0, global_var, empty)
    train = _factor_vae_votes(data, represent, num_train, batch_size, global_var, active, rng)
    evals = _factor_vae_votes(data, represent, num_eval, batch_size, global_var, active, rng)
    classifier = np.argmax(train, axis=0)
    cols = np.arange(train.shape[1])
    return FactorVAEResult(
        train_accuracy=float(train[classifier, cols].sum() / train.sum()),
        eval_accuracy=float(evals[classifier, cols].sum() / evals.sum()),
        num_active_dims=int(active.sum()),
        global_variances=global_var,
        votes=train,
    )
