"""The EIFN experiment: EFN, EIFN* and EIFN (Tables 1-2), each pre-trained on the other dataset and
fine-tuned per fold.

    cfg = EIFNConfig.from_preset("smoke", fold=3)
    result = run(cfg)

Two stages (Sec. 3.1). Stage 1 trains the whole network on every image of the other dataset (CK+
for Oulu-CASIA and back: the protocol's `pretrain_on`), once per method, and is reused by every
fold that pre-trains on the same data (its run is keyed on the data: `pretrain_run_name`). It runs
at a constant learning rate (the paper states no schedule for it) with no validation split, and
keeps its last epoch. Stage 2 keeps I, E and the identity FC1, starts new classifiers (other
expressions, other subjects) and fine-tunes on the fold's training split, lr / 10 every 20 epochs.
The lambdas of Eq. 5 follow the dataset a stage trains on: (1e-4, 1, 6) on Oulu-CASIA, (1e-4, 2, 1)
on CK+, exactly as Sec. 3.1 lists them for both orders.

Epochs: the paper's training set is every training image rotated by -15..15 degrees in 5-degree
steps and flipped, "14 times larger than the original", so its epoch is a pass over 14 N images
(N training images): ceil(14 N / 100) SGD steps, and "lr / 10 every 20 epochs" falls every
20 x ceil(14 N / 100) steps. With `expand=True` (the paper preset) each epoch, in both stages,
visits every (image, rotation, flip) triple once (`ferlib.data.expand.ExpandedDataset`), which is
that count. With `expand=False` (the smoke preset, a deviation) each epoch draws one random
rotation and flip per image: N samples, a fourteenth of an epoch.

`paper`: 64x64 faces, VGG-16, SGD batch 100, momentum 0.9, lr 0.01, weight decay 5e-4, FC1 of 512.
`smoke`: 48 px, VGG-16-BN at a sixteenth of its width, FC1 of 64, a short pre-training, for the
CPU and CI.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ferlib.data.cache import FERDataset, ImageCache
from ferlib.data.expand import expand_fold, expand_if
from ferlib.data.registry import base_name
from ferlib.data.transforms import make_transform
from ferlib.engine import EngineConfig, fit, make_loader, seed_everything
from ferlib.errors import FerlibError
from ferlib.experiments.common import (FoldData, MethodFold, MethodsResult, ProtocolData, config_from_preset,
                                       load_pretraining_data, load_protocol_data, make_fold, name_list, ours_for_table, parse_methods,
                                       probe_rows, resolve_folds, synth_only, train_fold)
from ferlib.models.eifn import EIFN, EIFNTask

PAPER = "eifn"
METHODS = {"efn": "efn", "eifn-star": "eifn-star", "eifn": "eifn"}   # method name -> EIFN mode
METHOD_TITLES = {"efn": "EFN (baseline)", "eifn-star": "EIFN*", "eifn": "EIFN"}
TRANSFERRED = ("I.", "E.", "identity.fc1.")   # what stage 2 keeps from stage 1
# the settings stage 1 depends on (not the fold, the fine-tuning schedule or the target's other settings)
PRETRAIN_FIELDS = ("preset", "pretrained", "seed", "lr", "momentum", "weight_decay", "centre_lr", "lambdas_ckplus",
                   "lambdas_oulu", "size", "width_divisor", "identity_dim", "pretrain_epochs", "batch_size", "scale",
                   "batch_norm", "classifier_lr_mult", "expand")

PRESETS = {
    # CPU / CI: 48 px, VGG-16-BN at 1/16 width, FC1 of 64, 3 pre-training and 16 fine-tuning epochs
    # (lr / 10 after 12), batch 16, the expression classifier at 3x the learning rate, one random
    # rotation and flip per image per epoch (see the chapter's Deviations).
    "smoke": dict(patience=0, min_epochs=0, size=48, width_divisor=16, identity_dim=64, pretrain_epochs=3, epochs=16,
                  lr_step=12,
                  batch_size=16, scale=1.0, batch_norm=True, classifier_lr_mult=3.0, expand=False),
    # CPU study: the smoke network, 6 pre-training epochs, fine-tuning with early stopping (patience 10, at
    # most 60 epochs, lr / 10 every 20), never stopped before epoch 20: every run reaches its first lr
    # step, after which validation accuracy often rises again (measured: 4 of the 39 study runs kept an
    # epoch >= 20 that patience 10 alone would have cut off at epoch 13-16).
    "study": dict(size=48, width_divisor=16, identity_dim=64, pretrain_epochs=6, epochs=60, patience=10,
                  min_epochs=20, lr_step=20,
                  batch_size=16, scale=1.0, batch_norm=True, classifier_lr_mult=3.0, expand=False),
    # GPU: Sec. 3.1 (the epoch counts are not stated: 30 pre-training, 60 fine-tuning assumed); an epoch
    # is one pass over the 14 rotated and flipped copies of every training image.
    "paper": dict(patience=0, min_epochs=0, size=64, width_divisor=1, identity_dim=512, pretrain_epochs=30, epochs=60,
                  lr_step=20,
                  batch_size=100, scale=1.0, batch_norm=False, classifier_lr_mult=1.0, expand=True),
}


@dataclass(frozen=True)
class EIFNConfig:
    """Everything an EIFN chapter run depends on; the notebook's parameters map onto these fields."""

    preset: str = "smoke"
    dataset: str = "synth-ckplus"   # synth-<preset>, or a real dataset name (ckplus, oulu) with data_root
    fold: int = 0
    folds: str = ""                 # "" runs `fold`; "all" every fold; "0,3" those
    methods: str = "efn,eifn-star,eifn"
    pretrain: bool = True           # stage 1 on the protocol's `pretrain_on` dataset
    pretrain_root: str | None = None  # data_root of the pre-training dataset when it is a real one
    pretrained: str | None = None   # a local torchvision VGG-16 state_dict (ImageNet); None: from scratch
    table_datasets: str = "synth-oulu"  # also run for Tables 1-2 (no figures); "" for none
    seed: int = 0
    data_root: str | None = None
    device: str = "auto"
    out_dir: str = "results"
    # the paper's constants (Sec. 3.1)
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    centre_lr: float = 0.5          # Wen et al.'s alpha for the centre update
    lambdas_ckplus: tuple[float, float, float] = (1e-4, 2.0, 1.0)   # (lambda1, lambda2, lambda3) training on CK+
    lambdas_oulu: tuple[float, float, float] = (1e-4, 1.0, 6.0)     # ... training on Oulu-CASIA
    # set by the preset
    size: int = 48
    width_divisor: int = 16
    identity_dim: int = 64
    pretrain_epochs: int = 3
    epochs: int = 16
    patience: int = 0               # early stopping: epochs without a better val accuracy (0: run all `epochs`)
    min_epochs: int = 0             # ... but never before this many epochs
    lr_step: int = 12
    batch_size: int = 16
    scale: float = 1.0
    batch_norm: bool = True         # VGG-16-BN (smoke: from scratch plain VGG-16 does not learn); paper: VGG-16
    classifier_lr_mult: float = 3.0   # the expression classifier's lr / lr (paper: 1)
    expand: bool = False            # True: an epoch (both stages) visits each of the 14 rotated / flipped
                                    # copies of every training image once (the paper's, 14 N samples);
                                    # False: one random copy per image (N); lr_step counts these epochs

    @classmethod
    def from_preset(cls, preset: str = "smoke", **overrides) -> "EIFNConfig":
        return config_from_preset(cls, PRESETS, preset, **overrides)

    def method_list(self) -> list[str]:
        return parse_methods(self.methods, METHODS)

    def table_dataset_list(self) -> list[str]:
        return name_list(self.table_datasets, exclude=self.dataset)

    def lambdas_for(self, dataset: str) -> tuple[float, float, float]:
        """Eq. 5's (lambda1, lambda2, lambda3) for a stage that trains on `dataset` (Sec. 3.1)."""
        name = base_name(dataset)
        if name not in ("ckplus", "oulu"):
            raise FerlibError(f"EIFN's lambdas are given for CK+ and Oulu-CASIA only, not {dataset}")
        return self.lambdas_ckplus if name == "ckplus" else self.lambdas_oulu

    def run_name(self, method: str, fold: int) -> str:
        stage1 = "pre" if self.pretrain else "nopre"
        return f"eifn-{method}-{self.dataset}-{self.preset}-{stage1}-seed{self.seed}-fold{fold}"


def load(cfg: EIFNConfig) -> ProtocolData:
    return load_protocol_data(cfg.dataset, PAPER, data_root=cfg.data_root, size=cfg.size, scale=cfg.scale,
                              seed=cfg.seed)


def pretrain_dataset(cfg: EIFNConfig, data: ProtocolData) -> str | None:
    return data.protocol.pretrain_on if cfg.pretrain else None


def load_pretraining(cfg: EIFNConfig, data: ProtocolData) -> ProtocolData | None:
    """The other dataset under EIFN's protocol, with the target's channels (CK+ is mostly grey,
    Oulu-CASIA VIS colour: grey images are repeated to RGB, RGB ones averaged to grey)."""
    name = pretrain_dataset(cfg, data)
    if name is None:
        return None
    return load_pretraining_data(name, PAPER, pretrain_root=cfg.pretrain_root, size=cfg.size, scale=cfg.scale,
                                 seed=cfg.seed, channels=data.loaded.images.shape[-1],
                                 why=f"EIFN pre-trains {cfg.dataset} on {name} (Sec. 3.1)")


def subject_classes(dataset: FERDataset) -> torch.Tensor:
    """Dataset subject index -> identity class among `dataset`'s own subjects; -1 for the others."""
    lookup = torch.full((len(dataset.subject_names),), -1, dtype=torch.long)
    present = np.unique(dataset.subjects)
    lookup[torch.as_tensor(present)] = torch.arange(len(present))
    return lookup


def build_task(cfg: EIFNConfig, method: str, num_expressions: int, subjects: torch.Tensor, in_channels: int,
               dataset: str, lr_step: int | None) -> EIFNTask:
    model = EIFN(num_expressions, subjects, in_channels, cfg.size, cfg.width_divisor, cfg.identity_dim,
                 cfg.pretrained, mode=METHODS[method], batch_norm=cfg.batch_norm)
    return EIFNTask(model, lambdas=cfg.lambdas_for(dataset), lr=cfg.lr, momentum=cfg.momentum,
                    weight_decay=cfg.weight_decay, lr_step=lr_step, centre_lr=cfg.centre_lr,
                    classifier_lr_mult=cfg.classifier_lr_mult)


def pretrain_data_key(cfg: EIFNConfig, other: ProtocolData) -> dict:
    """What stage 1 trained on: the pre-training data's `source` sentence, `pretrain_root` (resolved),
    and digests of its images and of its protocol rows (index, label, subject); `digest` sums them up."""
    root = None if cfg.pretrain_root is None else str(Path(os.path.expanduser(str(cfg.pretrain_root))).resolve())
    images = hashlib.sha256(np.ascontiguousarray(other.loaded.images).tobytes())
    images.update(str(other.loaded.images.shape).encode())
    rows = hashlib.sha256(json.dumps([other.manifest.index.astype(str).tolist(),
                                      other.manifest["label"].astype(str).tolist(),
                                      other.manifest["subject"].astype(str).tolist()]).encode())
    key = {"pretrain_dataset": other.protocol.dataset, "pretrain_source": other.source, "pretrain_root": root,
           "pretrain_images": images.hexdigest()[:16], "pretrain_rows": rows.hexdigest()[:16]}
    return key | {"digest": hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]}


def pretrain_run_name(cfg: EIFNConfig, method: str, other: ProtocolData, key: dict | None = None) -> str:
    """Stage 1's run: one per method, pre-training dataset, preset and seed, and per the data it trains on
    (`pretrain_data_key`, or `key` when already computed): another `pretrain_root` (or other images) is
    another run; the same data reuses it."""
    digest = (key or pretrain_data_key(cfg, other))["digest"]
    return f"eifn-pretrain-{method}-{other.protocol.dataset}-{cfg.preset}-seed{cfg.seed}-data{digest}"


def pretrain(cfg: EIFNConfig, method: str, other: ProtocolData, progress: bool = True) -> dict[str, torch.Tensor]:
    """Stage 1 on every image of `other` (every rotated / flipped copy of each with `expand`), at a
    constant learning rate, with no validation split, keeping the last epoch; returns the weights
    stage 2 keeps (I, E, identity FC1). Its run (`pretrain_run_name`) lives under out_dir like any
    other, so a second call on the same data (another fold) resumes the finished run."""
    cache = ImageCache.from_arrays(other.loaded.images, other.loaded.manifest)
    train = FERDataset(cache, other.manifest, other.protocol.classes,
                       transform=make_transform("eifn", train=True, size=cfg.size))
    train = expand_if(train, cfg.expand)
    seed_everything(cfg.seed)
    task = build_task(cfg, method, len(other.protocol.classes), subject_classes(train), other.loaded.images.shape[-1],
                      other.protocol.dataset, lr_step=None)
    key = pretrain_data_key(cfg, other)
    engine = EngineConfig(epochs=cfg.pretrain_epochs, seed=cfg.seed, device=cfg.device, out_dir=cfg.out_dir,
                          run_name=pretrain_run_name(cfg, method, other, key), progress=progress)
    settings = {k: v for k, v in asdict(cfg).items() if k in PRETRAIN_FIELDS}
    fit(task, make_loader(train, cfg.batch_size, shuffle=True, seed=cfg.seed), None, None, engine,
        config=settings | key | {"stage": "pretrain", "method": method, "channels": other.loaded.images.shape[-1]})
    return {k: v.detach().clone() for k, v in task.model.state_dict().items() if k.startswith(TRANSFERRED)}


def run_fold(cfg: EIFNConfig, data: ProtocolData, fold: int, method: str, stage1: dict | None = None,
             progress: bool = True, stage1_run: str | None = None) -> MethodFold:
    """Stage 2 on one fold, starting from `stage1` (the weights `pretrain` returned) when given;
    `stage1_run` (its run name, which names its data) goes into the run's config."""
    fold_data = make_fold(data, fold, transform="eifn", size=cfg.size)
    fold_data = expand_fold(fold_data, cfg.expand)  # paper: every (image, rotation, flip) once per epoch
    seed_everything(cfg.seed)
    task = build_task(cfg, method, len(fold_data.classes), subject_classes(fold_data.train), fold_data.in_channels,
                      data.protocol.dataset, lr_step=cfg.lr_step)
    if stage1 is not None:
        missing = set(stage1) - set(task.model.state_dict())
        if missing:
            raise FerlibError(f"stage-1 weights do not fit this model: {sorted(missing)[:3]}")
        task.model.load_state_dict(stage1, strict=False)
    record, test = train_fold(task, fold_data, cfg, cfg.run_name(method, fold),
                              asdict(cfg) | {"fold": fold, "method": method,
                                             "pretrained_on": stage1_run or (stage1 is not None)},
                              progress=progress, min_epochs=cfg.min_epochs)
    return MethodFold(method, fold, record, fold_data, task, test)


def run(cfg: EIFNConfig, data: ProtocolData | None = None, progress: bool = True) -> MethodsResult:
    """Every method of `cfg.methods`: stage 1 once, then stage 2 on every fold asked for."""
    data = data or load(cfg)
    folds = resolve_folds(cfg.fold, cfg.folds, data.protocol.k)
    other = load_pretraining(cfg, data)
    key = pretrain_data_key(cfg, other) if other is not None else None
    results = []
    for method in cfg.method_list():
        stage1 = pretrain(cfg, method, other, progress) if other is not None else None
        stage1_run = pretrain_run_name(cfg, method, other, key) if other is not None else None
        results += [run_fold(cfg, data, f, method, stage1, progress, stage1_run) for f in folds]
    return MethodsResult(cfg, results)


def replace_dataset(cfg: EIFNConfig, dataset: str) -> EIFNConfig:
    """The same run on another SynthFER dataset (the other table)."""
    synth_only(dataset, cfg.dataset)
    return dataclasses.replace(cfg, dataset=dataset, data_root=None, pretrain_root=None)


@torch.no_grad()
def branch_features(fold: MethodFold, split: str = "train_eval") -> dict[str, np.ndarray]:
    """Per image of a split: E's conv5_3 maps average-pooled (the expression branch's descriptor), I's
    likewise, the fused bilinear vector, and label / subject / sequence."""
    from ferlib.engine import eval_mode
    dataset = getattr(fold.data, split)
    out: dict[str, list] = {"expression branch": [], "identity branch": [], "fused bilinear": [], "label": []}
    model = fold.task.model
    with eval_mode([model]):
        for batch in make_loader(dataset, 256, shuffle=False):
            x = batch["image"].to(fold.task.device)
            f_id, f_exp = model.I(x), model.E(x)
            out["expression branch"].append(f_exp.mean((2, 3)).cpu())
            out["identity branch"].append(f_id.mean((2, 3)).cpu())
            out["fused bilinear"].append(model.fusion(f_id, f_exp).cpu())
            out["label"].append(batch["label"])
    arrays = {k: torch.cat(v).numpy() for k, v in out.items()}
    arrays["subject"] = np.asarray(dataset.subjects)
    arrays["sequence"] = fold.data.sequences(dataset)
    return arrays


def probe_table(folds: list[MethodFold], seed: int = 0) -> pd.DataFrame:
    """Identity-leakage probe (and, for contrast, an expression probe) on each method's expression
    branch, identity branch and fused vector, over the training subjects' held-out sequences."""
    train_eval = folds[0].data.train_eval
    representations = []
    for f in folds:
        feats = branch_features(f)
        representations += [(METHOD_TITLES[f.method], name, feats[name])
                            for name in ("expression branch", "identity branch", "fused bilinear")]
    table = pd.DataFrame(probe_rows(representations, train_eval.subjects, train_eval.labels,
                                    folds[0].data.sequences(train_eval), seed))
    table.insert(2, "dims", [x.shape[1] for _, _, x in representations])
    return table


__all__ = ["EIFNConfig", "PRESETS", "METHODS", "METHOD_TITLES", "load", "load_pretraining", "pretrain", "run_fold",
           "run", "replace_dataset", "branch_features", "probe_table", "ours_for_table", "FoldData",
           "subject_classes", "build_task", "pretrain_data_key", "pretrain_run_name"]


# ----------------------------------------------------------------------------- the chapter's views of the registry
# Pure rendering of registry records (`ferlib.study.results.study_frame`); nothing here trains.

def study_datasets(dataset: str) -> list[str]:
    """The datasets the chapter shows from the registry: `dataset`, then the default config's tables'."""
    defaults = EIFNConfig()
    return list(dict.fromkeys([dataset, defaults.dataset, *defaults.table_dataset_list()]))


def sweep_command(preset: str) -> str:
    return f"python -m ferlib sweep --papers {PAPER} --preset {preset}"


def fold_epochs(frame: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and method: each fold's kept (best validation) epoch, epochs run and test accuracy,
    in fold order, how many folds stopped early (the plateau) and how many kept their first epoch."""
    rows = []
    for (dataset, method), group in frame.groupby(["dataset", "method"], sort=False):
        group = group.sort_values("fold")
        rows.append({"dataset": dataset, "method": METHOD_TITLES.get(method, method), "folds": len(group),
                     "kept epoch per fold": ", ".join(str(int(e)) for e in group["best_epoch"]),
                     "epochs run per fold": ", ".join(str(int(e)) for e in group["epochs_run"]),
                     "test acc. % per fold": ", ".join(f"{a:.1f}" for a in group["acc"]),
                     "stopped early": int(group["stopped_early"].sum()),
                     "kept epoch 1": int((group["best_epoch"] == 1).sum()),
                     "chance %": round(float(group["chance"].iloc[0]), 1)})
    return pd.DataFrame(rows, columns=["dataset", "method", "folds", "kept epoch per fold", "epochs run per fold",
                                       "test acc. % per fold", "stopped early", "kept epoch 1", "chance %"])


def identity_probes(frame: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and method: the identity-leakage probe on the fused bilinear vector (what EIFN
    classifies from) over the folds that trained, mean ± std [95% interval] (n), and its mean ratio
    to chance."""
    from ferlib.study.results import ours
    probe = ours(frame, "identity_probe").merge(ours(frame, "identity_x_chance"), on=["method", "dataset"],
                                                suffixes=("", " ratio"))
    return pd.DataFrame({"dataset": probe["dataset"], "method": probe["method"].map(lambda m: METHOD_TITLES.get(m, m)),
                         "identity probe % (fused bilinear)": probe["cell"],
                         "x chance (mean)": probe["mean ratio"].round(2), "our data": probe["data"],
                         "preset": probe["preset"]})


def averaged_probes(frame: pd.DataFrame, dataset: str) -> tuple[pd.DataFrame, str]:
    """`probe_table`'s rows (expression branch, identity branch, fused bilinear per method) of every
    current record that trained on `dataset`, averaged over the folds (`results.averaged_probes`)."""
    from ferlib.study.results import averaged_probes
    return averaged_probes(frame, dataset, METHOD_TITLES, keep=("dims",))


def registry_cost(frame: pd.DataFrame) -> pd.DataFrame:
    """`results.registry_cost` with this paper's method titles (stage 1 included in the wall time where that job ran it)."""
    from ferlib.study import results
    return results.registry_cost(frame, METHOD_TITLES, "fine-tuning images/s (median)")


def in_method_order(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame`'s rows by dataset (in order of appearance), then in the tables' method order (EFN, EIFN*,
    EIFN), then fold."""
    datasets = list(dict.fromkeys(frame["dataset"]))
    methods = list(METHODS)
    key = pd.DataFrame({"d": frame["dataset"].map(datasets.index),
                        "m": frame["method"].map(lambda m: methods.index(m) if m in methods else len(methods)),
                        "f": frame["fold"]}, index=frame.index)
    return frame.loc[key.sort_values(["d", "m", "f"], kind="stable").index]
