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

from .estimators import Estimator
from .information import NUM_BINS
from .irs import DIFF_QUANTILE


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
