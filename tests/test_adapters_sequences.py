"""Adapters for the sequence datasets (CK+, Oulu-CASIA, BU-4DFE, MMI) on miniature copies of their layouts.

Each fixture (`ferlib.data.layouts.<name>.build`) is written once per module; the expected counts,
frames and fold tables below were counted by hand from the fixtures' definitions.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from ferlib.data import adapters
from ferlib.data.adapters import bu4dfe, ckplus, media, mmi, oulu
from ferlib.data.adapters.base import natural_key
from ferlib.data.folds import subject_sort_key
from ferlib.data.layouts import build_layout
from ferlib.data.manifest import REQUIRED_COLUMNS, validate_manifest
from ferlib.data.protocols import apply_protocol, check_counts, load_protocol, split_fold
from ferlib.errors import CorruptImage, DatasetNotFound

MODULES = {"ckplus": ckplus, "oulu": oulu, "bu4dfe": bu4dfe, "mmi": mmi}
DATASETS = tuple(MODULES)
LAYOUT_SHOWN = "The study expects the owners' layout:"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """{dataset: (Fixture, AdapterResult)}, each fixture written and scanned once."""
    out = {}
    for name in DATASETS:
        fixture = build_layout(name, tmp_path_factory.mktemp(name))
        out[name] = (fixture, MODULES[name].scan(fixture.root))
    return out


def manifest_of(built, name: str) -> pd.DataFrame:
    return built[name][1].manifest


def copy_of(built, name: str, tmp_path: Path) -> Path:
    """A private copy of a fixture tree that a test may alter."""
    return Path(shutil.copytree(built[name][0].root, tmp_path / name))


def frames_of(manifest: pd.DataFrame, sequence: str) -> pd.DataFrame:
    return manifest[manifest["sequence"] == sequence].sort_values("frame")


def identity_columns(manifest: pd.DataFrame) -> pd.DataFrame:
    """Everything but the path (whose case follows the disk)."""
    return manifest[["subject", "sequence", "frame", "label", "role"]].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Facts common to the four adapters
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DATASETS)
def test_counts_match_the_fixture(built, name):
    fixture, result = built[name]
    m, expected = result.manifest, fixture.expected
    labelled = m[(m["label"] != "") & (m["role"] != "neutral")]
    assert len(m) == expected["images"]
    assert m["sequence"].nunique() == expected["sequences"]
    assert labelled["sequence"].nunique() == expected["labelled_sequences"]
    assert m["subject"].nunique() == expected["subjects"]
    assert labelled.groupby("label")["sequence"].nunique().to_dict() == expected["labels"]
    assert m.groupby("sequence").size().to_dict() == expected["frames"]


@pytest.mark.parametrize("name", DATASETS)
def test_findings_are_exactly_the_traps_in_order(built, name):
    fixture, result = built[name]
    found = [(f.path, f.problem) for f in result.findings]
    assert [path for path, _ in found] == [path for path, _ in fixture.expected["findings"]]
    for (path, problem), (_, expected) in zip(found, fixture.expected["findings"]):
        assert expected in problem, (path, problem)
    assert list(result.report().columns) == ["path", "problem"] and len(result.report()) == len(found)


@pytest.mark.parametrize("name", DATASETS)
def test_manifest_contract(built, name):
    m = manifest_of(built, name)
    validate_manifest(m)
    assert list(m.columns) == list(REQUIRED_COLUMNS)
    assert (m["fold"] == -1).all() and (m["split"] == "").all()
    assert m["path"].is_unique
    assert not m["path"].str.contains("\\\\", regex=False).any()


@pytest.mark.parametrize("name", DATASETS)
def test_every_path_exists_relative_to_the_root(built, name):
    fixture, result = built[name]
    for path in result.manifest["path"]:
        container, _ = media.split_member(path)
        assert (fixture.root / container).is_file(), path


@pytest.mark.parametrize("name", DATASETS)
def test_frames_are_numbered_in_order_and_roles_follow_the_sequence(built, name):
    m = manifest_of(built, name)
    for sequence, rows in m.groupby("sequence", sort=False):
        assert rows["frame"].tolist() == list(range(len(rows))), sequence
        assert rows["subject"].nunique() == 1 and sequence.startswith(rows["subject"].iloc[0] + "_")
        labels = set(rows.loc[rows["role"] != "neutral", "label"])
        assert len(labels) == 1, sequence
        neutral = rows.loc[rows["role"] == "neutral", "label"]
        assert (neutral == ("neutral" if labels != {""} else "")).all(), sequence
        assert rows["role"].iloc[0] == "neutral"
        assert (rows["role"] == "apex").any()


@pytest.mark.parametrize("name", DATASETS)
def test_rows_are_sorted_and_the_scan_is_deterministic(built, name):
    fixture, result = built[name]
    m = result.manifest
    keys = [(natural_key(s), natural_key(q), f) for s, q, f in zip(m["subject"], m["sequence"], m["frame"])]
    assert keys == sorted(keys)
    again = MODULES[name].scan(fixture.root)
    pd.testing.assert_frame_equal(again.manifest, m)
    assert again.findings == result.findings


@pytest.mark.parametrize("name", DATASETS)
def test_the_dispatcher_gives_the_same_manifest(built, name):
    fixture, result = built[name]
    pd.testing.assert_frame_equal(adapters.scan(name, fixture.root).manifest, result.manifest)


@pytest.mark.parametrize("name", ["ckplus", "oulu", "bu4dfe"])
def test_corrupt_image_is_listed_and_fails_only_when_read(built, name):
    fixture, result = built[name]
    corrupt = fixture.expected["corrupt"]
    assert corrupt in set(result.manifest["path"])
    with pytest.raises(CorruptImage, match="cannot decode image"):
        media.read_image(fixture.root, corrupt)
    neighbour = result.manifest["path"].iloc[0]
    assert media.read_image(fixture.root, neighbour).shape[:2] == (64, 64)


@pytest.mark.parametrize("name", DATASETS)
def test_empty_folder_is_a_layout_error(tmp_path, name):
    with pytest.raises(DatasetNotFound) as info:
        MODULES[name].scan(tmp_path)
    assert LAYOUT_SHOWN in str(info.value) and str(tmp_path) in str(info.value)


@pytest.mark.parametrize("name", DATASETS)
def test_missing_root_is_a_layout_error(tmp_path, name):
    with pytest.raises(DatasetNotFound, match="does not exist"):
        MODULES[name].scan(tmp_path / "nowhere")


@pytest.mark.parametrize("name", DATASETS)
def test_root_one_level_too_high_is_named(built, name, tmp_path):
    copy = copy_of(built, name, tmp_path)
    with pytest.raises(DatasetNotFound, match="one level too high") as info:
        MODULES[name].scan(copy.parent)
    assert f"use {copy}" in str(info.value) and LAYOUT_SHOWN in str(info.value)


# --------------------------------------------------------------------------------------------
# CK+
# --------------------------------------------------------------------------------------------


def test_ckplus_labelled_sequences_carry_their_emotion_code(built):
    m, expected = manifest_of(built, "ckplus"), built["ckplus"][0].expected
    for sequence, label in expected["sequence_labels"].items():
        assert set(frames_of(m, sequence)["label"].iloc[1:]) == {label}, sequence


def test_ckplus_roles_run_from_neutral_to_apex(built):
    rows = frames_of(manifest_of(built, "ckplus"), "S005_001")
    assert rows["role"].tolist() == ["neutral", "onset", "onset", "onset", "apex"]
    assert rows["label"].tolist() == ["neutral", "disgust", "disgust", "disgust", "disgust"]
    assert rows["path"].tolist() == [f"cohn-kanade-images/S005/001/S005_001_0000000{i}.png" for i in range(1, 6)]


def test_ckplus_unlabelled_sequences(built):
    m = manifest_of(built, "ckplus")
    unlabelled = sorted(m.loc[m["label"] == "", "sequence"].unique())
    assert unlabelled == built["ckplus"][0].expected["unlabelled_sequences"]
    # an empty Emotion folder (as in the archive) and no Emotion folder at all both mean unlabelled
    assert (frames_of(m, "S005_002")["label"] == "").all() and len(frames_of(m, "S005_002")) == 4


def test_ckplus_contempt_sequences(built):
    m = manifest_of(built, "ckplus")
    contempt = m[m["label"] == "contempt"]
    assert sorted(contempt["sequence"].unique()) == ["S010_001", "S022_002"]
    assert len(contempt) == 6  # 3 expressive frames each


def test_ckplus_short_sequence_is_kept_with_a_finding(built):
    fixture, result = built["ckplus"]
    rows = frames_of(result.manifest, "S011_002")
    assert rows["role"].tolist() == ["neutral", "onset", "apex"]
    assert rows["label"].tolist() == ["neutral", "surprise", "surprise"]
    assert ("cohn-kanade-images/S011/002", "short sequence: 3 frames (protocols take the last 3 frames plus the "
            "first as neutral); kept") in [(f.path, f.problem) for f in result.findings]


def test_ckplus_subject_with_no_labelled_sequence(built):
    fixture, result = built["ckplus"]
    s050 = result.manifest[result.manifest["subject"] == "S050"]
    assert len(s050) == 8 and (s050["label"] == "").all()
    assert result.manifest.loc[result.manifest["label"] != "", "subject"].nunique() == 11
    assert any(f.path == "cohn-kanade-images/S050" and "no labelled sequence" in f.problem for f in result.findings)


def test_ckplus_corrupt_frame_keeps_its_place(built):
    rows = frames_of(manifest_of(built, "ckplus"), "S026_001")
    assert rows.loc[rows["frame"] == 2, "path"].item() == "cohn-kanade-images/S026/001/S026_001_00000003.png"
    assert rows["role"].tolist() == ["neutral", "onset", "onset", "apex"]


def test_ckplus_emotion_files_with_windows_line_endings_and_stray_spaces(built):
    root = built["ckplus"][0].root
    crlf = root / "Emotion/S010/002/S010_002_00000005_emotion.txt"
    spaces = root / "Emotion/S011/001/S011_001_00000004_emotion.txt"
    assert b"\r\n" in crlf.read_bytes() and spaces.read_bytes().startswith(b"\n\n ")
    m = manifest_of(built, "ckplus")
    assert set(frames_of(m, "S010_002")["label"]) == {"neutral", "anger"}
    assert set(frames_of(m, "S011_001")["label"]) == {"neutral", "fear"}


def test_ckplus_emotion_file_that_is_not_a_number(built):
    fixture, result = built["ckplus"]
    assert (frames_of(result.manifest, "S032_002")["label"] == "").all()
    finding = next(f for f in result.findings if f.path.startswith("Emotion/S032/002"))
    assert finding.problem == "unlabelled sequence: Emotion file is not a number ('n/a')"


@pytest.mark.parametrize("text", ["   0.0000000e+00\n", "   8.0000000e+00\n", "   2.5000000e+00\n"])
def test_ckplus_emotion_code_outside_one_to_seven(built, tmp_path, text):
    root = copy_of(built, "ckplus", tmp_path)
    (root / "Emotion/S034/001/S034_001_00000004_emotion.txt").write_text(text)
    result = ckplus.scan(root)
    assert (frames_of(result.manifest, "S034_001")["label"] == "").all()
    assert (f"unlabelled sequence: Emotion code {text.strip()} is not one of CK+'s expression codes 1-7"
            in [f.problem for f in result.findings])


def test_ckplus_emotion_files_that_disagree(built, tmp_path):
    root = copy_of(built, "ckplus", tmp_path)
    (root / "Emotion/S034/001/S034_001_00000003_emotion.txt").write_text("   1.0000000e+00\n")
    result = ckplus.scan(root)
    assert (frames_of(result.manifest, "S034_001")["label"] == "").all()
    assert ("Emotion/S034/001", "unlabelled sequence: its Emotion files disagree (codes 1, 5)") in [
        (f.path, f.problem) for f in result.findings]


def test_ckplus_emotion_file_without_frames_is_reported(built):
    fixture, result = built["ckplus"]
    assert not result.manifest["sequence"].eq("S014_003").any()
    assert result.findings[-1].path == "Emotion/S014/003/S014_003_00000009_emotion.txt"


def test_ckplus_unrelated_files_are_reported_and_official_ones_are_silent(built):
    fixture, result = built["ckplus"]
    ignored = [f.path for f in result.findings if f.problem.startswith("ignored")]
    assert ignored == ["README.txt", "cohn-kanade-images/S042/001/notes.txt"]
    assert not any(f.path.startswith(("FACS", "Landmarks")) or "DS_Store" in f.path or "Thumbs" in f.path
                   for f in result.findings)
    assert len(frames_of(result.manifest, "S042_001")) == 4


def test_ckplus_names_and_label_files_in_any_case(built, tmp_path):
    root = copy_of(built, "ckplus", tmp_path)
    (root / "Emotion").rename(root / "emotion")
    (root / "cohn-kanade-images").rename(root / "Cohn-Kanade-Images")
    (root / "Cohn-Kanade-Images/S005").rename(root / "Cohn-Kanade-Images/s005")
    label = root / "emotion/S014/001/S014_001_00000005_emotion.txt"
    label.rename(label.with_name("S014_001_00000005_EMOTION.TXT"))
    bom = root / "emotion/S034/001/S034_001_00000004_emotion.txt"
    bom.write_bytes(b"\xef\xbb\xbf \t5.0000000E+00 \r\n\r\n")
    result = ckplus.scan(root)
    pd.testing.assert_frame_equal(identity_columns(result.manifest), identity_columns(manifest_of(built, "ckplus")))
    assert result.manifest["path"].iloc[0] == "Cohn-Kanade-Images/s005/001/S005_001_00000001.png"


def test_ckplus_root_one_level_too_deep(built):
    root = built["ckplus"][0].root
    with pytest.raises(DatasetNotFound, match="one level too deep") as info:
        ckplus.scan(root / "cohn-kanade-images")
    assert str(root.resolve()) in str(info.value)


def test_ckplus_missing_emotion_folder(built, tmp_path):
    root = copy_of(built, "ckplus", tmp_path)
    shutil.rmtree(root / "Emotion")
    with pytest.raises(DatasetNotFound) as info:
        ckplus.scan(root)
    assert f"{root / 'Emotion'} is missing" in str(info.value) and LAYOUT_SHOWN in str(info.value)


def test_ckplus_missing_frames_folder(built, tmp_path):
    root = copy_of(built, "ckplus", tmp_path)
    shutil.rmtree(root / "cohn-kanade-images")
    with pytest.raises(DatasetNotFound, match="cohn-kanade-images is missing"):
        ckplus.scan(root)


# --------------------------------------------------------------------------------------------
# Oulu-CASIA
# --------------------------------------------------------------------------------------------


def test_oulu_reads_only_visible_light_strong(built):
    fixture, result = built["oulu"]
    assert result.manifest["path"].str.startswith("OriginalImg/VL/Strong/").all()
    assert not any("/NI" in f.path or "Dark" in f.path or "Weak" in f.path for f in result.findings)


def test_oulu_sequences_and_roles(built):
    rows = frames_of(manifest_of(built, "oulu"), "P010_Surprise")
    assert rows["path"].tolist() == [f"OriginalImg/VL/Strong/P010/Surprise/00{i}.jpeg" for i in range(5)]
    assert rows["role"].tolist() == ["neutral", "onset", "onset", "onset", "apex"]
    assert rows["label"].tolist() == ["neutral"] + ["surprise"] * 4


def test_oulu_short_sequence_is_kept_with_a_finding(built):
    fixture, result = built["oulu"]
    assert frames_of(result.manifest, "P004_Surprise")["role"].tolist() == ["neutral", "onset", "apex"]
    assert result.findings[1].problem.startswith("short sequence: 3 frames")


def test_oulu_unknown_expression_folder_is_skipped(built):
    fixture, result = built["oulu"]
    assert not result.manifest["path"].str.contains("Contempt").any()
    assert sorted(result.manifest.loc[result.manifest["subject"] == "P005", "sequence"].unique()) == ["P005_Anger"]
    assert result.findings[2].path == "OriginalImg/VL/Strong/P005/Contempt"


def test_oulu_unrelated_file_is_reported(built):
    fixture, result = built["oulu"]
    ignored = [f.path for f in result.findings if f.problem.startswith("ignored")]
    assert ignored == ["OriginalImg/VL/Strong/P002/notes.txt"]


def test_oulu_lower_case_expression_folder_keeps_the_owners_sequence_name(built):
    rows = frames_of(manifest_of(built, "oulu"), "P006_Happiness")
    assert len(rows) == 4 and rows["path"].iloc[0] == "OriginalImg/VL/Strong/P006/happiness/000.jpeg"
    assert set(rows["label"]) == {"neutral", "happiness"}


def test_oulu_second_folder_for_one_expression_is_skipped(built, tmp_path):
    root = copy_of(built, "oulu", tmp_path)
    shutil.copytree(root / "OriginalImg/VL/Strong/P001/Anger", root / "OriginalImg/VL/Strong/P001/anger")
    if len(list((root / "OriginalImg/VL/Strong/P001").iterdir())) < 3:
        pytest.skip("case-insensitive file system: two folders cannot differ only in case")
    result = oulu.scan(root)
    assert len(result.manifest) == 52
    assert ("OriginalImg/VL/Strong/P001/anger", "a second Anger folder for P001 (names differ only in case); "
            "skipped") in [(f.path, f.problem) for f in result.findings]


def test_oulu_names_in_any_case(built, tmp_path):
    root = copy_of(built, "oulu", tmp_path)
    (root / "OriginalImg").rename(root / "originalimg")
    (root / "originalimg/VL").rename(root / "originalimg/vl")
    (root / "originalimg/vl/Strong").rename(root / "originalimg/vl/STRONG")
    (root / "originalimg/vl/STRONG/P001").rename(root / "originalimg/vl/STRONG/p001")
    (root / "originalimg/vl/STRONG/p001/Anger").rename(root / "originalimg/vl/STRONG/p001/ANGER")
    result = oulu.scan(root)
    pd.testing.assert_frame_equal(identity_columns(result.manifest), identity_columns(manifest_of(built, "oulu")))
    assert result.manifest["path"].iloc[0] == "originalimg/vl/STRONG/p001/ANGER/000.jpeg"


@pytest.mark.parametrize("inside, levels", [("OriginalImg", "one level"), ("OriginalImg/VL", "2 levels"),
                                            ("OriginalImg/VL/Strong", "3 levels")])
def test_oulu_root_too_deep(built, inside, levels):
    root = built["oulu"][0].root
    with pytest.raises(DatasetNotFound, match=f"{levels} too deep") as info:
        oulu.scan(root / inside)
    assert f"point data_root at {root.resolve()}" in str(info.value)


def test_oulu_missing_strong_folder(built, tmp_path):
    root = copy_of(built, "oulu", tmp_path)
    shutil.rmtree(root / "OriginalImg/VL/Strong")
    with pytest.raises(DatasetNotFound) as info:
        oulu.scan(root)
    assert f"{root / 'OriginalImg/VL/Strong'} is missing" in str(info.value)


# --------------------------------------------------------------------------------------------
# BU-4DFE
# --------------------------------------------------------------------------------------------


def test_bu4dfe_peak_roles_rule():
    assert bu4dfe.peak_roles(9) == ["neutral", "onset", "onset", "apex", "apex", "apex", "offset", "offset", "offset"]
    assert bu4dfe.peak_roles(6) == ["neutral", "onset", "apex", "apex", "offset", "offset"]
    assert bu4dfe.peak_roles(3) == ["neutral", "apex", "offset"]
    assert bu4dfe.peak_roles(2) == ["neutral", "apex"]
    assert bu4dfe.peak_roles(1) == ["apex"]
    roles = bu4dfe.peak_roles(100)
    assert roles.index("apex") == 33 and roles.count("apex") == 33 and roles.index("offset") == 66


def test_bu4dfe_sequences_peak_in_the_middle(built):
    m = manifest_of(built, "bu4dfe")
    rows = frames_of(m, "M003_Fear")
    assert rows["role"].tolist() == ["neutral"] + ["onset"] * 2 + ["apex"] * 3 + ["offset"] * 4
    assert rows["label"].tolist() == ["neutral"] + ["fear"] * 9
    assert rows["path"].tolist() == [f"M003/Fear/00{i}.jpg" for i in range(10)]
    assert (m.groupby("sequence")["role"].apply(lambda r: (r == "apex").sum()).drop("F005_Surprise") == 3).all()


def test_bu4dfe_short_sequence_is_kept_with_a_finding(built):
    fixture, result = built["bu4dfe"]
    rows = frames_of(result.manifest, "F005_Surprise")
    assert rows["role"].tolist() == ["neutral", "onset", "apex", "apex", "offset", "offset"]
    assert result.findings[0].problem == ("short sequence: 6 frames, 2 apex frames (protocols take the middle 3 apex "
                                          "frames); kept")


def test_bu4dfe_unknown_expression_folder_is_skipped(built):
    fixture, result = built["bu4dfe"]
    assert sorted(result.manifest.loc[result.manifest["subject"] == "M001", "sequence"].unique()) == ["M001_Angry"]
    assert result.findings[1].path == "M001/Contempt"


def test_bu4dfe_unrelated_file_reported_meshes_silent(built):
    fixture, result = built["bu4dfe"]
    assert (fixture.root / "F001/Angry/000.wrl").is_file()
    assert [f.path for f in result.findings if f.problem.startswith("ignored")] == ["readme.txt"]
    assert not result.manifest["path"].str.endswith(".wrl").any()


def test_bu4dfe_names_in_any_case(built, tmp_path):
    root = copy_of(built, "bu4dfe", tmp_path)
    (root / "F001").rename(root / "f001")
    (root / "f001/Angry").rename(root / "f001/angry")
    (root / "M004/Sad").rename(root / "M004/SAD")
    result = bu4dfe.scan(root)
    pd.testing.assert_frame_equal(identity_columns(result.manifest), identity_columns(manifest_of(built, "bu4dfe")))
    assert "f001/angry/000.jpg" in set(result.manifest["path"])


def test_bu4dfe_root_too_deep(built):
    root = built["bu4dfe"][0].root
    with pytest.raises(DatasetNotFound, match="one level too deep"):
        bu4dfe.scan(root / "F001")
    with pytest.raises(DatasetNotFound, match="two levels too deep") as info:
        bu4dfe.scan(root / "F001/Angry")
    assert f"point data_root at {root.resolve()}" in str(info.value)


def test_bu4dfe_subjects_without_expression_folders(tmp_path):
    for subject in ("F001", "M001"):
        (tmp_path / subject).mkdir()
    with pytest.raises(DatasetNotFound, match="no sequence \\(expected F001/Angry/000.jpg\\)"):
        bu4dfe.scan(tmp_path)


# --------------------------------------------------------------------------------------------
# MMI
# --------------------------------------------------------------------------------------------


def test_mmi_videos_decode_to_the_frames_written(built):
    fixture, result = built["mmi"]
    counts = {path.parent.name: media.video_frame_count(path) for path in (fixture.root / "Sessions").glob("*/*.avi")}
    assert counts["1"] == 9 and counts["230"] == 10 and counts["1805"] == 3 and counts["1800"] == 0
    image = media.read_image(fixture.root, "Sessions/1/S001-001.avi#4")
    assert image.shape == (96, 96, 3)
    with pytest.raises(CorruptImage):
        media.read_image(fixture.root, "Sessions/1/S001-001.avi#9")


def test_mmi_labels_and_sequence_ids(built):
    m, expected = manifest_of(built, "mmi"), built["mmi"][0].expected
    for sequence, label in expected["sequence_labels"].items():
        assert set(frames_of(m, sequence)["label"].iloc[1:]) == {label}, sequence
    assert sorted(m.loc[m["label"] == "", "sequence"].unique()) == expected["unlabelled_sequences"]


def test_mmi_roles_peak_in_the_middle(built):
    rows = frames_of(manifest_of(built, "mmi"), "S001_1")
    assert rows["path"].tolist() == [f"Sessions/1/S001-001.avi#{i}" for i in range(9)]
    assert rows["role"].tolist() == ["neutral"] + ["onset"] * 3 + ["apex"] + ["offset"] * 4
    assert rows["label"].tolist() == ["neutral"] + ["anger"] * 8
    assert mmi.peak_roles(10).index("apex") == 5 and mmi.peak_roles(1) == ["apex"]


def test_mmi_profile_view_session_is_skipped(built):
    fixture, result = built["mmi"]
    assert not result.manifest["path"].str.startswith("Sessions/231/").any()
    assert result.findings[0].problem == "not frontal: view '1' (frontal-view sequences only); session skipped"


def test_mmi_session_without_emotion_is_unlabelled(built):
    fixture, result = built["mmi"]
    assert (frames_of(result.manifest, "S007_1766")["label"] == "").all()
    assert result.findings[1].path == "Sessions/1766"


def test_mmi_windows_line_endings_and_upper_case_tags(built):
    fixture, result = built["mmi"]
    xml = (fixture.root / "Sessions/101/session.xml").read_bytes()
    assert b"\r\n" in xml and b"<METATAG NAME=\"EMOTION\"" in xml
    rows = frames_of(result.manifest, "S005_101")
    assert rows["subject"].unique().tolist() == ["S005"] and set(rows["label"]) == {"neutral", "sadness"}


def test_mmi_corrupt_video_is_skipped(built):
    fixture, result = built["mmi"]
    assert not result.manifest["path"].str.startswith("Sessions/1800/").any()
    assert result.findings[3].path == "Sessions/1800/S008-001.avi"


def test_mmi_session_delivered_as_frame_images(built):
    rows = frames_of(manifest_of(built, "mmi"), "S003_12")
    assert rows["path"].tolist() == [f"Sessions/12/S003-001_{i}.jpg" for i in range(1, 11)]  # natural order
    assert rows["role"].iloc[5] == "apex"


def test_mmi_emotion_in_another_xml_file(built):
    assert set(frames_of(manifest_of(built, "mmi"), "S001_2")["label"]) == {"neutral", "happiness"}


def test_mmi_view_and_subject_fallbacks(built):
    m = manifest_of(built, "mmi")
    assert len(frames_of(m, "S009_1801")) == 9       # no view attribute: frontal
    assert len(frames_of(m, "S002_5")) == 9          # view="Frontal"
    assert len(frames_of(m, "S012_1804")) == 9       # no <subject>: "S012" from S012-001.avi


def test_mmi_short_and_unknown_code(built):
    fixture, result = built["mmi"]
    assert frames_of(result.manifest, "S004_1805")["role"].tolist() == ["neutral", "apex", "offset"]
    assert (frames_of(result.manifest, "S013_1806")["label"] == "").all()
    assert result.findings[5].path == "Sessions/1806/session.xml"


def test_mmi_unrelated_file_is_reported(built):
    fixture, result = built["mmi"]
    assert [f.path for f in result.findings if f.problem.startswith("ignored")] == ["Sessions/1767/notes.txt"]


def test_mmi_emotion_codes_that_disagree(built, tmp_path):
    root = copy_of(built, "mmi", tmp_path)
    (root / "Sessions/1/S001-001.xml").write_text('<annotation><metatag name="emotion" value="2"/></annotation>')
    result = mmi.scan(root)
    assert (frames_of(result.manifest, "S001_1")["label"] == "").all()
    assert ("Sessions/1", "unlabelled sequence: its XML files give different emotion codes (1, 2)") in [
        (f.path, f.problem) for f in result.findings]


def test_mmi_session_xml_that_is_not_xml(built, tmp_path):
    root = copy_of(built, "mmi", tmp_path)
    (root / "Sessions/1802/session.xml").write_text("<session view='0'><subject id='10'>")
    result = mmi.scan(root)
    assert not result.manifest["sequence"].eq("S010_1802").any()
    assert ("Sessions/1802/session.xml", "not valid XML: session skipped") in [
        (f.path, f.problem) for f in result.findings]


def test_mmi_still_image_session_is_not_a_sequence(built, tmp_path):
    root = copy_of(built, "mmi", tmp_path)
    still = root / "Sessions/3000"
    still.mkdir()
    shutil.copy(root / "Sessions/12/S003-001_5.jpg", still / "S003-002.jpg")
    (still / "session.xml").write_text('<session view="0"><subject id="3"/><metatag name="emotion" value="3"/></session>')
    result = mmi.scan(root)
    assert len(result.manifest) == 122 and not result.manifest["path"].str.startswith("Sessions/3000/").any()
    assert ("Sessions/3000/S003-002.jpg", "a still image, not a sequence: session skipped") in [
        (f.path, f.problem) for f in result.findings]


def test_mmi_session_without_session_xml_is_reported(built, tmp_path):
    root = copy_of(built, "mmi", tmp_path)
    (root / "Sessions/1802/session.xml").unlink()
    result = mmi.scan(root)
    assert not result.manifest["sequence"].eq("S010_1802").any()
    assert ("Sessions/1802", "no session.xml: session skipped") in [(f.path, f.problem) for f in result.findings]


def test_mmi_root_too_deep(built):
    root = built["mmi"][0].root
    with pytest.raises(DatasetNotFound, match="one level too deep"):
        mmi.scan(root / "Sessions")
    with pytest.raises(DatasetNotFound, match="two levels too deep"):
        mmi.scan(root / "Sessions/1")


def test_mmi_no_session_metadata_anywhere(tmp_path):
    (tmp_path / "Sessions/1").mkdir(parents=True)
    (tmp_path / "Sessions/1/S001-001.avi").write_bytes(b"")
    with pytest.raises(DatasetNotFound, match="session.xml is missing") as info:
        mmi.scan(tmp_path)
    assert str(tmp_path / "Sessions" / "1" / "session.xml") in str(info.value)


# --------------------------------------------------------------------------------------------
# Protocols on the adapters' manifests (counts and folds counted by hand from the fixtures)
# --------------------------------------------------------------------------------------------

# (paper, dataset, images, sequences, subjects, k)
PROTOCOL_COUNTS = [
    ("baseline", "ckplus", 35, 12, 11, 10),   # 11 basic sequences x 3 + the 3-frame one's 2 expressive frames
    ("ifgan", "ckplus", 35, 12, 11, 10),
    ("eifn", "ckplus", 41, 14, 11, 10),       # + 2 contempt sequences x 3
    ("adfl", "ckplus", 55, 14, 11, 10),       # + the first frame of each of the 14 as neutral
    ("baseline", "oulu", 38, 13, 11, 10),     # 12 sequences x 3 + P004's 2
    ("eifn", "oulu", 38, 13, 11, 10),
    ("tergan", "oulu", 38, 13, 11, 8),
    ("adfl", "oulu", 51, 13, 11, 10),         # + 13 neutral first frames
    ("baseline", "bu4dfe", 35, 12, 11, 10),   # 11 sequences x 3 middle apex frames + F005's 2
    ("tergan", "bu4dfe", 35, 12, 11, 8),
    ("baseline", "mmi", 35, 12, 11, 10),      # 11 sequences x 3 middle frames + S004_1805's 2
    ("ifgan", "mmi", 35, 12, 11, 10),
    ("adfl", "mmi", 47, 12, 11, 10),          # + 12 neutral first frames
]


def test_every_protocol_naming_these_datasets_is_covered():
    import yaml
    from ferlib.data.protocols import PROTOCOLS_DIR
    named = {(path.stem, d) for path in PROTOCOLS_DIR.glob("*.yaml")
             for d in yaml.safe_load(path.read_text())["datasets"] if d in DATASETS}
    assert named == {(paper, dataset) for paper, dataset, *_ in PROTOCOL_COUNTS}


@pytest.mark.parametrize("paper, dataset, images, sequences, subjects, k", PROTOCOL_COUNTS)
def test_protocol_selects_the_counted_rows_and_deals_sorted_round_robin(built, paper, dataset, images, sequences,
                                                                        subjects, k):
    protocol = load_protocol(paper, dataset)
    selected = apply_protocol(manifest_of(built, dataset), protocol)
    assert len(selected) == images
    assert selected["sequence"].nunique() == sequences and selected["subject"].nunique() == subjects
    assert set(selected["label"]) <= set(protocol.classes) and "" not in set(selected["label"])
    ordered = sorted(selected["subject"].unique(), key=subject_sort_key)
    assert selected.groupby("subject")["fold"].first().to_dict() == {s: i % k for i, s in enumerate(ordered)}
    table = check_counts(selected, protocol)
    assert table.loc["images", "found"] == images and table.loc["sequences", "found"] == sequences
    assert table.loc["subjects", "found"] == subjects
    if protocol.expected.get("images") is not None:
        assert table.loc["images", "expected"] == protocol.expected["images"]


def test_ckplus_fold_table_and_splits(built):
    selected = apply_protocol(manifest_of(built, "ckplus"), load_protocol("ifgan", "ckplus"))
    assert selected.groupby("subject")["fold"].first().to_dict() == {
        "S005": 0, "S010": 1, "S011": 2, "S014": 3, "S022": 4, "S026": 5, "S032": 6, "S034": 7, "S037": 8, "S042": 9,
        "S044": 0}
    assert "S050" not in set(selected["subject"])  # no labelled sequence: dealt into no fold
    split = split_fold(selected, load_protocol("ifgan", "ckplus"), 0)
    assert sorted(split.loc[split["split"] == "test", "subject"].unique()) == ["S005", "S044"]
    assert sorted(split.loc[split["split"] == "val", "subject"].unique()) == ["S010"]


def test_ckplus_frames_the_protocols_pick(built):
    m = manifest_of(built, "ckplus")
    last3 = apply_protocol(m, load_protocol("ifgan", "ckplus"))
    assert frames_of(last3, "S005_001")["frame"].tolist() == [2, 3, 4]
    assert frames_of(last3, "S011_002")["frame"].tolist() == [1, 2]
    adfl = apply_protocol(m, load_protocol("adfl", "ckplus"))
    rows = frames_of(adfl, "S010_001")
    assert rows["frame"].tolist() == [0, 1, 2, 3] and rows["label"].tolist() == ["neutral"] + ["contempt"] * 3


def test_oulu_fold_table_eight_folds(built):
    selected = apply_protocol(manifest_of(built, "oulu"), load_protocol("tergan", "oulu"))
    assert selected.groupby("subject")["fold"].first().to_dict() == {
        "P001": 0, "P002": 1, "P003": 2, "P004": 3, "P005": 4, "P006": 5, "P007": 6, "P008": 7, "P009": 0, "P010": 1,
        "P011": 2}


def test_bu4dfe_protocol_takes_the_apex_frames(built):
    selected = apply_protocol(manifest_of(built, "bu4dfe"), load_protocol("tergan", "bu4dfe"))
    assert frames_of(selected, "F001_Angry")["frame"].tolist() == [3, 4, 5]
    assert frames_of(selected, "M003_Fear")["frame"].tolist() == [3, 4, 5]
    assert frames_of(selected, "F005_Surprise")["frame"].tolist() == [2, 3]
    assert selected.groupby("subject")["fold"].first().to_dict() == {
        "F001": 0, "F002": 1, "F003": 2, "F004": 3, "F005": 4, "F006": 5, "M001": 6, "M002": 7, "M003": 0, "M004": 1,
        "M005": 2}


def test_mmi_protocol_takes_the_middle_frames(built):
    m = manifest_of(built, "mmi")
    selected = apply_protocol(m, load_protocol("adfl", "mmi"))
    assert frames_of(selected, "S001_1")["frame"].tolist() == [0, 3, 4, 5]
    assert frames_of(selected, "S003_12")["frame"].tolist() == [0, 4, 5, 6]
    assert frames_of(selected, "S004_1805")["frame"].tolist() == [0, 1, 2]
    assert "S013" not in set(selected["subject"])  # its one session is unlabelled (unknown code)
    assert selected.groupby("subject")["fold"].first().to_dict() == {
        "S001": 0, "S002": 1, "S003": 2, "S004": 3, "S005": 4, "S006": 5, "S007": 6, "S009": 7, "S010": 8, "S011": 9,
        "S012": 0}
