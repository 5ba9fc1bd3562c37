"""All metric defaults in one place, as named presets.

``default`` equals disentanglement_lib's study configs (``config/unsupervised_study_v1/
metric_configs/*.gin``; ``../papers/metrics.md`` §1.5). ``fast`` changes only the DCI estimator
(histogram gradient boosting, :mod:`dismetrics.estimators`): every metric that fits no
estimator gives identical numbers under both presets, and DCI-disentanglement moves by at most
about 0.02 (measured in ``docs/benchmarks/metrics.md``). Both fit per-factor models in parallel
threads (``n_jobs``), which changes no number.

Make a variant with ``dataclasses.replace(PRESETS["fast"], num_train=2_000)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .estimators import ESTIMATORS, Estimator
from .information import NUM_BINS
from .irs import DIFF_QUANTILE
from .validation import check_int, check_n_jobs, check_num_bins


@dataclasses.dataclass(frozen=True)
class Preset:
    """Resolved settings of every metric (saved with each evaluation result)."""

    name: str = "default"
    num_train: int = 10_000  # mig, dci, sap, modularity_explicitness, irs, unsupervised
    num_test: int = 5_000  # dci, sap, modularity_explicitness
    batch_size: int = 16  # observations per data.sample / represent call for the shared sample
    num_bins: int = NUM_BINS
    dci_estimator: Estimator = "gbt"
    sap_continuous_factors: bool = False
    irs_diff_quantile: float = DIFF_QUANTILE
    beta_vae_batch_size: int = 64
    beta_vae_num_train: int = 10_000
    beta_vae_num_eval: int = 5_000
    factor_vae_batch_size: int = 64
    factor_vae_num_train: int = 10_000
    factor_vae_num_eval: int = 5_000
    factor_vae_num_variance_estimate: int = 10_000
    factor_vae_prune_threshold: float = 0.05
    n_jobs: int | None = -1  # threads for per-factor fits (-1: all cores); None or 1: sequential

    def __post_init__(self) -> None:
        """Check every setting on construction (``dataclasses.replace`` included), so that a bad
        preset fails before any metric runs, with an error naming the field."""
        for name in (
            "num_train",
            "num_test",
            "batch_size",
            "beta_vae_batch_size",
            "beta_vae_num_train",
            "beta_vae_num_eval",
            "factor_vae_batch_size",
            "factor_vae_num_train",
            "factor_vae_num_eval",
            "factor_vae_num_variance_estimate",
        ):
            check_int(getattr(self, name), name, 1)
        check_num_bins(self.num_bins)
        check_n_jobs(self.n_jobs)
        if self.dci_estimator not in ESTIMATORS:
            raise ValueError(
                f"dci_estimator must be one of {ESTIMATORS}, got {self.dci_estimator!r}"
            )
        if not 0.0 <= self.irs_diff_quantile <= 1.0:
            raise ValueError(f"irs_diff_quantile must lie in [0, 1], got {self.irs_diff_quantile}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict."""
        return dataclasses.asdict(self)


PRESETS: dict[str, Preset] = {
    "default": Preset(),
    "fast": Preset(name="fast", dci_estimator="hist_gbt"),
}


def resolve_preset(preset: str | Preset) -> Preset:
    """A :class:`Preset` from its name or itself."""
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)} or a Preset, got {preset!r}")
    return PRESETS[preset]
