"""Paper protocols: which frames, which classes, which folds, and the counts to expect.

`data_manifests/protocols/<paper>.yaml` (papers: baseline, ifgan, adfl, eifn, ean, tergan) has
one entry per dataset; an entry applies to the real dataset and to its `synth-` counterpart
alike. Its fields:

- frames.pick / frames.n: `last`, `first` or `middle` n of each labelled sequence's expressive
  frames (role other than neutral, in frame order, or by `frames.order_by` when the manifest has
  that column: BU-3DFE orders by `intensity_level`, so `last 2` = the two highest intensities),
  `apex` (the middle n of the frames with role apex; all of them when n is null: BU-4DFE's peak
  lies mid-sequence, so a real adapter marks those frames apex) or `all` (every image whose label
  is a class: single-image datasets).
- neutral: `first` adds each kept sequence's first frame, relabelled "neutral"; null adds none.
- classes: canonical names in the classifier's output order.
- folds: kind `subjects` (k subject-exclusive folds dealt by `deal`; `val: next` makes the fold
  after the test fold the validation fold) or `official` (the dataset's own split, one fold
  numbered 0; `val_fraction` of the training subjects is held out for model selection when the
  data has no official validation part; `test_fraction` of the subjects form SynthFER's test
  part, since synthetic data has no official split).
- expected: counts on the REAL data (sequences, images, subjects; train/val/test for official
  splits; `classes`: images per class); null where unknown. `check_counts` and
  `class_fold_table` compare them with what a manifest holds.
- label_noise: the symmetric label-noise rates the paper trains with (`add_label_noise`).
- pretrain_on: the dataset the paper pre-trains on before this one (EIFN: the other of CK+ and
  Oulu-CASIA; TER-GAN: BU-4DFE's peak frames before Oulu-CASIA), under its own entry's rules.

`apply_protocol` keeps the input manifest's index labels, so its rows still address the images
that `load_dataset` returned (`ImageCache`, `FERDataset`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ferlib.data.folds import DEAL_RULES, assign_splits, check_fold, subject_kfold, subject_sort_key
from ferlib.data.manifest import normalise_dtypes, validate_manifest
from ferlib.data.registry import MANIFESTS_DIR, SYNTH_PREFIX, base_name
from ferlib.errors import FerlibError, UnknownName
from ferlib.labels import EXPRESSIONS

PROTOCOLS_DIR = MANIFESTS_DIR / "protocols"
PAPERS = ("baseline", "ifgan", "adfl", "eifn", "ean", "tergan")
PICKS = ("last", "first", "middle", "apex", "all")
FOLD_KINDS = ("subjects", "official")
OFFICIAL_SPLITS = ("train", "val", "test")
# SynthFER presets with no real counterpart, and the real dataset whose rules they follow
SYNTH_STAND_INS = {"tiny": "ckplus", "pairs": "rafdb", "sessions": "oulu"}


@dataclass(frozen=True)
class FrameRule:
    pick: str                  # last | first | middle | apex | all
    n: int | None = None
    neutral: str | None = None  # "first": add each kept sequence's first frame as neutral
    order_by: str = "frame"    # the column that orders a sequence's frames (frame, then this if present)

    def describe(self) -> str:
        if self.pick == "all":
            what = "every image"
        elif self.pick == "apex":
            what = f"the {'middle ' + str(self.n) + ' ' if self.n else ''}apex frames of each labelled sequence"
        else:
            what = f"the {self.pick} {self.n} frame{'s' if self.n != 1 else ''} of each labelled sequence"
            if self.order_by != "frame":
                what += f" (ordered by {self.order_by.replace('_', ' ')})"
        return what + (" plus its first frame as neutral" if self.neutral == "first" else "")


@dataclass(frozen=True)
class FoldRule:
    kind: str                  # subjects | official
    k: int = 1
    deal: str = "sorted_roundrobin"
    val: str | None = "next"
    val_fraction: float = 0.1  # official: training subjects held out for validation
    test_fraction: float = 0.2  # official, synthetic data only: subjects in the test part

    def describe(self) -> str:
        if self.kind == "official":
            return f"the official split (one fold, 0), {self.val_fraction:.0%} of training subjects held out for validation"
        parts = f"{self.k - 2} train / 1 val / 1 test" if self.val == "next" else f"{self.k - 1} train / 1 test"
        return f"{self.k} subject-exclusive folds ({self.deal.replace('_', ' ')}), {parts}"


@dataclass(frozen=True)
class Protocol:
    """One paper's rules for one dataset (real or its synth- counterpart)."""

    paper: str
    dataset: str                       # as asked: "ckplus" or "synth-ckplus"
    frames: FrameRule
    classes: tuple[str, ...]
    folds: FoldRule
    expected: dict[str, int | None] = field(default_factory=dict)
    label_noise: tuple[float, ...] = ()
    pretrain_on: str | None = None     # the dataset (same paper, same YAML) pre-trained on first
    notes: str = ""
    title: str = ""
    noise: float = 0.0                 # the label-noise rate asked for ("synth-rafdb+noise10": 0.1)

    @property
    def base(self) -> str:
        """The real dataset whose rules apply ("ckplus" for "synth-ckplus" and "synth-tiny")."""
        base = base_name(self.dataset)
        return SYNTH_STAND_INS.get(base, base) if self.synthetic else base

    @property
    def synthetic(self) -> bool:
        return self.dataset.startswith(SYNTH_PREFIX)

    @property
    def k(self) -> int:
        """Number of folds; valid test folds are 0..k-1."""
        return self.folds.k

    def describe(self) -> str:
        return (f"{self.title or self.paper} protocol on {self.dataset}: {self.frames.describe()}; "
                f"{len(self.classes)} classes ({', '.join(self.classes)}); {self.folds.describe()}.")


def read_protocol_file(paper: str) -> dict[str, Any]:
    if paper not in PAPERS:
        raise UnknownName("paper", paper, PAPERS)
    return yaml.safe_load((PROTOCOLS_DIR / f"{paper}.yaml").read_text())


def protocol_from_entry(paper: str, dataset: str, entry: dict[str, Any], title: str = "",
                        datasets: tuple[str, ...] = ()) -> Protocol:
    where = f"data_manifests/protocols/{paper}.yaml, dataset {base_name(dataset)}"
    frames = FrameRule(entry["frames"]["pick"], entry["frames"].get("n"), entry.get("neutral"),
                       entry["frames"].get("order_by", "frame"))
    folds_raw = dict(entry["folds"])
    if folds_raw.get("kind") == "official":
        folds_raw.setdefault("k", 1)
    folds = FoldRule(**folds_raw)
    classes = tuple(entry["classes"])
    problems = []
    if frames.pick not in PICKS:
        problems.append(f"frames.pick {frames.pick!r} is not one of {', '.join(PICKS)}")
    if frames.pick in ("last", "first", "middle") and not (isinstance(frames.n, int) and frames.n > 0):
        problems.append(f"frames.n must be a positive integer for pick {frames.pick!r}")
    if frames.neutral not in (None, "first"):
        problems.append(f"neutral {frames.neutral!r} must be 'first' or null")
    if frames.neutral == "first" and "neutral" not in classes:
        problems.append("neutral: first needs 'neutral' among the classes")
    if bad := [c for c in classes if c not in EXPRESSIONS]:
        problems.append(f"classes {bad} are not canonical names ({', '.join(EXPRESSIONS)})")
    if folds.kind not in FOLD_KINDS or folds.deal not in DEAL_RULES or folds.val not in ("next", None):
        problems.append(f"folds {folds_raw} needs kind in {FOLD_KINDS}, deal in {DEAL_RULES}, val 'next' or null")
    pretrain = entry.get("pretrain_on")
    if pretrain is not None and (pretrain not in datasets or pretrain == base_name(dataset)):
        problems.append(f"pretrain_on {pretrain!r} must be another dataset of the same file ({', '.join(datasets)})")
    if problems:
        raise FerlibError(f"{where}: " + "; ".join(problems))
    return Protocol(paper=paper, dataset=dataset, frames=frames, classes=classes, folds=folds,
                    expected=dict(entry.get("expected") or {}), label_noise=tuple(entry.get("label_noise") or ()),
                    pretrain_on=pretrain, notes=" ".join(str(entry.get("notes", "")).split()), title=title)


NOISE_SUFFIX = "+noise"


def split_noise(dataset: str) -> tuple[str, float]:
    """"synth-rafdb+noise10" -> ("synth-rafdb", 0.1): a dataset with a share of its training labels
    flipped (`add_label_noise`), named by the percentage; a plain name has rate 0."""
    name, sep, percent = dataset.partition(NOISE_SUFFIX)
    if not sep:
        return dataset, 0.0
    if not percent.isdigit() or not 0 < int(percent) < 100:
        raise FerlibError(f"dataset {dataset!r}: a label-noise suffix is {NOISE_SUFFIX}<percent>, e.g. "
                          f"{name}{NOISE_SUFFIX}10 for 10% of the training labels flipped")
    return name, int(percent) / 100


def noisy_name(dataset: str, rate: float) -> str:
    """`split_noise`'s inverse: ("synth-rafdb", 0.2) -> "synth-rafdb+noise20"; rate 0: the name itself."""
    return dataset if not rate else f"{dataset}{NOISE_SUFFIX}{round(100 * rate)}"


def load_protocol(paper: str, dataset: str) -> Protocol:
    """The `paper`'s protocol for `dataset` ("ckplus" or "synth-ckplus": same rules). A label-noise
    suffix ("synth-rafdb+noise10") gives the same protocol with `noise` set, if the protocol lists
    that rate under `label_noise`."""
    dataset, noise = split_noise(dataset)
    raw = read_protocol_file(paper)
    entries = raw["datasets"]
    base = base_name(dataset)
    if dataset.startswith(SYNTH_PREFIX):
        base = SYNTH_STAND_INS.get(base, base)
    if base not in entries:
        valid = list(entries) + [SYNTH_PREFIX + d for d in entries]
        valid += [SYNTH_PREFIX + p for p, real in SYNTH_STAND_INS.items() if real in entries]
        raise UnknownName(f"{paper} dataset", dataset, valid)
    protocol = protocol_from_entry(paper, dataset, entries[base], title=raw.get("title", ""), datasets=tuple(entries))
    if protocol.synthetic and protocol.pretrain_on is not None:  # SynthFER pre-trains on SynthFER
        protocol = replace(protocol, pretrain_on=SYNTH_PREFIX + protocol.pretrain_on)
    if noise:
        if not any(abs(noise - r) < 1e-9 for r in protocol.label_noise):
            listed = ", ".join(noisy_name(dataset, r) for r in protocol.label_noise) or "none"
            raise FerlibError(f"the {paper} protocol of {dataset} trains with no {noise:.0%} label noise; its noisy "
                              f"variants (label_noise in data_manifests/protocols/{paper}.yaml): {listed}")
        protocol = replace(protocol, noise=noise)
    return protocol


def sequence_labels(expressive: pd.DataFrame) -> pd.Series:
    """Each sequence's label: the most frequent label of its expressive frames (ties: first seen)."""
    return expressive.groupby("sequence", sort=False)["label"].agg(lambda s: s.value_counts(sort=True).index[0])


def select_frames(manifest: pd.DataFrame, protocol: Protocol) -> pd.DataFrame:
    """The protocol's rows (index labels kept), with `sequence_label`; neutral additions relabelled."""
    rule, classes = protocol.frames, set(protocol.classes)
    if rule.pick == "all":
        out = manifest[manifest["label"].isin(classes)].copy()
        out["sequence_label"] = out["label"]
        return out
    expressive = manifest[(manifest["role"] != "neutral") & (manifest["label"] != "")]
    labels = sequence_labels(expressive)
    kept = labels[labels.isin(classes - {"neutral"})]
    order = ["sequence", rule.order_by, "frame"] if rule.order_by in manifest.columns else ["sequence", "frame"]
    expressive = expressive[expressive["sequence"].isin(kept.index)].sort_values(list(dict.fromkeys(order)), kind="stable")
    if rule.pick == "apex":
        expressive = expressive[expressive["role"] == "apex"]
    if rule.pick == "apex" and rule.n is None:
        chosen = expressive
    else:
        groups = expressive.groupby("sequence", sort=False)
        position, size = groups.cumcount(), groups["frame"].transform("size")
        start = {"first": 0 * size, "last": (size - rule.n).clip(lower=0),
                 "middle": (size - rule.n).clip(lower=0) // 2, "apex": (size - rule.n).clip(lower=0) // 2}[rule.pick]
        chosen = expressive[(position >= start) & (position < start + rule.n)]
    chosen = chosen.copy()
    chosen["sequence_label"] = chosen["sequence"].map(kept)
    parts = [chosen]
    if rule.neutral == "first":
        in_kept = manifest[manifest["sequence"].isin(kept.index)].sort_values(["sequence", "frame"], kind="stable")
        first = in_kept.groupby("sequence", sort=False).head(1)
        first = first[~first.index.isin(chosen.index)].copy()
        first["sequence_label"] = first["sequence"].map(kept)
        first["label"] = "neutral"
        parts.append(first)
    return pd.concat(parts).sort_index()


def official_split_for_synthetic(subjects: pd.Series, test_fraction: float, seed: int) -> pd.Series:
    """SynthFER has no official split: a seeded, subject-exclusive train/test split instead."""
    unique = sorted(subjects.unique(), key=subject_sort_key)
    order = np.random.default_rng(seed).permutation(len(unique))
    n_test = max(1, round(len(unique) * test_fraction))
    test = {unique[i] for i in order[:n_test]}
    return subjects.map(lambda s: "test" if s in test else "train")


def official_parts(manifest: pd.DataFrame, val_fraction: float, seed: int) -> pd.Series:
    """`official_split`, plus a seeded, subject-exclusive validation part carved from its
    training part when the data has no official validation part."""
    parts = manifest["official_split"].copy()
    if (parts == "val").any() or val_fraction <= 0:
        return parts
    train_subjects = sorted(manifest.loc[parts == "train", "subject"].unique(), key=subject_sort_key)
    if len(train_subjects) < 2:
        raise FerlibError("the official training part has fewer than 2 subjects: cannot hold out a validation part")
    order = np.random.default_rng(seed + 1).permutation(len(train_subjects))
    n_val = min(len(train_subjects) - 1, max(1, round(len(train_subjects) * val_fraction)))
    val = {train_subjects[i] for i in order[:n_val]}
    parts[(parts == "train") & manifest["subject"].isin(val)] = "val"
    return parts


def apply_protocol(manifest: pd.DataFrame, protocol: Protocol, seed: int = 0) -> pd.DataFrame:
    """Select the protocol's frames and classes and assign `fold` (split stays "").

    Keeps the index labels of `manifest`. Adds `sequence_label`; official-split protocols also
    get `official_split` (derived, seeded, for synthetic data lacking one) and `official_part`
    (train/val/test, the validation part carved from training when there is none).
    """
    manifest = normalise_dtypes(validate_manifest(manifest))
    selected = select_frames(manifest, protocol)
    if selected.empty:
        raise FerlibError(
            f"the {protocol.paper} protocol selects no rows of {protocol.dataset}: no {protocol.frames.describe()} "
            f"with a label among {', '.join(protocol.classes)}")
    selected["split"] = ""
    if protocol.folds.kind == "official":
        if "official_split" not in selected.columns or (selected["official_split"].astype(str) == "").all():
            selected["official_split"] = official_split_for_synthetic(selected["subject"], protocol.folds.test_fraction, seed)
        bad = sorted(set(selected["official_split"].astype(str)) - set(OFFICIAL_SPLITS))
        if bad:
            raise FerlibError(f"official_split values {bad} in {protocol.dataset}; expected {', '.join(OFFICIAL_SPLITS)}")
        selected["official_part"] = official_parts(selected, protocol.folds.val_fraction, seed)
        selected["fold"] = 0
    else:
        folds = subject_kfold(selected["subject"], protocol.k, rule=protocol.folds.deal, seed=seed)
        selected["fold"] = selected["subject"].astype(str).map(folds).astype(int)
    return selected


def split_fold(manifest: pd.DataFrame, protocol: Protocol, test_fold: int) -> pd.DataFrame:
    """A copy with `split` = train / val / test for test fold `test_fold` (0..k-1)."""
    test_fold = check_fold(test_fold, protocol.k)
    if "fold" not in manifest.columns or (manifest["fold"] < 0).any():
        raise FerlibError("the manifest has rows without a fold (fold = -1); call apply_protocol(manifest, protocol) first")
    out = manifest.copy()
    if protocol.folds.kind == "official":
        if "official_part" not in out.columns:
            raise FerlibError("the manifest has no official_part column; call apply_protocol(manifest, protocol) first")
        out["split"] = out["official_part"].astype(str)
        return out
    per_subject = out.groupby(out["subject"].astype(str))["fold"].unique()
    shared = per_subject[per_subject.map(len) > 1]
    if len(shared):
        raise FerlibError(f"subjects {list(shared.index[:5])} appear in more than one fold: folds must be subject-exclusive")
    subject_fold = {s: int(f[0]) for s, f in per_subject.items()}
    splits = assign_splits(subject_fold, test_fold, val=protocol.folds.val, k=protocol.k)
    out["split"] = out["subject"].astype(str).map(splits)
    return out


def check_counts(manifest: pd.DataFrame, protocol: Protocol) -> pd.DataFrame:
    """Expected (the paper's, real data only) against found counts, one row per quantity.

    Quantities: subjects, sequences (sequence datasets), images, and the official parts
    (train/val/test) for official splits. `expected` is missing (<NA>) on synthetic data and
    where the protocol gives no number; difference = found - expected.
    """
    found: dict[str, int] = {"subjects": manifest["subject"].nunique()}
    if protocol.frames.pick != "all":
        found["sequences"] = manifest["sequence"].nunique()
    found["images"] = len(manifest)
    if protocol.folds.kind == "official" and "official_split" in manifest.columns:
        for part in OFFICIAL_SPLITS:
            if part in protocol.expected or (manifest["official_split"] == part).any():
                found[part] = int((manifest["official_split"] == part).sum())
    rows = []
    totals = {k: v for k, v in protocol.expected.items() if k != "classes"}
    for quantity in dict.fromkeys([*found, *totals]):
        expected = None if protocol.synthetic else totals.get(quantity)
        rows.append({"quantity": quantity, "expected": expected, "found": found.get(quantity)})
    table = pd.DataFrame(rows).set_index("quantity")
    table = table.astype({"expected": "Int64", "found": "Int64"})
    table["difference"] = table["found"] - table["expected"]
    return table


def class_fold_table(manifest: pd.DataFrame, protocol: Protocol) -> pd.DataFrame:
    """Images per class (rows, in the protocol's class order) and fold or official part (columns),
    with `all`, and, on real data where the protocol knows them, `expected` and `difference`."""
    columns = "official_split" if protocol.folds.kind == "official" and "official_split" in manifest.columns else "fold"
    table = pd.crosstab(pd.Categorical(manifest["label"], categories=protocol.classes), manifest[columns], dropna=False)
    table.index.name, table.columns.name = "class", columns
    table["all"] = table.sum(axis=1)
    per_class = protocol.expected.get("classes") or {}
    if per_class and not protocol.synthetic:
        table["expected"] = pd.array([per_class.get(c) for c in table.index], dtype="Int64")
        table["difference"] = table["all"].astype("Int64") - table["expected"]
    return table


def add_label_noise(manifest: pd.DataFrame, rate: float, classes, seed: int = 0,
                    column: str = "label_noisy") -> pd.DataFrame:
    """A copy with `column`: the clean label, except round(rate * n) rows flipped to a different class.

    n counts the rows that are not in the test split (all rows before a fold is chosen); each
    flipped row gets a uniformly drawn class other than its own. Seeded; `label` is untouched.
    """
    classes = list(classes)
    if not 0 <= rate < 1:
        raise FerlibError(f"label-noise rate {rate} must be in [0, 1), e.g. 0.1 for 10%")
    if len(classes) < 2:
        raise FerlibError("label noise needs at least 2 classes")
    bad = sorted(set(manifest["label"]) - set(classes))
    if bad:
        raise FerlibError(f"labels {bad} are not among the classes {classes}; apply the protocol first")
    out = manifest.copy()
    noisy = out["label"].astype(str).to_numpy(dtype=object).copy()
    eligible = np.flatnonzero(out["split"].astype(str).to_numpy() != "test")
    rng = np.random.default_rng(seed)
    flipped = rng.choice(eligible, size=round(rate * len(eligible)), replace=False)
    for i in np.sort(flipped):
        others = [c for c in classes if c != noisy[i]]
        noisy[i] = others[rng.integers(len(others))]
    out[column] = noisy.astype(str)
    return out
