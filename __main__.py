"""home-derp: settings → HomeDerpRelay → stack outputs."""

import gc

import pulumi

from components import HomeDerpError, HomeDerpRelay, HomeDerpRelayArgs, load_settings

# The provider SDKs leave ~300k long-lived objects; each full collection walks them all and frees
# nothing (about 0.25 s each: bench/program_eval.py, "in GC"). Collect nothing while the program
# builds its resources, then freeze what exists so later collections skip it
# (https://docs.python.org/3/library/gc.html#gc.freeze).
gc.disable()
try:
    settings = load_settings()
    relay = HomeDerpRelay(f"relay-{settings.region.id}", HomeDerpRelayArgs(settings=settings))
except HomeDerpError as exc:
    # RunError ends the program with the message alone: the user needs the list, not a traceback.
    raise pulumi.RunError(str(exc)) from None
finally:
    gc.freeze()
    gc.enable()

pulumi.export("hostname", relay.hostname)
pulumi.export("derpPort", relay.derp_port)
pulumi.export("stunPort", relay.stun_port)
pulumi.export("addresses", relay.addresses)
pulumi.export("derpRegion", relay.derp_region)
pulumi.export("derpMapFragment", relay.derp_map_fragment)
pulumi.export("certificateNotAfter", relay.certificate_not_after)
pulumi.export("certificateSerial", relay.certificate_serial)
pulumi.export("containerId", relay.container_id)
pulumi.export("image", relay.image)
pulumi.export("relayHost", relay.relay_host)
pulumi.export("peerRelay", relay.peer_relay)
pulumi.export("validation", relay.validation)
pulumi.export("usage", relay.usage)
