"""The IF-GAN experiment: the ResNet baseline, IF-GAN without attention, and IF-GAN, per fold.

    cfg = IFGANConfig.from_preset("smoke", fold=3)
    result = run(cfg)          # every method in cfg.methods, every fold asked for

`paper` is Sec. 4.3 (224 px, ResNet-101, batch 50, Adam 1e-4 with betas (0.9, 0.99), weight decay
1e-4, 100 epochs, lr x0.9 every 10 epochs), meant for a GPU. `smoke` runs the same code at 48 px
with a ResNet-18 trunk and narrow G and D for a few epochs, for the CPU and CI.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

import torch

from ferlib.data.cache import FERDataset, ImageCache
from ferlib.data.transforms import make_transform
from ferlib.engine import make_loader, seed_everything
from ferlib.experiments.common import (FoldData, MethodFold, MethodsResult, ProtocolData, config_from_preset,
                                       load_protocol_data, make_fold, name_list, ours_for_table, parse_methods,
                                       resolve_folds, synth_only, train_fold, with_extra_training_data)
from ferlib.experiments.common import identity_leakage as common_identity_leakage
from ferlib.models.ifgan import IFGAN, IFGANTask, average_targets

PAPER = "ifgan"
# method name -> (IFGAN mode, attention)
METHODS = {"resnet": ("baseline", False), "ifgan-noattention": ("ifgan", False), "ifgan": ("ifgan", True)}
METHOD_TITLES = {"resnet": "ResNet baseline", "ifgan-noattention": "IF-GAN w/o attention", "ifgan": "IF-GAN"}

PRESETS = {
    # CPU / CI: the ckplus-like preset at 48 px, a ResNet-18 trunk from scratch, narrow G and D, 10 epochs.
    # Island weight 0.01, not 1: from scratch on this data the paper's weight collapses E to one class
    # (ResNet smoke run, 10 epochs: 19% test accuracy with 1, 71% with 0.01); see the chapter's Deviations.
    "smoke": dict(scale=1.0, size=48, trunk_depth=18, gen_width=16, gen_depth=4, disc_width=16, epochs=10,
                  batch_size=32, lr=5e-4, lr_step=10, lambda_island=0.01, scales="synth-rafdb=0.06"),
    # GPU: Sec. 3.2 and 4.3 exactly.
    "paper": dict(scale=1.0, size=224, trunk_depth=101, gen_width=64, gen_depth=5, disc_width=64, epochs=100,
                  batch_size=50, lr=1e-4, lr_step=10, lambda_island=1.0, scales=""),
}


@dataclass(frozen=True)
class IFGANConfig:
    """Everything an IF-GAN chapter run depends on; the notebook's parameters map onto these fields."""

    preset: str = "smoke"
    dataset: str = "synth-ckplus"   # synth-<preset>, or a real dataset name with data_root
    fold: int = 0
    folds: str = ""                 # "" runs `fold`; "all" every fold; "0,3" those
    methods: str = "resnet,ifgan-noattention,ifgan"
    classifier_input: str = "candidate"  # what E sees of a tuple: "candidate" (default) or "pair"
    pretrained: str | None = None   # a local torchvision ResNet state_dict (ImageNet); None: from scratch
    extra_datasets: str = ""        # extra training data (Sec. 4.3), e.g. "synth-mmi,synth-bu3dfe" or "mmi=CACHE_DIR"
    table_datasets: str = "synth-bu3dfe,synth-mmi,synth-rafdb"  # also run for Tables 1-2 (no figures); "" for none
    averages_from: str = ""         # datasets whose images make I_AE instead of the training split (RAF-DB: posed ones)
    seed: int = 0
    data_root: str | None = None
    device: str = "auto"
    out_dir: str = "results"
    # the paper's constants (Sec. 3.2, 4.3)
    lambda_gan: float = 1.0
    lambda_l1: float = 20.0
    lambda_softmax: float = 10.0
    alpha: float = 0.03             # island loss, Eq. 5
    centre_lr: float = 0.5          # the island centres' own SGD learning rate (centre-loss practice)
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 1e-4
    lr_gamma: float = 0.9
    disc_layers: int = 3            # PatchGAN: 70x70 receptive field
    # set by the preset
    scale: float = 1.0
    size: int = 48
    trunk_depth: int = 18
    gen_width: int = 16
    gen_depth: int = 4
    disc_width: int = 16
    epochs: int = 10
    batch_size: int = 32
    lr: float = 5e-4
    lr_step: int = 10
    lambda_island: float = 0.01     # Eq. 1's l4: 1 in the paper preset
    scales: str = "synth-rafdb=0.06"  # per-dataset SynthFER scale overrides ("name=scale,..."); others: `scale`

    @classmethod
    def from_preset(cls, preset: str = "smoke", **overrides) -> "IFGANConfig":
        return config_from_preset(cls, PRESETS, preset, **overrides)

    def method_list(self) -> list[str]:
        return parse_methods(self.methods, METHODS)

    def scale_for(self, dataset: str) -> float:
        """The SynthFER scale of `dataset`: its entry in `scales`, else `scale`."""
        for item in (part.strip() for part in self.scales.split(",")):
            name, _, value = item.partition("=")
            if item and name.strip() == dataset:
                return float(value)
        return self.scale

    def table_dataset_list(self) -> list[str]:
        return name_list(self.table_datasets, exclude=self.dataset)

    def run_name(self, method: str, fold: int) -> str:
        return f"ifgan-{method}-{self.dataset}-{self.preset}-{self.classifier_input}-seed{self.seed}-fold{fold}"


FoldResult = MethodFold
IFGANResult = MethodsResult


def extra_dataset_roots(extra_datasets: str) -> list[tuple[str, str | None]]:
    """"synth-mmi,bu3dfe=/data/cache" -> [("synth-mmi", None), ("bu3dfe", "/data/cache")]."""
    pairs = []
    for item in (part.strip() for part in extra_datasets.split(",")):
        if item:
            name, _, root = item.partition("=")
            pairs.append((name.strip(), root.strip() or None))
    return pairs


def load(cfg: IFGANConfig) -> ProtocolData:
    """The dataset under IF-GAN's protocol, plus `extra_datasets` (each under its own IF-GAN rules)
    as training data in every fold."""
    data = load_protocol_data(cfg.dataset, PAPER, data_root=cfg.data_root, size=cfg.size,
                              scale=cfg.scale_for(cfg.dataset), seed=cfg.seed)
    extras = [load_protocol_data(name, PAPER, data_root=root, size=cfg.size, scale=cfg.scale_for(name), seed=cfg.seed)
              for name, root in extra_dataset_roots(cfg.extra_datasets)]
    return with_extra_training_data(data, extras)


def fold_averages(data: FoldData) -> torch.Tensor:
    """I_AE for this fold: per class, the mean of the training split's images (test-time transform).

    For an official-split dataset trained with extra (posed) datasets, RAF-DB in the paper, only the
    extra rows are averaged: "averaging all images with the same expression label in the three posed
    datasets" (Sec. 4.3); a class none of them has (neutral) gets the mean of all their images."""
    loader = make_loader(data.train_eval, 256, shuffle=False)
    images, labels = zip(*[(b["image"], b["label"]) for b in loader])
    images, labels = torch.cat(images), torch.cat(labels)
    if data.protocol.folds.kind == "official" and "extra" in data.manifest.columns:
        extra = torch.tensor(data.manifest.loc[data.train_eval.index, "extra"].astype(bool).to_numpy())
        if extra.any():
            images, labels = images[extra], labels[extra]
    return average_targets(images, labels, len(data.classes))


def build_task(cfg: IFGANConfig, method: str, num_classes: int, in_channels: int = 3) -> IFGANTask:
    """The model and its task for `method`, with zero average targets (`make_task` fills them)."""
    mode, attention = METHODS[method]
    model = IFGAN(num_classes, in_channels, cfg.size, mode=mode, attention=attention,
                  gen_width=cfg.gen_width, gen_depth=cfg.gen_depth, disc_width=cfg.disc_width,
                  disc_layers=cfg.disc_layers, trunk_depth=cfg.trunk_depth, pretrained=cfg.pretrained,
                  classifier_input=cfg.classifier_input, alpha=cfg.alpha)
    return IFGANTask(model, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                     lambdas=(cfg.lambda_gan, cfg.lambda_l1, cfg.lambda_softmax, cfg.lambda_island),
                     centre_lr=cfg.centre_lr, lr_step=cfg.lr_step, lr_gamma=cfg.lr_gamma)


def averages_of_datasets(cfg: IFGANConfig, classes: tuple[str, ...]) -> torch.Tensor:
    """I_AE from every protocol image of the datasets in `cfg.averages_from` (RAF-DB in the paper:
    "averaging all images with the same expression label in the three posed datasets"). A class
    none of them has (neutral) gets the mean of all their images."""
    images, labels = [], []
    for name, root in extra_dataset_roots(cfg.averages_from):
        data = load_protocol_data(name, PAPER, data_root=root, size=cfg.size, scale=cfg.scale_for(name), seed=cfg.seed)
        cache = ImageCache.from_arrays(data.loaded.images, data.loaded.manifest)
        rows = data.manifest[data.manifest["label"].isin(classes)]
        dataset = FERDataset(cache, rows, classes, transform=make_transform("ifgan", train=False, size=cfg.size))
        for batch in make_loader(dataset, 256, shuffle=False):
            images.append(batch["image"])
            labels.append(batch["label"])
    return average_targets(torch.cat(images), torch.cat(labels), len(classes))


def make_task(cfg: IFGANConfig, method: str, data: FoldData) -> IFGANTask:
    """The task for one fold: its classes and channels, and I_AE from its training split (or from
    `cfg.averages_from`)."""
    task = build_task(cfg, method, len(data.classes), data.in_channels)
    averages = averages_of_datasets(cfg, data.classes) if cfg.averages_from else fold_averages(data)
    task.model.averages.copy_(averages)
    return task


def run_fold(cfg: IFGANConfig, data: ProtocolData, fold: int, method: str, progress: bool = True) -> FoldResult:
    fold_data = make_fold(data, fold, transform="ifgan", size=cfg.size)
    seed_everything(cfg.seed)  # weights draw from torch's RNG: seed before building them
    task = make_task(cfg, method, fold_data)
    record, test = train_fold(task, fold_data, cfg, cfg.run_name(method, fold),
                              asdict(cfg) | {"fold": fold, "method": method}, progress=progress)
    return MethodFold(method, fold, record, fold_data, task, test)


def run(cfg: IFGANConfig, data: ProtocolData | None = None, progress: bool = True) -> IFGANResult:
    """Every method of `cfg.methods` on every fold asked for."""
    data = data or load(cfg)
    folds = resolve_folds(cfg.fold, cfg.folds, data.protocol.k)
    return MethodsResult(cfg, [run_fold(cfg, data, f, m, progress) for m in cfg.method_list() for f in folds])


POSED = ("synth-bu3dfe", "synth-ckplus", "synth-mmi")


def replace_dataset(cfg: IFGANConfig, dataset: str) -> IFGANConfig:
    """The same run on another SynthFER dataset (a table row). A real dataset needs its own
    `data_root`, so it runs as the notebook's `dataset` instead. An official-split dataset
    (RAF-DB) takes its average faces from the posed SynthFER datasets, as the paper does."""
    synth_only(dataset, cfg.dataset)
    from ferlib.data.protocols import load_protocol
    official = load_protocol(PAPER, dataset).folds.kind == "official"
    return dataclasses.replace(cfg, dataset=dataset, data_root=None, extra_datasets="",
                               averages_from=",".join(POSED) if official else "")


def identity_leakage(fold: FoldResult, seed: int = 0) -> dict:
    """The identity-leakage probe (`common.identity_leakage`) on this fold's classifier features."""
    return common_identity_leakage(fold.task, fold.data, seed)
