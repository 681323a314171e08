"""A miniature CFP: 4 people with 3 frontal and 2 profile 48x48 faces each, with CFP's traps.

Written under `<root>/cfp-dataset/` (the archive's own top folder), so `root` is the folder that
holds `cfp-dataset/`. The faces are SynthFER neutral faces (identity 1-4); a profile image is the
frontal face mirrored and shifted sideways, which is all a test needs (it is not a real profile).
The traps, one per person where possible:

- 001: `frontal/02.png` beside `frontal/02.jpg` (a duplicate: the .jpg counts) and a `.DS_Store`
  in `frontal/` (silent);
- 002: `profile/02.jpg` is corrupt (listed by `scan`, dropped by `load`); `frontal/01.txt` is not
  an image and `frontal/03 (2).jpg` does not parse (findings);
- 003: no `profile/` folder (a finding; its frontal images are kept);
- 004: `frontal/01.JPG` has an upper-case suffix (kept as on disk; the pair list names it
  `01.jpg`) and `profile/` holds a `Thumbs.db` (silent);
- Data/Images: a folder `001 - Copy` (not a person number: a finding, its image skipped) and an
  unrelated `readme.txt` (a finding);
- Protocol/Pair_list_F.txt and Pair_list_P.txt have Windows line endings; Pair_list_P.txt starts
  with a BOM and ends with blank lines; Pair_list_F.txt's last line names a missing image
  (004/frontal/04.jpg). Data/Fiducials/ and Protocol/Split/ are present and not read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ferlib.data.layouts import Fixture, face, save_image, write_corrupt, write_text

SIZE = 48
SUBJECTS = ("001", "002", "003", "004")
FRONTAL = ("01", "02", "03")
PROFILE = ("01", "02")
NO_PROFILE = "003"
IMAGES = "cfp-dataset/Data/Images"
CORRUPT = f"{IMAGES}/002/profile/02.jpg"
UPPER_SUFFIX = {f"{IMAGES}/004/frontal/01.jpg": f"{IMAGES}/004/frontal/01.JPG"}
MISSING_LISTED = f"{IMAGES}/004/frontal/04.jpg"


def profile_of(frontal: np.ndarray) -> np.ndarray:
    """A stand-in for a profile view: the face mirrored and shifted a quarter of its width."""
    return np.roll(frontal[:, ::-1], frontal.shape[1] // 4, axis=1).copy()


def image_paths() -> list[str]:
    """The image paths (relative to root) the adapter must list, in manifest order."""
    paths = []
    for subject in SUBJECTS:
        paths += [f"{IMAGES}/{subject}/frontal/{n}.jpg" for n in FRONTAL]
        if subject != NO_PROFILE:
            paths += [f"{IMAGES}/{subject}/profile/{n}.jpg" for n in PROFILE]
    return [UPPER_SUFFIX.get(p, p) for p in paths]


def pair_list(view: str) -> str:
    """The pair list of `view` for the images written, in the owners' format (paths from Protocol/)."""
    lines, index = [], 1
    for subject in SUBJECTS:
        if view == "profile" and subject == NO_PROFILE:
            continue
        for n in FRONTAL if view == "frontal" else PROFILE:
            lines.append(f"{index} ../Data/Images/{subject}/{view}/{n}.jpg")
            index += 1
    if view == "frontal":
        lines.append(f"{index} ../{MISSING_LISTED.split('/', 1)[1]}")
    return "\n".join(lines) + "\n"


def build(root: Path) -> Fixture:
    """Write the miniature CFP under `root` and return what the adapter must find."""
    root = Path(root)
    images = root / IMAGES
    for identity, subject in enumerate(SUBJECTS, start=1):
        frontal = face(identity, "neutral", 0.0, SIZE)
        for n in FRONTAL:
            path = f"{IMAGES}/{subject}/frontal/{n}.jpg"
            save_image(np.roll(frontal, int(n), axis=0), root / UPPER_SUFFIX.get(path, path))
        write_text(root / "cfp-dataset" / "Data" / "Fiducials" / subject / "frontal" / "01.txt", "10 20\n30 40\n")
        if subject == NO_PROFILE:
            continue
        for n in PROFILE:
            path = f"{IMAGES}/{subject}/profile/{n}.jpg"
            if path == CORRUPT:
                write_corrupt(root / path)
            else:
                save_image(np.roll(profile_of(frontal), int(n), axis=0), root / path)
    save_image(face(1, "neutral", 0.0, SIZE), images / "001" / "frontal" / "02.png")
    write_text(images / "001" / "frontal" / ".DS_Store", "")
    write_text(images / "002" / "frontal" / "01.txt", "notes\n")
    save_image(face(2, "neutral", 0.0, SIZE), images / "002" / "frontal" / "03 (2).jpg")
    write_text(images / "004" / "profile" / "Thumbs.db", "")
    save_image(face(1, "neutral", 0.0, SIZE), images / "001 - Copy" / "frontal" / "01.jpg")
    write_text(images / "readme.txt", "CFP images\n")
    protocol = root / "cfp-dataset" / "Protocol"
    write_text(protocol / "Pair_list_F.txt", pair_list("frontal"), newline="\r\n")
    write_text(protocol / "Pair_list_P.txt", "\ufeff" + pair_list("profile") + "\n\n", newline="\r\n")
    write_text(protocol / "Split" / "FF" / "01" / "same.txt", "1,1\n2,2\n", newline="\r\n")
    expected = {
        "images": 18,
        "subjects": 4,
        "frontal": 12,
        "profile": 6,
        "paths": image_paths(),
        "corrupt": CORRUPT,
        "loaded": 17,
        "findings": [
            (f"{IMAGES}/001/frontal/02.png", "duplicate: cfp-dataset/Data/Images/001/frontal/02.jpg"),
            (f"{IMAGES}/001 - Copy", "ignored: folder name is not a person number"),
            (f"{IMAGES}/002/frontal/01.txt", "ignored: not an image"),
            (f"{IMAGES}/002/frontal/03 (2).jpg", "name does not parse"),
            (f"{IMAGES}/003", "incomplete subject: no profile/ folder; its frontal/ images are kept"),
            (f"{IMAGES}/readme.txt", "ignored: not part of the CFP layout"),
        ],
        "pair_list_findings": [
            (MISSING_LISTED, "missing: listed on line 13 of Protocol/Pair_list_F.txt"),
        ],
    }
    return Fixture("cfp", root, expected)
