"""Shared fixtures and helpers for the otcore tests.

``HYPOTHESIS_PROFILE=fuzz`` (registered in ``tests/conftest.py``) runs the otcore property
and fuzz tests that take their budget from the profile (test_honest_convergence.py,
test_fuzz.py) with 500 fresh examples each instead of their small, derandomised default.
"""

import pytest
import torch


@pytest.fixture
def problem():
    """Factory of random weighted point-cloud problems: problem(n, m, d, dtype, seed)."""
    return random_problem


def random_problem(n=30, m=25, d=2, dtype=torch.float64, seed=0, weights=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    y = torch.randn(m, d, generator=g, dtype=dtype) + 0.5
    if not weights:
        return x, y, None, None
    a = torch.rand(n, generator=g, dtype=dtype) + 0.1
    b = torch.rand(m, generator=g, dtype=dtype) + 0.1
    return x, y, a / a.sum(), b / b.sum()
