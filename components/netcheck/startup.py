"""Starting a command-line tool of the project: from any directory, and a clear word when the
Python running it lacks the project's packages (stdlib only: it runs before they are imported)."""

from __future__ import annotations

import sys
from pathlib import Path

#: The checkout: components/netcheck/startup.py is three levels below it.
CHECKOUT = Path(__file__).resolve().parents[2]


def missing_venv(tool: str, exc: ModuleNotFoundError) -> int:
    """Say which command creates the venv ``tool`` needs; the exit status "could not run" (3)."""
    print(
        f"python -m components.{tool}: error: this Python ({sys.executable}) lacks "
        f"{exc.name!r}: create the project's virtualenv once (cd {CHECKOUT} && python3 -m venv "
        f"venv && venv/bin/pip install -r requirements.txt), then run venv/bin/python -m "
        f"components.{tool}",
        file=sys.stderr,
    )
    return 3
