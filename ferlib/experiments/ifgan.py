"""The IF-GAN experiment: the ResNet baseline, IF-GAN without attention, and IF-GAN, per fold.

    cfg = IFGANConfig.from_preset("smoke", fold=3)
    result = run(cfg)          # every method in cfg.methods, every fold asked for

`paper` is Sec. 4.3 (224 px, ResNet-101, batch 50, Adam 1e-4 with betas (0.9, 0.99), weight decay
1e-4, 100 epochs, lr x0.9 every 10 epochs), meant for a GPU. `smoke` runs the same code at 48 px
with a ResNet-18 trunk and narrow G and D for a few epochs, for the CPU and CI.

Where the "average identity" targets I_AE come from is `averages_from` (`averages_choice`): by
default the paper's choice (Sec. 4.3), the fold's training split for the k-fold posed datasets
and the three posed datasets for RAF-DB, whose neutral I_AE is the mean of their neutral faces.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import asdict, dataclass

import pandas as pd
import torch

from ferlib.data.cache import FERDataset, ImageCache, neutral_rows
from ferlib.data.manifest import normalise_dtypes, validate_manifest
from ferlib.data.protocols import load_protocol, select_frames
from ferlib.data.registry import SYNTH_PREFIX, check_dataset_name, load_dataset
from ferlib.data.transforms import make_transform
from ferlib.engine import make_loader, seed_everything
from ferlib.errors import FerlibError
from ferlib.experiments.common import (FoldData, MethodFold, MethodsResult, ProtocolData, config_from_preset,
                                       load_protocol_data, make_fold, name_list, ours_for_table, parse_methods,
                                       resolve_folds, synth_only, train_fold, with_extra_training_data)
from ferlib.experiments.common import identity_leakage as common_identity_leakage
from ferlib.models.ifgan import IFGAN, IFGANTask, average_targets

PAPER = "ifgan"
# Fig. 6's query points of G's last self-attention module: (y, x) as fractions of the aligned face
ATTENTION_QUERIES = {"eye/brow": (0.36, 0.34), "mouth": (0.74, 0.5), "cheek": (0.6, 0.26)}
# method name -> (IFGAN mode, attention)
METHODS = {"resnet": ("baseline", False), "ifgan-noattention": ("ifgan", False), "ifgan": ("ifgan", True)}
METHOD_TITLES = {"resnet": "ResNet baseline", "ifgan-noattention": "IF-GAN w/o attention", "ifgan": "IF-GAN"}

PRESETS = {
    # CPU / CI: the ckplus-like preset at 48 px, a ResNet-18 trunk from scratch, narrow G and D, 10 epochs.
    # Island weight 0.01, not 1: from scratch on this data the paper's weight collapses E to one class
    # (ResNet smoke run, 10 epochs: 19% test accuracy with 1, 71% with 0.01); see the chapter's Deviations.
    "smoke": dict(patience=0, scale=1.0, size=48, trunk_depth=18, gen_width=16, gen_depth=4, disc_width=16, epochs=10,
                  batch_size=32, lr=5e-4, lr_step=10, lambda_island=0.01, scales="synth-rafdb=0.06"),
    # CPU study: the smoke networks with early stopping (patience 16, at most 40 epochs; IF-GAN reaches the cap).
    # Patience 8 was too short: the ResNet on synth-ckplus fold 1 stopped at epoch 15 (best 7, val 0.80,
    # test 54.3%); the same run with patience 16 found val 0.88 at epoch 18 (test 75.2%). Gaps of 6-8
    # epochs between new validation bests occurred in 4 of the 10 first records.
    "study": dict(scale=1.0, size=48, trunk_depth=18, gen_width=16, gen_depth=4, disc_width=16, epochs=40,
                  patience=16, batch_size=32, lr=5e-4, lr_step=10, lambda_island=0.01, scales="synth-rafdb=0.06"),
    # GPU: Sec. 3.2 and 4.3 exactly.
    "paper": dict(patience=0, scale=1.0, size=224, trunk_depth=101, gen_width=64, gen_depth=5, disc_width=64, epochs=100,
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
    averages_from: str = ""         # where I_AE comes from: "" the paper's choice, "train", or datasets (`averages_choice`)
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
    patience: int = 0               # early stopping: epochs without a better val accuracy (0: run all `epochs`)
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
    as training data in every fold. Checks `averages_from` first (`averages_choice`)."""
    averages_choice(cfg)
    data = load_protocol_data(cfg.dataset, PAPER, data_root=cfg.data_root, size=cfg.size,
                              scale=cfg.scale_for(cfg.dataset), seed=cfg.seed)
    extras = [load_protocol_data(name, PAPER, data_root=root, size=cfg.size, scale=cfg.scale_for(name), seed=cfg.seed)
              for name, root in extra_dataset_roots(cfg.extra_datasets)]
    return with_extra_training_data(data, extras)


def fold_averages(data: FoldData) -> torch.Tensor:
    """I_AE for this fold from its training split (`averages_from="train"`, the paper's choice for the
    posed datasets): per class, the mean of every training image (test-time transform), the extra
    datasets' rows included; the validation and test subjects never enter it."""
    loader = make_loader(data.train_eval, 256, shuffle=False)
    images, labels = zip(*[(b["image"], b["label"]) for b in loader])
    return average_targets(torch.cat(images), torch.cat(labels), len(data.classes))


TRAIN_SPLIT = "train"   # averages_from: the fold's training split
POSED = ("synth-bu3dfe", "synth-ckplus", "synth-mmi")
# what the I_AE of a dataset list are, recorded with every run that uses one (the resume check)
AVERAGING_RULE = "pooled per-class means of the IF-GAN protocol rows; neutral: the sequences' neutral faces"


def averages_choice(cfg: IFGANConfig) -> str:
    """Where `cfg`'s I_AE come from: "train" (the fold's training split) or a dataset list
    ("synth-bu3dfe,synth-ckplus,synth-mmi", "ckplus=CACHE,...", as `extra_dataset_roots` reads it).

    `averages_from=""` is the paper's choice (Sec. 4.3): "train" for a k-fold (posed) dataset, the
    three posed SynthFER datasets for an official-split SynthFER dataset (synth-rafdb); a real
    official-split dataset (RAF-DB) must name its posed datasets. A list that names the dataset
    under test is refused: its test subjects' images would enter I_AE. Other SynthFER presets are
    other people (every preset renders its own population), so they leak nothing."""
    text = str(cfg.averages_from or "").strip()
    if text == "":
        if load_protocol(PAPER, cfg.dataset).folds.kind != "official":
            return TRAIN_SPLIT
        if cfg.dataset.startswith(SYNTH_PREFIX):
            return ",".join(POSED)
        raise FerlibError(
            f"averages_from='' on {cfg.dataset}: the paper takes {cfg.dataset}'s average faces from the three posed "
            "datasets (Sec. 4.3), which need their own data: name them (averages_from='ckplus=CACHE,mmi=CACHE,"
            "bu3dfe=CACHE'; but a cache prepared for IF-GAN holds only peak frames, so it has no neutral face for "
            f"{cfg.dataset}'s neutral class), or give averages_from='{','.join(POSED)}' (SynthFER's posed datasets) "
            f"or averages_from='train' ({cfg.dataset}'s own training split)")
    if text == TRAIN_SPLIT:
        return TRAIN_SPLIT
    pairs = extra_dataset_roots(text)
    names = [name for name, _ in pairs]
    if TRAIN_SPLIT in names:
        raise FerlibError(f"averages_from={text!r}: 'train' (the fold's training split) stands alone; "
                          "give either 'train' or a list of datasets")
    for name in names:
        check_dataset_name(name)
    if cfg.dataset in names:
        raise FerlibError(
            f"averages_from={text!r} names {cfg.dataset}, the dataset under test: every image of it would enter "
            f"I_AE, its test subjects' too. Use averages_from='train' ({cfg.dataset}'s training split of each fold), "
            "'' (the paper's choice), or other datasets only")
    return text


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


def neutral_faces(manifest: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """The neutral faces behind a posed dataset's protocol `rows` (a subset of its full `manifest`),
    relabelled "neutral": the neutral frames (role neutral) of the protocol's sequences, the first
    frame of a CK+, MMI or BU-4DFE sequence, and the faces of the neutral-only sequences of the
    protocol's subjects, BU-3DFE's one neutral face per subject. Rows already in `rows` are left out."""
    neutral = neutral_rows(manifest)
    sequence, subject = manifest["sequence"].astype(str), manifest["subject"].astype(str)
    only_neutral = neutral.groupby(sequence).transform("all")
    keep = neutral & (sequence.isin(set(rows["sequence"].astype(str)))
                      | (only_neutral & subject.isin(set(rows["subject"].astype(str)))))
    return manifest[keep & ~manifest.index.isin(rows.index)].assign(label="neutral")


def averaging_rows(manifest: pd.DataFrame, rows: pd.DataFrame, classes: tuple[str, ...]) -> pd.DataFrame:
    """What one averaging dataset gives I_AE: its protocol `rows` whose label is one of `classes`,
    and, with neutral among `classes`, its `neutral_faces` (IF-GAN 4.3: RAF-DB's "average identity
    expressive/neutral images" come from the posed datasets). SynthFER's manifest keeps every frame;
    a real dataset prepared for IF-GAN keeps only the protocol's frames, so it has no neutral face."""
    parts = [rows[rows["label"].isin(classes)]]
    if "neutral" in classes:
        parts.append(neutral_faces(manifest, rows))
    return pd.concat(parts)


@functools.lru_cache(maxsize=16)
def averaging_sums(name: str, root, size: int, scale: float, seed: int,
                   classes: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class pixel sums (K,C,H,W) and image counts (K,) of one averaging dataset's
    `averaging_rows` (test-time transform), under IF-GAN's frame rules. Cached: every method and
    fold of a run, and every table row, averages the same datasets."""
    loaded = load_dataset(name, root, size=size, scale=scale, seed=seed, paper=PAPER)
    manifest = normalise_dtypes(validate_manifest(loaded.manifest))
    rows = select_frames(manifest, load_protocol(PAPER, name))  # the protocol's frames; no folds needed
    chosen = averaging_rows(manifest, rows, classes)
    cache = ImageCache.from_arrays(loaded.images, loaded.manifest)
    dataset = FERDataset(cache, chosen, classes, transform=make_transform("ifgan", train=False, size=size))
    sums = torch.zeros(len(classes), loaded.images.shape[-1], *loaded.images.shape[1:3])
    counts = torch.zeros(len(classes))
    for batch in make_loader(dataset, 256, shuffle=False):
        sums.index_add_(0, batch["label"], batch["image"])
        counts += torch.bincount(batch["label"], minlength=len(classes))
    return sums, counts


def averages_of_datasets(cfg: IFGANConfig, classes: tuple[str, ...]) -> torch.Tensor:
    """I_AE from the datasets `cfg.averages_from` lists: per class, the mean of all their
    `averaging_rows` pooled (Sec. 4.3, RAF-DB: "averaging all images with the same expression label
    in the three posed datasets"; its neutral I_AE is the mean of their neutral faces). A class that
    none of them has is refused."""
    pairs = extra_dataset_roots(cfg.averages_from)
    if not pairs:
        raise FerlibError("averages_of_datasets needs averages_from to list datasets; see averages_choice")
    parts = [averaging_sums(name, root, cfg.size, cfg.scale_for(name), cfg.seed, tuple(classes)) for name, root in pairs]
    sums, counts = sum(p[0] for p in parts), sum(p[1] for p in parts)
    missing = [c for c, n in zip(classes, counts.tolist()) if n == 0]
    if missing:
        raise FerlibError(
            f"I_AE for {', '.join(missing)}: none of the averaging datasets ({cfg.averages_from}) has such an image. "
            "A real dataset prepared for IF-GAN keeps only the protocol's peak frames, so it has no neutral face; "
            "name SynthFER datasets (their manifests keep every frame) or use averages_from='train'")
    return sums / counts[:, None, None, None]


def fold_targets(cfg: IFGANConfig, data: FoldData) -> torch.Tensor:
    """This fold's I_AE as `averages_choice(cfg)` says: its training split, or the datasets listed."""
    choice = averages_choice(cfg)
    if choice == TRAIN_SPLIT:
        return fold_averages(data)
    return averages_of_datasets(dataclasses.replace(cfg, averages_from=choice), data.classes)


def averages_source(cfg: IFGANConfig) -> str:
    """Where I_AE come from, in words (printed beside the averages figure)."""
    choice = averages_choice(cfg)
    if choice == TRAIN_SPLIT:
        return "I_AE: per class, the mean of the fold's training images"
    return (f"I_AE: per class, the mean of the IF-GAN protocol images of {choice}"
            " (neutral: the neutral faces of their sequences)")


def make_task(cfg: IFGANConfig, method: str, data: FoldData) -> IFGANTask:
    """The task for one fold: its classes and channels, and I_AE as `averages_choice` says."""
    task = build_task(cfg, method, len(data.classes), data.in_channels)
    task.model.averages.copy_(fold_targets(cfg, data))
    return task


def run_fold(cfg: IFGANConfig, data: ProtocolData, fold: int, method: str, progress: bool = True) -> FoldResult:
    fold_data = make_fold(data, fold, transform="ifgan", size=cfg.size)
    seed_everything(cfg.seed)  # weights draw from torch's RNG: seed before building them
    task = make_task(cfg, method, fold_data)
    config = asdict(cfg) | {"fold": fold, "method": method}
    if (choice := averages_choice(cfg)) != TRAIN_SPLIT:  # the record says which datasets and rule made I_AE
        config |= {"averages_from": choice, "averages_rule": AVERAGING_RULE}
    record, test = train_fold(task, fold_data, cfg, cfg.run_name(method, fold), config, progress=progress)
    return MethodFold(method, fold, record, fold_data, task, test)


def run(cfg: IFGANConfig, data: ProtocolData | None = None, progress: bool = True) -> IFGANResult:
    """Every method of `cfg.methods` on every fold asked for."""
    data = data or load(cfg)
    folds = resolve_folds(cfg.fold, cfg.folds, data.protocol.k)
    return MethodsResult(cfg, [run_fold(cfg, data, f, m, progress) for m in cfg.method_list() for f in folds])


def replace_dataset(cfg: IFGANConfig, dataset: str) -> IFGANConfig:
    """The same run on another SynthFER dataset (a table row). A real dataset needs its own
    `data_root`, so it runs as the notebook's `dataset` instead. An official-split dataset
    (RAF-DB) takes its average faces from the posed SynthFER datasets, as the paper does."""
    synth_only(dataset, cfg.dataset)
    official = load_protocol(PAPER, dataset).folds.kind == "official"
    return dataclasses.replace(cfg, dataset=dataset, data_root=None, extra_datasets="",
                               averages_from=",".join(POSED) if official else "")


def identity_leakage(fold: FoldResult, seed: int = 0) -> dict:
    """The identity-leakage probe (`common.identity_leakage`) on this fold's classifier features."""
    return common_identity_leakage(fold.task, fold.data, seed)


# ----------------------------------------------------------------------------- the chapter's registry views
# (pure rendering of `ferlib.study.results.study_frame` rows; nothing here trains or changes a record)

GAN_METHODS = ("ifgan-noattention", "ifgan")   # the methods whose records keep `extras["generator"]`


def sweep_command(preset: str) -> str:
    """The command that makes this paper's registry records at `preset`."""
    return f"python -m ferlib sweep --papers {PAPER} --preset {preset}"


def generator_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per record of a GAN method: G's mean L1 distance to the I_AE target on the test faces beside the
    input's own (copying the input), and the share of test faces G brings closer than the input is."""
    rows = []
    for r in frame[frame["method"].isin(GAN_METHODS)].sort_values(["dataset", "method", "fold"]).itertuples():
        g = r.record["extras"].get("generator")
        if g is None:
            continue
        rows.append({"dataset": r.dataset, "method": METHOD_TITLES.get(r.method, r.method), "fold": r.fold,
                     "L1 of G(input) to I_AE": round(g["l1_to_target"], 4),
                     "L1 of the input to I_AE": round(g["copy_l1_to_target"], 4),
                     "G closer": g["l1_to_target"] < g["copy_l1_to_target"],
                     "faces G brings closer %": round(100 * g["share_closer"], 1),
                     "status": r.status + (" (stale)" if r.stale else "")})
    return pd.DataFrame(rows, columns=["dataset", "method", "fold", "L1 of G(input) to I_AE", "L1 of the input to I_AE",
                                       "G closer", "faces G brings closer %", "status"])


def generator_summary(table: pd.DataFrame) -> list[str]:
    """One sentence per (dataset, method) of `generator_table`, and one in all: does G beat copying
    its input (a lower mean L1 to I_AE) on every fold?"""
    if table.empty:
        return ["no record of a GAN method holds the generator check yet"]
    lines = []
    for (dataset, method), group in table.groupby(["dataset", "method"], sort=False):
        behind = group.loc[~group["G closer"], "fold"].tolist()
        lines.append(f"{dataset}, {method}: G beats copying its input on "
                     + (f"every one of its {len(group)} fold(s)" if not behind else
                        f"{len(group) - len(behind)} of {len(group)} folds (not on fold(s) "
                        f"{', '.join(str(f) for f in behind)}, which count as failed to train)"))
    every = bool(table["G closer"].all())
    lines.append(f"in all: G beats copying its input on {'every' if every else 'not every'} fold of the "
                 f"{len(table)} record(s) ({int(table['G closer'].sum())} of {len(table)})")
    return lines


def gamma_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The learned attention scales gamma of every IF-GAN record, per module (0 at the start)."""
    rows = []
    for r in frame[frame["method"] == "ifgan"].sort_values(["dataset", "fold"]).itertuples():
        gamma = (r.record["extras"].get("attention") or {}).get("gamma")
        if gamma is not None:
            rows.append({"dataset": r.dataset, "fold": r.fold, **{f"gamma {k}": round(v, 4) for k, v in gamma.items()},
                         "status": r.status + (" (stale)" if r.stale else "")})
    return pd.DataFrame(rows)


def record_faces(record: dict) -> tuple[list, list]:
    """Fig. 5 from a record's `extras["faces"]`: rows (input, G(input), I_AE) of uint8 images, and
    each column's class name."""
    from ferlib.study.jobs import text_image
    faces, names = record["extras"]["faces"], record["test"]["class_names"]
    rows = [[text_image(t) for t in faces[k]] for k in ("input", "generated", "target")]
    return rows, [names[i] for i in faces["label"]]


def record_attention(record: dict) -> tuple[list, list]:
    """Fig. 6 from a record's `extras["attention"]`: per face (input, generated, one map per query),
    and the column names."""
    import numpy as np
    from ferlib.study.jobs import text_image
    att = record["extras"]["attention"]
    queries = list(att["queries"])
    rows = [[text_image(att["input"][i]), text_image(att["generated"][i]),
             *[np.asarray(att["maps"][q][i], dtype=float) for q in queries]] for i in range(len(att["input"]))]
    return rows, ["input", "generated", *queries]


def registry_cost(frame: pd.DataFrame) -> pd.DataFrame:
    """`results.registry_cost` with this paper's method titles."""
    from ferlib.study import results
    return results.registry_cost(frame, METHOD_TITLES, "training images/s (median)")
