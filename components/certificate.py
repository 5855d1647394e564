"""A publicly trusted certificate for the relay, over ACME DNS-01 through Cloudflare.

DNS-01 needs no inbound port (home ISPs block 80/443), and derper serves a custom port over TLS
only in ``-certmode manual`` with a certificate it does not fetch itself
(docs/upstream/derper.md#manual-certs).
Renewal is decided at diff time by ``min_days_remaining``: any `pulumi up` within 30 days of expiry
re-issues; the init container writes the new PEM into the certificate volume and derper is
restarted (components/derper_restart.py: derper never re-reads manual certificates).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_tls as tls
import pulumiverse_acme as acme

from components.settings import RelaySettings

#: lego's default (2 min) is often too short for Cloudflare; the seed guide uses 300 s.
PROPAGATION_TIMEOUT_SECONDS = "300"
#: Ask public resolvers, not the LAN's (which may cache the old TXT or split-horizon the zone).
RECURSIVE_NAMESERVERS = ["1.1.1.1:53", "1.0.0.1:53"]
MIN_DAYS_REMAINING = 30


@dataclass(frozen=True)
class RelayCertificate:
    """The issued certificate and what the container needs from it."""

    certificate: acme.Certificate
    full_chain_pem: pulumi.Output[str]
    """Leaf then intermediates, as derper wants it in ``<hostname>.crt``."""
    private_key_pem: pulumi.Output[str]
    """Secret."""
    not_after: pulumi.Output[str]
    serial: pulumi.Output[str]


def full_chain(leaf_pem: str, issuer_pem: str) -> str:
    """Leaf followed by the issuer chain, one trailing newline."""
    return leaf_pem.strip() + "\n" + issuer_pem.strip() + "\n"


def create_certificate(
    name: str, settings: RelaySettings, parent: pulumi.Resource
) -> RelayCertificate:
    """ACME account + key + CSR + certificate; keys and token stay secret."""
    child = pulumi.ResourceOptions(parent=parent)
    # ECDSA P-256 everywhere; pulumi_tls's default curve is P224, which ACME CAs refuse.
    account_key = tls.PrivateKey(
        f"{name}-acme-account-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child
    )
    # One provider per directory: switching staging ↔ production under a stack needs a new account.
    provider = acme.Provider(f"{name}-acme", server_url=settings.acme.server_url, opts=child)
    with_acme = pulumi.ResourceOptions(parent=parent, provider=provider)
    registration = acme.Registration(
        f"{name}-acme-registration",
        account_key_pem=account_key.private_key_pem,
        email_address=settings.acme.email,
        opts=with_acme,
    )
    cert_key = tls.PrivateKey(f"{name}-cert-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
    csr = tls.CertRequest(
        f"{name}-csr",
        private_key_pem=cert_key.private_key_pem,
        dns_names=[settings.hostname],
        subject={"common_name": settings.hostname},
        opts=child,
    )
    if settings.cloudflare_api_token is None:  # settings guarantees it; keeps the type honest
        raise ValueError("cloudflare:apiToken is required for the DNS-01 challenge")
    token: pulumi.Output[str] = pulumi.Output.secret(settings.cloudflare_api_token)
    certificate = acme.Certificate(
        f"{name}-certificate",
        account_key_pem=registration.account_key_pem,
        certificate_request_pem=csr.cert_request_pem,
        dns_challenges=[
            {
                "provider": "cloudflare",
                "config": {
                    "CF_DNS_API_TOKEN": token,
                    "CLOUDFLARE_PROPAGATION_TIMEOUT": PROPAGATION_TIMEOUT_SECONDS,
                },
            }
        ],
        recursive_nameservers=RECURSIVE_NAMESERVERS,
        min_days_remaining=MIN_DAYS_REMAINING,
        opts=with_acme,
    )
    chain = pulumi.Output.all(certificate.certificate_pem, certificate.issuer_pem).apply(
        lambda pems: full_chain(pems[0], pems[1])
    )
    return RelayCertificate(
        certificate=certificate,
        full_chain_pem=chain,
        private_key_pem=pulumi.Output.secret(cert_key.private_key_pem),
        not_after=certificate.certificate_not_after,
        serial=certificate.certificate_serial,
    )
