"""Shared fixtures: a tiny ground-truth dataset implementing the protocol, hand-built codes."""

from __future__ import annotations

import numpy as np
import pytest


class ToyData:
    """Factors (4, 5, 6) rendered as a 3-vector of their class indices (plus optional noise)."""

    factor_names = ("a", "b", "c")
    factor_sizes = (4, 5, 6)
    observation_shape = (3,)

    def __init__(self, noise: float = 0.0):
        self.noise = noise

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.integers(s, size=n) for s in self.factor_sizes], axis=1)

    def sample_observations_from_factors(
        self, factors: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        obs = factors.astype(np.float64)
        if self.noise:
            obs = obs + self.noise * rng.standard_normal(obs.shape)
        return obs

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        factors = self.sample_factors(n, rng)
        return factors, self.sample_observations_from_factors(factors, rng)


@pytest.fixture
def toy_data() -> ToyData:
    return ToyData()


def make_factors(n: int, sizes=(4, 5, 6), seed: int = 0) -> np.ndarray:
    """(n, K) independent uniform factor classes."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(s, size=n) for s in sizes], axis=1)


@pytest.fixture
def factors() -> np.ndarray:
    return make_factors(1500)


@pytest.fixture
def perfect_codes(factors) -> np.ndarray:
    """Codes equal to the factors, with tiny noise that never crosses a class boundary."""
    rng = np.random.default_rng(1)
    return factors + 0.01 * rng.standard_normal(factors.shape)
