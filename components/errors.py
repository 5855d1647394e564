"""The root of home-derp's own errors, so callers catch what the project raises and nothing else.

Every error the program raises on purpose derives from :class:`HomeDerpError`; its message is what
the user reads (what is wrong, where, and the fix). The leaf packages keep their own roots because
they import nothing of the project (docs/architecture.md, "Leaves"): ``components.hujson`` has
``HuJSONError`` and ``components.netcheck`` has ``NetcheckError``. Code that calls a leaf catches
the leaf's root and, where the user needs it, re-raises one of these with the context added.
"""

from __future__ import annotations


class HomeDerpError(Exception):
    """Base of every error home-derp raises on purpose; the message is for the user."""
