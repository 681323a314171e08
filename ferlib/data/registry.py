"""Dataset names and `load_dataset`: SynthFER in memory, or a real dataset from its root.

Real datasets: ckplus, mmi, oulu, bu3dfe, bu4dfe, rafdb, ferplus (described, with the owners'
layout and where to request them, in `data_manifests/datasets/<name>.yaml`). SynthFER presets
are `synth-<preset>` and need no data. A real name without a usable `data_root` stops with a
`DatasetNotFound` that says what the study expects and where to get it; with one, the dataset
is read by its adapter (`ferlib.data.adapters`), aligned for the paper and cached
(`ferlib.data.prepare`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ferlib.errors import DatasetNotFound, FerlibError, UnknownName

MANIFESTS_DIR = Path(__file__).resolve().parents[2] / "data_manifests"
REAL_DATASETS = ("ckplus", "mmi", "oulu", "bu3dfe", "bu4dfe", "rafdb", "ferplus")
SYNTH_PREFIX = "synth-"


@dataclass(frozen=True)
class DatasetInfo:
    """What the study knows about one real dataset (from its YAML)."""

    name: str
    display_name: str
    kind: str                       # "sequences" or "images"
    owner: str
    request: str                    # how and where to request it
    layout: str                     # the owners' layout as a short tree
    label_map: dict[Any, str]       # the owners' label code -> canonical name
    classes: tuple[str, ...]
    facts: dict[str, Any]
    notes: str


@dataclass(frozen=True)
class LoadedDataset:
    """Images (N,H,W,C) uint8 with their manifest, row i = image i. `synth`: for SynthFER rendered at a
    square size, the rendering itself (its per-image factors draw ground truth: `synth.transfer_truth`)."""

    images: np.ndarray
    manifest: pd.DataFrame
    classes: tuple[str, ...]
    source: str                     # which data this is, in words
    synth: Any = field(default=None, repr=False, compare=False)


def read_dataset_info(path: Path) -> DatasetInfo:
    raw = yaml.safe_load(path.read_text())
    return DatasetInfo(
        name=raw["name"], display_name=raw["display_name"], kind=raw["kind"], owner=raw["owner"],
        request=" ".join(raw["request"].split()), layout=raw["layout"].rstrip(),
        label_map=dict(raw["label_map"]), classes=tuple(raw["classes"]), facts=dict(raw.get("facts") or {}),
        notes=" ".join(str(raw.get("notes", "")).split()),
    )


def load_dataset_infos(directory: Path = MANIFESTS_DIR / "datasets") -> dict[str, DatasetInfo]:
    return {name: read_dataset_info(directory / f"{name}.yaml") for name in REAL_DATASETS}


DATASETS: dict[str, DatasetInfo] = load_dataset_infos()


def synth_presets() -> tuple[str, ...]:
    from ferlib.data import synth
    return tuple(synth.PRESETS)


def dataset_names() -> list[str]:
    """Every valid dataset name: the real ones, then `synth-<preset>` for each SynthFER preset."""
    return list(REAL_DATASETS) + [SYNTH_PREFIX + p for p in synth_presets()]


def base_name(dataset: str) -> str:
    """"synth-ckplus" -> "ckplus"; a real name is its own base."""
    return dataset[len(SYNTH_PREFIX):] if dataset.startswith(SYNTH_PREFIX) else dataset


def check_dataset_name(dataset: str) -> str:
    if dataset not in REAL_DATASETS and not (dataset.startswith(SYNTH_PREFIX) and base_name(dataset) in synth_presets()):
        raise UnknownName("dataset", dataset, dataset_names())
    return dataset


def not_found(info: DatasetInfo, problem: str) -> DatasetNotFound:
    return DatasetNotFound(
        f"{info.display_name} ({info.name}): {problem}.\n"
        f"The study expects the owners' layout:\n{info.layout}\n"
        f"To get {info.display_name}: {info.request}.\n"
        f"Without it, use dataset='{SYNTH_PREFIX}{info.name}' (SynthFER, no download needed)."
    )


def check_data_root(info: DatasetInfo, data_root) -> Path:
    """The root as a Path if it is an existing folder; else DatasetNotFound. Whether it holds the
    owners' layout is the adapter's check (`ferlib.data.adapters.scan`), which names what is missing."""
    if data_root is None or str(data_root).strip() == "":
        raise not_found(info, "no data_root was given")
    root = Path(os.path.expanduser(str(data_root)))
    if not root.exists():
        raise not_found(info, f"data_root {root} does not exist")
    if not root.is_dir():
        raise not_found(info, f"data_root {root} is a file, not a folder")
    return root


def image_shape(size) -> tuple[int, int]:
    """`size` as (height, width): an int is a square side, a pair is (height, width)."""
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise FerlibError(f"image size {size!r}: give one side (int) or (height, width)")
        return int(size[0]), int(size[1])
    return int(size), int(size)


def load_synth(preset: str, size, scale: float, seed: int) -> LoadedDataset:
    """SynthFER in memory; a non-square `size` (h, w) renders h x h faces (or w x w) and keeps the
    centre h x w, the way a tighter alignment crop (ADFL's 128x110) cuts a face."""
    from ferlib.data import synth
    h, w = image_shape(size)
    side = max(h, w)
    data = synth.generate(preset, scale=scale, size=side, seed=seed)
    images = data.images
    if (h, w) != (side, side):
        top, left = (side - h) // 2, (side - w) // 2
        images = np.ascontiguousarray(images[:, top:top + h, left:left + w])
    shape = f"{h} px" if h == w else f"{h}x{w} px (the centre of {side} px faces)"
    source = f"SynthFER {preset} preset, scale {scale:g}, {shape}, seed {seed} (synthetic)"
    return LoadedDataset(images, data.manifest, tuple(data.classes), source, data if (h, w) == (side, side) else None)


def default_cache_dir(dataset: str, paper: str, root: Path) -> Path:
    """Where a raw root is prepared when no cache is named: $FERLIB_CACHE or ~/.cache/ferlib."""
    import hashlib
    base = Path(os.environ.get("FERLIB_CACHE", "~/.cache/ferlib")).expanduser()
    tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]
    return base / f"{dataset}-{paper}-{tag}"


def load_real(name: str, data_root, size, paper: str) -> LoadedDataset:
    """A prepared cache (`data_root` holds prepared.json), or a raw root prepared on first use."""
    from ferlib.data import prepare
    if prepare.is_prepared(data_root):
        cache = Path(os.path.expanduser(str(data_root)))
    else:
        root = check_data_root(DATASETS[name], data_root)  # the adapter checks the layout inside
        cache = default_cache_dir(name, paper, root)
        print(f"preparing {DATASETS[name].display_name} from {root} for {paper} in {cache} (once; resumable)")
        prepare.prepare(name, root, paper, cache)
    prepared = prepare.load_prepared(cache, size=size)
    record = prepared.record
    if (record["dataset"], record["paper"]) != (name, paper):
        raise FerlibError(
            f"{cache} was prepared for {record['dataset']} / {record['paper']}, not {name} / {paper}; prepare it "
            f"with: python -m ferlib data prepare {name} --root DIR --protocol {paper} --cache NEW_FOLDER")
    from ferlib.data.protocols import load_protocol
    classes = load_protocol(paper, name).classes
    return LoadedDataset(prepared.images, prepared.manifest, classes, prepare.describe(record))


def load_dataset(name: str, data_root=None, size: int | tuple[int, int] = 64, scale: float = 1.0, seed: int = 0,
                 paper: str = "baseline") -> LoadedDataset:
    """Images, manifest, classes and a `source` sentence for the dataset `name`.

    `size` is a square side or (height, width) (ADFL's aligned faces are 128x110).
    `synth-<preset>` renders SynthFER in memory (data_root is ignored). A real name needs
    `data_root`: either a cache made by `python -m ferlib data prepare` for `paper`, or the
    owners' layout itself, which is then prepared for `paper` (aligned once, into
    $FERLIB_CACHE or ~/.cache/ferlib) and read from there.
    """
    check_dataset_name(name)
    if name.startswith(SYNTH_PREFIX):
        return load_synth(base_name(name), size=size, scale=scale, seed=seed)
    return load_real(name, data_root, size, paper)
