"""Metrics, the identity probe, fold aggregation and embeddings, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ferlib.errors import FerlibError, UnknownName
from ferlib.eval import (accuracy, aggregate_folds, confusion_matrix, embed_2d, holdout_split, identity_probe,
                         normalise_rows, per_class_accuracy)

torch.set_num_threads(1)

# 8 images, 3 classes: true  0 0 0 1 1 2 2 2
#                       pred 0 0 1 1 1 2 0 2
LABELS = [0, 0, 0, 1, 1, 2, 2, 2]
PREDS = [0, 0, 1, 1, 1, 2, 0, 2]


def test_accuracy_from_predictions_logits_and_tensors():
    assert accuracy(PREDS, LABELS) == 6 / 8
    logits = np.eye(3)[PREDS] * 4.0 - 1.0
    assert accuracy(logits, LABELS) == 6 / 8
    assert accuracy(torch.tensor(logits), torch.tensor(LABELS)) == 6 / 8
    assert math.isnan(accuracy([], []))
    with pytest.raises(FerlibError, match="3 predictions but 2 labels"):
        accuracy([0, 1, 2], [0, 1])


def test_confusion_matrix_counts_and_row_normalisation():
    cm = confusion_matrix(PREDS, LABELS, num_classes=4)
    assert cm.tolist() == [[2, 1, 0, 0],
                           [0, 2, 0, 0],
                           [1, 0, 2, 0],
                           [0, 0, 0, 0]]
    normalised = confusion_matrix(PREDS, LABELS, num_classes=4, normalise=True)
    assert np.allclose(normalised[:3], [[2 / 3, 1 / 3, 0, 0], [0, 1, 0, 0], [1 / 3, 0, 2 / 3, 0]])
    assert np.isnan(normalised[3]).all()  # class 3 never occurs: no row to normalise
    assert np.allclose(normalise_rows(normalised[:3, :3] * 7), normalised[:3, :3])
    with pytest.raises(FerlibError, match=r"label is outside 0\.\.1"):
        confusion_matrix(PREDS, LABELS, num_classes=2)


def test_per_class_accuracy_is_each_class_recall():
    per_class = per_class_accuracy(PREDS, LABELS, num_classes=4)
    assert np.allclose(per_class[:3], [2 / 3, 1.0, 2 / 3]) and np.isnan(per_class[3])


def test_aggregate_folds_hand_computed_t_interval():
    out = aggregate_folds([1.0, 2.0, 3.0])
    # mean 2, sample std 1, t(0.975, df=2) = 4.302652729911275, half-width 4.3027 / sqrt(3)
    half = 4.302652729911275 / math.sqrt(3)
    assert out["n"] == 3 and out["mean"] == 2.0 and out["std"] == pytest.approx(1.0)
    assert out["ci95_low"] == pytest.approx(2 - half) and out["ci95_high"] == pytest.approx(2 + half)
    ten = aggregate_folds([0.8, 0.9] * 5)  # std 0.052705, t(0.975, 9) = 2.262157
    assert ten["ci95_high"] - ten["mean"] == pytest.approx(2.2621571627982053 * 0.05270462766947299 / math.sqrt(10))


def test_aggregate_folds_with_one_fold_gives_nan_spread_and_none_is_an_error():
    out = aggregate_folds([0.75])
    assert out["mean"] == 0.75 and out["n"] == 1
    assert all(math.isnan(out[k]) for k in ("std", "ci95_low", "ci95_high"))
    with pytest.raises(FerlibError, match="no values"):
        aggregate_folds([])


def test_holdout_split_keeps_every_subject_on_both_sides():
    subjects = np.array(["a"] * 10 + ["b"] * 4 + ["c"])
    train, test = holdout_split(subjects, test_fraction=0.3, seed=0)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(15))
    held = subjects[test]
    assert (held == "a").sum() == 3 and (held == "b").sum() == 1 and "c" not in held  # c has one image
    assert set(subjects[train]) == {"a", "b", "c"}
    again = holdout_split(subjects, test_fraction=0.3, seed=0)
    assert np.array_equal(again[1], test)


def test_holdout_split_by_group_never_splits_a_sequence():
    subjects = np.repeat(["a", "b"], 6)
    sequences = np.repeat(["a1", "a2", "a3", "b1", "b2", "b3"], 2)
    train, test = holdout_split(subjects, test_fraction=0.3, seed=1, groups=sequences)
    assert not set(sequences[train]) & set(sequences[test])
    assert set(subjects[test]) == {"a", "b"} and len(test) == 4  # one whole sequence of each subject


def test_identity_probe_finds_identity_when_present_and_chance_when_absent():
    rng = np.random.default_rng(0)
    subjects = np.repeat([f"S{i}" for i in range(5)], 20)
    centres = rng.normal(size=(5, 16)) * 3
    leaky = centres[np.repeat(np.arange(5), 20)] + rng.normal(size=(100, 16))
    clean = rng.normal(size=(100, 16))
    train, test = holdout_split(subjects, test_fraction=0.25, seed=0)

    found = identity_probe(leaky[train], subjects[train], leaky[test], subjects[test], seed=0)
    assert found["chance"] == pytest.approx(1 / 5)  # balanced: 5 held-out images per subject
    assert found["acc"] > 0.9 and found["ratio"] == pytest.approx(found["acc"] / 0.2)
    assert (found["n_subjects"], found["n_train"], found["n_test"]) == (5, 75, 25)

    none = identity_probe(clean[train], subjects[train], clean[test], subjects[test], seed=0)
    assert none["acc"] < 0.5
    assert identity_probe(clean[train], subjects[train], clean[test], subjects[test], seed=0) == none


def test_identity_probe_chance_is_the_majority_share_of_test_images():
    feats = np.arange(12, dtype=float).reshape(6, 2)
    out = identity_probe(feats, ["a", "a", "b", "b", "c", "c"], feats[:4], ["a", "a", "a", "b"])
    assert out["chance"] == 0.75


def test_identity_probe_refuses_subjects_it_never_trained_on():
    feats = np.zeros((4, 3))
    with pytest.raises(FerlibError, match=r"test subjects \['z'\] have no training images"):
        identity_probe(feats, ["a", "a", "b", "b"], feats[:1], ["z"])


def test_embed_2d_tsne_shape_and_reproducibility():
    rng = np.random.default_rng(0)
    feats = np.concatenate([rng.normal(size=(20, 64)), rng.normal(size=(20, 64)) + 6])
    xy = embed_2d(feats, "tsne", seed=1)
    assert xy.shape == (40, 2) and np.isfinite(xy).all()
    assert np.array_equal(xy, embed_2d(feats, "tsne", seed=1))
    centre_a, centre_b = xy[:20].mean(0), xy[20:].mean(0)
    spread = xy[:20].std(0).mean()
    assert np.linalg.norm(centre_a - centre_b) > 2 * spread  # the two clusters stay apart


def test_embed_2d_umap_shape():
    rng = np.random.default_rng(0)
    xy = embed_2d(rng.normal(size=(30, 8)), "umap", seed=0, n_epochs=50)
    assert xy.shape == (30, 2) and np.isfinite(xy).all()


def test_embed_2d_rejects_unknown_methods():
    with pytest.raises(UnknownName, match="valid embedding methods are: tsne, umap"):
        embed_2d(np.zeros((10, 3)), "pca")


def test_reported_vs_reproduced_keeps_the_papers_numbers_apart_from_ours():
    import pandas as pd
    from ferlib.reported import load_reported, reported_vs_reproduced
    reported = load_reported("ifgan")
    assert len(reported) == 12 and reported.query("method == 'ifgan' and dataset == 'ckplus'")["reported"].item() == 97.52
    ours = pd.DataFrame([{"method": "ifgan", "dataset": "ckplus", "mean": 50.0, "std": 1.5, "folds": 3,
                          "data": "SynthFER ckplus", "preset": "smoke"},
                         {"method": "resnet", "dataset": "ckplus", "mean": 40.0, "std": float("nan"), "folds": 1,
                          "data": "SynthFER ckplus", "preset": "smoke"}])
    table = reported_vs_reproduced("ifgan", ours)
    row = table[(table["method"] == "ifgan") & (table["dataset"] == "ckplus")].iloc[0]
    assert row["reported"] == "97.52 (reported)" and row["reproduced"] == "50.00 ± 1.50 (3 folds)"
    one = table[(table["method"] == "resnet") & (table["dataset"] == "ckplus")].iloc[0]
    assert one["reproduced"] == "40.00 (1 fold, no spread)"  # a spread over one fold is unknown, not 0.00
    assert row["our data"] == "SynthFER ckplus" and row["preset"] == "smoke"
    other = table[(table["method"] == "resnet") & (table["dataset"] == "mmi")].iloc[0]
    assert other["reproduced"] == "not run" and other["our data"] == ""


def test_reported_confusion_matrices_are_square_percentages_in_the_protocols_class_order():
    from ferlib.data.protocols import load_protocol
    from ferlib.reported import reported_confusion
    for dataset, table_no in (("ckplus", 3), ("oulu", 4)):
        table, matrix = reported_confusion("eifn", dataset)
        assert table == table_no
        assert list(matrix.index) == list(matrix.columns) == list(load_protocol("eifn", dataset).classes)
        assert np.allclose(matrix.sum(axis=1), 100, atol=0.02)  # every row of the paper's tables sums to 100%
    assert reported_confusion("eifn", "mmi") is None and reported_confusion("ifgan", "ckplus") is None


def test_confusion_beside_reported_puts_our_recall_next_to_the_papers():
    from ferlib.reported import confusion_beside_reported
    classes = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
    ours = np.diag([3, 2, 1, 4, 0, 5]).astype(float)
    ours[0, 1] = 1  # anger: 3 of 4 right
    side = confusion_beside_reported("eifn", "oulu", ours, classes)
    assert list(side["class"]) == list(classes)
    assert side["reported (Table 4) %"][0] == "82.08 (reported)"
    assert side["ours %"][0] == 75.0 and side["test images"][0] == 4
    assert np.isnan(side["ours %"][4]) and side["test images"][4] == 0
    assert confusion_beside_reported("eifn", "mmi", ours, classes) is None
