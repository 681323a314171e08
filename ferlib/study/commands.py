"""The study's commands, added to `python -m ferlib` by ferlib/cli.py:

    python -m ferlib run PAPER --method M --dataset D --fold K --preset P [--seed S] [--data-root DIR]
    python -m ferlib sweep [--papers ...] [--datasets ...] [--folds ...] [--methods ...] --preset study
                           [--jobs N] [--executor local] [--dry-run]
    python -m ferlib registry check [--preset study]
    python -m ferlib registry fingerprints [--update]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ferlib.errors import FerlibError

BOOK_PAPERS = ("ifgan", "adfl", "eifn", "ean", "tergan", "synthfer")   # the chapters whose study-preset records the book shows


def comma_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def fold_list(text: str) -> list[int]:
    try:
        folds = [int(t) for t in comma_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated fold numbers such as 0,3,7") from None
    if any(f < 0 for f in folds):
        raise argparse.ArgumentTypeError(f"{text!r}: folds are 0 or more")
    return folds


def overrides_of(items: list[str]) -> dict:
    """["epochs=3", "scale=0.2"] -> {"epochs": 3, "scale": 0.2} (values read as YAML scalars)."""
    import yaml
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise FerlibError(f"--set {item!r}: give FIELD=VALUE, e.g. --set epochs=3")
        out[name.strip()] = yaml.safe_load(value)
    return out


def add_set_argument(p) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="change one field of the preset's config (repeatable); the record keeps it, so it is "
                        "never taken for the plain preset's")


def add_registry_argument(p) -> None:
    from ferlib.study.records import REGISTRY
    p.add_argument("--registry", type=Path, default=REGISTRY, help="the results registry (default: %(default)s)")


def run_run(args) -> int:
    from ferlib.study.jobs import WORK_DIR, run_job
    from ferlib.study.records import Job, record_path
    job = Job(args.paper, args.method, args.dataset, args.fold, args.preset, args.seed)
    record = run_job(job, args.registry, args.out_dir or WORK_DIR, args.data_root, progress=True,
                     **overrides_of(args.overrides))
    print(f"{job}: {record['status']}"
          + (f" ({record['failure']})" if record["failure"] else "")
          + f"; test accuracy {100 * record['test']['acc']:.1f}% after {record['training']['epochs_run']} epochs "
          f"(best {record['training']['best_epoch']}); record {record_path(job, args.registry)}")
    return 0


def add_run(groups) -> None:
    p = groups.add_parser("run", help="train one job of the study and write its registry record",
                          description="Train one paper's method on one fold at a preset (the function a chapter "
                                      "and the sweep call) and write its record to the results registry.")
    p.add_argument("paper", help="ifgan, adfl, eifn or baseline")
    p.add_argument("--method", required=True, help="one of the paper's methods (an unknown name lists them)")
    p.add_argument("--dataset", required=True, help="synth-<preset>, or a real dataset with --data-root")
    p.add_argument("--fold", type=int, required=True, help="test fold (0-based)")
    p.add_argument("--preset", default="study", help="smoke, study or paper (default: study)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=None, help="a real dataset's prepared cache")
    p.add_argument("--out-dir", type=Path, default=None, help="checkpoints while training (default results/study)")
    add_set_argument(p)
    add_registry_argument(p)
    p.set_defaults(run=run_run)


def run_sweep(args) -> int:
    from ferlib.study.jobs import PAPERS
    from ferlib.study.sweep import make_executor, study_grid, sweep
    papers = comma_list(args.papers) if args.papers else list(BOOK_PAPERS)
    jobs = study_grid(papers, comma_list(args.datasets) if args.datasets else None, args.folds, args.preset,
                      [int(s) for s in comma_list(args.seeds)] or None,
                      comma_list(args.methods) if args.methods else None)
    if not jobs:
        raise FerlibError(f"the grid is empty: no fold of {args.datasets or 'the datasets'} matches --folds "
                          f"{args.folds} for {', '.join(papers)} (papers: {', '.join(PAPERS)})")
    report = sweep(jobs, args.registry, args.out_dir, make_executor(args.executor, args.jobs, args.threads), args.data_root,
                   overrides_of(args.overrides), dry_run=args.dry_run)
    if not args.dry_run:
        print(f"sweep: {len(report.ran)} ran, {len(report.skipped)} skipped (current record), "
              f"{len(report.errors)} errors, {report.seconds / 60:.1f} min")
    for job, error in report.errors:
        print(f"error: {job}: {error}")
    return 1 if report.errors else 0


def add_sweep(groups) -> None:
    p = groups.add_parser("sweep", help="run the study's grid of jobs (idempotent, resumable)",
                          description="Run every job of the grid that has no current record: each paper's primary "
                                      "dataset at all folds, its table datasets at 3 folds, every method (or the "
                                      "subsets given). Kill it at any time and run it again: it continues.")
    p.add_argument("--papers", default="", help=f"comma-separated (default: {','.join(BOOK_PAPERS)})")
    p.add_argument("--datasets", default="", help="comma-separated (default: each paper's table datasets)")
    p.add_argument("--folds", type=fold_list, default=None, help="comma-separated folds (default: the grid's)")
    p.add_argument("--methods", default="", help="comma-separated (default: every method of each paper)")
    p.add_argument("--seeds", default="", help="comma-separated seeds (default 0; the validity numbers 0,1,2)")
    p.add_argument("--preset", default="study", help="smoke, study or paper (default: study)")
    p.add_argument("--jobs", type=int, default=1, help="jobs at once (default 1; threads per job = cores / jobs)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per job (default: cores / jobs; fewer leave cores free for other work)")
    p.add_argument("--executor", default="local", help="local (a process pool on this machine)")
    p.add_argument("--dry-run", action="store_true", help="list the jobs to run and their estimated cost")
    p.add_argument("--data-root", default=None, help="a real dataset's prepared cache (with one --datasets)")
    p.add_argument("--out-dir", type=Path, default=Path("results") / "study", help="checkpoints of running jobs")
    add_set_argument(p)
    add_registry_argument(p)
    p.set_defaults(run=run_sweep)


def run_registry_check(args) -> int:
    from ferlib.study.sweep import plan, study_grid
    jobs = study_grid(BOOK_PAPERS, preset=args.preset)
    states, _ = plan(jobs, args.registry)
    counts = {}
    for s in states:
        counts[s.state] = counts.get(s.state, 0) + 1
        if s.state != "done":
            print(f"{s.state}: {s.job}" + (f" ({s.why})" if s.why else ""))
    print(f"registry {args.registry}: {len(states)} jobs in the book's grid at preset {args.preset}: "
          + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    stale = counts.get("stale", 0)
    if stale:
        print(f"error: {stale} records the book shows are stale: run `python -m ferlib sweep --preset {args.preset}`")
    return 1 if stale else 0


def run_registry_fingerprints(args) -> int:
    from ferlib.study import fingerprints
    if args.update:
        path = fingerprints.update_stored()
        print(f"wrote the current code's training fingerprints to {path}")
        return 0
    stored, bad = fingerprints.load_stored(), 0
    for paper, method in fingerprints.METHODS:
        now = fingerprints.training_fingerprint(paper, method)
        difference = fingerprints.compare(stored.get(f"{paper}/{method}", {}), now)
        bad += difference is not None
        print(f"{paper}/{method}: {'matches' if difference is None else difference}")
    return 1 if bad else 0


def run_registry_findings(args) -> int:
    from ferlib.io import atomic_write
    from ferlib.study.results import findings_markdown
    text = findings_markdown(preset=args.preset, registry=args.registry)
    if args.out is None:
        print(text, end="")
    else:
        atomic_write(args.out, lambda f: f.write(text.encode()))
        print(f"wrote the findings table to {args.out}")
    return 0


def add_registry(groups) -> None:
    p = groups.add_parser("registry", help="check the results registry",
                          description="Check the results registry (data_manifests/reproduced/).")
    commands = p.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser("check", help="list missing and stale records; exit 1 if the book shows a stale one")
    check.add_argument("--preset", default="study")
    add_registry_argument(check)
    check.set_defaults(run=run_registry_check)
    prints = commands.add_parser("fingerprints", help="compare (or --update) the stored training fingerprints")
    prints.add_argument("--update", action="store_true", help="rewrite data_manifests/fingerprints.json")
    prints.set_defaults(run=run_registry_fingerprints)
    found = commands.add_parser("findings", help="the introduction's findings table (markdown) from the registry")
    found.add_argument("--preset", default="study")
    found.add_argument("--out", type=Path, default=None, help="write it here (default: print it)")
    add_registry_argument(found)
    found.set_defaults(run=run_registry_findings)
    p.set_defaults(run=None, parser=p)


STUDY_COMMANDS = (add_run, add_sweep, add_registry)
