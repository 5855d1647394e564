"""A dynamic provider class renamed between two runs, through the real Pulumi engine.

The stack is deployed with the project as it is; then its copy of the code is changed the way a
maintainer renames a class (the class and its one line in components/dynamic_provider.py's
registry; no alias kept), and `destroy` runs with the changed code. The deletes that withdraw the
region and clear the peer relay unpickle the provider the stack stored: they must still find it.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.engine.stacks import Stack
from tests.engine.world import World

#: (module, class, new name): the providers whose deletes undo something outside.
RENAMES = (
    ("components/tailnet.py", "TailnetDerpRegionProvider", "DerpRegionProvider"),
    ("components/peer_relay.py", "PeerRelayServerProvider", "RelayServerProvider"),
)
REGISTRY = "components/dynamic_provider.py"


def rename_providers(project: Path) -> None:
    """Rename each class in its module and, where the registry exists, its registry entry."""
    for module, old, new in RENAMES:
        path = project / module
        path.write_text(re.sub(rf"\b{old}\b", new, path.read_text()))
        registry = project / REGISTRY
        if registry.exists():
            text = registry.read_text()
            registry.write_text(text.replace(f':{old}"', f':{new}"'))


# 6. Destroy of a stack deployed before a provider class was renamed still withdraws the region
#    (the tailnet policy is byte-equal to before) and clears the host's peer relay pref.
def test_destroy_after_a_rename(engine_world: World) -> None:
    stack = Stack.new(engine_world, "move", 913, 12313, 3413, peerRelayPort=40013)
    stack.configure()
    before = engine_world.tailscale.policy
    stack.up()
    assert engine_world.tailscale.policy != before
    assert engine_world.node.cli("get", "relay-server-port").stdout.strip() == "40013"
    rename_providers(stack.work_dir)
    reply = stack.destroy(check=False)
    assert reply["ok"], reply.get("stdout", "") + reply.get("error", "")
    assert engine_world.tailscale.policy == before
    assert engine_world.node.cli("get", "relay-server-port").stdout.strip() == ""
