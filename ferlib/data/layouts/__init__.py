"""Miniature copies of the real datasets' official layouts, filled with SynthFER faces.

The real datasets are licence-gated, so the adapters are tested on small trees that copy each
owner's layout exactly: folder depth, file names, label-file formats, and the traps real copies
contain (unlabelled sequences, contempt, short sequences, a subject with no labelled sequence,
a corrupt image, Windows line endings, stray files). They also let a user try the whole
pipeline (`python -m ferlib data prepare ...`) before their licence arrives.

Each dataset has a module here with `build(root) -> Fixture`; `Fixture.expected` holds the
exact facts the adapter must find (asserted in tests/test_adapters_*.py). `build_layout(name,
root)` dispatches by dataset name.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ferlib.data import synth
from ferlib.errors import UnknownName

LAYOUT_DATASETS = ("ckplus", "mmi", "oulu", "bu3dfe", "bu4dfe", "rafdb", "ferplus")
FIXTURE_SEED = 11


@dataclass(frozen=True)
class Fixture:
    """A layout written under `root`, and what an adapter must find in it."""

    dataset: str
    root: Path
    expected: dict[str, Any] = field(default_factory=dict)


def face(subject: int, label: str, intensity: float, size: int = 96, greyscale: bool = False,
         seed: int = FIXTURE_SEED) -> np.ndarray:
    """SynthFER subject `subject` showing `label` at `intensity` (0 = neutral face, 1 = apex)."""
    identity = synth.make_identity(seed, subject)
    aus = synth.expression_aus(identity, label, intensity) if label != "neutral" else np.zeros(len(synth.AUS))
    return synth.render_face(identity, aus, size=size, greyscale=greyscale, one_sided_12=label == "contempt")


def sequence(subject: int, label: str, frames: int, size: int = 96, greyscale: bool = False) -> list[np.ndarray]:
    """A neutral-to-apex sequence of `frames` faces (intensity rising linearly from 0 to 1)."""
    return [face(subject, label, i / max(frames - 1, 1), size, greyscale) for i in range(frames)]


def save_image(array: np.ndarray, path: Path) -> Path:
    """Write an (H, W, C) uint8 array in the format its suffix names (.png, .jpg/.jpeg, .bmp)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array[:, :, 0] if array.shape[-1] == 1 else array)
    image.save(path, quality=95) if path.suffix.lower() in (".jpg", ".jpeg") else image.save(path)
    return path


def write_text(path: Path, text: str, newline: str = "\n") -> Path:
    """Write `text` with the given line ending ("\\r\\n" to copy files edited on Windows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", newline).encode())
    return path


def write_corrupt(path: Path) -> Path:
    """A file with an image's name whose bytes are not an image (a truncated download)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return path


def build_layout(dataset: str, root) -> Fixture:
    """Write the miniature `dataset` layout under `root` (created) and return what it holds."""
    if dataset not in LAYOUT_DATASETS:
        raise UnknownName("layout dataset", dataset, LAYOUT_DATASETS)
    module = importlib.import_module(f"ferlib.data.layouts.{dataset}")
    return module.build(Path(root))
