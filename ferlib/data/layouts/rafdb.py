"""A miniature RAF-DB basic: 17 aligned images, the label file with its traps.

`basic/EmoLabel/list_patition_label.txt` is written with Windows line endings and holds a tab,
several spaces between fields, trailing spaces, blank lines (inside and at the end), an upper-case
name (`TRAIN_00004.JPG`), a line whose image is missing (train_00011), a label code outside 1-7
(train_00012: 9) and a line without a label (train_00014). In `basic/Image/aligned/`: an image no
line lists (train_00013), an upper-case suffix (`test_0002_aligned.JPG`), a corrupt image
(test_0005), an unrelated `readme.txt` (a finding) and a `.DS_Store` (silent). The
distribution's `basic/Image/original/` and `basic/Annotation/` are present and not read.
"""

from __future__ import annotations

from pathlib import Path

from ferlib.data.layouts import Fixture, face, save_image, write_corrupt, write_text

SIZE = 64
CODES = {1: "surprise", 2: "fear", 3: "disgust", 4: "happiness", 5: "sadness", 6: "anger", 7: "neutral"}
# label-file lines exactly as written (before the Windows line endings)
LINES = (
    "train_00001.jpg 5",
    "train_00002.jpg\t6   ",
    "train_00003.jpg  7",
    "TRAIN_00004.JPG 4",
    "",
    "train_00005.jpg 1",
    "train_00006.jpg 2",
    "train_00007.jpg 3",
    "train_00008.jpg 4",
    "train_00009.jpg 4 ",
    "train_00010.jpg 7",
    "train_00011.jpg 1",
    "train_00012.jpg 9",
    "train_00014.jpg",
    "test_0001.jpg 4",
    "test_0002.jpg 5",
    "test_0003.jpg 6",
    "test_0004.jpg 7",
    "test_0005.jpg 2",
    "",
    "",
)
MISSING_IMAGE = "train_00011"
UNLISTED_IMAGE = "train_00013"
CORRUPT = "basic/Image/aligned/test_0005_aligned.jpg"
UPPER_SUFFIX = {"test_0002": ".JPG"}


def image_labels() -> dict[str, str]:
    """{stem: the expression its face shows} for every image named in LINES, plus the unlisted one
    (an invalid or absent code shows a neutral face)."""
    shown = {}
    for line in LINES:
        fields = line.split()
        if fields:
            code = int(fields[1]) if len(fields) > 1 else 7
            shown[fields[0].split(".")[0].lower()] = CODES.get(code, "neutral")
    shown[UNLISTED_IMAGE] = "happiness"
    return shown


def build(root: Path) -> Fixture:
    """Write the miniature RAF-DB under `root` and return what the adapter must find."""
    root = Path(root)
    aligned = root / "basic" / "Image" / "aligned"
    write_text(root / "basic" / "EmoLabel" / "list_patition_label.txt", "\n".join(LINES), newline="\r\n")
    for identity, (stem, label) in enumerate(image_labels().items(), start=1):
        if stem == MISSING_IMAGE:
            continue
        path = aligned / f"{stem}_aligned{UPPER_SUFFIX.get(stem, '.jpg')}"
        if path.relative_to(root).as_posix() == CORRUPT:
            write_corrupt(path)
        else:
            save_image(face(identity, label, 1.0, SIZE), path)
    write_text(aligned / "readme.txt", "RAF-DB aligned faces\n")
    write_text(aligned / ".DS_Store", "")
    save_image(face(1, "sadness", 1.0, SIZE), root / "basic" / "Image" / "original" / "train_00001.jpg")
    write_text(root / "basic" / "Annotation" / "manual" / "train_00001_manu_attri.txt", "1 0 2\n")
    expected = {
        "images": 15,
        "train": 10,
        "test": 5,
        "labels": {"neutral": 3, "anger": 2, "disgust": 1, "fear": 2, "happiness": 4, "sadness": 2, "surprise": 1},
        "corrupt": CORRUPT,
        "findings": [
            ("basic/EmoLabel/list_patition_label.txt", "line 13: label '9' of train_00012.jpg"),
            ("basic/EmoLabel/list_patition_label.txt", "line 14: expected '<image name> <label 1-7>'"),
            ("basic/Image/aligned/readme.txt", "ignored: not part of the RAF-DB layout"),
            ("basic/Image/aligned/train_00011_aligned.jpg", "missing: listed on line 12"),
            ("basic/Image/aligned/train_00013_aligned.jpg", "no label"),
        ],
    }
    return Fixture("rafdb", root, expected)
