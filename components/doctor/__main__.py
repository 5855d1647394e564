"""``python -m components.doctor`` in the checkout, or ``python <checkout>/components/doctor``
from any directory: see components/doctor/__init__.py."""

import sys
from pathlib import Path

if not __package__:  # run as a directory: the checkout (two levels up) replaces this folder
    sys.path[0] = str(Path(__file__).resolve().parents[2])

from components.netcheck.startup import missing_venv

try:
    from components.doctor.cli import main
except ModuleNotFoundError as exc:  # a Python without the project's packages (not its venv)
    sys.exit(missing_venv("doctor", exc))

sys.exit(main())
