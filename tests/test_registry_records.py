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


def test_a_fold_that_names_only_the_commonest_class_failed_to_train():
    from ferlib.study.jobs import failure_of

    def record(confusion, generator=None):
        n, k = sum(map(sum, confusion)), len(confusion)
        recall = [row[i] / sum(row) for i, row in enumerate(confusion)]
        return {"test": {"acc": sum(confusion[i][i] for i in range(k)) / n, "macro_acc": sum(recall) / k},
                "chance": 1 / k, "extras": {"generator": generator} if generator else {}}
    majority = [[0, 10, 0, 0], [0, 60, 0, 0], [0, 20, 0, 0], [0, 10, 0, 0]]     # 60% accuracy, 25% macro
    assert failure_of(record(majority)).startswith("macro accuracy 25.0% is within 2 points of chance (25.0%")
    learned = [[6, 4, 0, 0], [10, 50, 0, 0], [0, 10, 10, 0], [0, 5, 0, 5]]       # 71% accuracy, 61% macro
    assert failure_of(record(learned)) is None
    assert failure_of(record([[3, 7], [7, 3]])).startswith("test accuracy 30.0%")
    copying = {"l1_to_target": 0.3, "copy_l1_to_target": 0.3}
    assert failure_of(record(learned, copying)).startswith("the generator is no better than copying")


@pytest.mark.parametrize("path", ALL, ids=[str(p.relative_to(records.REGISTRY)) for p in ALL])
def test_every_records_status_follows_the_current_failed_to_train_rule(path):
    from ferlib.study.jobs import failure_of
    record = records.read_record(path)
    if "test" in record:                                   # datasheet records have no test split
        assert record["failure"] == failure_of(record) and record["status"] == ("ok" if record["failure"] is None
                                                                                  else "failed to train")
