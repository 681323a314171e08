"""BU-4DFE adapter: the 2D texture frames of each subject's six expression sequences.

Layout read (folder names matched in any upper/lower case):

    <root>/F001/Angry/000.jpg    frames of female subject F001's anger sequence (F001-F058)
    <root>/M001/Happy/000.jpg    male subjects M001-M043
    <root>/F001/Angry/000.wrl    3D meshes (.wrl, .vrml, .obj): official, not used, skipped silently

Manifest columns for BU-4DFE:

- path: the frame's file, e.g. "F001/Angry/000.jpg" (as on disk);
- subject: the subject folder in upper case ("F001", "M001", as the owners write them);
- sequence: "<subject>_<Expression>" with the folder name as the owners spell it ("F001_Angry"),
  whatever its case on disk;
- frame: 0-based position of the file in natural order of its name (000.jpg, 001.jpg, ...);
- label: the expression folder (Angry, Disgust, Fear, Happy, Sad, Surprise -> anger, disgust,
  fear, happiness, sadness, surprise); the neutral frame carries "neutral", every other frame
  the sequence's label. Every sequence is labelled.
- role: BU-4DFE sequences start and end near neutral with the peak in the middle (`peak_roles`):
  with n frames, frame 0 is "neutral"; the middle third, positions max(1, n//3) up to
  max(that + 1, 2n//3) - 1, is "apex"; frames before it are "onset", after it "offset". For
  n = 100: neutral 0, onset 1-32, apex 33-65, offset 66-99; for n = 9: 0 / 1-2 / 3-5 / 6-8.
  The TER-GAN and baseline protocols take the middle 3 apex frames (`pick: apex, n: 3`).

Assumptions, each with its finding where the data does not fit:

- Subject folders are F or M followed by digits; other entries at the root are reported.
- An expression folder with another name is reported and skipped; so is a second folder for the
  same expression in another case, and an expression folder without frames.
- A sequence with fewer than 3 apex frames (fewer than 9 frames) is kept, with a finding: the
  protocols take 3 apex frames and get fewer from it.
- Frames are .jpg/.jpeg files; any other file except 3D meshes is reported as ignored, OS
  clutter skipped silently. Frames are listed, never decoded: a corrupt frame appears in the
  manifest and is reported when the images are read.
"""

from __future__ import annotations

import re
from pathlib import Path

from ferlib.data.adapters.base import (AdapterResult, Finding, build_manifest, entries, expression_folders, frame_rows,
                                       has_suffix, layout_error, relative)
from ferlib.data.registry import DATASETS

NAME = "bu4dfe"
SUBJECT = re.compile(r"^[FM]\d+$", re.IGNORECASE)
EXPRESSIONS = {folder.lower(): (folder, label) for folder, label in DATASETS[NAME].label_map.items()}
FRAME_SUFFIXES = (".jpg", ".jpeg")
MESH_SUFFIXES = (".wrl", ".vrml", ".obj")     # the 3D part of each frame: official, not used
MIN_APEX = 3                                  # the protocols take the middle 3 apex frames
IGNORED = "ignored: not part of the BU-4DFE layout"


def is_subject(path: Path) -> bool:
    return path.is_dir() and SUBJECT.match(path.name) is not None


def has_expression_folders(folder: Path) -> bool:
    return any(p.is_dir() and p.name.lower() in EXPRESSIONS for p in entries(folder))


def apex_span(n: int) -> tuple[int, int]:
    """[start, stop) of the apex frames of an n-frame sequence: the middle third, after frame 0."""
    if n == 1:
        return 0, 1
    start = max(1, n // 3)
    return start, max(start + 1, 2 * n // 3)


def peak_roles(n: int) -> list[str]:
    """Roles along a neutral -> peak -> neutral sequence: neutral, onset..., apex (middle third), offset..."""
    start, stop = apex_span(n)
    return ["neutral" if i == 0 and n > 1 else "onset" if i < start else "apex" if i < stop else "offset"
            for i in range(n)]


def check_root(root: Path) -> list[Path]:
    """The subject folders, or a `layout_error` naming what is missing."""
    if not root.is_dir():
        raise layout_error(NAME, f"data_root {root} does not exist or is not a folder")
    subjects = [p for p in entries(root) if is_subject(p)]
    if subjects:
        return subjects
    if SUBJECT.match(root.name) and has_expression_folders(root):
        raise layout_error(NAME, f"data_root {root} is the subject folder {root.name}/ itself, one level too deep: "
                                 f"point data_root at its parent {root.resolve().parent}, which holds F001/, "
                                 "M001/, ...")
    if root.name.lower() in EXPRESSIONS and SUBJECT.match(root.resolve().parent.name):
        raise layout_error(NAME, f"data_root {root} is an expression folder, two levels too deep: point data_root "
                                 f"at {root.resolve().parent.parent}, which holds F001/, M001/, ...")
    deeper = [p for p in entries(root) if p.is_dir() and any(is_subject(q) for q in entries(p))]
    if deeper:
        raise layout_error(NAME, f"{root} holds no subject folder but {deeper[0]} does: data_root points one level "
                                 f"too high; use {deeper[0]}")
    raise layout_error(NAME, f"{root / 'F001'} is missing: {root} holds no subject folder (F001-F058, M001-M043)")


def sequence_frames(folder: Path, root: Path, findings: list[Finding]) -> list[Path]:
    frames = []
    for file in entries(folder):
        if file.is_file() and has_suffix(file, FRAME_SUFFIXES):
            frames.append(file)
        elif not (file.is_file() and has_suffix(file, MESH_SUFFIXES)):
            findings.append(Finding(relative(file, root), IGNORED))
    return frames


def scan_subject(subject_dir: Path, root: Path, findings: list[Finding]) -> list[dict]:
    subject, rows = subject_dir.name.upper(), []
    for folder, name, label in expression_folders(subject_dir, root, EXPRESSIONS, IGNORED, findings):
        frames = sequence_frames(folder, root, findings)
        if not frames:
            findings.append(Finding(relative(folder, root), "empty sequence: no frames; skipped"))
            continue
        start, stop = apex_span(len(frames))
        if stop - start < MIN_APEX:
            findings.append(Finding(relative(folder, root), f"short sequence: {len(frames)} frames, {stop - start} "
                                    f"apex frame{'s' if stop - start != 1 else ''} (protocols take the middle "
                                    f"{MIN_APEX} apex frames); kept"))
        rows += frame_rows(frames, root, subject, f"{subject}_{name}", label, peak_roles(len(frames)))
    return rows


def scan(root: Path) -> AdapterResult:
    """BU-4DFE's manifest (2D frames) and findings, from an unmodified copy at `root`."""
    root = Path(root)
    subjects = check_root(root)
    findings: list[Finding] = []
    rows: list[dict] = []
    for entry in entries(root):
        if entry in subjects:
            rows += scan_subject(entry, root, findings)
        else:
            findings.append(Finding(relative(entry, root), IGNORED))
    if not rows:
        raise layout_error(NAME, f"{root} holds subject folders but no sequence (expected F001/Angry/000.jpg)")
    return AdapterResult(build_manifest(rows), findings)
