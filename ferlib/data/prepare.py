"""Prepare a dataset for one paper: manifest, face alignment, uint8 cache, in one resumable go.

    prepare("ckplus", root="/data/CK+", paper="ifgan", cache_dir="~/ferlib-cache/ckplus-ifgan")

1. The adapter lists the dataset (`ferlib.data.adapters.scan`) and the paper's protocol picks
   its frames and folds; only those rows are aligned.
2. Each row's image is read (`media.read_image`), its face found by MTCNN and warped to the
   paper's geometry (`ferlib.data.align`), and written as `aligned/<name>.png` beside a JSON
   sidecar (box, five landmarks, score, status). The sidecar is written last, so a row is done
   exactly when its sidecar exists: a killed run loses at most the row it was working on, and
   the next run continues from there. PNG is lossless and MTCNN is deterministic on the CPU, so a
   resumed run ends with the same bytes as a clean one.
3. Rows where no face was found get, in a second pass, the landmarks of the nearest frame of the
   same sequence that had one (faces in lab sequences hardly move); failing that, the largest
   centred crop. Several faces: the largest is used. A file that cannot be decoded is dropped.
   All of these are listed in `report.csv`, none stops the run.
4. The aligned images are stacked into `images.pt` (uint8, N x C x H x W) with `manifest.csv`
   (the adapter's rows, in the same order, plus `aligned` and `align_status`), and finally
   `prepared.json` is written: its presence marks a finished cache.

RAF-DB is distributed as aligned crops (the issue and IF-GAN/EAN use them): they are resized to
the geometry, as are SynthFER's faces (rendered aligned). FERPlus's 48x48 crops go through
MTCNN like the rest (EAN: "detected and aligned by MTCNN"); the detector upsamples small images. `load_prepared(cache_dir, size)` reads a finished cache back.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm.std import tqdm

from ferlib.data.align import PRE_ALIGNED_DATASETS
from ferlib.data.manifest import normalise_dtypes, read_manifest, write_manifest
from ferlib.data.protocols import apply_protocol, check_counts, load_protocol
from ferlib.data.registry import DATASETS, SYNTH_PREFIX, base_name, check_dataset_name
from ferlib.errors import CorruptImage, FerlibError
from ferlib.io import atomic_write

PREPARED_FILE = "prepared.json"
FORMAT = 1
OWN_ALIGNMENT = PRE_ALIGNED_DATASETS     # distributed as aligned face crops: resized, not re-detected
DETECTED = ("ok", "several faces")


@dataclass(frozen=True)
class Prepared:
    """A finished cache: aligned images (N, H, W, C) uint8, their manifest, the report, the record."""

    images: np.ndarray
    manifest: pd.DataFrame
    report: pd.DataFrame
    record: dict


def aligned_name(path: str) -> str:
    """A flat, unique file name for a manifest path ("S005/001/x.png" -> "S005__001__x.png.png")."""
    return path.replace("/", "__").replace("#", "@") + ".png"


def read_sidecar(file: Path) -> dict | None:
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError):
        return None  # absent or half-written before a crash: the row is redone


def write_json(obj, path: Path) -> None:
    atomic_write(path, lambda f: json.dump(obj, f, indent=1, sort_keys=True), text=True)


def write_png(array: np.ndarray, path: Path) -> None:
    image = Image.fromarray(array[:, :, 0] if array.shape[-1] == 1 else array)
    atomic_write(path, lambda f: image.save(f, format="PNG"))


def resize_to(array: np.ndarray, height: int, width: int) -> np.ndarray:
    image = Image.fromarray(array[:, :, 0] if array.shape[-1] == 1 else array)
    out = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8)
    return out[:, :, None] if out.ndim == 2 else out


def source_rows(dataset: str, root, paper: str, scale: float, seed: int):
    """(manifest of the protocol's rows, image reader, adapter findings, resolved root)."""
    from ferlib.data.adapters import media
    protocol = load_protocol(paper, dataset)
    if dataset.startswith(SYNTH_PREFIX):
        from ferlib.data import synth
        data = synth.generate(base_name(dataset), scale=scale, seed=seed)
        manifest = data.manifest
        images = dict(zip(manifest["path"], data.images))
        read, findings, where = images.__getitem__, pd.DataFrame(columns=["path", "problem"]), None
    else:
        from ferlib.data.adapters import scan
        result = scan(dataset, root)
        manifest, findings, where = result.manifest, result.report(), Path(root).expanduser().resolve()
        read = lambda path: media.read_image(where, path)  # noqa: E731
    selected = apply_protocol(manifest, protocol, seed=seed)
    rows = normalise_dtypes(manifest.loc[selected.index.sort_values()]).reset_index(drop=True)
    return rows, read, findings, where, protocol


def align_rows(rows: pd.DataFrame, read, geometry, own_alignment: bool, aligned_dir: Path,
               detector, progress: bool) -> None:
    """Pass 1: align every row that has no sidecar yet (the resumable part)."""
    from ferlib.data import align
    todo = [i for i, path in enumerate(rows["path"]) if read_sidecar(aligned_dir / (aligned_name(path) + ".json")) is None]
    bar = tqdm(total=len(rows), initial=len(rows) - len(todo), desc="aligning faces", unit="img", disable=not progress)
    for i in todo:
        path = rows.at[i, "path"]
        png, sidecar = aligned_dir / aligned_name(path), aligned_dir / (aligned_name(path) + ".json")
        try:
            image = read(path)
        except CorruptImage as e:
            write_json({"status": "corrupt", "note": str(e)}, sidecar)
            bar.update()
            continue
        if own_alignment:
            write_png(resize_to(image, geometry.height, geometry.width), png)
            info = {"status": "own alignment", "note": "distributed aligned; resized to the geometry"}
        else:
            result = align.align_face(image, geometry, detector)
            info = result.sidecar()
            if result.image is not None:
                write_png(result.image, png)
        write_json(info, sidecar)
        bar.update()
    bar.close()


def nearest_detected(position: int, candidates: list[tuple[int, dict]]) -> dict | None:
    if not candidates:
        return None
    return min(candidates, key=lambda c: (abs(c[0] - position), c[0]))[1]


def fill_missing_faces(rows: pd.DataFrame, read, geometry, aligned_dir: Path) -> None:
    """Pass 2: rows with no face borrow a neighbour frame's landmarks, else a centred crop."""
    from ferlib.data import align
    sidecars = [read_sidecar(aligned_dir / (aligned_name(p) + ".json")) for p in rows["path"]]
    for sequence, group in rows.groupby("sequence", sort=False):
        detected = [(int(rows.at[i, "frame"]), sidecars[i]) for i in group.index if sidecars[i]["status"] in DETECTED]
        for i in group.index:
            info = sidecars[i]
            if info["status"] != "no face":
                continue
            path = rows.at[i, "path"]
            image = read(path)
            neighbour = nearest_detected(int(rows.at[i, "frame"]), detected)
            if neighbour is not None:
                result = align.fallback_alignment(
                    image, geometry, np.asarray(neighbour["landmarks"], dtype=float),
                    note="no face found; aligned with the landmarks of the nearest frame of its sequence that had one")
            else:
                result = align.fallback_alignment(
                    image, geometry, note="no face found, none in its sequence either; the largest centred crop, resized")
            write_png(result.image, aligned_dir / aligned_name(path))
            write_json({**result.sidecar(), "detection": info.get("note", "")},
                       aligned_dir / (aligned_name(path) + ".json"))


def stack(rows: pd.DataFrame, aligned_dir: Path) -> tuple[pd.DataFrame, torch.Tensor, pd.DataFrame]:
    """The kept rows (with `aligned`, `align_status`), their uint8 tensor, and the alignment report."""
    keep, statuses, images, report = [], [], [], []
    for i, path in enumerate(rows["path"]):
        info = read_sidecar(aligned_dir / (aligned_name(path) + ".json"))
        status = info["status"]
        if status not in ("ok", "own alignment"):
            report.append({"path": path, "problem": f"{status}: {info.get('note', '')}".rstrip(": ")})
        if status == "corrupt":
            continue
        with Image.open(aligned_dir / aligned_name(path)) as im:
            array = np.array(im, dtype=np.uint8)
        images.append(array[:, :, None] if array.ndim == 2 else array)
        keep.append(i)
        statuses.append(status)
    if not images:
        raise FerlibError("no image could be decoded: nothing to prepare; see the report")
    channels = {a.shape[-1] for a in images}
    if len(channels) > 1:  # a greyscale frame among colour ones: decode all as colour
        images = [np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a for a in images]
    out = rows.loc[keep].reset_index(drop=True)
    out["aligned"] = [f"aligned/{aligned_name(p)}" for p in out["path"]]
    out["align_status"] = statuses
    tensor = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return out, tensor, pd.DataFrame(report, columns=["path", "problem"])


def prepare(dataset: str, root, paper: str, cache_dir, *, scale: float = 1.0, seed: int = 0,
            progress: bool = True, detector=None) -> Path:
    """Manifest, alignment and uint8 cache of `dataset` under `paper`'s protocol in `cache_dir`.

    Idempotent and resumable: a finished cache for the same (dataset, paper, root, scale, seed)
    is left as it is; an unfinished one is continued. Returns the cache folder.
    """
    from ferlib.data import align
    check_dataset_name(dataset)
    cache_dir = Path(cache_dir).expanduser()
    geometry = align.geometry(paper)
    if not dataset.startswith(SYNTH_PREFIX) and (root is None or str(root).strip() == ""):
        raise FerlibError(f"{dataset} is a real dataset: give --root, the folder of your copy "
                          f"(layout: python -m ferlib data manifest {dataset} --help)")
    identity = {"format": FORMAT, "dataset": dataset, "paper": paper, "scale": scale, "seed": seed,
                "root": None if dataset.startswith(SYNTH_PREFIX) else str(Path(root).expanduser().resolve()),
                "geometry": [geometry.height, geometry.width]}
    record_file = cache_dir / PREPARED_FILE
    plan_file = cache_dir / "plan.json"
    for marker in (record_file, plan_file):
        existing = read_sidecar(marker)
        if existing is not None and {k: existing.get(k) for k in identity} != identity:
            raise FerlibError(
                f"{cache_dir} holds a cache prepared for {existing.get('dataset')} / {existing.get('paper')} "
                f"(root {existing.get('root')}); use another --cache folder for {dataset} / {paper}")
    if record_file.is_file():
        if progress:
            print(f"{cache_dir} is already prepared for {dataset} / {paper}: nothing to do")
        return cache_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    write_json(identity, plan_file)
    rows, read, findings, where, protocol = source_rows(dataset, root, paper, scale, seed)
    aligned_dir = cache_dir / "aligned"
    aligned_dir.mkdir(exist_ok=True)
    own = base_name(dataset) in OWN_ALIGNMENT or dataset.startswith(SYNTH_PREFIX)
    if detector is None and not own:
        detector = align.FaceDetector()
    align_rows(rows, read, geometry, own, aligned_dir, detector, progress)
    fill_missing_faces(rows, read, geometry, aligned_dir)
    kept, tensor, alignment_report = stack(rows, aligned_dir)
    report = pd.concat([findings.assign(stage="adapter"), alignment_report.assign(stage="alignment")],
                       ignore_index=True)
    write_manifest(kept, cache_dir / "manifest.csv")
    atomic_write(cache_dir / "report.csv", lambda f: report.to_csv(f, index=False), text=True)
    atomic_write(cache_dir / "images.pt", lambda f: torch.save({"images": tensor, "format": FORMAT}, f))
    counts = check_counts(apply_protocol(kept, protocol, seed=seed), protocol)
    record = {**identity, "images": int(len(kept)), "channels": int(tensor.shape[1]),
              "statuses": {k: int(v) for k, v in kept["align_status"].value_counts().sort_index().items()},
              "dropped_corrupt": int(len(rows) - len(kept)), "report_rows": int(len(report)),
              "counts": json.loads(counts.reset_index().to_json(orient="records")),
              "torch": torch.__version__, "python": platform.python_version()}
    write_json(record, record_file)
    plan_file.unlink(missing_ok=True)
    if progress:
        print(f"prepared {len(kept)} images of {dataset} for {paper} in {cache_dir} "
              f"({len(report)} report rows in report.csv)")
    return cache_dir


def is_prepared(folder) -> bool:
    return folder is not None and (Path(folder).expanduser() / PREPARED_FILE).is_file()


def load_prepared(cache_dir, size: int | tuple[int, int] | None = None) -> Prepared:
    """A finished cache; with `size` (a side, or (height, width)), every image resized to it (bilinear)."""
    cache_dir = Path(cache_dir).expanduser()
    record = read_sidecar(cache_dir / PREPARED_FILE)
    if record is None:
        raise FerlibError(f"{cache_dir} is not a finished cache (no {PREPARED_FILE}); run "
                          "python -m ferlib data prepare DATASET --root DIR --protocol PAPER --cache "
                          f"{cache_dir} (it resumes where it stopped)")
    stored = torch.load(cache_dir / "images.pt", weights_only=True)["images"]
    images = stored.permute(0, 2, 3, 1).numpy()
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if images.shape[1:3] != (h, w):
            images = np.stack([resize_to(a, h, w) for a in images])
    report = pd.read_csv(cache_dir / "report.csv", dtype=str, keep_default_na=False)
    return Prepared(images, read_manifest(cache_dir / "manifest.csv"), report, record)


def describe(record: dict) -> str:
    """One sentence saying which data a prepared cache holds (printed under tables)."""
    dataset = record["dataset"]
    name = DATASETS[dataset].display_name if dataset in DATASETS else dataset
    h, w = record["geometry"]
    aligned = "resized (distributed aligned)" if base_name(dataset) in OWN_ALIGNMENT else f"MTCNN-aligned to {h}x{w}"
    return f"{name} from {record['root']}, {record['images']} images, {aligned} for the {record['paper']} protocol"
