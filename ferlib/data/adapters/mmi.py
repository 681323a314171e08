"""MMI adapter: sessions as the MMI site delivers them, a recording plus XML metadata each.

Layout read (file names matched in any upper/lower case):

    <root>/Sessions/1766/S001-001.avi      the recording (or, instead of a video, its frame images)
    <root>/Sessions/1766/session.xml       the session's metadata: subject, view, emotion
    <root>/Sessions/1766/S001-001.xml      other XML files (e.g. the annotation): searched for the emotion

We could not check MMI's XML schema, so it is read tolerantly (tag and attribute names in any case,
XML namespaces ignored, any line endings). The assumptions, each with its finding where the data
does not fit:

- Emotion: an element named `metatag` whose `name` attribute is "emotion", its `value` attribute
  the code (1 anger, 2 disgust, 3 fear, 4 happiness, 5 sadness, 6 surprise), searched in
  session.xml, then the session's other .xml files in natural order. No emotion: the sequence is
  kept unlabelled (label "") with a finding. A code outside 1-6, or codes that disagree: kept
  unlabelled, with a finding.
- View: every `view` attribute in session.xml (on the session or a track element). "0" or
  "frontal" (any case) means frontal; any other value means the session is skipped, with a
  finding (the papers use frontal-view sequences only). A session.xml without a `view` attribute
  is taken as frontal (this is an assumption: check the findings' count against the papers' 208/209).
- Subject: the `id` attribute of a `subject` element in session.xml, else the "S001" prefix of
  the recording's file name ("S001-001.avi"). A number is written "S" + 3 digits ("1" -> "S001"),
  so both sources give the same string; anything else is kept as written, in upper case. A
  session with neither is skipped, with a finding (folds must be subject-exclusive).
- Frames: a video (.avi and the other `VIDEO_SUFFIXES`), counted by decoding it
  (`media.video_frame_count`: MMI is the one dataset whose frame count is only in the file); its
  frames are named "Sessions/1766/S001-001.avi#12" (0-based). A video that cannot be decoded
  skips the session, with a finding. Without a video, the session folder's image files are the
  frames, in natural order of their names; a session holding one image is one of MMI's still
  images, not a sequence, and is skipped with a finding. Several videos: the first in natural
  order is read, with a finding.
- A session folder without session.xml, or whose session.xml is not XML, is skipped with a
  finding; any file that is neither XML, video nor image is reported as ignored; OS clutter is
  skipped silently.

Manifest columns for MMI:

- path: "Sessions/<session>/<video>#<frame>" or "Sessions/<session>/<image file>";
- subject: as above ("S001");
- sequence: "<subject>_<session folder>" ("S001_1766"): the session ID is unique, the subject
  prefix keeps a subject's sequences together when sorted;
- frame: 0-based position in the recording;
- role / label: MMI sequences run neutral -> onset -> apex -> offset -> neutral, so with n frames
  frame 0 is "neutral" (label "neutral"), frame n//2 "apex", frames before it "onset" and after
  it "offset" (`peak_roles`); every frame but the neutral one carries the session's label (all
  "" when unlabelled). The protocols take the middle frames (`pick: middle, n: 3`).
- A labelled sequence shorter than 4 frames is kept with a finding: the protocols take its
  middle 3 expressive frames plus the first as neutral, so it gives fewer images.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from ferlib.data.adapters import media
from ferlib.data.adapters.base import (IMAGE_SUFFIXES, VIDEO_SUFFIXES, AdapterResult, Finding, build_manifest, child,
                                       entries, has_suffix, layout_error, relative)
from ferlib.data.manifest import UNLABELLED
from ferlib.data.registry import DATASETS

NAME = "mmi"
SESSIONS = "Sessions"
SESSION_XML = "session.xml"
LABELS = {int(code): label for code, label in DATASETS[NAME].label_map.items()}
FRONTAL_VIEWS = ("0", "frontal")
SUBJECT_IN_FILE = re.compile(r"^(S\d+)[-_]", re.IGNORECASE)
MIN_FRAMES = 4                                 # middle 3 expressive frames + the first as neutral
IGNORED = "ignored: not part of the MMI layout"


def peak_roles(n: int) -> list[str]:
    """Roles along a neutral -> apex -> neutral sequence: neutral, onset..., apex at n//2, offset..."""
    if n == 1:
        return ["apex"]
    apex = n // 2
    return ["neutral" if i == 0 else "onset" if i < apex else "apex" if i == apex else "offset" for i in range(n)]


def has_session_xml(folder: Path) -> bool:
    return folder.is_dir() and child(folder, SESSION_XML) is not None


def check_root(root: Path) -> Path:
    """The Sessions folder, or a `layout_error` naming the first missing path."""
    if not root.is_dir():
        raise layout_error(NAME, f"data_root {root} does not exist or is not a folder")
    sessions = child(root, SESSIONS)
    if sessions is None or not sessions.is_dir():
        if any(has_session_xml(p) for p in entries(root)):
            raise layout_error(NAME, f"data_root {root} holds the session folders itself, one level too deep: point "
                                     f"data_root at the folder that holds {SESSIONS}/ ({root.resolve().parent} if "
                                     f"{root.name}/ is the Sessions folder)")
        if has_session_xml(root):
            raise layout_error(NAME, f"data_root {root} is one session folder, two levels too deep: point data_root "
                                     f"at {root.resolve().parent.parent}, which holds {SESSIONS}/")
        deeper = [p for p in entries(root) if p.is_dir() and child(p, SESSIONS) is not None]
        if deeper:
            raise layout_error(NAME, f"{root / SESSIONS} is missing but {deeper[0] / SESSIONS} exists: data_root "
                                     f"points one level too high; use {deeper[0]}")
        raise layout_error(NAME, f"{root / SESSIONS} is missing (the sessions: {SESSIONS}/1766/session.xml)")
    folders = [p for p in entries(sessions) if p.is_dir()]
    if not folders:
        raise layout_error(NAME, f"{sessions} holds no session folder (expected {SESSIONS}/1766/{SESSION_XML} and "
                                 "the recording)")
    if not any(has_session_xml(p) for p in folders):
        raise layout_error(NAME, f"{folders[0] / SESSION_XML} is missing, and so is every other session's "
                                 f"{SESSION_XML} (the metadata: subject, view, emotion); download the sessions "
                                 "with their metadata")
    return sessions


def local_name(name: str) -> str:
    """A tag or attribute name without its XML namespace, in lower case."""
    return name.rsplit("}", 1)[-1].lower()


def attributes(element: ET.Element) -> dict[str, str]:
    return {local_name(k): v.strip() for k, v in element.attrib.items()}


def parse_xml(file: Path) -> ET.Element | None:
    try:
        return ET.fromstring(file.read_bytes())
    except (ET.ParseError, OSError):
        return None


def emotion_codes(tree: ET.Element) -> list[str]:
    """The `value` of every <metatag name="emotion"> in `tree` (names in any case)."""
    return [attributes(e).get("value", "") for e in tree.iter()
            if local_name(str(e.tag)) == "metatag" and attributes(e).get("name", "").lower() == "emotion"]


def views(tree: ET.Element) -> list[str]:
    return [attributes(e)["view"] for e in tree.iter() if "view" in attributes(e)]


def subject_from_xml(tree: ET.Element) -> str | None:
    ids = [attributes(e).get("id", "") for e in tree.iter() if local_name(str(e.tag)) == "subject"]
    return next((normalise_subject(i) for i in ids if i), None)


def normalise_subject(text: str) -> str:
    """"1" -> "S001", "s1" -> "S001", "S001" -> "S001"; anything else as written, in upper case."""
    digits = text[1:] if text[:1] in "sS" else text
    return f"S{int(digits):03d}" if digits.isdigit() else text.upper()


def parse_code(text: str) -> int | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value == int(value) and int(value) in LABELS else None


def session_label(folder: Path, session_tree: ET.Element, root: Path) -> tuple[str, Finding | None]:
    """The session's label from its XML files, and the finding when it stays unlabelled."""
    codes: list[tuple[str, Path]] = [(c, child(folder, SESSION_XML)) for c in emotion_codes(session_tree)]
    for file in entries(folder):
        if has_suffix(file, (".xml",)) and file.name.lower() != SESSION_XML:
            tree = parse_xml(file)
            codes += [(c, file) for c in emotion_codes(tree)] if tree is not None else []
    if not codes:
        return UNLABELLED, Finding(relative(folder, root), "unlabelled sequence: no emotion metatag in session.xml "
                                                           "or the session's other XML files")
    unknown = [(c, f) for c, f in codes if parse_code(c) is None]
    if unknown:
        code, file = unknown[0]
        return UNLABELLED, Finding(relative(file, root), f"unlabelled sequence: unknown emotion code {code!r} "
                                   f"(MMI codes: {', '.join(f'{k} {v}' for k, v in LABELS.items())})")
    distinct = sorted({parse_code(c) for c, _ in codes})
    if len(distinct) > 1:
        return UNLABELLED, Finding(relative(folder, root), f"unlabelled sequence: its XML files give different "
                                   f"emotion codes ({', '.join(map(str, distinct))})")
    return LABELS[distinct[0]], None


def subject_in_name(files: list[Path]) -> str | None:
    """The "S001" of the first file named like "S001-001.avi" (MMI's recordings carry the subject)."""
    for file in files:
        match = SUBJECT_IN_FILE.match(file.name)
        if match:
            return match.group(1)
    return None


def recording(folder: Path, root: Path, findings: list[Finding]) -> tuple[list[str], str | None]:
    """The manifest paths of the session's frames (none, with a finding, when there are none), and
    the subject that the recording's file name carries."""
    videos, images = [], []
    for file in entries(folder):
        if not file.is_file():
            findings.append(Finding(relative(file, root), IGNORED))
        elif has_suffix(file, VIDEO_SUFFIXES):
            videos.append(file)
        elif has_suffix(file, IMAGE_SUFFIXES):
            images.append(file)
        elif not has_suffix(file, (".xml",)):
            findings.append(Finding(relative(file, root), IGNORED))
    if videos:
        video = videos[0]
        if len(videos) > 1:
            findings.append(Finding(relative(folder, root), f"{len(videos)} videos; reading {video.name} only"))
        count = media.video_frame_count(video)
        if count == 0:
            findings.append(Finding(relative(video, root), "cannot decode the video (0 frames): session skipped; "
                                    "re-download it"))
            return [], None
        return [f"{relative(video, root)}{media.MEMBER}{i}" for i in range(count)], subject_in_name([video])
    if not images:
        findings.append(Finding(relative(folder, root), "no recording (no video, no frame images): session skipped"))
    elif len(images) == 1:
        findings.append(Finding(relative(images[0], root), "a still image, not a sequence: session skipped"))
        return [], None
    return [relative(f, root) for f in images], subject_in_name(images)


def scan_session(folder: Path, root: Path, findings: list[Finding]) -> list[dict]:
    xml_file = child(folder, SESSION_XML)
    if xml_file is None:
        findings.append(Finding(relative(folder, root), f"no {SESSION_XML}: session skipped"))
        return []
    tree = parse_xml(xml_file)
    if tree is None:
        findings.append(Finding(relative(xml_file, root), "not valid XML: session skipped"))
        return []
    not_frontal = [v for v in views(tree) if v.lower() not in FRONTAL_VIEWS]
    if not_frontal:
        findings.append(Finding(relative(folder, root), f"not frontal: view {not_frontal[0]!r} "
                                "(frontal-view sequences only); session skipped"))
        return []
    paths, file_subject = recording(folder, root, findings)
    if not paths:
        return []
    subject = subject_from_xml(tree) or (normalise_subject(file_subject) if file_subject else None)
    if not subject:
        findings.append(Finding(relative(xml_file, root), "no subject: no <subject id=...> in session.xml and no "
                                "S001-style prefix in the recording's name; session skipped"))
        return []
    label, problem = session_label(folder, tree, root)
    if problem:
        findings.append(problem)
    elif len(paths) < MIN_FRAMES:
        findings.append(Finding(relative(folder, root), f"short sequence: {len(paths)} frames (protocols take the "
                                "middle 3 frames plus the first as neutral); kept"))
    sequence = f"{subject}_{folder.name}"
    return [{"path": path, "subject": subject, "sequence": sequence, "frame": position,
             "label": UNLABELLED if label == UNLABELLED else "neutral" if role == "neutral" else label, "role": role}
            for position, (path, role) in enumerate(zip(paths, peak_roles(len(paths))))]


def scan(root: Path) -> AdapterResult:
    """MMI's manifest (frontal sessions, labelled or not) and findings, from the sessions at `root`."""
    root = Path(root)
    sessions = check_root(root)
    findings: list[Finding] = []
    for entry in entries(root):
        if entry != sessions:
            findings.append(Finding(relative(entry, root), IGNORED))
    rows: list[dict] = []
    for folder in entries(sessions):
        if folder.is_dir():
            rows += scan_session(folder, root, findings)
        else:
            findings.append(Finding(relative(folder, root), IGNORED))
    if not rows:
        raise layout_error(NAME, f"{sessions} holds no usable frontal session (see the findings: every session "
                                 "was skipped)")
    return AdapterResult(build_manifest(rows), findings)
