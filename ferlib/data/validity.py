"""The four numbers that make SynthFER a fair testbed for identity-aware FER.

One fixed reference recipe (`PlainCNN`, Adam, cross-entropy, no augmentation, no regularisation,
trained until it fits its training set: a regularised, briefly trained model shows no identity
effect) measures, per seed:

(a) identity confound, `gap`: accuracy on held-out SEQUENCES of seen subjects minus accuracy on
    unseen subjects (points). Whole sequences are held out, never frames (held-out frames are
    near-duplicates of training frames and inflate the gap).
(b) identity removal can help, `oracle_gain`: a model fed [expressive frame, a neutral frame of
    the same subject from another sequence] (6 channels) minus the plain baseline (points).
(c) not saturated, `baseline_acc`: the plain subject-independent baseline's accuracy (%).
(d) identity is recoverable, `probe_ratio`: a linear probe on the baseline's penultimate features
    predicts the subject of held-out sequences at this many times chance.

Two presets, because CK+ has at most one labelled sequence per subject and class:
- (b) and (c) on `preset` (ckplus): a quarter of the subjects is unseen; the plain and the oracle
  model train on the rest and are tested on the unseen subjects. The oracle's neutral partner is
  frame 0 of another sequence of the same subject (labelled or not); in training a new partner is
  drawn for every frame each epoch, in testing one fixed, seeded partner.
- (a) and (d) on `confound_preset` (sessions): every subject poses each class in 3 sequences under
  different light. A quarter of the subjects is unseen; each seen subject gives one whole
  sequence of every class to the seen test set; one plain model trains on the rest. On ckplus
  itself a held-out sequence would be a class its subject never shows in training, and a model
  that fits its training set then learns "this person never looks angry": the gap turns negative.

Frames: the last `frames` expressive frames of each labelled sequence (the baseline protocol's
rule); classes: the six basic ones. Each seed renders its own data and draws its own split.
`summarize` gives each number's mean over the seeds with a 95% t-interval and whether the mean
meets its threshold. Deterministic for a given machine and torch thread count.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.std import tqdm

from ferlib.data import synth
from ferlib.engine import seed_everything
from ferlib.errors import FerlibError
from ferlib import eval as metrics
from ferlib.eval import aggregate_folds, identity_probe
from ferlib.labels import BASIC6
from ferlib.models.baseline import PlainCNN


@dataclass(frozen=True)
class ValidityConfig:
    """The reference recipe. Defaults: the datasheet's measurement (about 45 s per seed on 2 cores)."""

    preset: str = "ckplus"             # (b), (c): subject-independent numbers
    scale: float = 1.0
    confound_preset: str = "sessions"  # (a), (d): needs a subject's class in several sequences
    confound_scale: float = 0.5        # 40 subjects
    size: int = 32
    seeds: tuple[int, ...] = (0, 1, 2)
    classes: tuple[str, ...] = BASIC6
    frames: int = 3                  # the last n frames of each labelled sequence
    unseen_fraction: float = 0.25    # subjects held out entirely (subject-independent test)
    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-3
    width: int = 16                  # PlainCNN's first-stage channels
    resample_partners: bool = True   # the oracle draws a new neutral partner per frame and epoch
    probe_c: float = 1.0             # inverse L2 strength of the logistic-regression probe


THRESHOLDS = {  # number -> (lowest passing mean, highest passing mean, what it means)
    "gap": (5.0, None, "(a) identity confound: seen-subject sequences beat unseen subjects by >= 5 points"),
    "oracle_gain": (3.0, None, "(b) identity removal helps: [frame, neutral] beats the baseline by >= 3 points"),
    "baseline_acc": (55.0, 92.0, "(c) not saturated: the subject-independent baseline lands in 55-92%"),
    "probe_ratio": (5.0, None, "(d) identity recoverable: a linear probe finds the subject at >= 5x chance"),
}


@contextmanager
def deterministic_torch(seed: int):
    """Seed torch and switch on deterministic algorithms for the block; restore the flag after."""
    previous = torch.are_deterministic_algorithms_enabled()
    seed_everything(seed, deterministic=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


@dataclass
class Split:
    """Row positions (into the rendered data) of each part, and each row's neutral partner."""

    train: np.ndarray
    seen_test: np.ndarray
    unseen_test: np.ndarray
    partner: np.ndarray          # for every row: the position of a neutral frame of the same subject
    options: dict[int, np.ndarray]  # for every row: all such neutral frames (training draws one per epoch)
    same_sequence_partners: int  # rows whose subject had no other sequence to take a neutral frame from


def last_frames(manifest: pd.DataFrame, classes, n: int) -> pd.DataFrame:
    """The last n expressive frames of each sequence labelled with one of `classes`."""
    labelled = manifest[manifest["label"].isin(classes) & (manifest["role"] != "neutral")]
    ordered = labelled.sort_values(["sequence", "frame"], kind="stable")
    return ordered.groupby("sequence", sort=False).tail(n)


def make_split(manifest: pd.DataFrame, cfg: ValidityConfig, seed: int, hold_out_sequences: bool) -> Split:
    """Unseen subjects; with `hold_out_sequences`, one held-out sequence per seen subject that has
    at least two; every row's neutral partner."""
    rng = np.random.default_rng([seed, 17])
    rows = last_frames(manifest, cfg.classes, cfg.frames)
    subjects = np.array(sorted(rows["subject"].unique()))
    unseen = set(rng.choice(subjects, size=max(1, int(round(cfg.unseen_fraction * len(subjects)))), replace=False).tolist())
    held_out = set()
    if hold_out_sequences:  # one whole sequence of each (seen subject, class) posed more than once
        seen_rows = rows[~rows["subject"].isin(unseen)]
        for _, sequences in seen_rows.groupby(["subject", "label"])["sequence"]:
            distinct = sorted(sequences.unique())
            if len(distinct) >= 2:
                held_out.add(distinct[int(rng.integers(len(distinct)))])
    is_unseen = rows["subject"].isin(unseen).to_numpy()
    is_held = rows["sequence"].isin(held_out).to_numpy()
    positions = rows.index.to_numpy()
    # neutral partners: frame 0 of another sequence of the same subject (any sequence, labelled or not)
    neutral = manifest[manifest["role"] == "neutral"]
    by_subject = {s: list(zip(g.index, g["sequence"])) for s, g in neutral.groupby("subject")}
    partner = np.full(len(manifest), -1)
    options_of: dict[int, np.ndarray] = {}
    fallback = 0
    for pos, subject, sequence in zip(positions, rows["subject"], rows["sequence"]):
        options = [i for i, q in by_subject.get(subject, []) if q != sequence]
        if not options:
            options = [i for i, q in by_subject.get(subject, []) if q == sequence]
            fallback += 1
        options_of[int(pos)] = np.array(options)
        partner[pos] = options[int(rng.integers(len(options)))]
    return Split(positions[~is_unseen & ~is_held], positions[is_held], positions[is_unseen], partner, options_of, fallback)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N,H,W,C) -> float (N,C,H,W) in -0.5..0.5."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(255.0).sub(0.5)


def train_plain(x: torch.Tensor, y: torch.Tensor, cfg: ValidityConfig, seed: int, num_classes: int,
                epoch_inputs=None) -> PlainCNN:
    """The reference recipe: PlainCNN, Adam with a cosine learning-rate decay to 0 (so the last
    epoch does not end on a loss spike), cross-entropy, seeded shuffles, no augmentation.

    epoch_inputs(epoch) -> tensor, if given, replaces `x` at each epoch (the oracle draws a new
    neutral partner for every training frame each epoch).
    """
    with deterministic_torch(seed):
        model = PlainCNN(num_classes, in_channels=x.shape[1], width=cfg.width, dropout=0.0)
        optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        steps = cfg.epochs * -(-len(x) // cfg.batch_size)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps)))
        generator = torch.Generator().manual_seed(seed)
        model.train()
        for epoch in range(cfg.epochs):
            inputs = x if epoch_inputs is None else epoch_inputs(epoch)
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), cfg.batch_size):
                batch = order[start:start + cfg.batch_size]
                if len(batch) < 2:  # BatchNorm needs two samples
                    continue
                loss = torch.nn.functional.cross_entropy(model(inputs[batch]), y[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
    return model.eval()


@torch.no_grad()
def predict(model: PlainCNN, x: torch.Tensor, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(predicted classes, penultimate features) in eval mode."""
    labels, features = [], []
    for start in range(0, len(x), batch):
        f = model.features(x[start:start + batch])
        features.append(f)
        labels.append(model.classifier(f).argmax(1))
    return torch.cat(labels).numpy(), torch.cat(features).numpy()


def accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Accuracy in percent (the datasheet's unit); NaN for an empty set."""
    return 100.0 * metrics.accuracy(predicted, truth) if len(truth) else float("nan")


def render(preset: str, scale: float, size: int, seed: int) -> tuple[pd.DataFrame, torch.Tensor]:
    data = synth.generate(preset, scale=scale, size=size, seed=seed)
    return data.manifest, to_tensor(data.images)


def class_targets(manifest: pd.DataFrame, classes) -> np.ndarray:
    classes = list(classes)
    return np.array([classes.index(v) if v in classes else -1 for v in manifest["label"]])


def subject_independent(cfg: ValidityConfig, seed: int) -> dict:
    """(b) and (c) on `cfg.preset`: plain and [frame, neutral] models trained on the seen
    subjects' labelled sequences, tested on the unseen subjects."""
    m, images = render(cfg.preset, cfg.scale, cfg.size, seed)
    split = make_split(m, cfg, seed, hold_out_sequences=False)
    y = class_targets(m, cfg.classes)
    y_train = torch.from_numpy(y[split.train])
    paired = torch.cat([images, images[torch.from_numpy(np.maximum(split.partner, 0))]], dim=1)
    plain = train_plain(images[split.train], y_train, cfg, seed, len(cfg.classes))
    rng = np.random.default_rng([seed, 23])
    options = [split.options[int(p)] for p in split.train]

    def resampled(epoch: int) -> torch.Tensor:
        if not cfg.resample_partners:
            return paired[split.train]
        drawn = np.array([o[int(rng.integers(len(o)))] for o in options])
        return torch.cat([images[split.train], images[torch.from_numpy(drawn)]], dim=1)

    oracle = train_plain(paired[split.train], y_train, cfg, seed, len(cfg.classes), epoch_inputs=resampled)
    baseline = accuracy(predict(plain, images[split.unseen_test])[0], y[split.unseen_test])
    oracle_acc = accuracy(predict(oracle, paired[split.unseen_test])[0], y[split.unseen_test])
    return {"oracle_gain": oracle_acc - baseline, "baseline_acc": baseline, "oracle_acc": oracle_acc,
            "train_acc": accuracy(predict(plain, images[split.train])[0], y[split.train]),
            "oracle_train_acc": accuracy(predict(oracle, paired[split.train])[0], y[split.train]),
            "n_train": len(split.train), "n_unseen_test": len(split.unseen_test),
            "same_sequence_partners": split.same_sequence_partners}


def identity_confound(cfg: ValidityConfig, seed: int) -> dict:
    """(a) and (d) on `cfg.confound_preset`: one plain model trained on the seen subjects minus
    one held-out sequence each, tested on those sequences and on the unseen subjects."""
    m, images = render(cfg.confound_preset, cfg.confound_scale, cfg.size, seed)
    split = make_split(m, cfg, seed, hold_out_sequences=True)
    y = class_targets(m, cfg.classes)
    subjects = m["subject"].to_numpy()
    plain = train_plain(images[split.train], torch.from_numpy(y[split.train]), cfg, seed, len(cfg.classes))
    train_pred, train_feat = predict(plain, images[split.train])
    seen_pred, seen_feat = predict(plain, images[split.seen_test])
    unseen_pred, _ = predict(plain, images[split.unseen_test])
    probe = identity_probe(train_feat, subjects[split.train], seen_feat, subjects[split.seen_test], seed=seed, C=cfg.probe_c)
    probe_acc, chance = 100 * probe["acc"], 100 * probe["chance"]
    seen_acc, unseen_acc = accuracy(seen_pred, y[split.seen_test]), accuracy(unseen_pred, y[split.unseen_test])
    return {"gap": seen_acc - unseen_acc, "probe_ratio": probe_acc / chance, "seen_acc": seen_acc, "unseen_acc": unseen_acc,
            "confound_train_acc": accuracy(train_pred, y[split.train]), "probe_acc": probe_acc, "probe_chance": chance,
            "confound_n_train": len(split.train), "n_seen_test": len(split.seen_test)}


def measure_seed(cfg: ValidityConfig, seed: int) -> dict:
    """The four numbers (and their ingredients) for one seed."""
    start = time.perf_counter()
    row = {"seed": seed, **identity_confound(cfg, seed), **subject_independent(cfg, seed)}
    row["seconds"] = time.perf_counter() - start
    order = ["seed", "gap", "oracle_gain", "baseline_acc", "probe_ratio"]
    return {k: row[k] for k in order + [k for k in row if k not in order]}


def measure_validity(cfg: ValidityConfig = ValidityConfig(), progress: bool = True) -> pd.DataFrame:
    """One row per seed: gap, oracle_gain, baseline_acc, probe_ratio and their ingredients.

    Deterministic for a given machine and torch thread count.
    """
    if len(cfg.seeds) < 1:
        raise FerlibError("ValidityConfig.seeds is empty; give at least one seed (the datasheet uses 3)")
    rows = [measure_seed(cfg, seed) for seed in tqdm(cfg.seeds, desc="validity seeds", disable=not progress)]
    return pd.DataFrame(rows)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per number: mean, 95% CI (t-interval over the seeds), threshold and whether the mean passes."""
    rows = []
    for name, (low, high, meaning) in THRESHOLDS.items():
        agg = aggregate_folds(df[name])
        mean, lo, hi = agg["mean"], agg["ci95_low"], agg["ci95_high"]
        passed = (low is None or mean >= low) and (high is None or mean <= high)
        threshold = f">= {low:g}" if high is None else f"{low:g}..{high:g}"
        rows.append({"number": name, "mean": mean, "ci_low": lo, "ci_high": hi, "threshold": threshold,
                     "passed": bool(passed), "seeds": len(df), "meaning": meaning})
    return pd.DataFrame(rows).set_index("number")


def config_record(cfg: ValidityConfig) -> dict:
    """The config as plain values (for a results file or a notebook table)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
