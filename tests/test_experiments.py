"""The experiment layer: presets map onto frozen configs, folds resolve, bad input reads well."""

import dataclasses

import pytest

from ferlib.errors import DatasetNotFound, FerlibError, UnknownName
from ferlib.experiments import baseline
from ferlib.experiments.common import resolve_folds


def test_presets_fill_the_config_and_none_means_the_presets_value():
    smoke = baseline.BaselineConfig.from_preset("smoke", epochs=None, fold=3)
    paper = baseline.BaselineConfig.from_preset("paper")
    assert smoke.fold == 3 and smoke.epochs == baseline.PRESETS["smoke"]["epochs"]
    assert paper.size > smoke.size and paper.epochs > smoke.epochs
    assert baseline.BaselineConfig.from_preset("smoke", epochs=2).epochs == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        smoke.epochs = 1


def test_both_presets_set_the_same_fields():
    assert baseline.PRESETS["smoke"].keys() == baseline.PRESETS["paper"].keys()


def test_notebook_parameters_map_one_to_one_onto_the_config():
    from pathlib import Path
    source = (Path(__file__).resolve().parents[1] / "notebooks" / "baseline.py").read_text()
    cell = source.split('# %% tags=["parameters"]', 1)[1].split("# %%", 1)[0]
    names = {line.split("=", 1)[0].strip() for line in cell.splitlines() if "=" in line and not line.startswith("#")}
    fields = {f.name for f in dataclasses.fields(baseline.BaselineConfig)}
    assert names <= fields, names - fields
    assert {"dataset", "fold", "preset", "epochs", "seed", "data_root", "device", "out_dir"} <= names


def test_unknown_preset_and_parameter_are_named():
    with pytest.raises(UnknownName, match="valid presets are: paper, smoke"):
        baseline.BaselineConfig.from_preset("fast")
    with pytest.raises(FerlibError, match="no parameter"):
        baseline.BaselineConfig.from_preset("smoke", learning_rate=1)


def test_resolve_folds():
    assert resolve_folds(3, "", 10) == [3]
    assert resolve_folds(0, "all", 4) == [0, 1, 2, 3]
    assert resolve_folds(0, "1,2", 10) == [1, 2]
    with pytest.raises(FerlibError, match="valid folds are 0..9"):
        resolve_folds(10, "", 10)
    with pytest.raises(FerlibError, match="comma-separated"):
        resolve_folds(0, "first", 10)


def test_a_real_dataset_without_its_root_says_where_to_get_it(tmp_path):
    cfg = baseline.BaselineConfig.from_preset("smoke", dataset="ckplus", data_root=str(tmp_path / "nowhere"))
    with pytest.raises(DatasetNotFound) as err:
        baseline.load(cfg)
    message = str(err.value)
    assert "CK+" in message and "cohn-kanade-images" in message and "synth-ckplus" in message


def test_fold_out_of_range_stops_before_training(tmp_path):
    cfg = baseline.BaselineConfig.from_preset("smoke", fold=12, scale=0.2, out_dir=str(tmp_path))
    with pytest.raises(FerlibError, match="fold 12 is out of range"):
        baseline.run(cfg)
    assert not any(tmp_path.iterdir())


def test_smoke_run_learns_and_writes_its_record(tmp_path):
    cfg = baseline.BaselineConfig.from_preset("smoke", epochs=4, scale=0.2, size=32, width=8,
                                              out_dir=str(tmp_path))
    result = baseline.run(cfg, progress=False)
    record = result.folds[0].record
    losses = [h["train_loss"] for h in record["history"]]
    assert losses[-1] < losses[0]
    assert (tmp_path / cfg.run_name(0) / "record.json").exists()
    assert "synthetic" in result.source and result.summary["folds"].iloc[0] == 1
    probe = baseline.identity_leakage(result.folds[0])
    assert 0 <= probe["acc"] <= 1 and probe["n_subjects"] > 1


def test_the_same_config_gives_the_same_run_whatever_ran_before(tmp_path):
    import torch

    def once(noise_seed: int, out: str) -> list:
        torch.manual_seed(noise_seed)  # another process, or other work earlier in this one
        torch.rand(7)
        cfg = baseline.BaselineConfig.from_preset("smoke", epochs=2, scale=0.2, size=32, width=8,
                                                  out_dir=str(tmp_path / out))
        record = baseline.run(cfg, progress=False).folds[0].record
        return [h["train_loss"] for h in record["history"]] + [record["test"]["acc"]]

    assert once(1, "a") == once(2, "b")


def test_the_live_check_names_the_run_whose_loss_did_not_fall_or_whose_accuracy_is_at_chance():
    from ferlib.errors import FerlibError
    from ferlib.experiments.common import live_check
    good = {"run_name": "good", "history": [{"train_loss": 2.0}, {"train_loss": 1.5}], "test": {"acc": 0.5}}
    flat = {"run_name": "flat", "history": [{"train_loss": 2.0}, {"train_loss": 2.0}], "test": {"acc": 0.5}}
    chance_level = good | {"run_name": "at chance", "test": {"acc": 0.25}}
    assert "above chance (25.0%)" in live_check([good], chance=0.25)
    with pytest.raises(FerlibError, match="flat: the training loss did not fall"):
        live_check([good, flat], chance=0.25)
    with pytest.raises(FerlibError, match="at chance: test accuracy 25.0% is not above"):
        live_check([chance_level], chance=0.25)
    # a smoke scale too small to recognise anything: the loss alone, and the message says only that
    assert live_check([chance_level], chance=None) == "live smoke run: in all 1 run(s) the training loss fell"
    with pytest.raises(FerlibError, match="flat"):
        live_check([flat], chance=None)
