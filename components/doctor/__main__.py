"""``python -m components.doctor``: see components/doctor/__init__.py."""

import sys

from components.doctor.cli import main

sys.exit(main())
