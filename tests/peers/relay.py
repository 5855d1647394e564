"""A whole relay on loopback: faithful DERP over TLS + strict STUN + a DNS server naming it.

``local_relay()`` is the "good relay" (verification on, a trusted chain from ``ca_file``);
its keyword arguments make the "broken relay" variants. Everything listens on 127.0.0.1 and
::1 with one port per service; the certificate names ``hostname`` (derp.test), so probes
connect to the loopback addresses with SNI = hostname, exactly as a pinned derpMap node would.
"""

from __future__ import annotations

import contextlib
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from nacl.public import PrivateKey

from components.netcheck import RelayTarget
from components.netcheck.derp import EvidenceSource
from tests.peers.aio import BackgroundLoop, background_loop
from tests.peers.certs import Pki, make_pki
from tests.peers.derp_server import DerpServer
from tests.peers.dns_server import DnsServer, dns_server
from tests.peers.ports import LOOPBACKS, bind_same_port, free_port
from tests.peers.stun_server import StrictStunServer, stun_server

CertVariant = Literal["good", "soon", "expired", "wrong_name", "self_signed", "none"]
StunMode = Literal["strict", "silent", "closed"]


@dataclass(frozen=True)
class LocalRelay:
    hostname: str
    derp_port: int
    stun_port: int
    ca_file: str
    addresses: tuple[str, ...]  # ("127.0.0.1", "::1")
    resolver: str  # "127.0.0.1:PORT" of a DNS server answering hostname → addresses
    server_public_key: str  # 64 hex
    derp: DerpServer
    stun: StrictStunServer | None
    dns: DnsServer
    pki: Pki

    def target(self, **overrides: Any) -> RelayTarget:
        """RelayTarget probing this relay (addresses pinned, CA trusted); override any field."""
        base = RelayTarget(
            hostname=self.hostname,
            derp_port=self.derp_port,
            stun_port=self.stun_port,
            addresses=self.addresses,
            ca_file=self.ca_file,
        )
        return replace(base, **overrides)

    def evidence(self, wait: float = 2.0) -> EvidenceSource:
        """derper's own verdict on the probe's key, from the server's log (DerpServer.evidence)."""
        return self.derp.evidence(wait)

    def cli_args(self) -> list[str]:
        """The same target as CLI arguments for ``python -m components.netcheck``."""
        args = [self.hostname, "--derp-port", str(self.derp_port)]
        args += ["--stun-port", str(self.stun_port), "--ca-file", self.ca_file]
        for a in self.addresses:
            args += ["--address", a]
        return args


@contextmanager
def local_relay(
    *,
    hostname: str = "derp.test",
    verify_clients: bool = True,
    allowed_keys: tuple[bytes, ...] = (),
    cert: CertVariant = "good",
    sni_check: bool = True,
    fault: str | None = None,
    stun: StunMode = "strict",
    stun_mapped: tuple[str, int] | None = None,
    private_key: PrivateKey | None = None,
    pki: Pki | None = None,
    addresses: tuple[str, ...] = LOOPBACKS,
    bg: BackgroundLoop | None = None,
) -> Iterator[LocalRelay]:
    """Start a relay; yields LocalRelay. ``cert="none"`` serves plain HTTP on the DERP port
    (derper on a custom port without -certmode manual). ``stun="silent"`` drops STUN,
    ``stun="closed"`` has no STUN listener (ICMP port unreachable). ``fault``: see
    tests.peers.derp_server.FAULTS."""
    with contextlib.ExitStack() as stack:
        loop = bg or stack.enter_context(background_loop())
        key = private_key or PrivateKey.generate()
        if pki is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="netcheck-pki-"))
            pki = make_pki(Path(tmp), hostname, bytes(key.public_key))
        files = pki.files(cert) if cert != "none" else None
        server = DerpServer(
            hostname=hostname,
            private_key=key,
            cert_file=files.cert_file if files else None,
            key_file=files.key_file if files else None,
            verify_clients=verify_clients,
            allowed_keys=allowed_keys,
            sni_check=sni_check,
            fault=fault,
        )
        socks = bind_same_port(addresses, socket.SOCK_STREAM)
        loop.run(server.start(socks))
        stack.callback(lambda: loop.run(server.stop()))
        stun_peer: StrictStunServer | None = None
        if stun == "closed":
            stun_port = free_port(addresses, socket.SOCK_DGRAM)
        else:
            stun_peer = stack.enter_context(
                stun_server(
                    bind_same_port(addresses, socket.SOCK_DGRAM),
                    mapped=stun_mapped,
                    silent=stun == "silent",
                )
            )
            stun_port = stun_peer.port
        dns = stack.enter_context(dns_server())
        dns.set_addresses(hostname, list(addresses))
        yield LocalRelay(
            hostname=hostname,
            derp_port=int(socks[0].getsockname()[1]),
            stun_port=stun_port,
            ca_file=pki.ca_file,
            addresses=tuple(addresses),
            resolver=dns.spec,
            server_public_key=server.public_key.hex(),
            derp=server,
            stun=stun_peer,
            dns=dns,
            pki=pki,
        )
