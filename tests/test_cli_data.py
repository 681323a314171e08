"""`python -m ferlib data manifest | align | prepare` on miniature layouts and real photos."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage import data as skimage_data

from ferlib.cli import main
from ferlib.data.adapters import scan
from ferlib.data.layouts import build_layout
from ferlib.data.manifest import read_manifest
from ferlib.data.protocols import apply_protocol, load_protocol
from ferlib.data.registry import DATASETS


@pytest.fixture(scope="module")
def ckplus(tmp_path_factory):
    return build_layout("ckplus", tmp_path_factory.mktemp("layouts") / "ckplus")


def test_manifest_writes_the_protocols_rows_and_prints_counts_beside_the_expected(ckplus, tmp_path, capsys):
    out = tmp_path / "ckplus_ifgan.csv"
    assert main(["data", "manifest", "ckplus", "--root", str(ckplus.root), "--protocol", "ifgan", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    expected = apply_protocol(scan("ckplus", ckplus.root).manifest, load_protocol("ifgan", "ckplus"))
    written = read_manifest(out)
    assert len(written) == len(expected) and list(written["path"]) == list(expected["path"])
    assert list(written["fold"]) == list(expected["fold"]) and (written["fold"] >= 0).all()
    assert f"ckplus: {ckplus.expected['images']} images in {ckplus.expected['sequences']} sequences" in printed
    assert f"findings: {len(ckplus.expected['findings'])}" in printed
    table = printed.split("images per class and fold", 1)[1]
    header = table.splitlines()[1].split()
    assert header[:1] == ["fold"] and header[-3:] == ["all", "expected", "difference"]
    anger = next(line.split() for line in table.splitlines() if line.startswith("anger"))
    found = int((expected["label"] == "anger").sum())
    assert anger[-3:] == [str(found), "135", str(found - 135)]
    assert "images differ by" in printed and f"wrote {len(expected)} rows" in printed


def test_manifest_on_synthfer_needs_no_root_and_shows_no_expected_numbers(capsys):
    assert main(["data", "manifest", "synth-ckplus", "--protocol", "eifn", "--scale", "0.1"]) == 0
    printed = capsys.readouterr().out
    assert "findings: none" in printed and "expected: the paper's numbers" not in printed
    assert "contempt" in printed and "warning" not in printed


def test_a_wrong_layout_exits_2_naming_the_missing_path_and_showing_the_layout(tmp_path, capsys):
    (tmp_path / "copy" / "Emotion").mkdir(parents=True)
    code = main(["data", "manifest", "ckplus", "--root", str(tmp_path / "copy"), "--protocol", "ifgan"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err
    assert f"{tmp_path / 'copy' / 'cohn-kanade-images'} is missing" in err
    assert DATASETS["ckplus"].layout in err


@pytest.mark.parametrize("argv, words", [
    (["data", "manifest", "ckplus", "--protocol", "ifgan"], "give --root"),
    (["data", "manifest", "ckplus", "--root", ".", "--protocol", "nope"], "unknown paper 'nope'"),
    (["data", "manifest", "casme", "--root", ".", "--protocol", "ifgan"], "unknown ifgan dataset 'casme'"),
    (["data", "manifest", "rafdb", "--root", ".", "--protocol", "adfl"], "unknown adfl dataset 'rafdb'"),
])
def test_bad_names_exit_2_with_one_line_that_lists_the_valid_ones(argv, words, capsys):
    assert main(argv) == 2
    assert words in capsys.readouterr().err


def test_align_writes_a_crop_and_sidecar_per_image_and_reports_the_faceless(tmp_path, capsys):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    Image.fromarray(skimage_data.astronaut()).save(photos / "astronaut.jpg")
    Image.new("RGB", (200, 200), (128, 128, 128)).save(photos / "sub" / "wall.png")
    (photos / "notes.txt").write_text("not an image")
    out = tmp_path / "aligned"
    assert main(["data", "align", str(photos), "--out", str(out), "--protocol", "adfl"]) == 0
    printed = capsys.readouterr().out
    with Image.open(out / "astronaut.jpg.png") as im:
        assert im.size == (110, 128)  # ADFL: 128 high x 110 wide
    sidecar = json.loads((out / "astronaut.jpg.json").read_text())
    assert sidecar["status"] == "ok" and len(sidecar["landmarks"]) == 5 and sidecar["score"] > 0.9
    assert not (out / "sub" / "wall.png.png").exists()
    assert json.loads((out / "sub" / "wall.png.json").read_text())["status"] == "no face"
    report = pd.read_csv(out / "report.csv")
    assert list(report["path"]) == ["sub/wall.png"] and list(report["status"]) == ["no face"]
    assert "aligned 2 image(s) for adfl (128x110)" in printed


def test_align_one_file_and_a_missing_path(tmp_path, capsys):
    photo = tmp_path / "a.png"
    Image.fromarray(skimage_data.astronaut()).save(photo)
    assert main(["data", "align", str(photo), "--out", str(tmp_path / "o"), "--protocol", "tergan"]) == 0
    with Image.open(tmp_path / "o" / "a.png.png") as im:
        assert im.size == (75, 75)
    assert main(["data", "align", str(tmp_path / "none"), "--out", str(tmp_path / "o"), "--protocol", "tergan"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_prepare_prints_counts_and_the_alignment_summary(tmp_path, capsys):
    cache = tmp_path / "cache"
    argv = ["data", "prepare", "synth-ckplus", "--protocol", "eifn", "--scale", "0.1", "--cache", str(cache)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "images per class and fold" in printed and "own alignment" in printed
    images = np.asarray(Image.open(next((cache / "aligned").glob("*.png"))))
    assert images.shape[:2] == (64, 64)
    assert main(argv) == 0 and "nothing to do" in capsys.readouterr().out
