"""Fixtures shared by the disentangle tests."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny models are dominated by thread start-up on a loaded 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
