"""FERPlus adapter: FER2013's images with the FERPlus majority-vote labels (8 classes).

Layout read::

    <root>/fer2013.csv        Kaggle FER2013: emotion, pixels, Usage (Training / PublicTest / PrivateTest)
      (or <root>/fer2013/fer2013.csv, as Kaggle's fer2013.tar.gz unpacks)
    <root>/fer2013new.csv     FERPlus (github.com/microsoft/FERPlus): Usage, Image name, neutral,
                              happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF

The two files are joined row by row, as the FERPlus authors' generate_training_data.py does: data
row i of fer2013new.csv labels data row i of fer2013.csv. Both must have the same number of rows
and the same Usage in every row; otherwise the copy is not a FER2013/FERPlus pair and a layout
error names the first row that disagrees.

Label: the FERPlus "majority" mode (Microsoft/FERPlus, src/ferplus.py `_process_data`): each
row holds the votes of 10 taggers over the 8 emotions plus unknown and NF (not a face); votes of
1 are removed as outliers (a count of 1 becomes 0); then the column with the most votes wins if
it holds more than half of all remaining votes (unknown and NF included), otherwise the image
is unknown. `majority_vote` implements exactly this.

Manifest columns:

- path: `fer2013.csv#<row>` (or `fer2013/fer2013.csv#<row>`), the 0-based data row (header
  excluded) whose `pixels` hold the 48x48 greyscale face (`media.read_image` decodes it);
- subject, sequence: the Image name's stem ("fer0000000"); FER2013 publishes no identities, so
  every image is its own subject and its own sequence; frame 0; role "single";
- label: the majority emotion's canonical name;
- official_split (extra): Training -> train, PublicTest -> val, PrivateTest -> test;
- votes_neutral ... votes_contempt, votes_unknown, votes_nf (extra, int): the raw vote counts as
  written in fer2013new.csv (before the outlier removal), for label-distribution studies.

Dropped rows (one finding per reason, with the count and the first rows): an empty Image name
(the FERPlus authors write no image for those rows), no majority (ties included), a majority for
unknown, a majority for NF, votes that are not whole numbers, an Image name already used by an
earlier row. When both fer2013.csv locations exist the root one is read and the other is a
finding. Case and stray spaces in column names, Usage values and cells do not matter, nor do
Windows line endings. The pixels are not decoded here: a row with the wrong pixel count is listed and
`media.read_image` raises CorruptImage for it at alignment time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ferlib.data.adapters.base import AdapterResult, Finding, build_manifest, layout_error, nested, relative
from ferlib.data.registry import DATASETS

DATASET = "ferplus"
FER2013_LOCATIONS = ("fer2013.csv", "fer2013/fer2013.csv")
FERPLUS_FILE = "fer2013new.csv"
VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
NOT_EMOTIONS = ("unknown", "NF")
USAGE_SPLITS = {"training": "train", "publictest": "val", "privatetest": "test"}
SHOWN_ROWS = 5  # rows quoted per dropped-rows finding

DROP_REASONS = {  # reason key -> what the finding says
    "empty_name": "empty Image name (FERPlus writes no image for these rows)",
    "no_majority": "no majority: no column holds more than half of the votes once single votes are removed "
                   "(FERPlus calls these unknown)",
    "unknown": "majority vote for unknown",
    "NF": "majority vote for NF (not a face)",
    "bad_votes": "votes are not whole numbers",
    "duplicate": "Image name already used by an earlier row",
}


def vote_column(name: str) -> str:
    """The extra manifest column holding the raw votes of FERPlus column `name`."""
    return f"votes_{name.lower()}"


EXTRA_COLUMNS = ("official_split",) + tuple(vote_column(c) for c in VOTE_COLUMNS)


def majority_vote(votes: Sequence[int]) -> str | None:
    """The FERPlus majority of one row's votes (in VOTE_COLUMNS order), or None when there is none.

    As the FERPlus reference code: a count of 1 becomes 0 (outlier removal), then the largest
    count wins if it is more than half of the remaining total. The winner may be "unknown" or
    "NF"; None means no majority, which FERPlus also treats as unknown.
    """
    if len(votes) != len(VOTE_COLUMNS):
        raise ValueError(f"expected {len(VOTE_COLUMNS)} vote counts ({', '.join(VOTE_COLUMNS)}), got {len(votes)}")
    kept = [v if v > 1 else 0 for v in votes]
    best = max(kept)
    if best <= sum(kept) / 2:  # also when every vote was a single one (total 0)
        return None
    return VOTE_COLUMNS[kept.index(best)]


def scan(root: Path) -> AdapterResult:
    """The FERPlus manifest under `root` (the folder holding fer2013.csv and fer2013new.csv) and its findings."""
    root = Path(root)
    fer2013, ferplus, findings = locate_files(root)
    fer_usage = read_columns(fer2013, ("usage", "pixels"), root)["usage"]
    labels = read_columns(ferplus, ("usage", "image name") + tuple(c.lower() for c in VOTE_COLUMNS), root)
    splits = check_rows_agree(fer_usage, labels["usage"], relative(fer2013, root), relative(ferplus, root))
    fer_path = relative(fer2013, root)
    label_map = DATASETS[DATASET].label_map
    dropped: dict[str, list[int]] = {reason: [] for reason in DROP_REASONS}
    used_names: set[str] = set()
    rows = []
    for row, record in enumerate(labels.itertuples(index=False)):
        name = record[1].strip()
        if not name:
            dropped["empty_name"].append(row)
            continue
        try:
            votes = [int(v.strip()) for v in record[2:]]
        except ValueError:
            dropped["bad_votes"].append(row)
            continue
        winner = majority_vote(votes)
        if winner is None or winner in NOT_EMOTIONS:
            dropped["no_majority" if winner is None else winner].append(row)
            continue
        subject = Path(name).stem
        if subject.lower() in used_names:
            dropped["duplicate"].append(row)
            continue
        used_names.add(subject.lower())
        rows.append({"path": f"{fer_path}#{row}", "subject": subject, "sequence": subject, "frame": 0,
                     "label": label_map[winner], "role": "single", "official_split": splits[row],
                     **{vote_column(c): v for c, v in zip(VOTE_COLUMNS, votes)}})
    for reason, dropped_rows in dropped.items():
        if dropped_rows:
            findings.append(Finding(relative(ferplus, root), dropped_rows_problem(DROP_REASONS[reason], dropped_rows)))
    return AdapterResult(build_manifest(rows, EXTRA_COLUMNS), findings)


def dropped_rows_problem(reason: str, rows: list[int]) -> str:
    shown = ", ".join(map(str, rows[:SHOWN_ROWS])) + (", ..." if len(rows) > SHOWN_ROWS else "")
    return f"dropped {len(rows)} row{'s' if len(rows) != 1 else ''}: {reason} (data rows, 0-based: {shown})"


def locate_files(root: Path) -> tuple[Path, Path, list[Finding]]:
    """fer2013.csv (at the root or in fer2013/), fer2013new.csv, and a finding for a second fer2013.csv."""
    if not root.is_dir():
        raise layout_error(DATASET, f"data_root {root} does not exist or is not a folder")
    found = [p for p in (nested(root, *where.split("/")) for where in FER2013_LOCATIONS) if p is not None and p.is_file()]
    ferplus = nested(root, *FERPLUS_FILE.split("/"))
    if not found or ferplus is None or not ferplus.is_file():
        raise layout_error(DATASET, missing_files(root, found))
    findings = [Finding(relative(extra, root), f"ignored: {relative(found[0], root)} is the one read")
                for extra in found[1:]]
    return found[0], ferplus, findings


def missing_files(root: Path, found: list[Path]) -> str:
    """What is missing under `root`, and whether data_root points one level too deep or too high."""
    resolved = root.resolve()
    if nested(resolved.parent, *FERPLUS_FILE.split("/")) is not None and found:
        return (f"{FERPLUS_FILE} is missing under {root}, but it is in {resolved.parent}: data_root points one "
                f"level too deep (at the folder Kaggle's archive unpacks); point it at {resolved.parent}")
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if nested(child, *FERPLUS_FILE.split("/")) is not None:
            return f"{FERPLUS_FILE} is one level down, in {child}: point data_root at {child}"
    if not found:
        return (f"{' or '.join(FER2013_LOCATIONS)} (Kaggle FER2013: emotion, pixels, Usage) is missing under {root}")
    return f"{FERPLUS_FILE} (the FERPlus votes, from github.com/microsoft/FERPlus) is missing under {root}"


def read_columns(file: Path, columns: tuple[str, ...], root: Path) -> pd.DataFrame:
    """The named columns of a CSV as strings, renamed to lower case; a layout error if one is absent."""
    shown = relative(file, root)
    try:
        header = pd.read_csv(file, nrows=0).columns
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise layout_error(DATASET, f"{shown} cannot be read as CSV ({e})") from None
    by_name = {str(c).strip().lower(): c for c in header}
    missing = [c for c in columns if c not in by_name]
    if missing:
        raise layout_error(DATASET, f"{shown} has no column(s) {', '.join(missing)}; its header is "
                                    f"{', '.join(map(str, header))}")
    wanted = [c for c in columns if c != "pixels"]  # pixels: checked present, read at alignment time
    try:
        table = pd.read_csv(file, usecols=[by_name[c] for c in wanted], dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise layout_error(DATASET, f"{shown} cannot be read as CSV ({e})") from None
    table.columns = [str(c).strip().lower() for c in table.columns]
    return table[wanted]


def check_rows_agree(fer_usage: pd.Series, ferplus_usage: pd.Series, fer_name: str, ferplus_name: str) -> list[str]:
    """Each row's official split; a layout error unless both files have the same rows and Usage."""
    if len(fer_usage) != len(ferplus_usage):
        raise layout_error(DATASET, f"{fer_name} has {len(fer_usage)} data rows but {ferplus_name} has "
                                    f"{len(ferplus_usage)}: they are joined row by row, so both must be the "
                                    "complete files of the same release")
    splits = []
    for row, (a, b) in enumerate(zip(fer_usage, ferplus_usage)):
        key_a, key_b = a.strip().lower(), b.strip().lower()
        if key_a not in USAGE_SPLITS:
            raise layout_error(DATASET, f"{fer_name} data row {row} (0-based) has Usage {a!r}; FER2013's are "
                                        "Training, PublicTest, PrivateTest")
        if key_a != key_b:
            raise layout_error(DATASET, f"data row {row} (0-based) disagrees: {fer_name} says Usage {a.strip()!r}, "
                                        f"{ferplus_name} says {b.strip()!r}; the files are joined row by row, so they "
                                        "must be the unmodified files of the same release")
        splits.append(USAGE_SPLITS[key_a])
    return splits
