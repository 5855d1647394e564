"""``pulumi-resource-tls``: a faithful test double of pulumi-tls (hashicorp/terraform-provider-tls),
backed by real keys and CSRs (``cryptography``).

Resource types and their replace rules (docs/upstream/bridged-providers.md#tls-private-key,
#tls-cert-request): every input of ``tls.PrivateKey`` and ``tls.CertRequest`` requires replacement,
so there is no in-place update. Outputs are the PEM forms the program reads (``privateKeyPem`` in
the traditional form, ``publicKeyPem``, ``certRequestPem``).
"""

from __future__ import annotations

import hashlib
from types import MappingProxyType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from tests.engine.plugins import Provider, ProviderError, ResourceType

CURVES = {"P224": ec.SECP224R1, "P256": ec.SECP256R1, "P384": ec.SECP384R1, "P521": ec.SECP521R1}


def _private_key(inputs: dict[str, Any]) -> Any:
    algorithm = inputs.get("algorithm")
    if algorithm == "ECDSA":
        curve = str(inputs.get("ecdsaCurve") or "P224")
        if curve not in CURVES:
            raise ProviderError(f"invalid ecdsa_curve {curve!r}")
        return ec.generate_private_key(CURVES[curve]())
    if algorithm == "RSA":
        return rsa.generate_private_key(65537, int(inputs.get("rsaBits") or 2048))
    if algorithm == "ED25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ProviderError(f"invalid algorithm {algorithm!r}: RSA, ECDSA or ED25519")


class PrivateKey(ResourceType):
    token = "tls:index/privateKey:PrivateKey"
    force_new = frozenset({"algorithm", "ecdsaCurve", "rsaBits"})
    defaults = MappingProxyType({"ecdsaCurve": "P224", "rsaBits": 2048})

    def create(self, urn: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        key = _private_key(inputs)
        traditional = (
            serialization.PrivateFormat.PKCS8
            if isinstance(key, ed25519.Ed25519PrivateKey)
            else serialization.PrivateFormat.TraditionalOpenSSL
        )
        public = key.public_key()
        public_der = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        openssh = public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ).decode()
        outputs = {
            **inputs,
            "privateKeyPem": key.private_bytes(
                serialization.Encoding.PEM, traditional, serialization.NoEncryption()
            ).decode(),
            "privateKeyPemPkcs8": key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode(),
            "publicKeyPem": public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode(),
            "publicKeyOpenssh": openssh + "\n",
            "publicKeyFingerprintSha256": "SHA256:" + hashlib.sha256(public_der).hexdigest(),
        }
        return hashlib.sha1(public_der).hexdigest(), outputs


class CertRequest(ResourceType):
    token = "tls:index/certRequest:CertRequest"
    force_new = frozenset({"privateKeyPem", "dnsNames", "ipAddresses", "uris", "subject"})

    def create(self, urn: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        key = serialization.load_pem_private_key(str(inputs["privateKeyPem"]).encode(), None)
        subject = inputs.get("subject") or {}
        names = []
        if subject.get("commonName"):
            names.append(x509.NameAttribute(NameOID.COMMON_NAME, str(subject["commonName"])))
        if subject.get("organization"):
            names.append(
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, str(subject["organization"]))
            )
        builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
        dns_names = [x509.DNSName(str(n)) for n in inputs.get("dnsNames") or []]
        if dns_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(dns_names), critical=False)
        algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
        csr = builder.sign(key, algorithm)  # type: ignore[arg-type]
        pem = csr.public_bytes(serialization.Encoding.PEM).decode()
        kind = {ec.EllipticCurvePrivateKey: "ECDSA", rsa.RSAPrivateKey: "RSA"}
        algorithm_name = next((v for k, v in kind.items() if isinstance(key, k)), "ED25519")
        outputs = {**inputs, "certRequestPem": pem, "keyAlgorithm": algorithm_name}
        return hashlib.sha1(pem.encode()).hexdigest(), outputs


class Tls(Provider):
    name = "tls"
    version = "5.6.2"
    types = (PrivateKey, CertRequest)


PROVIDER = Tls
