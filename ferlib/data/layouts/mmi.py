"""A miniature MMI in the layout the MMI site delivers, with the traps real copies hold.

    Sessions/1/S001-001.avi     (a 9-frame MPEG-4 video of 96 px SynthFER faces: neutral -> apex -> near neutral)
    Sessions/1/session.xml      (<session view="0"><subject id="1"/><metatag name="Emotion" value="1"/></session>)

16 sessions; 14 give sequences (12 labelled, two of each basic expression), 122 frames, 12
subjects. Traps: a session delivered as frame images named without zero padding (12: "_1" ..
"_10"), the emotion in the annotation XML instead of session.xml (2), a profile-view session
(231: skipped), a session with no emotion metatag (1766), one with Windows line endings and
upper-case tag and attribute names (101), a view written "Frontal" (5), no view attribute (1801:
frontal), no subject element (1804: the subject comes from the file name), a 3-frame recording
(1805), an unknown emotion code (1806), a corrupt video (1800: skipped), a stray notes.txt, OS
clutter. 11 subjects have a labelled frontal sequence, so every 10-fold protocol applies.

The MMI XML schema could not be checked here: the XML written is what the adapter assumes
(see ferlib/data/adapters/mmi.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ferlib.data.layouts import Fixture, face, save_image, write_text

SIZE = 96
FPS = 25
CODES = {"anger": 1, "disgust": 2, "fear": 3, "happiness": 4, "sadness": 5, "surprise": 6}


def session_xml(session: str, subject: str | None, code: str | None, view: str | None = "0") -> str:
    """session.xml as the adapter reads it: subject, view (session and track), emotion metatag."""
    view_attr = f' view="{view}"' if view is not None else ""
    lines = ['<?xml version="1.0" encoding="utf-8"?>', f'<session sessionId="{session}"{view_attr}>']
    if subject is not None:
        lines.append(f'  <subject id="{subject}" />')
    lines.append(f'  <track id="0" type="video"{view_attr} />')
    if code is not None:
        lines.append(f'  <metatag name="Emotion" value="{code}" />')
    lines.append("</session>")
    return "\n".join(lines) + "\n"


# session 101: tag and attribute names in upper case, written with Windows line endings
UPPER_CASE_XML = ('<?xml version="1.0" encoding="utf-8"?>\n<SESSION SESSIONID="101" VIEW="0">\n  <SUBJECT ID="5" />\n'
                  '  <TRACK ID="0" TYPE="video" VIEW="0" />\n  <METATAG NAME="EMOTION" VALUE=" 5 " />\n</SESSION>\n')

# (session folder, subject number, recording file stem, expression shown, frames, session.xml text, media)
# media: "avi" (a video), "frames" (frame images), "corrupt" (a video that does not decode)
SESSIONS = (
    ("1", 1, "S001-001", "anger", 9, session_xml("1", "1", "1"), "avi"),
    ("2", 1, "S001-002", "happiness", 9, session_xml("2", "1", None), "avi"),          # emotion in S001-002.xml
    ("5", 2, "S002-001", "disgust", 9, session_xml("5", "2", "2", view="Frontal"), "avi"),
    ("12", 3, "S003-001", "fear", 10, session_xml("12", "3", "3"), "frames"),
    ("101", 5, "S005-001", "sadness", 9, UPPER_CASE_XML, "avi"),                               # CRLF too
    ("230", 6, "S006-001", "surprise", 10, session_xml("230", "6", "6"), "avi"),
    ("231", 6, "S006-002", "happiness", 9, session_xml("231", "6", "4", view="1"), "avi"),     # profile: skipped
    ("1766", 7, "S007-001", "fear", 9, session_xml("1766", "7", None), "avi"),               # no emotion
    ("1767", 7, "S007-002", "disgust", 9, session_xml("1767", "7", "2"), "avi"),
    ("1800", 8, "S008-001", "anger", 9, session_xml("1800", "8", "1"), "corrupt"),
    ("1801", 9, "S009-001", "fear", 9, session_xml("1801", "9", "3", view=None), "avi"),     # no view: frontal
    ("1802", 10, "S010-001", "sadness", 9, session_xml("1802", "10", "5"), "avi"),
    ("1803", 11, "S011-001", "surprise", 9, session_xml("1803", "11", "6"), "avi"),
    ("1804", 12, "S012-001", "anger", 9, session_xml("1804", None, "1"), "avi"),             # subject from file name
    ("1805", 4, "S004-001", "happiness", 3, session_xml("1805", "4", "4"), "avi"),           # short: 3 frames
    ("1806", 13, "S013-001", "sadness", 9, session_xml("1806", "13", "9"), "avi"),           # unknown code 9
)
CRLF_SESSION = "101"
ANNOTATION = ("2", "S001-002.xml", '<?xml version="1.0"?>\n<annotation>\n  <metatag name="emotion" value="4"/>\n'
                                    '</annotation>\n')


def peak_intensities(n: int) -> list[float]:
    """0 at frame 0, 1 at frame n // 2 (the apex), falling back towards 0.2 at the end."""
    if n == 1:
        return [1.0]
    apex = n // 2
    return [i / apex if i <= apex else 1 - 0.8 * (i - apex) / max(1, n - 1 - apex) for i in range(n)]


def write_video(frames: list[np.ndarray], path: Path) -> Path:
    """An MPEG-4 .avi holding `frames` (RGB uint8, even sides), decodable by PyAV frame for frame."""
    import av
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def expected_facts() -> dict:
    """Written out by hand (not derived from SESSIONS) so a slip in either shows."""
    return {
        "images": 122,
        "sequences": 14,
        "labelled_sequences": 12,
        "subjects": 12,
        "labels": {"anger": 2, "disgust": 2, "fear": 2, "happiness": 2, "sadness": 2, "surprise": 2},
        "sequence_labels": {"S001_1": "anger", "S001_2": "happiness", "S002_5": "disgust", "S003_12": "fear",
                            "S005_101": "sadness", "S006_230": "surprise", "S007_1767": "disgust", "S009_1801": "fear",
                            "S010_1802": "sadness", "S011_1803": "surprise", "S012_1804": "anger",
                            "S004_1805": "happiness"},
        "unlabelled_sequences": ["S007_1766", "S013_1806"],
        "frames": {"S001_1": 9, "S001_2": 9, "S002_5": 9, "S003_12": 10, "S005_101": 9, "S006_230": 10,
                   "S007_1766": 9, "S007_1767": 9, "S009_1801": 9, "S010_1802": 9, "S011_1803": 9, "S012_1804": 9,
                   "S004_1805": 3, "S013_1806": 9},
        "skipped_sessions": ["231", "1800"],
        "frame_images_session": "12",
        "findings": [
            ("Sessions/231", "not frontal: view '1'"),
            ("Sessions/1766", "unlabelled sequence: no emotion metatag"),
            ("Sessions/1767/notes.txt", "ignored: not part of the MMI layout"),
            ("Sessions/1800/S008-001.avi", "cannot decode the video (0 frames)"),
            ("Sessions/1805", "short sequence: 3 frames"),
            ("Sessions/1806/session.xml", "unlabelled sequence: unknown emotion code '9'"),
        ],
    }


def build(root: Path) -> Fixture:
    """Write the miniature MMI under `root` and return what the adapter must find there."""
    root = Path(root)
    for session, subject, stem, label, frames, xml, kind in SESSIONS:
        folder = root / "Sessions" / session
        images = [face(subject, label, v, SIZE) for v in peak_intensities(frames)]
        if kind == "avi":
            write_video(images, folder / f"{stem}.avi")
        elif kind == "frames":
            for number, image in enumerate(images, start=1):
                save_image(image, folder / f"{stem}_{number}.jpg")
        else:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{stem}.avi").write_bytes(b"RIFF\x00\x10\x00\x00AVI LIST truncated download")
        write_text(folder / "session.xml", xml, newline="\r\n" if session == CRLF_SESSION else "\n")
    session, name, text = ANNOTATION
    write_text(root / "Sessions" / session / name, text)
    write_text(root / "Sessions/1767/notes.txt", "subject laughed at the end\n")
    write_text(root / "Sessions/.DS_Store", "clutter")
    return Fixture("mmi", root, expected_facts())
