"""``pulumi-resource-cloudflare``: a faithful test double of pulumi-cloudflare 6.x (the bridged
terraform-provider-cloudflare v5), backed by the Cloudflare API peer (tests/peers/cloudflare_api.py)
over HTTP, exactly as the real provider talks to Cloudflare.

* ``cloudflare.DnsRecord``: ``zoneId`` and ``type`` require replacement, every other input updates
  in place (docs/upstream/bridged-providers.md#cloudflare-dns-record). Create is ``POST
  /zones/{zone}/dns_records``, update ``PUT …/{id}`` (the whole record), delete ``DELETE …/{id}``,
  read ``GET …/{id}``. ``import`` passes ``<zone_id>/<record_id>``
  (docs/upstream/cloudflare.md#import-id) and gets the record's inputs back, so the engine can
  diff the program's inputs against them.
* ``cloudflare.getZone`` (an invoke): the zone whose name matches ``filter.name``
  (``GET /zones?name=``); not exactly one → an error, as the data source reports it.

Configuration: ``apiToken`` and ``baseUrl`` from the provider's arguments, else
``CLOUDFLARE_API_TOKEN`` / ``CLOUDFLARE_BASE_URL`` (docs/upstream/cloudflare.md#provider-config).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from types import MappingProxyType
from typing import Any

from tests.engine.plugins import Provider, ProviderError, ResourceType

INPUT_KEYS = ("zoneId", "name", "type", "content", "ttl", "proxied", "comment")


class Api:
    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: Any = None, **query: str) -> Any:
        url = self.base_url + path + (("?" + urllib.parse.urlencode(query)) if query else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Content-Type", "application/json")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=30) as response:
                envelope = json.loads(response.read())
        except urllib.error.HTTPError as err:
            try:
                envelope = json.loads(err.read())
            except ValueError:
                raise ProviderError(f"{method} {path}: HTTP {err.code}") from None
            errors = envelope.get("errors") or []
            text = "; ".join(f"{e.get('message')} ({e.get('code')})" for e in errors)
            raise ProviderError(f"{method} {url}: {err.code} {text}") from None
        return envelope.get("result")


def _record_inputs(record: dict[str, Any], zone_id: str) -> dict[str, Any]:
    inputs = {
        "zoneId": zone_id,
        "name": record["name"],
        "type": record["type"],
        "content": record["content"],
        "ttl": record["ttl"],
        "proxied": bool(record.get("proxied")),
    }
    if record.get("comment"):
        inputs["comment"] = record["comment"]
    return inputs


def _state(record: dict[str, Any], zone_id: str) -> dict[str, Any]:
    """The resource's state; like every bridged resource's, it holds ``id``."""
    return {
        **_record_inputs(record, zone_id),
        "id": record["id"],
        "proxiable": record.get("proxiable"),
        "createdOn": record.get("created_on"),
        "modifiedOn": record.get("modified_on"),
    }


def _body(inputs: dict[str, Any]) -> dict[str, Any]:
    body = {k: inputs[k] for k in ("name", "type", "content", "ttl", "proxied") if k in inputs}
    body["comment"] = inputs.get("comment")
    return body


class DnsRecord(ResourceType):
    token = "cloudflare:index/dnsRecord:DnsRecord"
    force_new = frozenset({"zoneId", "type"})
    defaults = MappingProxyType({"proxied": False})

    @property
    def api(self) -> Api:
        provider = self.provider
        assert isinstance(provider, Cloudflare)
        return provider.api()

    def diff(self, old_inputs: dict[str, Any], olds: dict[str, Any], news: dict[str, Any]) -> Any:
        # Computed outputs echoed in state are not inputs.
        return super().diff(
            {k: v for k, v in old_inputs.items() if k in INPUT_KEYS},
            olds,
            {k: v for k, v in news.items() if k in INPUT_KEYS},
        )

    def create(self, urn: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        zone = str(inputs["zoneId"])
        record = self.api.call("POST", f"/zones/{zone}/dns_records", _body(inputs))
        return str(record["id"]), _state(record, zone)

    def update(
        self, urn: str, id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> dict[str, Any]:
        zone = str(news["zoneId"])
        record = self.api.call("PUT", f"/zones/{zone}/dns_records/{id}", _body(news))
        return _state(record, zone)

    def delete(self, urn: str, id: str, olds: dict[str, Any]) -> None:
        zone = str(olds["zoneId"])
        try:
            self.api.call("DELETE", f"/zones/{zone}/dns_records/{id}")
        except ProviderError as exc:
            if "(81044)" not in str(exc):  # already gone: nothing to delete
                raise

    def read(
        self, urn: str, id: str, olds: dict[str, Any], inputs: dict[str, Any]
    ) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
        zone = str(olds.get("zoneId") or inputs.get("zoneId") or "")
        record_id = id
        if "/" in id:  # an import id: <zone_id>/<record_id>
            zone, record_id = id.split("/", 1)
        try:
            record = self.api.call("GET", f"/zones/{zone}/dns_records/{record_id}")
        except ProviderError as exc:
            if "(81044)" in str(exc):
                return None
            raise
        return record_id, _state(record, zone), _record_inputs(record, zone)


class Cloudflare(Provider):
    name = "cloudflare"
    version = "6.23.1"
    types = (DnsRecord,)

    def __init__(self) -> None:
        super().__init__()
        self.invokes["cloudflare:index/getZone:getZone"] = self.get_zone

    def api(self) -> Api:
        token = self.config.get("apiToken") or os.environ.get("CLOUDFLARE_API_TOKEN")
        base = self.config.get("baseUrl") or os.environ.get("CLOUDFLARE_BASE_URL")
        if not token:
            raise ProviderError(
                "cloudflare: no api_token (cloudflare:apiToken or CLOUDFLARE_API_TOKEN)"
            )
        return Api(base or "https://api.cloudflare.com/client/v4", str(token))

    def get_zone(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("zoneId"):
            zone = self.api().call("GET", f"/zones/{args['zoneId']}")
        else:
            name = str((args.get("filter") or {}).get("name") or "")
            zones = self.api().call("GET", "/zones", name=name) if name else []
            if len(zones) != 1:
                raise ProviderError(
                    f"failed to find exactly one zone with name {name!r}: found {len(zones)}"
                )
            zone = zones[0]
        return {
            "id": zone["id"],
            "zoneId": zone["id"],
            "name": zone["name"],
            "status": zone["status"],
        }


PROVIDER = Cloudflare
