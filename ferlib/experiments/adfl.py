"""The ADFL experiment: the paper's baseline and ADFL, per fold (Table 2).

    cfg = ADFLConfig.from_preset("smoke", fold=3)
    result = run(cfg)          # every method in cfg.methods, every fold asked for

`paper` is Sec. 3.1: faces aligned to 128x110, ten 112x96 crops, the half-width SphereFace-20 of
Table 1, Adam (lr 1e-4, betas 0.9/0.999, eps 1e-8, weight decay 5e-4), batch 64, 100 epochs,
m = 0.35, s = 30, lambdas 1/10/1. `smoke` runs the same code at 48x41 crops of 55x47 faces with a
quarter of the width, for the CPU and CI.

Epochs: the paper trains on the ten crops of every training image, so its epoch is a pass over
10 x N crops (N training images, neutral ones included): 100 epochs are 100 x ceil(10 N / 64) Adam
steps. With `expand=True` (the paper preset) each epoch visits every (image, crop) pair once
(`ferlib.data.expand.ExpandedDataset`), which is that count. With `expand=False` (the smoke
preset, a deviation) each epoch draws one random crop per image: N samples, a tenth of an epoch.

The images are loaded at the aligned geometry (128x110 scaled to `size`), so the ADFL transform's
resize is the identity and its crops are the paper's ten.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from ferlib.data.cache import FERDataset
from ferlib.data.expand import expand_fold
from ferlib.data.transforms import PRESETS as TRANSFORMS
from ferlib.data.transforms import make_transform
from ferlib.engine import eval_mode, make_loader, seed_everything
from ferlib.errors import FerlibError
from ferlib.eval import holdout_split
from ferlib.experiments.common import (FoldData, MethodFold, MethodsResult, ProtocolData, config_from_preset,
                                       load_protocol_data, make_fold, name_list, ours_for_table, parse_methods,
                                       probe_rows, resolve_folds, synth_only, train_fold)
from ferlib.models.adfl import ADFL, ADFLTask

PAPER = "adfl"
METHODS = {"baseline": "baseline", "adfl": "adfl"}   # method name -> ADFL mode
METHOD_TITLES = {"baseline": "Baseline", "adfl": "ADFL"}
NEUTRAL = "neutral"

PRESETS = {
    # CPU / CI: 48x41 crops of 55x47 faces, a quarter of the paper's width, 25 epochs, lr 1e-3.
    # One random crop per image per epoch (expand=False): an epoch is a tenth of the paper's.
    "smoke": dict(patience=0, size=48, width=8, epochs=25, batch_size=32, lr=1e-3, scale=1.0, expand=False),
    # CPU study: the smoke geometry with early stopping (patience 10, at most 60 epochs).
    "study": dict(size=48, width=8, epochs=60, patience=10, batch_size=32, lr=1e-3, scale=1.0, expand=False),
    # GPU: Sec. 3.1 and Table 1; an epoch is one pass over all ten crops of every training image.
    "paper": dict(patience=0, size=112, width=32, epochs=100, batch_size=64, lr=1e-4, scale=1.0, expand=True),
}


@dataclass(frozen=True)
class ADFLConfig:
    """Everything an ADFL chapter run depends on; the notebook's parameters map onto these fields."""

    preset: str = "smoke"
    dataset: str = "synth-ckplus"   # synth-<preset>, or a real dataset name with data_root
    fold: int = 0
    folds: str = ""                 # "" runs `fold`; "all" every fold; "0,3" those
    methods: str = "baseline,adfl"
    test_crops: str = "ten"         # "ten": mean over the ten crops (Sec. 3.1); "centre": the centre crop
    table_datasets: str = "synth-mmi,synth-oulu"  # also run for Table 2 (no figures); "" for none
    seed: int = 0
    data_root: str | None = None
    device: str = "auto"
    out_dir: str = "results"
    # the paper's constants (Sec. 3.1)
    lambda_d: float = 1.0
    lambda_n: float = 10.0
    lambda_r: float = 1.0
    margin: float = 0.35            # AM-Softmax m (Eq. 6)
    scale_s: float = 30.0           # AM-Softmax s (Eq. 6)
    feature_dim: int = 256          # FC-256 of each branch and of B_r
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 5e-4
    # set by the preset
    size: int = 48                  # crop height fed to the network (112 in the paper)
    width: int = 8                  # Conv1's channels; Conv2, Conv3 and the branches double it (32 in the paper)
    epochs: int = 25
    patience: int = 0               # early stopping: epochs without a better val accuracy (0: run all `epochs`)
    batch_size: int = 32
    lr: float = 1e-3
    scale: float = 1.0              # SynthFER only: share of the preset's subjects
    expand: bool = False            # True: an epoch visits each of the ten crops of every training image once
                                    # (the paper's epoch, 10 N samples); False: one random crop per image (N)

    @classmethod
    def from_preset(cls, preset: str = "smoke", **overrides) -> "ADFLConfig":
        return config_from_preset(cls, PRESETS, preset, **overrides)

    def method_list(self) -> list[str]:
        return parse_methods(self.methods, METHODS)

    def table_dataset_list(self) -> list[str]:
        return name_list(self.table_datasets, exclude=self.dataset)

    @property
    def widths(self) -> tuple[int, int, int, int]:
        return self.width, 2 * self.width, 4 * self.width, 8 * self.width

    @property
    def aligned_size(self) -> tuple[int, int]:
        """The aligned face (128x110 in the paper) scaled to `size`: what the images are loaded at."""
        return TRANSFORMS["adfl"].geometry(self.size)[0]

    @property
    def crop_size(self) -> tuple[int, int]:
        """The network input (112x96 in the paper) scaled to `size`."""
        return TRANSFORMS["adfl"].geometry(self.size)[1]

    def run_name(self, method: str, fold: int) -> str:
        return f"adfl-{method}-{self.dataset}-{self.preset}-{self.test_crops}-seed{self.seed}-fold{fold}"


def load(cfg: ADFLConfig) -> ProtocolData:
    """The dataset under ADFL's protocol (expressive frames plus each sequence's first frame as neutral)."""
    data = load_protocol_data(cfg.dataset, PAPER, data_root=cfg.data_root, size=cfg.aligned_size, scale=cfg.scale,
                              seed=cfg.seed)
    if NEUTRAL not in data.protocol.classes:
        raise FerlibError(f"ADFL needs neutral faces, but the adfl protocol for {cfg.dataset} has no neutral class "
                          f"({', '.join(data.protocol.classes)}); see data_manifests/protocols/adfl.yaml")
    return data


def expressive_classes(classes: tuple[str, ...]) -> tuple[str, ...]:
    """The N-1 classes the splitter and the classifier predict."""
    return tuple(c for c in classes if c != NEUTRAL)


def build_task(cfg: ADFLConfig, method: str, classes: tuple[str, ...], in_channels: int = 3) -> ADFLTask:
    model = ADFL(len(classes), classes.index(NEUTRAL), in_channels, input_size=cfg.crop_size, widths=cfg.widths,
                 feature_dim=cfg.feature_dim, s=cfg.scale_s, m=cfg.margin, mode=METHODS[method])
    return ADFLTask(model, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay,
                    lambdas=(cfg.lambda_d, cfg.lambda_n, cfg.lambda_r))


def run_fold(cfg: ADFLConfig, data: ProtocolData, fold: int, method: str, progress: bool = True) -> MethodFold:
    if cfg.test_crops not in ("centre", "ten"):
        raise FerlibError(f"test_crops={cfg.test_crops!r}: 'ten' (the mean over the ten crops) or 'centre'")
    fold_data = make_fold(data, fold, transform="adfl", size=cfg.size, ten_crop=cfg.test_crops == "ten")
    fold_data = expand_fold(fold_data, cfg.expand)  # paper: every (image, crop) pair once per epoch
    seed_everything(cfg.seed)  # weights draw from torch's RNG: seed before building them
    task = build_task(cfg, method, fold_data.classes, fold_data.in_channels)
    record, test = train_fold(task, fold_data, cfg, cfg.run_name(method, fold),
                              asdict(cfg) | {"fold": fold, "method": method},
                              class_names=expressive_classes(fold_data.classes), progress=progress)
    return MethodFold(method, fold, record, fold_data, task, test)


def run(cfg: ADFLConfig, data: ProtocolData | None = None, progress: bool = True) -> MethodsResult:
    """Every method of `cfg.methods` on every fold asked for."""
    data = data or load(cfg)
    folds = resolve_folds(cfg.fold, cfg.folds, data.protocol.k)
    return MethodsResult(cfg, [run_fold(cfg, data, f, m, progress) for m in cfg.method_list() for f in folds])


def replace_dataset(cfg: ADFLConfig, dataset: str) -> ADFLConfig:
    """The same run on another SynthFER dataset (a Table 2 column)."""
    synth_only(dataset, cfg.dataset)
    return dataclasses.replace(cfg, dataset=dataset, data_root=None)


@torch.no_grad()
def encode_split(fold: MethodFold, split: str = "test") -> dict[str, np.ndarray]:
    """Every feature of Fig. 2 (f_e; for ADFL also f_n, f_r, h_r) for *every* image of a split,
    neutral ones included (single centre crop), with `label` (index in the N classes) and `subject`.

    split: "test" or "train_eval" (the training split with the test-time transform)."""
    dataset = single_crop(fold.data, split)
    out: dict[str, list] = {}
    with eval_mode([fold.task.model]):
        for batch in make_loader(dataset, 256, shuffle=False):
            feats = fold.task.model.encode(batch["image"].to(fold.task.device))
            for name, value in feats.items():
                if name != "classified":
                    out.setdefault(name, []).append(value.float().cpu())
            out.setdefault("label", []).append(batch["label"])
    arrays = {k: torch.cat(v).numpy() for k, v in out.items()}
    arrays["subject"] = np.asarray(dataset.subjects)
    arrays["sequence"] = fold.data.sequences(dataset)
    return arrays


def single_crop(data: FoldData, split: str) -> FERDataset:
    """`split` of a fold with one centre crop per image (ten-crop splits rebuilt without the crops)."""
    dataset = getattr(data, split)
    if not getattr(dataset.transform, "ten_crop", False):
        return dataset
    return FERDataset(data.cache, data.manifest.loc[dataset.index], data.classes,
                      transform=make_transform("adfl", train=False, size=dataset.transform.size))


FEATURE_TITLES = {"f_e": "f_e (expressive component, Eq. 1)", "f_n": "f_n (neutral component)",
                  "f_r": "f_r = f_e - f_n (Eq. 5)", "h_r": "FC(f_r): what the classifier reads"}


def probe_table(folds: list[MethodFold], seed: int = 0, pixel_components: int = 256) -> pd.DataFrame:
    """Identity and expression linear probes on every feature of every method of one fold.

    Features of the training subjects' images (neutral ones included), split by whole sequences:
    a linear probe learns subject identity (or the expression, neutral included) on some sequences
    and is scored on the held-out ones. The reference is raw pixels, reduced by a PCA fitted on the
    probe's training images to `pixel_components` dimensions (a 256-d feature's footing, and fast).
    The paper's story predicts high identity and low expression for f_n, the reverse for f_r."""
    from sklearn.decomposition import PCA
    first = folds[0]
    train_eval = first.data.train_eval
    subjects, sequences = np.asarray(train_eval.subjects), first.data.sequences(train_eval)
    tr, _ = holdout_split(subjects, test_fraction=0.3, seed=seed, groups=sequences)  # the split probe_rows uses
    pixels = np.stack([train_eval[i]["image"].numpy().ravel() for i in range(len(train_eval))])
    pca = PCA(min(pixel_components, len(tr), pixels.shape[1]), random_state=seed).fit(pixels[tr])
    representations = [("raw pixels", f"PCA to {pca.n_components_} dimensions", pca.transform(pixels))]
    for f in folds:
        feats = encode_split(f, "train_eval")
        representations += [(METHOD_TITLES[f.method], FEATURE_TITLES[name], feats[name])
                            for name in ("f_e", "f_n", "f_r", "h_r") if name in feats]
    rows = probe_rows(representations, subjects, train_eval.labels, sequences, seed)
    return pd.DataFrame(rows)


def disentanglement_summary(probes: pd.DataFrame) -> str:
    """In words: does `probe_table`'s ADFL part show the paper's story (f_n keeps identity and loses
    the expression; f_r keeps the expression)?"""
    rows = probes[probes["method"] == METHOD_TITLES["adfl"]].set_index("feature")
    if rows.empty:
        return "ADFL did not run: no disentangled features to check."
    e, n, r = (rows.loc[FEATURE_TITLES[k]] for k in ("f_e", "f_n", "f_r"))
    more_identity = n["identity x chance"] > max(e["identity x chance"], r["identity x chance"])
    less_expression = n["expression x chance"] < min(e["expression x chance"], r["expression x chance"])
    return (f"Identity: f_n {n['identity x chance']:.1f}x chance, f_e {e['identity x chance']:.1f}x, "
            f"f_r {r['identity x chance']:.1f}x: f_n carries {'the most' if more_identity else 'not the most'} "
            f"identity. Expression: f_n {n['expression x chance']:.2f}x chance, f_e {e['expression x chance']:.2f}x, "
            f"f_r {r['expression x chance']:.2f}x: f_n carries {'the least' if less_expression else 'not the least'} "
            f"expression. The paper's story predicts both; this run shows "
            f"{'both' if more_identity and less_expression else 'one' if more_identity or less_expression else 'neither'}.")


def dispeller_report(fold: MethodFold) -> dict:
    """How well the trained dispeller still names the expression from f_n on the test split, against
    chance (1/N): near chance means l_n fooled it, as Sec. 2.3 intends."""
    if fold.method != "adfl":
        raise FerlibError("only ADFL has a dispeller")
    feats = encode_split(fold, "test")
    with torch.no_grad():
        logits = fold.task.model.dispeller(torch.from_numpy(feats["f_n"]).to(fold.task.device)).cpu()
    probs = logits.softmax(1)
    acc = float((logits.argmax(1).numpy() == feats["label"]).mean())
    entropy = float(-(probs * probs.clamp_min(1e-12).log()).sum(1).mean() / np.log(probs.shape[1]))
    return {"dispeller acc": acc, "chance": 1 / probs.shape[1], "normalised entropy": entropy}


__all__ = ["ADFLConfig", "PRESETS", "METHODS", "METHOD_TITLES", "load", "build_task", "run_fold", "run",
           "replace_dataset", "encode_split", "probe_table", "disentanglement_summary", "dispeller_report", "ours_for_table", "resolve_folds",
           "FoldData", "expressive_classes"]


# ----------------------------------------------------------------------------- the chapter's views of the registry
# Pure rendering of registry records (`ferlib.study.results.study_frame`); nothing here trains.

def study_datasets(dataset: str) -> list[str]:
    """The datasets the chapter shows from the registry: `dataset`, then the default config's Table 2 columns."""
    defaults = ADFLConfig()
    return list(dict.fromkeys([dataset, defaults.dataset, *defaults.table_dataset_list()]))


def sweep_command(preset: str) -> str:
    return f"python -m ferlib sweep --papers {PAPER} --preset {preset}"


def averaged_probes(frame: pd.DataFrame, dataset: str) -> tuple[pd.DataFrame, str]:
    """`probe_table`'s rows of every current fold that trained on `dataset`, averaged over the folds
    (`results.averaged_probes`; raw pixels once per fold)."""
    from ferlib.study.results import averaged_probes
    return averaged_probes(frame, dataset, METHOD_TITLES)


def embedding_subjects(record: dict, data: ProtocolData) -> np.ndarray | None:
    """The test subject of each point of `record`'s embedding. A record's `subject` list covers every
    test image, neutral ones included, while its points are the classified (expressive) images only;
    the fold's test split, rebuilt from `data`, says which are neutral. None when `data` is not the
    record's data (its test subjects differ)."""
    embedding = record["extras"]["embedding"]
    subjects = np.asarray(embedding["subject"])
    if len(subjects) == len(embedding["xy"]):
        return subjects
    test = make_fold(data, record["job"]["fold"], transform="adfl", size=record["config"]["size"]).test
    if [str(s) for s in test.subjects] != list(subjects):
        return None
    neutral = test.classes.index(NEUTRAL)
    expressive = test.labels != neutral
    labels = test.labels[expressive] - (test.labels[expressive] > neutral)   # index among the N-1 classes
    if list(labels) != list(embedding["label"]):
        return None
    return subjects[expressive]


def registry_cost(frame: pd.DataFrame) -> pd.DataFrame:
    """`results.registry_cost` with this paper's method titles."""
    from ferlib.study import results
    return results.registry_cost(frame, METHOD_TITLES, "training images/s (median)")
