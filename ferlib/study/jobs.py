"""One job of the study: train a paper's method on one fold at a preset, measure what the chapter
needs from it, and write its registry record. The same function serves `python -m ferlib run`, the
sweep and a chapter.

    from ferlib.study.jobs import run_job
    from ferlib.study.records import Job
    record = run_job(Job("ifgan", "ifgan", "synth-ckplus", fold=3, preset="study"))

`PAPERS` says, per paper, where its experiment lives; everything else (configs, presets, methods,
table datasets) is read from that experiment module, so a new paper adds one line here.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import importlib
import io
import json
import platform
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from ferlib.errors import FerlibError, UnknownName
from ferlib.study.records import FORMAT, REGISTRY, Job, stable_config, write_record

WORK_DIR = Path("results") / "study"     # checkpoints of running jobs (resumable; not part of the registry)
FAILED_MARGIN = 0.02                     # a test accuracy within 2 points of chance: "failed to train"
# ... or its macro accuracy (mean per-class recall) within 2 points of 1 / classes: on imbalanced data (RAF-DB)
# a model that always names the commonest class has an accuracy far above 1 / classes, a macro accuracy of 1 / classes
EMBEDDING_FOLD = 0                       # the fold whose record keeps the figures' arrays (t-SNE, faces)
FACES = 6                                # generated faces kept by IF-GAN's figure fold


@dataclass(frozen=True)
class PaperStudy:
    """Where a paper's experiment lives: `module` has `<config>`, `PRESETS`, `load`, `run_fold` and,
    for papers with several methods, `METHODS`."""

    paper: str
    module: str
    config: str

    @property
    def experiment(self):
        return importlib.import_module(self.module)

    @property
    def config_class(self):
        return getattr(self.experiment, self.config)

    def methods(self) -> tuple[str, ...]:
        return tuple(getattr(self.experiment, "METHODS", {self.paper: None}))

    def presets(self) -> tuple[str, ...]:
        return tuple(self.experiment.PRESETS)

    def defaults(self):
        return self.config_class()

    def primary(self) -> str:
        """The paper's primary dataset: its config's default."""
        return self.defaults().dataset

    def table_datasets(self) -> tuple[str, ...]:
        cfg = self.defaults()
        return tuple(cfg.table_dataset_list()) if hasattr(cfg, "table_dataset_list") else ()

    def grid_datasets(self) -> tuple[str, ...]:
        """The datasets of the study's grid: the experiment's `GRID_DATASETS`, else primary and tables."""
        return tuple(getattr(self.experiment, "GRID_DATASETS", (self.primary(), *self.table_datasets())))

    def grid_methods(self, dataset: str) -> tuple[str, ...]:
        """The methods the grid runs on `dataset`: the experiment's `grid_methods(dataset)`, else all."""
        chooser = getattr(self.experiment, "grid_methods", None)
        return tuple(chooser(dataset)) if chooser else self.methods()

    def grid_folds(self, method: str, folds: list[int]) -> list[int]:
        """The grid's folds of `method` among `folds`: the experiment's `GRID_FOLDS[method]` (TER-GAN's
        ablation runs three), else all of them."""
        chosen = getattr(self.experiment, "GRID_FOLDS", {}).get(method)
        return list(folds) if chosen is None else [f for f in folds if f in chosen]

    def seeds(self, dataset: str | None = None) -> tuple[int, ...]:
        """The seeds the grid's jobs on `dataset` run with: the experiment's `grid_seeds(dataset)` (EAN's
        replicates of an official split), else (0,)."""
        chooser = getattr(self.experiment, "grid_seeds", None)
        return tuple(chooser(dataset)) if chooser and dataset is not None else (0,)

    def config_for(self, job: Job, data_root: str | None = None, out_dir: Path | str = WORK_DIR, **overrides):
        """The experiment's config of `job`: its preset, then the job's dataset, fold, method and seed."""
        check_job(job)
        names = {f.name for f in fields(self.config_class)}
        values = dict(dataset=job.dataset, fold=job.fold, folds="", seed=job.seed, data_root=data_root,
                      out_dir=str(out_dir), methods=job.method, table_datasets="")
        values = {k: v for k, v in values.items() if k in names}
        clash = sorted(set(values) & set(overrides))
        if clash:
            raise FerlibError(f"{', '.join(clash)} belong to the job itself (its dataset, fold, method, seed): "
                              "give them as the job's, not as overrides")
        return self.config_class.from_preset(job.preset, **values, **overrides)


class ValidityStudy:
    """The SynthFER datasheet's validity numbers (`ferlib.data.validity`) as jobs: one per seed,
    method "validity", dataset "synthfer", fold 0, preset "study" (the datasheet's recipe)."""

    paper = "synthfer"

    def methods(self) -> tuple[str, ...]:
        return ("validity",)

    def presets(self) -> tuple[str, ...]:
        return ("study",)

    def primary(self) -> str:
        return "synthfer"

    def table_datasets(self) -> tuple[str, ...]:
        return ()

    def grid_datasets(self) -> tuple[str, ...]:
        return ("synthfer",)

    def grid_methods(self, dataset: str) -> tuple[str, ...]:
        return self.methods()

    def grid_folds(self, method: str, folds: list[int]) -> list[int]:
        return list(folds)

    def seeds(self, dataset: str | None = None) -> tuple[int, ...]:
        from ferlib.study.sweep import VALIDITY_SEEDS
        return VALIDITY_SEEDS

    def config_for(self, job: Job, data_root=None, out_dir=None, **overrides):
        from ferlib.data.validity import ValidityConfig
        check_job(job)
        return dataclasses.replace(ValidityConfig(seeds=(job.seed,)), **overrides)


PAPERS = {
    "baseline": PaperStudy("baseline", "ferlib.experiments.baseline", "BaselineConfig"),
    "ifgan": PaperStudy("ifgan", "ferlib.experiments.ifgan", "IFGANConfig"),
    "adfl": PaperStudy("adfl", "ferlib.experiments.adfl", "ADFLConfig"),
    "eifn": PaperStudy("eifn", "ferlib.experiments.eifn", "EIFNConfig"),
    "ean": PaperStudy("ean", "ferlib.experiments.ean", "EANConfig"),
    "tergan": PaperStudy("tergan", "ferlib.experiments.tergan", "TERGANConfig"),
    "synthfer": ValidityStudy(),
}


def paper_study(paper: str) -> PaperStudy:
    if paper not in PAPERS:
        raise UnknownName("paper", paper, PAPERS)
    return PAPERS[paper]


def dataset_folds(paper: str, dataset: str) -> int:
    """How many test folds `dataset` has under `paper`'s protocol (an official split: 1)."""
    from ferlib.data.protocols import load_protocol
    if paper == ValidityStudy.paper:
        return 1
    protocol = load_protocol(paper, dataset)
    return 1 if protocol.folds.kind == "official" else protocol.k


def check_job(job: Job) -> None:
    """Refuse a job naming an unknown paper, method or preset, or a fold its dataset lacks."""
    study = paper_study(job.paper)
    if job.method not in study.methods():
        raise UnknownName(f"method of {job.paper}", job.method, study.methods())
    if job.preset not in study.presets():
        raise UnknownName(f"preset of {job.paper}", job.preset, study.presets())
    k = dataset_folds(job.paper, job.dataset)
    if not 0 <= job.fold < k:
        raise FerlibError(f"fold {job.fold} is out of range: {job.dataset} has {k} fold(s) under the {job.paper} "
                          f"protocol, valid folds are 0..{k - 1}")


# ----------------------------------------------------------------------------- running one job

@functools.lru_cache(maxsize=2)
def load_cached(paper: str, cfg):
    """A paper's dataset under its protocol, cached per process: a worker's next job on the same data
    (another fold or method) does not render it again. `cfg` is normalised to fold 0."""
    return paper_study(paper).experiment.load(cfg)


def load_data(paper: str, cfg):
    names = {f.name for f in fields(cfg)}
    key = dataclasses.replace(cfg, fold=0, **({"methods": paper_study(paper).defaults().methods}
                                               if "methods" in names else {}))
    return load_cached(paper, key)


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive lock on `path` (created): two workers never train the same shared run at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def train(study: PaperStudy, cfg, job: Job, progress: bool):
    """The experiment's own run of one fold (EIFN: its stage 1 first, shared by every fold and locked)."""
    experiment = study.experiment
    data = load_data(job.paper, cfg)
    if job.paper == "baseline":
        return experiment.run_fold(cfg, data, job.fold, progress=progress)
    if job.paper == "eifn":
        other = experiment.load_pretraining(cfg, data)
        stage1 = stage1_run = None
        if other is not None:
            stage1_run = experiment.pretrain_run_name(cfg, job.method, other)
            with file_lock(Path(cfg.out_dir) / f"{stage1_run}.lock"):
                stage1 = experiment.pretrain(cfg, job.method, other, progress)
        return experiment.run_fold(cfg, data, job.fold, job.method, stage1, progress, stage1_run)
    if job.paper == "tergan":
        other = experiment.load_pretraining(cfg, data)
        pretrained = on = None
        if other is not None:
            on = f"{other.protocol.dataset} (data {experiment.data_key(other)})"
            with file_lock(Path(cfg.out_dir) / f"{experiment.pretrain_stem(cfg, other, job.method)}.lock"):
                pretrained = experiment.pretrain(cfg, other, data.loaded.images.shape[-1], progress, job.method)
        return experiment.run_fold(cfg, data, job.fold, job.method, pretrained, progress, on)
    return experiment.run_fold(cfg, data, job.fold, job.method, progress=progress)


def code_key(fingerprint: dict) -> str:
    """The name of a job's checkpoint folder under the work dir: the training fingerprint and the git
    commit of the code. A checkpoint is resumed only by the code that wrote it; an EIFN stage 1 trained by
    other code (its run is keyed on its config alone) is never reused. Measured: the first EFN records
    started from such a stage 1 and could not be reproduced from their own commit."""
    from ferlib.engine import git_commit
    text = json.dumps({"fingerprint": fingerprint, **git_commit()}, sort_keys=True, default=str)
    return "code-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def run_job(job: Job, registry: Path | str = REGISTRY, out_dir: Path | str = WORK_DIR, data_root: str | None = None,
            progress: bool = True, **overrides) -> dict:
    """Train `job`, measure it, write its record to `registry` (atomically) and return the record.

    `overrides` change the preset's config fields (they are part of the record's config, so a record
    made with them is never taken for the plain preset's)."""
    from ferlib.study.fingerprints import training_fingerprint
    started = time.perf_counter()
    study = paper_study(job.paper)
    check_job(job)                            # an unknown name fails here, before any fingerprint is trained
    fingerprint = training_fingerprint(*fingerprinted_as(job.paper, job.method))
    cfg = study.config_for(job, data_root, Path(out_dir) / code_key(fingerprint), **overrides)
    if job.paper == ValidityStudy.paper:
        record = validity_record(job, cfg, fingerprint, started)
        write_record(record, registry)
        return record
    result = train(study, cfg, job, progress)
    record = study_record(job, cfg, result, fingerprint, time.perf_counter() - started)
    write_record(record, registry)
    return record


def job_config(job: Job, data_root: str | None = None, **overrides) -> dict:
    """The record's config of `job` (what the sweep compares to skip a job already done)."""
    cfg = paper_study(job.paper).config_for(job, data_root, **overrides)
    return config_record(cfg)


def config_record(cfg) -> dict:
    """A record's config: the experiment's config as JSON values, without where files go."""
    return stable_config(jsonable(asdict(cfg)))


def jsonable(value):
    from ferlib.engine import jsonable as engine_jsonable
    return engine_jsonable(value)


# ----------------------------------------------------------------------------- what a record keeps

def fingerprinted_as(paper: str, method: str) -> tuple[str, str]:
    """Whose training fingerprint a job carries: its own, or (validity) the baseline's PlainCNN's."""
    return ("baseline", "baseline") if paper == ValidityStudy.paper else (paper, method)


def validity_record(job: Job, cfg, fingerprint: dict, started: float) -> dict:
    """One seed of the datasheet's validity numbers. Its networks are the baseline's PlainCNN, so it
    carries the baseline's training fingerprint."""
    from ferlib.data.validity import THRESHOLDS, measure_seed
    from ferlib.engine import git_commit, package_versions
    result = measure_seed(cfg, job.seed)
    failed = [name for name, (low, high, _) in THRESHOLDS.items()
              if (low is not None and result[name] < low) or (high is not None and result[name] > high)]
    return jsonable({
        "format": FORMAT, "kind": "validity", "job": asdict(job), "config": config_record(cfg),
        "data": f"SynthFER presets {cfg.preset} (scale {cfg.scale:g}) and {cfg.confound_preset} "
                f"(scale {cfg.confound_scale:g}), {cfg.size} px, seed {job.seed} (synthetic)",
        "status": "ok", "failure": None, "result": result, "outside_thresholds": failed,
        "fingerprint": fingerprint,
        "provenance": {**git_commit(), "device": "cpu", "cpu": cpu_model(), "threads": torch.get_num_threads(),
                       "versions": package_versions(), "wall_time_s": time.perf_counter() - started,
                       "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "determinism": {"deterministic": True}},
    })


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def history_rows(history: list[dict]) -> list[dict]:
    """The curves: per epoch the losses, validation metrics and learning rates (no timings but one)."""
    keep = ("epoch", "val_acc", "val_macro_acc", "val_loss", "improved", "epoch_time_s")
    return [{k: v for k, v in row.items() if k in keep or k.startswith(("train_", "lr_"))} for row in history]


def failure_of(record: dict) -> str | None:
    """Why a run counts as failed to train, or None: test accuracy or macro accuracy within
    `FAILED_MARGIN` of chance, or (a GAN) a generator no closer to its target than its input is."""
    acc, macro, chance = record["test"]["acc"], record["test"]["macro_acc"], record["chance"]
    if acc <= chance + FAILED_MARGIN:
        return f"test accuracy {100 * acc:.1f}% is within {100 * FAILED_MARGIN:.0f} points of chance ({100 * chance:.1f}%)"
    if macro <= chance + FAILED_MARGIN:
        return (f"macro accuracy {100 * macro:.1f}% is within {100 * FAILED_MARGIN:.0f} points of chance "
                f"({100 * chance:.1f}%; its accuracy {100 * acc:.1f}% comes from the commonest classes)")
    generator = record["extras"].get("generator")
    if generator and generator["l1_to_target"] >= generator["copy_l1_to_target"]:
        return (f"the generator is no better than copying its input (L1 to I_AE {generator['l1_to_target']:.4f} vs "
                f"{generator['copy_l1_to_target']:.4f} for the input itself)")
    return None


def study_record(job: Job, cfg, result, fingerprint: dict, wall_time_s: float) -> dict:
    """The registry record of one finished fold (`result` is the experiment's FoldResult / MethodFold)."""
    from ferlib.engine import package_versions
    from ferlib.experiments.common import identity_leakage
    engine = result.record
    test = {k: engine["test"][k] for k in ("acc", "macro_acc", "loss", "n", "per_class_acc", "confusion", "class_names")}
    extras = extras_of(job, result, cfg)
    probe = classifier_probe(job, result, extras)
    run = engine.get("engine", {})            # the engine's own settings: the run the history is from (TER-GAN's
    training = {                               # classifier, not its fold stages)
        "best_epoch": engine["best_epoch"], "epochs_run": len(engine["history"]),
        "epochs_cap": run.get("epochs", cfg.epochs), "patience": run.get("patience", cfg.patience),
        "min_epochs": run.get("min_epochs", getattr(cfg, "min_epochs", 0)),
        "stopped_early": bool(engine.get("stopped_early")),
        "select_metric": engine["best"]["metric"], "history": history_rows(engine["history"]),
        "train_images": len(result.data.train), "val_images": len(result.data.val),
    }
    record = {
        "format": FORMAT,
        "job": asdict(job),
        "config": config_record(cfg),
        "data": result.data.source,
        "test": test,
        "chance": 1.0 / len(test["class_names"]),
        "training": training,
        "identity_probe": {k: probe[k] for k in ("acc", "chance", "ratio", "unmeasured") if k in probe},
        "extras": extras,
        "fingerprint": fingerprint,
        "provenance": {
            "git_commit": engine.get("git_commit"), "git_dirty": engine.get("git_dirty"),
            "device": engine["device"], "cpu": cpu_model(), "threads": torch.get_num_threads(),
            "versions": package_versions(), "wall_time_s": wall_time_s, "train_time_s": engine["train_time_s"],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "determinism": engine["determinism"],
            "resumed_from_epoch": engine["resumed_from_epoch"],
        },
    }
    failure = failure_of(record)
    record["status"] = "ok" if failure is None else "failed to train"
    record["failure"] = failure
    return jsonable(record)


# ADFL's classifier reads FC(f_r) (ADFL) or f_e (its baseline) and never sees a neutral face, so its
# identity probe is the probe table's row of that feature (every training image, neutral ones included)
ADFL_CLASSIFIER_FEATURE = {"adfl": "h_r", "baseline": "f_e"}


def classifier_probe(job: Job, result, extras: dict) -> dict:
    """The identity-leakage probe on the features the method classifies from (`common.identity_leakage`;
    EAN's datasets hold one image per person: there, on the held-out people of its views set)."""
    from ferlib.experiments.common import identity_leakage
    if job.paper == "ean":
        views = extras["views"]
        probe = views.get("identity_probe")
        if probe is None:
            return {"acc": None, "chance": None, "ratio": None,
                    "unmeasured": "the views set's held-out people have no second group of views to hold out"}
        return {k: probe[k] for k in ("acc", "chance", "ratio")} | {
            "feature": f"pooled backbone features of {views['images']} views of {views['people']} held-out people"}
    if job.paper == "adfl":
        from ferlib.experiments.adfl import FEATURE_TITLES
        title = FEATURE_TITLES[ADFL_CLASSIFIER_FEATURE[job.method]]
        row = next(r for r in extras["probes"] if r["feature"] == title and r["method"] != "raw pixels")
        ratio = row["identity x chance"]
        return {"acc": row["identity probe %"] / 100, "chance": row["identity probe %"] / 100 / ratio, "ratio": ratio,
                "feature": title}
    return identity_leakage(result.task, result.data, seed=job.seed)


def extras_of(job: Job, result, cfg=None) -> dict:
    """What the chapter's figures and paper-specific tables need from this fold (the figures' arrays from
    the figure fold of seed 0 only)."""
    extras: dict = {}
    figure = job.fold == EMBEDDING_FOLD and job.seed == 0
    if figure:
        extras["embedding"] = embedding_of(result)
    if job.paper == "ean":
        extras |= paper_study("ean").experiment.extras(job.method, result, cfg, figure)
    if job.paper == "ifgan" and job.method != "resnet":
        extras["generator"] = generator_quality(result)
        if job.fold == EMBEDDING_FOLD:
            extras["faces"] = generated_faces(result)
        if job.method == "ifgan":
            extras["attention"] = attention_of(result, maps=job.fold == EMBEDDING_FOLD)
    if job.paper == "tergan":
        data = load_data(job.paper, cfg)
        extras |= paper_study("tergan").experiment.extras(job.method, result, cfg, data.loaded, figure)
    if job.paper in ("adfl", "eifn"):
        extras["probes"] = paper_study(job.paper).experiment.probe_table([result]).to_dict("records")
    return extras


def embedding_of(result, seed: int = 0) -> dict:
    """A 2-D t-SNE of the test features, with each point's class and subject (the chapter's Fig.)."""
    from ferlib.eval import embed_2d
    xy = embed_2d(np.asarray(result.test["features"]).reshape(len(result.test["labels"]), -1), "tsne", seed)
    xy = (xy - xy.mean(0)) / (xy.std(0) + 1e-12)
    return {"xy": np.round(xy, 2).tolist(), "label": np.asarray(result.test["labels"]).astype(int).tolist(),
            "subject": [str(s) for s in result.data.test.subjects]}


@torch.no_grad()
def generator_outputs(result, limit: int | None = None):
    """(input, G(input), I_AE target, label) over the test split, IF-GAN's generator in eval mode."""
    from ferlib.engine import eval_mode, make_loader
    model = result.task.model
    inputs, fakes, targets, labels = [], [], [], []
    with eval_mode([model]):
        for batch in make_loader(result.data.test, 128, shuffle=False):
            x = batch["image"].to(result.task.device)
            y = batch["label"].to(result.task.device)
            inputs.append(x.cpu()), fakes.append(model.G(x).cpu()), targets.append(model.averages[y].cpu())
            labels.append(y.cpu())
            if limit and sum(len(t) for t in inputs) >= limit:
                break
    return torch.cat(inputs), torch.cat(fakes), torch.cat(targets), torch.cat(labels)


def generator_quality(result) -> dict:
    """Is G's output on test faces closer (L1) to its I_AE target than the input face is?"""
    x, fake, target, _ = generator_outputs(result)
    g = (fake - target).abs().mean((1, 2, 3))
    copy = (x - target).abs().mean((1, 2, 3))
    return {"l1_to_target": float(g.mean()), "copy_l1_to_target": float(copy.mean()),
            "share_closer": float((g < copy).float().mean())}


@torch.no_grad()
def attention_of(result, maps: bool, n: int = 4) -> dict:
    """IF-GAN's learned attention scales gamma, and (`maps`) Fig. 6: the decoder attention maps of
    `ATTENTION_QUERIES` for the first `n` test faces (each map scaled to its maximum, 2 decimals)."""
    from ferlib.experiments.ifgan import ATTENTION_QUERIES
    from ferlib.models.ifgan import decoder_attention_maps
    model = result.task.model
    out = {"gamma": {name: float(m.gamma.item()) for name, m in model.G.attention_modules.items()}}
    if maps:
        images = torch.stack([result.data.test[i]["image"] for i in range(min(n, len(result.data.test)))])
        generated, found = decoder_attention_maps(model, images.to(result.task.device), ATTENTION_QUERIES)
        out["queries"] = {name: list(q) for name, q in ATTENTION_QUERIES.items()}
        out["input"] = [image_text(x) for x in images]
        out["generated"] = [image_text(g.cpu()) for g in generated]
        out["maps"] = {name: np.round((m / m.amax((1, 2), keepdim=True)).cpu().numpy(), 2).tolist()
                       for name, m in found.items()}
    return out


def image_text(image: torch.Tensor) -> str:
    """A (C, H, W) image in [-1, 1] as a base64 PNG (what a record keeps of a face)."""
    from PIL import Image
    array = ((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode()


def text_image(text: str) -> np.ndarray:
    """`image_text`'s inverse: an (H, W, C) uint8 array."""
    from PIL import Image
    array = np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))
    return array[..., None] if array.ndim == 2 else array


def generated_faces(result, n: int = FACES) -> dict:
    """A few test faces of different classes: input, G(input) and the I_AE target (IF-GAN's Fig. 5)."""
    x, fake, target, labels = generator_outputs(result)
    chosen, seen = [], set()
    for i, y in enumerate(labels.tolist()):  # one face per class first, then the rest in order
        if y not in seen:
            chosen.append(i), seen.add(y)
    chosen += [i for i in range(len(labels)) if i not in chosen]
    chosen = chosen[:n]
    return {"label": [int(labels[i]) for i in chosen],
            "input": [image_text(x[i]) for i in chosen], "generated": [image_text(fake[i]) for i in chosen],
            "target": [image_text(target[i]) for i in chosen]}
