"""CK+ (Extended Cohn-Kanade) adapter: frame folders plus one Emotion file per labelled sequence.

Layout read (folder and file names matched in any upper/lower case):

    <root>/cohn-kanade-images/S005/001/S005_001_00000001.png   every frame of every sequence
    <root>/Emotion/S005/001/S005_001_00000011_emotion.txt      one code for a labelled sequence
    <root>/FACS/..., <root>/Landmarks/...                      official, not used: skipped silently

Manifest columns for CK+:

- path: the frame's file, e.g. "cohn-kanade-images/S005/001/S005_001_00000001.png";
- subject: the subject folder in upper case ("S005", as the owners write it);
- sequence: "<subject>_<sequence folder>" ("S005_001"), unique across CK+;
- frame: 0-based position of the file in natural order of its name (the owners' frame number);
- label / role: roles are `sequence_roles(n)` (first frame neutral, last frame apex, the rest
  onset: CK+ runs from neutral to the peak). In a labelled sequence the neutral frame carries
  "neutral" and every other frame the sequence's label; in an unlabelled one every label is "".

Assumptions, each with its finding where the data does not fit:

- An Emotion file (`*_emotion.txt` in `Emotion/<subject>/<sequence>/`) holds one number such as
  "   3.0000000e+00": 1 anger, 2 contempt, 3 disgust, 4 fear, 5 happiness, 6 sadness,
  7 surprise (the owners' codes, `data_manifests/datasets/ckplus.yaml`). BOM, Windows line ends
  and stray spaces or blank lines do not matter. A sequence without one (an empty or missing
  Emotion folder: 266 of CK+'s 593 sequences) is kept unlabelled. So is a sequence whose file
  is not a number, holds a code outside 1-7 (0, "neutral", labels no CK+ sequence), or whose
  several Emotion files disagree.
- A labelled sequence shorter than 4 frames is kept, with a finding: the protocols take its last
  3 expressive frames plus the first as neutral, so it gives fewer images than the others.
- A subject none of whose sequences is labelled is kept (its frames are unlabelled) and reported:
  it is why papers count 118 subjects and the archive 123.
- An Emotion file for a sequence that has no frames is reported and not used.
- Anything else that is neither a frame nor an official folder (notes, a README) is reported as
  ignored; operating-system clutter (.DS_Store, Thumbs.db) is skipped silently.

Frames are listed, never decoded: a corrupt frame appears in the manifest and is reported when
the images are read (`ferlib.data.adapters.media.read_image`).
"""

from __future__ import annotations

from pathlib import Path

from ferlib.data.adapters.base import (IMAGE_SUFFIXES, AdapterResult, Finding, build_manifest, child, entries,
                                       frame_rows, has_suffix, layout_error, nested,
                                       read_label_text, relative, sequence_roles)
from ferlib.data.manifest import UNLABELLED
from ferlib.data.registry import DATASETS

NAME = "ckplus"
IMAGES = "cohn-kanade-images"
EMOTION = "Emotion"
UNUSED_OFFICIAL = ("facs", "landmarks")   # official folders at the root that this adapter does not read
EMOTION_SUFFIX = "_emotion.txt"
LABELS = {int(code): label for code, label in DATASETS[NAME].label_map.items() if label != "neutral"}
MIN_FRAMES = 4                            # last 3 expressive frames + the first as neutral
IGNORED = "ignored: not part of the CK+ layout"


def check_root(root: Path) -> tuple[Path, Path]:
    """The frames folder and the Emotion folder, or a `layout_error` naming the first missing path."""
    if not root.is_dir():
        raise layout_error(NAME, f"data_root {root} does not exist or is not a folder")
    images, emotion = child(root, IMAGES), child(root, EMOTION)
    if images is None or not images.is_dir():
        if root.name.lower() in (IMAGES, EMOTION.lower()):
            raise layout_error(NAME, f"data_root {root} is the {root.name}/ folder itself, one level too deep: "
                                     f"point data_root at its parent {root.resolve().parent}, which holds {IMAGES}/ "
                                     f"and {EMOTION}/")
        deeper = [p for p in entries(root) if p.is_dir() and child(p, IMAGES) is not None]
        if deeper:
            raise layout_error(NAME, f"{root / IMAGES} is missing but {deeper[0] / IMAGES} exists: data_root points "
                                     f"one level too high; use {deeper[0]}")
        raise layout_error(NAME, f"{root / IMAGES} is missing (the frames: {IMAGES}/S005/001/S005_001_00000001.png)")
    if emotion is None or not emotion.is_dir():
        raise layout_error(NAME, f"{root / EMOTION} is missing (the labels: {EMOTION}/S005/001/"
                                 f"S005_001_00000011_emotion.txt); extract CK+'s Emotion archive beside {IMAGES}/")
    if not any(has_suffix(f, IMAGE_SUFFIXES) for f in images.glob("*/*/*")):
        raise layout_error(NAME, f"{images} holds no frames (expected {IMAGES}/S005/001/S005_001_00000001.png)")
    return images, emotion


def emotion_files(folder: Path | None) -> list[Path]:
    if folder is None or not folder.is_dir():
        return []
    return [p for p in entries(folder) if p.is_file() and p.name.lower().endswith(EMOTION_SUFFIX)]


def read_code(file: Path) -> int | str:
    """The code in one Emotion file, or the problem with it as text."""
    text = read_label_text(file)
    try:
        value = float(text)
    except ValueError:
        return f"Emotion file is not a number ({text[:40]!r})"
    if value != int(value) or int(value) not in LABELS:
        return f"Emotion code {text} is not one of CK+'s expression codes 1-7"
    return int(value)


def sequence_label(folder: Path | None, frames_folder: Path, root: Path) -> tuple[str, Finding | None]:
    """The label of the sequence whose Emotion folder is `folder` (None: no such folder), and the
    finding when it stays unlabelled."""
    files = emotion_files(folder)
    if not files:
        return UNLABELLED, Finding(relative(frames_folder, root), "unlabelled sequence: no Emotion file")
    codes = [read_code(f) for f in files]
    problems = [c for c in codes if isinstance(c, str)]
    if problems:
        return UNLABELLED, Finding(relative(files[0], root), f"unlabelled sequence: {problems[0]}")
    if len(set(codes)) > 1:
        return UNLABELLED, Finding(relative(folder, root), f"unlabelled sequence: its Emotion files disagree "
                                                           f"(codes {', '.join(map(str, codes))})")
    return LABELS[codes[0]], None


def scan_images(images: Path, emotion: Path, root: Path, findings: list[Finding]) -> list[dict]:
    rows: list[dict] = []
    for subject_dir in entries(images):
        if not subject_dir.is_dir():
            findings.append(Finding(relative(subject_dir, root), IGNORED))
            continue
        subject = subject_dir.name.upper()
        kept = labelled = 0
        for sequence_dir in entries(subject_dir):
            if not sequence_dir.is_dir():
                findings.append(Finding(relative(sequence_dir, root), IGNORED))
                continue
            frames = []
            for file in entries(sequence_dir):
                if file.is_file() and has_suffix(file, IMAGE_SUFFIXES):
                    frames.append(file)
                else:
                    findings.append(Finding(relative(file, root), IGNORED))
            if not frames:
                findings.append(Finding(relative(sequence_dir, root), "empty sequence: no frames; skipped"))
                continue
            label, problem = sequence_label(nested(emotion, subject_dir.name, sequence_dir.name), sequence_dir, root)
            if problem:
                findings.append(problem)
            elif len(frames) < MIN_FRAMES:
                findings.append(Finding(relative(sequence_dir, root), f"short sequence: {len(frames)} frames "
                                        "(protocols take the last 3 frames plus the first as neutral); kept"))
            kept += 1
            labelled += label != UNLABELLED
            rows += frame_rows(frames, root, subject, f"{subject}_{sequence_dir.name}", label, sequence_roles(len(frames)))
        if kept and not labelled:
            findings.append(Finding(relative(subject_dir, root), "subject with no labelled sequence: "
                                    "all its frames are unlabelled"))
    return rows


def scan_orphan_labels(images: Path, emotion: Path, root: Path, findings: list[Finding]) -> None:
    """Report Emotion files whose sequence has no frames, and stray files in the Emotion tree."""
    for subject_dir in entries(emotion):
        if not subject_dir.is_dir():
            findings.append(Finding(relative(subject_dir, root), IGNORED))
            continue
        for sequence_dir in entries(subject_dir):
            if not sequence_dir.is_dir():
                findings.append(Finding(relative(sequence_dir, root), IGNORED))
                continue
            frames_dir = nested(images, subject_dir.name, sequence_dir.name)
            has_frames = frames_dir is not None and frames_dir.is_dir() and any(
                has_suffix(f, IMAGE_SUFFIXES) for f in frames_dir.iterdir())
            for file in entries(sequence_dir):
                if not file.name.lower().endswith(EMOTION_SUFFIX):
                    findings.append(Finding(relative(file, root), IGNORED))
                elif not has_frames:
                    findings.append(Finding(relative(file, root), "Emotion file for a sequence with no frames "
                                            f"in {IMAGES}/; not used"))


def scan(root: Path) -> AdapterResult:
    """CK+'s manifest (every sequence, labelled or not) and findings, from an unmodified copy at `root`."""
    root = Path(root)
    images, emotion = check_root(root)
    findings: list[Finding] = []
    for entry in entries(root):
        if entry not in (images, emotion) and entry.name.lower() not in UNUSED_OFFICIAL:
            findings.append(Finding(relative(entry, root), IGNORED))
    rows = scan_images(images, emotion, root, findings)
    scan_orphan_labels(images, emotion, root, findings)
    return AdapterResult(build_manifest(rows), findings)
