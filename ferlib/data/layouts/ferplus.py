"""A miniature FERPlus: 21 rows of FER2013 (fer2013/fer2013.csv, as Kaggle's archive unpacks) and
the matching FERPlus votes (fer2013new.csv, with Windows line endings).

Every vote row holds 10 taggers' votes (neutral, happiness, surprise, sadness, anger, disgust,
fear, contempt, unknown, NF). The traps: a tie (row 8) and all-single votes (row 20), both no
majority; a row where removing single votes as outliers turns "no majority" into neutral (row
9: 5 of 10 raw votes, 5 of 7 after removal); a majority for unknown (row 10) and for NF (row
11); an empty Image name (row 12); a row whose pixels are one value short (row 13, kept by the
adapter, CorruptImage when decoded); stray spaces and lower-case Usage in fer2013new.csv; and the
Kaggle archive's README and .bib beside fer2013.csv (not read).
"""

from __future__ import annotations

from pathlib import Path

from ferlib.data.layouts import Fixture, face, write_text

SIDE = 48
FER2013_CODES = {"anger": 0, "disgust": 1, "fear": 2, "happiness": 3, "sadness": 4, "surprise": 5, "neutral": 6,
                 "contempt": 6}
# Usage, Image name, votes (neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF),
# the face the row shows
ROWS = (
    ("Training", "fer0000000.png", (10, 0, 0, 0, 0, 0, 0, 0, 0, 0), "neutral"),
    ("Training", "fer0000001.png", (0, 8, 2, 0, 0, 0, 0, 0, 0, 0), "happiness"),
    ("Training", "fer0000002.png", (0, 0, 7, 0, 0, 0, 3, 0, 0, 0), "surprise"),
    ("Training", "fer0000003.png", (0, 0, 0, 6, 2, 0, 0, 0, 2, 0), "sadness"),
    ("Training", "fer0000004.png", (1, 0, 0, 0, 6, 3, 0, 0, 0, 0), "anger"),
    ("Training", "fer0000005.png", (0, 0, 0, 0, 2, 7, 0, 0, 1, 0), "disgust"),
    ("Training", "fer0000006.png", (0, 0, 3, 0, 0, 0, 7, 0, 0, 0), "fear"),
    ("Training", "fer0000007.png", (3, 0, 0, 0, 0, 0, 0, 6, 1, 0), "contempt"),
    ("Training", "fer0000008.png", (4, 4, 2, 0, 0, 0, 0, 0, 0, 0), "happiness"),   # tie: no majority
    ("Training", "fer0000009.png", (5, 2, 1, 1, 1, 0, 0, 0, 0, 0), "neutral"),     # outlier rule: neutral
    ("Training", "fer0000010.png", (2, 0, 0, 0, 0, 0, 0, 0, 7, 1), "neutral"),     # unknown wins
    ("Training", "fer0000011.png", (0, 0, 0, 0, 0, 0, 0, 0, 0, 10), "neutral"),    # NF wins
    ("Training", "", (0, 0, 0, 0, 0, 0, 0, 0, 0, 10), "neutral"),                  # empty Image name
    ("Training", "fer0000013.png", (0, 10, 0, 0, 0, 0, 0, 0, 0, 0), "happiness"),  # pixels one short
    ("PublicTest", "fer0000014.png", (1, 9, 0, 0, 0, 0, 0, 0, 0, 0), "happiness"),
    ("PublicTest", "fer0000015.png", (2, 0, 0, 8, 0, 0, 0, 0, 0, 0), "sadness"),
    ("PublicTest", "fer0000016.png", (8, 0, 0, 2, 0, 0, 0, 0, 0, 0), "neutral"),
    ("PrivateTest", "fer0000017.png", (0, 0, 10, 0, 0, 0, 0, 0, 0, 0), "surprise"),
    ("PrivateTest", "fer0000018.png", (0, 0, 0, 0, 9, 1, 0, 0, 0, 0), "anger"),
    ("PrivateTest", "fer0000019.png", (3, 7, 0, 0, 0, 0, 0, 0, 0, 0), "happiness"),
    ("PrivateTest", "fer0000020.png", (1, 1, 1, 1, 1, 1, 1, 1, 1, 1), "neutral"),  # all single votes
)
SHORT_PIXELS_ROW = 13
VOTE_HEADER = "neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"


def pixels(row: int, label: str) -> str:
    values = face(row + 1, label, 1.0, SIDE, greyscale=True).reshape(-1)
    if row == SHORT_PIXELS_ROW:
        values = values[:-1]
    return " ".join(map(str, values))


def ferplus_line(row: int, usage: str, name: str, votes: tuple[int, ...]) -> str:
    """One fer2013new.csv line; some rows get stray spaces or a lower-case Usage (tolerance)."""
    cells = [usage.lower() if row == 3 else usage, f"{name} " if row == 1 else name] + [str(v) for v in votes]
    if row == 2:
        cells[2] = f" {cells[2]}"
    return ",".join(cells)


def build(root: Path) -> Fixture:
    """Write the miniature FERPlus under `root` and return what the adapter must find."""
    root = Path(root)
    fer_lines = ["emotion,pixels,Usage"]
    for row, (usage, _, _, label) in enumerate(ROWS):
        fer_lines.append(f"{FER2013_CODES[label]},{pixels(row, label)},{usage}")
    write_text(root / "fer2013" / "fer2013.csv", "\n".join(fer_lines) + "\n")
    write_text(root / "fer2013" / "README", "FER2013 from the Kaggle challenge\n")
    write_text(root / "fer2013" / "fer2013.bib", "@inproceedings{fer2013}\n")
    new_lines = [f"Usage,Image name,{VOTE_HEADER}"]
    new_lines += [ferplus_line(row, usage, name, votes) for row, (usage, name, votes, _) in enumerate(ROWS)]
    write_text(root / "fer2013new.csv", "\n".join(new_lines) + "\n", newline="\r\n")
    write_text(root / "notes.txt", "my FERPlus copy\n")
    expected = {
        "rows": 21,
        "images": 16,
        "train": 10,
        "val": 3,
        "test": 3,
        "labels": {"neutral": 3, "anger": 2, "contempt": 1, "disgust": 1, "fear": 1, "happiness": 4, "sadness": 2,
                   "surprise": 2},
        "kept_rows": [0, 1, 2, 3, 4, 5, 6, 7, 9, 13, 14, 15, 16, 17, 18, 19],
        "outlier_row": 9,
        "corrupt": "fer2013/fer2013.csv#13",
        "findings": [
            ("fer2013new.csv", "dropped 1 row: empty Image name", [12]),
            ("fer2013new.csv", "dropped 2 rows: no majority", [8, 20]),
            ("fer2013new.csv", "dropped 1 row: majority vote for unknown", [10]),
            ("fer2013new.csv", "dropped 1 row: majority vote for NF", [11]),
        ],
    }
    return Fixture("ferplus", root, expected)
