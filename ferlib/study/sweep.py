"""The study's grid of jobs, run idempotently by an executor, with one progress bar over the jobs.

    python -m ferlib sweep --papers ifgan,adfl,eifn --preset study --jobs 2
    python -m ferlib sweep --papers ifgan --datasets synth-ckplus --folds 0,1 --dry-run

The grid (`study_grid`): each paper's primary dataset at every fold, its other table datasets at
`TABLE_FOLDS` folds (an official split at its one split), every method, one seed. A job whose record
exists with the same config and the current code's training fingerprint is skipped, so a sweep
killed at any moment (even `kill -9`) loses at most the jobs that were running, and those resume
from their last finished epoch (the engine's checkpoints under `out_dir`).

Executors share one small interface (`Executor.run(jobs, call) -> iterator of (job, outcome)`):
`local` runs a process pool whose torch threads in total never exceed the cores. A cluster executor
(submitit for SLURM, Ray) implements the same method.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

from tqdm.auto import tqdm

from ferlib.errors import FerlibError, UnknownName
from ferlib.study.records import REGISTRY, Job, find_record, iter_records, job_seconds

VALIDITY_SEEDS = (0, 1, 2)   # the datasheet's validity numbers: mean over these seeds
TABLE_FOLDS = 3          # folds of each paper's other table datasets (its primary dataset: all)
DEFAULT_COST_S = {       # seconds per job on one CPU thread when the registry has no record to learn from
    "baseline": 60, "ifgan": 600, "adfl": 120, "eifn": 150, "ean": 300, "synthfer": 90,
}


def study_grid(papers: Iterable[str], datasets: Iterable[str] | None = None, folds: Iterable[int] | None = None,
               preset: str = "study", seeds: Iterable[int] | None = None,
               methods: Iterable[str] | None = None) -> list[Job]:
    """Every job of the grid: per paper, its primary dataset at all folds and its table datasets at
    `TABLE_FOLDS` folds, or the `datasets` / `folds` / `methods` given (folds a dataset lacks are left out).
    The datasets are the paper's `grid_datasets()` and on each its `grid_methods(dataset)` (EAN: its noisy
    variants, Tables 3-4's methods only), each method at its `grid_folds` unless `folds` are given (TER-GAN's
    ablation: three); the seeds its `seeds()`: (0,) by default, EAN's replicates of its one official split,
    the SynthFER datasheet's `VALIDITY_SEEDS`."""
    from ferlib.study.jobs import dataset_folds, paper_study
    jobs = []
    for paper in papers:
        study = paper_study(paper)
        if preset not in study.presets():
            raise UnknownName(f"preset of {paper}", preset, study.presets())
        names = list(datasets) if datasets else list(study.grid_datasets())
        for m in methods or ():
            if m not in study.methods():
                raise UnknownName(f"method of {paper}", m, study.methods())
        for dataset in names:
            k = dataset_folds(paper, dataset)
            if folds is not None:
                fold_list = [f for f in folds if f < k]
            else:
                fold_list = list(range(k)) if dataset == study.primary() else list(range(min(TABLE_FOLDS, k)))
            chosen_seeds = list(seeds) if seeds else list(study.seeds(dataset))
            chosen_methods = [m for m in (methods or study.grid_methods(dataset))]
            jobs += [Job(paper, m, dataset, f, preset, s) for s in chosen_seeds for m in chosen_methods
                     for f in (fold_list if folds is not None else study.grid_folds(m, fold_list))]
    return jobs


# ----------------------------------------------------------------------------- what is done, what is stale

@dataclass
class JobState:
    job: Job
    state: str            # "done", "missing", "stale" (record of other code or config), "failed" (done, failed to train)
    why: str = ""


def current_fingerprints(jobs: Iterable[Job]) -> dict[tuple[str, str], dict]:
    """The current code's training fingerprint of every (paper, method) among `jobs` (a few steps each)."""
    from ferlib.study.fingerprints import training_fingerprint
    from ferlib.study.jobs import fingerprinted_as
    return {(p, m): training_fingerprint(*fingerprinted_as(p, m)) for p, m in sorted({(j.paper, j.method) for j in jobs})}


def job_state(job: Job, fingerprints: dict, registry: Path | str = REGISTRY, data_root: str | None = None,
              overrides: dict | None = None) -> JobState:
    """Whether `job`'s record exists, was made by this config and by code with this fingerprint."""
    from ferlib.study.fingerprints import compare
    from ferlib.study.jobs import job_config
    record = find_record(job, registry)
    if record is None:
        return JobState(job, "missing")
    expected = job_config(job, data_root, **(overrides or {}))
    if record["config"] != expected:
        changed = sorted(k for k in set(expected) | set(record["config"]) if expected.get(k) != record["config"].get(k))
        return JobState(job, "stale", f"config differs in {', '.join(changed[:5])}")
    difference = compare(record["fingerprint"], fingerprints[(job.paper, job.method)])
    if difference:
        return JobState(job, "stale", f"training fingerprint differs: {difference}")
    if record["status"] != "ok":
        return JobState(job, "failed", record.get("failure") or record["status"])
    return JobState(job, "done")


def estimated_cost(job: Job, registry: Path | str = REGISTRY) -> float:
    """Seconds `job` should take: the mean wall time of this (paper, method, dataset, preset)'s records,
    else of the paper's method at this preset, else `DEFAULT_COST_S` (per-process cache of the registry)."""
    times = registry_times(str(registry))
    for key in ((job.paper, job.method, job.dataset, job.preset), (job.paper, job.method, job.preset)):
        if times.get(key):
            return sum(times[key]) / len(times[key])
    return float(DEFAULT_COST_S.get(job.paper, 300))


_TIMES: dict[str, dict] = {}


def registry_times(registry: str) -> dict:
    if registry not in _TIMES:
        times: dict = {}
        for r in iter_records(registry):
            j, t = r["job"], job_seconds(r) * r["provenance"]["threads"]
            for key in ((j["paper"], j["method"], j["dataset"], j["preset"]), (j["paper"], j["method"], j["preset"])):
                times.setdefault(key, []).append(t)
        _TIMES[registry] = times
    return _TIMES[registry]


# ----------------------------------------------------------------------------- executors

class Executor(Protocol):
    """Runs `call(job)` for every job; yields (job, record or the exception it raised) as each ends."""

    def run(self, jobs: list[Job], call: Callable[[Job], dict]) -> Iterator[tuple[Job, object]]: ...


def limit_threads(threads: int) -> None:
    """A worker's torch (and OpenMP / MKL) threads."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    import torch
    torch.set_num_threads(threads)


@dataclass
class LocalExecutor:
    """A process pool on this machine: `workers` processes of `threads` torch threads each, never more
    threads in total than cores. One worker runs the jobs in this process (no pool)."""

    workers: int = 1
    threads: int | None = None

    def __post_init__(self):
        cores = os.cpu_count() or 1
        if self.workers < 1:
            raise FerlibError(f"--jobs {self.workers}: run at least one job at a time")
        if self.workers > cores:
            raise FerlibError(f"--jobs {self.workers} is more than this machine's {cores} cores; use --jobs {cores} "
                              "or fewer (torch threads in total never exceed the cores)")
        self.threads = self.threads or max(1, cores // self.workers)
        if self.threads * self.workers > cores:
            raise FerlibError(f"{self.workers} jobs x {self.threads} threads exceed the {cores} cores")

    def run(self, jobs, call):
        if self.workers == 1:
            limit_threads(self.threads)
            for job in jobs:
                try:
                    yield job, call(job)
                except Exception as e:  # one job's error is reported; the sweep goes on
                    yield job, e
            return
        import multiprocessing
        context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch thread pools
        with ProcessPoolExecutor(self.workers, mp_context=context, initializer=limit_threads,
                                 initargs=(self.threads,)) as pool:
            pending = {pool.submit(call, job): job for job in jobs}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    job = pending.pop(future)
                    error = future.exception()
                    yield job, (error if error is not None else future.result())


EXECUTORS = {"local": LocalExecutor}


def make_executor(name: str, workers: int, threads: int | None = None) -> Executor:
    if name not in EXECUTORS:
        raise UnknownName("executor", name, EXECUTORS)
    return EXECUTORS[name](workers, threads)


# ----------------------------------------------------------------------------- the sweep

@dataclass(frozen=True)
class RunJob:
    """A picklable `call` for executors: `run_job` with the sweep's registry and settings."""

    registry: str
    out_dir: str
    data_root: str | None = None
    overrides: tuple = ()

    def __call__(self, job: Job) -> dict:
        from ferlib.study.jobs import run_job
        record = run_job(job, self.registry, self.out_dir, self.data_root, progress=False, **dict(self.overrides))
        summary = (f"test acc {100 * record['test']['acc']:.1f}%" if "test" in record else
                   ", ".join(f"{k} {record['result'][k]:.1f}" for k in ("gap", "oracle_gain", "baseline_acc", "probe_ratio")))
        return {"status": record["status"], "summary": summary, "wall_time_s": record["provenance"]["wall_time_s"]}


@dataclass
class SweepReport:
    skipped: list[Job] = field(default_factory=list)
    ran: list[Job] = field(default_factory=list)
    errors: list[tuple[Job, str]] = field(default_factory=list)
    seconds: float = 0.0


def plan(jobs: list[Job], registry: Path | str = REGISTRY, data_root: str | None = None,
         overrides: dict | None = None, rerun_failed: bool = False) -> tuple[list[JobState], list[Job]]:
    """(every job's state, the jobs to run): missing and stale ones (failed ones too with `rerun_failed`)."""
    fingerprints = current_fingerprints(jobs)
    states = [job_state(j, fingerprints, registry, data_root, overrides) for j in jobs]
    todo = [s.job for s in states if s.state in ("missing", "stale") or (rerun_failed and s.state == "failed")]
    return states, todo


def sweep(jobs: list[Job], registry: Path | str = REGISTRY, out_dir: Path | str = "results/study",
          executor: Executor | None = None, data_root: str | None = None, overrides: dict | None = None,
          dry_run: bool = False, progress: bool = True, echo: Callable[[str], None] = print) -> SweepReport:
    """Run every job of `jobs` that has no current record; `dry_run` lists them and their estimated cost."""
    started = time.perf_counter()
    states, todo = plan(jobs, registry, data_root, overrides)
    report = SweepReport(skipped=[s.job for s in states if s.job not in todo])
    costs = {j: estimated_cost(j, registry) for j in todo}
    workers = getattr(executor, "workers", 1) if executor is not None else 1
    total = sum(costs.values())
    echo(f"{len(jobs)} jobs: {len(report.skipped)} have a current record, {len(todo)} to run, about "
         f"{total / 60 / max(workers, 1):.0f} min with {workers} worker(s)")
    for s in states:
        if s.state == "stale":
            echo(f"  stale: {s.job} ({s.why})")
    if dry_run:
        for j in todo:
            echo(f"  would run: {j}  (~{costs[j] / 60:.1f} min)")
        report.seconds = time.perf_counter() - started
        return report
    executor = executor or LocalExecutor(1)
    call = RunJob(str(registry), str(out_dir), data_root, tuple(sorted((overrides or {}).items())))
    bar = tqdm(total=round(total), unit="s", desc="sweep (estimated seconds of work)", disable=not progress,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]")
    for job, outcome in executor.run(todo, call):
        bar.update(round(costs[job]))
        if isinstance(outcome, BaseException):
            report.errors.append((job, f"{type(outcome).__name__}: {outcome}"))
            tqdm.write(f"error: {job}: {outcome}")
        else:
            report.ran.append(job)
            tqdm.write(f"done: {job}: {outcome['status']}, {outcome['summary']}, "
                       f"{outcome['wall_time_s'] / 60:.1f} min")
    bar.close()
    report.seconds = time.perf_counter() - started
    return report
