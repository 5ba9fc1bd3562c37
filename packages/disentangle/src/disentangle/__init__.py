"""disentangle: structured representations with optimal transport (models, data, training).

Subpackages (imported on demand, so ``import disentangle`` stays light):

- :mod:`disentangle.data`: ground-truth datasets (generated dSprites / 3D Shapes, real files).
- :mod:`disentangle.nn`: the Locatello et al. conv encoder/decoder and MLPs.
- :mod:`disentangle.models`: β-VAE, β-TCVAE, HFS and the GMG / DST / Jacobian regularisers.
- :mod:`disentangle.train`: the Accelerate training loop, tyro configs with presets, evaluation.
- :mod:`disentangle.viz`: traversals, reconstructions, loss and metric curves.
- :mod:`disentangle.align`: iterative alignment flows.

Train the default model (β-VAE + GMG on the decoder, cosine cost, generated dSprites)::

    accelerate launch apps/train.py            # or: python apps/train.py
"""

__version__ = "0.1.0"
