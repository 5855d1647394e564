"""home-derp: settings → HomeDerpRelay → stack outputs."""

import gc

import pulumi

from components import HomeDerpError, HomeDerpRelay, HomeDerpRelayArgs, load_settings, stack_state
from components.relay import TYPE_TOKEN

# The provider SDKs leave ~300k long-lived objects; each full collection walks them all and frees
# nothing (about 0.25 s each: bench/program_eval.py, "in GC"). Collect nothing while the program
# builds its resources, then freeze what exists so later collections skip it
# (https://docs.python.org/3/library/gc.html#gc.freeze).
gc.disable()
try:
    settings = load_settings()
    name = f"relay-{settings.region.id}"
    # A changed regionId renames the component: alias the old name so that every resource under
    # it is moved and updated in place, not created beside the old one (two derpers on one port)
    # and the old deleted (the DNS record by id): docs/architecture.md, "Changing regionId".
    state = None if settings.health_run else stack_state.resources()
    former = stack_state.former_names(state or {}, TYPE_TOKEN, name)
    relay = HomeDerpRelay(
        name,
        HomeDerpRelayArgs(settings=settings),
        opts=pulumi.ResourceOptions(aliases=[pulumi.Alias(name=n) for n in former]),
    )
except HomeDerpError as exc:
    # RunError ends the program with the message alone: the user needs the list, not a traceback.
    raise pulumi.RunError(str(exc)) from None
finally:
    gc.freeze()
    gc.enable()

outputs: dict[str, object] = {
    "hostname": relay.hostname,
    "derpPort": relay.derp_port,
    "stunPort": relay.stun_port,
    "addresses": relay.addresses,
    "derpRegion": relay.derp_region,
    "derpMapFragment": relay.derp_map_fragment,
    "certificateNotAfter": relay.certificate_not_after,
    "certificateSerial": relay.certificate_serial,
    "containerId": relay.container_id,
    "image": relay.image,
    "relayHost": relay.relay_host,
    "peerRelay": relay.peer_relay,
    "validation": relay.validation,
    "usage": relay.usage,
}
if settings.health_run:
    # A health run registers no certificate, container or peer relay, and the engine replaces
    # the stack's outputs wholesale: carry over what this run could not compute
    # (docs/architecture.md, "Health runs").
    read = stack_state.previous_outputs()
    if read is None:
        pulumi.log.warn(
            "the last deployment's outputs could not be read from the backend: outputs this "
            "health run does not compute (certificateNotAfter, containerId, image, peerRelay …) "
            "are empty until the next deploy"
        )
    previous = read or {}
    outputs = {
        name: pulumi.Output.from_input(value).apply(
            lambda value, name=name: stack_state.carry_over({name: value}, previous)[name]
        )
        for name, value in outputs.items()
    }
for name, value in outputs.items():
    pulumi.export(name, value)
