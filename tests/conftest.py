"""Shared fixtures."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """One torch thread and torch's seed 0 for the test (deterministic float sums), restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)
