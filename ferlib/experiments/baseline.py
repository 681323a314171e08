"""The plain CNN baseline experiment: the pattern every paper's experiment follows.

    cfg = BaselineConfig.from_preset("smoke", fold=3)
    result = run(cfg)

`smoke` is sized for the CPU and CI (a fraction of SynthFER, 48 px, a narrow network, a few
epochs); `paper` is the full-size setting meant for a GPU. Both run the same code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from ferlib.engine import seed_everything
from ferlib.experiments.common import (FoldData, ProtocolData, aggregate, config_from_preset, load_protocol_data,
                                       make_fold, resolve_folds, train_fold)
from ferlib.experiments.common import identity_leakage as common_identity_leakage
from ferlib.models.baseline import BaselineTask, PlainCNN

PAPER = "baseline"  # the protocol in data_manifests/protocols/baseline.yaml

PRESETS = {
    # CPU / CI: about half the ckplus-like subjects, 48 px, 16-channel first stage.
    "smoke": dict(patience=0, scale=0.5, size=48, width=16, epochs=30, batch_size=32, lr=2e-3, weight_decay=1e-4),
    # CPU study: the whole preset, trained to its plateau (early stopping, patience 10, at most 60 epochs).
    "study": dict(scale=1.0, size=48, width=16, epochs=60, patience=10, batch_size=32, lr=2e-3, weight_decay=1e-4),
    # GPU: the whole preset at 96 px, a 64-channel first stage, a long schedule.
    "paper": dict(patience=0, scale=1.0, size=96, width=64, epochs=60, batch_size=64, lr=1e-3, weight_decay=1e-4),
}


@dataclass(frozen=True)
class BaselineConfig:
    """Everything one baseline run depends on. The notebook's parameters map onto these fields."""

    preset: str = "smoke"
    dataset: str = "synth-ckplus"   # synth-<preset>, or a real dataset name with data_root
    fold: int = 0                   # test fold (0-based); the next fold validates, the rest train
    folds: str = ""                 # "" runs `fold`; "all" runs every fold; "0,3" runs those
    seed: int = 0
    data_root: str | None = None
    device: str = "auto"            # auto: CUDA when present, else CPU
    out_dir: str = "results"
    # set by the preset
    scale: float = 0.5              # SynthFER only: share of the preset's subjects
    size: int = 48                  # network input, px
    width: int = 16                 # PlainCNN first-stage channels
    epochs: int = 30
    patience: int = 0               # early stopping: epochs without a better val accuracy (0: run all `epochs`)
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4

    @classmethod
    def from_preset(cls, preset: str = "smoke", **overrides) -> "BaselineConfig":
        return config_from_preset(cls, PRESETS, preset, **overrides)

    def run_name(self, fold: int) -> str:
        return f"baseline-{self.dataset}-{self.preset}-seed{self.seed}-fold{fold}"


@dataclass
class FoldResult:
    fold: int
    record: dict          # the engine's run record (config, history, test metrics, ...)
    data: FoldData
    task: BaselineTask    # with the selected (best validation) weights loaded
    test: dict            # evaluate() on the test split: logits, labels, features, ...


@dataclass
class BaselineResult:
    config: BaselineConfig
    folds: list[FoldResult]
    summary: pd.DataFrame  # test accuracy over the folds: mean, std, 95% CI

    @property
    def source(self) -> str:
        return self.folds[0].data.source


def make_task(cfg: BaselineConfig, num_classes: int, in_channels: int) -> BaselineTask:
    model = PlainCNN(num_classes, in_channels=in_channels, width=cfg.width)
    return BaselineTask(model, lr=cfg.lr, weight_decay=cfg.weight_decay)


def run_fold(cfg: BaselineConfig, data: ProtocolData, fold: int, progress: bool = True) -> FoldResult:
    data = make_fold(data, fold, transform="baseline", size=cfg.size)
    seed_everything(cfg.seed)  # the weights' initialisation draws from torch's RNG: seed it first
    task = make_task(cfg, len(data.classes), data.in_channels)
    record, test = train_fold(task, data, cfg, cfg.run_name(fold), asdict(cfg) | {"fold": fold}, progress=progress)
    return FoldResult(fold, record, data, task, test)


def load(cfg: BaselineConfig) -> ProtocolData:
    """The dataset under the baseline protocol, with every subject's fold assigned."""
    return load_protocol_data(cfg.dataset, PAPER, data_root=cfg.data_root, size=cfg.size, scale=cfg.scale,
                              seed=cfg.seed)


def run(cfg: BaselineConfig, data: ProtocolData | None = None, progress: bool = True) -> BaselineResult:
    """Train and test every fold the config asks for; `data` from `load(cfg)` (loaded when None)."""
    data = data or load(cfg)
    folds = [run_fold(cfg, data, f, progress) for f in resolve_folds(cfg.fold, cfg.folds, data.protocol.k)]
    return BaselineResult(cfg, folds, aggregate([f.record for f in folds]))


def identity_leakage(fold: FoldResult, seed: int = 0) -> dict:
    """The identity-leakage probe (`common.identity_leakage`) on this fold's classifier features."""
    return common_identity_leakage(fold.task, fold.data, seed)
