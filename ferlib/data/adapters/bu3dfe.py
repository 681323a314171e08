"""BU-3DFE adapter: the frontal 2D textures, one sequence per subject and expression.

Layout read (as distributed by Binghamton University, one folder per subject)::

    <root>/F0001/F0001_AN04WH_F2D.bmp    subject F0001, anger (AN), intensity 04, race WH, frontal 2D texture
    <root>/F0001/F0001_NE00WH_F2D.bmp    the subject's neutral face (intensity 00)
    <root>/M0001/...                     male subjects

A texture's name is `<subject>_<EX><level><race>_F2D.bmp`: subject `F`/`M` plus four digits
(it must match the folder it lies in), expression AN DI FE HA SA SU (levels 01-04) or NE (level
00), and a two-letter race code (WH, BL, AE, AM, IN, LA in the owners' data; any two letters are
accepted and kept). Upper/lower case in folder and file names does not matter.

Manifest columns:

- path: the texture's path relative to the root, as found on disk (its own case);
- subject: the subject folder's name in upper case ("F0001");
- sequence: "<subject>_<EX>" ("F0001_AN"): the subject's textures of one expression, ordered by
  intensity level; the neutral face is a sequence of its own ("F0001_NE");
- frame: 0-based position in the sequence by intensity level, so a complete sequence has
  frame = level - 1 (a sequence missing a level has contiguous frames; `intensity_level` keeps
  the level itself);
- label: the expression's canonical name (`label_map` in data_manifests/datasets/bu3dfe.yaml);
- role: "apex" for level 4, "onset" for levels 1-3, "neutral" for the neutral face;
- intensity_level (extra, int): 1-4, 0 for the neutral face; protocols order by it (IF-GAN's
  "last two levels" are 3 and 4);
- race (extra): the race code from the file name, upper case.

Assumptions and what is skipped:

- Only `*_F2D.bmp` is read. The distribution's other files next to it (`_F3D.wrl`, `_RAW.wrl`,
  `.bnd`, ...: any name of the form `<subject>_<EX><level><race>_<kind>.<ext>`) are skipped
  silently; an `_F2D` texture in another image format is a finding (only .bmp is read).
- Findings (nothing is fatal): a texture name that does not parse (unknown expression code,
  impossible level), a texture naming another subject than its folder, a second texture for the
  same subject/expression/level, a sequence missing an intensity level (kept, it just has fewer
  frames), a subject without a neutral face, and any file or folder that is not part of the
  layout. OS clutter (.DS_Store, Thumbs.db, ._*) is skipped silently.
- Images are not decoded here: a corrupt texture is listed and reported at alignment time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ferlib.data.adapters.base import (AdapterResult, Finding, build_manifest, is_ignorable, layout_error, name_key,
                                       relative, sorted_dirs)
from ferlib.data.registry import DATASETS

DATASET = "bu3dfe"
EXTRA_COLUMNS = ("intensity_level", "race")
LEVELS = (1, 2, 3, 4)
APEX_LEVEL = 4
NEUTRAL_CODE = "NE"
TEXTURE_KIND = "F2D"
TEXTURE_SUFFIX = ".bmp"
EXAMPLE = "F0001_AN04WH_F2D.bmp"

SUBJECT_FOLDER = re.compile(r"^[FM]\d{4}$", re.IGNORECASE)
# <subject>_<EX><level><race>_<kind>.<ext>, e.g. F0001_AN04WH_F2D.bmp or F0001_AN04WH_F3D.wrl
OWNERS_NAME = re.compile(
    r"^(?P<subject>[FM]\d{4})_(?P<code>[A-Z]{2})(?P<level>\d{2})(?P<race>[A-Z]{2})"
    r"_(?P<kind>[A-Z0-9_]+)\.(?P<ext>[A-Z0-9]+)$",
    re.IGNORECASE)


@dataclass(frozen=True)
class Texture:
    """One parsed `*_F2D.bmp` file."""

    path: str
    subject: str
    code: str
    level: int
    race: str


def label_codes() -> dict[str, str]:
    """Expression code in file names -> canonical label, from the dataset's YAML."""
    return {str(code).upper(): label for code, label in DATASETS[DATASET].label_map.items()}


def scan(root: Path) -> AdapterResult:
    """The BU-3DFE manifest under `root` (the folder holding F0001, ..., M0044) and its findings."""
    root = Path(root)
    check_root(root)
    findings: list[Finding] = []
    rows: list[dict] = []
    for entry in sorted(root.iterdir(), key=name_key):
        if is_ignorable(entry):
            continue
        if entry.is_dir() and SUBJECT_FOLDER.match(entry.name):
            rows += subject_rows(root, entry, findings)
        else:
            findings.append(Finding(relative(entry, root), "ignored: not part of the BU-3DFE layout (subject folders "
                                                           "F0001 ... M0044 only)"))
    return AdapterResult(build_manifest(rows, EXTRA_COLUMNS), findings)


def subject_rows(root: Path, folder: Path, findings: list[Finding]) -> list[dict]:
    """The manifest rows of one subject folder; its findings are appended to `findings`."""
    subject = folder.name.upper()
    codes = label_codes()
    textures: list[Texture] = []
    seen: dict[tuple[str, int], str] = {}
    for sub in sorted((p for p in folder.iterdir() if p.is_dir() and not is_ignorable(p)), key=name_key):
        findings.append(Finding(relative(sub, root), "ignored: not part of the BU-3DFE layout (a subject folder holds "
                                                     "files only)"))
    for file in sorted((p for p in folder.iterdir() if p.is_file()), key=name_key):
        if is_ignorable(file):
            continue
        path = relative(file, root)
        texture, problem = parse_texture(file.name, path, subject, codes)
        if problem:
            findings.append(Finding(path, problem))
        if texture is None:
            continue
        key = (texture.code, texture.level)
        if key in seen:
            findings.append(Finding(path, f"duplicate: {seen[key]} already gives {subject} {texture.code} level "
                                          f"{texture.level}; this file is skipped"))
            continue
        seen[key] = path
        textures.append(texture)
    rows = sequence_rows(subject, textures, relative(folder, root), findings)
    if textures and not any(t.code == NEUTRAL_CODE for t in textures):
        findings.append(Finding(relative(folder, root), f"no neutral face: no {subject}_NE00<race>_F2D.bmp in this "
                                                        "subject folder"))
    return rows


def parse_texture(name: str, path: str, subject: str, codes: dict[str, str]) -> tuple[Texture | None, str | None]:
    """(texture, None) for a usable texture; (None, problem) for a finding; (None, None) to skip silently."""
    match = OWNERS_NAME.match(name)
    if match is None:
        if name.lower().endswith(f"_{TEXTURE_KIND}{TEXTURE_SUFFIX}".lower()):
            return None, f"name does not parse: expected <subject>_<EX><level><race>_F2D.bmp, e.g. {EXAMPLE}"
        return None, "ignored: not part of the BU-3DFE layout"
    kind, suffix = match["kind"].upper(), "." + match["ext"].lower()
    if kind != TEXTURE_KIND:
        return None, None  # the distribution's 3D meshes, landmarks, raw scans: not used
    if suffix != TEXTURE_SUFFIX:
        return None, f"ignored: only the {TEXTURE_SUFFIX} frontal textures are read (this one is {suffix})"
    code, level = match["code"].upper(), int(match["level"])
    if code not in codes:
        return None, (f"name does not parse: expression code {code!r} is not one of "
                      f"{', '.join(sorted(codes))} (e.g. {EXAMPLE})")
    valid_levels = (0,) if code == NEUTRAL_CODE else LEVELS
    if level not in valid_levels:
        return None, (f"name does not parse: intensity {match['level']} is not valid for {code} "
                      f"({'00' if code == NEUTRAL_CODE else '01-04'})")
    if match["subject"].upper() != subject:
        return None, f"names subject {match['subject'].upper()} but lies in folder {subject}; skipped"
    return Texture(path, subject, code, level, match["race"].upper()), None


def sequence_rows(subject: str, textures: list[Texture], folder: str, findings: list[Finding]) -> list[dict]:
    """One subject's rows: a sequence per expression, frames in intensity-level order."""
    codes = label_codes()
    groups: dict[str, list[Texture]] = {}
    for texture in textures:
        groups.setdefault(texture.code, []).append(texture)
    rows = []
    for code, members in sorted(groups.items()):
        members.sort(key=lambda t: t.level)
        levels = [t.level for t in members]
        if code != NEUTRAL_CODE and levels != list(LEVELS):
            missing = [str(level) for level in LEVELS if level not in levels]
            findings.append(Finding(folder, f"incomplete sequence {subject}_{code}: intensity levels "
                                            f"{', '.join(map(str, levels))} (no level {', '.join(missing)}); kept"))
        for frame, texture in enumerate(members):
            role = "neutral" if code == NEUTRAL_CODE else "apex" if texture.level == APEX_LEVEL else "onset"
            rows.append({"path": texture.path, "subject": subject, "sequence": f"{subject}_{code}", "frame": frame,
                         "label": codes[code], "role": role, "intensity_level": texture.level, "race": texture.race})
    return rows


def check_root(root: Path) -> None:
    """Raise a layout error unless `root` holds at least one subject folder with a texture."""
    if not root.is_dir():
        raise layout_error(DATASET, f"data_root {root} does not exist or is not a folder")
    if any(has_texture(folder) for folder in subject_folders(root)):
        return
    if SUBJECT_FOLDER.match(root.name) and has_texture(root):
        raise layout_error(DATASET, f"data_root {root} is the subject folder {root.name.upper()} itself (one level "
                                    f"too deep); point data_root at {root.resolve().parent}, the folder that holds "
                                    "F0001, ..., M0044")
    for child in sorted_dirs(root):
        if any(has_texture(folder) for folder in subject_folders(child)):
            raise layout_error(DATASET, f"data_root {root} holds the subject folders one level down, in {child}; "
                                        f"point data_root at {child}")
    raise layout_error(DATASET, f"nothing under {root} matches F*/*_F2D.bmp or M*/*_F2D.bmp (e.g. "
                                f"F0001/{EXAMPLE} is missing)")


def subject_folders(root: Path) -> list[Path]:
    try:
        return [p for p in sorted_dirs(root) if SUBJECT_FOLDER.match(p.name)]
    except OSError:  # an unreadable folder met while looking one level down
        return []


def has_texture(folder: Path) -> bool:
    try:
        return any(p.name.lower().endswith(f"_{TEXTURE_KIND}{TEXTURE_SUFFIX}".lower()) for p in folder.iterdir())
    except OSError:
        return False
