"""The study's jobs, registry records and sweep: a job writes a valid record, the sweep skips what is
current and reruns what is stale, and a sweep killed with SIGKILL resumes to the same records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ferlib.errors import FerlibError
from ferlib.study import records, sweep
from ferlib.study.jobs import PAPERS, job_config, run_job
from ferlib.study.records import Job

ROOT = Path(__file__).resolve().parents[1]
TINY = {"epochs": 2, "scale": 0.25}        # baseline smoke at a quarter of its people, two epochs: seconds


@pytest.fixture(scope="module")
def tiny_record(tmp_path_factory):
    registry = tmp_path_factory.mktemp("registry")
    out = tmp_path_factory.mktemp("work")
    record = run_job(Job("baseline", "baseline", "synth-ckplus", 1, "smoke"), registry, out, progress=False, **TINY)
    return registry, out, record


def test_a_job_writes_a_valid_record_in_its_place(tiny_record):
    registry, _, record = tiny_record
    path = records.record_path(Job("baseline", "baseline", "synth-ckplus", 1, "smoke"), registry)
    assert path == registry / "baseline/smoke/synth-ckplus/baseline/fold1-seed0.json"
    stored = records.read_record(path)
    assert stored["job"] == {"paper": "baseline", "method": "baseline", "dataset": "synth-ckplus", "fold": 1,
                             "preset": "smoke", "seed": 0}
    assert stored["config"]["epochs"] == 2 and stored["config"]["scale"] == 0.25 and "out_dir" not in stored["config"]
    assert stored["training"]["epochs_run"] == 2 == len(stored["training"]["history"])
    assert stored["test"]["n"] == sum(map(sum, stored["test"]["confusion"])) > 0
    assert stored["fingerprint"]["losses"] and stored["provenance"]["threads"] >= 1
    assert stored["status"] in records.STATUSES
    assert "embedding" not in stored["extras"]          # only the figure fold keeps its t-SNE


def test_checkpoints_live_under_the_code_that_wrote_them(tiny_record, monkeypatch):
    from ferlib.study import jobs
    _, out, record = tiny_record
    key = jobs.code_key(record["fingerprint"])
    assert [p.name for p in out.iterdir()] == [key] and any((out / key).iterdir())   # the job's run dir is there
    other = dict(record["fingerprint"], losses=[{k: v * 1.001 for k, v in row.items()}
                                               for row in record["fingerprint"]["losses"]])
    assert jobs.code_key(other) != key                        # other training code: a fresh folder, nothing resumed
    monkeypatch.setattr("ferlib.engine.git_commit", lambda: {"git_commit": "0" * 40, "git_dirty": False})
    assert jobs.code_key(record["fingerprint"]) != key        # another commit: the same


def test_validate_record_names_what_is_wrong(tiny_record):
    record = json.loads(json.dumps(tiny_record[2]))
    records.validate_record(record)
    broken = dict(record, test=dict(record["test"], acc=record["test"]["acc"] + 0.1))
    with pytest.raises(FerlibError, match="disagrees with its confusion"):
        records.validate_record(broken)
    with pytest.raises(FerlibError, match="missing field 'fingerprint'"):
        records.validate_record({k: v for k, v in record.items() if k != "fingerprint"})
    with pytest.raises(FerlibError, match="format 0"):
        records.validate_record(dict(record, format=0))
    with pytest.raises(FerlibError, match="must say why"):
        records.validate_record(dict(record, status="failed to train", failure=None))


def test_a_record_with_a_non_finite_number_is_never_written(tiny_record, tmp_path):
    record = json.loads(json.dumps(tiny_record[2]))
    record["test"]["loss"] = float("nan")
    with pytest.raises(ValueError):
        records.write_record(record, tmp_path)
    assert not list(tmp_path.rglob("*"))


def test_a_record_is_current_until_its_config_or_fingerprint_changes(tiny_record):
    registry, _, record = tiny_record
    job = Job("baseline", "baseline", "synth-ckplus", 1, "smoke")
    prints = sweep.current_fingerprints([job])
    assert sweep.job_state(job, prints, registry, overrides=TINY).state in ("done", "failed")
    other = sweep.job_state(job, prints, registry, overrides={**TINY, "epochs": 3})
    assert other.state == "stale" and "epochs" in other.why
    moved = {k: dict(v, losses=[{n: x * 1.01 for n, x in step.items()} for step in v["losses"]])
             for k, v in prints.items()}
    changed = sweep.job_state(job, moved, registry, overrides=TINY)
    assert changed.state == "stale" and "fingerprint" in changed.why
    assert sweep.job_state(Job("baseline", "baseline", "synth-ckplus", 2, "smoke"), prints, registry).state == "missing"


def test_job_config_matches_the_record_a_job_writes(tiny_record):
    _, _, record = tiny_record
    assert job_config(Job("baseline", "baseline", "synth-ckplus", 1, "smoke"), **TINY) == record["config"]


def test_the_grid_is_each_papers_primary_at_every_fold_and_tables_at_three():
    jobs = sweep.study_grid(["ifgan"])
    by = {}
    for j in jobs:
        by.setdefault((j.dataset, j.method), []).append(j.fold)
    assert by[("synth-ckplus", "ifgan")] == list(range(10))
    assert by[("synth-mmi", "resnet")] == [0, 1, 2] and by[("synth-bu3dfe", "ifgan-noattention")] == [0, 1, 2]
    assert by[("synth-rafdb", "ifgan")] == [0]                   # one official split
    assert {j.preset for j in jobs} == {"study"} and len(jobs) == 3 * (10 + 3 + 3 + 1)
    # a method with its own grid folds (TER-GAN's ablation): three of the eight, unless folds are asked for
    tergan = {}
    for j in sweep.study_grid(["tergan"]):
        tergan.setdefault(j.method, []).append(j.fold)
    assert tergan == {"baseline": list(range(8)), "tergan": list(range(8)), "tergan-no-erec": [0, 1, 2]}
    assert [j.fold for j in sweep.study_grid(["tergan"], methods=["tergan-no-erec"], folds=[4, 5])] == [4, 5]
    assert [j.seed for j in sweep.study_grid(["synthfer"])] == list(sweep.VALIDITY_SEEDS)   # no folds of its own
    with pytest.raises(FerlibError, match="unknown method"):
        sweep.study_grid(["adfl"], methods=["resnet"])
    with pytest.raises(FerlibError, match="unknown paper"):
        sweep.study_grid(["ifgn"])


def test_every_paper_has_the_three_presets_with_the_same_fields():
    for study in (s for s in PAPERS.values() if s.paper != "synthfer"):   # validity: the datasheet's recipe
        presets = study.experiment.PRESETS
        assert set(presets) == {"smoke", "study", "paper"}, study.paper
        assert len({frozenset(p) for p in presets.values()}) == 1, study.paper
        assert presets["study"]["patience"] > 0                 # trained to a plateau, not a fixed length


def test_local_executor_never_runs_more_threads_than_cores():
    cores = os.cpu_count() or 1
    assert sweep.LocalExecutor(1).threads == cores
    with pytest.raises(FerlibError, match="more than this machine"):
        sweep.LocalExecutor(cores + 1)
    with pytest.raises(FerlibError, match="unknown executor"):
        sweep.make_executor("slurm-now", 1)


def cli(*args, **kwargs):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "ferlib", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


SWEEP = ["sweep", "--papers", "baseline", "--datasets", "synth-ckplus", "--folds", "0,2,3", "--preset", "smoke",
         "--set", "epochs=3", "--set", "scale=0.25"]


def comparable(record: dict) -> dict:
    """A record without what differs between two runs of the same job (times, resumption, commit)."""
    out = {k: v for k, v in record.items() if k != "provenance"}
    out["training"] = dict(out["training"], history=[{k: v for k, v in row.items() if k != "epoch_time_s"}
                                                     for row in out["training"]["history"]])
    return out


def test_a_sweep_killed_with_sigkill_resumes_to_an_uninterrupted_runs_records(tmp_path):
    reference = cli(*SWEEP, "--registry", str(tmp_path / "ref"), "--out-dir", str(tmp_path / "ref-work"))
    assert reference.wait(timeout=600) == 0, reference.stdout.read()
    killed = tmp_path / "killed"
    first = cli(*SWEEP, "--registry", str(killed), "--out-dir", str(tmp_path / "work"))
    deadline = time.time() + 300
    while not list(killed.rglob("*.json")) and time.time() < deadline:   # kill it once one job has finished
        time.sleep(0.2)
    time.sleep(1.0)                                                      # ... and the next is training
    first.send_signal(signal.SIGKILL)
    first.wait()
    done_before = sorted(p.name for p in killed.rglob("*.json"))
    assert 1 <= len(done_before) < 3, done_before
    assert not list(killed.rglob("*.tmp")), "a half-written record is visible"
    second = cli(*SWEEP, "--registry", str(killed), "--out-dir", str(tmp_path / "work"))
    output = second.communicate(timeout=600)[0]
    assert second.returncode == 0, output
    assert f"{len(done_before)} have a current record" in output
    for path in sorted((tmp_path / "ref").rglob("*.json")):
        again = killed / path.relative_to(tmp_path / "ref")
        assert comparable(records.read_record(again)) == comparable(records.read_record(path)), path.name
    third = cli(*SWEEP, "--registry", str(killed), "--out-dir", str(tmp_path / "work"))
    assert "3 have a current record, 0 to run" in third.communicate(timeout=300)[0]


def test_dry_run_lists_jobs_and_cost_without_training(tmp_path):
    run = cli("sweep", "--papers", "ifgan", "--datasets", "synth-mmi", "--preset", "study", "--dry-run",
              "--registry", str(tmp_path))
    output = run.communicate(timeout=300)[0]
    assert run.returncode == 0, output
    assert "9 jobs: 0 have a current record, 9 to run" in output
    assert output.count("would run: ifgan") == 9 and "min)" in output
    assert not list(tmp_path.rglob("*.json"))


def test_unknown_names_are_one_line_errors(tmp_path):
    for args, message in ((["run", "ifgn", "--method", "x", "--dataset", "synth-ckplus", "--fold", "0"], "unknown paper"),
                          (["run", "adfl", "--method", "resnet", "--dataset", "synth-ckplus", "--fold", "0"],
                           "unknown method of adfl"),
                          (["sweep", "--papers", "adfl", "--preset", "huge", "--dry-run"], "unknown preset of adfl")):
        run = cli(*args, "--registry", str(tmp_path))
        output = run.communicate(timeout=120)[0]
        assert run.returncode == 2 and output.startswith("error: ") and message in output, output
        assert "Traceback" not in output
