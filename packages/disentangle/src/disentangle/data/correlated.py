"""Correlated ground-truth factors (Träuble et al. 2021, as implemented in the HFS code of
Roth et al., ``facebookresearch/disentangling-correlated-factors:datasets/utils.py``).

Each coupled pair of factors (i, j) with width σ weights a factor combination by
``exp(−(c_i − c_j)² / (2σ²))`` on values normalised to [0, 1] (class / (size − 1)); the
``inverse`` variant couples ``c_i`` with ``1 − c_j``. The sampling distribution is the
product of these weights over pairs, normalised. Off by default everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from .base import FactorGrid

__all__ = ["CorrelatedFactors"]


class CorrelatedFactors:
    """A sampler of factor classes with pairwise Gaussian couplings.

    Args:
        grid: the dataset's factor grid.
        pairs: ``{(name_i, name_j): sigma}`` (names or factor indices), σ > 0.
        inverse: couple ``c_i`` with ``1 − c_j`` (HFS's ``inv_traeuble``).

    Factors in no pair stay uniform and independent. Sampling enumerates the joint grid of
    the coupled factors only (at most 10⁷ combinations).
    """

    def __init__(
        self,
        grid: FactorGrid,
        pairs: Mapping[tuple[str | int, str | int], float],
        inverse: bool = False,
    ):
        if not pairs:
            raise ValueError("pairs must name at least one pair of factors")
        self.grid = grid
        self.inverse = inverse
        self.pairs: dict[tuple[int, int], float] = {}
        for (a, b), sigma in pairs.items():
            i, j = self._index(a), self._index(b)
            if i == j:
                raise ValueError(f"a factor cannot be coupled with itself: {(a, b)}")
            if not (np.isfinite(sigma) and sigma > 0):
                raise ValueError(f"sigma of pair {(a, b)} must be finite and > 0, got {sigma}")
            self.pairs[(i, j)] = float(sigma)
        self.coupled = sorted({k for p in self.pairs for k in p})
        sub_sizes = [grid.sizes[k] for k in self.coupled]
        total = int(np.prod(sub_sizes))
        if total > 10**7:
            raise ValueError(f"the coupled factors span {total} combinations (max 10^7)")
        sub = np.stack(np.unravel_index(np.arange(total), sub_sizes), 1)
        full = np.zeros((total, len(grid.sizes)), dtype=np.int64)
        full[:, self.coupled] = sub
        w = self.weights(full)
        self._sub = sub
        self._p = w / w.sum()

    def _index(self, name: str | int) -> int:
        if isinstance(name, (int, np.integer)):
            if not 0 <= name < len(self.grid.sizes):
                raise ValueError(f"factor index {name} out of range 0..{len(self.grid.sizes) - 1}")
            return int(name)
        if name not in self.grid.names:
            raise ValueError(f"unknown factor {name!r}; factors are {self.grid.names}")
        return self.grid.names.index(name)

    def weights(self, classes: np.ndarray) -> np.ndarray:
        """Unnormalised weights ``(n,)``: ``Π_pairs exp(−(c_i − c_j)² / (2σ²))``."""
        c = self.grid.normalised(classes)
        w = np.ones(c.shape[0])
        for (i, j), sigma in self.pairs.items():
            cj = 1.0 - c[:, j] if self.inverse else c[:, j]
            w *= np.exp(-((c[:, i] - cj) ** 2) / (2 * sigma**2))
        return w

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n, K)`` int64 classes from the coupled distribution."""
        out = self.grid.sample_uniform(n, rng)
        out[:, self.coupled] = self._sub[rng.choice(len(self._p), size=n, p=self._p)]
        return out

    def torch_sampler(self, num_samples: int, generator: torch.Generator | None = None):
        """A ``WeightedRandomSampler`` over the flat indices of the whole grid (as in HFS)."""
        w = self.weights(self.grid.classes_of(np.arange(len(self.grid))))
        return torch.utils.data.WeightedRandomSampler(
            torch.from_numpy(w), num_samples, replacement=True, generator=generator
        )
