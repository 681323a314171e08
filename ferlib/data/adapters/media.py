"""Read one image named by a manifest `path`, whatever holds it.

Most datasets store one image per file. Two do not, and their manifests name an image inside a
container with `#`:

- `Sessions/1766/S001-001.avi#12`: frame 12 (0-based, decode order) of a video (MMI);
- `fer2013.csv#17`: the 48x48 greyscale face in data row 17 (0-based, header excluded) of
  FER2013's CSV, whose `pixels` column holds 2,304 space-separated grey values (FERPlus).

`read_image(root, path)` returns (H, W, 3) RGB or (H, W, 1) greyscale uint8 and raises
`CorruptImage` naming the file when it cannot be decoded. The last video and CSV read are kept
in memory, so reading a sequence's frames one by one decodes its video once.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ferlib.data.adapters.base import VIDEO_SUFFIXES
from ferlib.errors import CorruptImage, FerlibError

MEMBER = "#"
FER_SIDE = 48


def split_member(path: str) -> tuple[str, int | None]:
    """"a/b.avi#12" -> ("a/b.avi", 12); "a/b.png" -> ("a/b.png", None)."""
    if MEMBER in path:
        container, _, index = path.rpartition(MEMBER)
        if index.isdigit():
            return container, int(index)
    return path, None


def as_uint8(array: np.ndarray) -> np.ndarray:
    return array[:, :, None] if array.ndim == 2 else array


def read_image(root, path: str) -> np.ndarray:
    """The image that the manifest path `path` (relative to `root`) names, as uint8 (H, W, C)."""
    container, index = split_member(path)
    file = Path(root) / container
    if not file.is_file():
        raise FerlibError(f"{file} (listed in the manifest as {path!r}) does not exist; check the dataset root")
    if index is None:
        return read_picture(file)
    if file.suffix.lower() == ".csv":
        return fer2013_face(file, index)
    if file.suffix.lower() in VIDEO_SUFFIXES:
        frames = video_frames(str(file))
        if index >= len(frames):
            raise CorruptImage(f"{file} has {len(frames)} frames; the manifest asks for frame {index}")
        return frames[index]
    raise FerlibError(f"{path!r}: '#{index}' names an image inside a file, but {file.suffix} is neither a video "
                      f"({', '.join(VIDEO_SUFFIXES)}) nor a FER2013 .csv")


def read_picture(file: Path) -> np.ndarray:
    try:
        with Image.open(file) as im:
            im.load()
            im = im.convert("L" if im.mode in ("L", "I;16", "I", "1") else "RGB")
            return as_uint8(np.array(im, dtype=np.uint8))
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise CorruptImage(f"cannot decode image {file} ({type(e).__name__}: {e}); re-extract it from the dataset "
                           "archive") from None


@lru_cache(maxsize=1)
def video_frames(file: str) -> tuple[np.ndarray, ...]:
    """Every frame of a video as RGB uint8 (decoded with PyAV; cached for the last video)."""
    import av
    try:
        with av.open(file) as container:
            return tuple(frame.to_ndarray(format="rgb24") for frame in container.decode(video=0))
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as e:
        raise CorruptImage(f"cannot decode video {file} ({type(e).__name__}: {e}); re-download this session") from None


def video_frame_count(file: Path) -> int:
    """How many frames `read_image` can return from this video (0 when it cannot be decoded)."""
    try:
        return len(video_frames(str(file)))
    except CorruptImage:
        return 0


@lru_cache(maxsize=1)
def fer2013_pixels(file: str) -> tuple[str, ...]:
    """The `pixels` column of FER2013's CSV, one string per data row (cached for the last file)."""
    import pandas as pd
    table = pd.read_csv(file, usecols=lambda c: c.strip().lower() == "pixels", dtype=str, keep_default_na=False)
    if table.shape[1] != 1:
        raise FerlibError(f"{file} has no 'pixels' column; FER2013's CSV has the columns emotion, pixels, Usage")
    return tuple(table.iloc[:, 0])


def fer2013_face(file: Path, row: int) -> np.ndarray:
    pixels = fer2013_pixels(str(file))
    if row >= len(pixels):
        raise CorruptImage(f"{file} has {len(pixels)} data rows; the manifest asks for row {row}")
    values = pixels[row].split()
    if len(values) != FER_SIDE * FER_SIDE or not all(v.isdigit() for v in values):
        raise CorruptImage(f"{file} data row {row}: 'pixels' should hold {FER_SIDE * FER_SIDE} grey values 0-255, "
                           f"found {len(values)} fields")
    return np.array(values, dtype=np.uint8).reshape(FER_SIDE, FER_SIDE, 1)
