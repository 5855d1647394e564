"""What a person reads when `pulumi up` fails, as the real CLI prints it.

Config errors (the CLI's own checks of Pulumi.yaml's typed keys, and the program's rules) and the
failures of the dynamic providers — a provider error, a red gate, a failed validation in ``warn``
mode — each start with the diagnosis, with no Python traceback and no internal frame.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from components import derpmap, naming
from tests.engine.stacks import Stack
from tests.engine.world import World


def cli_text(reply: dict[str, object]) -> str:
    return "".join(str(reply.get(k) or "") for k in ("stdout", "stderr", "error"))


def error_lines(text: str) -> list[str]:
    """The lines the CLI prints as ``error: …``, first line of each."""
    return [line.strip() for line in text.splitlines() if line.strip().startswith("error: ")]


#: The engine's own lines when a resource fails (their order against ours varies from run to run).
ENGINE_LINES = ("error: update failed", "error: Resource monitor has terminated")


def our_errors(text: str) -> list[str]:
    """The error lines the program and its providers wrote (the engine's own left out)."""
    return [line for line in error_lines(text) if not line.startswith(ENGINE_LINES)]


@pytest.fixture(scope="module")
def config_stack(engine_world: World) -> Stack:
    """A stack that never gets past its config: nothing is ever created."""
    return Stack.new(engine_world, "conf", 916, 12316, 3416)


# 8a. A required key (no default in Pulumi.yaml) that the stack does not set stops the CLI before
#     the program runs, naming the key.
def test_missing_required_key(config_stack: Stack) -> None:
    config_stack.configure()
    config_stack.run("config", remove_config=["home-derp:hostname"])
    reply = config_stack.up(check=False)
    assert not reply["ok"]
    text = cli_text(reply)
    # The CLI names the key without its namespace.
    assert (
        "error: validating stack config: Stack 'conf' is missing configuration value 'hostname'"
        in text
    ), text
    assert "Traceback" not in text
    assert config_stack.resources() == []


# 8b. A value of the wrong type for a typed key is the CLI's own error, before the program runs.
def test_wrong_type(config_stack: Stack) -> None:
    config_stack.configure(derpPort="twelve")
    reply = config_stack.up(check=False)
    text = cli_text(reply)
    assert not reply["ok"]
    assert (
        "error: validating stack config: Stack 'conf' with configuration key 'derpPort' must be "
        "of type 'integer'" in text
    ), text
    assert "Traceback" not in text
    assert config_stack.resources() == []


# 8c. A value the types allow but a rule of the program refuses: the program's list of problems,
#     nothing deployed, no traceback.
def test_program_rule(config_stack: Stack) -> None:
    config_stack.configure(regionId=800)
    reply = config_stack.up(check=False)
    text = cli_text(reply)
    assert not reply["ok"]
    assert "error: home-derp: 1 problem(s) in the stack config (nothing was deployed):" in text
    assert "home-derp:regionId = '800'" in text, text
    assert "Traceback" not in text
    assert [r for r in config_stack.resources() if r["type"] != "pulumi:pulumi:Stack"] == []


@pytest.fixture(scope="module")
def errors(engine_world: World) -> Iterator[Stack]:
    stack = Stack.new(engine_world, "errors", 914, 12314, 3414)
    stack.configure()
    yield stack
    engine_world.docker("start", naming.container_name(914, "errors"), check=False)
    stack.configure()
    stack.destroy(check=False)


# 24.2a A provider error (the region's id is taken by a region this stack did not create) reads as
#       the provider's diagnosis, first line first.
def test_provider_error_is_the_diagnosis(errors: Stack, engine_world: World) -> None:
    before = engine_world.tailscale.policy
    foreign = derpmap.region_to_dict(
        derpmap.home_region(
            region_id=914, region_code="mine", region_name="Mine", hostname="derp.other.test",
            derp_port=443, stun_port=3478, ipv4=None, ipv6=None, pin_ipv6=False,
        )
    )  # fmt: skip
    engine_world.tailscale.edit(
        derpmap.splice_region(before, foreign, omit_default_regions=False).text
    )
    try:
        reply = errors.up(check=False)
    finally:
        engine_world.tailscale.edit(before)
    text = cli_text(reply)
    assert not reply["ok"]
    assert "Traceback" not in text and "tailnet.py" not in text, text
    assert (
        "error: the tailnet policy already has derpMap region 914 and this stack did not create it"
        in our_errors(text)[0]
    ), error_lines(text)


# 24.2b A red gate (derper stopped) and 24.2c a failed validation in `warn` mode read as the
#       diagnosis: which checks failed and what happened to the region.
def test_red_gate_and_warn_are_the_diagnosis(errors: Stack, engine_world: World) -> None:
    errors.configure()
    errors.up()
    engine_world.docker("stop", naming.container_name(914, "errors"))
    errors.configure(validateTimeout=3, validateNonce="red")
    red = errors.up(check=False)
    text = cli_text(red)
    assert not red["ok"]
    assert "Traceback" not in text and "gate.py" not in text, text
    # The first error of ours is the cause validation found: derper's container is not running.
    ours = our_errors(text)
    container = naming.container_name(914, "errors")
    assert ours[0].startswith(f"error: derper's container {container} is not running"), ours
    assert f"relay {errors.hostname} failed 2 of 6 checks" in text
    assert "The region was drained" in text
    errors.configure(validateTimeout=3, validateNonce="warn", validate="warn")
    warned = errors.up()
    text = cli_text(warned)
    assert "the relay is NOT healthy" in text and "Traceback" not in text, text
