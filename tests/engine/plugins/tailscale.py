"""``pulumi-resource-tailscale``: a faithful test double of pulumi-tailscale (the bridged
tailscale/terraform-provider-tailscale), backed by the Tailscale API peer
(tests/peers/tailscale_api.py) over HTTP (docs/upstream/bridged-providers.md#tailscale-acl).

``tailscale.Acl`` (``tailnetPolicy: file``): create writes the policy with ``If-Match: ts-default``
unless ``overwriteExistingContent`` (a 412 then is "Overwrite Protected"), update writes it
unconditionally, delete only forgets it unless ``resetAclOnDestroy`` (then the default policy is
written), read returns the live policy text. No input replaces.

Provider config: ``apiKey``, ``tailnet`` (default ``-``), ``baseUrl``; the same environment
variables the provider reads otherwise (``TAILSCALE_API_KEY``, ``TAILSCALE_TAILNET``,
``TAILSCALE_BASE_URL``).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
import uuid
from typing import Any

from tests.engine.plugins import Provider, ProviderError, ResourceType


class Acl(ResourceType):
    token = "tailscale:index/acl:Acl"

    def _send(self, method: str, body: str | None = None, etag: str | None = None) -> str:
        provider = self.provider
        assert isinstance(provider, Tailscale)
        url = f"{provider.base_url()}/api/v2/tailnet/{provider.tailnet()}/acl"
        request = urllib.request.Request(
            url, data=None if body is None else body.encode(), method=method
        )
        request.add_header("Authorization", f"Bearer {provider.api_key()}")
        request.add_header("Accept", "application/hujson")
        if body is not None:
            request.add_header("Content-Type", "application/hujson")
        if etag:
            request.add_header("If-Match", f'"{etag}"')
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=30) as response:
                return str(response.read().decode())
        except urllib.error.HTTPError as err:
            text = err.read().decode(errors="replace")
            if err.code == 412:
                raise ProviderError(
                    "Overwrite Protected: You are trying to overwrite a non-default policy. Please "
                    "import the ACL first or set overwrite_existing_content = true."
                ) from None
            raise ProviderError(f"Failed to set ACL: {text} ({err.code})") from None

    def create(self, urn: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        etag = None if inputs.get("overwriteExistingContent") else "ts-default"
        self._send("POST", str(inputs["acl"]), etag)
        return str(uuid.uuid4()), dict(inputs)

    def update(
        self, urn: str, id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> dict[str, Any]:
        self._send("POST", str(news["acl"]))
        return dict(news)

    def delete(self, urn: str, id: str, olds: dict[str, Any]) -> None:
        if olds.get("resetAclOnDestroy"):
            self._send("POST", "")

    def read(self, urn: str, id: str, olds: dict[str, Any], inputs: dict[str, Any]) -> Any:
        live = self._send("GET")
        return id, {**olds, "acl": live}, {**inputs, "acl": live} if inputs else inputs


class Tailscale(Provider):
    name = "tailscale"
    version = "0.29.2"
    types = (Acl,)

    def api_key(self) -> str:
        key = self.config.get("apiKey") or os.environ.get("TAILSCALE_API_KEY")
        if not key:
            raise ProviderError("tailscale: api_key is required")
        return str(key)

    def tailnet(self) -> str:
        return str(self.config.get("tailnet") or os.environ.get("TAILSCALE_TAILNET") or "-")

    def base_url(self) -> str:
        url = self.config.get("baseUrl") or os.environ.get("TAILSCALE_BASE_URL")
        return str(url or "https://api.tailscale.com").rstrip("/")


PROVIDER = Tailscale
