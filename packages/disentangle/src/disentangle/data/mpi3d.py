"""MPI3D loaders for the real ``.npz`` files (Gondal et al. 2019; ``metrics.md`` §4.4).

``mpi3d_toy.npz``, ``mpi3d_realistic.npz`` and ``mpi3d_real.npz`` hold one key, ``images``:
``(N, 64, 64, 3)`` uint8 in factorial order (last factor fastest) over object_color,
object_shape, object_size, camera_height, background_color, horizontal_axis,
vertical_axis with sizes (4, 4, 2, 3, 3, 40, 40) for toy and realistic (460 800 images) and
(6, 6, 2, 3, 3, 40, 40) for real (1 036 800). An uncompressed ``.npz`` is memory-mapped
(nothing is read until used); a compressed one is loaded into memory.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from .base import FactorGrid, GroundTruthDataset
from .dsprites import DatasetFileError, resolve_path

__all__ = ["MPI3D", "MPI3D_SIZES", "npz_member"]

MPI3D_NAMES = (
    "object_color",
    "object_shape",
    "object_size",
    "camera_height",
    "background_color",
    "horizontal_axis",
    "vertical_axis",
)
MPI3D_SIZES = {
    "toy": (4, 4, 2, 3, 3, 40, 40),
    "realistic": (4, 4, 2, 3, 3, 40, 40),
    "real": (6, 6, 2, 3, 3, 40, 40),
}


def npz_member(path: str | os.PathLike, key: str) -> np.ndarray:
    """Array ``key`` of an ``.npz``: memory-mapped when stored uncompressed, else loaded.

    Raises:
        DatasetFileError: not a zip/npz, truncated, or no member named ``key``.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n.removesuffix(".npy") for n in zf.namelist()]
            if key not in names:
                raise DatasetFileError(f"{path} has no array '{key}' (has {sorted(names)})")
            info = zf.getinfo(f"{key}.npy")
            if info.compress_type == zipfile.ZIP_STORED:
                with zf.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    read_header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, fortran, dtype = read_header(member)
                    header_len = member.tell()
                with open(path, "rb") as raw:  # data offset = local header + npy header
                    raw.seek(info.header_offset + 26)
                    n_name, n_extra = np.frombuffer(raw.read(4), dtype="<u2")
                offset = info.header_offset + 30 + int(n_name) + int(n_extra) + header_len
                expected = offset + int(np.prod(shape)) * dtype.itemsize
                if os.path.getsize(path) < expected:
                    raise DatasetFileError(f"{path} is truncated: '{key}' needs {expected} bytes")
                return np.memmap(
                    path, dtype=dtype, mode="r", offset=offset, shape=shape,
                    order="F" if fortran else "C",
                )  # fmt: skip
        with np.load(path) as f:
            return f[key]
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as err:
        if isinstance(err, DatasetFileError):
            raise
        raise DatasetFileError(f"cannot read {path}: truncated or not an npz file ({err})") from err


class MPI3D(GroundTruthDataset):
    """An MPI3D variant read from its real ``.npz`` (3×64×64 RGB in [0, 1]).

    Args:
        path: the file, its folder (holding ``mpi3d_<variant>.npz``), or None for
            ``$MPI3D_PATH``.
        variant: ``"toy"``, ``"realistic"`` or ``"real"`` (sets the factor sizes).
        factor_sizes: override the sizes, for a file holding a factorial sub-grid in the
            same order (their product must equal the number of images).
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        variant: str = "toy",
        factor_sizes: tuple[int, ...] | None = None,
    ):
        if variant not in MPI3D_SIZES:
            raise ValueError(f"variant must be one of {sorted(MPI3D_SIZES)}, got {variant!r}")
        self.name = f"mpi3d_{variant}"
        sizes = tuple(factor_sizes or MPI3D_SIZES[variant])
        if len(sizes) != 7:
            raise ValueError(f"factor_sizes must have 7 entries {MPI3D_NAMES}, got {sizes}")
        self.path = str(resolve_path(path, "MPI3D_PATH", f"mpi3d_{variant}.npz", "MPI3D file"))
        self._images = npz_member(self.path, "images")
        shape = self._images.shape
        if len(shape) != 4 or shape[1:] != (64, 64, 3) or self._images.dtype != np.uint8:
            raise DatasetFileError(
                f"{self.path}: images must be (N, 64, 64, 3) uint8, "
                f"got {shape} {self._images.dtype}"
            )
        self.grid = FactorGrid(MPI3D_NAMES, [np.arange(s, dtype=np.float64) for s in sizes])
        if shape[0] != len(self.grid):
            raise DatasetFileError(
                f"{self.path}: {shape[0]} images but the factor sizes {sizes} of {self.name} "
                f"need {len(self.grid)}"
            )
        self.observation_shape = (3, 64, 64)

    def _observations(self, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        rows = self.grid.index_of(classes)
        order = np.argsort(rows, kind="stable")
        images = np.empty((rows.size, 64, 64, 3), dtype=np.uint8)
        images[order] = self._images[rows[order]]
        return images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
