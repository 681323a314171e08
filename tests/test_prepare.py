"""`prepare`: manifest + alignment + cache in one go; idempotent, resumable, reported, loadable."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ferlib.data import align
from ferlib.data.layouts import build_layout
from ferlib.data.prepare import PREPARED_FILE, aligned_name, load_prepared, prepare
from ferlib.data.protocols import apply_protocol, load_protocol
from ferlib.data.registry import load_dataset
from ferlib.errors import FerlibError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def detector():
    return align.FaceDetector()


@pytest.fixture(scope="module")
def ckplus(tmp_path_factory):
    return build_layout("ckplus", tmp_path_factory.mktemp("layouts") / "ckplus")


@pytest.fixture(scope="module")
def clean(ckplus, tmp_path_factory, detector):
    """A clean, uninterrupted prepare of the CK+ miniature for EIFN (64x64)."""
    return prepare("ckplus", ckplus.root, "eifn", tmp_path_factory.mktemp("clean") / "cache", progress=False,
                   detector=detector)


def cache_contents(cache: Path) -> dict:
    stored = torch.load(cache / "images.pt", weights_only=True)["images"]
    return {"images": stored, "manifest": (cache / "manifest.csv").read_text(), "report": (cache / "report.csv").read_text()}


def test_prepare_aligns_exactly_the_protocols_rows_and_drops_the_corrupt_image(ckplus, clean):
    prepared = load_prepared(clean)
    protocol = load_protocol("eifn", "ckplus")
    from ferlib.data.adapters import scan
    selected = apply_protocol(scan("ckplus", ckplus.root).manifest, protocol)
    corrupt = ckplus.expected["corrupt"]
    assert corrupt in set(selected["path"])
    assert list(prepared.manifest["path"]) == [p for p in selected.sort_index()["path"] if p != corrupt]
    assert prepared.images.shape == (len(selected) - 1, 64, 64, prepared.images.shape[-1])
    assert prepared.images.dtype == np.uint8
    assert set(prepared.manifest["align_status"]) <= {"ok", "several faces", "fallback"}
    report = prepared.report
    assert report.loc[report["path"] == corrupt, "problem"].str.startswith("corrupt:").all()
    assert (report["stage"] == "adapter").sum() == len(ckplus.expected["findings"])
    fallbacks = prepared.manifest.loc[prepared.manifest["align_status"] == "fallback", "path"]
    assert set(fallbacks) <= set(report["path"]), "every fallback is listed in the report"
    record = json.loads((clean / PREPARED_FILE).read_text())
    assert record["images"] == len(prepared.manifest) and record["dropped_corrupt"] == 1
    assert record["dataset"] == "ckplus" and record["paper"] == "eifn" and record["geometry"] == [64, 64]


def test_every_kept_row_has_its_png_and_sidecar(clean):
    prepared = load_prepared(clean)
    for path in prepared.manifest["path"]:
        assert (clean / "aligned" / aligned_name(path)).is_file()
        sidecar = json.loads((clean / "aligned" / (aligned_name(path) + ".json")).read_text())
        assert sidecar["status"] in ("ok", "several faces", "fallback")


def test_a_second_run_is_a_no_op(ckplus, clean, detector, capsys):
    before = {p: p.stat().st_mtime_ns for p in clean.rglob("*")}
    prepare("ckplus", ckplus.root, "eifn", clean, detector=detector)
    assert "nothing to do" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in clean.rglob("*")} == before


def prepare_command(root, cache) -> list[str]:
    return [sys.executable, "-m", "ferlib", "data", "prepare", "ckplus", "--root", str(root), "--protocol", "eifn",
            "--cache", str(cache)]


def test_a_killed_run_resumes_to_the_same_bytes_as_a_clean_run(ckplus, tmp_path):
    """Kill a real `python -m ferlib data prepare` halfway (SIGKILL), run it again, and compare with
    an uninterrupted run of the same command (same thread count: float sums depend on it)."""
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    clean = tmp_path / "clean"
    reference_run = subprocess.run(prepare_command(ckplus.root, clean), cwd=ROOT, env=env, capture_output=True,
                                   text=True, timeout=300)
    assert reference_run.returncode == 0, reference_run.stderr
    cache = tmp_path / "cache"
    command = prepare_command(ckplus.root, cache)
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list((cache / "aligned").glob("*.json"))) < 8:
        assert process.poll() is None, f"prepare ended before it was killed: {process.stderr.read().decode()}"
        time.sleep(0.02)
    process.kill()
    process.wait()
    done = len(list((cache / "aligned").glob("*.json")))
    assert 8 <= done < 41 and not (cache / PREPARED_FILE).exists(), f"the kill came too late ({done} rows done)"
    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    resumed, reference = cache_contents(cache), cache_contents(clean)
    assert torch.equal(resumed["images"], reference["images"])
    assert resumed["manifest"] == reference["manifest"] and resumed["report"] == reference["report"]


def test_a_half_written_sidecar_is_redone(ckplus, clean, tmp_path, detector):
    cache = tmp_path / "cache"
    prepare("ckplus", ckplus.root, "eifn", cache, progress=False, detector=detector)
    first = load_prepared(cache).manifest["path"].iloc[0]
    (cache / PREPARED_FILE).unlink()
    (cache / "aligned" / (aligned_name(first) + ".json")).write_text('{"status": "o')  # cut off mid-write
    (cache / "aligned" / aligned_name(first)).unlink()
    prepare("ckplus", ckplus.root, "eifn", cache, progress=False, detector=detector)
    assert torch.equal(cache_contents(cache)["images"], cache_contents(clean)["images"])


def test_a_cache_prepared_for_another_paper_or_root_is_refused(ckplus, clean, detector):
    with pytest.raises(FerlibError, match="prepared for ckplus / eifn"):
        prepare("ckplus", ckplus.root, "ifgan", clean, detector=detector)


def test_a_frame_without_a_face_borrows_its_neighbours_landmarks(ckplus, tmp_path, detector):
    """Blank one detected frame: it is aligned with the nearest detected frame's landmarks."""
    import shutil
    root = tmp_path / "ckplus"
    shutil.copytree(ckplus.root, root)
    cache = tmp_path / "reference"
    prepare("ckplus", root, "eifn", cache, progress=False, detector=detector)
    manifest = load_prepared(cache).manifest
    ok = manifest[manifest["align_status"] == "ok"]
    sequence = ok.groupby("sequence").filter(lambda g: len(g) >= 2)["sequence"].iloc[0]
    rows = ok[ok["sequence"] == sequence].sort_values("frame")
    blank, neighbour = rows.iloc[-1], rows.iloc[-2]
    with Image.open(root / blank["path"]) as im:
        Image.new(im.mode, im.size, 128).save(root / blank["path"])
    cache2 = tmp_path / "blanked"
    prepare("ckplus", root, "eifn", cache2, progress=False, detector=detector)
    sidecar = json.loads((cache2 / "aligned" / (aligned_name(blank["path"]) + ".json")).read_text())
    assert sidecar["status"] == "fallback" and "nearest frame" in sidecar["note"]
    neighbour_sidecar = json.loads((cache / "aligned" / (aligned_name(neighbour["path"]) + ".json")).read_text())
    expected = align.alignment_matrix(np.asarray(neighbour_sidecar["landmarks"]), align.geometry("eifn"))
    assert np.allclose(np.asarray(sidecar["matrix"]), expected)
    report = load_prepared(cache2).report
    assert blank["path"] in set(report["path"])


def test_synthfer_prepares_without_detection(tmp_path):
    cache = prepare("synth-ckplus", None, "eifn", tmp_path / "c", scale=0.1, progress=False, detector="unused")
    prepared = load_prepared(cache)
    assert set(prepared.manifest["align_status"]) == {"own alignment"}
    assert prepared.images.shape[1:3] == (64, 64) and len(prepared.report) == 0


def test_load_dataset_reads_a_prepared_cache_at_the_requested_size(clean):
    loaded = load_dataset("ckplus", data_root=clean, size=32, paper="eifn")
    assert loaded.images.shape[1:3] == (32, 32)
    assert len(loaded.manifest) == len(loaded.images)
    assert loaded.classes == load_protocol("eifn", "ckplus").classes
    assert "CK+" in loaded.source and "eifn" in loaded.source and "MTCNN-aligned to 64x64" in loaded.source
    with pytest.raises(FerlibError, match="prepared for ckplus / eifn, not ckplus / ifgan"):
        load_dataset("ckplus", data_root=clean, size=32, paper="ifgan")


def test_load_dataset_prepares_a_raw_root_once_into_the_cache_folder(ckplus, tmp_path, monkeypatch):
    monkeypatch.setenv("FERLIB_CACHE", str(tmp_path / "cache"))
    loaded = load_dataset("ckplus", data_root=ckplus.root, size=32, paper="eifn")
    caches = list((tmp_path / "cache").iterdir())
    assert len(caches) == 1 and caches[0].name.startswith("ckplus-eifn-") and (caches[0] / PREPARED_FILE).is_file()
    assert loaded.images.shape[1:3] == (32, 32)
    again = load_dataset("ckplus", data_root=ckplus.root, size=32, paper="eifn")
    assert np.array_equal(again.images, loaded.images)
