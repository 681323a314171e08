"""The TER-GAN experiment: the CNN baseline and TER-GAN on Oulu-CASIA's eight subject-independent folds
(Table 1), pre-trained on BU-4DFE.

    cfg = TERGANConfig.from_preset("smoke", fold=3)
    result = run(cfg)

What runs, in the paper's order (Sec. 3.1.4 and 4.1), with our reading of what it leaves open:

1. Pre-training on every image of the protocol's `pretrain_on` dataset (BU-4DFE's peak frames; a
   different population of people from the target's), once, reused by every fold (its runs are keyed
   on the data, as EIFN's): stage 1 trains G_es as an expression classifier and G_et as an identity
   classifier of BU-4DFE's people (`pretrain_stage1_epochs`), their heads are dropped, h1 and h2 become
   frozen copies of them, and stage 2 trains the whole TER-GAN on BU-4DFE (`pretrain_epochs`).
2. Per fold, on the training split of the target (Oulu-CASIA):
   - TER-GAN: stage 2 continues from the pre-trained TER-GAN (D^i gets a new last layer for the fold's
     training people; h1 and h2 stay BU-4DFE's stage-1 encoders) for `epochs` epochs, the last kept
     (nothing in stage 2 is a recognition score to select on).
   - CNN baseline ("the pre-trained encoder G_es", Sec. 4.5): BU-4DFE's stage-1 G_es fine-tuned as a
     supervised expression classifier on the fold (stage 1 on the target, G_et alongside), for the same
     `epochs`, the best validation epoch kept: it sees the fold's labels as directly as TER-GAN's D does.
   - Recognition (Sec. 4.4): the encoder frozen, a shallow classifier (one hidden layer) trained on its
     f(e) for `classifier_epochs`, selected on the validation split, tested once: the fold's record.

Each stage is an engine run under out_dir with its own run name, so a crashed fold resumes stage by
stage, and a finished pre-training is reused.

`paper`: 75 px crops, full widths, Adam 2e-4, batch 64; the epoch counts are not given (assumed).
`study`: 64 px (a multiple of 32: no padding), widths / 8, sized for the CPU. `smoke`: 32 px, widths / 16.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from ferlib.data.cache import FERDataset, ImageCache
from ferlib.data.transfer_pairs import WithIdentity, WithTargets
from ferlib.data.transforms import make_transform
from ferlib.engine import EngineConfig, fit, fit_and_test, make_loader, seed_everything
from ferlib.errors import FerlibError
from ferlib.experiments.common import (MethodFold, MethodsResult, ProtocolData, config_from_preset,
                                       load_pretraining_data, load_protocol_data, make_fold, parse_methods,
                                       resolve_folds, synth_only)
from ferlib.models.tergan import LAMBDAS, TERGAN, TERMS, RecognitionTask, StageOneTask, TERGANTask

PAPER = "tergan"
METHODS = ("baseline", "tergan", "tergan-no-erec")
METHOD_TITLES = {"baseline": "CNN (baseline)", "tergan": "TER-GAN", "tergan-no-erec": "TER-GAN without L_erec"}
GAN_METHODS = ("tergan", "tergan-no-erec")     # the methods whose fold trains stage 2 (and has transfers)
# The ablation of Eqs. 6-7 (not in the paper): L_erec (x_bar to x_s in pixels) dropped, lambda4 = 0, in the
# pre-training's stage 2 and the fold's alike; every other weight as the config's.
DROPPED_TERMS = {"tergan-no-erec": ("erec",)}
GRID_FOLDS = {"tergan-no-erec": (0, 1, 2)}       # the study grid runs the ablation on three of the eight folds
# the settings the pre-training depends on (not the fold or the fine-tuning's)
PRETRAIN_FIELDS = ("preset", "seed", "lr", "betas", "lambdas", "reversal", "size", "width_divisor",
                   "pretrain_stage1_epochs", "pretrain_epochs", "batch_size", "pretrain_scale")

PRESETS = {
    # CPU / CI: 32 px, widths / 16, a few epochs of each stage on a small share of the data (Oulu-CASIA's
    # 16 people of scale 0.2: two test people per fold, so that a transfer has two people)
    "smoke": dict(size=32, width_divisor=16, pretrain_stage1_epochs=1, pretrain_epochs=1, epochs=2,
                  classifier_epochs=10, patience=0, batch_size=16, scale=0.2, pretrain_scale=0.1, judge_epochs=3),
    # CPU study: 64 px, widths / 8; every stage long enough to flatten (see the chapter's curves)
    "study": dict(size=64, width_divisor=8, pretrain_stage1_epochs=10, pretrain_epochs=10, epochs=20,
                  classifier_epochs=40, patience=10, batch_size=32, scale=1.0, pretrain_scale=1.0, judge_epochs=30),
    # GPU: Sec. 4.1 (Adam 2e-4, batch 64, 75 x 75 crops, full widths); epochs not stated (assumed)
    "paper": dict(size=75, width_divisor=1, pretrain_stage1_epochs=30, pretrain_epochs=50, epochs=50,
                  classifier_epochs=100, patience=0, batch_size=64, scale=1.0, pretrain_scale=1.0, judge_epochs=30),
}


@dataclass(frozen=True)
class TERGANConfig:
    """Everything a TER-GAN chapter run depends on; the notebook's parameters map onto these fields."""

    preset: str = "smoke"
    dataset: str = "synth-oulu"     # synth-oulu, or oulu with data_root
    fold: int = 0
    folds: str = ""                 # "" runs `fold`; "all" every fold; "0,3" those
    methods: str = "baseline,tergan"
    pretrain: bool = True           # pre-train on the protocol's `pretrain_on` dataset (BU-4DFE)
    pretrain_root: str | None = None  # data_root of the pre-training dataset when it is a real one
    seed: int = 0
    data_root: str | None = None
    device: str = "auto"
    out_dir: str = "results"
    # the paper's constants (Sec. 4.1)
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)   # not stated: the DCGAN betas
    lambdas: tuple[float, ...] = LAMBDAS
    reversal: float = 1.0           # the gradient reversal layers' lambda (not stated)
    classifier_hidden: int = 64     # the shallow classifier (not specified)
    classifier_lr: float = 1e-3
    judge_epochs: int = 30          # the ground-truth scores' judges (plain CNNs on real images)
    # set by the preset
    size: int = 32
    width_divisor: int = 16
    pretrain_stage1_epochs: int = 1
    pretrain_epochs: int = 1
    epochs: int = 2
    classifier_epochs: int = 10
    patience: int = 0
    batch_size: int = 16
    scale: float = 0.2
    pretrain_scale: float = 0.1

    @classmethod
    def from_preset(cls, preset: str = "smoke", **overrides) -> "TERGANConfig":
        return config_from_preset(cls, PRESETS, preset, **overrides)

    def method_list(self) -> list[str]:
        return parse_methods(self.methods, METHODS)

    def table_dataset_list(self) -> list[str]:
        return []

    def run_name(self, method: str, fold: int, stage: str) -> str:
        pre = "pre" if self.pretrain else "nopre"
        return f"tergan-{method}-{stage}-{self.dataset}-{self.preset}-{pre}-seed{self.seed}-fold{fold}"


def load(cfg: TERGANConfig) -> ProtocolData:
    return load_protocol_data(cfg.dataset, PAPER, data_root=cfg.data_root, size=cfg.size, scale=cfg.scale,
                              seed=cfg.seed)


def load_pretraining(cfg: TERGANConfig, data: ProtocolData) -> ProtocolData | None:
    """BU-4DFE (the protocol's `pretrain_on`) under TER-GAN's protocol, with the target's channels."""
    name = data.protocol.pretrain_on if cfg.pretrain else None
    if name is None:
        return None
    return load_pretraining_data(name, PAPER, pretrain_root=cfg.pretrain_root, size=cfg.size, scale=cfg.pretrain_scale,
                                 seed=cfg.seed, channels=data.loaded.images.shape[-1],
                                 why=f"TER-GAN pre-trains on {name} (Sec. 4.1)")


def data_key(other: ProtocolData) -> str:
    """A digest of the images and protocol rows the pre-training reads (another copy: another run)."""
    h = hashlib.sha256(np.ascontiguousarray(other.loaded.images).tobytes())
    h.update(json.dumps([str(other.loaded.images.shape), other.manifest.index.astype(str).tolist(),
                         other.manifest["label"].astype(str).tolist(),
                         other.manifest["subject"].astype(str).tolist()]).encode())
    return h.hexdigest()[:8]


def build_model(cfg: TERGANConfig, num_expressions: int, num_identities: int, in_channels: int) -> TERGAN:
    return TERGAN(num_expressions, num_identities, in_channels, cfg.size, cfg.width_divisor, reversal=cfg.reversal)


def engine_for(cfg: TERGANConfig, epochs: int, run_name: str, progress: bool, patience: int = 0) -> EngineConfig:
    return EngineConfig(epochs=epochs, seed=cfg.seed, device=cfg.device, out_dir=cfg.out_dir, run_name=run_name,
                        progress=progress, patience=patience)


def method_lambdas(cfg: TERGANConfig, method: str) -> tuple[float, ...]:
    """Eq. 10's weights `method` trains with: the config's, with its `DROPPED_TERMS` set to 0."""
    if len(cfg.lambdas) != len(TERMS):
        raise FerlibError(f"lambdas: Eq. 10 has {len(TERMS)} weights ({', '.join(TERMS)}); got {tuple(cfg.lambdas)}")
    dropped = DROPPED_TERMS.get(method, ())
    return tuple(0.0 if term in dropped else float(w) for term, w in zip(TERMS, cfg.lambdas))


def pretrain_stem(cfg: TERGANConfig, other: ProtocolData, method: str = "tergan") -> str:
    """The pre-training runs' name stem: per pre-training dataset, preset, seed and data digest, and the
    ablation whose losses it trains with (the paper's losses: none; the baseline shares TER-GAN's)."""
    ablation = "".join(f"-no-{term}" for term in DROPPED_TERMS.get(method, ()))
    return f"tergan-pretrain{ablation}-{other.protocol.dataset}-{cfg.preset}-seed{cfg.seed}-data{data_key(other)}"


def pretrain(cfg: TERGANConfig, other: ProtocolData, in_channels: int, progress: bool = True,
             method: str = "tergan") -> dict:
    """Stages 1 and 2 on every image of `other` with `method`'s losses, last epochs kept: the pre-trained
    TER-GAN's state_dict (h1 and h2 hold the stage-1 encoders). Both runs are keyed on the data and
    reused; stage 1 (no lambdas in it) is the paper's for every method, stage 2 the method's own."""
    cache = ImageCache.from_arrays(other.loaded.images, other.loaded.manifest)
    train = FERDataset(cache, other.manifest, other.protocol.classes,
                       transform=make_transform("tergan", train=True, size=cfg.size))
    people = WithIdentity(train).num_identities
    settings = {k: v for k, v in asdict(cfg).items() if k in PRETRAIN_FIELDS}
    key = {"pretrain_dataset": other.protocol.dataset, "pretrain_source": other.source, "data": data_key(other)}
    ablated = {"lambdas": method_lambdas(cfg, method)} if DROPPED_TERMS.get(method) else {}
    seed_everything(cfg.seed)
    model = build_model(cfg, len(other.protocol.classes), people, in_channels)
    stage_one = StageOneTask(model, cfg.lr, cfg.betas)
    fit(stage_one, make_loader(WithIdentity(train), cfg.batch_size, shuffle=True, seed=cfg.seed), None, None,
        engine_for(cfg, cfg.pretrain_stage1_epochs, f"{pretrain_stem(cfg, other)}-stage1", progress),
        config=settings | key | {"stage": 1})
    model.freeze_stage_one()
    stage_two = TERGANTask(model, cfg.lr, cfg.betas, method_lambdas(cfg, method))
    fit(stage_two, make_loader(WithTargets(train, cfg.seed), cfg.batch_size, shuffle=True, seed=cfg.seed, drop_last=True),
        None, None, engine_for(cfg, cfg.pretrain_epochs, f"{pretrain_stem(cfg, other, method)}-stage2", progress),
        config=settings | key | ablated | {"stage": 2})
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def reversed_pairs_batch(batch: dict) -> dict:
    """A plain batch (image, label, subject) as TER-GAN's tasks read one, without a dataset: each face's
    person is its "identity" and its target is the batch reversed (the fingerprints' and benchmarks' batch)."""
    return batch | {"identity": batch["subject"],
                    "target": {"image": batch["image"].flip(0), "identity": batch["subject"].flip(0)}}


def load_matching(model: TERGAN, state: dict | None) -> list[str]:
    """Load every tensor of `state` whose shape fits `model` (D^i's last layer does not: other people);
    returns the names left at their initial values."""
    if state is None:
        return sorted(model.state_dict())
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fitting, strict=False)
    return sorted(set(own) - set(fitting))


def starting_model(cfg: TERGANConfig, method: str, num_expressions: int, num_identities: int, in_channels: int,
                   pretrained: dict | None) -> tuple[TERGAN, list[str]]:
    """A fold's model before it trains, and the names of its tensors not taken from `pretrained`: TER-GAN
    continues the pre-trained TER-GAN; the baseline's encoders are the pre-training's stage-1 encoders
    (h1 and h2), not stage 2's."""
    seed_everything(cfg.seed)
    model = build_model(cfg, num_expressions, num_identities, in_channels)
    fresh = load_matching(model, pretrained)
    if method == "baseline" and pretrained is not None:
        model.G_es.load_state_dict(model.h1.copy.state_dict())
        model.G_et.load_state_dict(model.h2.copy.state_dict())
    return model, fresh


def recognise(cfg: TERGANConfig, method: str, fold: int, fold_data, encoder, config: dict, progress: bool):
    """Sec. 4.4: a shallow classifier on the frozen encoder's f(e), selected on val, tested once."""
    seed_everything(cfg.seed)
    task = RecognitionTask(encoder, len(fold_data.classes), cfg.classifier_lr, cfg.classifier_hidden)
    loaders = (make_loader(fold_data.train, cfg.batch_size, shuffle=True, seed=cfg.seed),
               make_loader(fold_data.val, 256, shuffle=False), make_loader(fold_data.test, 256, shuffle=False))
    return task, *fit_and_test(task, *loaders, engine_for(cfg, cfg.classifier_epochs,
                                                          cfg.run_name(method, fold, "classifier"), progress,
                                                          cfg.patience), config=config,
                               class_names=fold_data.classes)


def run_fold(cfg: TERGANConfig, data: ProtocolData, fold: int, method: str, pretrained: dict | None = None,
             progress: bool = True, pretrained_on: str | None = None) -> MethodFold:
    """One method on one fold, from the pre-trained TER-GAN's weights (`pretrain`) when given."""
    fold_data = make_fold(data, fold, transform="tergan", size=cfg.size)
    train = WithTargets(fold_data.train, cfg.seed)
    model, fresh = starting_model(cfg, method, len(fold_data.classes), train.num_identities, fold_data.in_channels,
                                  pretrained)
    config = asdict(cfg) | {"fold": fold, "method": method, "pretrained_on": pretrained_on,
                            "fresh_tensors": len(fresh)}
    if DROPPED_TERMS.get(method):          # the weights this method trains with, in its runs' records
        config["lambdas"] = method_lambdas(cfg, method)
    identified = make_loader(WithIdentity(fold_data.train), cfg.batch_size, shuffle=True, seed=cfg.seed)
    stages = {}
    if method == "baseline":             # stage 1's G_es fine-tuned as a classifier, its best val epoch kept
        stages["stage1"] = fit(StageOneTask(model, cfg.lr, cfg.betas), identified,
                               make_loader(fold_data.val, 256, shuffle=False), None,
                               engine_for(cfg, cfg.epochs, cfg.run_name(method, fold, "stage1"), progress),
                               config=config | {"stage": 1})
    else:
        if pretrained is None:           # no pre-training: stage 1 on the fold first
            stages["stage1"] = fit(StageOneTask(model, cfg.lr, cfg.betas), identified, None, None,
                                   engine_for(cfg, cfg.epochs, cfg.run_name(method, fold, "stage1"), progress),
                                   config=config | {"stage": 1})
            model.freeze_stage_one()
        pairs = make_loader(train, cfg.batch_size, shuffle=True, seed=cfg.seed, drop_last=True)
        stages["stage2"] = fit(TERGANTask(model, cfg.lr, cfg.betas, method_lambdas(cfg, method)), pairs, None, None,
                               engine_for(cfg, cfg.epochs, cfg.run_name(method, fold, "stage2"), progress),
                               config=config | {"stage": 2})
    task, record, test = recognise(cfg, method, fold, fold_data, model.G_es, config | {"stage": "classifier"},
                                   progress)
    task.tergan = model                    # the whole TER-GAN, for the figures
    record["stages"] = {name: stage_record["history"] for name, stage_record in stages.items()}
    return MethodFold(method, fold, record, fold_data, task, test)


def run(cfg: TERGANConfig, data: ProtocolData | None = None, progress: bool = True) -> MethodsResult:
    """Every method of `cfg.methods` on every fold asked for, after its pre-training (one per set of
    losses: the baseline shares TER-GAN's)."""
    data = data or load(cfg)
    folds = resolve_folds(cfg.fold, cfg.folds, data.protocol.k)
    other = load_pretraining(cfg, data)
    on = None if other is None else f"{other.protocol.dataset} (data {data_key(other)})"
    pretrained: dict[str, dict | None] = {}
    out = []
    for m in cfg.method_list():
        stem = None if other is None else pretrain_stem(cfg, other, m)
        if stem not in pretrained:
            pretrained[stem] = None if other is None else pretrain(cfg, other, data.loaded.images.shape[-1], progress, m)
        out += [run_fold(cfg, data, f, m, pretrained[stem], progress, on) for f in folds]
    return MethodsResult(cfg, out)


def replace_dataset(cfg: TERGANConfig, dataset: str) -> TERGANConfig:
    synth_only(dataset, cfg.dataset)
    return dataclasses.replace(cfg, dataset=dataset, data_root=None, pretrain_root=None)


# ----------------------------------------------------------------------------- what a record measures

TRUTH_PAIRS = 64          # transfer pairs and editing pairs scored per fold


@torch.no_grad()
def encoded(model: TERGAN, dataset, batch: int = 256) -> dict[str, np.ndarray]:
    """f(e) and f(i) of every image of `dataset` (test-time transform), in eval mode."""
    from ferlib.engine import eval_mode
    out: dict[str, list] = {"f(e)": [], "f(i)": []}
    device = next(model.parameters()).device
    with eval_mode([model]):
        for chunk in make_loader(dataset, batch, shuffle=False):
            x = chunk["image"].to(device)
            out["f(e)"].append(model.G_es(x).cpu())
            out["f(i)"].append(model.G_et(x).cpu())
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def probe_table(fold: MethodFold, seed: int = 0) -> list[dict]:
    """The identity probe on f(e) (the paper's disentanglement claim: less identity is better) and the
    expression probe on f(i), over the training people's held-out sequences (`common.probe_rows`)."""
    from ferlib.experiments.common import probe_rows
    data = fold.data.train_eval
    feats = encoded(fold.task.tergan, data)
    title = METHOD_TITLES[fold.method]
    return probe_rows([(title, name, x) for name, x in feats.items()], data.subjects, data.labels,
                      fold.data.sequences(data), seed)


def judges_for(fold: MethodFold, pairs: dict[str, list[tuple[int, int]]], size: int, seed: int, epochs: int):
    """The expression judge (trained on the fold's training split: it never saw a test person) with its
    accuracy on the real test faces, the identity judge (trained on every real image of the test people:
    the copies of x_t and x_s are images it trained on, x_bar and the truth are not), and what each pair
    must be judged as (the source's expression, the target person)."""
    from ferlib.experiments.transfer_truth import fit_judge, model_inputs
    cache, m = fold.data.cache, fold.data.manifest

    def images(rows) -> torch.Tensor:
        stack = cache.images[[cache.position(r) for r in rows]]
        return model_inputs(stack.permute(0, 2, 3, 1).numpy(), size)

    classes = list(fold.data.classes)
    train_rows = m.index[m["split"] == "train"].to_numpy()
    test_rows = m.index[m["split"] == "test"].to_numpy()
    expression = fit_judge(images(train_rows), [classes.index(c) for c in m.loc[train_rows, "label"]],
                           len(classes), epochs=epochs, seed=seed)
    people = sorted(m.loc[test_rows, "subject"].astype(str).unique())
    person = lambda rows: [people.index(str(p)) for p in m.loc[rows, "subject"]]  # noqa: E731
    identity = fit_judge(images(test_rows), person(test_rows), len(people), epochs=epochs, seed=seed)
    own = {"expression judge on real test faces %": float(100 * np.mean(
        expression(images(test_rows)) == np.array([classes.index(c) for c in m.loc[test_rows, "label"]])))}
    expected = {kind: {"expression": [classes.index(m.loc[s_, "label"]) for s_, _ in kind_pairs],
                       "identity": person([t for _, t in kind_pairs])} for kind, kind_pairs in pairs.items()}
    return expression, identity, own, expected


def truth_scores(fold: MethodFold, loaded, size: int, seed: int = 0, n: int = TRUTH_PAIRS,
                 judge_epochs: int = 30, figures: bool = False) -> dict:
    """Transfer and editing on the test people, scored against SynthFER's truth (`transfer_truth`); with
    `figures`, the Fig. 3 and Fig. 4 grids (`transfer_grid`), as PNG text."""
    from ferlib.experiments import transfer_truth as tt
    m = fold.data.manifest
    test = m[m["split"] == "test"]
    if test["subject"].nunique() < 2:
        return {"unmeasured": f"the test split holds {test['subject'].nunique()} person: a transfer needs two"}
    pairs = {kind: tt.draw_pairs(test, n, kind, seed) for kind in tt.KINDS}
    expression, identity, own, expected = judges_for(fold, pairs, size, seed, judge_epochs)
    out = {"judges": own}
    for kind, kind_pairs in pairs.items():
        judges = {"expression": (expression, expected[kind]["expression"]),
                  "identity": (identity, expected[kind]["identity"])}
        out[kind] = tt.score(fold.task.tergan, loaded, kind_pairs, size, fold.task.device, judges=judges)
        if figures:
            out[kind]["grid"] = transfer_grid(fold, loaded, test, kind, size, seed)
    return out


def transfer_grid(fold: MethodFold, loaded, test: pd.DataFrame, kind: str, size: int, seed: int = 0) -> dict:
    """Fig. 3 (kind "transfer": one image per expression onto three other test people) or Fig. 4 ("editing":
    one test person given their own other expressions): inputs, x_bar and the truth as PNG text, with the
    sources' expressions."""
    from ferlib.experiments import transfer_truth as tt
    from ferlib.study.jobs import image_text
    sources, targets = tt.grid_rows(test, kind, seed)
    images = tt.grid(fold.task.tergan, loaded, sources, targets, size, fold.task.device)
    return {"source_label": [str(test.loc[r, "label"]) for r in sources],
            "source": [image_text(x) for x in images["source"]], "target": [image_text(x) for x in images["target"]],
            **{k: [[image_text(x) for x in row] for row in images[k]] for k in ("generated", "truth")}}


def extras(job_method: str, fold: MethodFold, cfg: TERGANConfig, loaded, figure_fold: bool) -> dict:
    """What the chapter's tables and figures need from one TER-GAN job: the probes on f(e) and f(i) and,
    for TER-GAN on SynthFER, the ground-truth scores of its transfers and edits (the figure fold: their
    images too)."""
    from ferlib.study.jobs import history_rows
    out = {"pretrained_on": fold.record["config"].get("pretrained_on"), "lambdas": method_lambdas(cfg, job_method),
           "probes": probe_table(fold, cfg.seed),
           "stages": {name: history_rows(h) for name, h in fold.record.get("stages", {}).items()}}
    if job_method in GAN_METHODS and loaded.synth is not None:
        out["truth"] = truth_scores(fold, loaded, cfg.size, cfg.seed, judge_epochs=cfg.judge_epochs,
                                    figures=figure_fold)
    return out


__all__ = ["TERGANConfig", "PRESETS", "METHODS", "METHOD_TITLES", "load", "load_pretraining", "pretrain", "run_fold",
           "run", "replace_dataset", "load_matching", "extras", "truth_scores", "probe_table"]


# ----------------------------------------------------------------------------- the chapter's views of the registry
# Pure rendering of registry records (`ferlib.study.results.study_frame`); nothing here trains.

ANSWERS = ("TER-GAN", "TER-GAN without L_erec", "copy x_t", "copy x_s", "blend", "truth")
TRUTH_METRICS = {"l1": "L1 to truth", "ssim": "SSIM to truth", "expression judge %": "expression judge %",
                 "identity judge %": "identity judge %", "l1 to x_t": "L1 to x_t", "l1 to x_s": "L1 to x_s"}
PIXEL_METRICS = ("l1", "ssim", "l1 to x_t", "l1 to x_s")     # shown x 100, in the claims' points
# The transfer claim, judged per fold against each trivial answer on the metric the answer cannot win by
# construction, and the ablation of L_erec measured the same way: (text, kind, answer, reference, metric,
# direction; +1: the answer higher than the reference is the claim)
TRUTH_CLAIMS = (
    ("x_bar is closer to the truth than copying the target (SSIM)", "transfer", "TER-GAN", "copy x_t", "ssim", +1),
    ("x_bar is closer to the truth than copying the source (SSIM)", "transfer", "TER-GAN", "copy x_s", "ssim", +1),
    ("x_bar shows the source's expression more often than the target image does", "transfer", "TER-GAN",
     "copy x_t", "expression judge %", +1),
    ("x_bar shows the target person more often than the source image does", "transfer", "TER-GAN", "copy x_s",
     "identity judge %", +1),
    ("an edit is closer to the truth than the unedited image (SSIM)", "editing", "TER-GAN", "copy x_t", "ssim", +1),
    ("an edit shows the source's expression more often than the unedited image does", "editing", "TER-GAN",
     "copy x_t", "expression judge %", +1),
    ("ablation: without L_erec x_bar is closer to the truth (SSIM)", "transfer", "TER-GAN without L_erec",
     "TER-GAN", "ssim", +1),
    ("ablation: without L_erec x_bar shows the source's expression more often", "transfer", "TER-GAN without L_erec",
     "TER-GAN", "expression judge %", +1),
)


def sweep_command(preset: str) -> str:
    return f"python -m ferlib sweep --papers {PAPER} --preset {preset}"


def truth_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (record, kind, answer) of the ground-truth scores: fold, seed, status, pairs and every
    metric (L1 in [-1, 1] units, SSIM, judges in %). The trivial answers come from TER-GAN's records; an
    ablation's record adds its own x_bar only (its pairs are the same: drawn from the fold's test split)."""
    rows = []
    for _, r in frame[frame["method"].isin(GAN_METHODS)].iterrows():
        truth = r["record"]["extras"].get("truth") or {}
        for kind in ("transfer", "editing"):
            for answer, scores in (truth.get(kind) or {}).get("scores", {}).items():
                if r["method"] != "tergan" and answer != "TER-GAN":
                    continue
                name = answer if r["method"] == "tergan" or answer != "TER-GAN" else METHOD_TITLES[r["method"]]
                rows.append({"dataset": r["dataset"], "fold": r["fold"], "seed": r["seed"], "status": r["status"],
                             "stale": r["stale"], "kind": kind, "answer": name, "pairs": truth[kind]["pairs"],
                             **{k: scores.get(k) for k in TRUTH_METRICS}})
    return pd.DataFrame(rows, columns=["dataset", "fold", "seed", "status", "stale", "kind", "answer", "pairs",
                                       *TRUTH_METRICS])


def truth_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per kind and answer, each metric's mean ± std over the current records' folds (n folds)."""
    from ferlib.study.results import summary_cell
    rows = truth_rows(frame)
    rows = rows[rows["stale"] == ""]
    if rows.empty:
        return pd.DataFrame()
    out = []
    for (kind, answer), group in rows.groupby(["kind", "answer"], sort=False):
        failed = int((group["status"] != "ok").sum())
        ok = group[group["status"] == "ok"]
        cells = {}
        for metric, title in TRUTH_METRICS.items():
            scaled = metric in PIXEL_METRICS
            values = [float(v) * (100 if scaled else 1) for v in ok[metric] if v is not None]
            cells[title + (" (x 100)" if scaled else "")] = summary_cell(values, failed, 0)
        out.append({"kind": kind, "answer": answer, "pairs per fold": int(group["pairs"].iloc[0]), **cells})
    table = pd.DataFrame(out)
    table["answer"] = pd.Categorical(table["answer"], ANSWERS, ordered=True)
    return table.sort_values(["kind", "answer"], key=lambda c: c if c.name == "answer" else c.map(
        {"transfer": 0, "editing": 1})).reset_index(drop=True)


def judged_truth_claims(frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """`TRUTH_CLAIMS` judged as paired differences over the folds (the answer's score minus the reference's
    on the same pairs), by the study's one rule (`claims.judge`); SSIM and L1 in points of 1/100."""
    from ferlib.data.registry import base_name
    from ferlib.study.claims import Claim, claims_table, judge
    rows = truth_rows(frame)
    rows = rows[(rows["stale"] == "") & (rows["dataset"].map(base_name) == base_name(dataset))]
    judged = []
    for text, kind, answer, reference, metric, direction in TRUTH_CLAIMS:
        claim = Claim(paper=PAPER, text=text, dataset=base_name(dataset), method=answer, baseline=reference,
                      metric=metric, direction=direction)
        scale = 100 if metric in PIXEL_METRICS else 1

        def side(answer):
            group = rows[(rows["kind"] == kind) & (rows["answer"] == answer)]
            ok = group[group["status"] == "ok"]
            return ({int(f): scale * float(v) for f, v in zip(ok["fold"], ok[metric])},
                    [int(f) for f in group.loc[group["status"] != "ok", "fold"]])

        (mine, failed), (theirs, failed_reference) = side(answer), side(reference)
        # a trivial answer never fails to train; a method may, on the folds the answer ran
        ran = set(mine) | set(failed)
        failed_reference = [f for f in failed_reference if f in ran] if reference in METHOD_TITLES.values() else []
        judged.append(judge(claim, mine, theirs, failed_method=failed, failed_baseline=failed_reference))
    return claims_table(judged)


def live_records(result: MethodsResult) -> list[dict]:
    """The runs of a live result whose training loss must fall, as `common.live_check` reads them: each
    fold's classifier and the baseline's stage 1 (a classifier too; stage 2's losses, a GAN's, need not
    fall)."""
    out = []
    for f in result.folds:
        if "stage1" in f.record.get("stages", {}):
            out.append({"run_name": f"{f.record['run_name']} (stage1)", "history": f.record["stages"]["stage1"]})
        out.append(f.record)
    return out


def stage_histories(frame: pd.DataFrame, method: str, stage: str) -> dict[str, list[dict]]:
    """{"fold k": that fold's per-epoch rows of `stage` ("stage1", "stage2")} over `method`'s records."""
    rows = frame[frame["method"] == method].sort_values("fold")
    return {f"fold {r.fold}": r.record["extras"]["stages"][stage] for r in rows.itertuples()
            if stage in r.record["extras"].get("stages", {})}


def grid_images(grid: dict) -> tuple[list[list[np.ndarray]], list[str], list[str]]:
    """A record's Fig. 3 or Fig. 4 grid (`transfer_grid`) as `plots.image_grid` rows: the sources on top,
    then per target its x_bar row and the truth's row, each starting with the target itself."""
    from ferlib.study.jobs import text_image
    sources = [text_image(t) for t in grid["source"]]
    blank = np.full_like(sources[0], 255)
    rows, names = [[blank, *sources]], ["x_s"]
    for k, target in enumerate(grid["target"]):
        face = text_image(target)
        rows.append([face, *[text_image(t) for t in grid["generated"][k]]])
        rows.append([blank, *[text_image(t) for t in grid["truth"][k]]])
        names += [f"x_t {k + 1} / x_bar", "truth"]
    return rows, names, ["x_t", *grid["source_label"]]


def judge_accuracy(frame: pd.DataFrame) -> pd.DataFrame:
    """Per TER-GAN record: how well the expression judge reads real test faces (what its verdict on
    x_bar is worth), beside the truth row's judge scores (the best an answer can get)."""
    out = []
    for r in frame[frame["method"] == "tergan"].sort_values("fold").itertuples():
        truth = r.record["extras"].get("truth") or {}
        if "judges" not in truth:
            continue
        out.append({"fold": r.fold, **{k: round(v, 1) for k, v in truth["judges"].items()},
                    **{f"truth's {j} judge % ({kind})": round(truth[kind]["scores"]["truth"][f"{j} judge %"], 1)
                       for kind in ("transfer", "editing") for j in ("expression", "identity")}})
    return pd.DataFrame(out)

