"""SynthFER's validity measurements: splits, recipe, summary, and a weak but stable check."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from ferlib.data import synth, validity
from ferlib.errors import FerlibError
from ferlib.labels import BASIC6

# About 40 s on one AMD EPYC core. Measured on seeds 0-2 here: gap 15.6, 12.2, 14.4; probe ratio 9.7, 10.0, 11.3;
# training accuracies 100 (the datasheet's scale gives gaps of 10-35 and probe ratios near 20).
SMALL = validity.ValidityConfig(seeds=(0,), frames=2, epochs=20, size=16, scale=0.5, confound_scale=0.25)


@pytest.fixture(scope="module")
def sessions():
    return synth.generate("sessions", scale=0.1, size=16, seed=0).manifest


@pytest.fixture(scope="module")
def ckplus():
    return synth.generate("ckplus", scale=0.2, size=16, seed=0).manifest


def test_held_out_sequences_are_whole_and_unseen_subjects_untouched(sessions):
    split = validity.make_split(sessions, validity.ValidityConfig(), seed=0, hold_out_sequences=True)
    m = sessions
    train_seq, seen_seq = set(m.loc[split.train, "sequence"]), set(m.loc[split.seen_test, "sequence"])
    assert train_seq.isdisjoint(seen_seq)  # whole sequences, never frames
    unseen = set(m.loc[split.unseen_test, "subject"])
    assert unseen.isdisjoint(m.loc[split.train, "subject"]) and len(unseen) == 2  # a quarter of 8 subjects
    assert set(m.loc[split.seen_test, "subject"]) <= set(m.loc[split.train, "subject"])
    # each seen subject gives one sequence of every class; the other two stay in training
    held = m.loc[split.seen_test].groupby(["subject", "label"])["sequence"].nunique()
    assert held.eq(1).all() and len(held) == 6 * 6
    kept = m.loc[split.train].groupby(["subject", "label"])["sequence"].nunique()
    assert kept.eq(2).all()
    assert m.loc[np.concatenate([split.train, split.seen_test])].groupby("sequence").size().eq(SMALL.frames + 1).all()


def test_subject_independent_split_and_neutral_partners(ckplus):
    split = validity.make_split(ckplus, validity.ValidityConfig(frames=3), seed=1, hold_out_sequences=False)
    m = ckplus
    assert len(split.seen_test) == 0
    assert set(m.loc[split.train, "subject"]).isdisjoint(m.loc[split.unseen_test, "subject"])
    assert set(m.loc[split.train, "label"]) <= set(BASIC6)  # contempt and unlabelled stay out
    rows = np.concatenate([split.train, split.unseen_test])
    partners = split.partner[rows]
    assert (m.loc[partners, "role"] == "neutral").all()
    assert (m.loc[partners, "subject"].to_numpy() == m.loc[rows, "subject"].to_numpy()).all()
    same = m.loc[partners, "sequence"].to_numpy() == m.loc[rows, "sequence"].to_numpy()
    assert same.sum() == split.same_sequence_partners < len(rows) / 10  # another sequence whenever the subject has one
    for row in split.train[:20]:
        assert split.partner[row] in split.options[int(row)]


def test_last_frames_takes_the_end_of_each_labelled_sequence(ckplus):
    rows = validity.last_frames(ckplus, BASIC6, 3)
    last = ckplus.groupby("sequence")["frame"].max()
    for sequence, frames in rows.groupby("sequence")["frame"]:
        assert sorted(frames) == [last[sequence] - 2, last[sequence] - 1, last[sequence]]
    assert (rows["role"] != "neutral").all() and rows["label"].isin(BASIC6).all()


def test_training_is_deterministic_and_fits():
    before = torch.are_deterministic_algorithms_enabled()  # other tests' engine runs may have set it
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(40, 3, 16, 16, generator=gen) - 0.5
    y = torch.arange(40) % 4
    cfg = validity.ValidityConfig(epochs=30, width=8, batch_size=8)
    a = validity.train_plain(x, y, cfg, seed=3, num_classes=4)
    b = validity.train_plain(x, y, cfg, seed=3, num_classes=4)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(pa, pb)
    predicted, features = validity.predict(a, x)
    assert validity.accuracy(predicted, y.numpy()) == 100.0  # the recipe fits its training set (random noise here)
    assert features.shape == (40, 8 * 8)
    assert torch.are_deterministic_algorithms_enabled() == before  # the flag is restored


def test_summarize_hand_computed():
    df = pd.DataFrame({"gap": [4.0, 6.0, 8.0], "oracle_gain": [2.0, 2.0, 2.0], "baseline_acc": [90.0, 93.0, 96.0],
                       "probe_ratio": [5.0, 6.0, 7.0]})
    table = validity.summarize(df)
    half = 4.302652729749464 * 2.0 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert table.loc["gap", "mean"] == 6.0
    assert table.loc["gap", "ci_low"] == pytest.approx(6.0 - half) and table.loc["gap", "ci_high"] == pytest.approx(6.0 + half)
    assert table.loc["gap", "passed"] and table.loc["probe_ratio", "passed"]
    assert not table.loc["oracle_gain", "passed"]  # 2 < 3
    assert not table.loc["baseline_acc", "passed"]  # 93 > 92: saturated
    assert table.loc["oracle_gain", "ci_low"] == table.loc["oracle_gain", "ci_high"] == 2.0
    assert table.loc["baseline_acc", "threshold"] == "55..92" and table.loc["gap", "threshold"] == ">= 5"


def test_one_seed_has_no_interval():
    table = validity.summarize(pd.DataFrame({k: [3.0] for k in validity.THRESHOLDS}))
    assert table.loc["gap", "mean"] == 3.0 and math.isnan(table.loc["gap", "ci_low"])


def test_empty_seeds_is_a_user_error():
    with pytest.raises(FerlibError, match="seeds is empty"):
        validity.measure_validity(validity.ValidityConfig(seeds=()))


def test_identity_effects_exist_on_a_small_run():
    """The weak, stable version of the datasheet's four numbers, far above their thresholds here (see SMALL)."""
    row = validity.measure_validity(SMALL, progress=False).iloc[0]
    assert row["gap"] > 0  # seen subjects' held-out sequences beat unseen subjects
    # The oracle gain (a neutral reference of the same person helps) is not asserted here: on seed 0 it is
    # within noise (-0.4 points in its study record; 79.5 vs 80.1 on an AMD EPYC, positive on an Intel Xeon).
    # test_the_oracle_gain_holds_over_the_registrys_seeds checks it over the datasheet's three seeds.
    assert row["probe_ratio"] > 2
    assert row["train_acc"] > 95 and row["confound_train_acc"] > 95


def test_the_oracle_gain_holds_over_the_registrys_seeds():
    """The datasheet's validity records (seeds 0-2, made by the sweep): a neutral reference of the same
    person helps on average and on most seeds."""
    from ferlib.study.records import REGISTRY, read_record
    gains = [read_record(p)["result"]["oracle_gain"] for p in sorted((REGISTRY / "synthfer").rglob("*.json"))]
    assert len(gains) >= 3
    assert sum(gains) / len(gains) > 2 and sum(g > 0 for g in gains) > len(gains) / 2
