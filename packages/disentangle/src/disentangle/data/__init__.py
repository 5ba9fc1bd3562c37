"""Ground-truth datasets: procedural dSprites-like and 3D-Shapes-like generators, loaders for
the real files (dSprites ``.npz``, ``3dshapes.h5``, MPI3D ``.npz``, Hugging Face datasets),
correlated-factor sampling and generate-once caching.

Every dataset is a ``dismetrics.protocol.GroundTruthData`` and a torch ``Dataset`` returning
``(image float32 C×H×W in [0, 1], factor classes int64 (K,))``; build one by name::

    from disentangle.data import make_dataset
    ds = make_dataset("dsprites")                 # procedural, cached on first use
    tiny = make_dataset("dsprites", tiny=True)    # 1 536 images, rendered on the fly
"""

from .base import FactorGrid, FactorSubset, GroundTruthDataset
from .cache import CacheCorruptWarning, cached_array, default_cache_dir
from .dsprites import (
    DSPRITES_GRID,
    ColorDSprites,
    DSprites,
    DSpritesArrays,
    NoisyDSprites,
    generate_dsprites,
    load_dsprites_npz,
    render_dsprites,
    save_dsprites_npz,
)

__all__ = [
    "DSPRITES_GRID",
    "CacheCorruptWarning",
    "ColorDSprites",
    "DSprites",
    "DSpritesArrays",
    "FactorGrid",
    "FactorSubset",
    "GroundTruthDataset",
    "NoisyDSprites",
    "cached_array",
    "default_cache_dir",
    "generate_dsprites",
    "load_dsprites_npz",
    "render_dsprites",
    "save_dsprites_npz",
]
