"""Adapters for the image datasets (BU-3DFE, RAF-DB, FERPlus), on miniature copies of the owners' layouts.

Each fixture (ferlib/data/layouts/<name>.py) is built once per module; tests that change a tree
work on a copy. Counts, labels, findings and folds are asserted exactly: they were counted by
hand from the fixture modules' docstrings and tables.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

import ferlib.data.adapters as adapters
from ferlib.data.adapters import bu3dfe, ferplus, rafdb
from ferlib.data.adapters.media import read_image
from ferlib.data.layouts import build_layout, write_text
from ferlib.data.protocols import (add_label_noise, apply_protocol, check_counts, class_fold_table, load_protocol,
                                   split_fold)
from ferlib.errors import CorruptImage, DatasetNotFound
from ferlib.labels import BASIC6, BASIC7, FERPLUS8

LAYOUT_SHOWN = "The study expects the owners' layout"


def built(tmp_path_factory, name: str, folder: str):
    """Build `name`'s fixture in its own temp folder (so the folder above holds only it) and scan it."""
    fixture = build_layout(name, tmp_path_factory.mktemp(name) / folder)
    module = {"bu3dfe": bu3dfe, "rafdb": rafdb, "ferplus": ferplus}[name]
    return fixture, module.scan(fixture.root)


def assert_findings(result, expected) -> None:
    """Findings equal the fixture's list: same count, order, paths, and each problem contains its text."""
    found = [(f.path, f.problem) for f in result.findings]
    assert len(found) == len(expected), found
    for (path, problem), (want_path, want_text, *_) in zip(found, expected):
        assert path == want_path and want_text in problem, (path, problem)


def copy_of(fixture, tmp_path: Path) -> Path:
    return Path(shutil.copytree(fixture.root, tmp_path / fixture.root.name))


def sequence_labels(manifest: pd.DataFrame) -> dict[str, int]:
    """{label: number of sequences} over the sequences' non-neutral label (neutral if it has none)."""
    per_sequence = manifest.groupby("sequence")["label"].agg(lambda s: sorted(set(s) - {"neutral"}) or ["neutral"])
    assert per_sequence.map(len).eq(1).all()
    return per_sequence.map(lambda labels: labels[0]).value_counts().to_dict()


# ---------------------------------------------------------------------------------------------- BU-3DFE

@pytest.fixture(scope="module")
def bu(tmp_path_factory):
    return built(tmp_path_factory, "bu3dfe", "BU-3DFE")


def test_bu3dfe_finds_the_fixtures_exact_counts(bu):
    fixture, result = bu
    m, want = result.manifest, fixture.expected
    assert len(m) == want["images"] == 52
    assert m["subject"].nunique() == want["subjects"] == 10
    assert m["sequence"].nunique() == want["sequences"] == 20
    assert (m["role"] == "neutral").sum() == want["neutral_faces"] == 9
    assert sequence_labels(m) == want["labels"]
    assert list(dict.fromkeys(m["subject"])) == want["subject_order"]
    assert all((fixture.root / p).is_file() for p in m["path"])
    assert (m["fold"] == -1).all() and (m["split"] == "").all()
    assert list(m.columns[-2:]) == ["intensity_level", "race"] and m["intensity_level"].dtype.kind == "i"


def test_bu3dfe_sequences_are_intensity_levels(bu):
    m = bu[1].manifest.set_index("path")
    anger = m[m["sequence"] == "F0001_AN"]
    assert list(anger.index) == [f"F0001/F0001_AN0{level}WH_F2D.bmp" for level in (1, 2, 3, 4)]
    assert list(anger["frame"]) == [0, 1, 2, 3] and list(anger["intensity_level"]) == [1, 2, 3, 4]
    assert list(anger["role"]) == ["onset", "onset", "onset", "apex"] and set(anger["label"]) == {"anger"}
    neutral = m.loc["F0001/F0001_NE00WH_F2D.bmp"]
    assert (neutral["sequence"], neutral["frame"], neutral["role"], neutral["label"], neutral["intensity_level"]) == (
        "F0001_NE", 0, "neutral", "neutral", 0)
    assert bu[1].manifest.groupby("subject")["race"].first().to_dict() == {
        "F0001": "WH", "F0002": "AE", "F0003": "BL", "F0004": "WH", "F0005": "LA", "F0006": "IN",
        "M0001": "BL", "M0002": "AM", "M0003": "LA", "M0004": "WH"}


def test_bu3dfe_findings_are_exactly_the_traps(bu):
    assert_findings(bu[1], bu[0].expected["findings"])


def test_bu3dfe_trap_missing_intensity_level_keeps_a_three_frame_sequence(bu):
    m = bu[1].manifest
    disgust = m[m["sequence"] == "F0003_DI"]
    assert list(disgust["frame"]) == [0, 1, 2] and list(disgust["intensity_level"]) == [1, 3, 4]
    assert list(disgust["role"]) == ["onset", "onset", "apex"]
    assert any(f.path == "F0003" and "no level 2" in f.problem for f in bu[1].findings)


def test_bu3dfe_trap_corrupt_image_is_listed_and_fails_to_decode(bu):
    fixture, result = bu
    assert fixture.expected["corrupt"] in set(result.manifest["path"])
    with pytest.raises(CorruptImage, match="F0004_SA03WH_F2D.bmp"):
        read_image(fixture.root, fixture.expected["corrupt"])
    assert read_image(fixture.root, "F0004/F0004_SA04WH_F2D.bmp").shape == (64, 64, 3)


def test_bu3dfe_trap_names_that_do_not_parse_are_findings_not_rows(bu):
    paths = set(bu[1].manifest["path"])
    assert "F0006/F0006_XX02IN_F2D.bmp" not in paths and "F0006/F0006_SU7IN_F2D.bmp" not in paths
    assert (bu[1].manifest["subject"] == "F0006").sum() == 5


def test_bu3dfe_trap_lower_case_names(bu):
    m = bu[1].manifest
    f2 = m[m["subject"] == "F0002"]
    assert list(f2["path"]) == [f"f0002/f0002_an0{level}ae_f2d.bmp" for level in (1, 2, 3, 4)] + [
        "f0002/f0002_ne00ae_f2d.bmp"]
    assert list(f2["sequence"]) == ["F0002_AN"] * 4 + ["F0002_NE"] and set(f2["race"]) == {"AE"}


def test_bu3dfe_trap_official_extra_files_and_os_clutter_are_skipped_silently(bu):
    fixture, result = bu
    assert (fixture.root / "F0001" / "F0001_AN04WH_F3D.wrl").is_file()
    for text in (".wrl", ".bnd", ".DS_Store", "Thumbs.db"):
        assert not any(text in f.path for f in result.findings)
        assert not result.manifest["path"].str.contains(text, regex=False).any()


def test_bu3dfe_trap_unrelated_files_are_findings(bu):
    ignored = [f.path for f in bu[1].findings if f.problem.startswith("ignored")]
    assert ignored == ["F0001/notes.txt", "readme.txt"]


def test_bu3dfe_trap_subject_without_neutral_face(bu):
    m = bu[1].manifest
    assert set(m.loc[m["subject"] == "F0005", "sequence"]) == {"F0005_FE"}
    assert [f.path for f in bu[1].findings if "no neutral face" in f.problem] == ["F0005"]


def test_bu3dfe_duplicate_wrong_folder_and_other_formats(tmp_path):
    folder = tmp_path / "F0001"
    for name in ("F0001_AN04WH_F2D.bmp", "f0001_an04wh_f2d.BMP", "F0002_HA04WH_F2D.bmp", "F0001_HA04WH_F2D.png",
                 "F0001_SA00WH_F2D.bmp", "F0001_NE00WH_F2D.bmp"):
        write_text(folder / name, "")  # adapters never decode: empty files are enough
    (folder / "extra").mkdir()
    result = bu3dfe.scan(tmp_path)
    assert list(result.manifest["path"]) == ["F0001/F0001_AN04WH_F2D.bmp", "F0001/F0001_NE00WH_F2D.bmp"]
    assert [(f.path, f.problem.split(":")[0]) for f in result.findings] == [
        ("F0001/extra", "ignored"),
        ("F0001/f0001_an04wh_f2d.BMP", "duplicate"),
        ("F0001/F0001_HA04WH_F2D.png", "ignored"),
        ("F0001/F0001_SA00WH_F2D.bmp", "name does not parse"),
        ("F0001/F0002_HA04WH_F2D.bmp", "names subject F0002 but lies in folder F0001; skipped"),
        ("F0001", "incomplete sequence F0001_AN"),
    ]


def test_bu3dfe_is_deterministic_and_the_dispatcher_gives_the_same(bu):
    fixture, result = bu
    pd.testing.assert_frame_equal(bu3dfe.scan(fixture.root).manifest, result.manifest)
    pd.testing.assert_frame_equal(adapters.scan("bu3dfe", fixture.root).manifest, result.manifest)


def test_bu3dfe_layout_errors(bu, tmp_path):
    fixture = bu[0]
    with pytest.raises(DatasetNotFound) as empty:
        bu3dfe.scan(tmp_path)
    assert "F*/*_F2D.bmp" in str(empty.value) and LAYOUT_SHOWN in str(empty.value)
    assert "F0001/F0001_NE00WH_F2D.bmp" in str(empty.value)  # the layout from bu3dfe.yaml
    with pytest.raises(DatasetNotFound, match="one level too deep"):
        bu3dfe.scan(fixture.root / "F0001")
    with pytest.raises(DatasetNotFound, match=f"one level down, in {re.escape(str(fixture.root))}"):
        bu3dfe.scan(fixture.root.parent)
    with pytest.raises(DatasetNotFound, match="does not exist"):
        bu3dfe.scan(tmp_path / "nowhere")


@pytest.mark.parametrize("paper", ["ifgan", "baseline"])
def test_bu3dfe_protocols_take_the_two_highest_levels_and_deal_subjects_round_robin(bu, paper):
    fixture, result = bu
    protocol = load_protocol(paper, "bu3dfe")
    selected = apply_protocol(result.manifest, protocol)
    assert len(selected) == fixture.expected["ifgan"]["images"] == 22
    assert selected["sequence"].nunique() == fixture.expected["ifgan"]["sequences"] == 11
    assert {s: sorted(levels) for s, levels in selected.groupby("sequence")["intensity_level"]} == {
        s: [3, 4] for s in selected["sequence"].unique()}
    assert set(selected["label"]) == set(BASIC6) and "neutral" not in set(selected["role"])
    folds = selected.groupby("subject")["fold"].unique().map(lambda f: list(f)).to_dict()
    assert folds == {"F0001": [0], "F0002": [1], "F0003": [2], "F0004": [3], "F0005": [4], "F0006": [5],
                     "M0001": [6], "M0002": [7], "M0003": [8], "M0004": [9]}
    split = split_fold(selected, protocol, test_fold=9)
    by_subject = split.groupby("subject")["split"].first()
    assert by_subject.loc[["M0004", "F0001", "F0002"]].tolist() == ["test", "val", "train"]
    counts = check_counts(selected, protocol)
    assert counts.loc["images", "found"] == 22 and counts.loc["images", "expected"] == 1200
    assert counts.loc["subjects", "found"] == 10 and counts.loc["sequences", "found"] == 11
    per_class = class_fold_table(selected, protocol)
    assert per_class["all"].to_dict() == {"anger": 6, "disgust": 4, "fear": 2, "happiness": 4, "sadness": 2,
                                          "surprise": 4}
    assert per_class.loc["disgust", [2, 9]].tolist() == [2, 2] and per_class["expected"].eq(200).all()


# ---------------------------------------------------------------------------------------------- RAF-DB

@pytest.fixture(scope="module")
def raf(tmp_path_factory):
    return built(tmp_path_factory, "rafdb", "RAF-DB")


def test_rafdb_finds_the_fixtures_exact_counts(raf):
    fixture, result = raf
    m, want = result.manifest, fixture.expected
    assert len(m) == want["images"] == 15
    assert (m["official_split"] == "train").sum() == want["train"] == 10
    assert (m["official_split"] == "test").sum() == want["test"] == 5
    assert m["label"].value_counts().to_dict() == want["labels"]
    assert (m["subject"] == m["sequence"]).all() and m["subject"].is_unique
    assert (m["frame"] == 0).all() and (m["role"] == "single").all()
    assert list(m["subject"][:2]) == ["test_0001", "test_0002"] and m["subject"].iloc[-1] == "train_00010"
    assert all((fixture.root / p).is_file() for p in m["path"])


def test_rafdb_findings_are_exactly_the_traps(raf):
    assert_findings(raf[1], raf[0].expected["findings"])


def label_of(result, subject: str) -> str:
    row = result.manifest[result.manifest["subject"] == subject]
    assert len(row) == 1, subject
    return row["label"].iloc[0]


def test_rafdb_trap_windows_line_ends_tabs_spaces_and_blank_lines(raf):
    fixture, result = raf
    text = (fixture.root / rafdb.LABEL_FILE).read_bytes()
    assert text.count(b"\r\n") == 20 and b"\t" in text and b"  7" in text
    assert [label_of(result, s) for s in ("train_00001", "train_00002", "train_00003", "train_00009", "test_0005")] == [
        "sadness", "anger", "neutral", "happiness", "fear"]


def test_rafdb_trap_upper_case_names(raf):
    assert label_of(raf[1], "train_00004") == "happiness"  # listed as TRAIN_00004.JPG
    m = raf[1].manifest
    assert m.loc[m["subject"] == "test_0002", "path"].item() == "basic/Image/aligned/test_0002_aligned.JPG"


def test_rafdb_trap_listed_image_missing(raf):
    assert "train_00011" not in set(raf[1].manifest["subject"])
    assert [f.path for f in raf[1].findings if f.problem.startswith("missing")] == [
        "basic/Image/aligned/train_00011_aligned.jpg"]


def test_rafdb_trap_image_without_label_line(raf):
    assert "train_00013" not in set(raf[1].manifest["subject"])
    assert [f.path for f in raf[1].findings if f.problem.startswith("no label")] == [
        "basic/Image/aligned/train_00013_aligned.jpg"]


def test_rafdb_trap_bad_label_code_and_line_without_label(raf):
    subjects = set(raf[1].manifest["subject"])
    assert "train_00012" not in subjects and "train_00014" not in subjects
    problems = [f.problem for f in raf[1].findings if f.path == rafdb.LABEL_FILE]
    assert problems[0].startswith("line 13: label '9' of train_00012.jpg is not a RAF-DB basic code")
    assert problems[1] == ("line 14: expected '<image name> <label 1-7>' (e.g. 'train_00001.jpg 5'), "
                           "found 'train_00014.jpg'")


def test_rafdb_trap_corrupt_image_is_listed_and_fails_to_decode(raf):
    fixture, result = raf
    assert fixture.expected["corrupt"] in set(result.manifest["path"])
    with pytest.raises(CorruptImage, match="test_0005_aligned.jpg"):
        read_image(fixture.root, fixture.expected["corrupt"])


def test_rafdb_trap_unrelated_file_and_unused_official_folders(raf):
    fixture, result = raf
    assert (fixture.root / "basic/Image/original/train_00001.jpg").is_file()
    assert [f.path for f in result.findings if f.problem.startswith("ignored")] == ["basic/Image/aligned/readme.txt"]
    for text in ("original", "Annotation", ".DS_Store"):
        assert not any(text in f.path for f in result.findings)
        assert not result.manifest["path"].str.contains(text, regex=False).any()


def test_rafdb_tolerates_bom_old_mac_line_ends_and_upper_case_folders(raf, tmp_path):
    root = copy_of(raf[0], tmp_path)
    label_file = root / rafdb.LABEL_FILE
    text = label_file.read_bytes().decode().replace("\r\n", "\r").upper()
    label_file.write_bytes(b"\xef\xbb\xbf" + text.encode())
    (root / "basic" / "EmoLabel").rename(root / "basic" / "EMOLABEL")
    (root / "basic").rename(root / "BASIC")
    result = rafdb.scan(root)
    pd.testing.assert_frame_equal(result.manifest.drop(columns="path"), raf[1].manifest.drop(columns="path"))
    assert result.manifest["path"].iloc[0] == "BASIC/Image/aligned/test_0001_aligned.jpg"
    problems = [f.problem.split(":")[0] for f in result.findings]
    assert problems == ["line 13", "line 14", "ignored", "missing", "no label"]


def test_rafdb_is_deterministic_and_the_dispatcher_gives_the_same(raf):
    fixture, result = raf
    pd.testing.assert_frame_equal(rafdb.scan(fixture.root).manifest, result.manifest)
    pd.testing.assert_frame_equal(adapters.scan("rafdb", fixture.root).manifest, result.manifest)


def test_rafdb_layout_errors(raf, tmp_path):
    fixture = raf[0]
    with pytest.raises(DatasetNotFound) as empty:
        rafdb.scan(tmp_path)
    assert "basic/EmoLabel/list_patition_label.txt" in str(empty.value) and LAYOUT_SHOWN in str(empty.value)
    deep = f"one level too deep \\(at basic\\); point it at {re.escape(str(fixture.root))}"
    with pytest.raises(DatasetNotFound, match=deep):
        rafdb.scan(fixture.root / "basic")
    with pytest.raises(DatasetNotFound, match=f"one level down, in {re.escape(str(fixture.root))}"):
        rafdb.scan(fixture.root.parent)
    copy = copy_of(fixture, tmp_path)
    shutil.rmtree(copy / "basic" / "EmoLabel")
    with pytest.raises(DatasetNotFound, match="basic/EmoLabel/list_patition_label.txt .*is missing"):
        rafdb.scan(copy)
    copy = copy_of(fixture, tmp_path / "again")
    shutil.rmtree(copy / "basic" / "Image" / "aligned")
    with pytest.raises(DatasetNotFound, match="basic/Image/aligned is missing .*basic/Image/original is there"):
        rafdb.scan(copy)


@pytest.mark.parametrize("paper", ["ifgan", "baseline", "ean"])
def test_rafdb_protocols_keep_the_official_split(raf, paper):
    protocol = load_protocol(paper, "rafdb")
    selected = apply_protocol(raf[1].manifest, protocol)
    assert len(selected) == 15 and (selected["fold"] == 0).all() and set(selected["label"]) == set(BASIC7)
    assert selected["official_part"].value_counts().to_dict() == {"train": 9, "test": 5, "val": 1}
    held_out = selected.loc[selected["official_part"] == "val", "subject"].item()
    assert held_out.startswith("train_")
    assert (split_fold(selected, protocol, 0)["split"] == selected["official_part"]).all()
    counts = check_counts(selected, protocol)
    assert counts.loc["train", "found"] == 10 and counts.loc["test", "found"] == 5
    assert counts.loc["train", "expected"] == 12271 and counts.loc["test", "expected"] == 3068


# ---------------------------------------------------------------------------------------------- FERPlus

@pytest.fixture(scope="module")
def fp(tmp_path_factory):
    return built(tmp_path_factory, "ferplus", "FERPlus")


def test_ferplus_finds_the_fixtures_exact_counts(fp):
    fixture, result = fp
    m, want = result.manifest, fixture.expected
    assert len(m) == want["images"] == 16
    parts = m["official_split"].value_counts().to_dict()
    assert parts == {"train": want["train"], "val": want["val"], "test": want["test"]}
    assert m["label"].value_counts().to_dict() == want["labels"]
    assert list(m["path"]) == [f"fer2013/fer2013.csv#{row}" for row in want["kept_rows"]]
    assert list(m["subject"]) == [f"fer{row:07d}" for row in want["kept_rows"]]
    assert (m["subject"] == m["sequence"]).all() and (m["role"] == "single").all() and (m["frame"] == 0).all()
    votes = [ferplus.vote_column(c) for c in ferplus.VOTE_COLUMNS]
    assert votes[-2:] == ["votes_unknown", "votes_nf"] and all(m[c].dtype.kind == "i" for c in votes)
    assert m.loc[m["subject"] == "fer0000007", votes].iloc[0].tolist() == [3, 0, 0, 0, 0, 0, 0, 6, 1, 0]


def test_ferplus_findings_are_the_dropped_rows_per_reason(fp):
    fixture, result = fp
    assert_findings(result, fixture.expected["findings"])
    for finding, (_, _, rows) in zip(result.findings, fixture.expected["findings"]):
        assert finding.problem.endswith(f"(data rows, 0-based: {', '.join(map(str, rows))})")


@pytest.mark.parametrize("votes, winner", [
    ((10, 0, 0, 0, 0, 0, 0, 0, 0, 0), "neutral"),
    ((0, 0, 0, 0, 0, 0, 0, 6, 4, 0), "contempt"),
    ((4, 4, 2, 0, 0, 0, 0, 0, 0, 0), None),            # tie
    ((5, 5, 0, 0, 0, 0, 0, 0, 0, 0), None),            # exactly half is not a majority
    ((5, 2, 1, 1, 1, 0, 0, 0, 0, 0), "neutral"),       # 5 of 10 raw, 5 of 7 once single votes go
    ((1, 1, 1, 1, 1, 1, 1, 1, 1, 1), None),            # nothing left
    ((2, 0, 0, 0, 0, 0, 0, 0, 7, 1), "unknown"),
    ((0, 0, 0, 0, 0, 0, 0, 0, 3, 7), "NF"),
    ((0, 3, 0, 0, 0, 0, 0, 0, 0, 0), "happiness"),
])
def test_ferplus_majority_vote_follows_the_reference_code(votes, winner):
    assert ferplus.majority_vote(votes) == winner


def test_ferplus_trap_outlier_rule_changes_the_outcome(fp):
    fixture, result = fp
    row = fixture.expected["outlier_row"]
    raw = [5, 2, 1, 1, 1, 0, 0, 0, 0, 0]
    assert max(raw) <= sum(raw) / 2  # without the rule: no majority, dropped
    m = result.manifest.set_index("subject")
    assert m.loc[f"fer{row:07d}", "label"] == "neutral"
    assert m.loc[f"fer{row:07d}", [ferplus.vote_column(c) for c in ferplus.VOTE_COLUMNS]].tolist() == raw


def test_ferplus_trap_ties_unknown_nf_and_empty_names_are_dropped(fp):
    subjects = set(fp[1].manifest["subject"])
    for row in (8, 10, 11, 12, 20):
        assert f"fer{row:07d}" not in subjects
        assert f"fer2013/fer2013.csv#{row}" not in set(fp[1].manifest["path"])


def test_ferplus_trap_wrong_pixel_count_is_listed_and_fails_to_decode(fp):
    fixture, result = fp
    assert fixture.expected["corrupt"] in set(result.manifest["path"])
    with pytest.raises(CorruptImage, match="data row 13: 'pixels' should hold 2304 grey values 0-255, found 2303"):
        read_image(fixture.root, fixture.expected["corrupt"])
    assert read_image(fixture.root, "fer2013/fer2013.csv#14").shape == (48, 48, 1)


def test_ferplus_trap_windows_line_ends_stray_spaces_and_case(fp):
    fixture, result = fp
    text = (fixture.root / "fer2013new.csv").read_bytes()
    assert text.count(b"\r\n") == 22 and b"fer0000001.png ," in text and b"\r\ntraining,fer0000003" in text
    m = result.manifest.set_index("subject")
    assert m.loc["fer0000001", "label"] == "happiness" and m.loc["fer0000002", "votes_neutral"] == 0
    assert m.loc["fer0000003", "official_split"] == "train"


def test_ferplus_reads_fer2013_csv_at_the_root_too(fp, tmp_path):
    root = copy_of(fp[0], tmp_path)
    shutil.copy(root / "fer2013" / "fer2013.csv", root / "fer2013.csv")
    both = ferplus.scan(root)
    assert both.manifest["path"].iloc[0] == "fer2013.csv#0"
    assert [(f.path, f.problem) for f in both.findings[:1]] == [
        ("fer2013/fer2013.csv", "ignored: fer2013.csv is the one read")]
    shutil.rmtree(root / "fer2013")
    alone = ferplus.scan(root)
    assert len(alone.findings) == 4
    pd.testing.assert_frame_equal(alone.manifest.drop(columns="path"), fp[1].manifest.drop(columns="path"))
    assert read_image(root, alone.manifest["path"].iloc[0]).shape == (48, 48, 1)


def test_ferplus_files_that_disagree_are_a_layout_error(fp, tmp_path):
    root = copy_of(fp[0], tmp_path)
    labels = root / "fer2013new.csv"
    lines = labels.read_bytes().decode().split("\r\n")
    labels.write_bytes("\r\n".join(lines[:15] + [lines[15].replace("PublicTest", "Training")] + lines[16:]).encode())
    with pytest.raises(DatasetNotFound, match="data row 14 \\(0-based\\) disagrees: fer2013/fer2013.csv says Usage "
                                              "'PublicTest', fer2013new.csv says 'Training'"):
        ferplus.scan(root)
    labels.write_bytes("\r\n".join(lines[:-2] + [""]).encode())
    with pytest.raises(DatasetNotFound, match="fer2013/fer2013.csv has 21 data rows but fer2013new.csv has 20"):
        ferplus.scan(root)


def test_ferplus_is_deterministic_and_the_dispatcher_gives_the_same(fp):
    fixture, result = fp
    pd.testing.assert_frame_equal(ferplus.scan(fixture.root).manifest, result.manifest)
    pd.testing.assert_frame_equal(adapters.scan("ferplus", fixture.root).manifest, result.manifest)


def test_ferplus_layout_errors(fp, tmp_path):
    fixture = fp[0]
    with pytest.raises(DatasetNotFound) as empty:
        ferplus.scan(tmp_path)
    assert "fer2013.csv or fer2013/fer2013.csv" in str(empty.value) and LAYOUT_SHOWN in str(empty.value)
    with pytest.raises(DatasetNotFound, match=f"one level too deep .*point it at {re.escape(str(fixture.root))}"):
        ferplus.scan(fixture.root / "fer2013")
    with pytest.raises(DatasetNotFound, match=f"one level down, in {re.escape(str(fixture.root))}"):
        ferplus.scan(fixture.root.parent)
    copy = copy_of(fixture, tmp_path)
    (copy / "fer2013new.csv").unlink()
    with pytest.raises(DatasetNotFound, match="fer2013new.csv \\(the FERPlus votes.*is missing"):
        ferplus.scan(copy)


@pytest.mark.parametrize("paper", ["baseline", "ean"])
def test_ferplus_protocols_keep_the_official_split(fp, paper):
    protocol = load_protocol(paper, "ferplus")
    selected = apply_protocol(fp[1].manifest, protocol)
    assert len(selected) == 16 and (selected["fold"] == 0).all() and set(selected["label"]) == set(FERPLUS8)
    assert selected["official_part"].value_counts().to_dict() == {"train": 10, "val": 3, "test": 3}
    split = split_fold(selected, protocol, 0)
    assert split.loc[split["split"] == "val", "subject"].tolist() == ["fer0000014", "fer0000015", "fer0000016"]
    counts = check_counts(selected, protocol)
    assert counts.loc["train", "found"] == 10 and counts.loc["train", "expected"] == 28709
    assert counts.loc["test", "found"] == 3 and counts.loc["test", "expected"] == 3589
    if protocol.label_noise:
        noisy = add_label_noise(split, protocol.label_noise[0], protocol.classes)
        assert (noisy["label_noisy"] != noisy["label"]).sum() == 1  # round(0.1 * 13 rows outside test)
