"""``python -m components.netcheck HOST [options]``: see cli.py (exit codes in ``--help``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
