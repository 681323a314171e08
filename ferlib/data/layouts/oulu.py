"""A miniature Oulu-CASIA NIR&VIS in the owners' layout, with the traps real copies hold.

    OriginalImg/VL/Strong/P001/Anger/000.jpeg ...   (64 px SynthFER frames, neutral -> apex)
    OriginalImg/NI/..., OriginalImg/VL/Dark/..., OriginalImg/VL/Weak/...   (official, not read)

11 subjects (P001-P011), 13 sequences, 52 frames. Traps: a 3-frame sequence (P004 Surprise), a
corrupt frame (P002 Fear), an expression folder the dataset does not have (P005 Contempt), an
expression folder in lower case (P006 happiness, as some copies have), a stray notes.txt (P002),
OS clutter. 11 subjects let every 10- and 8-fold protocol apply.
"""

from __future__ import annotations

from pathlib import Path

from ferlib.data.layouts import Fixture, save_image, sequence, write_corrupt, write_text

SIZE = 64
STRONG = "OriginalImg/VL/Strong"
LABELS = {"Anger": "anger", "Disgust": "disgust", "Fear": "fear", "Happiness": "happiness", "Sadness": "sadness",
          "Surprise": "surprise", "Contempt": "contempt"}

# (subject, expression folder as written on disk, frames)
SEQUENCES = (
    ("P001", "Anger", 4),
    ("P001", "Happiness", 4),
    ("P002", "Disgust", 4),
    ("P002", "Fear", 4),          # frame 001.jpeg is corrupt
    ("P003", "Sadness", 4),
    ("P004", "Surprise", 3),      # short: 3 frames
    ("P005", "Anger", 4),
    ("P005", "Contempt", 2),      # not an Oulu-CASIA expression: skipped
    ("P006", "happiness", 4),     # lower-case folder name
    ("P007", "Disgust", 4),
    ("P008", "Fear", 4),
    ("P009", "Sadness", 4),
    ("P010", "Surprise", 5),
    ("P011", "Anger", 4),
)
CORRUPT = f"{STRONG}/P002/Fear/001.jpeg"


def expected_facts() -> dict:
    """Written out by hand (not derived from SEQUENCES) so a slip in either shows."""
    return {
        "images": 52,
        "sequences": 13,
        "labelled_sequences": 13,
        "subjects": 11,
        "labels": {"anger": 3, "disgust": 2, "fear": 2, "happiness": 2, "sadness": 2, "surprise": 2},
        "frames": {"P001_Anger": 4, "P001_Happiness": 4, "P002_Disgust": 4, "P002_Fear": 4, "P003_Sadness": 4,
                   "P004_Surprise": 3, "P005_Anger": 4, "P006_Happiness": 4, "P007_Disgust": 4, "P008_Fear": 4,
                   "P009_Sadness": 4, "P010_Surprise": 5, "P011_Anger": 4},
        "corrupt": CORRUPT,
        "findings": [
            (f"{STRONG}/P002/notes.txt", "ignored: not part of the Oulu-CASIA layout"),
            (f"{STRONG}/P004/Surprise", "short sequence: 3 frames"),
            (f"{STRONG}/P005/Contempt", "unknown expression folder 'Contempt'"),
        ],
    }


def build(root: Path) -> Fixture:
    """Write the miniature Oulu-CASIA under `root` and return what the adapter must find there."""
    root = Path(root)
    for subject, folder, frames in SEQUENCES:
        for number, image in enumerate(sequence(int(subject[1:]), LABELS[folder.capitalize()], frames, SIZE)):
            save_image(image, root / STRONG / subject / folder / f"{number:03d}.jpeg")
    write_corrupt(root / CORRUPT)
    # the parts of the archive the papers do not use (one frame each keeps the fixture small)
    for other in ("OriginalImg/NI/Strong", "OriginalImg/VL/Dark", "OriginalImg/VL/Weak"):
        save_image(sequence(1, "anger", 1, SIZE)[0], root / other / "P001/Anger/000.jpeg")
    write_text(root / STRONG / "P002/notes.txt", "P002 wore glasses\n")
    write_text(root / STRONG / "P003/Sadness/Thumbs.db", "clutter")
    write_text(root / "OriginalImg/.DS_Store", "clutter")
    return Fixture("oulu", root, expected_facts())
