"""Files that are never half-written: write to a temp file beside the target, then rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Callable


def atomic_write(path, write: Callable[[IO], object], text: bool = False) -> Path:
    """Call `write(file)` on a temp file in `path`'s folder, then rename it onto `path`.

    A crash or an exception while writing leaves the old `path` untouched and no temp file.
    `text=True` opens the temp file in text mode (newline="" so CSV writers control line ends).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with (os.fdopen(fd, "w", newline="") if text else os.fdopen(fd, "wb")) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
