"""The policy pack the Pulumi CLI runs: ``pulumi preview --policy-pack policy``.

The CLI starts ``python -m pulumi.policy <engine> policy/``, which runs this file with only
``policy/`` on ``sys.path``. The rules are imported as the ``policy`` package (as the tests do), so
the repository root goes on the path first. Constructing ``PolicyPack`` starts the analyzer's gRPC
server and blocks: nothing may import this module.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack

from policy.rules import POLICIES

PolicyPack(
    name="home-derp",
    # Each rule sets its own level (mandatory or advisory); this is the fallback.
    enforcement_level=EnforcementLevel.ADVISORY,
    policies=list(POLICIES),
)
