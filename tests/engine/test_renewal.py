"""Certificate renewal through the real Pulumi engine and the real dockerd (scenario 7).

The `up` after a certificate became due renews it in place (the ACME provider's diff), re-runs the
init container into the certificate volume while derper keeps serving, then restarts derper's
container — not a new container: the same id, volumes and server key — and validation probes the
relay afterwards. How long DERP and STUN are down is a figure, not an assertion:
bench/renewal_downtime.py prints it.
"""

from __future__ import annotations

import ssl

from cryptography import x509

from tests.engine.renewal import VALIDITY_DAYS, renew
from tests.engine.world import RELAY_IPV6, World


def served_serial(world: World, hostname: str, port: int) -> int:
    """The serial of the certificate derper serves now (a TLS handshake from the relay host)."""
    import socket

    from tests.peers.netns import run_in_netns

    def handshake() -> bytes:
        context = ssl.create_default_context(cafile=str(world.ca_bundle))
        with (
            socket.create_connection((RELAY_IPV6, port), 5) as raw,
            context.wrap_socket(raw, server_hostname=hostname) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            return der

    return int(
        x509.load_der_x509_certificate(run_in_netns(world.relay.name, handshake)).serial_number
    )


# 7. A due certificate is renewed by `up`: derper serves the new one from the same container
#    (restarted, not re-created), keeps its server key, and validation judged it afterwards.
def test_renewal_restarts_derper_with_the_new_certificate(engine_world: World) -> None:
    r = renew(engine_world, "renew", 917, 12317, 3417)
    try:
        old, new = r.before["certificateSerial"], r.after["certificateSerial"]
        assert old != new
        assert served_serial(engine_world, r.stack.hostname, 12317) == int(new)
        assert r.container_after["Id"] == r.container_before["Id"]
        assert r.container_after["State"]["StartedAt"] != r.container_before["State"]["StartedAt"]
        # Replaced: the init container. Updated: certificate, derper's restart, validation, gate.
        # certificate, restart, validation, usage (a run recorded), gate; the init container
        assert r.changes == {"replace": 1, "update": 5}, r.stdout
        assert "relay-917-init" in r.stdout and "relay-917-derper-restart" in r.stdout
        validation = r.after["validation"]
        assert validation["healthy"] is True
        assert validation["certificateDaysLeft"] in (VALIDITY_DAYS - 1, VALIDITY_DAYS)
        assert validation["serverPublicKey"] == r.before["validation"]["serverPublicKey"]
        assert r.derp_down < float("inf") and r.stun_down < float("inf")  # both came back
    finally:
        r.stack.destroy(check=False)
