"""Factor grids and the base class every ground-truth dataset derives from.

A ground-truth dataset is a full factorial grid of K discrete factors; every combination
appears once, at the row-major flat index with the last factor fastest (the order of the
real dSprites, 3D Shapes and MPI3D files, ``metrics.md`` §4). The base class is at the same
time a ``dismetrics.protocol.GroundTruthData`` (numpy, explicit ``np.random.Generator``) and a
``torch.utils.data.Dataset`` returning ``(image float32 C×H×W in [0, 1], classes int64 (K,))``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["FactorGrid", "FactorSubset", "GroundTruthDataset"]


class FactorGrid:
    """Names, sizes and values of K discrete factors, and the flat index ↔ classes map.

    Args:
        names: the K factor names, in index order.
        values: for each factor, the 1-D array of its values (class ``c`` has value
            ``values[k][c]``).
    """

    def __init__(self, names: Sequence[str], values: Sequence[np.ndarray]):
        if len(names) != len(values):
            raise ValueError(f"names has {len(names)} entries but values has {len(values)}")
        self.names = tuple(str(n) for n in names)
        self.values = tuple(np.asarray(v) for v in values)
        self.sizes = tuple(int(v.shape[0]) for v in self.values)
        if any(s < 1 for s in self.sizes):
            raise ValueError(f"every factor needs at least one value, got sizes {self.sizes}")
        self.bases = np.cumprod((1, *self.sizes[::-1]))[-2::-1].astype(np.int64)

    def __len__(self) -> int:
        return int(np.prod(self.sizes, dtype=np.int64))

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={s}" for n, s in zip(self.names, self.sizes))
        return f"FactorGrid({inner})"

    def check_classes(self, classes: np.ndarray, name: str = "factors") -> np.ndarray:
        """Validate an ``(n, K)`` array of class indices and return it as int64.

        Raises:
            ValueError: wrong shape, non-integer values, or a class outside ``[0, size)``,
                naming the argument, the factor and the offending value.
        """
        arr = np.asarray(classes)
        if arr.ndim != 2 or arr.shape[1] != len(self.sizes):
            raise ValueError(
                f"{name} must have shape (n, {len(self.sizes)}) for factors {self.names}, "
                f"got {arr.shape}"
            )
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
                raise ValueError(f"{name} must hold integer class indices, got non-integer values")
        elif arr.dtype.kind not in "iub":
            raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        bad = (arr < 0) | (arr >= np.asarray(self.sizes))
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(
                f"{name}[{row}, {col}] = {arr[row, col]} is out of range for factor "
                f"'{self.names[col]}' with {self.sizes[col]} classes "
                f"(valid: 0..{self.sizes[col] - 1})"
            )
        return arr

    def index_of(self, classes: np.ndarray) -> np.ndarray:
        """Flat row-major indices ``(n,)`` of ``(n, K)`` classes (last factor fastest)."""
        return self.check_classes(classes) @ self.bases

    def classes_of(self, index: np.ndarray | int) -> np.ndarray:
        """Classes ``(n, K)`` of flat indices ``(n,)``; the inverse of :meth:`index_of`."""
        idx = np.atleast_1d(np.asarray(index, dtype=np.int64))
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"index out of range for a grid of {len(self)} elements")
        return np.stack(np.unravel_index(idx, self.sizes), axis=1).astype(np.int64)

    def values_of(self, classes: np.ndarray) -> np.ndarray:
        """Factor values ``(n, K)`` float64 of ``(n, K)`` classes."""
        cls = self.check_classes(classes)
        return np.stack([v[cls[:, k]] for k, v in enumerate(self.values)], axis=1).astype(
            np.float64
        )

    def normalised(self, classes: np.ndarray) -> np.ndarray:
        """Classes mapped to ``[0, 1]`` by ``c / (size − 1)`` (0 for a factor of size 1)."""
        cls = self.check_classes(classes)
        denom = np.maximum(np.asarray(self.sizes) - 1, 1)
        return cls / denom

    def sample_uniform(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n, K)`` classes drawn uniformly and independently, one draw per factor in order."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return np.stack([rng.integers(0, s, size=n) for s in self.sizes], axis=1).astype(np.int64)


@dataclass(frozen=True)
class _MemmapRef:
    filename: str
    offset: int
    dtype: str
    shape: tuple[int, ...]
    order: str


def _check_rng(rng: np.random.Generator | None) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng()
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


class GroundTruthDataset(torch.utils.data.Dataset):
    """Base class: a ``GroundTruthData`` and a map-style torch ``Dataset`` over the full grid.

    Subclasses set ``self.grid`` and ``self.observation_shape`` (C, H, W) and implement
    :meth:`_observations` (float32 ``(n, C, H, W)`` in [0, 1] for validated classes).
    ``len(dataset)`` is the grid size and item ``i`` is the grid point ``grid.classes_of(i)``.

    Randomness: ``sample_*`` take an explicit ``np.random.Generator``. Items fetched through
    torch (``dataset[i]``, a ``DataLoader``) draw any observation noise (colour, noisy
    variants) from a generator seeded by torch's RNG, so ``torch.manual_seed`` makes a
    ``DataLoader`` run reproducible, workers included.
    """

    grid: FactorGrid
    observation_shape: tuple[int, int, int]
    name: str = "ground_truth"
    #: whether observations are random given the factors (colour, noise)
    stochastic: bool = False
    correlation = None  # a CorrelatedFactors sampler, or None for independent factors
    #: for a file holding part of the grid: flat grid index → row (-1: absent); None: all of it
    _lookup: np.ndarray | None = None

    @property
    def missing_combinations(self) -> int:
        """Number of grid points the source holds no observation for (0: the whole grid)."""
        return 0 if self._lookup is None else int((self._lookup < 0).sum())

    # --- GroundTruthData protocol -------------------------------------------------------
    @property
    def factor_names(self) -> tuple[str, ...]:
        return self.grid.names

    @property
    def factor_sizes(self) -> tuple[int, ...]:
        return self.grid.sizes

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n, K)`` int64 classes: uniform and independent, or from :attr:`correlation`."""
        rng = _check_rng(rng)
        if self.correlation is not None:
            return self.correlation.sample(n, rng)
        return self.grid.sample_uniform(n, rng)

    def sample_observations_from_factors(
        self, factors: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Observations float32 ``(n, C, H, W)`` in [0, 1] for ``(n, K)`` factor classes."""
        cls = self.grid.check_classes(factors, "factors")
        return self._observations(cls, _check_rng(rng))

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(factors (n, K), observations (n, C, H, W))``: factors first, then observations."""
        rng = _check_rng(rng)
        factors = self.sample_factors(n, rng)
        return factors, self.sample_observations_from_factors(factors, rng)

    def _observations(self, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    # --- torch Dataset ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.grid)

    def _torch_rng(self) -> np.random.Generator:
        seed = int(torch.randint(0, 2**62, (1,)).item()) if self.stochastic else 0
        return np.random.default_rng(seed)

    def batch(self, indices: Sequence[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``(n, C, H, W)`` float32 and classes ``(n, K)`` int64 for flat indices."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"index out of range for {self.name} with {len(self)} items")
        idx = np.where(idx < 0, idx + len(self), idx)
        cls = self.grid.classes_of(idx)
        obs = self._observations(cls, self._torch_rng())
        return torch.from_numpy(np.ascontiguousarray(obs)), torch.from_numpy(cls)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, classes = self.batch([int(index)])
        return images[0], classes[0]

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Batched fetch used by ``DataLoader`` (one vectorised read per batch)."""
        images, classes = self.batch(indices)
        return list(zip(images.unbind(0), classes.unbind(0)))

    def __getstate__(self) -> dict:
        """Pickle memory maps by reference (file, offset, dtype, shape), not by content, so
        ``DataLoader`` workers started with ``spawn`` reopen the cache instead of copying it."""
        state = self.__dict__.copy()
        for key, value in state.items():
            if isinstance(value, np.memmap) and value.filename is not None:
                state[key] = _MemmapRef(
                    value.filename, value.offset, value.dtype.str, value.shape,
                    "F" if value.flags.f_contiguous and not value.flags.c_contiguous else "C",
                )  # fmt: skip
        return state

    def __setstate__(self, state: dict) -> None:
        for key, value in state.items():
            if isinstance(value, _MemmapRef):
                state[key] = np.memmap(
                    value.filename, dtype=value.dtype, mode="r", offset=value.offset,
                    shape=value.shape, order=value.order,
                )  # fmt: skip
        self.__dict__.update(state)

    def subset(self, classes: Mapping[str, Sequence[int]]) -> FactorSubset:
        """A smaller grid keeping, for each named factor, only the listed classes."""
        return FactorSubset(self, classes)

    def __repr__(self) -> str:
        shape = self.observation_shape
        return f"{type(self).__name__}(name={self.name!r}, {self.grid}, shape={shape})"


class FactorSubset(GroundTruthDataset):
    """A factorial sub-grid of a parent dataset, with classes re-indexed from 0.

    ``FactorSubset(ds, {"orientation": [0, 10, 20, 30]})`` keeps 4 of the 40 orientations;
    factors not named keep all classes. Observations are the parent's for the mapped classes.
    """

    def __init__(self, parent: GroundTruthDataset, classes: Mapping[str, Sequence[int]]):
        unknown = set(classes) - set(parent.factor_names)
        if unknown:
            raise ValueError(
                f"classes names unknown factors {sorted(unknown)}; "
                f"factors are {parent.factor_names}"
            )
        self.parent = parent
        self.keep = []
        for name, size in zip(parent.factor_names, parent.factor_sizes):
            keep = np.asarray(classes.get(name, range(size)), dtype=np.int64).reshape(-1)
            if keep.size == 0 or keep.min() < 0 or keep.max() >= size:
                raise ValueError(
                    f"classes['{name}'] must be non-empty classes in 0..{size - 1}, "
                    f"got {keep.tolist()}"
                )
            if np.unique(keep).size != keep.size:
                raise ValueError(f"classes['{name}'] has repeated classes: {keep.tolist()}")
            self.keep.append(keep)
        self.grid = FactorGrid(
            parent.factor_names, [v[k] for v, k in zip(parent.grid.values, self.keep)]
        )
        self.observation_shape = parent.observation_shape
        self.name = f"{parent.name}_subset"
        self.stochastic = parent.stochastic

    def to_parent(self, classes: np.ndarray) -> np.ndarray:
        """Map ``(n, K)`` classes of this sub-grid to the parent's classes."""
        cls = self.grid.check_classes(classes)
        return np.stack([k[cls[:, j]] for j, k in enumerate(self.keep)], axis=1)

    def _observations(self, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.parent._observations(self.to_parent(classes), rng)
