"""The `python -m ferlib` command line: one small argparse parser with subcommands.

    python -m ferlib data synth PRESET --out DIR [--scale S] [--size PX] [--seed N]
    python -m ferlib data manifest DATASET --root DIR --protocol PAPER [--out FILE.csv]
    python -m ferlib data align PATH --out DIR --protocol PAPER
    python -m ferlib data prepare DATASET --root DIR --protocol PAPER --cache DIR
    python -m ferlib run | sweep | registry ...   (the study's commands: ferlib/study/commands.py)

Each subcommand is a function `add_<group>_<name>(subparsers)` that adds its parser and sets
`run=<function(args) -> int>`; list it in `DATA_COMMANDS` (or a new group in `build_parser`).
A `FerlibError` is printed as `error: <message>` on stderr with exit code 2, no traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ferlib.errors import FerlibError

EXIT_USER_ERROR = 2


def run_data_synth(args: argparse.Namespace) -> int:
    from ferlib.data import synth

    data = synth.generate(args.preset, scale=args.scale, size=args.size, seed=args.seed, progress=True)
    try:
        out = synth.write(data, args.out)
    except OSError as e:
        raise FerlibError(f"cannot write SynthFER to {args.out}: {e.strerror or e}; choose another --out folder") from None
    size = data.images.shape[1]
    print(f"wrote {len(data.manifest)} PNGs of SynthFER {args.preset} (scale {args.scale:g}, {size} px, "
          f"seed {args.seed}) under {args.out}, listed in {out}")
    return 0


def positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def add_data_synth(subparsers) -> None:
    p = subparsers.add_parser(
        "synth", help="render a SynthFER preset and write it as PNGs + manifest.csv",
        description="Render a SynthFER preset and write its images as PNGs plus manifest.csv under --out.")
    p.add_argument("preset", help="SynthFER preset, e.g. ckplus, rafdb or tiny (an unknown name lists them all)")
    p.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    p.add_argument("--scale", type=positive_float, default=1.0, help="fraction of the preset's subjects (default 1.0)")
    p.add_argument("--size", type=positive_int, default=None,
                   help="image side in pixels (default: the preset's own, 64; 48 for ferplus)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(run=run_data_synth)


def dataset_manifest(dataset: str, root, scale: float, seed: int):
    """(manifest, findings table) of a real dataset's root, or of SynthFER (a written folder or in memory)."""
    import pandas as pd

    from ferlib.data.manifest import read_manifest
    from ferlib.data.registry import SYNTH_PREFIX, base_name, check_dataset_name
    check_dataset_name(dataset)
    if dataset.startswith(SYNTH_PREFIX):
        if root is not None:
            return read_manifest(Path(root) / "manifest.csv"), pd.DataFrame(columns=["path", "problem"])
        from ferlib.data import synth
        return synth.generate(base_name(dataset), scale=scale, size=16, seed=seed).manifest, pd.DataFrame(
            columns=["path", "problem"])
    if root is None:
        raise FerlibError(f"{dataset} is a real dataset: give --root, the folder of your copy")
    from ferlib.data.adapters import scan
    result = scan(dataset, root)
    return result.manifest, result.report()


def print_findings(findings, limit: int = 10) -> None:
    if len(findings) == 0:
        print("findings: none (every file was used)")
        return
    kinds = findings["problem"].str.split(":").str[0].value_counts()
    print(f"findings: {len(findings)} ({', '.join(f'{n} {k}' for k, n in kinds.items())}); the first {min(limit, len(findings))}:")
    for row in findings.head(limit).itertuples():
        print(f"  {row.path}: {row.problem}")


def print_counts(selected, protocol) -> None:
    from ferlib.data.protocols import check_counts, class_fold_table
    print(protocol.describe())
    with with_pandas_display():
        print("\nimages per class and fold" + ("" if protocol.synthetic else " (expected: the paper's numbers on the real data)"))
        print(class_fold_table(selected, protocol).to_string())
        counts = check_counts(selected, protocol)
        print("\ntotals")
        print(counts.to_string())
    off = counts["difference"].dropna()
    off = off[off != 0]
    if len(off):
        print(f"\nwarning: {', '.join(f'{q} differ by {int(d):+d}' for q, d in off.items())} from the paper's "
              "numbers; the findings above say what was skipped")


def with_pandas_display():
    import pandas as pd
    return pd.option_context("display.width", 200, "display.max_columns", 30)


def run_data_manifest(args: argparse.Namespace) -> int:
    from ferlib.data.manifest import write_manifest
    from ferlib.data.protocols import apply_protocol, load_protocol
    protocol = load_protocol(args.protocol, args.dataset)
    manifest, findings = dataset_manifest(args.dataset, args.root, args.scale, args.seed)
    print(f"{args.dataset}: {len(manifest)} images in {manifest['sequence'].nunique()} sequences of "
          f"{manifest['subject'].nunique()} subjects")
    print_findings(findings)
    selected = apply_protocol(manifest, protocol, seed=args.seed)
    print_counts(selected, protocol)
    if args.out is not None:
        write_manifest(selected, args.out)
        print(f"\nwrote {len(selected)} rows to {args.out}")
    return 0


def run_data_align(args: argparse.Namespace) -> int:
    from ferlib.data.align_files import align_files
    align_files(args.path, args.out, args.protocol)
    return 0


def run_data_prepare(args: argparse.Namespace) -> int:
    from ferlib.data.prepare import load_prepared, prepare
    from ferlib.data.protocols import apply_protocol, load_protocol
    cache = prepare(args.dataset, args.root, args.protocol, args.cache, scale=args.scale, seed=args.seed)
    prepared = load_prepared(cache)
    protocol = load_protocol(args.protocol, args.dataset)
    print_counts(apply_protocol(prepared.manifest, protocol, seed=args.seed), protocol)
    statuses = prepared.manifest["align_status"].value_counts()
    print(f"\nalignment: {', '.join(f'{n} {s}' for s, n in statuses.items())}; "
          f"{len(prepared.report)} rows in {Path(cache) / 'report.csv'}")
    return 0


def add_dataset_arguments(p, root_help: str) -> None:
    p.add_argument("dataset", help="ckplus, mmi, oulu, bu3dfe, bu4dfe, rafdb, ferplus, or synth-<preset> (an unknown "
                                   "name lists them all)")
    p.add_argument("--root", type=Path, default=None, help=root_help)
    p.add_argument("--protocol", required=True, help="paper whose protocol applies: ifgan, adfl, eifn, ean, tergan "
                                                     "(or baseline)")
    p.add_argument("--scale", type=positive_float, default=1.0, help="SynthFER only: fraction of the preset's subjects")
    p.add_argument("--seed", type=int, default=0, help="seed for SynthFER and seeded splits (default 0)")


LAYOUT_HELP = ("the folder of your unmodified copy of the dataset, as its owners distribute it (see "
               "data_manifests/datasets/<name>.yaml or the book's 'Bring your own data'); for synth-<preset>, a folder "
               "written by `data synth`, or leave it out to render in memory")


def add_data_manifest(subparsers) -> None:
    p = subparsers.add_parser(
        "manifest", help="list a dataset under a paper's protocol: counts per class and fold, CSV",
        description="Read a dataset in its owners' layout, apply a paper's protocol (frames, classes, folds), print "
                    "counts per class and fold next to the paper's, and optionally write the manifest CSV.")
    add_dataset_arguments(p, LAYOUT_HELP)
    p.add_argument("--out", type=Path, default=None, help="write the protocol's manifest CSV here")
    p.set_defaults(run=run_data_manifest)


def add_data_align(subparsers) -> None:
    p = subparsers.add_parser(
        "align", help="detect faces (MTCNN) and align them to a paper's geometry",
        description="Align one image, or every image under a folder, to a paper's face geometry. Writes the aligned "
                    "crop (PNG) and a JSON sidecar (box, five landmarks, score) per image, and report.csv listing "
                    "images with no face or several faces.")
    p.add_argument("path", type=Path, help="an image file or a folder (searched recursively)")
    p.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    p.add_argument("--protocol", required=True, help="paper whose geometry applies: ifgan, adfl, eifn, ean, tergan")
    p.set_defaults(run=run_data_align)


def add_data_prepare(subparsers) -> None:
    p = subparsers.add_parser(
        "prepare", help="manifest + face alignment + uint8 cache in one resumable go",
        description="Read the dataset, apply the paper's protocol, align every selected image and store the uint8 "
                    "cache in --cache. Idempotent and resumable: run it again after an interruption and it "
                    "continues. Notebooks then take -p data_root <the cache folder>.")
    add_dataset_arguments(p, LAYOUT_HELP)
    p.add_argument("--cache", required=True, type=Path, help="folder for the prepared cache (created if missing)")
    p.set_defaults(run=run_data_prepare)


DATA_COMMANDS = (add_data_synth, add_data_manifest, add_data_align, add_data_prepare)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ferlib", description="ferlib: the reproducibility study's command line.")
    groups = parser.add_subparsers(dest="group", metavar="COMMAND")
    data = groups.add_parser("data", help="generate and prepare datasets",
                             description="Generate SynthFER and prepare datasets.")
    data_commands = data.add_subparsers(dest="command", metavar="COMMAND")
    for add in DATA_COMMANDS:
        add(data_commands)
    data.set_defaults(run=None, parser=data)
    from ferlib.study.commands import STUDY_COMMANDS
    for add in STUDY_COMMANDS:
        add(groups)
    parser.set_defaults(run=None, parser=parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; return the exit code (0 ok, 2 user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.run is None:  # a group without its command: show what there is
        args.parser.print_help(sys.stderr)
        return EXIT_USER_ERROR
    try:
        return args.run(args)
    except FerlibError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
