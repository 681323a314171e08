"""The results registry: one small JSON record per (paper, method, dataset, preset, fold, seed) under
`data_manifests/reproduced/`, beside the papers' numbers in `reported/`.

Records are written by code only (`ferlib.study.jobs.run_job`, called by `python -m ferlib run` and
`sweep`), atomically, one file each:

    data_manifests/reproduced/<paper>/<preset>/<dataset>/<method>/fold<k>-seed<s>.json

`validate_record` is the format; `tests/test_registry_records.py` checks every committed record with it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ferlib.errors import FerlibError
from ferlib.io import atomic_write

FORMAT = 1
REGISTRY = Path(__file__).resolve().parents[2] / "data_manifests" / "reproduced"
# a record's config without what does not change the result (where files go, which device ran it)
VOLATILE_CONFIG = ("out_dir", "device")
STATUSES = ("ok", "failed to train")


@dataclass(frozen=True, order=True)
class Job:
    """One training run of the study: a method of a paper on one fold of one dataset at one preset."""

    paper: str
    method: str
    dataset: str
    fold: int
    preset: str = "study"
    seed: int = 0

    @property
    def key(self) -> str:
        return f"{self.paper}/{self.preset}/{self.dataset}/{self.method}/fold{self.fold}-seed{self.seed}"

    def __str__(self) -> str:
        return f"{self.paper} {self.method} on {self.dataset} fold {self.fold} ({self.preset}, seed {self.seed})"


def record_path(job: Job, registry: Path | str = REGISTRY) -> Path:
    return Path(registry) / f"{job.key}.json"


def stable_config(config: dict) -> dict:
    """The part of a config that decides the result (compared to skip a job whose record exists)."""
    return {k: v for k, v in sorted(config.items()) if k not in VOLATILE_CONFIG}


def rounded(value, digits: int = 6):
    """Floats to `digits` significant digits, recursively (records stay small and readable)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return value
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value


def write_record(record: dict, registry: Path | str = REGISTRY) -> Path:
    """Validate `record` and write it atomically to its place in the registry."""
    validate_record(record)
    job = Job(**record["job"])
    kept = rounded({k: v for k, v in record.items() if k != "fingerprint"}) | {"fingerprint": record["fingerprint"]}
    text = json.dumps(kept, indent=1, sort_keys=True, allow_nan=False) + "\n"   # fingerprints keep every digit
    path = atomic_write(record_path(job, registry), lambda f: f.write(text.encode()))
    path.chmod(0o644)  # a committed file, readable by all (the temp file was private)
    return path


def read_record(path: Path | str) -> dict:
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise FerlibError(f"registry record {path} cannot be read ({e}); delete it and run its job again "
                          "(`python -m ferlib sweep` skips jobs whose record is present)") from None
    try:
        validate_record(record)
    except FerlibError as e:
        raise FerlibError(f"registry record {path}: {e}") from None
    return record


def iter_records(registry: Path | str = REGISTRY, paper: str | None = None, preset: str | None = None) -> Iterator[dict]:
    """Every record under `registry` (of `paper` and `preset` when given), validated, in path order."""
    root = Path(registry)
    if paper:
        root = root / paper
        if preset:
            root = root / preset
    if not root.exists():
        return
    for path in sorted(root.rglob("*.json")):
        record = read_record(path)
        if preset and record["job"]["preset"] != preset:
            continue
        yield record


def find_record(job: Job, registry: Path | str = REGISTRY) -> dict | None:
    path = record_path(job, registry)
    return read_record(path) if path.exists() else None


def job_seconds(record: dict) -> float:
    """Seconds the record's job took: its process's wall time or, when that process resumed a crashed
    run (its wall time then covers only the epochs after the resume), the summed epoch times if larger."""
    provenance = record["provenance"]
    return max(float(provenance["wall_time_s"]), float(provenance.get("train_time_s") or 0.0))


REQUIRED = {
    "format": int, "job": dict, "config": dict, "data": str, "status": str, "test": dict, "chance": float,
    "training": dict, "identity_probe": dict, "fingerprint": dict, "provenance": dict, "extras": dict,
}
TEST_KEYS = ("acc", "macro_acc", "n", "per_class_acc", "confusion", "class_names")
TRAINING_KEYS = ("best_epoch", "epochs_run", "epochs_cap", "patience", "stopped_early", "history")
PROVENANCE_KEYS = ("git_commit", "git_dirty", "device", "cpu", "threads", "versions", "wall_time_s", "created",
                   "determinism")


VALIDITY_REQUIRED = {"format": int, "job": dict, "config": dict, "data": str, "status": str, "result": dict,
                     "fingerprint": dict, "provenance": dict}


def validate_record(record: dict) -> None:
    """Raise `FerlibError` naming the first way `record` departs from the registry's format."""
    if not isinstance(record, dict):
        raise FerlibError("a record is a JSON object")
    if record.get("kind") == "validity":   # one seed of the SynthFER datasheet's validity numbers
        return validate_validity(record)
    for key, kind in REQUIRED.items():
        if key not in record:
            raise FerlibError(f"missing field {key!r}")
        if not isinstance(record[key], kind) or isinstance(record[key], bool) and kind is not bool:
            raise FerlibError(f"field {key!r} should be {kind.__name__}, is {type(record[key]).__name__}")
    if record["format"] != FORMAT:
        raise FerlibError(f"format {record['format']}, this code reads format {FORMAT}: run its job again")
    try:
        job = Job(**record["job"])
    except TypeError as e:
        raise FerlibError(f"job {record['job']}: {e}") from None
    for key, value in (("fold", job.fold), ("seed", job.seed)):
        if not isinstance(value, int) or value < 0:
            raise FerlibError(f"job {key} {value!r} is not a non-negative integer")
    if record["status"] not in STATUSES:
        raise FerlibError(f"status {record['status']!r} is not one of {STATUSES}")
    if record["status"] != "ok" and not record.get("failure"):
        raise FerlibError("a failed run must say why (field 'failure')")
    test = record["test"]
    for key in TEST_KEYS:
        if key not in test:
            raise FerlibError(f"test has no {key!r}")
    k = len(test["class_names"])
    confusion = test["confusion"]
    if len(confusion) != k or any(len(row) != k for row in confusion):
        raise FerlibError(f"test confusion is not {k}x{k} (classes {test['class_names']})")
    if sum(map(sum, confusion)) != test["n"]:
        raise FerlibError(f"test confusion sums to {sum(map(sum, confusion))}, not n={test['n']}")
    for key in ("acc", "macro_acc"):
        if not (isinstance(test[key], (int, float)) and 0.0 <= test[key] <= 1.0):
            raise FerlibError(f"test {key} {test[key]!r} is not in [0, 1]")
    diagonal = sum(confusion[i][i] for i in range(k))
    if test["n"] and abs(diagonal / test["n"] - test["acc"]) > 1e-6:
        raise FerlibError(f"test acc {test['acc']} disagrees with its confusion matrix ({diagonal}/{test['n']})")
    training = record["training"]
    for key in TRAINING_KEYS:
        if key not in training:
            raise FerlibError(f"training has no {key!r}")
    if len(training["history"]) != training["epochs_run"] or not training["history"]:
        raise FerlibError(f"training history has {len(training['history'])} epochs, epochs_run says "
                          f"{training['epochs_run']}")
    if not all("val_acc" in row and "epoch" in row for row in training["history"]):
        raise FerlibError("every training history row needs epoch and val_acc (the curves the chapters draw)")
    for key in PROVENANCE_KEYS:
        if key not in record["provenance"]:
            raise FerlibError(f"provenance has no {key!r}")
    if "losses" not in record["fingerprint"]:
        raise FerlibError("fingerprint has no 'losses'")
    json.dumps(record, allow_nan=False)  # non-finite numbers never enter the registry


def validate_validity(record: dict) -> None:
    for key, kind in VALIDITY_REQUIRED.items():
        if not isinstance(record.get(key), kind):
            raise FerlibError(f"validity record: field {key!r} should be {kind.__name__}")
    if record["format"] != FORMAT:
        raise FerlibError(f"format {record['format']}, this code reads format {FORMAT}: run its job again")
    Job(**record["job"])
    for key in ("gap", "oracle_gain", "baseline_acc", "probe_ratio"):
        if not isinstance(record["result"].get(key), (int, float)) or not math.isfinite(record["result"][key]):
            raise FerlibError(f"validity record: result has no finite {key!r}")
    for key in PROVENANCE_KEYS:
        if key not in record["provenance"]:
            raise FerlibError(f"provenance has no {key!r}")
    json.dumps(record, allow_nan=False)


def registry_size(registry: Path | str = REGISTRY) -> int:
    """Bytes of every record under `registry`."""
    root = Path(registry)
    return sum(p.stat().st_size for p in root.rglob("*.json")) if root.exists() else 0


__all__ = ["FORMAT", "REGISTRY", "Job", "record_path", "stable_config", "write_record", "read_record",
           "iter_records", "find_record", "validate_record", "registry_size"]
