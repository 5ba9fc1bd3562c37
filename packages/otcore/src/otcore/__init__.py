"""otcore: entropic optimal transport in PyTorch, log-domain throughout.

Conventions (shared by every function of the package):

* Cost: C_ij = c(x_i, y_j) with the squared-Euclidean cost ‖x − y‖² (no ½; POT and OTT-JAX
  convention, GeomLoss halves it).
* Potentials: the plan is P = a⊗b·exp((f ⊕ g − C)/ε); warm starts take the same (f, g).
* ``value`` = ⟨P, C⟩ + ε KL(P ‖ a⊗b) (the dual objective); ``primal_cost`` = ⟨P, C⟩;
  ``ent_reg_cost`` = ⟨P, C⟩ − ε H(P) (used by the Monge gap).
* ``tol`` is always an L1 marginal violation relative to the mass,
  (‖P1 − a‖₁ + ‖Pᵀ1 − b‖₁)/Σb; ``converged`` is reported only when that was measured above
  the rounding of the potentials (the plan recomputed in float64 is then within 2·tol).
* Unbalanced marginals use τ = ρ/(ρ + ε) (OTT-JAX convention), τ = 1 being a hard constraint.
* Gromov-Wasserstein loss L(a, b) = (a − b)² with no ½; distortion and the Gromov-Monge gap use
  the same convention, so our values are twice those of the GMG paper's definitions.
* float32 and float64 both work; half-precision inputs are computed in float32.
* Shapes: single problems (n, d) / (n, m); batched problems (B, n, d) / (B, n, m) (dense).
"""

from otcore.costs import Cosine, Cost, Dot, Euclidean, SqEuclidean, get_cost
from otcore.divergence import sinkhorn_divergence
from otcore.gaps import (
    DEFAULT_EPSILON0,
    STARTS,
    GMGParts,
    distortion,
    gromov_monge_gap,
    monge_gap,
    pairwise_cost,
)
from otcore.geometry import Geometry, PointCloud, keops_available
from otcore.gromov import GWOutput, gromov_wasserstein
from otcore.lowrank import LowRankGeometry
from otcore.sinkhorn import ConvergenceWarning, SinkhornOutput, sinkhorn
from otcore.sliced import (
    SlicedOutput,
    StiefelOutput,
    barycentric_sliced_objective,
    max_k_sliced_barycentric,
    max_sliced_wasserstein,
    random_stiefel,
    sliced_wasserstein,
    stiefel_ascent,
)
from otcore.univariate import (
    monotone_map,
    piecewise_linear,
    quantile_barycenter,
    quantile_function,
    wasserstein_1d,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_EPSILON0",
    "STARTS",
    "ConvergenceWarning",
    "Cosine",
    "Cost",
    "Dot",
    "Euclidean",
    "GMGParts",
    "GWOutput",
    "Geometry",
    "LowRankGeometry",
    "PointCloud",
    "SinkhornOutput",
    "SlicedOutput",
    "SqEuclidean",
    "StiefelOutput",
    "barycentric_sliced_objective",
    "distortion",
    "get_cost",
    "gromov_monge_gap",
    "gromov_wasserstein",
    "keops_available",
    "max_k_sliced_barycentric",
    "max_sliced_wasserstein",
    "monge_gap",
    "monotone_map",
    "pairwise_cost",
    "piecewise_linear",
    "quantile_barycenter",
    "quantile_function",
    "random_stiefel",
    "sinkhorn",
    "sinkhorn_divergence",
    "sliced_wasserstein",
    "stiefel_ascent",
    "wasserstein_1d",
]
