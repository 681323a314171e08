"""A miniature CK+ in the owners' layout, with the traps real copies hold.

    cohn-kanade-images/S005/001/S005_001_00000001.png ... (64 px greyscale SynthFER frames)
    Emotion/S005/001/S005_001_00000005_emotion.txt        ("   5.0000000e+00", named after the last frame)
    FACS/..., Landmarks/...                               (official folders the adapter skips silently)

12 subjects, 18 sequences (14 labelled, two of each of CK+'s seven classes), 74 frames. Traps:
unlabelled sequences (an empty Emotion folder, as in the archive, and no Emotion folder at all),
two contempt sequences, a 3-frame sequence, a subject with no labelled sequence (S050), a
corrupt frame, Emotion files with Windows line endings and with blank lines and extra spaces,
an Emotion file that is not a number, an Emotion file for a sequence without frames, a stray
notes.txt and README.txt, and OS clutter. 11 subjects have a labelled sequence, so every
10-fold protocol applies.
"""

from __future__ import annotations

from pathlib import Path

from ferlib.data.layouts import Fixture, save_image, sequence, write_corrupt, write_text

SIZE = 64
CODES = {"anger": 1, "contempt": 2, "disgust": 3, "fear": 4, "happiness": 5, "sadness": 6, "surprise": 7}

# (subject, sequence folder, label shown, frames, how its Emotion file is written)
# styles: plain, crlf (Windows line ends), spaces (blank lines, extra spaces), not_a_number,
# empty_folder (an Emotion folder with no file: unlabelled), none (no Emotion folder: unlabelled)
SEQUENCES = (
    ("S005", "001", "disgust", 5, "plain"),
    ("S005", "002", "happiness", 4, "empty_folder"),
    ("S010", "001", "contempt", 4, "plain"),
    ("S010", "002", "anger", 5, "crlf"),
    ("S011", "001", "fear", 4, "spaces"),
    ("S011", "002", "surprise", 3, "plain"),          # short: 3 frames
    ("S014", "001", "happiness", 5, "plain"),
    ("S022", "001", "sadness", 4, "plain"),
    ("S022", "002", "contempt", 4, "plain"),
    ("S026", "001", "surprise", 4, "plain"),          # frame 3 is corrupt
    ("S032", "001", "anger", 4, "plain"),
    ("S032", "002", "sadness", 4, "not_a_number"),
    ("S034", "001", "happiness", 4, "plain"),
    ("S037", "001", "disgust", 4, "plain"),
    ("S042", "001", "fear", 4, "plain"),              # holds a stray notes.txt
    ("S044", "001", "sadness", 4, "plain"),
    ("S050", "001", "anger", 4, "none"),              # S050: no labelled sequence
    ("S050", "002", "surprise", 4, "none"),
)
LABELLED_STYLES = ("plain", "crlf", "spaces")
CORRUPT = "cohn-kanade-images/S026/001/S026_001_00000003.png"


def frame_name(subject: str, seq: str, number: int) -> str:
    return f"{subject}_{seq}_{number:08d}"


def write_emotion(root: Path, subject: str, seq: str, label: str, frames: int, style: str) -> None:
    folder = root / "Emotion" / subject / seq
    file = folder / f"{frame_name(subject, seq, frames)}_emotion.txt"
    code = f"{CODES[label]:.7e}"
    if style == "plain":
        write_text(file, f"   {code}\n")
    elif style == "crlf":
        write_text(file, f"   {code}\n", newline="\r\n")
    elif style == "spaces":
        write_text(file, f"\n\n      {code}    \n\n\n")
    elif style == "not_a_number":
        write_text(file, "   n/a\n")
    elif style == "empty_folder":
        folder.mkdir(parents=True, exist_ok=True)


def expected_facts() -> dict:
    """The counts are written out by hand (not derived from SEQUENCES) so a slip in either shows."""
    labelled = [(s, q, lab) for s, q, lab, _n, style in SEQUENCES if style in LABELLED_STYLES]
    return {
        "images": 74,
        "sequences": 18,
        "labelled_sequences": 14,
        "subjects": 12,
        "subjects_with_labels": 11,
        "labels": {"anger": 2, "contempt": 2, "disgust": 2, "fear": 2, "happiness": 2, "sadness": 2, "surprise": 2},
        "sequence_labels": {f"{s}_{q}": lab for s, q, lab in labelled},
        "frames": {f"{s}_{q}": n for s, q, _lab, n, _style in SEQUENCES},
        "unlabelled_sequences": ["S005_002", "S032_002", "S050_001", "S050_002"],
        "corrupt": CORRUPT,
        "findings": [
            ("README.txt", "ignored: not part of the CK+ layout"),
            ("cohn-kanade-images/S005/002", "unlabelled sequence: no Emotion file"),
            ("cohn-kanade-images/S011/002", "short sequence: 3 frames"),
            ("Emotion/S032/002/S032_002_00000004_emotion.txt", "unlabelled sequence: Emotion file is not a number"),
            ("cohn-kanade-images/S042/001/notes.txt", "ignored: not part of the CK+ layout"),
            ("cohn-kanade-images/S050/001", "unlabelled sequence: no Emotion file"),
            ("cohn-kanade-images/S050/002", "unlabelled sequence: no Emotion file"),
            ("cohn-kanade-images/S050", "subject with no labelled sequence"),
            ("Emotion/S014/003/S014_003_00000009_emotion.txt", "Emotion file for a sequence with no frames"),
        ],
    }


def build(root: Path) -> Fixture:
    """Write the miniature CK+ under `root` and return what the adapter must find there."""
    root = Path(root)
    for subject, seq, label, frames, style in SEQUENCES:
        for number, image in enumerate(sequence(int(subject[1:]), label, frames, SIZE, greyscale=True), start=1):
            save_image(image, root / "cohn-kanade-images" / subject / seq / f"{frame_name(subject, seq, number)}.png")
        write_emotion(root, subject, seq, label, frames, style)
    write_corrupt(root / CORRUPT)
    # official folders the adapter does not read, a stray file at the root and in a sequence, OS clutter
    write_text(root / "FACS/S005/001/S005_001_00000005_facs.txt", "   1.0000000e+00   0.0000000e+00\n")
    write_text(root / "Landmarks/S005/001/S005_001_00000001_landmarks.txt", "   1.0e+02   2.0e+02\n")
    write_text(root / "README.txt", "CK+ copy received from the lab\n")
    write_text(root / "cohn-kanade-images/S042/001/notes.txt", "subject blinked at frame 2\n")
    write_text(root / "cohn-kanade-images/S005/.DS_Store", "clutter")
    write_text(root / "cohn-kanade-images/S010/001/Thumbs.db", "clutter")
    # an Emotion file whose sequence has no frames
    write_text(root / "Emotion/S014/003/S014_003_00000009_emotion.txt", "   7.0000000e+00\n")
    return Fixture("ckplus", root, expected_facts())
