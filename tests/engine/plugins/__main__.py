"""``python -m tests.engine.plugins <name>``: serve the provider plugin ``<name>``."""

from __future__ import annotations

import importlib
import sys

from tests.engine.plugins import serve

if __name__ == "__main__":
    module = importlib.import_module(f"tests.engine.plugins.{sys.argv[1]}")
    serve(module.PROVIDER())
