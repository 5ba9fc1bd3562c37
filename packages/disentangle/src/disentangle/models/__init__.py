"""VAE-family models and geometric regularisers of the GMG paper (Uscidda et al., ICLR 2025).

>>> import torch
>>> from disentangle.models import VAE, GeometricRegulariser
>>> model = VAE((1, 32, 32), latent_dim=4, architecture="mlp", base="beta_vae", beta=4.0)
>>> terms = model(torch.rand(8, 1, 32, 32))
>>> sorted(terms)
['kl', 'loss', 'rec']
"""

from disentangle.models.objectives import (
    gaussian_log_density,
    hausdorff_factorised_support,
    kl_normal,
    log_importance_weights,
    reconstruction_loss,
    tc_decomposition,
)
from disentangle.models.regularisers import (
    COSTS,
    KINDS,
    SIDES,
    GeometricRegulariser,
    jacobian_isometry,
)
from disentangle.models.vae import BASES, VAE

__all__ = [
    "BASES",
    "COSTS",
    "KINDS",
    "SIDES",
    "VAE",
    "GeometricRegulariser",
    "gaussian_log_density",
    "hausdorff_factorised_support",
    "jacobian_isometry",
    "kl_normal",
    "log_importance_weights",
    "reconstruction_loss",
    "tc_decomposition",
]
