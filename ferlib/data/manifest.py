"""The one manifest format shared by every dataset, real or synthetic.

A manifest is a pandas DataFrame, one row per image, with at least these columns:

- path: image path relative to the dataset root (for in-memory SynthFER: the path it gets
  when written with `python -m ferlib data synth`)
- subject: subject ID as a string (e.g. "S005")
- sequence: sequence ID, unique across the whole dataset (e.g. "S005_001")
- frame: frame index within the sequence, 0 = first frame (int)
- label: canonical expression name (see `ferlib.labels.EXPRESSIONS`)
- role: "neutral" (the sequence's first, expressionless frame), "onset" (rising),
  "apex" (peak), "offset" (falling, MMI-like), or "single" (in-the-wild single images)
- fold: subject-exclusive fold index, -1 until a protocol assigns one (int)
- split: "train", "val", "test" or "" until a fold is chosen

Extra columns (SynthFER's factors, noisy labels, intensities) are allowed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ferlib.errors import FerlibError
from ferlib.io import atomic_write
from ferlib.labels import EXPRESSIONS

REQUIRED_COLUMNS = ("path", "subject", "sequence", "frame", "label", "role", "fold", "split")
ROLES = ("neutral", "onset", "apex", "offset", "single")
SPLITS = ("train", "val", "test", "")
UNLABELLED = ""  # the label of a frame whose sequence carries no expression label (CK+ has 266)

STRING_COLUMNS = ("path", "subject", "sequence", "label", "role", "split")
INT_COLUMNS = ("frame", "fold")


def validate_manifest(manifest: pd.DataFrame, what: str = "manifest") -> pd.DataFrame:
    """Check the column contract and the values of `label`, `role` and `split`; return `manifest`.

    `what` names the manifest in the error (e.g. a file path). Labels must be canonical names or
    "" (unlabelled).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in manifest.columns]
    if missing:
        raise FerlibError(
            f"{what} lacks the column(s) {', '.join(missing)}; a manifest needs {', '.join(REQUIRED_COLUMNS)} "
            "(see ferlib/data/manifest.py)")
    for column, valid in (("label", EXPRESSIONS + (UNLABELLED,)), ("role", ROLES), ("split", SPLITS)):
        bad = sorted(set(manifest[column].astype(str)) - set(valid))
        if bad:
            row = manifest.index[manifest[column].astype(str) == bad[0]][0]
            raise FerlibError(
                f"{what} has {column} value(s) {', '.join(map(repr, bad))} (first at row {row}); "
                f"valid {column}s are: {', '.join(repr(v) for v in valid)}")
    return manifest


def normalise_dtypes(manifest: pd.DataFrame) -> pd.DataFrame:
    """A copy with the contract's dtypes: strings (missing -> "") and ints."""
    out = manifest.copy()
    for column in STRING_COLUMNS:
        if column in out.columns:
            out[column] = out[column].fillna("").astype(str)
    for column in INT_COLUMNS:
        if column in out.columns:
            out[column] = out[column].astype(int)
    return out


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read a manifest CSV (IDs stay strings, empty cells stay "") and validate it."""
    path = Path(path)
    if not path.is_file():
        raise FerlibError(f"manifest file {path} does not exist; write one with `python -m ferlib data synth`")
    manifest = pd.read_csv(path, dtype={c: str for c in STRING_COLUMNS}, keep_default_na=False)
    return validate_manifest(normalise_dtypes(manifest), what=str(path))


def write_manifest(manifest: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Validate and write `manifest` as CSV atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    validate_manifest(manifest, what=str(path))
    return atomic_write(path, lambda f: manifest.to_csv(f, index=False), text=True)
