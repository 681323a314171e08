"""Every chapter's parameter handling with the README's `-p fold 3` and its default table datasets:
the notebook's own parameters and set-up cells run (nothing trains), an official-split table dataset
takes its one split, and a fold that does not exist is refused there, before any training."""

from pathlib import Path

import pytest

from ferlib.errors import FerlibError

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CHAPTERS = ("baseline", "ifgan", "adfl", "eifn")


def setup_cells(paper: str) -> tuple[str, str]:
    """The source of the `parameters` cell and of the code cell after it (imports, config, plan)."""
    source = (NOTEBOOKS / f"{paper}.py").read_text()
    parameters, rest = source.split('# %% tags=["parameters"]', 1)[1].split("\n# %%", 1)
    setup = rest.split("\n", 1)[1].split("\n# %%", 1)[0]
    return parameters, setup


def run_setup(paper: str, tmp_path, **parameters) -> dict:
    """Execute the chapter's parameters cell, then papermill's injected values, then its set-up cell."""
    cell, setup = setup_cells(paper)
    namespace: dict = {}
    exec(cell, namespace)
    namespace.update(out_dir=str(tmp_path), **parameters)
    exec(setup, namespace)
    return namespace


def test_ean_whose_datasets_have_one_split_refuses_fold_3_clearly_and_runs_it_on_the_stand_in(tmp_path):
    with pytest.raises(FerlibError, match="fold 3 is out of range: this protocol has 1 folds"):
        run_setup("ean", tmp_path, fold=3)
    ns = run_setup("ean", tmp_path, fold=3, dataset="synth-bu3dfe", table_datasets="synth-ferplus")
    assert ns["cfg"].fold == 3 and [(t.dataset, t.fold) for t in ns["plan"].tables] == [("synth-ferplus", 0)]


@pytest.mark.parametrize("paper", CHAPTERS)
def test_the_readme_fold_runs_every_default_table_dataset(paper, tmp_path, capsys):
    ns = run_setup(paper, tmp_path, fold=3)
    assert ns["cfg"].fold == 3
    plan = ns.get("plan")
    if paper == "baseline":
        return
    assert [t.dataset for t in plan.tables] == ns["cfg"].table_dataset_list()
    for table in plan.tables:
        official = table.dataset == "synth-rafdb"
        assert table.fold == (0 if official else 3), table.dataset
    if "synth-rafdb" in ns["cfg"].table_dataset_list():
        assert "synth-rafdb has one official train/test split" in capsys.readouterr().out


@pytest.mark.parametrize("paper", (*CHAPTERS, "ean"))
def test_a_fold_the_protocol_lacks_is_refused_before_training(paper, tmp_path, monkeypatch):
    import ferlib.engine
    monkeypatch.setattr(ferlib.engine, "fit_and_test", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(FerlibError, match="fold 10 is out of range"):
        run_setup(paper, tmp_path, fold=10)


def test_the_official_split_dataset_itself_has_only_fold_0(tmp_path):
    with pytest.raises(FerlibError, match="fold 1 is out of range: this protocol has 1 folds"):
        run_setup("ifgan", tmp_path, dataset="synth-rafdb", fold=1)


def test_an_official_split_table_row_ignores_folds_all(tmp_path, capsys):
    ns = run_setup("ifgan", tmp_path, folds="all")
    rafdb = [t for t in ns["plan"].tables if t.dataset == "synth-rafdb"]
    assert rafdb and (rafdb[0].fold, rafdb[0].folds) == (0, "")
    assert [t.folds for t in ns["plan"].tables if t.dataset != "synth-rafdb"] == ["all", "all"]
