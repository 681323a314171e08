"""Images decoded once into a uint8 tensor, and the torch Dataset that reads from it.

`ImageCache` holds every image of a dataset as one uint8 tensor (N,C,H,W) beside its manifest;
row i of the manifest is image i, and rows are addressed by the manifest's index labels (which
`apply_protocol` keeps), so a protocol's subset indexes the same cache. `FERDataset` turns a
subset of rows into dict samples for a DataLoader.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from tqdm.std import tqdm

from ferlib.data.manifest import validate_manifest
from ferlib.data.transforms import to_model_input
from ferlib.io import atomic_write
from ferlib.errors import CorruptImage, FerlibError

CACHE_FORMAT = 1  # bump when the stored layout changes, so old cache files are not reused
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")


class ImageCache:
    """uint8 images (N,C,H,W) plus the manifest describing them, row for row."""

    def __init__(self, images: torch.Tensor, manifest: pd.DataFrame):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise FerlibError(f"ImageCache needs a uint8 tensor (N,C,H,W), got {images.dtype} {tuple(images.shape)}")
        if len(images) != len(manifest):
            raise FerlibError(f"ImageCache: {len(images)} images but {len(manifest)} manifest rows; they must match row for row")
        if not manifest.index.is_unique:
            raise FerlibError("ImageCache: the manifest index has duplicate labels; call manifest.reset_index(drop=True)")
        self.images = images
        self.manifest = validate_manifest(manifest)
        self.positions = pd.Series(np.arange(len(manifest)), index=manifest.index)

    @classmethod
    def from_arrays(cls, images, manifest: pd.DataFrame) -> ImageCache:
        """From (N,H,W,C) uint8 arrays (numpy or torch), e.g. `synth.generate(...).images`."""
        array = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
        if array.ndim == 3:  # (N,H,W) greyscale
            array = array.unsqueeze(-1)
        if array.dtype != torch.uint8 or array.ndim != 4:
            raise FerlibError(f"ImageCache.from_arrays needs uint8 images (N,H,W,C), got {array.dtype} {tuple(array.shape)}")
        return cls(array.permute(0, 3, 1, 2).contiguous(), manifest)

    @classmethod
    def from_files(cls, root, manifest: pd.DataFrame, size: int, cache_dir=None, progress: bool = False) -> ImageCache:
        """Decode `root / manifest.path` with PIL, resize to size x size, stack as uint8.

        With `cache_dir`, the tensor is stored as `<cache_dir>/<hash>.pt` (atomically) and the
        next call with the same files, manifest paths and size loads it instead of decoding.
        The hash covers the root, every path with its file size and modification time, and size.
        """
        root = Path(root)
        validate_manifest(manifest, what=f"manifest for {root}")
        files = [root / p for p in manifest["path"].astype(str)]
        cache_file = None
        if cache_dir is not None:
            cache_file = Path(cache_dir) / f"{cache_key(root, files, size)}.pt"
            if cache_file.is_file():
                stored = torch.load(cache_file, weights_only=True)
                return cls(stored["images"], manifest)
        images = decode_images(files, size, progress=progress)
        if cache_file is not None:
            save_atomically({"images": images, "format": CACHE_FORMAT}, cache_file)
        return cls(images, manifest)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    def position(self, row) -> int:
        """The tensor position of the manifest row labelled `row`."""
        try:
            return int(self.positions.loc[row])
        except KeyError:
            raise FerlibError(f"row {row!r} is not in this cache's manifest (it has {len(self)} rows)") from None

    def image(self, row) -> torch.Tensor:
        """The uint8 (C,H,W) image of manifest row `row` (an index label)."""
        return self.images[self.position(row)]


def cache_key(root: Path, files: list[Path], size: int) -> str:
    digest = hashlib.sha256(json.dumps({"format": CACHE_FORMAT, "root": str(root.resolve()), "size": size}).encode())
    for f in files:
        try:
            st = f.stat()
            digest.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{f}\0missing\n".encode())
    return digest.hexdigest()[:32]


def decode_image(path: Path, size: int, mode: str) -> np.ndarray:
    """One file -> (size, size, C) uint8; CorruptImage names the file when PIL cannot decode it."""
    if not path.is_file():
        raise FerlibError(f"image file {path} listed in the manifest does not exist; check data_root and the manifest's path column")
    try:
        with Image.open(path) as im:
            im.load()
            im = im.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
            array = np.array(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise CorruptImage(
            f"cannot decode image {path} ({type(e).__name__}: {e}); re-extract this file from the dataset "
            "archive (or regenerate it), or remove its row from the manifest") from None
    return array[:, :, None] if array.ndim == 2 else array


def image_mode(path: Path) -> str:
    """"L" when the first image is greyscale, else "RGB": the whole dataset is decoded in that mode."""
    try:
        with Image.open(path) as im:
            return "L" if im.mode in GREY_MODES else "RGB"
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return "RGB"  # decode_image will name the file


def decode_images(files: list[Path], size: int, progress: bool = False) -> torch.Tensor:
    if not files:
        raise FerlibError("the manifest has no rows: nothing to decode")
    mode = image_mode(files[0]) if files[0].is_file() else "RGB"
    channels = 1 if mode == "L" else 3
    out = torch.empty((len(files), channels, size, size), dtype=torch.uint8)
    for i, f in enumerate(tqdm(files, desc="decoding images", unit="img", disable=not progress)):
        out[i] = torch.from_numpy(decode_image(f, size, mode)).permute(2, 0, 1)
    return out


def save_atomically(obj, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def neutral_rows(manifest: pd.DataFrame) -> pd.Series:
    """True for expressionless frames: role "neutral", or single images labelled neutral."""
    return (manifest["role"] == "neutral") | ((manifest["role"] == "single") & (manifest["label"] == "neutral"))


class FERDataset(Dataset):
    """Rows of an ImageCache as dict samples for a DataLoader.

    rows: index labels of `cache.manifest`, or a DataFrame whose index labels are such rows
    (then labels, and `label_column`, are read from that DataFrame: a protocol's manifest
    with relabelled neutral frames or a `label_noisy` column).
    Sample: {"image": float (C,H,W) (or (10,C,h,w) with a ten-crop transform), "label": class
    index in `classes`, "subject": int (position of the subject in `subject_names`, the sorted
    subjects of the whole cache), "index": the row's index label}.
    pair="neutral" adds "neutral" (the transformed neutral frame of the same subject, from
    another sequence when the subject has one, else from the same sequence) and "neutral_index".
    transform None: no geometry, only uint8 -> normalised float.
    """

    def __init__(self, cache: ImageCache, rows: Iterable | pd.DataFrame, classes: Iterable[str],
                 transform: Callable | None = None, label_column: str = "label", pair: str | None = None):
        if pair not in (None, "neutral"):
            raise FerlibError(f"pair={pair!r}: the only pairing is 'neutral' (or None)")
        if isinstance(rows, pd.DataFrame):
            table = rows
        else:
            rows = list(rows)
            missing = [r for r in rows if r not in cache.positions.index]
            if missing:
                raise FerlibError(f"row {missing[0]!r} is not in this cache's manifest (it has {len(cache)} rows)")
            table = cache.manifest.loc[rows]
        if label_column not in table.columns:
            raise FerlibError(f"FERDataset: the manifest has no column {label_column!r}; columns: {', '.join(map(str, table.columns))}")
        self.cache, self.classes, self.transform, self.pair = cache, tuple(classes), transform, pair
        self.rows = [cache.position(r) for r in table.index]  # fails clearly on foreign rows
        self.index = np.asarray(table.index)
        class_of = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted(set(table[label_column]) - set(class_of))
        if unknown:
            raise FerlibError(f"FERDataset: labels {unknown} in column {label_column!r} are not among the classes {list(self.classes)}")
        self.labels = np.array([class_of[v] for v in table[label_column]], dtype=np.int64)
        self.subject_names = sorted(cache.manifest["subject"].astype(str).unique())
        subject_of = {s: i for i, s in enumerate(self.subject_names)}
        self.subjects = np.array([subject_of[str(s)] for s in table["subject"]], dtype=np.int64)
        self.neutral_partner = self.find_neutral_partners(table) if pair == "neutral" else None

    def find_neutral_partners(self, table: pd.DataFrame) -> list[int]:
        """For each row, the cache position of a neutral frame of the same subject."""
        m = self.cache.manifest
        neutral = m[neutral_rows(m)]
        by_subject = {s: g for s, g in neutral.groupby(neutral["subject"].astype(str), sort=False)}
        partners = []
        for k, (label, row) in enumerate(table.iterrows()):
            group = by_subject.get(str(row["subject"]))
            if group is None:
                raise FerlibError(
                    f"pair='neutral' needs a neutral frame of every subject, but subject {row['subject']!r} "
                    f"(row {label}) has none in the cache")
            other = group[group["sequence"] != row["sequence"]]
            candidates = (other if len(other) else group).index
            partners.append(self.cache.position(candidates[k % len(candidates)]))
        return partners

    @property
    def num_subjects(self) -> int:
        return len(self.subject_names)

    def __len__(self) -> int:
        return len(self.rows)

    def prepare(self, position: int) -> torch.Tensor:
        image = self.cache.images[position]
        return to_model_input(image) if self.transform is None else self.transform(image)

    def __getitem__(self, i: int) -> dict:
        sample = {
            "image": self.prepare(self.rows[i]),
            "label": int(self.labels[i]),
            "subject": int(self.subjects[i]),
            "index": int(self.index[i]),
        }
        if self.neutral_partner is not None:
            position = self.neutral_partner[i]
            sample["neutral"] = self.prepare(position)
            sample["neutral_index"] = int(self.cache.manifest.index[position])
        return sample
