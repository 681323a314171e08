"""CFP (Celebrities in Frontal-Profile; Sengupta et al., "Frontal to profile face verification in
the wild", WACV 2016) adapter: every person's frontal and profile images.

CFP is a face-pose dataset, not a facial-expression one: it has no expression labels, is not one
of the seven FER datasets (`ferlib.data.registry`) and its manifest is not the FER manifest. EAN
uses it to train its pose-invariant feature generator on frontal/profile images of one person.

Layout read (as the owners distribute it; folder and file names matched in any upper/lower case)::

    <data_root>/cfp-dataset/Data/Images/001/frontal/01.jpg ... 10.jpg   500 people 001-500
    <data_root>/cfp-dataset/Data/Images/001/profile/01.jpg ... 04.jpg   10 frontal, 4 profile each
    <data_root>/cfp-dataset/Protocol/Pair_list_F.txt, Pair_list_P.txt   "1 ../Data/Images/001/frontal/01.jpg"
    <data_root>/cfp-dataset/Data/Fiducials/..., Protocol/Split/...       landmarks, verification splits: not read

data_root may be the folder holding `cfp-dataset/` or `cfp-dataset/` itself; manifest paths are
relative to data_root as given, so `media.read_image(data_root, path)` reads them.

Manifest columns (strings, in this order; rows in natural order of subject, then view frontal
before profile, then image):

- path: the image relative to data_root, as found on disk (its own case, forward slashes);
- subject: the person's folder name as on disk ("001");
- view: "frontal" or "profile" (whatever the case of the folder on disk);
- image: the file's stem ("01").

Assumptions and findings (path relative to data_root, in the order found):

- A person folder without its frontal/ or profile/ folder is kept with the view it has
  ("incomplete subject"). A second view folder whose name differs only in case is skipped.
- In a view folder: a file that is not an image (`base.IMAGE_SUFFIXES`), or a sub-folder, is
  ignored; an image whose stem is not a number ("03 (2).jpg") does not parse and is skipped; two
  files with the same stem (`02.jpg` and `02.png`, `01.jpg` and `01.JPG`) are duplicates: the first
  in name order counts.
- In Data/Images: a file, or a folder whose name is not a number (`001 - Copy`), is ignored.
- Operating-system clutter (.DS_Store, Thumbs.db, hidden files) is skipped silently, and so are
  Data/Fiducials/, Protocol/ (see `check_pair_lists`) and anything else beside Data/Images.
- `scan` never decodes images; `load` does, and drops (with a finding) an image that fails to.

`check_pair_lists(root)` checks that every image the Protocol's pair lists name exists;
`load(root, size)` decodes and resizes every manifest image. CFP's images are already rough face
crops: `load` only resizes them (no detection or alignment).
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ferlib.data.adapters import media
from ferlib.data.adapters.base import (IMAGE_SUFFIXES, AdapterResult, Finding, entries, has_suffix, nested,
                                       natural_key, relative)
from ferlib.errors import CorruptImage, DatasetNotFound, FerlibError

NAME = "cfp"
DISPLAY_NAME = "CFP"
FOLDER = "cfp-dataset"
IMAGES = ("Data", "Images")
PROTOCOL = "Protocol"
PAIR_LISTS = ("Pair_list_F.txt", "Pair_list_P.txt")
VIEWS = ("frontal", "profile")
COLUMNS = ("path", "subject", "view", "image")
NUMBER = re.compile(r"\d+")
LAYOUT = """\
  <data_root>/                                   (or data_root = cfp-dataset/ itself)
    cfp-dataset/Data/Images/001/frontal/01.jpg ... 10.jpg   (500 people, 001 ... 500)
    cfp-dataset/Data/Images/001/profile/01.jpg ... 04.jpg
    cfp-dataset/Protocol/Pair_list_F.txt, Pair_list_P.txt   ("1 ../Data/Images/001/frontal/01.jpg")"""
REQUEST = ("download it from the owners' site, http://www.cfpw.io/, after agreeing to its licence, and "
           "extract the archive unchanged (it unpacks to cfp-dataset/)")
IGNORED = "ignored: not part of the CFP layout"


def layout_error(problem: str) -> DatasetNotFound:
    """A `DatasetNotFound` for CFP that says `problem`, shows the expected layout and where to get CFP.

    Not `base.layout_error`: that looks the dataset up in the FER registry, which CFP is not part of."""
    return DatasetNotFound(
        f"{DISPLAY_NAME} ({NAME}): {problem}.\n"
        f"The study expects the owners' layout:\n{LAYOUT}\n"
        f"To get {DISPLAY_NAME}: {REQUEST}.\n"
        f"CFP is a face-pose dataset (frontal and profile faces, no expression labels); only EAN's "
        f"invariant feature generator uses it.")


def images_dir(base: Path) -> Path | None:
    folder = nested(base, *IMAGES, dirs_only=True)
    return folder if folder is not None and folder.is_dir() else None


def dataset_dir(root) -> Path:
    """The `cfp-dataset/` folder that `root` names (root itself, or its `cfp-dataset/` child), or a
    layout error naming the folder checked and, where it can tell, where data_root should point."""
    root = Path(root)
    if not root.is_dir():
        raise layout_error(f"data_root {root} does not exist or is not a folder")
    inner = nested(root, FOLDER, dirs_only=True)
    if inner is not None and images_dir(inner) is not None:
        return inner
    if images_dir(root) is not None:
        return root
    raise layout_error(missing_images(root, inner))


def missing_images(root: Path, inner: Path | None) -> str:
    """Why neither root/cfp-dataset/Data/Images nor root/Data/Images is a folder."""
    wanted = "/".join(IMAGES)
    if inner is not None:
        return f"{inner / wanted} is missing: {inner} holds no {wanted}/ folder (extract the whole archive)"
    for depth, parent in enumerate(root.resolve().parents[:3], start=1):
        if images_dir(parent) is not None:
            level = "one level" if depth == 1 else f"{depth} levels"
            return (f"data_root {root} holds no {wanted}/ folder: it is inside {parent}, {level} too deep; "
                    f"point data_root at {parent}")
    for folder in entries(root):
        if folder.is_dir() and (images_dir(folder) is not None or nested(folder, FOLDER, dirs_only=True) is not None):
            return (f"neither {root / FOLDER / wanted} nor {root / wanted} exists, but CFP is one level down, "
                    f"in {folder}; point data_root at {folder}")
    return f"neither {root / FOLDER / wanted} nor {root / wanted} exists (checked data_root {root})"


def scan(root) -> AdapterResult:
    """CFP's manifest (path, subject, view, image) under `root` and its findings."""
    root = Path(root)
    images = images_dir(dataset_dir(root))
    findings: list[Finding] = []
    rows: list[dict] = []
    for subject_dir in entries(images):
        where = relative(subject_dir, root)
        if not subject_dir.is_dir():
            findings.append(Finding(where, f"{IGNORED} (Data/Images holds one folder per person, 001 ... 500)"))
        elif not NUMBER.fullmatch(subject_dir.name):
            findings.append(Finding(where, "ignored: folder name is not a person number (CFP's people are "
                                           "001 ... 500); skipped"))
        else:
            rows += subject_rows(subject_dir, root, findings)
    if not rows:
        raise layout_error(f"{images} holds no images (expected {'/'.join(IMAGES)}/001/frontal/01.jpg)")
    return AdapterResult(build_table(rows), findings)


def subject_rows(subject_dir: Path, root: Path, findings: list[Finding]) -> list[dict]:
    """The rows of one person's folder; unexpected entries and a missing view become findings."""
    views: dict[str, Path] = {}
    for folder in entries(subject_dir):
        where, view = relative(folder, root), folder.name.lower()
        if not folder.is_dir() or view not in VIEWS:
            findings.append(Finding(where, f"{IGNORED} (a person's folder holds frontal/ and profile/)"))
        elif view in views:
            findings.append(Finding(where, f"a second {view} folder for {subject_dir.name} (names differ only in "
                                           f"case; {relative(views[view], root)} is read); skipped"))
        else:
            views[view] = folder
    missing = [f"{v}/" for v in VIEWS if v not in views]
    if missing:
        kept = f"its {next(iter(views))}/ images are kept" if views else "nothing to keep"
        findings.append(Finding(relative(subject_dir, root), f"incomplete subject: no {' or '.join(missing)} folder; "
                                                             f"{kept}"))
    rows = []
    for view in VIEWS:
        if view in views:
            rows += view_rows(views[view], root, subject_dir.name, view, findings)
    return rows


def view_rows(folder: Path, root: Path, subject: str, view: str, findings: list[Finding]) -> list[dict]:
    rows: list[dict] = []
    seen: dict[str, str] = {}
    for file in entries(folder):
        where = relative(file, root)
        if file.is_dir() or not has_suffix(file, IMAGE_SUFFIXES):
            findings.append(Finding(where, f"ignored: not an image ({', '.join(IMAGE_SUFFIXES)})"))
        elif not NUMBER.fullmatch(file.stem):
            findings.append(Finding(where, f"name does not parse: CFP's images are numbered (01.jpg, 02.jpg, ...); "
                                           f"skipped"))
        elif file.stem in seen:
            findings.append(Finding(where, f"duplicate: {seen[file.stem]} is the same image name; skipped"))
        else:
            seen[file.stem] = where
            rows.append({"path": where, "subject": subject, "view": view, "image": file.stem})
    return rows


def build_table(rows: list[dict]) -> pd.DataFrame:
    """The rows as CFP's manifest: string columns, natural order of subject, view, image."""
    rows = sorted(rows, key=lambda r: (natural_key(r["subject"]), VIEWS.index(r["view"]), natural_key(r["image"])))
    return pd.DataFrame(rows, columns=list(COLUMNS)).astype(str).reset_index(drop=True)


def load(root, size: int, greyscale: bool = False) -> tuple[np.ndarray, pd.DataFrame, list[Finding]]:
    """Every CFP image under `root`, decoded and resized, with the manifest of the images kept.

    Returns (images, manifest, findings): `images` is uint8 (N, size, size, C), C = 1 when
    `greyscale` else 3, row i the image of manifest row i. Each image is read with
    `media.read_image`, converted to grey or RGB and resized to size x size with PIL's bilinear
    filter (CFP's images are already rough face crops: no detection or alignment; a non-square
    image is stretched). An image that cannot be decoded is dropped from the manifest and
    reported: `findings` are `scan`'s findings followed by one per dropped image. When no image
    can be decoded, `CorruptImage` says so (naming the first failure).
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise FerlibError(f"CFP image size {size!r}: give the side in pixels, a positive int")
    root = Path(root)
    result = scan(root)
    findings = list(result.findings)
    mode = "L" if greyscale else "RGB"
    arrays, kept, problems = [], [], []
    for index, path in enumerate(result.manifest["path"]):
        try:
            picture = media.read_image(root, path)
        except CorruptImage as e:
            problems.append(str(e))
            findings.append(Finding(path, f"corrupt: {e}; dropped from the manifest"))
            continue
        image = Image.fromarray(picture[:, :, 0] if picture.shape[-1] == 1 else picture)
        array = np.asarray(image.convert(mode).resize((int(size), int(size)), Image.Resampling.BILINEAR), dtype=np.uint8)
        arrays.append(array[:, :, None] if array.ndim == 2 else array)
        kept.append(index)
    if not arrays:
        raise CorruptImage(f"none of the {len(result.manifest)} CFP images under {root} could be decoded "
                           f"(first: {problems[0]}); re-extract the archive")
    manifest = result.manifest.iloc[kept].reset_index(drop=True)
    return np.stack(arrays), manifest, findings


def pair_list_lines(file: Path) -> list[str]:
    """A pair list's lines as an editor numbers them (BOM dropped; \\r\\n, \\r and \\n all end a line)."""
    return file.read_bytes().decode("utf-8-sig", errors="replace").replace("\r\n", "\n").replace("\r", "\n").split("\n")


def check_pair_lists(root) -> list[Finding]:
    """Findings for Protocol/Pair_list_F.txt and Pair_list_P.txt: every listed image that is missing
    (path: the image expected), a line that is not `<index> <image path>`, a list that is missing.
    A missing Protocol folder is one finding (the lists are not required to read the images).
    Listed paths are relative to Protocol/ ("../Data/Images/001/frontal/01.jpg") and are matched in
    any case; blank lines, a BOM and Windows or old-Mac line endings do not matter."""
    root = Path(root)
    base = dataset_dir(root)
    protocol = nested(base, PROTOCOL, dirs_only=True)
    if protocol is None or not protocol.is_dir():
        return [Finding(relative(base / PROTOCOL, root), f"missing: no {PROTOCOL} folder ({', '.join(PAIR_LISTS)}); "
                                                         "the pair lists were not checked")]
    findings: list[Finding] = []
    for name in PAIR_LISTS:
        file = nested(protocol, name)
        if file is None or not file.is_file():
            findings.append(Finding(relative(protocol / name, root), "missing: this pair list is not in "
                                                                     f"{relative(protocol, root)}; not checked"))
            continue
        shown = relative(file, root)
        for number, line in enumerate(pair_list_lines(file), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or not fields[0].isdigit():
                findings.append(Finding(shown, f"line {number}: expected '<index> <image path>' (e.g. "
                                               f"'1 ../Data/Images/001/frontal/01.jpg'), found {line.strip()!r}"))
                continue
            listed = posixpath.normpath(posixpath.join(PROTOCOL, fields[1].replace("\\", "/")))
            if listed == ".." or listed.startswith("../") or posixpath.isabs(listed):
                findings.append(Finding(shown, f"line {number}: {fields[1]!r} points outside {FOLDER}/"))
                continue
            image = nested(base, *listed.split("/"))
            if image is None or not image.is_file():
                findings.append(Finding(relative(base / listed, root),
                                        f"missing: listed on line {number} of {relative(file, base)} but there is "
                                        "no such image"))
    return findings
