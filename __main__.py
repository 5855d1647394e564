"""home-derp: settings → HomeDerpRelay → stack outputs."""

import pulumi

from components import HomeDerpError, HomeDerpRelay, HomeDerpRelayArgs, load_settings

try:
    settings = load_settings()
    relay = HomeDerpRelay(f"relay-{settings.region.id}", HomeDerpRelayArgs(settings=settings))
except HomeDerpError as exc:
    # RunError ends the program with the message alone: the user needs the list, not a traceback.
    raise pulumi.RunError(str(exc)) from None

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
