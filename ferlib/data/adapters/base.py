"""What every real-dataset adapter shares: its result, its findings, tolerant text reading.

An adapter reads an unmodified copy of a dataset, laid out as its owners distribute it, and
returns an `AdapterResult`: the common manifest (see `ferlib.data.manifest`; `path` relative to
the root, `fold` -1, `split` "") plus `findings`, everything it skipped or could not use (an
unrelated file, an unlabelled sequence, an image listed in a label file but missing), each
with the path concerned. Adapters never decode images: that is `ferlib.data.adapters.media`'s
job, at alignment time, where a corrupt image is reported rather than fatal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ferlib.data.manifest import REQUIRED_COLUMNS, UNLABELLED, normalise_dtypes, validate_manifest
from ferlib.errors import DatasetNotFound

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mpg", ".mpeg", ".wmv", ".mkv")
IGNORED_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}


@dataclass(frozen=True)
class Finding:
    """Something an adapter skipped or doubts, with the path (relative to the root) concerned."""

    path: str
    problem: str


@dataclass
class AdapterResult:
    manifest: pd.DataFrame
    findings: list[Finding] = field(default_factory=list)

    def report(self) -> pd.DataFrame:
        """The findings as a table (path, problem), in the order they were found."""
        return pd.DataFrame([{"path": f.path, "problem": f.problem} for f in self.findings], columns=["path", "problem"])


def layout_error(dataset: str, problem: str) -> DatasetNotFound:
    """A `DatasetNotFound` for `dataset` that says `problem` and shows the expected layout."""
    from ferlib.data.registry import DATASETS, not_found
    return not_found(DATASETS[dataset], problem)


def natural_key(text: str) -> tuple:
    """Sort key that orders "frame2" before "frame10" (digits compare as numbers)."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text))


def read_label_text(path: Path) -> str:
    """A small label file's text: BOM, Windows/old-Mac line endings and outer whitespace removed."""
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def is_ignorable(path: Path) -> bool:
    """Operating-system clutter (.DS_Store, Thumbs.db, hidden files, macOS resource forks)."""
    name = path.name.lower()
    return name in IGNORED_NAMES or name.startswith(".") or name.startswith("._")


def has_suffix(path: Path, suffixes) -> bool:
    return path.suffix.lower() in suffixes


def relative(path: Path, root: Path) -> str:
    """`path` relative to `root`, with forward slashes on every platform."""
    return path.relative_to(root).as_posix()


def name_key(path: Path) -> tuple:
    """Natural order, then the exact name: "Anger" and "anger" sort the same on every file system."""
    return natural_key(path.name), path.name


def sorted_dirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not is_ignorable(p)), key=name_key)


def sorted_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file()), key=name_key)


def entries(folder: Path) -> list[Path]:
    """`folder`'s entries without OS clutter, in `name_key` order."""
    return sorted((p for p in folder.iterdir() if not is_ignorable(p)), key=name_key)


def child(folder: Path | None, name: str, dirs_only: bool = False) -> Path | None:
    """The entry of `folder` called `name`, exactly or else in any case (copies made on Windows or
    macOS differ in case), or None."""
    if folder is None or not folder.is_dir():
        return None
    exact = folder / name
    if exact.exists() and (exact.is_dir() or not dirs_only):
        return exact
    return next((p for p in entries(folder) if p.name.lower() == name.lower() and (p.is_dir() or not dirs_only)), None)


def nested(folder: Path | None, *names: str, dirs_only: bool = False) -> Path | None:
    """`folder/names[0]/names[1]/...` matched in any case, or None where a part is missing."""
    for name in names:
        folder = child(folder, name, dirs_only)
    return folder


def expression_folders(subject_dir: Path, root: Path, expressions: dict[str, tuple[str, str]], ignored: str,
                       findings: list[Finding]):
    """Yield (folder, owners' name, label) for each expression folder of a subject folder laid out
    `<subject>/<Expression>/<frames>` (Oulu-CASIA, BU-4DFE); `expressions` maps a lower-case folder
    name to (owners' name, canonical label). Files, unknown folders and a second folder whose
    name differs only in case are listed in `findings` and skipped."""
    seen = set()
    for folder in entries(subject_dir):
        where = relative(folder, root)
        if not folder.is_dir():
            findings.append(Finding(where, ignored))
        elif folder.name.lower() not in expressions:
            findings.append(Finding(where, f"unknown expression folder {folder.name!r} (expected "
                                    f"{', '.join(name for name, _ in expressions.values())}); skipped"))
        elif expressions[folder.name.lower()][0] in seen:
            findings.append(Finding(where, f"a second {expressions[folder.name.lower()][0]} folder for "
                                    f"{subject_dir.name.upper()} (names differ only in case); skipped"))
        else:
            name, label = expressions[folder.name.lower()]
            seen.add(name)
            yield folder, name, label


def frame_rows(frames: list[Path], root: Path, subject: str, sequence: str, label: str, roles: list[str]) -> list[dict]:
    """One manifest row per frame: neutral-role frames of a labelled sequence are labelled
    "neutral", the others carry the sequence's label; an unlabelled sequence stays unlabelled."""
    return [{"path": relative(file, root), "subject": subject, "sequence": sequence, "frame": position,
             "label": UNLABELLED if label == UNLABELLED else "neutral" if role == "neutral" else label, "role": role}
            for position, (file, role) in enumerate(zip(frames, roles))]


def sequence_roles(n: int) -> list[str]:
    """Roles along a neutral-to-apex sequence (CK+, Oulu-CASIA): neutral, onset ..., apex."""
    if n == 1:
        return ["apex"]
    return ["neutral"] + ["onset"] * (n - 2) + ["apex"]


def build_manifest(rows: list[dict], extra_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """The adapter's rows as a validated manifest: required columns first, fold -1, split "", rows
    in natural order of subject, then sequence, then frame (the same order on every machine)."""
    rows = sorted(rows, key=lambda r: (natural_key(str(r["subject"])), natural_key(str(r["sequence"])), r["frame"]))
    columns = list(REQUIRED_COLUMNS) + [c for c in extra_columns if c not in REQUIRED_COLUMNS]
    table = pd.DataFrame(rows, columns=[c for c in columns if c not in ("fold", "split")])
    table["fold"] = -1
    table["split"] = ""
    table = normalise_dtypes(table[columns]).reset_index(drop=True)
    return validate_manifest(table)
