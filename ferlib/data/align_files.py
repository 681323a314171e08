"""`python -m ferlib data align PATH --out DIR --protocol PAPER`: align loose image files.

For one image, or every image under a folder (recursively, in natural order), write
`<out>/<relative path>.png` (the face aligned to the paper's geometry) and `<same>.json` (box,
five landmarks, score, status), then `<out>/report.csv` listing every image that had no face,
several faces (the largest is used), or could not be decoded. No image stops the run.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tqdm.std import tqdm

from ferlib.data.adapters.base import IMAGE_SUFFIXES, has_suffix, is_ignorable, natural_key
from ferlib.data.adapters.media import read_picture
from ferlib.data.prepare import write_json, write_png
from ferlib.errors import CorruptImage, FerlibError
from ferlib.io import atomic_write


def image_files(path: Path) -> tuple[Path, list[Path]]:
    """(base folder, image files): the file itself, or every image under the folder."""
    if path.is_file():
        return path.parent, [path]
    if not path.is_dir():
        raise FerlibError(f"{path} does not exist; give an image file or a folder of images")
    files = sorted((p for p in path.rglob("*") if p.is_file() and has_suffix(p, IMAGE_SUFFIXES) and not is_ignorable(p)),
                   key=lambda p: natural_key(p.relative_to(path).as_posix()))
    if not files:
        raise FerlibError(f"{path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return path, files


def align_files(path, out, paper: str, detector=None, progress: bool = True) -> pd.DataFrame:
    """Align every image at `path` for `paper`; return the report (path, status, note)."""
    from ferlib.data import align
    geometry = align.geometry(paper)
    base, files = image_files(Path(path))
    out = Path(out)
    detector = detector or align.FaceDetector()
    rows = []
    for file in tqdm(files, desc="aligning faces", unit="img", disable=not progress):
        relative = file.relative_to(base).as_posix()
        target = out / f"{relative}.png"
        try:
            image = read_picture(file)
        except CorruptImage as e:
            rows.append({"path": relative, "status": "corrupt", "note": str(e)})
            continue
        result = align.align_face(image, geometry, detector)
        if result.image is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_png(result.image, target)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_json(result.sidecar(), out / f"{relative}.json")
        rows.append({"path": relative, "status": result.status, "note": result.note})
    table = pd.DataFrame(rows, columns=["path", "status", "note"])
    report = table[table["status"] != "ok"]
    atomic_write(out / "report.csv", lambda f: report.to_csv(f, index=False), text=True)
    if progress:
        counts = table["status"].value_counts()
        print(f"aligned {len(files)} image(s) for {paper} ({geometry.height}x{geometry.width}) into {out}: "
              f"{', '.join(f'{n} {s}' for s, n in counts.items())}; {len(report)} listed in {out / 'report.csv'}")
    return table
