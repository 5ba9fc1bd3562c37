"""3D Shapes: the procedural 3D-Shapes-like dataset and the lazy ``3dshapes.h5`` loader.

Factor grid and order of the real file (``metrics.md`` §4.3): floor_hue 10, wall_hue 10,
object_hue 10 (0.0, 0.1, …, 0.9), scale 8 = linspace(0.75, 1.25, 8), shape 4 (cube,
cylinder, sphere, capsule), orientation 15 = linspace(−30, 30, 15) degrees; 480 000 RGB
64×64 images, row-major with orientation fastest.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .base import FactorGrid, GroundTruthDataset
from .cache import cached_array
from .dsprites import DatasetFileError, resolve_path
from .shapes3d_render import SceneConfig, compose, render_geometry

__all__ = ["SHAPES3D_GRID", "Shapes3D", "render_shapes3d"]

SHAPES3D_FILENAME = "3dshapes.h5"
SHAPES3D_ENV = "SHAPES3D_PATH"
_HUES = np.round(np.linspace(0.0, 0.9, 10), 10)
SHAPES3D_GRID = FactorGrid(
    ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"),
    (_HUES, _HUES, _HUES, np.linspace(0.75, 1.25, 8), np.arange(4.0), np.linspace(-30, 30, 15)),
)
RENDERER_VERSION = 1
_GEOMETRY = (8, 4, 15)  # scale, shape, orientation: the factors that change the geometry


def _geometry_index(classes: np.ndarray) -> np.ndarray:
    return np.ravel_multi_index(tuple(classes[:, 3:].T), _GEOMETRY)


def _render_all_geometry(out: np.ndarray, cfg: SceneConfig, progress: bool, chunk: int = 8) -> None:
    grid = FactorGrid(("scale", "shape", "orientation"), SHAPES3D_GRID.values[3:])
    cls = grid.classes_of(np.arange(min(len(grid), len(out))))
    vals = grid.values_of(cls)
    for start in tqdm(range(0, len(cls), chunk), disable=not progress, desc="3D Shapes geometry"):
        v = vals[start : start + chunk]
        out[start : start + len(v)] = render_geometry(v[:, 0], v[:, 1].astype(int), v[:, 2], cfg)


def render_shapes3d(classes: np.ndarray, cfg: SceneConfig | None = None) -> np.ndarray:
    """Render 3D-Shapes-like images ``(n, 3, 64, 64)`` float32 for ``(n, 6)`` classes, uncached."""
    cls = SHAPES3D_GRID.check_classes(classes, "classes")
    vals = SHAPES3D_GRID.values_of(cls)
    geo, inverse = np.unique(_geometry_index(cls), return_inverse=True)
    g = np.stack(np.unravel_index(geo, _GEOMETRY), 1)
    coeff = render_geometry(
        SHAPES3D_GRID.values[3][g[:, 0]], g[:, 1], SHAPES3D_GRID.values[5][g[:, 2]], cfg
    )
    return compose(coeff[inverse.reshape(-1)], vals[:, 0], vals[:, 1], vals[:, 2])


class Shapes3D(GroundTruthDataset):
    """3D Shapes as a ``GroundTruthData`` and torch ``Dataset`` (3×64×64 RGB in [0, 1]).

    Args:
        path: None for the procedural renderer; otherwise the real ``3dshapes.h5`` (or its
            folder, or ``"env"`` for ``$SHAPES3D_PATH``), read lazily with h5py.
        cache: procedural only: render the 480 (scale, shape, orientation) geometries once
            into the cache folder (31 MB memory map) and compose images from them; False
            renders the geometries needed on the fly.
        cache_dir, verify: see :func:`disentangle.data.cache.cached_array`.
    """

    name = "shapes3d"

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        cache: bool = True,
        cache_dir: str | os.PathLike | None = None,
        verify: str = "checksum",
        progress: bool = True,
        scene: SceneConfig | None = None,
    ):
        self.grid = SHAPES3D_GRID
        self.observation_shape = (3, 64, 64)
        self.scene = scene or SceneConfig()
        self._coeff = None
        self._memo: dict[int, np.ndarray] = {}
        self._h5 = None
        self.path = None
        if path is not None:
            self.path = str(
                resolve_path(None if path == "env" else path, SHAPES3D_ENV, SHAPES3D_FILENAME,
                             "3dshapes.h5 file")
            )  # fmt: skip
            self._lookup = self._check_h5()
        elif cache:
            size = self.scene.image_size
            self._coeff = cached_array(
                "shapes3d_like_geometry",
                (int(np.prod(_GEOMETRY)), 4, size, size),
                np.float32,
                lambda out: _render_all_geometry(out, self.scene, progress),
                params={"version": RENDERER_VERSION, "scene": self.scene.__dict__},
                cache_dir=cache_dir,
                verify=verify,
            )

    # --- real file ----------------------------------------------------------------------
    def _open(self):
        import h5py

        if self._h5 is None:
            try:
                self._h5 = h5py.File(self.path, "r")
            except OSError as err:
                raise DatasetFileError(
                    f"cannot open {self.path}: truncated or not HDF5 ({err})"
                ) from err
        return self._h5

    def _check_h5(self) -> np.ndarray | None:
        f = self._open()
        missing = {"images", "labels"} - set(f.keys())
        if missing:
            raise DatasetFileError(
                f"{self.path} lacks the datasets {sorted(missing)} (has {sorted(f.keys())}); "
                "3dshapes.h5 holds images (N, 64, 64, 3) uint8 and labels (N, 6) float"
            )
        images, labels = f["images"], f["labels"]
        if images.ndim != 4 or images.shape[1:] != (64, 64, 3) or images.dtype != np.uint8:
            raise DatasetFileError(
                f"{self.path}: images must be (N, 64, 64, 3) uint8, "
                f"got {images.shape} {images.dtype}"
            )
        if labels.shape != (images.shape[0], 6):
            raise DatasetFileError(
                f"{self.path}: labels must have shape ({images.shape[0]}, 6), got {labels.shape}"
            )
        values = labels[()]
        classes = np.empty(values.shape, dtype=np.int64)
        for k, grid_values in enumerate(self.grid.values):
            idx = np.abs(values[:, k, None] - grid_values[None, :]).argmin(1)
            off = np.abs(values[:, k] - grid_values[idx]) > 1e-3
            if off.any():
                row = int(np.argmax(off))
                raise DatasetFileError(
                    f"{self.path}: labels[{row}, {k}] = {values[row, k]} is not a value of factor "
                    f"'{self.grid.names[k]}' ({grid_values.tolist()})"
                )
            classes[:, k] = idx
        flat = self.grid.index_of(classes)
        if flat.size == len(self.grid) and np.array_equal(flat, np.arange(len(self.grid))):
            return None
        if np.unique(flat).size != flat.size:
            raise DatasetFileError(f"{self.path} holds a factor combination more than once")
        lookup = np.full(len(self.grid), -1, dtype=np.int64)
        lookup[flat] = np.arange(flat.size)
        return lookup

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_h5"] = None  # h5py handles do not cross process boundaries; reopen lazily
        return state

    def _read_h5(self, classes: np.ndarray) -> np.ndarray:
        rows = self.grid.index_of(classes)
        if self._lookup is not None:
            rows = self._lookup[rows]
            if (rows < 0).any():
                missing = classes[np.argmax(rows < 0)].tolist()
                raise KeyError(f"{self.path} holds no image for factor classes {missing}")
        uniq, inverse = np.unique(rows, return_inverse=True)
        images = self._open()["images"][uniq]  # h5py needs increasing indices
        return images[inverse.reshape(-1)]

    # --- observations -------------------------------------------------------------------
    def _observations(self, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.path is not None:
            return self._read_h5(classes).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        vals = self.grid.values_of(classes)
        geo = _geometry_index(classes)
        if self._coeff is None:  # uncached: render each geometry once, keep it in memory
            todo = np.setdiff1d(geo, list(self._memo))
            if todo.size:
                g = np.stack(np.unravel_index(todo, _GEOMETRY), 1)
                maps = render_geometry(
                    self.grid.values[3][g[:, 0]], g[:, 1], self.grid.values[5][g[:, 2]], self.scene
                )
                self._memo.update(zip(todo.tolist(), maps))
            coeff = np.stack([self._memo[k] for k in geo.tolist()])
        else:
            coeff = self._coeff[geo]
        return compose(coeff, vals[:, 0], vals[:, 1], vals[:, 2])


def write_shapes3d_h5(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray) -> None:
    """Write ``images`` (N, 64, 64, 3) uint8 and ``labels`` (N, 6) float64 in the real layout."""
    import h5py

    with h5py.File(Path(path), "w") as f:
        f.create_dataset("images", data=images, chunks=(min(len(images), 256), 64, 64, 3))
        f.create_dataset("labels", data=labels)
