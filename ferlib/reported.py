"""The papers' reported numbers, typed once in `data_manifests/reported/<paper>.yaml`, and the
"reported vs reproduced" table that puts ours beside them without ever passing theirs off as ours.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from ferlib.errors import FerlibError

REPORTED_DIR = Path(__file__).resolve().parents[1] / "data_manifests" / "reported"


def load_reported(paper: str) -> pd.DataFrame:
    """One row per reported number: table, method, dataset (base name, e.g. "ckplus"), reported."""
    path = REPORTED_DIR / f"{paper}.yaml"
    if not path.is_file():
        raise FerlibError(f"no reported numbers for {paper}: {path} does not exist")
    raw = yaml.safe_load(path.read_text())
    rows = [{"table": t["table"], "method": method, "dataset": dataset, "reported": float(value)}
            for t in raw["tables"] for method, values in t["rows"].items() for dataset, value in values.items()]
    return pd.DataFrame(rows)


def reported_vs_reproduced(paper: str, ours: pd.DataFrame, titles: dict[str, str] | None = None) -> pd.DataFrame:
    """The paper's rows with our numbers beside them.

    ours: one row per (method, dataset) that ran, with `mean`, `std` (accuracy in %), `folds`,
    `data` (which data produced the number, in words) and `preset`; `dataset` is the base name
    ("ckplus" for "synth-ckplus"). Rows that did not run say so.
    """
    table = load_reported(paper).merge(ours, on=["method", "dataset"], how="left")
    ran = table["mean"].notna()
    table["reproduced"] = [f"{m:.2f} ± {s:.2f} ({int(n)} fold{'s' if n != 1 else ''})" if r else "not run"
                           for m, s, n, r in zip(table["mean"], table["std"].fillna(0.0), table["folds"].fillna(0), ran)]
    table["our data"] = table["data"].where(ran, "")
    table["preset"] = table["preset"].where(ran, "")
    if titles:
        table["method"] = table["method"].map(lambda m: titles.get(m, m))
    table["reported"] = table["reported"].map(lambda v: f"{v:.2f} (reported)")
    return table[["table", "dataset", "method", "reported", "reproduced", "our data", "preset"]]
