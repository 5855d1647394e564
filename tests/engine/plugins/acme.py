"""``pulumi-resource-acme``: a faithful test double of pulumiverse-acme (the bridged
vancluever/terraform-provider-acme, built on lego), backed by pebble, a real RFC 8555 CA, through
certbot's ``acme`` library, with dns-01 answered the way lego's Cloudflare provider answers it:
through the Cloudflare API peer (docs/upstream/bridged-providers.md#acme-certificate).

* ``acme.Registration``: a new account for ``accountKeyPem``; every input replaces.
* ``acme.Certificate`` with ``certificateRequestPem``: order, then for each authorization lego's
  ``cloudflare`` dns-01 provider: the zone found by name (``GET /zones?name=``), a TXT record
  ``_acme-challenge.<name>`` with TTL 120 created with ``CF_DNS_API_TOKEN``, wait until the
  ``recursiveNameservers`` answer it (``CLOUDFLARE_PROPAGATION_TIMEOUT``, every 2 s), answer the
  challenge, wait for pebble's validation (pebble asks the test DNS server), delete the TXT
  record; finalize, download. ``certificatePem`` is the leaf, ``issuerPem`` the rest,
  ``certificateSerial`` the decimal serial, ``certificateNotAfter`` RFC 3339. Lego also asks the
  zone's authoritative nameservers; here the resolvers are the test's authoritative server.
* Renewal is decided in ``Diff``: with an id, when the leaf has ``minDaysRemaining`` or fewer
  whole days left, the certificate's outputs change and ``Update`` re-issues (in place); inputs
  that force a new certificate replace it; other input changes update nothing else.
* Delete revokes the certificate (``revokeCertificateOnDestroy``, default true).

Provider config: ``serverUrl``. The ACME server's own HTTPS is trusted through
``LEGO_CA_CERTIFICATES`` (lego's variable).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import time
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import josepy as jose
from acme import challenges, errors, messages
from acme import client as acme_client
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.engine.plugins import Diff, Provider, ProviderError, ResourceType, note
from tests.engine.plugins.cloudflare import Api

PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\s*", re.S)
#: lego providers/dns/cloudflare: minimum TTL, default propagation timeout, polling interval.
TXT_TTL = 120
PROPAGATION_TIMEOUT = 120.0
POLLING_INTERVAL = 2.0
#: Inputs whose change needs a new certificate (terraform-provider-acme: ForceNew).
CERT_FORCE_NEW = frozenset(
    {
        "accountKeyPem",
        "commonName",
        "subjectAlternativeNames",
        "keyType",
        "certificateRequestPem",
        "mustStaple",
        "preferredChain",
        "profile",
    }
)
CERT_OUTPUTS = (
    "certificatePem",
    "issuerPem",
    "certificateNotAfter",
    "certificateNotBefore",
    "certificateSerial",
    "certificateUrl",
    "certificateDomain",
    "privateKeyPem",
)


def _account_key(pem: str) -> jose.JWK:
    key = serialization.load_pem_private_key(pem.encode(), None)
    return jose.JWKEC(key=key) if hasattr(key, "curve") else jose.JWKRSA(key=key)


def _alg(key: jose.JWK) -> Any:
    if isinstance(key, jose.JWKEC):
        size = key.key.curve.key_size
        return {256: jose.ES256, 384: jose.ES384, 521: jose.ES512}[size]
    return jose.RS256


@contextlib.contextmanager
def _client(server_url: str, account_pem: str) -> Iterator[tuple[acme_client.ClientV2, jose.JWK]]:
    key = _account_key(account_pem)
    net = acme_client.ClientNetwork(key, alg=_alg(key), user_agent="home-derp-engine-tests")
    net.verify_ssl = os.environ.get("LEGO_CA_CERTIFICATES") or True  # type: ignore[assignment]
    net.session.trust_env = False
    with contextlib.closing(net.session):
        client = acme_client.ClientV2(acme_client.ClientV2.get_directory(server_url, net), net)
        yield client, key


def _register(client: acme_client.ClientV2, email: str | None) -> messages.RegistrationResource:
    contact = (f"mailto:{email}",) if email else ()
    try:
        return client.new_account(
            messages.NewRegistration(contact=contact, terms_of_service_agreed=True)
        )
    except errors.ConflictError as exc:  # the key already has an account: look it up
        return client.query_registration(
            messages.RegistrationResource(body=messages.Registration(), uri=exc.location)
        )


def _resolve_account(client: acme_client.ClientV2) -> None:
    """The account of the client's key (lego ResolveAccountByKey: newAccount with
    onlyReturnExisting), so requests carry its URL as ``kid``."""
    try:
        client.new_account(messages.NewRegistration(only_return_existing=True))
    except errors.ConflictError as exc:
        client.query_registration(
            messages.RegistrationResource(body=messages.Registration(), uri=exc.location)
        )


def _txt_seen(nameservers: list[str], fqdn: str, value: str) -> bool:
    for server in nameservers:
        host, _, port = server.rpartition(":")
        query = dns.message.make_query(fqdn, dns.rdatatype.TXT)
        try:
            answer = dns.query.udp(query, host.strip("[]"), port=int(port or 53), timeout=2)
        except (OSError, dns.exception.DNSException):
            return False
        texts = {b"".join(r.strings).decode() for rrset in answer.answer for r in rrset}
        if value not in texts:
            return False
    return True


def split_chain(pem: str) -> tuple[str, str, x509.Certificate]:
    blocks = PEM_BLOCK.findall(pem)
    if len(blocks) < 1:
        raise ProviderError(f"the CA returned no certificate: {pem[:200]!r}")
    leaf = x509.load_pem_x509_certificate(blocks[0].encode())
    return blocks[0].strip() + "\n", "".join(b.strip() + "\n" for b in blocks[1:]), leaf


def days_remaining(certificate_pem: str, now: dt.datetime | None = None) -> int:
    """Whole days left (terraform-provider-acme certDaysRemaining: seconds // 86400)."""
    leaf = x509.load_pem_x509_certificate(certificate_pem.encode())
    now = now or dt.datetime.now(dt.UTC)
    return int((leaf.not_valid_after_utc - now).total_seconds()) // 86400


class Registration(ResourceType):
    token = "acme:index/registration:Registration"
    force_new = frozenset({"accountKeyPem", "emailAddress", "externalAccountBinding"})

    def create(self, urn: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        provider = self.provider
        assert isinstance(provider, Acme)
        with _client(provider.server_url(), str(inputs["accountKeyPem"])) as (client, _):
            account = _register(client, inputs.get("emailAddress"))
        return str(account.uri), {**inputs, "registrationUrl": str(account.uri)}


class Certificate(ResourceType):
    token = "acme:index/certificate:Certificate"
    defaults = MappingProxyType({"minDaysRemaining": 30, "revokeCertificateOnDestroy": True})

    def diff(
        self, old_inputs: Mapping[str, Any], olds: Mapping[str, Any], news: Mapping[str, Any]
    ) -> Diff:
        inputs = [k for k in sorted(set(old_inputs) | set(news)) if k not in CERT_OUTPUTS]
        found = super().diff(
            {k: old_inputs.get(k) for k in inputs if k in old_inputs},
            olds,
            {k: news.get(k) for k in inputs if k in news},
        )
        found.replaces = [k for k in found.changed if k in CERT_FORCE_NEW]
        pem = olds.get("certificatePem")
        minimum = int(news.get("minDaysRemaining", 30))
        if not found.replaces and pem and minimum >= 0 and days_remaining(str(pem)) <= minimum:
            # CustomizeDiff: SetNewComputed on the certificate's outputs → an in-place renewal.
            found.changed = sorted({*found.changed, "certificatePem", "certificateSerial"})
        return found

    def _issue(self, urn: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        provider = self.provider
        assert isinstance(provider, Acme)
        challenges_config = list(inputs.get("dnsChallenges") or [])
        cloudflare = next((c for c in challenges_config if c.get("provider") == "cloudflare"), None)
        if cloudflare is None:
            raise ProviderError("the tests' acme plugin answers dns-01 through cloudflare only")
        config = dict(cloudflare.get("config") or {})
        token = config.get("CF_DNS_API_TOKEN") or config.get("CLOUDFLARE_DNS_API_TOKEN")
        if not token:
            raise ProviderError(
                "cloudflare: some credentials information are missing: CF_DNS_API_TOKEN"
            )
        timeout = float(config.get("CLOUDFLARE_PROPAGATION_TIMEOUT") or PROPAGATION_TIMEOUT)
        api = Api(
            os.environ.get("CLOUDFLARE_BASE_URL") or "https://api.cloudflare.com/client/v4",
            str(token),
        )
        nameservers = [str(s) for s in inputs.get("recursiveNameservers") or []]
        csr = str(inputs["certificateRequestPem"]).encode()
        with _client(provider.server_url(), str(inputs["accountKeyPem"])) as (client, key):
            _resolve_account(client)
            order = client.new_order(csr)
            published = []
            try:
                for authz in order.authorizations:
                    if authz.body.status == messages.STATUS_VALID:
                        continue
                    domain = authz.body.identifier.value
                    dns01 = next(
                        c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01)
                    )
                    response, value = dns01.response_and_validation(key)
                    fqdn = f"_acme-challenge.{domain}"
                    zone = _zone_of(api, domain)
                    record = api.call(
                        "POST",
                        f"/zones/{zone}/dns_records",
                        {"type": "TXT", "name": fqdn, "content": value, "ttl": TXT_TTL},
                    )
                    published.append((zone, record["id"]))
                    deadline = time.monotonic() + timeout
                    while not _txt_seen(nameservers, fqdn, value):
                        if time.monotonic() > deadline:
                            raise ProviderError(
                                f"acme: error: time limit exceeded: last error: NS {nameservers} "
                                f"did not return the expected TXT record [fqdn: {fqdn}.]"
                            )
                        time.sleep(POLLING_INTERVAL)
                    client.answer_challenge(dns01, response)
                done = client.poll_and_finalize(order, dt.datetime.now() + dt.timedelta(seconds=60))
            except errors.Error as exc:
                raise ProviderError(f"acme: {exc}") from None
            finally:
                for zone, record_id in published:
                    with contextlib.suppress(ProviderError):
                        api.call("DELETE", f"/zones/{zone}/dns_records/{record_id}")
        leaf_pem, issuer_pem, leaf = split_chain(done.fullchain_pem)
        note(
            "acme",
            f"issued serial {leaf.serial_number} until {leaf.not_valid_after_utc.isoformat()}",
        )
        return {
            **inputs,
            "certificatePem": leaf_pem,
            "issuerPem": issuer_pem,
            "privateKeyPem": "",
            "certificateNotBefore": leaf.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "certificateNotAfter": leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "certificateSerial": str(leaf.serial_number),
            "certificateUrl": str(done.uri),
            "certificateDomain": leaf.subject.rfc4514_string().removeprefix("CN="),
        }

    def create(self, urn: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        outputs = self._issue(urn, inputs)
        return str(outputs["certificateUrl"]), outputs

    def update(
        self, urn: str, id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> dict[str, Any]:
        pem = str(olds.get("certificatePem") or "")
        minimum = int(news.get("minDaysRemaining", 30))
        if pem and minimum >= 0 and days_remaining(pem) <= minimum:
            return self._issue(urn, news)  # terraform-provider-acme renews in Update
        return {**olds, **{k: v for k, v in news.items() if k not in CERT_OUTPUTS}}

    def delete(self, urn: str, id: str, olds: dict[str, Any]) -> None:
        if not olds.get("revokeCertificateOnDestroy", True) or not olds.get("certificatePem"):
            return
        provider = self.provider
        assert isinstance(provider, Acme)
        leaf = x509.load_pem_x509_certificate(str(olds["certificatePem"]).encode())
        with _client(provider.server_url(), str(olds["accountKeyPem"])) as (client, _):
            try:
                _resolve_account(client)
                client.revoke(leaf, 0)
            except errors.Error as exc:
                if "already revoked" not in str(exc).lower():
                    raise ProviderError(f"acme: revoking the certificate: {exc}") from None


def _zone_of(api: Api, domain: str) -> str:
    """lego FindZoneByFqdn + ZoneIDByName: the closest zone the token sees."""
    labels = domain.split(".")
    for i in range(len(labels) - 1):
        name = ".".join(labels[i:])
        zones = api.call("GET", "/zones", name=name)
        if zones:
            return str(zones[0]["id"])
    raise ProviderError(f"cloudflare: failed to find zone {domain}: zone could not be found")


class Acme(Provider):
    name = "acme"
    version = "0.18.1"
    types = (Registration, Certificate)

    def server_url(self) -> str:
        url = self.config.get("serverUrl") or os.environ.get("ACME_SERVER_URL")
        if not url:
            raise ProviderError("acme: server_url is required")
        return str(url)


PROVIDER = Acme
__all__ = ["PROVIDER", "json"]
