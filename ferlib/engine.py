"""The one training engine every paper runs through.

A paper supplies a `Task`: its networks (`modules`), their optimisers, optional schedulers, a
`train_step` and a `predict`. `fit` does the rest the same way for every paper: seeding, device,
mixed precision, progress bars, validation, model selection on the validation set only, an
atomic checkpoint after every epoch, resuming after a crash, the single test evaluation and the
JSON result record.

`fit` seeds every RNG before training, but a task's weights are initialised when the task is
built, before `fit` runs: call `seed_everything(seed)` before building it, or two runs of the same
configuration start from different weights (torch's default seed differs in every process).

What the engine gives the task (attributes set by `fit` before the first step):

- `task.device`: the `torch.device` in use. The engine moves every tensor in a batch (tuples,
  lists and dicts of tensors) to it before calling `train_step` / `predict`.
- `task.amp`: a `Precision`. Write the step as
  `with task.amp.autocast(): loss = ...`, then `task.amp.backward(loss)` and
  `task.amp.step(optimizer)`. On CUDA with `amp=True` this is float16 autocast with a
  `GradScaler`; elsewhere it is plain `loss.backward()` / `optimizer.step()`. The engine calls
  `task.amp.update()` after each `train_step`; a step that updates the same optimiser twice
  (e.g. several discriminator updates) calls `task.amp.update()` itself in between.
  `task.amp.unscale_(optimizer)` comes before gradient clipping.
- `task.autocast`: the same as `task.amp.autocast`.
- Modes: every module of `task.modules` is put in train mode before each epoch (whatever mode
  the task arrived in) and in eval mode inside `evaluate`; a step that needs a part in eval mode
  sets it itself.

Determinism: with `deterministic=True` torch is asked for deterministic kernels in warn-only
mode, so an op without one (some CUDA kernels) still runs; `fit` counts such ops and the record's
`determinism` says whether the run was deterministic (on this machine: CPU results still differ
between processors).

Shuffling that survives a crash: build train loaders with `make_loader`; the engine calls
`set_epoch(epoch)` on their sampler before each epoch, so epoch e's order depends only on
(seed, e), in any process. Loaders built otherwise also resume exactly when `num_workers=0`
(their shuffling and augmentation draw from torch's global RNG, whose state is checkpointed),
but not with `persistent_workers=True`.

Files under `<out_dir>/<run_name>/`: `last.pt` (everything needed to resume, written after
every epoch), `best.pt` (module weights of the best validation epoch), `record.json` (the run
record, written once after the test evaluation). All three are written atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import random
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.std import tqdm  # plain text bars: the same in a terminal, a notebook and the book

import ferlib
from ferlib import eval as metrics
from ferlib.errors import FerlibError
from ferlib.io import atomic_write

CHECKPOINT_FORMAT = 1
VAL_METRICS = ("val_acc", "val_macro_acc", "val_loss")


class Task(Protocol):
    """What a paper implements (usually a plain class with these attributes)."""

    modules: dict[str, nn.Module]                # everything with state to checkpoint
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any]                   # may be empty; stepped once per epoch by the engine

    def train_step(self, batch, step: int) -> dict[str, float]:
        """One optimisation step (its own zero_grad/backward/step); returns losses for logging."""

    def predict(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(logits, labels, features) of a batch; the engine wraps it in no_grad and eval mode."""


@dataclass(frozen=True)
class EngineConfig:
    """How `fit` trains: everything except the paper's model, losses and data.

    select_metric: "val_acc", "val_macro_acc" (mean per-class accuracy) or "val_loss" (minimised).
    amp: float16 autocast + GradScaler, used only on CUDA.
    log_every: when > 0, also print the running losses every `log_every` steps.
    patience: when > 0, stop early once `select_metric` has not improved for `patience` epochs
        (`epochs` is then the cap); the record's `stopped_early` says whether it did. 0: train all epochs.
    min_epochs: early stopping never ends a run before this many epochs (a warm-up for a network whose
        validation accuracy stays at its first value for a while before it starts to learn).
    select_from: only epochs from this one on can be kept as the best (EAN: the epochs that trained with
        the graph); earlier epochs are validated and logged but never selected. 1: every epoch.
    """

    epochs: int
    seed: int = 0
    device: str = "auto"
    out_dir: str = "results"
    run_name: str = "run"
    amp: bool = True
    select_metric: str = "val_acc"
    deterministic: bool = True
    progress: bool = True
    log_every: int = 0
    patience: int = 0
    min_epochs: int = 0
    select_from: int = 1


# ----------------------------------------------------------------------------- seeds and device

def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and torch (CPU and CUDA); in deterministic mode also ask torch and cuDNN
    for deterministic kernels (warning, not failing, where an op has none)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def resolve_device(name: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU; otherwise the named device, checked."""
    if name in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise FerlibError(f"device {name!r} is not a torch device; use 'auto', 'cpu' or 'cuda'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FerlibError(f"device {name!r} was asked for but CUDA is not available here; use device='auto' or 'cpu'")
    return device


# ----------------------------------------------------------------------------- resumable loaders

def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 63-bit seed that depends only on (seed, epoch, stream)."""
    state = np.random.SeedSequence([seed % 2**32, epoch, stream]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


class EpochSampler(Sampler[int]):
    """Indices 0..n-1, shuffled by (seed, epoch) when `shuffle`: the same order for the same epoch
    in any process, so a resumed run sees the batches an uninterrupted run would have seen."""

    def __init__(self, n: int, shuffle: bool, seed: int = 0):
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.n))
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return iter(torch.randperm(self.n, generator=generator).tolist())

    def __len__(self) -> int:
        return self.n


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0, num_workers: int = 0,
                drop_last: bool = False, collate_fn=None, pin_memory: bool | None = None) -> DataLoader:
    """A DataLoader whose order (and workers' seeds) the engine re-seeds per epoch; see `set_loader_epoch`."""
    return DataLoader(
        dataset, batch_size=batch_size, sampler=EpochSampler(len(dataset), shuffle, seed),
        num_workers=num_workers, drop_last=drop_last, collate_fn=collate_fn,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        generator=torch.Generator().manual_seed(seed), persistent_workers=False)


def set_loader_epoch(loader: Iterable, epoch: int) -> None:
    """Before epoch `epoch`: re-seed a `make_loader` loader (its order and its workers' seeds);
    call `set_epoch` on any other sampler that has one, and on the loader's dataset if it has one (a
    dataset whose samples depend on the epoch, e.g. EAN's FER images paired anew with views each
    epoch); leave other loaders alone."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    dataset = getattr(loader, "dataset", None)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    if isinstance(sampler, EpochSampler) and getattr(loader, "generator", None) is not None:
        loader.generator.manual_seed(epoch_seed(sampler.seed, epoch, stream=1))


# ----------------------------------------------------------------------------- mixed precision

class Precision:
    """float16 autocast + GradScaler on CUDA when enabled; pass-through otherwise."""

    def __init__(self, device: torch.device, enabled: bool):
        self.enabled = bool(enabled) and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.enabled)
        self._stepped = False

    def autocast(self):
        if self.enabled:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        self.scaler.scale(loss).backward(**kwargs)

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        if self.enabled:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        self.scaler.step(optimizer)
        self._stepped = True

    def update(self) -> None:
        """Adjust the loss scale once after the steps of an iteration (no-op if nothing stepped)."""
        if self.enabled and self._stepped:
            self.scaler.update()
        self._stepped = False


# ----------------------------------------------------------------------------- evaluation

def to_device(batch, device: torch.device):
    """`batch` with every tensor (inside tuples, lists and dicts) moved to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [to_device(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


@contextlib.contextmanager
def eval_mode(modules: Iterable[nn.Module]):
    """Every (sub)module in eval mode inside the block; each one's own mode restored afterwards."""
    modules = list(modules)
    saved = [(m, m.training) for module in modules for m in module.modules()]
    try:
        for module in modules:
            module.eval()
        yield
    finally:
        for m, training in saved:
            m.training = training


def evaluate(task: Task, loader: Iterable, device: torch.device | str | None = None,
             num_classes: int | None = None) -> dict:
    """Run `task.predict` over `loader` (no_grad, eval mode) and score it.

    Returns acc, macro_acc (mean per-class accuracy), per_class_acc (NaN for absent classes),
    confusion (counts, rows = true class), loss (mean cross-entropy), n, and the numpy arrays
    logits, labels, preds and features (None when `predict` returns none).
    """
    device = torch.device(device) if device is not None else getattr(task, "device", torch.device("cpu"))
    autocast = getattr(task, "autocast", contextlib.nullcontext)
    logits, labels, features = [], [], []
    with eval_mode(task.modules.values()), torch.no_grad():
        for batch in loader:
            with autocast():
                out_logits, out_labels, out_features = task.predict(to_device(batch, device))
            logits.append(out_logits.detach().float().cpu())
            labels.append(out_labels.detach().long().cpu())
            if out_features is not None:
                features.append(out_features.detach().float().flatten(1).cpu())
    if not logits:
        raise FerlibError("evaluate() got an empty loader: the split has no images; check the fold and protocol")
    logits_t, labels_t = torch.cat(logits), torch.cat(labels)
    num_classes = num_classes or logits_t.shape[1]
    preds = logits_t.argmax(1).numpy()
    y = labels_t.numpy()
    per_class = metrics.per_class_accuracy(preds, y, num_classes)
    return {
        "acc": metrics.accuracy(preds, y),
        "macro_acc": float(np.nanmean(per_class)) if not np.all(np.isnan(per_class)) else float("nan"),
        "per_class_acc": per_class,
        "confusion": metrics.confusion_matrix(preds, y, num_classes),
        "loss": float(nn.functional.cross_entropy(logits_t, labels_t)),
        "n": int(len(y)),
        "logits": logits_t.numpy(),
        "labels": y,
        "preds": preds,
        "features": torch.cat(features).numpy() if features else None,
    }


# ----------------------------------------------------------------------------- files

def save_checkpoint(obj: dict, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: Path, device: torch.device) -> dict:
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # a truncated copy, a foreign file, a pickle that is not weights-only
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        raise FerlibError(f"checkpoint {path} cannot be read ({type(e).__name__}: {reason}); "
                          f"delete the folder {path.parent} to start the run over") from e


def jsonable(value):
    """Plain JSON types: numpy scalars/arrays and tensors become numbers/lists, NaN/inf become None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return jsonable(value.tolist())
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def write_json(obj: dict, path: Path) -> None:
    text = json.dumps(jsonable(obj), indent=2, allow_nan=False)
    atomic_write(path, lambda f: f.write(text.encode()))


def config_hash(config: dict, cfg: EngineConfig) -> str:
    """What must match to resume: the caller's config and the engine settings that shape training."""
    engine = {k: getattr(cfg, k) for k in ("epochs", "seed", "amp", "select_metric", "deterministic")}
    text = json.dumps(jsonable({"config": config, "engine": engine}), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- RNG state

def rng_state() -> dict:
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": n["key"].cpu().numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# ----------------------------------------------------------------------------- the run record

def git_commit() -> dict:
    """The repository's commit and whether the working tree had changes, or "unknown"."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip() != ""
        return {"git_commit": commit, "git_dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "git_dirty": None}


def package_versions() -> dict:
    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                "ferlib": ferlib.__version__}
    for name in ("torchvision",):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    versions["cuda"] = torch.version.cuda if torch.cuda.is_available() else None
    return versions


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def summarise_test(result: dict, class_names: Sequence[str]) -> dict:
    return {
        "acc": result["acc"], "macro_acc": result["macro_acc"], "loss": result["loss"], "n": result["n"],
        "per_class_acc": dict(zip(class_names, result["per_class_acc"].tolist())),
        "confusion": result["confusion"].tolist(), "class_names": list(class_names),
    }


# ----------------------------------------------------------------------------- determinism

NONDETERMINISTIC = "does not have a deterministic implementation"   # torch's warn_only message


@contextlib.contextmanager
def watch_determinism(seen: dict[str, int]):
    """Count, in `seen`, the ops torch reported as having no deterministic implementation inside
    the block (deterministic mode is warn-only: such an op runs, and the run is then not
    reproducible bit for bit). Each op's warning is still shown once."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        text = str(w.message)
        if NONDETERMINISTIC in text:
            op = text.split(NONDETERMINISTIC)[0].strip().rstrip(":").strip() or "an op"
            if op not in seen:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            seen[op] = seen.get(op, 0) + 1
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def determinism_summary(cfg: EngineConfig, device: torch.device, seen: dict[str, int]) -> dict:
    """Whether the run was deterministic: asked for, and no op reported otherwise. Deterministic
    means the same result on rerunning on this machine, not on another processor or GPU."""
    return {"requested": cfg.deterministic, "deterministic": bool(cfg.deterministic and not seen),
            "nondeterministic_ops": dict(seen), "device_type": device.type}


# ----------------------------------------------------------------------------- fit

def batch_size_of(batch) -> int:
    if isinstance(batch, torch.Tensor):
        return len(batch)
    values = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else []
    for value in values:
        size = batch_size_of(value)
        if size:
            return size
    return 0


def train_epoch(task: Task, loader: Iterable, cfg: EngineConfig, epoch: int, step: int,
                device: torch.device) -> tuple[dict[str, float], int, int]:
    """One pass over `loader`; returns (mean of each logged loss, next global step, images seen)."""
    sums: dict[str, float] = {}
    steps, images = 0, 0
    for module in task.modules.values():  # whatever mode the task arrived in (or evaluate left)
        module.train()
    # The per-step bar shows up only for epochs longer than a few seconds; `fit` keeps one bar per run.
    # Off a terminal (a notebook, a log file, the book) every refresh is a new line: there it waits 30 s.
    delay, every = (5, 1) if sys.stderr.isatty() else (30, 30)
    bar = tqdm(loader, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, disable=not cfg.progress, delay=delay,
               mininterval=every)
    for batch in bar:
        losses = task.train_step(to_device(batch, device), step)
        task.amp.update()
        step, steps, images = step + 1, steps + 1, images + batch_size_of(batch)
        for name, value in (losses or {}).items():
            sums[name] = sums.get(name, 0.0) + float(value)
        running = {k: f"{v / steps:.4f}" for k, v in sums.items()}
        if cfg.progress:
            bar.set_postfix(running, refresh=False)
        if cfg.log_every > 0 and step % cfg.log_every == 0:
            tqdm.write(f"step {step}: " + ", ".join(f"{k} {v}" for k, v in running.items()))
    bar.close()
    if steps == 0:
        raise FerlibError("the train loader yielded no batches: the train split is empty or smaller than one "
                          "batch with drop_last=True; check the fold, protocol and batch size")
    return {k: v / steps for k, v in sums.items()}, step, images


def step_schedulers(task: Task, val: dict | None) -> None:
    """Step every scheduler once; ReduceLROnPlateau on the validation loss (its default mode "min")."""
    for scheduler in task.schedulers.values():
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            if val is None:
                raise FerlibError("ReduceLROnPlateau needs a validation loader to step on")
            scheduler.step(val["loss"])
        else:
            scheduler.step()


def plateaued(cfg: EngineConfig, epochs_done: int, best_epoch: int | None, validating: bool) -> bool:
    """Early stopping: `patience` epochs have passed since the best validation epoch, and at least
    `min_epochs` have run. Decided from the checkpointed state alone, so a resumed run stops where an
    uninterrupted one would."""
    if cfg.patience <= 0 or not validating or best_epoch is None or epochs_done < cfg.min_epochs:
        return False
    return epochs_done - best_epoch >= cfg.patience


def is_better(value: float, best: float | None, metric: str) -> bool:
    """Strictly better (ties keep the earlier epoch); losses are minimised, accuracies maximised."""
    if best is None or math.isnan(best):
        return True
    if value is None or math.isnan(value):
        return False
    return value < best if metric.endswith("loss") else value > best


def training_state(task: Task, amp: Precision) -> dict:
    return {
        "modules": {k: m.state_dict() for k, m in task.modules.items()},
        "optimizers": {k: o.state_dict() for k, o in task.optimizers.items()},
        "schedulers": {k: s.state_dict() for k, s in task.schedulers.items()},
        "scaler": amp.scaler.state_dict(),
    }


def load_training_state(task: Task, amp: Precision, ckpt: dict, path: Path) -> None:
    for part in ("modules", "optimizers", "schedulers"):
        have, saved = set(getattr(task, part)), set(ckpt[part])
        if have != saved:
            raise FerlibError(f"checkpoint {path} holds {part} {sorted(saved)} but the task has {sorted(have)}; "
                              f"use another run_name or delete {path.parent}")
    for k, m in task.modules.items():
        m.load_state_dict(ckpt["modules"][k])
    for k, o in task.optimizers.items():
        o.load_state_dict(ckpt["optimizers"][k])
    for k, s in task.schedulers.items():
        s.load_state_dict(ckpt["schedulers"][k])
    if ckpt["scaler"]:
        amp.scaler.load_state_dict(ckpt["scaler"])


def fit(task: Task, train_loader: Iterable, val_loader: Iterable | None, test_loader: Iterable | None,
        cfg: EngineConfig, config: dict | None = None, class_names: Sequence[str] | None = None,
        stop_after_epoch: int | None = None) -> dict:
    """Train `task`, keep the best validation epoch, test it once, and return the run record
    (`fit_and_test` also returns that one test evaluation's arrays)."""
    return fit_and_test(task, train_loader, val_loader, test_loader, cfg, config, class_names, stop_after_epoch)[0]


def fit_and_test(task: Task, train_loader: Iterable, val_loader: Iterable | None, test_loader: Iterable | None,
                 cfg: EngineConfig, config: dict | None = None, class_names: Sequence[str] | None = None,
                 stop_after_epoch: int | None = None) -> tuple[dict, dict | None]:
    """Train `task`, keep the best validation epoch, test it once: (run record, test evaluation).

    The test evaluation is `evaluate`'s dict (logits, labels, features, ...) of the one pass over
    `test_loader`, the same pass the record's `test` summarises; None without a `test_loader` or
    when stopped early. Nothing else reads the test split: use this evaluation, never a second one.

    Resumes from `<out_dir>/<run_name>/last.pt` when it exists (the same `config` and engine
    settings are required). The checkpoint is selected on `val_loader` by `cfg.select_metric`; with
    no `val_loader` the last epoch is kept. `test_loader` is iterated exactly once, after training,
    with the best weights loaded (they stay loaded in `task` on return). `config` (the caller's
    experiment settings, JSON-able) goes into the record and the resume check. `stop_after_epoch`
    stops cleanly after that epoch, as a crash would (for tests); the returned record then has
    `finished=False`, `test=None` and is not written to disk.
    """
    started = time.perf_counter()
    config = dict(config or {})
    if cfg.select_metric not in VAL_METRICS:
        raise FerlibError(f"select_metric {cfg.select_metric!r} is not one of {', '.join(VAL_METRICS)}")
    if cfg.epochs < 1:
        raise FerlibError(f"epochs={cfg.epochs}: train for at least one epoch")
    if not 1 <= cfg.select_from <= cfg.epochs:
        raise FerlibError(f"select_from={cfg.select_from}: the first selectable epoch must be within 1..{cfg.epochs}")
    run_dir = Path(cfg.out_dir) / cfg.run_name
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"

    seed_everything(cfg.seed, cfg.deterministic)
    device = resolve_device(cfg.device)
    for module in task.modules.values():
        module.to(device)
    amp = Precision(device, cfg.amp)
    task.device, task.amp, task.autocast = device, amp, amp.autocast
    fingerprint = config_hash(config, cfg)

    epochs_done, step, history, best_value, best_epoch = 0, 0, [], None, None
    if last_path.exists():
        ckpt = load_checkpoint(last_path, device)
        if ckpt.get("config_hash") != fingerprint:
            raise FerlibError(
                f"{run_dir} holds a run with a different configuration (hash {ckpt.get('config_hash')}, this one "
                f"{fingerprint}); resuming it would mix two experiments. Use another run_name or out_dir, or "
                f"delete {run_dir} to start over")
        load_training_state(task, amp, ckpt, last_path)
        set_rng_state(ckpt["rng"])
        epochs_done, step, history = ckpt["epoch"], ckpt["step"], list(ckpt["history"])
        best_value, best_epoch = ckpt["best_value"], ckpt["best_epoch"]
        if cfg.progress:
            tqdm.write(f"{cfg.run_name}: resuming after epoch {epochs_done} from {last_path}")
    resumed_from = epochs_done
    determinism = dict(ckpt.get("determinism") or {}) if last_path.exists() else {}

    run_bar = tqdm(total=cfg.epochs, initial=epochs_done, desc=cfg.run_name, unit="epoch", mininterval=1,
                   disable=not cfg.progress)
    for epoch in range(epochs_done + 1, cfg.epochs + 1):
        if plateaued(cfg, epochs_done, best_epoch, val_loader is not None):
            break
        epoch_start = time.perf_counter()
        set_loader_epoch(train_loader, epoch)
        lrs = {f"lr_{k}": o.param_groups[0]["lr"] for k, o in task.optimizers.items()}
        with watch_determinism(determinism):
            losses, step, images = train_epoch(task, train_loader, cfg, epoch, step, device)
            train_time = time.perf_counter() - epoch_start
            val = evaluate(task, val_loader, device) if val_loader is not None else None
        step_schedulers(task, val)
        row = {"epoch": epoch, **{f"train_{k}": v for k, v in losses.items()}, **lrs}
        if val is not None:
            row.update(val_acc=val["acc"], val_macro_acc=val["macro_acc"], val_loss=val["loss"])
        value = row.get(cfg.select_metric)
        improved = (val is None or is_better(value, best_value, cfg.select_metric)) and epoch >= cfg.select_from
        if improved:
            best_value, best_epoch = value, epoch
            save_checkpoint({"modules": {k: m.state_dict() for k, m in task.modules.items()}, "epoch": epoch,
                             "metric": cfg.select_metric, "value": value, "config_hash": fingerprint}, best_path)
        row.update(improved=improved, epoch_time_s=time.perf_counter() - epoch_start,
                   images_per_s=images / max(train_time, 1e-9))
        history.append(jsonable(row))
        epochs_done = epoch
        save_checkpoint({"format": CHECKPOINT_FORMAT, "epoch": epoch, "step": step, "history": history,
                         "best_value": best_value, "best_epoch": best_epoch, "config_hash": fingerprint,
                         "determinism": determinism, "rng": rng_state(), **training_state(task, amp)}, last_path)
        if cfg.progress:
            shown = ", ".join(f"{k} {v:.4f}" for k, v in row.items()
                              if k.startswith(("train_", "val_")) and isinstance(v, float))
            tqdm.write(f"epoch {epoch}/{cfg.epochs}: {shown}{' (best)' if improved else ''}")
            run_bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k in ("train_loss", cfg.select_metric)},
                                refresh=False)
            run_bar.update(1)
        if stop_after_epoch is not None and epoch >= stop_after_epoch and epoch < cfg.epochs:
            run_bar.close()
            return build_record(cfg, config, fingerprint, history, best_epoch, best_value, None, device,
                                started, resumed_from, finished=False, determinism=determinism), None

    run_bar.close()
    if not best_path.exists():
        raise FerlibError(f"{best_path} is missing although {last_path} says training finished; "
                          f"delete {run_dir} to train again")
    best = load_checkpoint(best_path, device)
    for k, m in task.modules.items():
        m.load_state_dict(best["modules"][k])
    test, result = None, None
    if test_loader is not None:
        with watch_determinism(determinism):
            result = evaluate(task, test_loader, device)
        names = list(class_names) if class_names is not None else [str(i) for i in range(result["confusion"].shape[0])]
        if len(names) != result["confusion"].shape[0]:
            raise FerlibError(f"class_names has {len(names)} names but the model predicts "
                              f"{result['confusion'].shape[0]} classes")
        test = summarise_test(result, names)
    record = build_record(cfg, config, fingerprint, history, best_epoch, best_value, test, device, started,
                          resumed_from, finished=True, determinism=determinism)
    record["stopped_early"] = len(history) < cfg.epochs
    write_json(record, run_dir / "record.json")
    return record, result


def build_record(cfg: EngineConfig, config: dict, fingerprint: str, history: list, best_epoch: int | None,
                 best_value: float | None, test: dict | None, device: torch.device, started: float,
                 resumed_from: int, finished: bool, determinism: dict | None = None) -> dict:
    return jsonable({
        "run_name": cfg.run_name,
        "finished": finished,
        "config": config,
        "engine": asdict(cfg),
        "config_hash": fingerprint,
        "history": history,
        "best_epoch": best_epoch,
        "best": {"metric": cfg.select_metric, "value": best_value},
        "test": test,
        **git_commit(),
        "versions": package_versions(),
        "device": device_name(device),
        "determinism": determinism_summary(cfg, device, determinism or {}),
        "resumed_from_epoch": resumed_from,
        "train_time_s": sum(r["epoch_time_s"] for r in history),
        "wall_time_s": time.perf_counter() - started,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
