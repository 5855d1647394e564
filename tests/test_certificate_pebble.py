"""The certificate chain home-derp deploys verifies for a real client when a real ACME CA issues it.

Pebble (Let's Encrypt's RFC 8555 test CA) runs locally on 127.0.0.1; a minimal ACME client built
on certbot's ``acme`` library registers an account, orders ``derp.test`` with an ECDSA P-256 CSR
(like components/certificate.py), answers dns-01, finalizes and downloads the PEM chain. The chain
is split the way lego (pulumiverse_acme's backend) does — ``certificate_pem`` = first block,
``issuer_pem`` = the rest — and joined by the product's ``full_chain``; the faithful DERP server
(tests/peers) serves that file over TLS and the product's netcheck verifies it against pebble's
root alone.

Real: the ACME protocol and CA (accounts, orders, finalization, a root → intermediate → leaf
chain pebble signs), TLS, the product's chain assembly and netcheck. Faked: challenge validation —
``PEBBLE_VA_ALWAYS_VALID`` grants the dns-01 authorization without a lookup, because no public
DNS (nor Cloudflare) exists here. Loopback only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import josepy as jose
import pytest
from acme import challenges, messages
from acme import client as acme_client
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from nacl.public import PrivateKey

from components.certificate import full_chain
from components.netcheck import RelayTarget, check_relay
from components.netcheck.report import Report
from tests.peers.aio import BackgroundLoop, background_loop
from tests.peers.derp_server import DerpServer
from tests.peers.pebble import pebble_ca, pebble_root_pem
from tests.peers.ports import bind_same_port
from tests.peers.stun_server import stun_server

HOSTNAME = "derp.test"
LOOPBACK = ("127.0.0.1",)
PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\s*", re.S)


@dataclass(frozen=True)
class Issued:
    certificate_pem: str  # lego's certificate_pem: the leaf
    issuer_pem: str  # lego's issuer_pem: everything after the leaf
    key_file: str  # the CSR's private key (ECDSA P-256)
    root_file: str  # pebble's root for this run: the only trust anchor given to the client
    directory: Path


def _csr(key: ec.EllipticCurvePrivateKey, hostname: str) -> bytes:
    """What tls.CertRequest makes in components/certificate.py: CN + one DNS SAN."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def _issue(directory_url: str, server_ca_file: str, csr_pem: bytes) -> str:
    """RFC 8555 with certbot's acme: account, order, dns-01, finalize; returns the PEM chain."""
    account = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = acme_client.ClientNetwork(account, alg=jose.ES256, user_agent="home-derp-tests")
    # requests takes a CA bundle path for verify; acme types it as bool.
    net.verify_ssl = server_ca_file  # type: ignore[assignment]
    net.session.trust_env = False  # pebble is on loopback: no proxies, no REQUESTS_CA_BUNDLE
    with contextlib.closing(net.session):
        client = acme_client.ClientV2(acme_client.ClientV2.get_directory(directory_url, net), net)
        client.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
        order = client.new_order(csr_pem)
        for authz in order.authorizations:
            if authz.body.status == messages.STATUS_VALID:  # pebble reuses authorizations
                continue
            dns01 = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01))
            # The TXT value lego would publish at _acme-challenge.derp.test (unchecked here).
            response, _txt = dns01.response_and_validation(account)
            client.answer_challenge(dns01, response)
        deadline = dt.datetime.now() + dt.timedelta(seconds=10)
        done = client.poll_and_finalize(order, deadline)
    chain: str = done.fullchain_pem
    return chain


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Issued]:
    """One certificate for derp.test from a fresh pebble; pebble is stopped before the probes."""
    d = tmp_path_factory.mktemp("pebble")
    key = ec.generate_private_key(ec.SECP256R1())
    key_file = d / "derp.test.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pebble_ca(d / "ca") as (directory_url, server_ca_file, management_url):
        chain = _issue(directory_url, server_ca_file, _csr(key, HOSTNAME))
        root_file = d / "pebble-root.pem"
        root_file.write_bytes(pebble_root_pem(management_url, server_ca_file))
    # lego's split (certcrypto.ParsePEMBundle + certificate.go): first block / the rest
    blocks = PEM_BLOCK.findall(chain)
    assert len(blocks) >= 2, f"pebble returned no issuer chain:\n{chain}"
    yield Issued(
        certificate_pem=blocks[0],
        issuer_pem="".join(blocks[1:]),
        key_file=str(key_file),
        root_file=str(root_file),
        directory=d,
    )


def _serve_and_probe(bg: BackgroundLoop, cert_file: str, key_file: str, root_file: str) -> Report:
    """Faithful DERP over TLS + strict STUN on 127.0.0.1; netcheck trusting only ``root_file``."""
    server = DerpServer(
        hostname=HOSTNAME, private_key=PrivateKey.generate(), cert_file=cert_file, key_file=key_file
    )
    socks = bind_same_port(LOOPBACK, socket.SOCK_STREAM)
    bg.run(server.start(socks))
    try:
        with stun_server(bind_same_port(LOOPBACK, socket.SOCK_DGRAM)) as stun:
            target = RelayTarget(
                HOSTNAME,
                derp_port=int(socks[0].getsockname()[1]),
                stun_port=stun.port,
                addresses=LOOPBACK,
                ca_file=root_file,
            )
            return check_relay(target, timeout=3, stun_timeout=1)
    finally:
        bg.run(server.stop())


@pytest.fixture(scope="module")
def bg() -> Iterator[BackgroundLoop]:
    with background_loop() as loop:
        yield loop


# lego's split, joined by the product's full_chain, verifies to pebble's root: TLS + DERP ok.
def test_full_chain_from_real_acme_ca_verifies(issued: Issued, bg: BackgroundLoop) -> None:
    root = x509.load_pem_x509_certificate(Path(issued.root_file).read_bytes())
    leaf = x509.load_pem_x509_certificate(issued.certificate_pem.encode())
    issuers = x509.load_pem_x509_certificates(issued.issuer_pem.encode())
    # The client trusts the root only; the intermediate must come from the served chain.
    assert leaf.issuer != root.subject
    assert all(c.fingerprint(hashes.SHA256()) != root.fingerprint(hashes.SHA256()) for c in issuers)
    assert issuers[-1].issuer == root.subject
    chain_file = issued.directory / "derp.test.crt"
    chain_file.write_text(full_chain(issued.certificate_pem, issued.issuer_pem))

    report = _serve_and_probe(bg, str(chain_file), issued.key_file, issued.root_file)

    tls = report.check("tls", "127.0.0.1")
    assert tls.ok and not tls.warning, tls
    assert tls.data["days_left"] > 0
    assert tls.data["alpn"] == "http/1.1"
    assert report.check("derp", "127.0.0.1").ok, report
    assert report.ok, report


# Control: the leaf alone (issuer_pem dropped) is untrusted, so the chain is what made it pass.
def test_leaf_without_issuer_is_untrusted(issued: Issued, bg: BackgroundLoop) -> None:
    leaf_file = issued.directory / "leaf-only.crt"
    leaf_file.write_text(issued.certificate_pem)

    report = _serve_and_probe(bg, str(leaf_file), issued.key_file, issued.root_file)

    tls = report.check("tls", "127.0.0.1")
    assert not tls.ok and not report.ok
    assert tls.data["kind"] == "untrusted", tls
    assert "unable to get local issuer certificate" in tls.detail
