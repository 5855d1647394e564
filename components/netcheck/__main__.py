"""``python -m components.netcheck HOST [options]`` in the checkout, or
``python <checkout>/components/netcheck HOST`` from any directory: see cli.py (exit codes in
``--help``)."""

import sys
from pathlib import Path

if not __package__:  # run as a directory: the checkout (two levels up) replaces this folder
    sys.path[0] = str(Path(__file__).resolve().parents[2])

try:
    from components.netcheck.cli import main
except ModuleNotFoundError as exc:  # a Python without the project's packages (not its venv)
    root = Path(__file__).resolve().parents[2]
    print(
        f"python -m components.netcheck: error: this Python ({sys.executable}) lacks "
        f"{exc.name!r}: create the project's virtualenv once (cd {root} && python3 -m venv venv "
        "&& venv/bin/pip install -r requirements.txt), then run venv/bin/python -m "
        "components.netcheck",
        file=sys.stderr,
    )
    sys.exit(3)

if __name__ == "__main__":
    sys.exit(main())
