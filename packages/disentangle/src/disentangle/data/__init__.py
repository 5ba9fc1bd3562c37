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
from .correlated import CorrelatedFactors
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
from .hf import HFGroundTruth, from_hf
from .mpi3d import MPI3D
from .registry import DATASETS, TINY_SUBSETS, make_dataset
from .shapes3d import SHAPES3D_GRID, Shapes3D, render_shapes3d, write_shapes3d_h5

__all__ = [
    "DATASETS",
    "DSPRITES_GRID",
    "MPI3D",
    "SHAPES3D_GRID",
    "TINY_SUBSETS",
    "CacheCorruptWarning",
    "ColorDSprites",
    "CorrelatedFactors",
    "DSprites",
    "DSpritesArrays",
    "FactorGrid",
    "FactorSubset",
    "GroundTruthDataset",
    "HFGroundTruth",
    "NoisyDSprites",
    "Shapes3D",
    "cached_array",
    "default_cache_dir",
    "from_hf",
    "generate_dsprites",
    "load_dsprites_npz",
    "make_dataset",
    "render_dsprites",
    "render_shapes3d",
    "save_dsprites_npz",
    "write_shapes3d_h5",
]
