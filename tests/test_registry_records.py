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

