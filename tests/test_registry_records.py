"""Every record in the results registry (data_manifests/reproduced/) has the registry's format, the
registry stays small, and each record sits at the path its job names."""

from __future__ import annotations

import pytest

from ferlib.study import records

ALL = sorted(records.REGISTRY.rglob("*.json")) if records.REGISTRY.exists() else []


@pytest.mark.parametrize("path", ALL, ids=[str(p.relative_to(records.REGISTRY)) for p in ALL])
def test_every_registry_record_has_the_format_and_sits_where_its_job_says(path):
    record = records.read_record(path)                     # validates
    assert records.record_path(records.Job(**record["job"])) == path
    assert record["provenance"]["git_commit"] not in ("", None)


def test_the_registry_stays_under_20_mb():
    assert records.registry_size() < 20 * 2 ** 20


def test_no_half_written_record_is_left_in_the_registry():
    leftovers = [p for p in records.REGISTRY.rglob("*") if p.is_file() and p.suffix != ".json"] \
        if records.REGISTRY.exists() else []
    assert leftovers == []



def test_a_resumed_jobs_time_covers_the_epochs_before_its_resume():
    whole = {"provenance": {"wall_time_s": 400.0, "train_time_s": 380.0}}
    resumed = {"provenance": {"wall_time_s": 20.0, "train_time_s": 376.0, "resumed_from_epoch": 38}}
    assert records.job_seconds(whole) == 400.0
    assert records.job_seconds(resumed) == 376.0
    assert records.job_seconds({"provenance": {"wall_time_s": 12.5}}) == 12.5   # a datasheet record: no epochs
    training = [records.read_record(p) for p in ALL]
    for record in (r for r in training if "training" in r):
        epochs = sum(row.get("epoch_time_s", 0.0) for row in record["training"]["history"])
        assert records.job_seconds(record) >= epochs - 1e-6, record["job"]
