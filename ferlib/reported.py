"""The papers' reported numbers, typed once in `data_manifests/reported/<paper>.yaml`, and the
"reported vs reproduced" table that puts ours beside them without ever passing theirs off as ours.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


def reproduced_cell(mean: float, std: float, folds: int) -> str:
    """"81.02 ± 3.10 (5 folds)"; with one fold the spread is unknown, not zero: "81.02 (1 fold, no spread)"."""
    if int(folds) < 2 or std is None or not np.isfinite(std):
        return f"{mean:.2f} ({int(folds)} fold, no spread)"
    return f"{mean:.2f} ± {std:.2f} ({int(folds)} folds)"


def reported_vs_reproduced(paper: str, ours: pd.DataFrame, titles: dict[str, str] | None = None) -> pd.DataFrame:
    """The paper's rows with our numbers beside them.

    ours: one row per (method, dataset) that ran, with `mean`, `std` (accuracy in %), `folds`,
    `data` (which data produced the number, in words) and `preset`; `dataset` is the base name
    ("ckplus" for "synth-ckplus"). Rows that did not run say so.
    """
    table = load_reported(paper).merge(ours, on=["method", "dataset"], how="left")
    ran = table["mean"].notna()
    table["reproduced"] = [reproduced_cell(m, s, n) if r else "not run"
                           for m, s, n, r in zip(table["mean"], table["std"], table["folds"].fillna(0), ran)]
    table["our data"] = table["data"].where(ran, "")
    table["preset"] = table["preset"].where(ran, "")
    if titles:
        table["method"] = table["method"].map(lambda m: titles.get(m, m))
    table["reported"] = table["reported"].map(lambda v: f"{v:.2f} (reported)")
    return table[["table", "dataset", "method", "reported", "reproduced", "our data", "preset"]]


def reported_confusion(paper: str, dataset: str, method: str | None = None) -> tuple[int, pd.DataFrame] | None:
    """(table number, the paper's confusion matrix in % with rows true and columns predicted, labelled
    by class) for `dataset` (base name), or None when the paper reports none."""
    path = REPORTED_DIR / f"{paper}.yaml"
    raw = yaml.safe_load(path.read_text()) if path.is_file() else {}
    for entry in raw.get("confusion", []):
        if entry["dataset"] == dataset and (method is None or entry["method"] == method):
            classes = list(entry["classes"])
            rows = [[float(v) for v in row] for row in entry["rows"]]
            if len(rows) != len(classes) or any(len(r) != len(classes) for r in rows):
                raise FerlibError(f"{path}: the confusion matrix of table {entry['table']} is not "
                                  f"{len(classes)}x{len(classes)}")
            return int(entry["table"]), pd.DataFrame(rows, index=classes, columns=classes)
    return None


def confusion_beside_reported(paper: str, dataset: str, ours: "np.ndarray", classes, method: str | None = None):
    """Per true class: the paper's recall (diagonal, % of the class, "reported") beside ours, in the
    paper's class order; None when the paper reports no confusion matrix for `dataset`."""
    import numpy as np
    found = reported_confusion(paper, dataset, method)
    if found is None:
        return None
    table, reported = found
    ours = np.asarray(ours, dtype=float)
    totals = ours.sum(axis=1, keepdims=True)
    ours_pct = pd.DataFrame(100 * np.divide(ours, totals, out=np.full_like(ours, np.nan), where=totals > 0),
                            index=list(classes), columns=list(classes)).loc[reported.index, reported.columns]
    return pd.DataFrame({"class": reported.index,
                         f"reported (Table {table}) %": [f"{reported.loc[c, c]:.2f} (reported)" for c in reported.index],
                         "ours %": [round(ours_pct.loc[c, c], 1) for c in reported.index],
                         "test images": [int(totals[list(classes).index(c), 0]) for c in reported.index]})
