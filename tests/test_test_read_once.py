"""The test split is read exactly once, after training, on every path a chapter takes: the engine's
`fit`, `common.train_fold`, and each experiment's `run_fold` (the engine's tripwire for `fit` is in
test_engine.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.data import Dataset

from ferlib.experiments import adfl, baseline, common, eifn, ifgan

pytestmark = pytest.mark.usefixtures("one_thread")


class CountedReads(Dataset):
    """A split that counts the images read from it, and notes how much training had been read
    when its first image was."""

    def __init__(self, inner, log: dict, name: str):
        self.inner, self.log, self.name = inner, log, name
        log[name] = 0

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        if self.name == "test" and self.log["test"] == 0:
            self.log["train_reads_before_test"] = self.log["train"]
        self.log[self.name] += 1
        return self.inner[i]

    def __getattr__(self, name):   # subjects, labels, index, subject_names, ... of the real split
        if name in ("inner", "log", "name"):
            raise AttributeError(name)
        return getattr(self.inner, name)


def counted(make_fold, log: dict):
    def make(*args, **kwargs):
        fold = make_fold(*args, **kwargs)
        return dataclasses.replace(fold, **{s: CountedReads(getattr(fold, s), log, s) for s in ("train", "val", "test")})
    return make


def assert_read_once(log: dict, epochs: int, train_size: int, test_size: int) -> None:
    assert log["test"] == test_size, f"the test split was read {log['test'] / test_size:g} times"
    assert log["train_reads_before_test"] == epochs * train_size, "the test split was read before training ended"


def check(module, monkeypatch, run_fold, cfg):
    log: dict = {}
    monkeypatch.setattr(module, "make_fold", counted(module.make_fold, log))
    result = run_fold()
    fold = result.data
    assert_read_once(log, cfg.epochs, len(fold.train), len(fold.test))
    assert result.record["test"]["n"] == result.test["n"] > 0
    return result


def test_train_fold_reads_the_test_split_once(tmp_path, monkeypatch):
    cfg = baseline.BaselineConfig.from_preset("smoke", scale=0.2, size=16, width=4, epochs=2, out_dir=str(tmp_path))
    data = baseline.load(cfg)
    log: dict = {}
    fold = counted(common.make_fold, log)(data, 0, transform="baseline", size=cfg.size)
    torch.manual_seed(0)
    task = baseline.make_task(cfg, len(fold.classes), fold.in_channels)
    record, test = common.train_fold(task, fold, cfg, "once", {"x": 1}, progress=False)
    assert_read_once(log, cfg.epochs, len(fold.train), len(fold.test))
    assert record["test"]["acc"] == test["acc"] and test["logits"].shape[0] == len(fold.test)


def test_baseline_run_fold_reads_the_test_split_once(tmp_path, monkeypatch):
    cfg = baseline.BaselineConfig.from_preset("smoke", scale=0.2, size=16, width=4, epochs=2, out_dir=str(tmp_path))
    data = baseline.load(cfg)
    check(baseline, monkeypatch, lambda: baseline.run_fold(cfg, data, 0, progress=False), cfg)


def test_ifgan_run_fold_reads_the_test_split_once(tmp_path, monkeypatch):
    cfg = ifgan.IFGANConfig.from_preset("smoke", scale=0.15, size=32, gen_width=4, gen_depth=3, disc_width=4,
                                        epochs=1, batch_size=16, out_dir=str(tmp_path))
    data = ifgan.load(cfg)
    check(ifgan, monkeypatch, lambda: ifgan.run_fold(cfg, data, 0, "ifgan", progress=False), cfg)


def test_adfl_run_fold_reads_the_test_split_once(tmp_path, monkeypatch):
    cfg = adfl.ADFLConfig.from_preset("smoke", scale=0.15, size=24, width=4, epochs=1, out_dir=str(tmp_path))
    data = adfl.load(cfg)
    check(adfl, monkeypatch, lambda: adfl.run_fold(cfg, data, 0, "adfl", progress=False), cfg)


def test_eifn_run_fold_reads_the_test_split_once(tmp_path, monkeypatch):
    cfg = eifn.EIFNConfig.from_preset("smoke", scale=0.15, size=32, epochs=1, pretrain=False, out_dir=str(tmp_path))
    data = eifn.load(cfg)
    check(eifn, monkeypatch, lambda: eifn.run_fold(cfg, data, 0, "eifn", progress=False), cfg)
