"""Training fingerprints: the losses of each method's first training steps on one fixed tiny batch.

For every (paper, method) of the study, `training_fingerprint` builds the method's task with the
smoke preset's networks (the code path every preset shares), seeded as a run is, and takes `STEPS`
optimisation steps on one deterministic batch of `BATCH_SIZE` images (drawn from a seeded CPU
`torch.Generator`, portable across processors; labels cycle over the protocol's classes, subjects
over `SUBJECTS`). The losses each `train_step` returns are the fingerprint.

The stored fingerprints, `data_manifests/fingerprints.json` (keyed "paper/method"), are the
current code's. Across processors (other CPU kernels) the losses differ by far less than `RTOL`;
a real change to a model, a loss or a constant moves them by far more (the numbers are at `RTOL`).
A result record carries the fingerprint of the code that trained it: when it differs from the
current code's stored fingerprint (`is_current` is False), the record is stale.

Why float64: the steps run in `DTYPE` (the weights are built in float32, as a run builds them,
then cast). In float32 the kernels' rounding (1e-7) is amplified by the networks' kinks: one
ReLU input within rounding of zero flips its gradient, and Adam's first step, about lr * sign(g),
turns the changed gradients into whole-lr steps. AVX2 against AVX-512 kernels then moved IF-GAN's
step-2 and step-3 losses by 5e-3 and 4e-2 (its U-Net has the most activations; ResNet 3.6e-5,
ADFL 7e-6, EIFN 1.3e-6, baseline 6e-7), as much as a real 10% change of a constant moves them
(IF-GAN's island alpha: 7e-5). In float64 the rounding is 1e-16 and no kink flips: the kernels
differ by 1e-13 at most, and every change tried by 7e-5 or more.

IF-GAN runs at 32 px (`SIZES`) instead of the smoke preset's 48: the same G, D and E (the
PatchGAN's smallest input), in half the time.

After an intended change to a model or a loss, regenerate the file with `update_stored()`
(`python -m ferlib registry fingerprints --update`) and commit it with the change.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
from pathlib import Path

import numpy as np
import torch

from ferlib.errors import FerlibError, UnknownName
from ferlib.experiments import adfl, baseline, ean, eifn, ifgan, tergan
from ferlib.io import atomic_write

STORED = Path(__file__).resolve().parents[2] / "data_manifests" / "fingerprints.json"

PRESET = "smoke"        # the architecture the fingerprint trains (every preset runs the same code)
SIZES = {"ifgan": 32}   # input side overriding the preset's 48 px: the same networks, half the time
DTYPE = torch.float64   # the steps' precision (see the module docstring)
STEPS = 3               # train_step calls on the one batch
BATCH_SIZE = 8          # images in the batch (at least the largest class count: ADFL's 8 on CK+)
BATCH_SEED = 20240607   # the CPU generator that draws the images
SEED = 0                # seed_everything before building the task and again before training, as a run
SUBJECTS = 4            # EIFN's identity classes; the batch's subjects cycle over them
CHANNELS = 3            # SynthFER images are RGB

# RTOL: two fingerprints are the same when every logged loss of every step agrees within RTOL
# relative. Measured on an AVX-512 CPU (torch 2.14.1, one thread, float64, 3 steps):
#   other CPU kernels, a subprocess with ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 (and
#   with ATEN_CPU_CAPABILITY=avx2 too): at most 9.3e-14 (ifgan/ifgan-noattention, step 3 softmax);
#   no method is bit-identical (each differs by 1e-16 to 9.3e-14 somewhere);
#   the smallest effect of the one-line changes tried: 6.8e-5 (IF-GAN's island alpha 0.03 -> 0.033);
#   others: EIFN lambda1 1e-4 -> 1.1e-4 2.6e-3, baseline weight decay +10% 2.8e-4, ADFL margin
#   0.35 -> 0.30 0.15, IF-GAN l1 -> MSE 0.29.
# Their geometric middle is 2.5e-9; RTOL is rounded up to 1e-8, leaving more room on the kernels'
# side (a real other processor, BLAS or torch build is not fully emulated by the ISA switches).
RTOL = 1e-8
TINY = 1e-300           # |a - b| / max(|a|, |b|, TINY): two zeros agree

# the experiments, in the study's order; each one's METHODS dict names its methods
EXPERIMENTS = {"baseline": baseline, "ifgan": ifgan, "adfl": adfl, "eifn": eifn, "ean": ean, "tergan": tergan}
METHODS: tuple[tuple[str, str], ...] = (("baseline", "baseline"),) + tuple(
    (paper, method) for paper in ("ifgan", "adfl", "eifn", "ean", "tergan") for method in EXPERIMENTS[paper].METHODS)
# EAN's phases start at once in the fingerprint's 3 steps: the graph (and Adj_loss) from step 1 and SCN's
# relabelling too, so the steps run every loss its method has
EAN_PHASES = dict(graph_start=0, relabel_epoch=1)


def key(paper: str, method: str) -> str:
    """The stored file's key: "paper/method"."""
    return f"{paper}/{method}"


def check_method(paper: str, method: str) -> None:
    if (paper, method) not in METHODS:
        raise UnknownName("(paper, method) pair", key(paper, method), [key(*pm) for pm in METHODS])


# ----------------------------------------------------------------------------- the batch and the task

def preset_config(paper: str):
    """The smoke preset's config of `paper` on its default dataset (SynthFER CK+), CPU, `SIZES` applied."""
    configs = {"baseline": baseline.BaselineConfig, "ifgan": ifgan.IFGANConfig, "adfl": adfl.ADFLConfig,
               "eifn": eifn.EIFNConfig, "ean": ean.EANConfig, "tergan": tergan.TERGANConfig}
    return configs[paper].from_preset(PRESET, device="cpu", size=SIZES.get(paper), **(EAN_PHASES if paper == "ean" else {}))


def classes_of(paper: str, cfg) -> tuple[str, ...]:
    """The protocol's classes for the config's dataset (ADFL's include neutral)."""
    from ferlib.data.protocols import load_protocol
    return tuple(load_protocol(paper, cfg.dataset).classes)


def input_size(paper: str, cfg) -> tuple[int, int]:
    """The network input (H, W): ADFL's crop of the aligned face, else the preset's square size."""
    return tuple(cfg.crop_size) if paper == "adfl" else (cfg.size, cfg.size)


def tiny_batch(num_classes: int, size: tuple[int, int], dtype: torch.dtype = DTYPE) -> dict[str, torch.Tensor]:
    """`BATCH_SIZE` images in [-1, 1] (the transforms' range) from a seeded CPU generator, labels
    0, 1, ... cycling over the classes (each class appears), subjects cycling over `SUBJECTS`."""
    if num_classes > BATCH_SIZE:
        raise FerlibError(f"the fingerprint batch of {BATCH_SIZE} images cannot show all {num_classes} classes")
    generator = torch.Generator().manual_seed(BATCH_SEED)
    image = torch.rand(BATCH_SIZE, CHANNELS, *size, generator=generator, dtype=dtype) * 2 - 1
    index = torch.arange(BATCH_SIZE)
    return {"image": image, "label": index % num_classes, "subject": index % SUBJECTS}


def build(paper: str, method: str, cfg, classes: tuple[str, ...]):
    """The method's task, built as its experiment builds it for a fold (IF-GAN's I_AE still zero)."""
    if paper == "baseline":
        return baseline.make_task(cfg, len(classes), CHANNELS)
    if paper == "ifgan":
        return ifgan.build_task(cfg, method, len(classes), CHANNELS)
    if paper == "adfl":
        return adfl.build_task(cfg, method, classes, CHANNELS)
    if paper == "ean":
        index = torch.arange(BATCH_SIZE)
        return ean.build_task(cfg, method, len(classes), CHANNELS, index, index % len(classes), SUBJECTS)
    if paper == "tergan":                     # the step that defines each: stage 1 (baseline) or stage 2
        from ferlib.models.tergan import StageOneTask, TERGANTask
        model = tergan.build_model(cfg, len(classes), SUBJECTS, CHANNELS)
        if method == "baseline":
            return StageOneTask(model, cfg.lr, cfg.betas)
        return TERGANTask(model, cfg.lr, cfg.betas, tergan.method_lambdas(cfg, method))
    return eifn.build_task(cfg, method, len(classes), torch.arange(SUBJECTS), CHANNELS, cfg.dataset,
                           lr_step=cfg.lr_step)


@contextlib.contextmanager
def isolated(threads: int = 1):
    """Inside: `threads` torch threads. Afterwards the caller's threads, default dtype, RNG states
    (python, numpy, torch CPU) and determinism flags are back: a fingerprint taken before a run
    changes nothing about the run."""
    saved_threads, saved_dtype = torch.get_num_threads(), torch.get_default_dtype()
    saved_python, saved_numpy = random.getstate(), np.random.get_state()
    saved_flags = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                   torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.set_num_threads(threads)
            yield
    finally:
        torch.set_num_threads(saved_threads)
        torch.set_default_dtype(saved_dtype)
        random.setstate(saved_python)
        np.random.set_state(saved_numpy)
        torch.use_deterministic_algorithms(saved_flags[0], warn_only=saved_flags[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved_flags[2:]


def training_fingerprint(paper: str, method: str, steps: int = STEPS) -> dict:
    """The losses of `steps` train_step calls of (paper, method) on the fixed tiny batch:
    {"paper", "method", "steps", "losses": [{name: float} per step]}.

    The task is built as a run builds it (seeded, float32 weights), then cast to `DTYPE` and
    trained as `fit` trains: CPU, `Precision` (amp off the GPU), modules in train mode, one
    thread. Deterministic; the caller's RNGs, threads and default dtype are left as they were."""
    from ferlib.engine import Precision, seed_everything
    check_method(paper, method)
    cfg = preset_config(paper)
    classes = classes_of(paper, cfg)
    device = torch.device("cpu")
    with isolated():
        seed_everything(SEED)                 # the weights draw from torch's RNG (as run_fold)
        task = build(paper, method, cfg, classes)
        seed_everything(SEED)                 # as fit, before training
        torch.set_default_dtype(DTYPE)        # tensors a step creates
        for module in task.modules.values():
            module.to(device, DTYPE)          # the same parameter objects: the optimisers keep them
        batch = tiny_batch(len(classes), input_size(paper, cfg))
        if paper == "ean":                    # SCN's label table is keyed by index; G_enc's views
            batch = ean.self_views_batch(batch, SUBJECTS)
        if paper == "tergan":                 # D^i's people; each source's target: the batch reversed
            batch = tergan.reversed_pairs_batch(batch)
        if paper == "ifgan":                  # I_AE: the batch's per-class means (as fold_averages)
            from ferlib.models.ifgan import average_targets
            task.model.averages.copy_(average_targets(batch["image"], batch["label"], len(classes)))
        amp = Precision(device, True)         # fit's default amp=True: a pass-through off CUDA
        task.device, task.amp, task.autocast = device, amp, amp.autocast
        for module in task.modules.values():  # as train_epoch
            module.train()
        losses = []
        for step in range(steps):
            logged = task.train_step(batch, step)
            amp.update()
            losses.append({name: float(value) for name, value in logged.items()})
    return {"paper": paper, "method": method, "steps": steps, "losses": losses}


def all_fingerprints(steps: int = STEPS) -> dict[str, dict]:
    """Every method's fingerprint, keyed "paper/method"."""
    return {key(paper, method): training_fingerprint(paper, method, steps) for paper, method in METHODS}


# ----------------------------------------------------------------------------- comparing

def relative_difference(a: float, b: float) -> float:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return 0.0 if a == b else math.inf
    return abs(a - b) / max(abs(a), abs(b), TINY)


def max_relative_difference(a: dict, b: dict) -> float:
    """The largest relative difference over the terms and steps two fingerprints share."""
    return max((relative_difference(x[name], y[name]) for x, y in zip(a["losses"], b["losses"])
                for name in x.keys() & y.keys()), default=0.0)


def compare(a: dict, b: dict, rtol: float = RTOL) -> str | None:
    """None when fingerprints `a` and `b` agree (the same method, steps and terms, every loss
    within `rtol` relative); otherwise one line naming the first difference."""
    for field in ("paper", "method"):
        if a.get(field) != b.get(field):
            return f"{field} differs: {a.get(field)!r} vs {b.get(field)!r}"
    who = key(a.get("paper"), a.get("method"))
    losses_a, losses_b = a.get("losses") or [], b.get("losses") or []
    if len(losses_a) != len(losses_b) or a.get("steps") != b.get("steps"):
        return f"{who}: {len(losses_a)} steps vs {len(losses_b)}"
    for step, (x, y) in enumerate(zip(losses_a, losses_b), start=1):
        if set(x) != set(y):
            return (f"{who} step {step}: terms {', '.join(sorted(x))} vs {', '.join(sorted(y))}")
        for name in x:
            rel = relative_difference(x[name], y[name])
            if not rel <= rtol:
                return (f"{who} step {step} {name}: {x[name]!r} vs {y[name]!r} "
                        f"(relative difference {rel:.2e} > {rtol:.0e})")
    return None


# ----------------------------------------------------------------------------- the stored file

def load_stored(path: Path | str = STORED) -> dict[str, dict]:
    """The stored fingerprints, keyed "paper/method"."""
    path = Path(path)
    if not path.is_file():
        raise FerlibError(f"no stored fingerprints: {path} does not exist; write it with update_stored() "
                          "(python -m ferlib registry fingerprints --update)")
    return json.loads(path.read_text())


def write_stored(fingerprints: dict[str, dict], path: Path | str = STORED) -> Path:
    """Write `fingerprints` (keyed "paper/method") atomically: pretty JSON, sorted keys."""
    text = json.dumps(fingerprints, indent=2, sort_keys=True, allow_nan=False) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode()))


def update_stored(path: Path | str = STORED, steps: int = STEPS) -> dict[str, dict]:
    """Recompute every method's fingerprint with the current code and store them; returns them."""
    fingerprints = all_fingerprints(steps)
    write_stored(fingerprints, path)
    return fingerprints


def is_current(paper: str, method: str, fingerprint: dict, path: Path | str = STORED) -> bool:
    """Whether `fingerprint` (e.g. a record's) is the current code's, the stored one, within RTOL.
    False means the record was made by other code: it is stale."""
    stored = load_stored(path).get(key(paper, method))
    return stored is not None and compare(fingerprint, stored) is None


def check_stored(path: Path | str = STORED) -> dict[str, str | None]:
    """Per "paper/method": None when the current code reproduces the stored fingerprint, else why not."""
    stored = load_stored(path)
    out = {}
    for paper, method in METHODS:
        k = key(paper, method)
        out[k] = (f"{k}: no stored fingerprint" if k not in stored
                  else compare(training_fingerprint(paper, method, stored[k].get("steps", STEPS)), stored[k]))
    return out


__all__ = ["STORED", "METHODS", "RTOL", "STEPS", "training_fingerprint", "all_fingerprints", "compare",
           "max_relative_difference", "load_stored", "write_stored", "update_stored", "is_current", "check_stored"]
