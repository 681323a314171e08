"""The "Bring your own data" page's tables and text, generated from the YAMLs so they cannot drift.

`data_manifests/datasets/<name>.yaml` says who owns each dataset and how its copy is laid out;
`data_manifests/protocols/<paper>.yaml` says what each paper takes from it and how many images
that should give. This module turns both into the tables and command lines the book shows.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ferlib.data.protocols import PAPERS, load_protocol, read_protocol_file
from ferlib.data.registry import DATASETS, REAL_DATASETS

STUDY_PAPERS = tuple(p for p in PAPERS if p != "baseline")
NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"


def has_chapter(paper: str) -> bool:
    """Whether `notebooks/<paper>.ipynb` exists yet (each paper's chapter lands with its issue)."""
    return (NOTEBOOKS_DIR / f"{paper}.ipynb").is_file()


def markdown_table(table: pd.DataFrame) -> str:
    """A pipe table (GitHub/MyST flavour) of `table`'s columns, every cell as text."""
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def papers_using(dataset: str) -> list[str]:
    """The papers (baseline last) whose protocol names `dataset`."""
    return [p for p in STUDY_PAPERS + ("baseline",) if dataset in read_protocol_file(p)["datasets"]]


def dataset_table() -> pd.DataFrame:
    """One row per real dataset: who owns it, how to ask, what it holds, which papers use it."""
    rows = []
    for name in REAL_DATASETS:
        info = DATASETS[name]
        facts = "; ".join(f"{k.replace('_', ' ')} {v}" for k, v in info.facts.items())
        rows.append({"dataset": name, "name": info.display_name, "owner": info.owner, "how to get it": info.request,
                     "what it holds": facts, "papers": ", ".join(papers_using(name))})
    return pd.DataFrame(rows).set_index("dataset")


def prepare_command(dataset: str, paper: str, root: str = "/path/to/copy", cache: str | None = None) -> str:
    cache = cache or f"~/ferlib-cache/{dataset}-{paper}"
    return f"python -m ferlib data prepare {dataset} --root {root} --protocol {paper} --cache {cache}"


def pretrained_by(dataset: str, paper: str) -> str | None:
    """The dataset `paper`'s protocol pre-trains on `dataset` for, when `dataset` is read for pre-training
    only (it has no pre-training of its own: TER-GAN's BU-4DFE, before Oulu-CASIA); else None. EIFN's CK+
    and Oulu-CASIA pre-train each other and are chapter datasets both."""
    datasets = read_protocol_file(paper)["datasets"]
    if datasets.get(dataset, {}).get("pretrain_on"):
        return None
    return next((name for name, rules in datasets.items() if rules.get("pretrain_on") == dataset), None)


def notebook_command(dataset: str, paper: str, cache: str | None = None) -> str:
    cache = cache or f"~/ferlib-cache/{dataset}-{paper}"
    target = pretrained_by(dataset, paper)
    if target is not None:                    # a pre-training set: the chapter runs on the dataset it serves
        return (f"papermill notebooks/{paper}.ipynb -p dataset {target} -p data_root ~/ferlib-cache/{target}-{paper} "
                f"-p pretrain_root {cache}")
    return f"papermill notebooks/{paper}.ipynb -p dataset {dataset} -p data_root {cache}"


def protocol_table(dataset: str | None = None) -> pd.DataFrame:
    """Every (paper, dataset) protocol: frames, classes, folds, and the counts the paper implies."""
    rows = []
    for paper in STUDY_PAPERS + ("baseline",):
        for name in read_protocol_file(paper)["datasets"]:
            if dataset is not None and name != dataset:
                continue
            protocol = load_protocol(paper, name)
            expected = {k: v for k, v in protocol.expected.items() if k != "classes"}
            rows.append({"paper": paper, "dataset": name, "frames": protocol.frames.describe(),
                         "classes": len(protocol.classes), "folds": protocol.folds.describe(),
                         "pre-trained on": protocol.pretrain_on or "-",
                         "expected": ", ".join(f"{v:,} {k}" for k, v in expected.items() if v is not None) or "-"})
    return pd.DataFrame(rows)


def dataset_section(dataset: str) -> str:
    """Markdown for one dataset: owner, layout, the one command per paper, expected counts, the notebook."""
    info = DATASETS[dataset]
    lines = [f"### {info.display_name} (`{dataset}`)", "",
             f"**Who to ask.** {info.owner}. To get it, {info.request}.", "",
             "**The layout the adapter reads** (your copy, unmodified):", "", "```text", info.layout, "```", ""]
    if info.notes:
        lines += [info.notes, ""]
    lines += ["**Prepare it, then run a chapter on it** (one command each, per paper whose chapter is in "
              "this version):", "", "```bash"]
    for paper in papers_using(dataset):
        if has_chapter(paper):
            lines += [prepare_command(dataset, paper), notebook_command(dataset, paper)]
    lines += ["```", "", "**What each paper takes from it, and the counts to expect:**", ""]
    table = protocol_table(dataset).drop(columns="dataset")
    lines += [markdown_table(table)]
    return "\n".join(lines)
