"""``python -m components.netcheck HOST [options]`` in the checkout, or
``python <checkout>/components/netcheck HOST`` from any directory: see cli.py (exit codes in
``--help``)."""

import sys
from pathlib import Path

if not __package__:  # run as a directory: the checkout (two levels up) replaces this folder
    sys.path[0] = str(Path(__file__).resolve().parents[2])

from components.netcheck.startup import missing_venv

try:
    from components.netcheck.cli import main
except ModuleNotFoundError as exc:  # a Python without the project's packages (not its venv)
    sys.exit(missing_venv("netcheck", exc))

if __name__ == "__main__":
    sys.exit(main())
