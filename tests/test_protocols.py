"""Paper protocols: the typed-in numbers, frame selection, folds, official splits, counts, noise."""

import numpy as np
import pandas as pd
import pytest

from ferlib.data.protocols import (PAPERS, add_label_noise, apply_protocol, check_counts, load_protocol,
                                   read_protocol_file, split_fold)
from ferlib.errors import FerlibError, UnknownName
from ferlib.labels import BASIC6, BASIC7, CKPLUS7, FERPLUS8


def sequences(n_subjects=12, labels=("anger", "happiness", "contempt"), length=6, mmi=False):
    """Subjects S01.. with one sequence per label: frame 0 neutral ... last frame apex
    (mmi=True: neutral -> onset -> apex -> offset -> neutral, apex in the middle).
    Subject S01 also has an unlabelled sequence (label "")."""
    rows = []
    for s in range(1, n_subjects + 1):
        subject = f"S{s:02d}"
        for q, label in enumerate(labels + (("",) if s == 1 else ())):
            for f in range(length):
                if mmi:
                    role = "neutral" if f in (0, length - 1) else "apex" if f == length // 2 else "onset" if f < length // 2 else "offset"
                else:
                    role = "neutral" if f == 0 else "apex" if f == length - 1 else "onset"
                rows.append(dict(path=f"{subject}/{q}/{f}.png", subject=subject, sequence=f"{subject}_{q}", frame=f,
                                 label="neutral" if role == "neutral" and label else label, role=role, fold=-1, split=""))
    return pd.DataFrame(rows)


def singles(n_subjects=20, per_subject=5, classes=BASIC7, official=None):
    rows = []
    for s in range(n_subjects):
        for i in range(per_subject):
            rows.append(dict(path=f"{s}_{i}.jpg", subject=f"P{s:03d}", sequence=f"P{s:03d}_{i}", frame=0,
                             label=classes[(s + i) % len(classes)], role="single", fold=-1, split=""))
    df = pd.DataFrame(rows)
    if official is not None:
        df["official_split"] = official(df)
    return df


# (paper, dataset, classes, k, expected counts typed in from the papers)
PAPER_NUMBERS = [
    ("ifgan", "ckplus", BASIC6, 10, {"sequences": 309, "images": 927}),
    ("ifgan", "mmi", BASIC6, 10, {"sequences": 208, "images": 624}),
    ("ifgan", "bu3dfe", BASIC6, 10, {"images": 1200}),
    ("ifgan", "rafdb", BASIC7, 1, {"train": 12271, "test": 3068}),
    ("adfl", "ckplus", FERPLUS8, 10, {"sequences": 327, "images": 1308}),
    ("adfl", "mmi", BASIC7, 10, {"sequences": 209}),
    ("adfl", "oulu", BASIC7, 10, {"sequences": 480}),
    ("eifn", "ckplus", CKPLUS7, 10, {"sequences": 327, "images": 981}),
    ("eifn", "oulu", BASIC6, 10, {"sequences": 480, "images": 1440}),
    ("ean", "rafdb", BASIC7, 1, {"train": 12271, "test": 3068}),
    ("ean", "ferplus", FERPLUS8, 1, {"train": 28709, "test": 3589}),
    ("tergan", "oulu", BASIC6, 8, {"sequences": 480, "images": 1440}),
    ("baseline", "ckplus", BASIC6, 10, {"sequences": 309, "images": 927}),
    ("baseline", "mmi", BASIC6, 10, {"images": 624}),
    ("baseline", "bu3dfe", BASIC6, 10, {"images": 1200}),
]


@pytest.mark.parametrize("paper, dataset, classes, k, expected", PAPER_NUMBERS)
def test_the_papers_numbers_are_typed_in(paper, dataset, classes, k, expected):
    p = load_protocol(paper, dataset)
    assert p.classes == tuple(classes) and p.k == k and not p.synthetic
    for quantity, value in expected.items():
        assert p.expected[quantity] == value


def test_every_paper_loads_for_every_dataset_it_lists_and_its_synth_counterpart():
    for paper in PAPERS:
        for dataset in read_protocol_file(paper)["datasets"]:
            real, synth = load_protocol(paper, dataset), load_protocol(paper, f"synth-{dataset}")
            assert synth.synthetic and synth.base == dataset
            assert (real.frames, real.classes, real.folds) == (synth.frames, synth.classes, synth.folds)
    assert set(read_protocol_file("baseline")["datasets"]) == {"ckplus", "mmi", "oulu", "bu3dfe", "bu4dfe", "rafdb", "ferplus"}
    assert load_protocol("adfl", "ckplus").folds.deal == "sorted_roundrobin"
    assert load_protocol("ean", "rafdb").label_noise == (0.1, 0.2, 0.3)   # 0.3 for the summary chapter
    assert "8 train / 1 val / 1 test" in load_protocol("ifgan", "ckplus").describe()
    tiny = load_protocol("ifgan", "synth-tiny")  # SynthFER's test preset follows the CK+ rules
    assert tiny.base == "ckplus" and tiny.classes == BASIC6 and tiny.synthetic
    with pytest.raises(UnknownName):
        load_protocol("ifgan", "tiny")  # only the synthetic preset exists


def test_unknown_paper_and_uncovered_dataset_list_the_valid_names():
    with pytest.raises(UnknownName, match="unknown paper 'fergan'; valid papers are: adfl, baseline, ean, eifn, ifgan, tergan"):
        load_protocol("fergan", "ckplus")
    with pytest.raises(UnknownName) as e:
        load_protocol("eifn", "mmi")
    assert str(e.value) == "unknown eifn dataset 'mmi'; valid eifn datasets are: ckplus, oulu, synth-ckplus, synth-oulu, synth-sessions, synth-tiny"


def test_last_three_frames_of_labelled_sequences_in_the_protocols_classes():
    m = sequences(n_subjects=10)
    out = apply_protocol(m, load_protocol("ifgan", "synth-ckplus"))
    # contempt and the unlabelled sequence are not among IF-GAN's 6 classes
    assert set(out["sequence_label"]) == {"anger", "happiness"} and len(out) == 10 * 2 * 3
    assert out.groupby("sequence")["frame"].apply(sorted).map(tuple).unique().tolist() == [(3, 4, 5)]
    assert (out["label"] == m.loc[out.index, "label"]).all()  # index labels still address the images
    assert (out["split"] == "").all()
    eifn = apply_protocol(m, load_protocol("eifn", "ckplus"))
    assert set(eifn["label"]) == {"anger", "happiness", "contempt"} and len(eifn) == 90


def test_middle_frames_of_mmi_like_sequences_are_the_peak():
    m = sequences(n_subjects=10, labels=("fear",), length=9, mmi=True)  # expressive frames 1..7, apex 4
    out = apply_protocol(m, load_protocol("ifgan", "mmi"))
    assert out.groupby("sequence")["frame"].apply(tuple).unique().tolist() == [(3, 4, 5)]


def test_two_highest_intensities_are_the_last_two_levels():
    m = sequences(n_subjects=10, labels=("sadness",), length=5)  # frame 0 neutral, 1..4 = intensity 1..4
    out = apply_protocol(m, load_protocol("ifgan", "bu3dfe"))
    assert sorted(out["frame"].unique()) == [3, 4] and len(out) == 20
    m["intensity_level"] = m["frame"].map({0: 0, 1: 4, 2: 3, 3: 2, 4: 1})  # frames stored in reverse intensity
    out = apply_protocol(m, load_protocol("baseline", "synth-bu3dfe"))
    assert sorted(out["intensity_level"].unique()) == [3, 4] and sorted(out["frame"].unique()) == [1, 2]


def test_apex_pick_takes_the_middle_apex_frames():
    m = sequences(n_subjects=10, labels=("fear",), length=9, mmi=True)
    m.loc[m["frame"].isin([2, 3, 5, 6]), "role"] = "apex"  # apex frames 2..6
    protocol = load_protocol("tergan", "bu4dfe")
    assert (protocol.frames.pick, protocol.frames.n) == ("apex", 3)
    out = apply_protocol(m, protocol)
    assert out.groupby("sequence")["frame"].apply(tuple).unique().tolist() == [(3, 4, 5)]  # start (5 - 3) // 2 = 1


def test_every_synthfer_preset_has_a_baseline_protocol():
    synth = pytest.importorskip("ferlib.data.synth")
    for preset in synth.PRESETS:
        assert load_protocol("baseline", f"synth-{preset}").synthetic


def test_adfl_adds_the_first_frame_as_neutral_and_deals_sorted_subjects():
    m = sequences(n_subjects=12)
    out = apply_protocol(m, load_protocol("adfl", "synth-ckplus"))
    neutral = out[out["label"] == "neutral"]
    assert len(neutral) == 12 * 3 and (neutral["frame"] == 0).all()  # one per kept sequence
    assert set(neutral["sequence_label"]) == {"anger", "happiness", "contempt"}  # ADFL keeps all 8 classes
    ckplus_like = m.assign(label=m["sequence"].map(m[m["role"] == "apex"].set_index("sequence")["label"]))
    relabelled = apply_protocol(ckplus_like, load_protocol("adfl", "ckplus"))  # first frames carry the sequence label
    assert relabelled["label"].equals(out["label"]) and (relabelled.loc[relabelled["frame"] == 0, "label"] == "neutral").all()
    assert len(out) == 12 * 3 * 4
    folds = out.groupby("subject")["fold"].first()
    assert folds.to_dict() == {f"S{s:02d}": (s - 1) % 10 for s in range(1, 13)}


def test_split_fold_is_subject_exclusive_and_val_is_the_next_fold():
    p = load_protocol("ifgan", "ckplus")
    out = apply_protocol(sequences(n_subjects=20), p)
    tested = []
    for fold in range(10):
        s = split_fold(out, p, fold)
        parts = {name: set(g["subject"]) for name, g in s.groupby("split")}
        assert set(parts) == {"train", "val", "test"}
        assert not parts["test"] & (parts["train"] | parts["val"]) and not parts["train"] & parts["val"]
        assert set(s.loc[s["split"] == "val", "fold"]) == {(fold + 1) % 10}
        tested += sorted(parts["test"])
    assert sorted(tested) == sorted(out["subject"].unique())
    with pytest.raises(FerlibError, match="fold 10 is out of range: this protocol has 10 folds, valid folds are 0..9"):
        split_fold(out, p, 10)
    with pytest.raises(FerlibError, match="call apply_protocol"):
        split_fold(sequences(), p, 0)


def test_the_test_fold_cannot_influence_which_checkpoint_is_kept():
    """Model selection sees only train/val rows: scrambling the test fold changes nothing."""
    p = load_protocol("baseline", "ckplus")
    out = split_fold(apply_protocol(sequences(n_subjects=20), p), p, test_fold=4)
    rng = np.random.default_rng(0)
    checkpoints = [pd.Series(rng.choice(["anger", "happiness"], len(out)), index=out.index) for _ in range(5)]

    def kept_checkpoint(manifest):
        val = manifest[manifest["split"] == "val"]
        return int(np.argmax([(c.loc[val.index] == val["label"]).mean() for c in checkpoints]))

    scrambled = out.copy()
    test = scrambled["split"] == "test"
    scrambled.loc[test, "label"] = rng.choice(["anger", "happiness"], test.sum())
    scrambled.loc[test, "path"] = "garbage.png"
    for fold in range(10):  # whichever fold is tested, its rows are never the validation rows
        rows = split_fold(out, p, fold)
        assert not set(rows.index[rows["split"] == "val"]) & set(rows.index[rows["split"] == "test"])
    assert kept_checkpoint(scrambled) == kept_checkpoint(out)
    pd.testing.assert_frame_equal(scrambled[~test], out[~test])


def test_official_split_for_synthetic_data_is_seeded_subject_exclusive_with_a_val_part():
    p = load_protocol("ifgan", "synth-rafdb")
    out = apply_protocol(singles(n_subjects=30), p, seed=0)
    assert (out["fold"] == 0).all()
    by_part = out.groupby("official_part")["subject"].unique().map(set)
    assert len(by_part["test"]) == 6 and len(by_part["val"]) == 2  # 20% of 30; 10% of the 24 training subjects
    assert not by_part["test"] & by_part["train"] and not by_part["val"] & by_part["train"]
    assert set(out["official_split"]) == {"train", "test"}
    assert apply_protocol(singles(n_subjects=30), p, seed=0).equals(out)
    assert not apply_protocol(singles(n_subjects=30), p, seed=1)["official_part"].equals(out["official_part"])
    s = split_fold(out, p, 0)
    assert (s["split"] == s["official_part"]).all()
    with pytest.raises(FerlibError, match="fold 1 is out of range: this protocol has 1 folds, valid folds are 0..0"):
        split_fold(out, p, 1)


def test_a_real_official_split_is_kept_and_an_official_val_part_is_used():
    def fer_usage(df):
        return np.where(df["subject"] < "P004", "test", np.where(df["subject"] < "P006", "val", "train"))
    p = load_protocol("ean", "ferplus")
    out = apply_protocol(singles(n_subjects=10, classes=FERPLUS8, official=fer_usage), p)
    assert (out["official_part"] == out["official_split"]).all()
    assert out.loc[out["subject"] == "P000", "official_part"].eq("test").all()


def test_check_counts_compares_real_data_with_the_papers_numbers():
    p = load_protocol("ifgan", "ckplus")
    out = apply_protocol(sequences(n_subjects=10), p)
    table = check_counts(out, p)
    assert list(table.columns) == ["expected", "found", "difference"]
    assert table.loc["images"].tolist() == [927, 60, 60 - 927]
    assert table.loc["sequences"].tolist() == [309, 20, 20 - 309]
    assert table.loc["subjects", "found"] == 10 and pd.isna(table.loc["subjects", "expected"])
    synth = check_counts(out, load_protocol("ifgan", "synth-ckplus"))
    assert synth["expected"].isna().all() and synth.loc["images", "found"] == 60
    raf = load_protocol("ifgan", "rafdb")
    official = apply_protocol(singles(official=lambda df: np.where(df.index % 5 == 0, "test", "train")), raf)
    counts = check_counts(official, raf)
    assert counts.loc["train"].tolist() == [12271, 80, 80 - 12271] and counts.loc["test", "found"] == 20


def test_label_noise_flips_exactly_the_rate_to_other_classes_and_keeps_the_clean_label():
    p = load_protocol("ean", "synth-rafdb")
    clean = split_fold(apply_protocol(singles(n_subjects=40), p), p, 0)
    not_test = clean["split"] != "test"
    for seed in range(5):  # every chosen row really changes class, never a test row
        noisy = add_label_noise(clean, 0.2, p.classes, seed=seed)
        flipped = noisy["label"] != noisy["label_noisy"]
        assert flipped.sum() == round(0.2 * not_test.sum()) == 32 and not (flipped & ~not_test).any()
    noisy = add_label_noise(clean, 0.2, p.classes, seed=3)
    assert noisy["label"].equals(clean["label"]) and noisy["label_noisy"].isin(p.classes).all()
    assert add_label_noise(clean, 0.2, p.classes, seed=3).equals(noisy)
    assert not add_label_noise(clean, 0.2, p.classes, seed=4)["label_noisy"].equals(noisy["label_noisy"])
    assert (add_label_noise(clean, 0.0, p.classes)["label_noisy"] == clean["label"]).all()
    with pytest.raises(FerlibError, match=r"rate 1.5 must be in \[0, 1\)"):
        add_label_noise(clean, 1.5, p.classes)


SYNTH_SCALES = {"ckplus": 0.15, "mmi": 0.5, "oulu": 0.15, "bu3dfe": 0.12, "bu4dfe": 0.12, "rafdb": 0.02, "ferplus": 0.01}


@pytest.fixture(scope="module")
def synth_manifests():
    """SynthFER manifests at small scales (images are not needed here), rendered once per preset."""
    synth = pytest.importorskip("ferlib.data.synth")
    cache = {}

    def get(preset):
        if preset not in cache:
            cache[preset] = synth.generate(preset, scale=SYNTH_SCALES[preset], size=16, seed=0).manifest
        return cache[preset]
    return get


@pytest.mark.parametrize("paper", PAPERS)
def test_every_protocol_applies_to_its_synthfer_counterpart(paper, synth_manifests):
    for dataset in read_protocol_file(paper)["datasets"]:
        p = load_protocol(paper, f"synth-{dataset}")
        out = apply_protocol(synth_manifests(dataset), p, seed=0)
        assert len(out) and set(out["label"]) <= set(p.classes), (paper, dataset)
        picked = out[out["label"] != "neutral"] if p.frames.neutral else out
        if p.frames.pick in ("last", "middle", "apex"):
            assert (picked["role"] != "neutral").all()
            assert picked.groupby("sequence").size().max() == p.frames.n
        if p.frames.neutral == "first":
            assert out["sequence"].nunique() == (out["label"] == "neutral").sum()
        for fold in range(p.k):
            s = split_fold(out, p, fold)
            parts = s.groupby("split")["subject"].unique().map(set)
            assert {"train", "test"} <= set(parts.index) and not parts["test"] & parts["train"], (paper, dataset, fold)
        assert check_counts(out, p)["expected"].isna().all()


@pytest.mark.parametrize("paper", PAPERS)
def test_expected_images_per_class_add_up_to_the_expected_total(paper):
    for dataset, entry in read_protocol_file(paper)["datasets"].items():
        expected = entry.get("expected") or {}
        if expected.get("classes"):
            assert list(expected["classes"]) == [c for c in entry["classes"] if c in expected["classes"]], dataset
            assert set(expected["classes"]) == set(entry["classes"]), dataset
            assert sum(expected["classes"].values()) == expected["images"], (paper, dataset)


def test_class_fold_table_counts_images_per_class_and_fold_with_the_expected_ones():
    from ferlib.data.protocols import class_fold_table
    protocol = load_protocol("ifgan", "ckplus")
    manifest = apply_protocol(sequences(n_subjects=12, labels=("anger", "happiness")), protocol)
    table = class_fold_table(manifest, protocol)
    assert list(table.index) == list(protocol.classes)
    assert table.loc["anger", "all"] == 12 * 3 and table.loc["fear", "all"] == 0
    assert table.loc["anger", 0] == 2 * 3 and table.loc["anger", 9] == 1 * 3  # 12 subjects dealt into 10 folds
    assert table.loc["anger", "expected"] == 135 and table.loc["anger", "difference"] == 36 - 135
    synthetic = load_protocol("ifgan", "synth-ckplus")
    assert "expected" not in class_fold_table(manifest, synthetic).columns


def test_pretraining_datasets_are_named_where_the_papers_pretrain():
    assert load_protocol("eifn", "ckplus").pretrain_on == "oulu"
    assert load_protocol("eifn", "oulu").pretrain_on == "ckplus"
    assert load_protocol("tergan", "oulu").pretrain_on == "bu4dfe"
    assert load_protocol("tergan", "bu4dfe").pretrain_on is None
    assert load_protocol("eifn", "synth-ckplus").pretrain_on == "synth-oulu"
    assert load_protocol("ifgan", "ckplus").pretrain_on is None


def test_pretrain_on_must_name_another_dataset_of_the_same_file():
    from ferlib.data.protocols import protocol_from_entry
    entry = read_protocol_file("eifn")["datasets"]["ckplus"]
    with pytest.raises(FerlibError, match="pretrain_on 'rafdb' must be another dataset"):
        protocol_from_entry("eifn", "ckplus", {**entry, "pretrain_on": "rafdb"}, datasets=("ckplus", "oulu"))
