"""Iterative alignment flows (Zhou, Gong, Ravikumar, Inouye, AISTATS 2022) and baselines.

Align k >= 2 labelled distributions in a shared space with an invertible, closed-form flow::

    from disentangle.align import fit_alignment

    flow = fit_alignment("inb", X, y, n_layers=30, k_directions=2, seed=0)
    Z = flow(X, y)                          # shared latent space
    X01 = flow.translate(X[y == 0], 0, 1)   # class 0 → class 1
    flow.save("run/flow"); flow = IterativeAlignmentFlow.load("run/flow")

Built on :mod:`otcore.sliced` (max-K-sliced directions on the Stiefel manifold) and
:mod:`otcore.univariate` (1-D OT).
"""

from disentangle.align.flow import METHODS, IterativeAlignmentFlow, fit_alignment
from disentangle.align.layers import (
    AlignmentLayer,
    CdfLayer,
    GaussianBarycenterLayer,
    GaussianizeLayer,
    InverseCdfLayer,
    ProjectedNBLayer,
    gaussian_barycenter,
)
from disentangle.align.marginals import MarginalMaps

__all__ = [
    "METHODS",
    "AlignmentLayer",
    "CdfLayer",
    "GaussianBarycenterLayer",
    "GaussianizeLayer",
    "InverseCdfLayer",
    "IterativeAlignmentFlow",
    "MarginalMaps",
    "ProjectedNBLayer",
    "fit_alignment",
    "gaussian_barycenter",
]
