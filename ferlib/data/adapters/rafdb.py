"""RAF-DB (basic) adapter: the aligned 100x100 images and their single labels.

Layout read (as the owners distribute the basic subset)::

    <root>/basic/EmoLabel/list_patition_label.txt   (sic) "train_00001.jpg 5": image name, label 1-7
    <root>/basic/Image/aligned/train_00001_aligned.jpg
    <root>/basic/Image/aligned/test_0001_aligned.jpg

Label codes (data_manifests/datasets/rafdb.yaml): 1 surprise, 2 fear, 3 disgust, 4 happiness,
5 sadness, 6 anger, 7 neutral. The label file line `train_00001.jpg 5` belongs to the image
`train_00001_aligned.jpg`: the aligned file's name is the listed name's stem plus `_aligned`.

Manifest columns:

- path: the aligned image relative to the root, as found on disk (its own case);
- subject, sequence: the listed image's stem in lower case ("train_00001"); RAF-DB publishes no
  identities, so every image is its own subject and its own sequence;
- frame 0, role "single", label the canonical name of the code;
- official_split (extra): "train" or "test", from the name's prefix (the standard split,
  12,271 / 3,068 images); RAF-DB has no official validation part.

Assumptions and what is skipped:

- The label file may have Windows line endings, a BOM, blank lines, tabs or several spaces
  between the fields and trailing spaces; names match the image files whatever their case.
- Findings: a line that is not `<name> <code>` (path: the label file, with the line number),
  a code outside 1-7, a name that starts with neither train_ nor test_, a name listed twice
  (the first line counts), a listed image that is missing (path: the image expected), an aligned
  image that no line lists, two aligned files for one name (e.g. `.jpg` and `.JPG`: the first in
  name order counts), and anything in the aligned folder that is not `*_aligned.<image>`.
- Only `basic/EmoLabel/` and `basic/Image/aligned/` are read: the distribution's
  `basic/Image/original/`, `basic/Annotation/` (landmarks, boxes) and the compound subset are
  not looked at. Images are not decoded here (a corrupt one is reported at alignment time).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ferlib.data.adapters.base import (IMAGE_SUFFIXES, AdapterResult, Finding, build_manifest, entries, layout_error,
                                       nested, relative, sorted_dirs)
from ferlib.data.registry import DATASETS

DATASET = "rafdb"
LABEL_FILE = "basic/EmoLabel/list_patition_label.txt"
ALIGNED_DIR = "basic/Image/aligned"
EXTRA_COLUMNS = ("official_split",)
SPLIT_PREFIXES = {"train": "train", "test": "test"}
ALIGNED_NAME = re.compile(r"^(?P<stem>.+)_aligned$", re.IGNORECASE)


@dataclass(frozen=True)
class Entry:
    """One valid line of the label file."""

    line: int
    stem: str      # lower case, e.g. "train_00001"
    label: str
    split: str


def scan(root: Path) -> AdapterResult:
    """The RAF-DB basic manifest under `root` (the folder holding `basic/`) and its findings."""
    root = Path(root)
    label_file, aligned_dir = check_root(root)
    findings: list[Finding] = []
    entries, listed = read_label_file(label_file, relative(label_file, root), findings)
    images = list_aligned(aligned_dir, root, findings)
    rows = []
    for entry in entries:
        image = images.get(entry.stem)
        if image is None:
            findings.append(Finding(f"{relative(aligned_dir, root)}/{entry.stem}_aligned.jpg",
                                    f"missing: listed on line {entry.line} of {LABEL_FILE} but there is no such image"))
            continue
        rows.append({"path": image, "subject": entry.stem, "sequence": entry.stem, "frame": 0, "label": entry.label,
                     "role": "single", "official_split": entry.split})
    for stem, image in images.items():
        if stem not in listed:
            findings.append(Finding(image, f"no label: {LABEL_FILE} does not list {stem}.jpg; skipped"))
    return AdapterResult(build_manifest(rows, EXTRA_COLUMNS), findings)


def label_lines(file: Path) -> list[str]:
    """The label file's lines as an editor numbers them (BOM dropped; \\r\\n, \\r and \\n all end a line).

    Not `read_label_text`, which strips leading blank lines and would shift the line numbers
    that findings quote.
    """
    return file.read_bytes().decode("utf-8-sig", errors="replace").replace("\r\n", "\n").replace("\r", "\n").split("\n")


def read_label_file(file: Path, shown: str, findings: list[Finding]) -> tuple[list[Entry], set[str]]:
    """The valid lines of list_patition_label.txt in file order, and every stem it names (valid
    line or not, so that an image with a bad line gets one finding, not two); problems become
    findings."""
    codes = {int(code): label for code, label in DATASETS[DATASET].label_map.items()}
    entries: list[Entry] = []
    first_line: dict[str, int] = {}
    mentioned: set[str] = set()
    for number, line in enumerate(label_lines(file), start=1):
        fields = line.split()
        if not fields:
            continue
        mentioned.add(Path(fields[0]).stem.lower())
        if len(fields) != 2:
            findings.append(Finding(shown, f"line {number}: expected '<image name> <label 1-7>' "
                                           f"(e.g. 'train_00001.jpg 5'), found {line.strip()!r}"))
            continue
        name, code = fields
        stem = Path(name).stem.lower()
        if stem in first_line:
            findings.append(Finding(shown, f"line {number}: {name} is listed again (first on line "
                                           f"{first_line[stem]}, whose label is used)"))
            continue
        first_line[stem] = number
        split = SPLIT_PREFIXES.get(stem.split("_", 1)[0])
        if split is None:
            findings.append(Finding(shown, f"line {number}: cannot tell the official split of {name}: RAF-DB names "
                                           "start with train_ or test_"))
            continue
        if not code.isdigit() or int(code) not in codes:
            findings.append(Finding(shown, f"line {number}: label {code!r} of {name} is not a RAF-DB basic code "
                                           f"({', '.join(f'{c} {label}' for c, label in sorted(codes.items()))})"))
            continue
        entries.append(Entry(number, stem, codes[int(code)], split))
    return entries, mentioned


def list_aligned(folder: Path, root: Path, findings: list[Finding]) -> dict[str, str]:
    """{lower-case stem without `_aligned`: image path relative to root} for the aligned folder."""
    images: dict[str, str] = {}
    for entry in entries(folder):
        path = relative(entry, root)
        match = ALIGNED_NAME.match(entry.stem)
        if entry.is_dir() or entry.suffix.lower() not in IMAGE_SUFFIXES or match is None:
            findings.append(Finding(path, "ignored: not part of the RAF-DB layout (the aligned folder holds "
                                          "<name>_aligned.jpg images)"))
            continue
        stem = match["stem"].lower()
        if stem in images:
            findings.append(Finding(path, f"duplicate: {images[stem]} is the same image name; skipped"))
            continue
        images[stem] = path
    return images


def check_root(root: Path) -> tuple[Path, Path]:
    """The label file and the aligned folder under `root`; a layout error naming what is missing."""
    if not root.is_dir():
        raise layout_error(DATASET, f"data_root {root} does not exist or is not a folder")
    label_file = nested(root, *LABEL_FILE.split("/"))
    if label_file is None or not label_file.is_file():
        raise layout_error(DATASET, missing_label_file(root))
    aligned = nested(root, *ALIGNED_DIR.split("/"))
    if aligned is None or not aligned.is_dir():
        hint = ""
        if nested(root, "basic", "Image", "original") is not None:
            hint = " (basic/Image/original is there: the study reads the aligned images, extract aligned.zip too)"
        raise layout_error(DATASET, f"{ALIGNED_DIR} is missing under {root}{hint}")
    return label_file, aligned


def missing_label_file(root: Path) -> str:
    """Why the label file is not where it should be: one level too deep or too high, or absent."""
    name = LABEL_FILE.rsplit("/", 1)[1]
    for depth, inner in ((1, LABEL_FILE.split("/", 1)[1]), (2, name)):
        if nested(root, *inner.split("/")) is not None:
            parent = root.resolve().parents[depth - 1]
            level = "one level" if depth == 1 else "two levels"
            return (f"{LABEL_FILE} is missing under {root}, but {inner} is there: data_root points {level} too deep "
                    f"(at {'basic' if depth == 1 else 'basic/EmoLabel'}); point it at {parent}")
    if root.is_dir():
        for folder in sorted_dirs(root):
            if nested(folder, *LABEL_FILE.split("/")) is not None:
                return (f"{LABEL_FILE} is missing under {root}, but it is one level down, in {folder}; "
                        f"point data_root at {folder}")
    return f"{LABEL_FILE} (the label file, sic: 'patition') is missing under {root}"
