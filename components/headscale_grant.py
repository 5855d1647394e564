"""The peer-relay grant in headscale's policy file (``controlPlane: headscale``).

The headscale counterpart of ``components/tailnet.py``'s ``TailnetPeerRelayGrant``: one element
of ``grants``, marked by a comment as ours (``components/derpmap.py`` does the HuJSON edit, every
other byte stays), that gives ``tailscale.com/cap/relay`` on the relay host to the configured
sources. headscale v0.29.3 compiles such grants (docs/upstream/headscale.md#policy-grants).

headscale reads its policy file at start-up and on SIGHUP (docs/upstream/headscale.md#sighup), so
after each write ``headscalePolicyReload`` runs (by default ``systemctl reload``, which headscale's
unit maps to SIGHUP). A policy headscale refuses is not applied — and would stop headscale at its
next start. So the write is confirmed in headscale's compiled filter (``/debug/filter``: a rule
granting ``tailscale.com/cap/relay`` on the relay host's Tailscale IPs); when it does not appear,
the previous file is put back and reloaded, and `up` fails with what to read.

The provider is stored in the stack state under its stable name ``HeadscalePeerRelayGrant``
(components/dynamic_provider.py: moving the class is one line there).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import pulumi
import pulumi.dynamic

from components import derpmap
from components.dynamic_provider import stored_outputs
from components.errors import HomeDerpError
from components.headscale import FileChanged, HeadscaleError, HeadscaleHost, rewrite_file
from components.host import HostReadError
from components.policy_entries import GrantProvider
from components.wire import plain

INPUTS: Final = ("region_id", "grant", "relay_ips", "host", "policy_file", "reload")
#: Read-modify-write rounds before giving up on a policy file that keeps changing.
REWRITE_ATTEMPTS: Final = 5
#: How long headscale may take to compile a reloaded policy into its filter.
CONFIRM_SECONDS: Final = 20.0


class HeadscaleGrantError(HomeDerpError):
    """The grant could not be written or headscale did not take it; the message says why."""


def grants_relay(filter_rules: Any, relay_ips: Sequence[str]) -> bool:
    """Whether headscale's compiled filter (``[]tailcfg.FilterRule`` as JSON) grants
    ``tailscale.com/cap/relay`` on one of the relay host's addresses."""
    targets = {ipaddress.ip_address(ip) for ip in relay_ips}
    for rule in filter_rules if isinstance(filter_rules, list) else []:
        for grant in (rule or {}).get("CapGrant") or []:
            if derpmap.RELAY_CAPABILITY not in (grant.get("CapMap") or {}):
                continue
            for prefix in grant.get("Dsts") or []:
                try:
                    network = ipaddress.ip_network(prefix, strict=False)
                except ValueError:
                    continue
                if any(ip in network for ip in targets):
                    return True
    return False


class HeadscalePeerRelayGrantProvider(GrantProvider):
    """CRUD for our marked grant in headscale's policy file (the base:
    components/policy_entries.py)."""

    NAME = "HeadscalePeerRelayGrant"
    INPUT_KEYS = INPUTS
    REPLACE_KEYS = ("region_id", "host", "policy_file")

    def _edit(self, props: Mapping[str, Any], mutate: Any) -> tuple[str, str, Any]:
        """(text before, text after, mutate's extra) — written only when it changed."""
        host, path = HeadscaleHost(str(props["host"])), str(props["policy_file"])

        def missing() -> str:
            raise HeadscaleGrantError(
                f"headscale's policy file {path} does not exist on {host.where()}"
            )

        try:
            return rewrite_file(host, path, mutate, missing=missing, attempts=REWRITE_ATTEMPTS)
        except FileChanged:
            raise HeadscaleGrantError(
                f"{path} kept changing while we wrote it; nothing was written"
            ) from None
        except derpmap.PolicyTextError as exc:
            raise HeadscaleGrantError(f"cannot edit headscale's policy {path}: {exc}") from None
        except (HeadscaleError, HostReadError) as exc:
            raise HeadscaleGrantError(str(exc)) from None

    def _reload(self, props: Mapping[str, Any]) -> None:
        reload = [str(a) for a in plain(props.get("reload")) or []]
        try:
            HeadscaleHost(str(props["host"])).run_reload(reload)
        except (HeadscaleError, HostReadError) as exc:
            raise HeadscaleGrantError(str(exc)) from None

    def _confirmed(self, props: Mapping[str, Any]) -> bool:
        host = HeadscaleHost(str(props["host"]))
        relay_ips = [str(ip) for ip in plain(props.get("relay_ips")) or []]
        deadline = time.monotonic() + CONFIRM_SECONDS
        while True:
            try:
                rules = host.debug_json("/debug/filter", str(props["debug_address"]))
                if grants_relay(rules, relay_ips):
                    return True
            except HeadscaleError:
                pass
            if time.monotonic() >= deadline:
                return False
            time.sleep(1.0)

    def _apply(self, props: Mapping[str, Any], created_before: bool) -> dict[str, Any]:
        inputs = {k: plain(props.get(k)) for k in (*INPUTS, "debug_address")}
        region_id, grant = int(inputs["region_id"]), dict(inputs["grant"])

        def mutate(text: str) -> tuple[str, bool]:
            return derpmap.insert_grant(text, region_id, grant)

        before, after, created = self._edit(inputs, mutate)
        if after != before:
            self._reload(inputs)
            if not self._confirmed(inputs):
                self._edit(inputs, lambda text: (before, None))  # put the user's file back
                self._reload(inputs)
                raise HeadscaleGrantError(
                    f"headscale did not take the policy with our peer-relay grant {grant} (no "
                    f"tailscale.com/cap/relay on {inputs['relay_ips']} in /debug/filter after "
                    f"{CONFIRM_SECONDS:.0f}s); the previous {inputs['policy_file']} was put back. "
                    "Read headscale's log ('reloading policy'): a tag in src or dst missing from "
                    "tagOwners is the usual cause"
                )
        return {**inputs, "created_grants": bool(created or created_before)}

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        outs = self._apply(props, False)
        return pulumi.dynamic.CreateResult(f"{outs['policy_file']}#grant/{outs['region_id']}", outs)

    def change(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(self._apply(news, bool(olds.get("created_grants"))))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        region_id = int(plain(props.get("region_id")))
        created = bool(props.get("created_grants"))

        def mutate(text: str) -> tuple[str, None]:
            return derpmap.remove_grant(text, region_id, remove_empty_grants=created), None

        before, after, _ = self._edit(props, mutate)
        if after != before:
            self._reload(props)

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        state = stored_outputs(props)
        try:
            current = HeadscaleHost(str(props["host"])).read_file(str(props["policy_file"]))
            live = derpmap.find_grant(current.text or "", int(plain(props.get("region_id"))))
        except (HeadscaleError, HostReadError, derpmap.PolicyTextError) as exc:
            raise HeadscaleGrantError(f"cannot read headscale's policy: {exc}") from None
        if live is None:
            return pulumi.dynamic.ReadResult(None, {})
        return pulumi.dynamic.ReadResult(id_, {**state, "grant": live})


class HeadscalePeerRelayGrant(
    pulumi.dynamic.Resource, module="homederp", name="HeadscalePeerRelayGrant"
):
    """The grant that lets ``src`` use the relay host as a peer relay, in headscale's policy."""

    region_id: pulumi.Output[int]
    grant: pulumi.Output[dict[str, Any]]
    relay_ips: pulumi.Output[list[str]]
    host: pulumi.Output[str]
    policy_file: pulumi.Output[str]
    reload: pulumi.Output[list[str]]
    debug_address: pulumi.Output[str]
    created_grants: pulumi.Output[bool]

    def __init__(
        self,
        resource_name: str,
        *,
        region_id: pulumi.Input[int],
        grant: pulumi.Input[Mapping[str, Any]],
        relay_ips: pulumi.Input[list[str]],
        host: pulumi.Input[str],
        policy_file: pulumi.Input[str],
        reload: pulumi.Input[list[str]],
        debug_address: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "region_id": region_id,
            "grant": grant,
            "relay_ips": relay_ips,
            "host": host,
            "policy_file": policy_file,
            "reload": reload,
            "debug_address": debug_address,
            "created_grants": None,
        }
        super().__init__(HeadscalePeerRelayGrantProvider(), resource_name, props, opts)
