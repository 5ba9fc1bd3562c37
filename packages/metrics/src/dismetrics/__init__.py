"""dismetrics: disentanglement metrics on plain arrays and over a ground-truth data protocol.

Conventions (everywhere in this package):

* codes are sample-major ``(N, D)`` floats, factors ``(N, K)`` non-negative integer classes;
  torch tensors are accepted and converted (torch is never imported here);
* every array metric standardises the codes per column (mean 0, standard deviation 1, test
  codes with the training statistics; near-constant columns become constant) before fitting or
  discretising, so scores do not depend on the codes' scale or offset (BetaVAE and FactorVAE
  keep dlib's code units: FactorVAE's prune threshold is absolute);
* entropies and mutual information are plug-in estimates in nats; codes are discretised with a
  20-bin equal-width histogram per dimension on the scored sample;
* every random draw comes from an explicit seed or ``numpy.random.Generator``, and every
  scikit-learn estimator is seeded;
* defaults are disentanglement_lib's study configs (``presets.PRESETS["default"]``); result keys
  are disentanglement_lib's names (``discrete_mig``, ``disentanglement``, ``SAP_score``, ...).

Three lines::

    import dismetrics
    result = dismetrics.score(codes, factors, metrics=["mig", "dci"])
    print(result.table())
"""

from .dci import DCIHFSResult, DCIResult, dci, dci_from_importance, dci_hfs
from .evaluate import (
    ALL_METRICS,
    ARRAY_METRICS,
    SAMPLING_METRICS,
    VARIANT_METRICS,
    EvaluationResult,
    evaluate,
    score,
)
from .information import discrete_entropy, histogram_discretize, mutual_info_matrix
from .irs import IRSResult, irs
from .mig import MIGResult, mig, mig_from_mutual_info, mig_hfs
from .modularity import ModularityExplicitnessResult, modularity_explicitness
from .presets import PRESETS, Preset
from .protocol import GroundTruthData
from .results import MetricResult
from .sampling import (
    BetaVAEResult,
    FactorVAEResult,
    beta_vae_score,
    factor_vae_score,
    sample_codes,
)
from .sap import SAPResult, sap
from .unsupervised import UnsupervisedResult, unsupervised
from .validation import SkippedFactorWarning

__version__ = "0.1.0"

__all__ = [
    "ALL_METRICS",
    "ARRAY_METRICS",
    "PRESETS",
    "SAMPLING_METRICS",
    "VARIANT_METRICS",
    "BetaVAEResult",
    "DCIHFSResult",
    "DCIResult",
    "EvaluationResult",
    "FactorVAEResult",
    "GroundTruthData",
    "IRSResult",
    "MIGResult",
    "MetricResult",
    "ModularityExplicitnessResult",
    "Preset",
    "SAPResult",
    "SkippedFactorWarning",
    "UnsupervisedResult",
    "beta_vae_score",
    "dci",
    "dci_from_importance",
    "dci_hfs",
    "discrete_entropy",
    "evaluate",
    "factor_vae_score",
    "histogram_discretize",
    "irs",
    "mig",
    "mig_from_mutual_info",
    "mig_hfs",
    "modularity_explicitness",
    "mutual_info_matrix",
    "sample_codes",
    "sap",
    "score",
    "unsupervised",
]
