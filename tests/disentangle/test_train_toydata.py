"""A tiny ground-truth dataset for the model and training tests: Gaussian blobs on a grid.

Factors: x position (8), y position (8), blob width (3); images (1, 32, 32) in [0, 1]. It is
both a ``dismetrics.GroundTruthData`` and a torch ``Dataset`` (``(image, factors)`` items), the
contract of ``disentangle.data`` datasets, so the training loop can be tested without the
dataset library and in a few seconds.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from dismetrics import GroundTruthData


class Blobs(Dataset):
    factor_names = ("x", "y", "width")
    factor_sizes = (8, 8, 3)

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self.observation_shape = (1, size, size)
        grid = np.arange(size, dtype=np.float32)
        self._yy, self._xx = np.meshgrid(grid, grid, indexing="ij")

    def __len__(self) -> int:
        return int(np.prod(self.factor_sizes))

    def render(self, factors: np.ndarray) -> np.ndarray:
        f = np.asarray(factors)
        cx = 4 + f[:, 0, None, None] * (self.size - 8) / 7
        cy = 4 + f[:, 1, None, None] * (self.size - 8) / 7
        w = 1.5 + f[:, 2, None, None]
        img = np.exp(-((self._xx - cx) ** 2 + (self._yy - cy) ** 2) / (2 * w**2))
        return img[:, None].astype(np.float32)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.integers(0, s, n) for s in self.factor_sizes], 1).astype(np.int64)

    def sample_observations_from_factors(self, factors, rng) -> np.ndarray:
        return self.render(factors)

    def sample(self, n: int, rng: np.random.Generator):
        f = self.sample_factors(n, rng)
        return f, self.render(f)

    def __getitem__(self, i: int):
        f = np.array(np.unravel_index(i, self.factor_sizes), dtype=np.int64)
        return torch.from_numpy(self.render(f[None])[0]), torch.from_numpy(f)


def test_blobs_follow_the_dataset_contract():
    data = Blobs()
    assert isinstance(data, GroundTruthData)
    image, factors = data[len(data) - 1]
    assert image.shape == (1, 32, 32) and image.dtype == torch.float32
    assert factors.tolist() == [7, 7, 2]
    f, x = data.sample(5, np.random.default_rng(0))
    assert x.shape == (5, 1, 32, 32) and 0 <= x.min() and x.max() <= 1
    np.testing.assert_array_equal(data.sample_observations_from_factors(f, None), x)
