"""The manifest contract: required columns, valid values, CSV round trip with string IDs."""

import pandas as pd
import pytest

from ferlib.data.manifest import REQUIRED_COLUMNS, read_manifest, validate_manifest, write_manifest
from ferlib.errors import FerlibError


def manifest(**overrides):
    row = dict(path="S005/001/a.png", subject="005", sequence="005_001", frame=0, label="neutral",
               role="neutral", fold=-1, split="")
    rows = [row, {**row, "path": "S005/001/b.png", "frame": 1, "label": "anger", "role": "apex"}]
    df = pd.DataFrame(rows)
    for k, v in overrides.items():
        df[k] = v
    return df


def test_a_valid_manifest_passes_and_extra_columns_are_allowed():
    df = manifest(intensity=[0.0, 1.0])
    assert validate_manifest(df) is df


def test_missing_columns_are_named():
    with pytest.raises(FerlibError) as e:
        validate_manifest(manifest().drop(columns=["role", "fold"]), what="my.csv")
    assert "my.csv lacks the column(s) role, fold" in str(e.value)
    assert ", ".join(REQUIRED_COLUMNS) in str(e.value)


@pytest.mark.parametrize("column, value, valid", [
    ("label", "happy", "'happiness'"), ("role", "peak", "'apex'"), ("split", "dev", "'val'")])
def test_invalid_values_name_the_column_the_value_and_the_valid_ones(column, value, valid):
    df = manifest()
    df.loc[1, column] = value
    with pytest.raises(FerlibError, match=rf"{column} value\(s\) '{value}' \(first at row 1\)") as e:
        validate_manifest(df)
    assert valid in str(e.value)


def test_csv_round_trip_keeps_ids_as_strings_and_empty_split(tmp_path):
    path = write_manifest(manifest(), tmp_path / "sub" / "manifest.csv")
    back = read_manifest(path)
    assert back["subject"].tolist() == ["005", "005"]  # not the integer 5
    assert back["split"].tolist() == ["", ""] and back["fold"].tolist() == [-1, -1]
    assert back["frame"].dtype.kind == "i"
    assert [p.name for p in path.parent.iterdir()] == ["manifest.csv"]  # no temp file left behind


def test_reading_a_missing_or_broken_manifest_says_which_file(tmp_path):
    with pytest.raises(FerlibError, match="manifest file .*nope.csv does not exist"):
        read_manifest(tmp_path / "nope.csv")
    (tmp_path / "bad.csv").write_text("path,subject\na.png,S1\n")
    with pytest.raises(FerlibError, match="bad.csv lacks the column"):
        read_manifest(tmp_path / "bad.csv")
