"""Run several metrics at once: ``score`` on plain arrays, ``evaluate`` on a model and a dataset.

Both compute shared intermediates once: the codes are encoded once (``evaluate``), the train
codes are discretised once and their (D, K) mutual-information matrix feeds both MIG and
modularity. Seeds: one ``seed`` spawns independent streams (``numpy.random.SeedSequence``) for
sampling, each sampling metric and the estimators, so the numbers of one metric do not depend
on which other metrics were requested.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .dci import dci, dci_hfs
from .information import histogram_discretize, mutual_info_matrix
from .irs import irs
from .mig import mig, mig_hfs
from .modularity import modularity_explicitness
from .presets import Preset, resolve_preset
from .protocol import GroundTruthData
from .results import MetricResult, _plain
from .sampling import Represent, beta_vae_score, factor_vae_score, sample_codes
from .sap import sap
from .unsupervised import unsupervised
from .validation import (
    SeedLike,
    as_int_seed,
    check_codes,
    check_factors,
    check_seed,
    standardize,
    validate_train_test,
)

log = logging.getLogger("dismetrics")

#: Metrics computed from (codes, factors) arrays, in reporting order.
ARRAY_METRICS: tuple[str, ...] = (
    "mig",
    "dci",
    "sap",
    "modularity_explicitness",
    "irs",
    "unsupervised",
)
#: Metrics that sample their own observations through the GroundTruthData protocol.
SAMPLING_METRICS: tuple[str, ...] = ("beta_vae", "factor_vae")
#: Named variants of other codebases, computed on a whole encoded dataset (``score`` only).
VARIANT_METRICS: tuple[str, ...] = ("mig_hfs", "dci_hfs")
ALL_METRICS: tuple[str, ...] = SAMPLING_METRICS + ARRAY_METRICS
_NEEDS_TEST = {"dci", "sap", "modularity_explicitness"}
_USES_MI = {"mig", "modularity_explicitness"}


@dataclasses.dataclass
class EvaluationResult:
    """Results of several metrics with the settings that produced them.

    ``results[name]`` is each metric's result dataclass; ``timings`` holds seconds per metric
    (and ``"encode"`` for the shared sample).
    """

    results: dict[str, MetricResult]
    timings: dict[str, float]
    preset: Preset
    seed: Any
    factor_names: tuple[str, ...] | None = None

    def __getitem__(self, name: str) -> MetricResult:
        return self.results[name]

    def scalars(self) -> dict[str, float]:
        """Headline scores flattened as ``"<metric>.<dlib key>"``."""
        return {
            f"{name}.{key}": value
            for name, res in self.results.items()
            for key, value in res.scalars().items()
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: headline ``scores``, full per-metric ``metrics``, settings, timings."""
        return {
            "scores": _plain(self.scalars()),
            "metrics": {name: res.to_dict() for name, res in self.results.items()},
            "preset": self.preset.to_dict(),
            "seed": _plain(self.seed)
            if isinstance(self.seed, int | np.integer)
            else str(self.seed),
            "factor_names": list(self.factor_names) if self.factor_names else None,
            "timings_s": _plain(self.timings),
        }

    def table(self) -> str:
        """A plain-text table of the headline scores."""
        rows = [
            (name, key, value)
            for name, res in self.results.items()
            for key, value in res.scalars().items()
        ]
        w1 = max([len("metric")] + [len(r[0]) for r in rows])
        w2 = max([len("score")] + [len(r[1]) for r in rows])
        lines = [f"{'metric':<{w1}}  {'score':<{w2}}  value", f"{'-' * w1}  {'-' * w2}  ------"]
        lines += [f"{n:<{w1}}  {k:<{w2}}  {v:.4f}" for n, k, v in rows]
        return "\n".join(lines)


def _check_metrics(
    metrics: Sequence[str] | None, allowed: tuple[str, ...], where: str
) -> list[str]:
    if metrics is None:
        return [m for m in allowed if m not in VARIANT_METRICS]
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    if not isinstance(metrics, Sequence) or not all(isinstance(m, str) for m in metrics):
        raise TypeError(
            f"metrics must be a comma-separated string or a sequence of names, got {metrics!r}"
        )
    unknown = [m for m in metrics if m not in allowed]
    if unknown:
        raise ValueError(f"metrics: unknown for {where}: {unknown}; choose from {list(allowed)}")
    if not metrics:
        raise ValueError("metrics is empty; name at least one metric")
    return list(dict.fromkeys(metrics))


def _streams(seed: SeedLike, n: int) -> list[np.random.SeedSequence]:
    """``n`` independent seed sequences derived from ``seed`` (int, SeedSequence or Generator)."""
    if isinstance(seed, np.random.Generator):
        seed = int(seed.integers(2**63 - 1))
    if isinstance(seed, np.random.SeedSequence):
        return np.random.SeedSequence(seed.generate_state(4)).spawn(n)
    return np.random.SeedSequence(check_seed(seed)).spawn(n)


def _timed(timings: dict[str, float], name: str, fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    timings[name] = time.perf_counter() - start
    log.info("dismetrics: %s done in %.2f s", name, timings[name])
    return out


def score(
    codes: Any,
    factors: Any,
    metrics: Sequence[str] | str | None = None,
    *,
    codes_test: Any = None,
    factors_test: Any = None,
    seed: SeedLike = 0,
    preset: str | Preset = "default",
    train_fraction: float = 2 / 3,
) -> EvaluationResult:
    """Score precomputed codes (N, D) against integer factors (N, K) with several metrics.

    ``metrics``: names from :data:`ARRAY_METRICS` and :data:`VARIANT_METRICS` (default: all
    array metrics). Metrics with a test sample (dci, sap, modularity_explicitness) use
    ``codes_test``/``factors_test`` when given; otherwise (codes, factors) are split at random
    (seeded) into ``train_fraction`` train and the rest test, and the other metrics use the
    train part. The variants ``mig_hfs`` and ``dci_hfs`` always use the whole (codes, factors)
    (``dci_hfs`` draws ``preset.num_train``/``num_test`` of them).

    Every metric standardises the codes it is given column by column (train statistics for
    the test sample; :func:`~dismetrics.validation.standardize`), so the scores are the same
    for codes ``c`` and ``a * c + b`` (scalar ``a ≠ 0``, vector ``b``), except
    ``gaussian_wasserstein_correlation``, which is in squared code units. All arguments are
    checked before any metric runs.
    """
    cfg = resolve_preset(preset)
    names = _check_metrics(metrics, ARRAY_METRICS + VARIANT_METRICS, "score")
    z = check_codes(codes, "codes")
    y = check_factors(factors, "factors", n=z.shape[0])
    split_seq, est_seq, hfs_seq = _streams(seed, 3)
    if (codes_test is None) != (factors_test is None):
        raise ValueError("give both codes_test and factors_test, or neither")
    if codes_test is not None:
        z_tr, y_tr, z_te, y_te = validate_train_test(z, y, codes_test, factors_test)
    elif _NEEDS_TEST & set(names):
        if not 0.0 < train_fraction < 1.0:
            raise ValueError(
                f"train_fraction must lie strictly between 0 and 1, got {train_fraction}"
            )
        n_train = int(np.ceil(train_fraction * len(z)))
        if n_train < 2 or n_train >= len(z):
            raise ValueError(
                f"codes has {len(z)} samples: too few to split into a train and a test sample"
            )
        perm = np.random.default_rng(split_seq).permutation(len(z))
        z_tr, y_tr, z_te, y_te = (
            z[perm[:n_train]],
            y[perm[:n_train]],
            z[perm[n_train:]],
            y[perm[n_train:]],
        )
    else:
        z_tr, y_tr, z_te, y_te = z, y, None, None
    return _score_samples(names, z, y, z_tr, y_tr, z_te, y_te, cfg, est_seq, hfs_seq, seed, {})


def _score_samples(
    names: list[str],
    z: np.ndarray,
    y: np.ndarray,
    z_tr: np.ndarray,
    y_tr: np.ndarray,
    z_te: np.ndarray | None,
    y_te: np.ndarray | None,
    cfg: Preset,
    est_seq: np.random.SeedSequence,
    hfs_seq: np.random.SeedSequence | None,
    seed: Any,
    timings: dict[str, float],
    factor_names: tuple[str, ...] | None = None,
) -> EvaluationResult:
    """Run the array metrics in ``names`` on validated samples, sharing the MI matrix.

    The MI matrix is that of the standardised train codes, as ``mig`` and
    ``modularity_explicitness`` compute it themselves.
    """
    est_seed = as_int_seed(est_seq)
    mi = None
    if _USES_MI & set(names):
        start = time.perf_counter()
        mi = mutual_info_matrix(histogram_discretize(standardize(z_tr), cfg.num_bins), y_tr)
        timings["mutual_info"] = time.perf_counter() - start
    results: dict[str, MetricResult] = {}
    jobs = {
        "mig": lambda: mig(z_tr, y_tr, num_bins=cfg.num_bins, mutual_info=mi),
        "dci": lambda: dci(
            z_tr, y_tr, z_te, y_te, estimator=cfg.dci_estimator, seed=est_seed, n_jobs=cfg.n_jobs
        ),
        "sap": lambda: sap(
            z_tr,
            y_tr,
            z_te,
            y_te,
            continuous_factors=cfg.sap_continuous_factors,
            seed=est_seed,
            n_jobs=cfg.n_jobs,
        ),
        "modularity_explicitness": lambda: modularity_explicitness(
            z_tr, y_tr, z_te, y_te, num_bins=cfg.num_bins, seed=est_seed, mutual_info=mi
        ),
        "irs": lambda: irs(z_tr, y_tr, diff_quantile=cfg.irs_diff_quantile, num_bins=cfg.num_bins),
        "unsupervised": lambda: unsupervised(z_tr, num_bins=cfg.num_bins),
        "mig_hfs": lambda: mig_hfs(z, y, num_bins=cfg.num_bins),
        "dci_hfs": lambda: dci_hfs(
            z,
            y,
            num_train=cfg.num_train,
            num_test=cfg.num_test,
            estimator=cfg.dci_estimator,
            seed=np.random.default_rng(hfs_seq),
            n_jobs=cfg.n_jobs,
        ),
    }
    for name in names:
        results[name] = _timed(timings, name, jobs[name])
    return EvaluationResult(results, timings, cfg, seed, factor_names)


def evaluate(
    data: GroundTruthData,
    represent: Represent,
    metrics: Sequence[str] | str | None = None,
    *,
    seed: SeedLike = 0,
    preset: str | Preset = "default",
) -> EvaluationResult:
    """Score a representation function on a ground-truth dataset with several metrics.

    ``represent`` maps an (n, *observation_shape) float batch to (n, D) codes (numpy or torch).
    ``metrics`` names entries of :data:`ALL_METRICS` (default: all of them). The array metrics
    share one encoded sample: ``preset.num_train`` training points (and ``preset.num_test``
    test points when dci, sap or modularity_explicitness is asked for), drawn in chunks of
    ``preset.batch_size``; BetaVAE and FactorVAE draw their own structured batches. Returns an
    :class:`EvaluationResult` (``.to_dict()``, ``.table()``, per-metric results).
    """
    if not isinstance(data, GroundTruthData):
        raise TypeError(
            "data must implement dismetrics.GroundTruthData (factor_names, factor_sizes, "
            "observation_shape, sample_factors, sample_observations_from_factors, sample)"
        )
    if not callable(represent):
        raise TypeError("represent must be callable: observations (n, ...) -> codes (n, D)")
    cfg = resolve_preset(preset)
    names = _check_metrics(metrics, ALL_METRICS, "evaluate (mig_hfs/dci_hfs: use score)")
    sample_seq, beta_seq, factor_seq, est_seq = _streams(seed, 4)
    timings: dict[str, float] = {}
    results: dict[str, MetricResult] = {}
    if "beta_vae" in names:
        results["beta_vae"] = _timed(
            timings,
            "beta_vae",
            beta_vae_score,
            data,
            represent,
            seed=np.random.default_rng(beta_seq),
            batch_size=cfg.beta_vae_batch_size,
            num_train=cfg.beta_vae_num_train,
            num_eval=cfg.beta_vae_num_eval,
        )
    if "factor_vae" in names:
        results["factor_vae"] = _timed(
            timings,
            "factor_vae",
            factor_vae_score,
            data,
            represent,
            seed=np.random.default_rng(factor_seq),
            batch_size=cfg.factor_vae_batch_size,
            num_train=cfg.factor_vae_num_train,
            num_eval=cfg.factor_vae_num_eval,
            num_variance_estimate=cfg.factor_vae_num_variance_estimate,
            prune_threshold=cfg.factor_vae_prune_threshold,
        )
    array_names = [m for m in names if m in ARRAY_METRICS]
    if array_names:
        start = time.perf_counter()
        rng = np.random.default_rng(sample_seq)
        z_tr, y_tr = sample_codes(data, represent, cfg.num_train, rng, cfg.batch_size)
        z_te = y_te = None
        if _NEEDS_TEST & set(array_names):
            z_te, y_te = sample_codes(data, represent, cfg.num_test, rng, cfg.batch_size)
        timings["encode"] = time.perf_counter() - start
        arrays = _score_samples(
            array_names, z_tr, y_tr, z_tr, y_tr, z_te, y_te, cfg, est_seq, None, seed, timings
        )
        results.update(arrays.results)
    ordered = {m: results[m] for m in ALL_METRICS if m in results}
    return EvaluationResult(ordered, timings, cfg, seed, tuple(data.factor_names))
