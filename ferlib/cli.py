"""The `python -m ferlib` command line: one small argparse parser with subcommands.

    python -m ferlib data synth PRESET --out DIR [--scale S] [--size PX] [--seed N]

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


DATA_COMMANDS = (add_data_synth,)  # the real-datasets issue adds manifest, align, prepare here


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
