"""Oulu-CASIA NIR&VIS adapter: the visible-light, strong-illumination frame folders.

Layout read (folder names matched in any upper/lower case):

    <root>/OriginalImg/VL/Strong/P001/Anger/000.jpeg   one folder per subject and expression
    <root>/OriginalImg/NI/..., OriginalImg/VL/Dark/..., OriginalImg/VL/Weak/...   skipped silently

Only `OriginalImg/VL/Strong` is read: the papers use the visible-light (VIS) camera under strong
illumination (80 subjects x 6 expressions = 480 sequences). The near-infrared camera (NI) and the
dark and weak illuminations are part of the owners' archive, so they are skipped without a finding.

Manifest columns for Oulu-CASIA:

- path: the frame's file, e.g. "OriginalImg/VL/Strong/P001/Anger/000.jpeg" (as on disk);
- subject: the subject folder in upper case ("P001", as the owners write it);
- sequence: "<subject>_<Expression>" with the expression folder's name as the owners spell it
  ("P001_Anger"), whatever its case on disk, so IDs do not depend on how the copy was made;
- frame: 0-based position of the file in natural order of its name (000.jpeg, 001.jpeg, ...);
- label / role: the expression folder names the label (Anger, Disgust, Fear, Happiness, Sadness,
  Surprise -> the canonical names); roles are `sequence_roles(n)` (each sequence runs from a
  neutral first frame to the apex in its last). The neutral frame carries "neutral", every other
  frame the sequence's label. Every sequence is labelled.

Assumptions, each with its finding where the data does not fit:

- An expression folder with another name (e.g. "Contempt") is reported and skipped; a second
  folder for the same expression in another case (possible on case-sensitive file systems) too.
- A sequence shorter than 4 frames is kept, with a finding (the protocols take its last 3
  expressive frames plus the first as neutral, so it gives fewer images); an expression folder
  with no frames is reported and skipped.
- Frames are image files of any usual suffix (.jpeg as distributed, .jpg, .png, ...); any other
  file is reported as ignored, OS clutter skipped silently. Frames are listed, never decoded: a
  corrupt frame appears in the manifest and is reported when the images are read.
"""

from __future__ import annotations

from pathlib import Path

from ferlib.data.adapters.base import (IMAGE_SUFFIXES, AdapterResult, Finding, build_manifest, child, entries,
                                       expression_folders, frame_rows, has_suffix, layout_error, nested, relative,
                                       sequence_roles)
from ferlib.data.registry import DATASETS

NAME = "oulu"
READ = ("OriginalImg", "VL", "Strong")          # the part of the archive the papers use
UNUSED_OFFICIAL = {"OriginalImg": ("ni",), "VL": ("dark", "weak")}   # official, skipped silently
EXPRESSIONS = {folder.lower(): (folder, label) for folder, label in DATASETS[NAME].label_map.items()}
MIN_FRAMES = 4                                   # last 3 expressive frames + the first as neutral
IGNORED = "ignored: not part of the Oulu-CASIA layout"


def check_root(root: Path) -> Path:
    """The `OriginalImg/VL/Strong` folder, or a `layout_error` naming the first missing path."""
    if not root.is_dir():
        raise layout_error(NAME, f"data_root {root} does not exist or is not a folder")
    for depth in range(1, len(READ) + 1):  # root is OriginalImg, OriginalImg/VL or OriginalImg/VL/Strong itself
        inside = READ[:depth]
        if root.name.lower() == inside[-1].lower() and nested(root, *READ[depth:], dirs_only=True) is not None:
            top = root.resolve().parents[depth - 1]
            raise layout_error(NAME, f"data_root {root} is the {'/'.join(inside)}/ folder itself, "
                                     f"{'one level' if depth == 1 else f'{depth} levels'} too deep: point data_root "
                                     f"at {top}, which holds {READ[0]}/")
    if child(root, READ[0], dirs_only=True) is None:
        deeper = [p for p in entries(root) if nested(p, *READ, dirs_only=True) is not None]
        if deeper:
            raise layout_error(NAME, f"{root / READ[0]} is missing but {deeper[0] / READ[0]} exists: data_root "
                                     f"points one level too high; use {deeper[0]}")
    path = root
    for name in READ:
        found = child(path, name, dirs_only=True)
        if found is None:
            raise layout_error(NAME, f"{path / name} is missing (the frames: {'/'.join(READ)}/P001/Anger/000.jpeg)")
        path = found
    return path


def skip_unused(root: Path, findings: list[Finding]) -> None:
    """Report stray entries beside OriginalImg/VL/Strong (NI, VL/Dark and VL/Weak are official: silent)."""
    path, expected_unused = root, ()
    for name in READ:
        for entry in entries(path):
            if entry.name.lower() == name.lower() and entry.is_dir():
                continue
            if entry.name.lower() not in expected_unused:
                findings.append(Finding(relative(entry, root), IGNORED))
        path = child(path, name, dirs_only=True)
        expected_unused = UNUSED_OFFICIAL.get(name, ())


def scan_subject(subject_dir: Path, root: Path, findings: list[Finding]) -> list[dict]:
    subject, rows = subject_dir.name.upper(), []
    for folder, name, label in expression_folders(subject_dir, root, EXPRESSIONS, IGNORED, findings):
        frames = []
        for file in entries(folder):
            if file.is_file() and has_suffix(file, IMAGE_SUFFIXES):
                frames.append(file)
            else:
                findings.append(Finding(relative(file, root), IGNORED))
        if not frames:
            findings.append(Finding(relative(folder, root), "empty sequence: no frames; skipped"))
            continue
        if len(frames) < MIN_FRAMES:
            findings.append(Finding(relative(folder, root), f"short sequence: {len(frames)} frames "
                                    "(protocols take the last 3 frames plus the first as neutral); kept"))
        rows += frame_rows(frames, root, subject, f"{subject}_{name}", label, sequence_roles(len(frames)))
    return rows


def scan(root: Path) -> AdapterResult:
    """Oulu-CASIA's VL/Strong manifest and findings, from an unmodified copy at `root`."""
    root = Path(root)
    strong = check_root(root)
    findings: list[Finding] = []
    skip_unused(root, findings)
    rows: list[dict] = []
    for subject_dir in entries(strong):
        if subject_dir.is_dir():
            rows += scan_subject(subject_dir, root, findings)
        else:
            findings.append(Finding(relative(subject_dir, root), IGNORED))
    if not rows:
        raise layout_error(NAME, f"{strong} holds no sequences (expected {'/'.join(READ)}/P001/Anger/000.jpeg)")
    return AdapterResult(build_manifest(rows), findings)
