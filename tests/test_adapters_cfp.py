"""The CFP adapter (face-pose data for EAN's invariant feature generator) on a miniature CFP.

The fixture (ferlib/data/layouts/cfp.py) is built once per module; tests that change a tree work
on a copy. Counts, paths and findings are asserted exactly: they were counted by hand from the
fixture module's docstring and tables.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ferlib.data.adapters import cfp
from ferlib.data.adapters.media import read_image
from ferlib.data.layouts import cfp as layout
from ferlib.data.layouts import save_image, write_corrupt, write_text
from ferlib.errors import CorruptImage, DatasetNotFound, FerlibError

IMAGES = layout.IMAGES  # "cfp-dataset/Data/Images"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    fixture = layout.build(tmp_path_factory.mktemp("cfp") / "CFP")
    return fixture, cfp.scan(fixture.root)


def assert_findings(findings, expected) -> None:
    """Same count, order and paths as `expected`, each problem containing its text."""
    found = [(f.path, f.problem) for f in findings]
    assert len(found) == len(expected), found
    for (path, problem), (want_path, want_text) in zip(found, expected):
        assert path == want_path and want_text in problem, (path, problem)


def copy_of(fixture, tmp_path: Path) -> Path:
    return Path(shutil.copytree(fixture.root, tmp_path / fixture.root.name))


def rows_of(manifest: pd.DataFrame, subject: str, view: str) -> list[str]:
    return manifest.loc[(manifest["subject"] == subject) & (manifest["view"] == view), "image"].tolist()


def test_cfp_finds_the_fixtures_exact_counts(built):
    fixture, result = built
    m, want = result.manifest, fixture.expected
    assert len(m) == want["images"] == 18
    assert m["subject"].nunique() == want["subjects"] == 4
    assert m["view"].value_counts().to_dict() == {"frontal": want["frontal"], "profile": want["profile"]} == {
        "frontal": 12, "profile": 6}
    assert m["path"].tolist() == want["paths"]
    assert all((fixture.root / p).is_file() for p in m["path"])


def test_cfp_manifest_has_exactly_its_columns_as_strings_in_natural_order(built):
    m = built[1].manifest
    assert list(m.columns) == ["path", "subject", "view", "image"]
    assert all(pd.api.types.is_string_dtype(m[c]) for c in m.columns)
    assert list(m.index) == list(range(len(m)))
    assert list(dict.fromkeys(m["subject"])) == ["001", "002", "003", "004"]
    assert rows_of(m, "001", "frontal") == ["01", "02", "03"] and rows_of(m, "001", "profile") == ["01", "02"]
    first = m.iloc[3]
    assert (first["path"], first["subject"], first["view"], first["image"]) == (
        f"{IMAGES}/001/profile/01.jpg", "001", "profile", "01")
    assert "label" not in m.columns and "fold" not in m.columns  # not the FER manifest


def test_cfp_findings_are_exactly_the_traps(built):
    assert_findings(built[1].findings, built[0].expected["findings"])


def test_cfp_trap_subject_without_profile_folder_keeps_its_frontal_images(built):
    m = built[1].manifest
    assert rows_of(m, "003", "frontal") == ["01", "02", "03"] and rows_of(m, "003", "profile") == []
    assert [(f.path, f.problem) for f in built[1].findings if f.problem.startswith("incomplete")] == [
        (f"{IMAGES}/003", "incomplete subject: no profile/ folder; its frontal/ images are kept")]


def test_cfp_trap_corrupt_image_is_listed_and_fails_to_decode(built):
    fixture, result = built
    assert fixture.expected["corrupt"] in set(result.manifest["path"])
    assert not any(f.path == fixture.expected["corrupt"] for f in result.findings)  # scan does not decode
    with pytest.raises(CorruptImage, match=re.escape("002/profile/02.jpg")):
        read_image(fixture.root, fixture.expected["corrupt"])


def test_cfp_trap_upper_case_suffix_is_kept_as_on_disk(built):
    m = built[1].manifest
    row = m[(m["subject"] == "004") & (m["view"] == "frontal") & (m["image"] == "01")]
    assert row["path"].tolist() == [f"{IMAGES}/004/frontal/01.JPG"]
    assert read_image(built[0].root, row["path"].item()).shape == (48, 48, 3)


def test_cfp_trap_files_that_are_not_images_are_findings(built):
    ignored = [f.path for f in built[1].findings if f.problem.startswith("ignored: not")]
    assert ignored == [f"{IMAGES}/002/frontal/01.txt", f"{IMAGES}/readme.txt"]
    assert not built[1].manifest["path"].str.endswith(".txt").any()


def test_cfp_trap_os_clutter_and_unread_official_folders_are_silent(built):
    fixture, result = built
    assert (fixture.root / IMAGES / "001/frontal/.DS_Store").is_file()
    assert (fixture.root / "cfp-dataset/Data/Fiducials/001/frontal/01.txt").is_file()
    for text in (".DS_Store", "Thumbs.db", "Fiducials", "Protocol"):
        assert not any(text in f.path for f in result.findings)
        assert not result.manifest["path"].str.contains(text, regex=False).any()


def test_cfp_trap_non_numeric_folder_and_image_name_are_skipped(built):
    fixture, result = built
    assert (fixture.root / IMAGES / "001 - Copy/frontal/01.jpg").is_file()
    assert not result.manifest["path"].str.contains("Copy", regex=False).any()
    assert "03 (2)" not in set(result.manifest["image"]) and rows_of(result.manifest, "002", "frontal") == [
        "01", "02", "03"]
    assert [f.path for f in result.findings if "not a person number" in f.problem] == [f"{IMAGES}/001 - Copy"]
    assert [f.path for f in result.findings if f.problem.startswith("name does not parse")] == [
        f"{IMAGES}/002/frontal/03 (2).jpg"]


def test_cfp_trap_duplicate_image_name_the_first_counts(built):
    m = built[1].manifest
    assert m.loc[(m["subject"] == "001") & (m["image"] == "02"), "path"].tolist() == [
        f"{IMAGES}/001/frontal/02.jpg", f"{IMAGES}/001/profile/02.jpg"]
    assert [(f.path, f.problem) for f in built[1].findings if f.problem.startswith("duplicate")] == [
        (f"{IMAGES}/001/frontal/02.png", f"duplicate: {IMAGES}/001/frontal/02.jpg is the same image name; skipped")]


def test_cfp_case_duplicates_view_folders_and_stray_folders(tmp_path):
    person = tmp_path / "cfp-dataset" / "Data" / "Images" / "007"
    for name in ("Frontal/01.JPG", "Frontal/01.jpg", "Frontal/02.jpg", "frontal/03.jpg", "Profile/01.jpg",
                 "Profile/old/01.jpg", "extra/01.jpg", "notes.txt"):
        write_text(person / name, "")  # scan never decodes: empty files are enough
    (tmp_path / "cfp-dataset" / "Data" / "Images" / "008").mkdir()
    result = cfp.scan(tmp_path)
    assert result.manifest["path"].tolist() == [f"{IMAGES}/007/Frontal/01.JPG", f"{IMAGES}/007/Frontal/02.jpg",
                                                f"{IMAGES}/007/Profile/01.jpg"]
    assert result.manifest["view"].tolist() == ["frontal", "frontal", "profile"]
    assert [(f.path, f.problem.split(":")[0].split(" (")[0]) for f in result.findings] == [
        (f"{IMAGES}/007/extra", "ignored"),
        (f"{IMAGES}/007/frontal", "a second frontal folder for 007"),
        (f"{IMAGES}/007/notes.txt", "ignored"),
        (f"{IMAGES}/007/Frontal/01.jpg", "duplicate"),
        (f"{IMAGES}/007/Profile/old", "ignored"),
        (f"{IMAGES}/008", "incomplete subject"),
    ]
    assert result.findings[-1].problem == "incomplete subject: no frontal/ or profile/ folder; nothing to keep"


def test_cfp_is_deterministic(built, tmp_path):
    fixture, result = built
    again = cfp.scan(fixture.root)
    pd.testing.assert_frame_equal(again.manifest, result.manifest)
    assert again.findings == result.findings
    rebuilt = layout.build(tmp_path / "CFP")
    other = cfp.scan(rebuilt.root)
    pd.testing.assert_frame_equal(other.manifest, result.manifest)
    assert other.findings == result.findings
    assert rebuilt.expected == fixture.expected


def test_cfp_data_root_may_be_cfp_dataset_itself(built):
    fixture, result = built
    inner = cfp.scan(fixture.root / "cfp-dataset")
    prefix = "cfp-dataset/"
    assert inner.manifest["path"].iloc[0] == "Data/Images/001/frontal/01.jpg"
    pd.testing.assert_frame_equal(inner.manifest.assign(path=prefix + inner.manifest["path"]), result.manifest)
    assert [(prefix + f.path, f.problem) for f in inner.findings] == [
        (f.path, f.problem.replace(prefix, "")) for f in result.findings]  # the duplicate's problem names a path
    assert read_image(fixture.root / "cfp-dataset", inner.manifest["path"].iloc[0]).shape == (48, 48, 3)


def test_cfp_tolerates_upper_case_folder_names(built, tmp_path):
    root = copy_of(built[0], tmp_path)
    (root / "cfp-dataset" / "Data" / "Images").rename(root / "cfp-dataset" / "Data" / "IMAGES")
    (root / "cfp-dataset").rename(root / "CFP-Dataset")
    result = cfp.scan(root)
    assert result.manifest["path"].iloc[0] == "CFP-Dataset/Data/IMAGES/001/frontal/01.jpg"
    pd.testing.assert_frame_equal(result.manifest.drop(columns="path"), built[1].manifest.drop(columns="path"))


def test_cfp_layout_errors(built, tmp_path):
    fixture = built[0]
    with pytest.raises(DatasetNotFound) as empty:
        cfp.scan(tmp_path)
    message = str(empty.value)
    assert message.startswith(f"CFP (cfp): neither {tmp_path / 'cfp-dataset/Data/Images'} nor "
                              f"{tmp_path / 'Data/Images'} exists (checked data_root {tmp_path})")
    assert "The study expects the owners' layout:" in message and "cfp-dataset/Data/Images/001/frontal/01.jpg" in message
    assert "cfp-dataset/Data/Images/001/profile/01.jpg" in message and "Pair_list_F.txt" in message
    assert "http://www.cfpw.io/" in message and "licence" in message
    with pytest.raises(DatasetNotFound, match="does not exist or is not a folder"):
        cfp.scan(tmp_path / "nowhere")
    inner = re.escape(str(fixture.root / "cfp-dataset"))
    with pytest.raises(DatasetNotFound, match=f"it is inside {inner}, one level too deep; point data_root at {inner}"):
        cfp.scan(fixture.root / "cfp-dataset" / "Data")
    with pytest.raises(DatasetNotFound, match=f"2 levels too deep; point data_root at {inner}"):
        cfp.scan(fixture.root / "cfp-dataset" / "Data" / "Images")
    with pytest.raises(DatasetNotFound, match=f"one level down, in {re.escape(str(fixture.root))}"):
        cfp.scan(fixture.root.parent)
    (tmp_path / "cfp-dataset" / "Protocol").mkdir(parents=True)
    with pytest.raises(DatasetNotFound, match="cfp-dataset holds no Data/Images/ folder"):
        cfp.scan(tmp_path)
    (tmp_path / "cfp-dataset" / "Data" / "Images" / "misc").mkdir(parents=True)
    with pytest.raises(DatasetNotFound, match="Data/Images holds no images"):
        cfp.scan(tmp_path)


def test_cfp_load_decodes_resizes_and_drops_the_corrupt_image(built):
    fixture, result = built
    images, manifest, findings = cfp.load(fixture.root, 32)
    assert images.shape == (fixture.expected["loaded"], 32, 32, 3) == (17, 32, 32, 3) and images.dtype == np.uint8
    assert fixture.expected["corrupt"] not in set(manifest["path"])
    expected = result.manifest[result.manifest["path"] != fixture.expected["corrupt"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(manifest, expected)
    assert findings[:-1] == result.findings
    assert findings[-1].path == fixture.expected["corrupt"]
    assert findings[-1].problem.startswith("corrupt: cannot decode image") and findings[-1].problem.endswith(
        "dropped from the manifest")
    row = manifest.index[manifest["path"] == f"{IMAGES}/004/frontal/01.JPG"].item()
    with Image.open(fixture.root / manifest.at[row, "path"]) as im:
        want = np.asarray(im.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR))
    assert np.array_equal(images[row], want)


def test_cfp_load_greyscale_and_the_other_root_form(built):
    fixture = built[0]
    images, manifest, findings = cfp.load(fixture.root / "cfp-dataset", 20, greyscale=True)
    assert images.shape == (17, 20, 20, 1) and images.dtype == np.uint8
    assert manifest["path"].iloc[0] == "Data/Images/001/frontal/01.jpg"
    assert [f.path for f in findings if f.problem.startswith("corrupt")] == ["Data/Images/002/profile/02.jpg"]
    again, _, _ = cfp.load(fixture.root / "cfp-dataset", 20, greyscale=True)
    assert np.array_equal(images, again)


def test_cfp_load_errors(tmp_path):
    person = tmp_path / "cfp-dataset" / "Data" / "Images" / "001"
    write_corrupt(person / "frontal" / "01.jpg")
    write_corrupt(person / "profile" / "01.jpg")
    with pytest.raises(CorruptImage, match="none of the 2 CFP images under .* could be decoded"):
        cfp.load(tmp_path, 32)
    for size in (0, -3, 2.5, "64", True):
        with pytest.raises(FerlibError, match="positive int"):
            cfp.load(tmp_path, size)
    save_image(np.full((10, 20, 1), 7, np.uint8), person / "frontal" / "02.png")  # grey and not square
    images, manifest, findings = cfp.load(tmp_path, 8)
    assert images.shape == (1, 8, 8, 3) and (images == 7).all() and manifest["image"].tolist() == ["02"]
    assert [f.path for f in findings] == [f"{IMAGES}/001/frontal/01.jpg", f"{IMAGES}/001/profile/01.jpg"]


def test_cfp_pair_lists_report_exactly_the_missing_image(built):
    fixture = built[0]
    protocol = fixture.root / "cfp-dataset" / "Protocol"
    frontal, profile = (protocol / "Pair_list_F.txt").read_bytes(), (protocol / "Pair_list_P.txt").read_bytes()
    assert frontal.count(b"\r\n") == 13 and b"\n" not in frontal.replace(b"\r\n", b"")
    assert profile.startswith(b"\xef\xbb\xbf1 ../Data/Images/001/profile/01.jpg\r\n") and profile.endswith(b"\r\n\r\n\r\n")
    assert b"004/frontal/01.jpg" in frontal  # on disk: 01.JPG, matched in any case
    findings = cfp.check_pair_lists(fixture.root)
    assert_findings(findings, fixture.expected["pair_list_findings"])
    assert findings[0].problem == ("missing: listed on line 13 of Protocol/Pair_list_F.txt but there is no such image")
    inner = cfp.check_pair_lists(fixture.root / "cfp-dataset")
    assert [f.path for f in inner] == ["Data/Images/004/frontal/04.jpg"]


def test_cfp_pair_lists_bad_lines_a_missing_list_and_no_protocol(built, tmp_path):
    root = copy_of(built[0], tmp_path)
    protocol = root / "cfp-dataset" / "Protocol"
    write_text(protocol / "Pair_list_P.txt", "\n1 ../Data/Images/001/profile/01.jpg\n2\nx ../a.jpg\n"
                                             "3 ../../elsewhere/01.jpg\n4 ..\\Data\\Images\\001\\profile\\02.jpg\n",
               newline="\r")  # old-Mac line ends; a Windows path
    (protocol / "Pair_list_F.txt").unlink()
    assert [(f.path, f.problem.split(":")[0]) for f in cfp.check_pair_lists(root)] == [
        ("cfp-dataset/Protocol/Pair_list_F.txt", "missing"),
        ("cfp-dataset/Protocol/Pair_list_P.txt", "line 3"),
        ("cfp-dataset/Protocol/Pair_list_P.txt", "line 4"),
        ("cfp-dataset/Protocol/Pair_list_P.txt", "line 5"),
    ]
    shutil.rmtree(protocol)
    assert [(f.path, f.problem) for f in cfp.check_pair_lists(root)] == [
        ("cfp-dataset/Protocol", "missing: no Protocol folder (Pair_list_F.txt, Pair_list_P.txt); "
                                 "the pair lists were not checked")]
    with pytest.raises(DatasetNotFound, match="does not exist"):
        cfp.check_pair_lists(tmp_path / "nowhere")
