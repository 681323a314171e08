"""Subject-exclusive k-fold splitting.

Folds are numbered from 0: a protocol with k folds has folds 0..k-1 (`-p fold 3` in a notebook
means the fourth fold). Every subject lands in exactly one fold, so no person is ever both
trained on and tested on. One fold is the test part; with `val="next"` the following fold
(cyclically) is the validation part used for model selection (IF-GAN's 8 train / 1 val /
1 test with k=10), and the rest is training.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import numpy as np

from ferlib.errors import FerlibError, UnknownName

DEAL_RULES = ("sorted_roundrobin", "seeded_shuffle")
VAL_RULES = ("next", None)


def subject_sort_key(subject: str) -> tuple:
    """Natural order: "S2" < "S10"; digits compare as numbers, the rest as text."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.findall(r"\d+|\D+", str(subject)))


def subject_kfold(subjects: Iterable, k: int, rule: str = "sorted_roundrobin", seed: int = 0) -> dict[str, int]:
    """Deal the distinct subjects into k folds; return {subject: fold}.

    sorted_roundrobin (ADFL): subjects sorted by ID ascending (natural order), the i-th goes to
    fold i % k. seeded_shuffle: the same dealing after a permutation drawn from `seed`. Either
    way fold sizes differ by at most one subject.
    """
    if rule not in DEAL_RULES:
        raise UnknownName("fold rule", rule, DEAL_RULES)
    unique = sorted({str(s) for s in subjects}, key=subject_sort_key)
    if k < 1:
        raise FerlibError(f"k={k} folds: a protocol needs at least 1 fold")
    if len(unique) < k:
        raise FerlibError(
            f"{k} subject-exclusive folds need at least {k} subjects, but the data has {len(unique)}; "
            "use more data (a larger scale) or fewer folds")
    if rule == "seeded_shuffle":
        order = np.random.default_rng(seed).permutation(len(unique))
        unique = [unique[i] for i in order]
    return {subject: i % k for i, subject in enumerate(unique)}


def check_fold(fold: int, k: int) -> int:
    """Return `fold` as an int if it is one of 0..k-1, else raise a FerlibError saying the range."""
    try:
        number = int(fold)
        valid = float(fold) == number and 0 <= number < k and not isinstance(fold, bool)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise FerlibError(f"fold {fold} is out of range: this protocol has {k} folds, valid folds are 0..{k - 1}")
    return number


def validation_fold(test_fold: int, k: int, val: str | None = "next") -> int | None:
    """The fold used for model selection: (test_fold + 1) % k for "next", none for None."""
    if val not in VAL_RULES:
        raise UnknownName("validation rule", str(val), ["next", "None"])
    if val is None:
        return None
    if k < 3:
        raise FerlibError(f"a separate validation fold needs at least 3 folds (train, val, test); this protocol has {k}")
    return (test_fold + 1) % k


def assign_splits(folds: Mapping, test_fold: int, val: str | None = "next", k: int | None = None) -> dict:
    """Map each key of `folds` ({subject or row: fold}) to "train", "val" or "test".

    k defaults to max(fold) + 1. The test fold is checked against 0..k-1.
    """
    k = (max(folds.values()) + 1) if k is None else k
    test_fold = check_fold(test_fold, k)
    val_fold = validation_fold(test_fold, k, val)
    return {
        key: "test" if fold == test_fold else "val" if fold == val_fold else "train"
        for key, fold in folds.items()
    }
