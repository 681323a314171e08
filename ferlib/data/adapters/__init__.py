"""Adapters: read each real dataset exactly as its owners distribute it.

    result = scan("ckplus", "/data/CK+")   # -> AdapterResult(manifest, findings)

One module per dataset (`ckplus`, `mmi`, `oulu`, `bu3dfe`, `bu4dfe`, `rafdb`, `ferplus`), each
with `scan(root)`; its docstring states the layout it reads and every assumption made.
`scan` checks that the root is an existing folder and hands over to the dataset's module, which
checks the layout itself: it names the first path missing (and says so when the root is one level
too deep or too high) and shows the expected tree.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ferlib.data.adapters.base import AdapterResult, Finding
from ferlib.data.registry import DATASETS, REAL_DATASETS, check_data_root
from ferlib.errors import UnknownName

__all__ = ["AdapterResult", "Finding", "scan"]


def scan(dataset: str, root) -> AdapterResult:
    """The common manifest of the real dataset `dataset` found under `root`, with findings."""
    if dataset not in REAL_DATASETS:
        raise UnknownName("real dataset", dataset, REAL_DATASETS)
    checked: Path = check_data_root(DATASETS[dataset], root)
    module = importlib.import_module(f"ferlib.data.adapters.{dataset}")
    return module.scan(checked)
