"""Ground-truth datasets from the Hugging Face ``datasets`` library (hub or local files).

``from_hf("some-user/dsprites", image_column="image", factor_columns=[...])`` calls
``datasets.load_dataset`` (which downloads from the hub only when given a hub id and a
network is available); a local folder or data files (parquet, arrow, …) work offline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .base import FactorGrid, GroundTruthDataset

__all__ = ["HFGroundTruth", "from_hf"]


class HFGroundTruth(GroundTruthDataset):
    """A ``datasets.Dataset`` whose rows hold an image and one column per factor.

    Factor values are ranked per column into classes (like TFDS's ``_discretize``); the grid
    is the product of the values seen. The file need not hold the full grid: ``len`` and
    torch indices count rows, and ``sample_factors`` draws rows uniformly (asking for a
    combination not in the file raises ``KeyError``). Images may be PIL images or nested
    lists/arrays (H×W or H×W×C; integers are 8-bit pixels, floats in [0, 1]).
    """

    def __init__(self, hf_dataset, image_column: str, factor_columns: Sequence[str], name: str):
        cols = set(hf_dataset.column_names)
        missing = ({image_column} | set(factor_columns)) - cols
        if missing:
            raise ValueError(f"columns {sorted(missing)} not in the dataset (has {sorted(cols)})")
        if not factor_columns:
            raise ValueError("factor_columns must name at least one column")
        self.name = name
        self.data = hf_dataset.with_format("numpy")
        table = np.stack([np.asarray(self.data[c], dtype=np.float64) for c in factor_columns], 1)
        values, classes = [], []
        for k in range(table.shape[1]):
            v, inv = np.unique(table[:, k], return_inverse=True)
            values.append(v)
            classes.append(inv.reshape(-1))
        self.grid = FactorGrid(factor_columns, values)
        self._classes = np.stack(classes, 1).astype(np.int64)
        flat = self.grid.index_of(self._classes)
        self._lookup = np.full(len(self.grid), -1, dtype=np.int64)
        self._lookup[flat] = np.arange(flat.size)
        self.image_column = image_column
        first = self._images(np.array([0]))
        self.observation_shape = first.shape[1:]

    def _images(self, rows: np.ndarray) -> np.ndarray:
        batch = self.data[rows.tolist()][self.image_column]
        arr = np.stack([np.asarray(im) for im in batch])
        if arr.ndim == 3:
            arr = arr[..., None]
        arr = arr.transpose(0, 3, 1, 2)
        if arr.dtype.kind in "iub":  # 8-bit pixels (Arrow may widen uint8 lists to int64)
            return arr.astype(np.float32) / 255.0
        out = arr.astype(np.float32)
        if out.size and (out.min() < 0 or out.max() > 1):
            raise ValueError(f"float images in column {self.image_column!r} must lie in [0, 1]")
        return out

    def __len__(self) -> int:
        return len(self._classes)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.correlation is not None:
            return super().sample_factors(n, rng)
        return self._classes[rng.integers(0, len(self._classes), size=n)]

    def batch(self, indices):
        rows = np.asarray(indices, dtype=np.int64).reshape(-1)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row index out of range for {self.name} with {len(self)} rows")
        return torch.from_numpy(self._images(rows)), torch.from_numpy(self._classes[rows])

    def _observations(self, classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        rows = self._lookup[self.grid.index_of(classes)]
        if (rows < 0).any():
            missing = classes[np.argmax(rows < 0)].tolist()
            raise KeyError(f"{self.name} holds no image for factor classes {missing}")
        return self._images(rows)


def from_hf(
    path: str,
    *,
    image_column: str = "image",
    factor_columns: Sequence[str],
    split: str = "train",
    **load_kwargs,
) -> HFGroundTruth:
    """Load a ground-truth dataset with ``datasets.load_dataset(path, split=split, ...)``."""
    import datasets

    ds = datasets.load_dataset(path, split=split, **load_kwargs)
    return HFGroundTruth(ds, image_column, factor_columns, name=f"hf:{path}")
