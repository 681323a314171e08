"""`python -m ferlib ...`: see ferlib/cli.py."""

from ferlib.cli import main

raise SystemExit(main())
