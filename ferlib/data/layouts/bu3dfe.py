"""A miniature BU-3DFE: 10 subject folders of `*_F2D.bmp` textures, with BU-3DFE's traps.

Each subject poses one or two expressions at intensity levels 1-4 plus a neutral face (SynthFER
intensity = level / 4). The traps, one per subject where possible:

- F0001: the distribution's non-texture files (`_F3D.wrl`, `_RAW.wrl`, `_F3D.bnd`: skipped
  silently), an unrelated `notes.txt` (a finding) and a `.DS_Store` (silent);
- f0002: folder and file names in lower case (`f0002_an04ae_f2d.bmp`);
- F0003: disgust without intensity level 2 (kept, three frames; a finding);
- F0004: sadness level 3 is a corrupt file (listed; `media.read_image` raises CorruptImage);
- F0005: no neutral face (a finding);
- F0006: two texture names that do not parse (`_XX02` and `_SU7`, findings);
- the root: an unrelated `readme.txt` (a finding) and a `Thumbs.db` (silent).
"""

from __future__ import annotations

from pathlib import Path

from ferlib.data.layouts import Fixture, face, save_image, write_corrupt, write_text

SIZE = 64
CODES = {"AN": "anger", "DI": "disgust", "FE": "fear", "HA": "happiness", "SA": "sadness", "SU": "surprise"}
# subject folder, race code, expression codes, SynthFER identity
SUBJECTS = (
    ("F0001", "WH", ("AN", "HA"), 1),
    ("f0002", "AE", ("AN",), 2),
    ("F0003", "BL", ("DI",), 3),
    ("F0004", "WH", ("SA",), 4),
    ("F0005", "LA", ("FE",), 5),
    ("F0006", "IN", ("SU",), 6),
    ("M0001", "BL", ("HA",), 7),
    ("M0002", "AM", ("AN",), 8),
    ("M0003", "LA", ("SU",), 9),
    ("M0004", "WH", ("DI",), 10),
)
NO_NEUTRAL = "F0005"
MISSING_LEVEL = ("F0003", "DI", 2)
CORRUPT = "F0004/F0004_SA03WH_F2D.bmp"


def texture_name(folder: str, code: str, level: int, race: str) -> str:
    name = f"{folder.upper()}_{code}{level:02d}{race}_F2D.bmp"
    return name.lower() if folder.islower() else name


def build(root: Path) -> Fixture:
    """Write the miniature BU-3DFE under `root` and return what the adapter must find."""
    root = Path(root)
    for folder, race, codes, identity in SUBJECTS:
        subject_dir = root / folder
        if folder != NO_NEUTRAL:
            save_image(face(identity, "neutral", 0.0, SIZE), subject_dir / texture_name(folder, "NE", 0, race))
        for code in codes:
            for level in (1, 2, 3, 4):
                if (folder, code, level) == MISSING_LEVEL:
                    continue
                path = subject_dir / texture_name(folder, code, level, race)
                if path.relative_to(root).as_posix() == CORRUPT:
                    write_corrupt(path)
                else:
                    save_image(face(identity, CODES[code], level / 4, SIZE), path)
    official_extras = ("F0001_AN04WH_F3D.wrl", "F0001_AN04WH_RAW.wrl", "F0001_AN04WH_F3D.bnd")
    for name in official_extras:
        write_text(root / "F0001" / name, "#VRML V2.0 utf8\n" if name.endswith(".wrl") else "0.1 0.2 0.3\n")
    write_text(root / "F0001" / "notes.txt", "my notes\n")
    write_text(root / "F0001" / ".DS_Store", "")
    save_image(face(6, "surprise", 1.0, SIZE), root / "F0006" / "F0006_XX02IN_F2D.bmp")
    save_image(face(6, "surprise", 1.0, SIZE), root / "F0006" / "F0006_SU7IN_F2D.bmp")
    write_text(root / "readme.txt", "BU-3DFE copy\r\n")
    write_text(root / "Thumbs.db", "")
    expected = {
        "images": 52,
        "subjects": 10,
        "sequences": 20,
        "neutral_faces": 9,
        "labels": {"neutral": 9, "anger": 3, "disgust": 2, "fear": 1, "happiness": 2, "sadness": 1, "surprise": 2},
        "subject_order": ["F0001", "F0002", "F0003", "F0004", "F0005", "F0006", "M0001", "M0002", "M0003", "M0004"],
        "corrupt": CORRUPT,
        "findings": [
            ("F0001/notes.txt", "ignored: not part of the BU-3DFE layout"),
            ("F0003", "incomplete sequence F0003_DI: intensity levels 1, 3, 4 (no level 2)"),
            ("F0005", "no neutral face"),
            ("F0006/F0006_SU7IN_F2D.bmp", "name does not parse"),
            ("F0006/F0006_XX02IN_F2D.bmp", "expression code 'XX'"),
            ("readme.txt", "ignored: not part of the BU-3DFE layout"),
        ],
        "ifgan": {"sequences": 11, "images": 22},
    }
    return Fixture("bu3dfe", root, expected)
