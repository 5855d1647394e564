"""Real certificate chains for local TLS peers (trustme CA → leaf), written as derper wants them.

Every variant a relay can serve: good, expiring soon, expired, for the wrong name, self-signed.
Files follow derper's manual mode: ``<name>.crt`` = leaf + chain (+ derper's Ed25519 "meta cert",
docs/upstream/derper.md#tls-serving) and ``<name>.key``.
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

VARIANTS = ("good", "soon", "expired", "wrong_name", "self_signed")


@dataclass(frozen=True)
class CertFiles:
    cert_file: str  # leaf + chain PEM
    key_file: str


@dataclass(frozen=True)
class Pki:
    hostname: str
    ca_file: str  # the only root to trust (pass as RelayTarget.ca_file / --ca-file)
    directory: Path

    def files(self, variant: str = "good") -> CertFiles:
        return CertFiles(
            str(self.directory / f"{variant}.crt"), str(self.directory / f"{variant}.key")
        )


def _meta_cert_pem(server_public_key: bytes) -> bytes:
    """derper's self-signed Ed25519 cert (CN derpkey<hex>) appended after the real chain."""
    key = ed25519.Ed25519PrivateKey.generate()
    # 71 characters: longer than the RFC 5280 ub-common-name that cryptography enforces
    cn = "derpkey" + server_public_key.hex()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn, _validate=False)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, None)
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _self_signed(hostname: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), pem_key


def make_pki(
    directory: str | Path, hostname: str = "derp.test", server_public_key: bytes | None = None
) -> Pki:
    """Write a root CA and all VARIANTS for ``hostname`` into ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    root = trustme.CA()
    ca = root.create_child_ca()  # a real chain: root → intermediate → leaf
    now = dt.datetime.now(dt.UTC)
    leaves = {
        "good": ca.issue_cert(hostname),
        "soon": ca.issue_cert(hostname, not_after=now + dt.timedelta(days=10, hours=1)),
        "expired": ca.issue_cert(
            hostname, not_before=now - dt.timedelta(days=120), not_after=now - dt.timedelta(days=3)
        ),
        "wrong_name": ca.issue_cert("other.test"),
    }
    meta = _meta_cert_pem(server_public_key) if server_public_key else b""
    for variant, leaf in leaves.items():
        chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        (d / f"{variant}.crt").write_bytes(chain + meta)
        (d / f"{variant}.key").write_bytes(leaf.private_key_pem.bytes())
    cert, key = _self_signed(hostname)
    (d / "self_signed.crt").write_bytes(cert + meta)
    (d / "self_signed.key").write_bytes(key)
    root.cert_pem.write_to_path(str(d / "ca.pem"))
    return Pki(hostname=hostname, ca_file=str(d / "ca.pem"), directory=d)
