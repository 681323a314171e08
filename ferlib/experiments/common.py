"""What every experiment does the same way: load a dataset under a paper's protocol, cut one
fold into train/val/test datasets, run one or several folds, aggregate them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from ferlib.data.cache import FERDataset, ImageCache
from ferlib.data.protocols import Protocol, apply_protocol, load_protocol, split_fold
from ferlib.data.registry import LoadedDataset, load_dataset
from ferlib.data.transforms import make_transform
from ferlib.errors import FerlibError, UnknownName
from ferlib.eval import aggregate_folds


def config_from_preset(cls, presets: dict[str, dict[str, Any]], preset: str, **overrides):
    """Build a frozen config: the preset's values, then every override that is not None.

    A notebook's parameters cell passes all its parameters here; `None` means "the preset's".
    """
    if preset not in presets:
        raise UnknownName("preset", preset, presets)
    names = {f.name for f in fields(cls)}
    unknown = set(overrides) - names
    if unknown:
        raise FerlibError(f"{cls.__name__} has no parameter(s) {sorted(unknown)}; valid: {sorted(names)}")
    values = {**presets[preset], **{k: v for k, v in overrides.items() if v is not None}}
    return cls(preset=preset, **values)


@dataclass
class FoldData:
    """One fold of one dataset under one protocol, ready for DataLoaders."""

    train: FERDataset
    val: FERDataset
    test: FERDataset
    train_eval: FERDataset      # the training split with the test-time transform (probes, t-SNE)
    classes: tuple[str, ...]
    source: str                 # which data this is, in words (printed under every table)
    manifest: pd.DataFrame      # the protocol's rows with `fold` and `split`
    protocol: Protocol
    in_channels: int
    cache: ImageCache

    def sequences(self, dataset: FERDataset) -> np.ndarray:
        """The sequence ID of each of `dataset`'s samples (for sequence-level hold-outs)."""
        return self.manifest.loc[dataset.index, "sequence"].astype(str).to_numpy()


@dataclass
class ProtocolData:
    """A dataset under one paper's protocol: every image, and the protocol's rows with folds."""

    loaded: LoadedDataset       # images (N, H, W, C) uint8, the dataset's full manifest, source
    protocol: Protocol
    manifest: pd.DataFrame      # the protocol's rows (index labels = rows of loaded.manifest), with `fold`

    @property
    def source(self) -> str:
        return self.loaded.source

    def counts(self) -> pd.DataFrame:
        """Images per class (rows) and fold (columns), with totals."""
        return pd.crosstab(self.manifest["label"], self.manifest["fold"], margins=True, margins_name="all")


def load_protocol_data(dataset: str, paper: str, *, data_root, size: int | tuple[int, int], scale: float,
                       seed: int) -> ProtocolData:
    """Load `dataset` (SynthFER in memory, or a real root) at `size` (a side or (height, width))
    and apply `paper`'s protocol to it."""
    loaded = load_dataset(dataset, data_root, size=size, scale=scale, seed=seed, paper=paper)
    protocol = load_protocol(paper, dataset)
    return ProtocolData(loaded, protocol, apply_protocol(loaded.manifest, protocol, seed=seed))


def load_pretraining_data(name: str, paper: str, *, pretrain_root, size: int, scale: float, seed: int,
                          channels: int, why: str) -> ProtocolData:
    """The pre-training dataset `name` under `paper`'s protocol with `channels` channels (grey images
    repeated to RGB, RGB ones averaged to grey). A real one needs `pretrain_root`; `why` says where the
    paper asks for it (in the error)."""
    if not name.startswith("synth-") and pretrain_root is None:
        raise FerlibError(f"{why}: give its prepared cache or root as pretrain_root, or pretrain=False to skip "
                          "the pre-training (a deviation)")
    other = load_protocol_data(name, paper, data_root=pretrain_root, size=size, scale=scale, seed=seed)
    images = other.loaded.images
    if images.shape[-1] != channels:
        images = (np.repeat(images, channels, axis=-1) if images.shape[-1] == 1
                  else images.mean(axis=-1, keepdims=True).round().astype(np.uint8))
        other = dataclasses.replace(other, loaded=LoadedDataset(images, other.loaded.manifest, other.loaded.classes,
                                                                f"{other.source}, converted to {channels} channel(s)"))
    return other


def with_extra_training_data(data: ProtocolData, extras: list[ProtocolData]) -> ProtocolData:
    """`data` plus the protocol rows of each of `extras` as additional training data.

    Extra rows (column `extra` True, fold -1) join the training split of every fold and never its
    validation or test split (IF-GAN 4.3: the other datasets as additional training data). Their
    subjects and sequences are prefixed with their dataset's name ("synth-mmi:S001") so they can
    never collide with the main dataset's. Images must share size and channels. Extra rows whose
    label is not one of the main protocol's classes (RAF-DB's neutral beside a six-class posed
    dataset) are dropped, with a printed note that the source sentence repeats; an extra dataset
    with no row left is refused.
    """
    if not extras:
        return data
    images, full, rows = [data.loaded.images], [data.loaded.manifest], [data.manifest.assign(extra=False)]
    offset, sources = len(data.loaded.manifest), []
    for extra in extras:
        name, source, extra_rows = extra.protocol.dataset, extra.source, extra.manifest
        if extra.loaded.images.shape[1:] != data.loaded.images.shape[1:]:
            raise FerlibError(f"extra training data {name} has images of shape {extra.loaded.images.shape[1:]}, "
                              f"the main dataset {data.loaded.images.shape[1:]}: load both at the same size")
        unknown = sorted(set(extra_rows["label"]) - set(data.protocol.classes))
        if unknown:
            dropped = extra_rows["label"].isin(unknown)
            if dropped.all():
                raise FerlibError(f"extra training data {name} has no image of a class of {data.protocol.dataset} "
                                  f"({', '.join(data.protocol.classes)}): its labels are {unknown}")
            note = (f"{int(dropped.sum())} images labelled {', '.join(unknown)} dropped, not classes of "
                    f"{data.protocol.dataset}")
            print(f"note: extra training data {name}: {note}")
            extra_rows, source = extra_rows[~dropped], f"{source} ({note})"
        if not extra.loaded.manifest.index.equals(pd.RangeIndex(len(extra.loaded.manifest))):
            raise FerlibError(f"extra training data {name}: its manifest index must be 0..n-1")

        def renamed(table: pd.DataFrame) -> pd.DataFrame:
            table = table.copy()
            table.index = table.index + offset
            for column in ("subject", "sequence"):
                table[column] = f"{name}:" + table[column].astype(str)
            return table

        images.append(extra.loaded.images)
        full.append(renamed(extra.loaded.manifest))
        rows.append(renamed(extra_rows).assign(extra=True, fold=-1))
        offset += len(extra.loaded.manifest)
        sources.append(source)
    loaded = LoadedDataset(np.concatenate(images), pd.concat(full), data.loaded.classes,
                           f"{data.loaded.source}; extra training data: {'; '.join(sources)}")
    return ProtocolData(loaded, data.protocol, pd.concat(rows))


def make_fold(data: ProtocolData, fold: int, transform: str, size: int, pair: str | None = None,
              ten_crop: bool = False) -> FoldData:
    """Train/val/test datasets for test fold `fold`, with `transform`'s train and test variants.

    Rows marked `extra` (see `with_extra_training_data`) are training data in every fold. With
    `ten_crop`, validation and test images come as ten crops each (B, 10, C, h, w); `train_eval`
    keeps the single centre crop."""
    loaded, protocol = data.loaded, data.protocol
    extra = data.manifest["extra"].astype(bool) if "extra" in data.manifest.columns else pd.Series(False, data.manifest.index)
    manifest = split_fold(data.manifest[~extra], protocol, fold)
    if extra.any():
        manifest = pd.concat([manifest, data.manifest[extra].assign(split="train")])
    cache = ImageCache.from_arrays(loaded.images, loaded.manifest)
    classes = tuple(protocol.classes)

    def part(split: str, train: bool, crops: bool = False) -> FERDataset:
        rows = manifest[manifest["split"] == split]
        return FERDataset(cache, rows, classes, pair=pair,
                          transform=make_transform(transform, train=train, size=size, ten_crop=crops))

    return FoldData(part("train", True), part("val", False, ten_crop), part("test", False, ten_crop), part("train", False),
                    classes, loaded.source, manifest, protocol, loaded.images.shape[-1], cache)


def resolve_folds(fold: int, folds: str, k: int) -> list[int]:
    """`folds=""` runs `fold` alone; `"all"` runs every fold; `"0,3,7"` runs those."""
    if folds in ("", None):
        chosen = [fold]
    elif str(folds).strip().lower() == "all":
        chosen = list(range(k))
    else:
        try:
            chosen = [int(f) for f in str(folds).split(",")]
        except ValueError:
            raise FerlibError(f"folds={folds!r}: give 'all' or comma-separated fold numbers such as '0,3,7'") from None
    for f in chosen:
        if not 0 <= f < k:
            raise FerlibError(f"fold {f} is out of range: this protocol has {k} folds, valid folds are 0..{k - 1}")
    return chosen


@dataclass(frozen=True)
class ChapterPlan:
    """What a chapter will train, with every fold checked before anything trains: the notebook's own
    config, one config per table dataset, and what was changed to make them runnable (in words)."""

    main: Any
    tables: tuple[Any, ...]
    notes: tuple[str, ...]

    def show(self) -> None:
        for note in self.notes:
            print(note)


def plan_chapter(cfg, paper: str, replace_dataset=None) -> ChapterPlan:
    """Check the folds of a chapter's run and of its table runs (`cfg.table_dataset_list()`, each made
    by `replace_dataset(cfg, name)`) before any training starts.

    A fold out of range for the notebook's dataset is refused here. A table dataset with one official
    split (RAF-DB) takes that split whatever `fold` / `folds` say, and a note says so; a k-fold table
    dataset runs the same folds as the notebook's, which must exist in it."""
    main_k = load_protocol(paper, cfg.dataset).k
    resolve_folds(cfg.fold, cfg.folds, main_k)
    tables, notes = [], []
    names = cfg.table_dataset_list() if replace_dataset is not None and hasattr(cfg, "table_dataset_list") else []
    for name in names:
        table = replace_dataset(cfg, name)
        protocol = load_protocol(paper, name)
        if protocol.folds.kind == "official":
            if (table.fold, table.folds or "") != (0, ""):
                notes.append(f"{name} has one official train/test split: its table row uses that split, not "
                             f"fold={cfg.fold}" + (f" / folds={cfg.folds!r}" if cfg.folds else ""))
            table = dataclasses.replace(table, fold=0, folds="")
        else:
            try:
                resolve_folds(table.fold, table.folds, protocol.k)
            except FerlibError as e:
                raise FerlibError(f"table dataset {name}: {e}; choose folds every table dataset has, or set "
                                  f"table_datasets without {name}") from None
        tables.append(table)
    return ChapterPlan(cfg, tuple(tables), tuple(notes))


def train_fold(task, data: FoldData, cfg, run_name: str, config: dict, class_names=None,
               progress: bool = True, min_epochs: int = 0, *, train=None, drop_last: bool = False,
               select_from: int = 1, eval_batch_size: int | None = None) -> tuple[dict, dict]:
    """Fit `task` on a fold's train split (selecting on val), test once: (run record, test evaluation),
    both from the engine's one pass over the test split.

    `cfg` supplies epochs, patience, seed, device, out_dir and batch_size; `config` is the record's (and
    the resume check's) experiment settings; `min_epochs` and `select_from`: see `EngineConfig`. `train`
    replaces the fold's train split (a wrapper of it, e.g. one that adds views); `drop_last` drops the
    last short training batch; val and test go in batches of `eval_batch_size` (default cfg.batch_size)."""
    from ferlib.engine import EngineConfig, fit_and_test, make_loader
    engine = EngineConfig(epochs=cfg.epochs, seed=cfg.seed, device=cfg.device, out_dir=cfg.out_dir,
                          run_name=run_name, progress=progress, patience=cfg.patience, min_epochs=min_epochs,
                          select_from=select_from)
    eval_batch = eval_batch_size or cfg.batch_size
    loaders = (make_loader(data.train if train is None else train, cfg.batch_size, shuffle=True, seed=cfg.seed,
                           drop_last=drop_last),
               make_loader(data.val, eval_batch, shuffle=False, seed=cfg.seed),
               make_loader(data.test, eval_batch, shuffle=False, seed=cfg.seed))
    return fit_and_test(task, *loaders, engine, config=config,
                        class_names=data.classes if class_names is None else class_names)


def probe_rows(representations, subjects, labels, sequences, seed: int = 0) -> list[dict]:
    """Identity and expression linear probes on each (method, feature, array) of `representations`,
    all on one split of images by whole sequences (`holdout_split`): fitted on some sequences of the
    subjects, scored on their held-out ones. The expression probe scores only classes it was fitted on."""
    from ferlib.eval import holdout_split, identity_probe
    subjects, labels = np.asarray(subjects), np.asarray(labels)
    tr, te = holdout_split(subjects, test_fraction=0.3, seed=seed, groups=sequences)
    te_seen = te[np.isin(labels[te], labels[tr])]
    rows = []
    for method, feature, x in representations:
        who = identity_probe(x[tr], subjects[tr], x[te], subjects[te], seed=seed)
        what = identity_probe(x[tr], labels[tr], x[te_seen], labels[te_seen], seed=seed)
        rows.append({"method": method, "feature": feature,
                     "identity probe %": round(100 * who["acc"], 1), "identity x chance": round(who["ratio"], 2),
                     "expression probe %": round(100 * what["acc"], 1), "expression x chance": round(what["ratio"], 2)})
    return rows


def identity_leakage(task, data: FoldData, seed: int = 0) -> dict:
    """The identity-leakage probe on the features `task.predict` returns.

    Features of the training subjects' images (test-time transform), split by whole sequences:
    a linear probe learns subject identity on some sequences and is scored on the others. Where no
    training subject has two sequences (RAF-DB: one photograph per person) there is nothing to hold
    out: acc, chance and ratio are None and `unmeasured` says why.
    """
    from ferlib.engine import evaluate, make_loader
    from ferlib.eval import holdout_split, identity_probe
    subjects, sequences = data.train_eval.subjects, data.sequences(data.train_eval)
    tr, te = holdout_split(subjects, test_fraction=0.3, seed=seed, groups=sequences)
    if len(te) == 0:
        return {"acc": None, "chance": None, "ratio": None, "n_subjects": len(set(map(str, subjects))),
                "unmeasured": "no training subject has two sequences or images to hold one out (one per person)"}
    train = evaluate(task, make_loader(data.train_eval, 256, shuffle=False), task.device)
    return identity_probe(train["features"][tr], subjects[tr], train["features"][te], subjects[te], seed=seed)


@dataclass
class MethodFold:
    """One method trained and tested on one fold."""

    method: str
    fold: int
    record: dict        # the engine's run record (config, history, test metrics, ...)
    data: FoldData
    task: Any           # the paper's task, with the selected (best validation) weights loaded
    test: dict          # evaluate() on the test split: logits, labels, features, ...


@dataclass
class MethodsResult:
    """Every method of a paper's config on every fold that ran. `config` has `method_list()`,
    `dataset` and `preset`."""

    config: Any
    folds: list[MethodFold]

    @property
    def source(self) -> str:
        return self.folds[0].data.source

    def of(self, method: str) -> list[MethodFold]:
        return [f for f in self.folds if f.method == method]

    def summary(self) -> pd.DataFrame:
        """Test accuracy per method over the folds that ran: mean, std, 95% CI."""
        rows = [aggregate([f.record for f in self.of(m)]).assign(method=m) for m in self.config.method_list()]
        return pd.concat(rows).set_index("method")


def ours_for_table(result: MethodsResult) -> pd.DataFrame:
    """Our rows for `reported_vs_reproduced`: accuracy mean and std in %, folds, data, preset."""
    from ferlib.data.registry import base_name
    table = result.summary().reset_index()[["method", "mean", "std", "folds"]]
    table[["mean", "std"]] *= 100
    return table.assign(dataset=base_name(result.config.dataset), data=result.source, preset=result.config.preset)


def name_list(text: str, exclude: str = "") -> list[str]:
    """"a, b,,c" -> ["a", "b", "c"], without `exclude` (the notebook's own dataset in a table list)."""
    return [t.strip() for t in str(text or "").split(",") if t.strip() and t.strip() != exclude]


def parse_methods(methods: str, valid) -> list[str]:
    """A config's comma-separated `methods`, each checked against `valid` (the paper's method names)."""
    chosen = name_list(methods)
    if not chosen or any(m not in valid for m in chosen):
        raise FerlibError(f"methods={methods!r}: choose from {', '.join(valid)} (comma-separated)")
    return chosen


def synth_only(dataset: str, main: str) -> None:
    """A table row beside the notebook's dataset must be SynthFER: a real one needs its own data_root."""
    if not dataset.startswith("synth-"):
        raise FerlibError(f"table dataset {dataset!r}: only SynthFER datasets (synth-<preset>) can run beside "
                          f"{main}; run a real dataset as the notebook's `dataset` with its `data_root`")


def aggregate(records: list[dict], metric: str = "acc") -> pd.DataFrame:
    """Mean, std and 95% CI over folds of a test metric, one row."""
    values = [r["test"][metric] for r in records]
    return pd.DataFrame([{"folds": len(values), **aggregate_folds(values)}])



def live_check(records: list[dict], chance: float | None, loss: str = "train_loss",
               loss_name: str = "training loss") -> str:
    """The robust facts a live smoke run must show on any processor (its digits differ between
    processors, so nbval ignores them): every run's training loss (history column `loss`) fell from its
    first epoch to its last, and (unless `chance` is None: a smoke scale too small to recognise anything)
    its test accuracy is above `chance`. Raises `FerlibError` naming the run otherwise."""
    for r in records:
        history = r["history"]
        first, last = history[0][loss], history[-1][loss]
        if not last < first:
            raise FerlibError(f"live smoke run {r['run_name']}: the {loss_name} did not fall ({first:.4f} -> {last:.4f})")
        if chance is not None and not r["test"]["acc"] > chance:
            raise FerlibError(f"live smoke run {r['run_name']}: test accuracy {100 * r['test']['acc']:.1f}% is not above "
                              f"chance ({100 * chance:.1f}%)")
    if chance is None:
        return f"live smoke run: in all {len(records)} run(s) the {loss_name} fell"
    return (f"live smoke run: in all {len(records)} run(s) the {loss_name} fell and the test accuracy is above chance "
            f"({100 * chance:.1f}%)")


def determinism_note(records: list[dict]) -> str:
    """One sentence for a chapter's Cost section: how many of these runs were deterministic (the
    engine's `determinism` record) and what that does and does not promise."""
    flags = [(r.get("determinism") or {}) for r in records]
    sure = sum(bool(f.get("deterministic")) for f in flags)
    ops = sorted({op for f in flags for op in (f.get("nondeterministic_ops") or {})})
    text = (f"deterministic runs: {sure} of {len(records)} (rerun on this machine, they give the same numbers; "
            f"another processor or GPU gives other numbers)")
    if ops:
        text += f"; ops without a deterministic kernel: {', '.join(ops)}"
    return text
