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


def notebook_parameter_names(paper: str) -> set[str]:
    """The names the `parameters` cell of notebooks/<paper>.py assigns."""
    from pathlib import Path
    source = (Path(__file__).resolve().parents[1] / "notebooks" / f"{paper}.py").read_text()
    cell = source.split('# %% tags=["parameters"]', 1)[1].split("# %%", 1)[0]
    return {line.split("=", 1)[0].strip() for line in cell.splitlines() if "=" in line and not line.startswith("#")}
