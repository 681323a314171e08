"""Subject-exclusive folds: ADFL's sorted round-robin, IF-GAN's 8/1/1, the fold range message."""

import pytest

from ferlib.data.folds import assign_splits, check_fold, subject_kfold, subject_sort_key, validation_fold
from ferlib.errors import FerlibError, UnknownName

SUBJECTS = [f"S{i:03d}" for i in (5, 10, 11, 14, 22, 26, 28, 29, 32, 34, 35, 37, 42)]


def test_sorted_roundrobin_deals_subjects_by_id_in_turn():
    folds = subject_kfold(reversed(SUBJECTS), k=10, rule="sorted_roundrobin")
    # hand-dealt: the i-th smallest ID goes to fold i % 10
    assert folds == {"S005": 0, "S010": 1, "S011": 2, "S014": 3, "S022": 4, "S026": 5, "S028": 6,
                     "S029": 7, "S032": 8, "S034": 9, "S035": 0, "S037": 1, "S042": 2}


def test_sorting_is_natural_so_s2_comes_before_s10():
    assert sorted(["S10", "S2", "S1"], key=subject_sort_key) == ["S1", "S2", "S10"]
    assert subject_kfold(["S10", "S2", "S1"], k=3) == {"S1": 0, "S2": 1, "S10": 2}


def test_duplicates_count_once_and_fold_sizes_differ_by_at_most_one():
    folds = subject_kfold(SUBJECTS * 3, k=4)
    assert set(folds) == set(SUBJECTS)
    sizes = [list(folds.values()).count(f) for f in range(4)]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == len(SUBJECTS)


def test_seeded_shuffle_is_deterministic_and_depends_on_the_seed():
    a = subject_kfold(SUBJECTS, k=5, rule="seeded_shuffle", seed=1)
    assert a == subject_kfold(list(reversed(SUBJECTS)), k=5, rule="seeded_shuffle", seed=1)
    assert a != subject_kfold(SUBJECTS, k=5, rule="seeded_shuffle", seed=2)
    assert a != subject_kfold(SUBJECTS, k=5, rule="sorted_roundrobin")


def test_unknown_rule_and_too_few_subjects_are_explained():
    with pytest.raises(UnknownName, match="seeded_shuffle, sorted_roundrobin"):
        subject_kfold(SUBJECTS, k=3, rule="random")
    with pytest.raises(FerlibError, match="10 subject-exclusive folds need at least 10 subjects, but the data has 3"):
        subject_kfold(["a", "b", "c"], k=10)


def test_ifgan_split_is_8_train_1_val_1_test_with_val_the_next_fold():
    folds = {f"s{f}": f for f in range(10)}
    splits = assign_splits(folds, test_fold=9, val="next", k=10)
    assert splits["s9"] == "test" and splits["s0"] == "val"  # (9 + 1) % 10 wraps round
    assert sorted(splits.values()).count("train") == 8
    assert validation_fold(3, 10) == 4 and validation_fold(3, 10, val=None) is None


def test_without_val_everything_but_the_test_fold_trains():
    splits = assign_splits({"a": 0, "b": 1, "c": 2}, test_fold=1, val=None)
    assert splits == {"a": "train", "b": "test", "c": "train"}


def test_every_fold_is_test_once_and_no_subject_is_in_two_parts():
    folds = subject_kfold(SUBJECTS, k=10)
    seen_as_test = []
    for test_fold in range(10):
        splits = assign_splits(folds, test_fold, val="next", k=10)
        test = {s for s, p in splits.items() if p == "test"}
        selection = {s for s, p in splits.items() if p in ("train", "val")}  # what model selection sees
        assert test and not test & selection
        assert all(folds[s] == test_fold for s in test)
        seen_as_test += sorted(test)
    assert sorted(seen_as_test) == sorted(SUBJECTS)  # each subject tested exactly once


def test_fold_out_of_range_says_the_valid_range():
    with pytest.raises(FerlibError) as e:
        check_fold(12, 10)
    assert str(e.value) == "fold 12 is out of range: this protocol has 10 folds, valid folds are 0..9"
    for bad in (-1, 10, 2.5, "x", None, True):
        with pytest.raises(FerlibError, match="valid folds are 0..9"):
            check_fold(bad, 10)
    assert check_fold(0, 10) == 0 and check_fold(9, 10) == 9 and check_fold("3", 10) == 3
    with pytest.raises(FerlibError, match="valid folds are 0..7"):
        assign_splits({"a": 0}, test_fold=8, k=8)
