"""Adoption of an existing DNS record, through the real Pulumi engine and the Cloudflare API peer.

What is "ours" is this stack's state, not a comment in Cloudflare that anyone can edit: a record
the state holds is never imported again (an import of a resource already in state is an
import-replacement, whose delete removes the very record: docs/upstream/pulumi.md#import), and
a record the state does not hold is adopted, also when it carries this stack's own comment
(the state was lost, `pulumi stack rm --force`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from components import naming
from components.dns_adoption import record_comment
from tests.engine.stacks import Stack, changes
from tests.engine.world import RELAY_IPV6, World
from tests.peers.cloudflare_api import PeerRecord

HAND_MADE = "2409:8a00:1a2b:3c40::99"


@pytest.fixture(scope="module")
def stack(engine_world: World) -> Iterator[Stack]:
    stack = Stack.new(engine_world, "adopt", 912, 12312, 3412)
    stack.configure()
    yield stack
    stack.destroy(check=False)


def the_record(world: World, stack: Stack) -> PeerRecord:
    records = world.cloudflare.records_of(stack.hostname)
    assert len(records) == 1, records
    return records[0]


def record_urn_state(stack: Stack) -> dict[str, object]:
    found = [r for r in stack.resources() if r["type"] == "cloudflare:index/dnsRecord:DnsRecord"]
    assert len(found) == 1, found
    return dict(found[0])


# 5a. A hand-made record for the relay's name is imported once, then updated to home-derp's
#     settings in the same `up`; the next `up` imports nothing.
def test_existing_record_is_imported_once(stack: Stack, engine_world: World) -> None:
    hand = engine_world.cloudflare.add_record(
        engine_world.zone_id, "AAAA", stack.hostname, HAND_MADE, ttl=300, comment="my derper"
    )
    first = stack.up()
    record = the_record(engine_world, stack)
    assert record.id == hand.id
    assert (record.content, record.ttl) == (RELAY_IPV6, 60)
    assert record.comment == record_comment(stack.name, stack.region)
    assert changes(first).get("import") == 1
    assert record_urn_state(stack)["id"] == hand.id
    assert changes(stack.up()) == {}


# 5b. A record of ours whose comment someone changed is not imported again, and so not deleted:
#     `up` leaves it to the state, and the weekly `up --refresh` sees the drift and writes our
#     comment back (an update, not an import).
def test_edited_comment_is_not_reimported(stack: Stack, engine_world: World) -> None:
    record = the_record(engine_world, stack)
    record.comment = "edited by hand"
    plain = stack.up()
    assert changes(plain) == {}, plain["stdout"]
    assert the_record(engine_world, stack).id == record.id
    refreshed = stack.up(refresh=True)
    after = the_record(engine_world, stack)
    assert after.id == record.id
    assert after.comment == record_comment(stack.name, stack.region)
    assert changes(refreshed) == {"update": 1}, refreshed["stdout"]


# 5c. The state lost (`stack rm --force`) and the host rebuilt (no containers): `up` adopts the
#     record that carries this stack's comment instead of colliding with it. (The region left in
#     the tailnet policy is taken over as the README says: home-derp:adoptRegion.)
def test_lost_state_adopts_instead_of_colliding(stack: Stack, engine_world: World) -> None:
    record = the_record(engine_world, stack)
    stack.run("stack_rm", force=True)
    region, code = stack.region, stack.code
    engine_world.docker(
        "rm", "-f", naming.container_name(region, code), naming.state_owner_name(region, code)
    )
    stack.configure(adoptRegion=True)
    reply = stack.up()
    assert changes(reply).get("import") == 1, reply["stdout"]
    after = the_record(engine_world, stack)
    assert after.id == record.id


# 5d. A changed regionId renames the component, and so every resource under it: the component's
#     old name is its alias, so every resource is moved and updated in place. The record is not
#     imported again (whose end-of-update delete removed it by id), and the derper container is
#     replaced in place, old first (it keeps the same ports: two derpers side by side cannot
#     both bind them).
def test_region_change_moves_everything_in_place(stack: Stack, engine_world: World) -> None:
    record = the_record(engine_world, stack)
    stack.region = 929
    stack.configure()
    reply = stack.up()
    done = changes(reply)
    assert "import" not in done and "create" not in done, reply["stdout"]
    after = the_record(engine_world, stack)
    assert after.id == record.id
    assert after.comment == record_comment(stack.name, 929)
    assert str(record_urn_state(stack)["urn"]).endswith("::relay-929-aaaa")
    running = engine_world.docker("ps", "--format", "{{.Names}}").stdout.split()
    assert naming.container_name(929, stack.code) in running
    assert naming.container_name(912, stack.code) not in running
    assert changes(stack.up()) == {}
