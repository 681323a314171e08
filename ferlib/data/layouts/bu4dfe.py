"""A miniature BU-4DFE in the owners' layout, with the traps real copies hold.

    F001/Angry/000.jpg ...   (64 px SynthFER frames: neutral -> peak in the middle -> near neutral)
    F001/Angry/000.wrl       (a 3D mesh: official, not read)

11 subjects (F001-F006, M001-M005), 12 sequences, 106 frames; 9 or 10 frames per sequence, so
each has 3 apex frames (the middle third). Traps: a 6-frame sequence with only 2 apex frames
(F005 Surprise), a corrupt frame (F002 Disgust), an expression folder the dataset does not have
(M001 Contempt), a stray readme.txt at the root, OS clutter. 11 subjects let every 10- and
8-fold protocol apply.
"""

from __future__ import annotations

from pathlib import Path

from ferlib.data.layouts import Fixture, face, save_image, write_corrupt, write_text

SIZE = 64
LABELS = {"Angry": "anger", "Disgust": "disgust", "Fear": "fear", "Happy": "happiness", "Sad": "sadness",
          "Surprise": "surprise", "Contempt": "contempt"}

# (subject, expression folder, frames)
SEQUENCES = (
    ("F001", "Angry", 9),
    ("F001", "Happy", 9),
    ("F002", "Disgust", 9),       # frame 004.jpg is corrupt
    ("F003", "Fear", 9),
    ("F004", "Sad", 9),
    ("F005", "Surprise", 6),      # short: 2 apex frames
    ("F006", "Happy", 9),
    ("M001", "Angry", 9),
    ("M001", "Contempt", 3),      # not a BU-4DFE expression: skipped
    ("M002", "Disgust", 9),
    ("M003", "Fear", 10),
    ("M004", "Sad", 9),
    ("M005", "Surprise", 9),
)
CORRUPT = "F002/Disgust/004.jpg"


def subject_index(subject: str) -> int:
    """A distinct SynthFER identity per subject: F001 -> 1, M001 -> 101."""
    return int(subject[1:]) + (100 if subject[0] == "M" else 0)


def intensities(n: int) -> list[float]:
    """0 at the first frame, 1 over the middle third, falling back to 0.2 at the end."""
    start, stop = max(1, n // 3), max(max(1, n // 3) + 1, 2 * n // 3)
    rise = [i / start for i in range(start)]
    fall = [1 - 0.8 * (i + 1) / (n - stop) for i in range(n - stop)]
    return rise + [1.0] * (stop - start) + fall


def expected_facts() -> dict:
    """Written out by hand (not derived from SEQUENCES) so a slip in either shows."""
    return {
        "images": 106,
        "sequences": 12,
        "labelled_sequences": 12,
        "subjects": 11,
        "labels": {"anger": 2, "disgust": 2, "fear": 2, "happiness": 2, "sadness": 2, "surprise": 2},
        "frames": {"F001_Angry": 9, "F001_Happy": 9, "F002_Disgust": 9, "F003_Fear": 9, "F004_Sad": 9,
                   "F005_Surprise": 6, "F006_Happy": 9, "M001_Angry": 9, "M002_Disgust": 9, "M003_Fear": 10,
                   "M004_Sad": 9, "M005_Surprise": 9},
        "corrupt": CORRUPT,
        "findings": [
            ("F005/Surprise", "short sequence: 6 frames, 2 apex frames"),
            ("M001/Contempt", "unknown expression folder 'Contempt'"),
            ("readme.txt", "ignored: not part of the BU-4DFE layout"),
        ],
    }


def build(root: Path) -> Fixture:
    """Write the miniature BU-4DFE under `root` and return what the adapter must find there."""
    root = Path(root)
    for subject, folder, frames in SEQUENCES:
        for number, intensity in enumerate(intensities(frames)):
            image = face(subject_index(subject), LABELS[folder], intensity, SIZE)
            save_image(image, root / subject / folder / f"{number:03d}.jpg")
    write_corrupt(root / CORRUPT)
    write_text(root / "F001/Angry/000.wrl", "#VRML V2.0 utf8\n")
    write_text(root / "readme.txt", "BU-4DFE 2D texture frames\n")
    write_text(root / "F003/.DS_Store", "clutter")
    return Fixture("bu4dfe", root, expected_facts())
