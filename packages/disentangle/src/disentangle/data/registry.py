"""Datasets by name: ``make_dataset(name, ...)`` and the ``DATASETS`` table."""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping, Sequence
from functools import partial

from .base import GroundTruthDataset
from .correlated import CorrelatedFactors
from .dsprites import ColorDSprites, DSprites, NoisyDSprites
from .hf import from_hf
from .mpi3d import MPI3D
from .shapes3d import Shapes3D

__all__ = ["DATASETS", "TINY_SUBSETS", "make_dataset"]

#: name → (constructor, description)
DATASETS: dict[str, tuple[Callable[..., GroundTruthDataset], str]] = {
    "dsprites": (DSprites, "procedural dSprites-like (737 280 binary 1×64×64), cached"),
    "dsprites_real": (
        partial(DSprites, "env"),
        "the real dSprites npz (path=... or $DSPRITES_PATH)",
    ),
    "color_dsprites": (ColorDSprites, "dSprites × random RGB colour U(0.5, 1)³ (3×64×64)"),
    "noisy_dsprites": (NoisyDSprites, "dSprites on U(0, 1) noise (3×64×64)"),
    "shapes3d": (Shapes3D, "procedural 3D-Shapes-like (480 000 RGB 3×64×64), cached"),
    "shapes3d_real": (
        partial(Shapes3D, "env"),
        "the real 3dshapes.h5, read lazily (path=... or $SHAPES3D_PATH)",
    ),
    "mpi3d_toy": (partial(MPI3D, variant="toy"), "real mpi3d_toy.npz (path or $MPI3D_PATH)"),
    "mpi3d_realistic": (partial(MPI3D, variant="realistic"), "real mpi3d_realistic.npz"),
    "mpi3d_real": (partial(MPI3D, variant="real"), "real mpi3d_real.npz"),
    "hf": (from_hf, "a Hugging Face dataset (hub id or local files; see from_hf)"),
}

#: class subsets used by ``tiny=True`` (fast end-to-end tests; build in well under a second)
TINY_SUBSETS: dict[str, dict[str, Sequence[int]]] = {
    "dsprites": {
        "scale": [0, 5],
        "orientation": [0, 10, 20, 30],
        "posX": range(0, 32, 4),
        "posY": range(0, 32, 4),
    },  # 3·2·4·8·8 = 1 536 images
    "shapes3d": {
        "floor_hue": [0, 5],
        "wall_hue": [2, 7],
        "object_hue": [0, 3, 6],
        "scale": [0, 7],
        "orientation": [0, 7, 14],
    },  # 2·2·3·2·4·3 = 288 images
}
TINY_SUBSETS["color_dsprites"] = TINY_SUBSETS["noisy_dsprites"] = TINY_SUBSETS["dsprites"]


def make_dataset(
    name: str,
    *,
    path: str | os.PathLike | None = None,
    tiny: bool = False,
    subset: Mapping[str, Sequence[int]] | None = None,
    correlations: Mapping[tuple[str, str], float] | None = None,
    **kwargs,
) -> GroundTruthDataset:
    """Build a ground-truth dataset by name.

    Args:
        name: one of :data:`DATASETS` (``dsprites``, ``dsprites_real``, ``color_dsprites``,
            ``noisy_dsprites``, ``shapes3d``, ``shapes3d_real``, ``mpi3d_toy``,
            ``mpi3d_realistic``, ``mpi3d_real``, ``hf``).
        path: file (or folder) of a real dataset; for ``dsprites``/``shapes3d`` it switches
            from the generator to the real file.
        tiny: a small factorial sub-grid (:data:`TINY_SUBSETS`) rendered on the fly, no cache.
        subset: ``{factor: classes}`` to keep (classes re-indexed from 0).
        correlations: ``{(factor_i, factor_j): sigma}`` couples factors in ``sample_factors``
            (:class:`CorrelatedFactors`); off by default.
        **kwargs: passed to the constructor (``cache``, ``cache_dir``, ``verify``, ...).

    Returns:
        A :class:`GroundTruthDataset` (a ``GroundTruthData`` and a torch ``Dataset``).
    """
    if name not in DATASETS:
        close = difflib.get_close_matches(name, DATASETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown dataset {name!r}{hint}; known: {', '.join(DATASETS)}")
    ctor = DATASETS[name][0]
    if path is not None:
        if name in ("dsprites", "dsprites_real", "color_dsprites", "noisy_dsprites"):
            ctor = {"dsprites_real": DSprites}.get(name, ctor)
        elif name == "shapes3d_real":
            ctor = Shapes3D
        kwargs["path"] = path
    if tiny:
        if name not in TINY_SUBSETS:
            raise ValueError(f"tiny=True is available for {sorted(TINY_SUBSETS)}, not {name!r}")
        if path is None:
            kwargs.setdefault("cache", False)
    ds = ctor(**kwargs)
    if tiny:
        ds = ds.subset({**TINY_SUBSETS[name], **(subset or {})})
    elif subset:
        ds = ds.subset(subset)
    if correlations:
        ds.correlation = CorrelatedFactors(ds.grid, correlations)
    return ds
