"""``python -m components.doctor`` in the checkout, or ``python <checkout>/components/doctor``
from any directory: see components/doctor/__init__.py."""

import sys
from pathlib import Path

if not __package__:  # run as a directory: the checkout (two levels up) replaces this folder
    sys.path[0] = str(Path(__file__).resolve().parents[2])

try:
    from components.doctor.cli import main
except ModuleNotFoundError as exc:  # a Python without the project's packages (not its venv)
    root = Path(__file__).resolve().parents[2]
    print(
        f"python -m components.doctor: error: this Python ({sys.executable}) lacks {exc.name!r}: "
        f"create the project's virtualenv once (cd {root} && python3 -m venv venv && "
        "venv/bin/pip install -r requirements.txt), then run venv/bin/python -m components.doctor",
        file=sys.stderr,
    )
    sys.exit(3)

sys.exit(main())
