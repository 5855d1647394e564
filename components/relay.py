"""HomeDerpRelay: one relay on a home server, from DNS record to a published derpMap region.

Wires the parts and nothing else; each rule lives in the module named after what it governs
(docs/architecture.md, "The house"). The order is the product's promise: the relay is deployed,
then validated from outside, then published — or drained, when a relay that was published stops
passing — and only then does the gate decide whether `up` is green (docs/architecture.md,
"From config to publication").

In a health run (``HOME_DERP_HEALTH_RUN``) only validation, publication and the gate are
registered: the scheduled workflow targets exactly those, so it needs neither the Docker host nor
Cloudflare to drain a relay that broke (docs/architecture.md, "Health runs").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pulumi

from components import derpmap, naming
from components.errors import HomeDerpError
from components.gate import RelayHealthGate, RelayHealthGateArgs
from components.hujson import HuJSONError
from components.settings import ConfigError, RelaySettings
from components.settings.topology import node_settings
from components.tailnet import (
    TailnetDerpRegion,
    TailnetPeerRelayGrant,
    drained_policy_text,
    policy_file_with_region,
)
from components.usage import OUTPUT_KEYS as USAGE_OUTPUT_KEYS
from components.usage import RelayUsage, RelayUsageArgs, stack_output
from components.validation import (
    RelayValidation,
    RelayValidationArgs,
    region_verdict,
    validation_trigger,
)

TYPE_TOKEN = "homederp:index:HomeDerpRelay"

#: Validation asks the same public resolvers as the DNS-01 check: a LAN resolver may cache the
#: NXDOMAIN it saw before the record existed, or answer split-horizon (certificate.py).
VALIDATION_RESOLVERS = ("1.1.1.1", "1.0.0.1")


def companion_node(settings: RelaySettings) -> derpmap.DerpNode | None:
    """The companion's node of the region (``<id>b``), after the home node."""
    companion = settings.companion
    if companion is None:
        return None
    return derpmap.relay_node(
        region_id=settings.region.id,
        index=1,
        hostname=companion.hostname,
        derp_port=settings.ports.derp,
        stun_port=settings.ports.stun,
        ipv4=companion.addresses.ipv4,
        ipv6=companion.addresses.ipv6 or None,
        pin_ipv6=settings.addresses.pin_ipv6,
    )


def home_derp_region(settings: RelaySettings) -> derpmap.DerpRegion:
    """The relay's derpMap region, from settings: the home node, then the companion's."""
    companion = companion_node(settings)
    return derpmap.home_region(
        region_id=settings.region.id,
        region_code=settings.region.code,
        region_name=settings.region.name,
        hostname=settings.hostname,
        derp_port=settings.ports.derp,
        stun_port=settings.ports.stun,
        ipv4=settings.addresses.ipv4,
        ipv6=settings.addresses.ipv6 or None,
        pin_ipv6=settings.addresses.pin_ipv6,
        companions=(companion,) if companion is not None else (),
    )


def policy_text_for_file_mode(settings: RelaySettings, region: dict[str, Any]) -> str:
    """``tailnetPolicy: file``: the repo's policy with our region (and peer-relay grant) spliced
    in, comments intact.

    Runs before any resource is registered, so a policy we cannot splice deploys nothing.
    """
    path = settings.policy.file or ""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        text = policy_file_with_region(text, region, settings.region.omit_default_regions)
        if settings.peer_relay.enabled and settings.relay_host is not None:
            from components.peer_relay import grant_destination

            grant = derpmap.peer_relay_grant(
                list(settings.peer_relay.sources),
                grant_destination(settings.relay_host, settings.peer_relay.destination),
            )
            text = derpmap.insert_grant(text, settings.region.id, grant)[0]
        return text
    except (OSError, UnicodeDecodeError, HuJSONError, HomeDerpError) as exc:
        raise ConfigError([f"home-derp:policyFile = {path!r}: {exc}"]) from None


def derp_map_fragment_text(settings: RelaySettings) -> str:
    """The paste-ready ``{"derpMap": …}`` of ``tailnetPolicy: off`` (with headscale: the
    ``regions:`` YAML of its DERP map file)."""
    if settings.control_plane.kind == "headscale":
        from components import headscale_derpmap

        region = headscale_derpmap.yaml_keys(derpmap.region_to_dict(home_derp_region(settings)))
        return headscale_derpmap.set_region("", settings.region.id, region)
    return derpmap.fragment_text(
        derpmap.derp_map_fragment(
            home_derp_region(settings), omit_default_regions=settings.region.omit_default_regions
        )
    )


#: The ``validation`` stack output: its keys, in order, and the validation output behind each.
#: ``drained`` comes from publication, not from the validation.
VALIDATION_OUTPUT_FIELDS = (
    ("healthy", "healthy"),
    ("lastHealthyAt", "last_healthy_at"),
    ("checkedAt", "checked_at"),
    ("serverPublicKey", "server_public_key"),
    ("stunLatencyMs", "stun_latency_ms"),
    ("tlsLatencyMs", "tls_latency_ms"),
    ("certificateDaysLeft", "certificate_days_left"),
    ("admission", "admission"),
    ("coverage", "coverage"),
    ("credentials", "credentials"),
)


def validation_output(
    validation: RelayValidation,
    drained: pulumi.Input[bool | None],
    verdict: _Verdict | None = None,
    companion: RelayValidation | None = None,
) -> pulumi.Output[dict[str, Any]]:
    """What the outside check saw, and what publication made of it (``drained``). With a
    companion node, ``healthy`` is the region's verdict and ``companion`` its node's checks."""
    values = [getattr(validation, attr) for _, attr in VALIDATION_OUTPUT_FIELDS]
    extra: list[pulumi.Output[Any]] = [validation.reach]
    if verdict is not None and companion is not None:
        extra += [verdict.healthy, *(getattr(companion, a) for _, a in VALIDATION_OUTPUT_FIELDS)]

    def shape(v: list[Any]) -> dict[str, Any]:
        n = len(VALIDATION_OUTPUT_FIELDS)
        out = dict(zip((k for k, _ in VALIDATION_OUTPUT_FIELDS), v[1 : 1 + n], strict=True))
        rest = v[1 + n :]
        out["reach"] = rest[0]
        if len(rest) > 1:
            out["healthy"] = rest[1]
            names = (k for k, _ in VALIDATION_OUTPUT_FIELDS)
            out["companion"] = dict(zip(names, rest[2:], strict=True))
        # ``ok`` is the name older stacks and scripts read; ``healthy`` says the same.
        return {"ok": out["healthy"], "drained": bool(v[0]), **out}

    return pulumi.Output.all(drained, *values, *extra).apply(shape)


@dataclass(frozen=True)
class _Verdict:
    """The region's verdict, from one validation per node (``validation.region_verdict``)."""

    healthy: pulumi.Output[bool | None]
    diagnosis: pulumi.Output[str | None]
    certificate_days_left: pulumi.Output[int | None]
    checked_at: pulumi.Output[str | None]
    validations: list[RelayValidation]

    @property
    def credentials(self) -> pulumi.Output[dict[str, Any] | None]:
        """The Tailscale credential's proof, asked by the home node's validation."""
        return self.validations[0].credentials

    @classmethod
    def of(cls, validations: list[RelayValidation], hostnames: list[str]) -> _Verdict:
        if len(validations) == 1:  # one node: its own outputs, exactly as before
            v = validations[0]
            return cls(v.healthy, v.diagnosis, v.certificate_days_left, v.checked_at, validations)
        fields = ("healthy", "diagnosis", "certificate_days_left", "checked_at")
        values = [getattr(v, f) for v in validations for f in fields]

        def combine(flat: list[Any]) -> dict[str, Any]:
            nodes = [
                {"hostname": name, **dict(zip(fields, flat[i * 4 : i * 4 + 4], strict=True))}
                for i, name in enumerate(hostnames)
            ]
            return region_verdict(nodes)

        region = pulumi.Output.all(*values).apply(combine)
        return cls(
            region.apply(lambda r: r["healthy"]),
            region.apply(lambda r: r["diagnosis"]),
            region.apply(lambda r: r["certificate_days_left"]),
            region.apply(lambda r: r["checked_at"]),
            validations,
        )


def usage_output(usage: RelayUsage) -> pulumi.Output[dict[str, Any]]:
    """The ``usage`` stack output (``usage.stack_output``)."""
    names = [*USAGE_OUTPUT_KEYS, "host_homed_here", "region_code"]
    return pulumi.Output.all(*(getattr(usage, n) for n in names)).apply(
        lambda v: stack_output(dict(zip(names, v, strict=True)))
    )


@dataclass(frozen=True)
class HomeDerpRelayArgs:
    """Inputs of :class:`HomeDerpRelay`."""

    settings: RelaySettings
    """The validated stack config (``components.settings.load_settings``)."""


@dataclass(frozen=True)
class _Deployment:
    """What a normal `up` deploys before validation (absent in a health run)."""

    resources: list[pulumi.Resource]
    container_id: pulumi.Output[str]
    certificate_serial: pulumi.Output[str]
    certificate_not_after: pulumi.Output[str]
    image: str


class HomeDerpRelay(pulumi.ComponentResource):
    """A Tailscale DERP relay on a home server's public IPv6 address."""

    hostname: pulumi.Output[str]
    """The relay's DNS name (certificate name, TLS SNI, derpMap HostName)."""
    derp_port: pulumi.Output[int]
    """TCP port of the HTTPS/DERP listener."""
    stun_port: pulumi.Output[int]
    """UDP port of the STUN server."""
    addresses: pulumi.Output[list[str]]
    """Public addresses clients use (IPv6 first)."""
    derp_region: pulumi.Output[dict[str, Any]]
    """The region as the policy file spells it."""
    derp_map_fragment: pulumi.Output[str]
    """``{"derpMap": …}`` ready to paste into the tailnet policy file."""
    certificate_not_after: pulumi.Output[str | None]
    """Expiry of the served certificate (RFC 3339); None in a health run."""
    certificate_serial: pulumi.Output[str | None]
    """Serial of the served certificate; None in a health run."""
    container_id: pulumi.Output[str | None]
    """Docker id of the derper container (changes on every replacement); None in a health run."""
    image: pulumi.Output[str | None]
    """The derper image the container runs (built here, or the pinned one)."""
    relay_host: pulumi.Output[dict[str, Any] | None]
    """The relay host's tailscaled as read at this run: version, node name, Tailscale IPs."""
    peer_relay: pulumi.Output[dict[str, Any] | None]
    """With ``peerRelayPort``: the port, whether it is bound, the grant, the client's view."""
    validation: pulumi.Output[dict[str, Any]]
    """What the outside check saw: healthy, drained, last healthy check, latencies, certificate."""
    usage: pulumi.Output[dict[str, Any]]
    """derper's own counters, the nearest Tailscale region, and their history (usage.py)."""

    def __init__(
        self, name: str, args: HomeDerpRelayArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        settings = args.settings
        region = derpmap.region_to_dict(home_derp_region(settings))
        policy_text = (
            policy_text_for_file_mode(settings, region) if settings.policy.mode == "file" else None
        )
        super().__init__(TYPE_TOKEN, name, None, opts)
        for warning in settings.warnings:
            pulumi.log.warn(warning, resource=self)

        companion = (
            node_settings(settings, settings.companion) if settings.companion is not None else None
        )
        mesh_key = None
        if companion is not None and not settings.health_run:
            from components.mesh import MeshKey

            mesh_key = MeshKey(f"{name}-mesh-key", opts=pulumi.ResourceOptions(parent=self)).key
        deployment = None if settings.health_run else self._deploy(name, settings, mesh_key)
        peer_relay = (
            self._peer_relay(name, settings)
            if deployment is not None and settings.peer_relay.enabled
            else None
        )
        validation = self._validate(name, settings, deployment)
        validations, hostnames = [validation], [settings.hostname]
        companion_validation = None
        if companion is not None:
            # Deployed and validated exactly like the home node, on its own host.
            node = f"{name}-companion"
            companion_deployment = (
                None if settings.health_run else self._deploy(node, companion, mesh_key)
            )
            companion_validation = self._validate(node, companion, companion_deployment)
            validations.append(companion_validation)
            hostnames.append(companion.hostname)
        verdict = _Verdict.of(validations, hostnames)
        published, drained, publication = self._publish(
            name, settings, region, policy_text, verdict
        )
        usage = self._usage(name, settings, validation, published, drained)
        self._gate(name, settings, verdict, published, drained, [*publication, usage])

        none: pulumi.Output[Any] = pulumi.Output.from_input(None)
        self.hostname = pulumi.Output.from_input(settings.hostname)
        self.derp_port = pulumi.Output.from_input(settings.ports.derp)
        self.stun_port = pulumi.Output.from_input(settings.ports.stun)
        self.addresses = pulumi.Output.from_input(list(settings.addresses.all))
        self.derp_region = pulumi.Output.from_input(region)
        self.derp_map_fragment = pulumi.Output.from_input(derp_map_fragment_text(settings))
        self.certificate_not_after = deployment.certificate_not_after if deployment else none
        self.certificate_serial = deployment.certificate_serial if deployment else none
        self.container_id = deployment.container_id if deployment else none
        self.image = pulumi.Output.from_input(deployment.image if deployment else None)
        host = settings.relay_host
        self.relay_host = pulumi.Output.from_input(host.to_output() if host else None)
        self.peer_relay = peer_relay if peer_relay is not None else none
        self.validation = validation_output(validation, drained, verdict, companion_validation)
        self.usage = usage_output(usage)
        self.register_outputs(
            {
                "hostname": self.hostname,
                "derp_port": self.derp_port,
                "stun_port": self.stun_port,
                "addresses": self.addresses,
                "derp_region": self.derp_region,
                "derp_map_fragment": self.derp_map_fragment,
                "certificate_not_after": self.certificate_not_after,
                "certificate_serial": self.certificate_serial,
                "container_id": self.container_id,
                "image": self.image,
                "relay_host": self.relay_host,
                "peer_relay": self.peer_relay,
                "validation": self.validation,
                "usage": self.usage,
            }
        )

    # -- the parts

    def _deploy(
        self, name: str, settings: RelaySettings, mesh_key: pulumi.Output[str] | None = None
    ) -> _Deployment:
        """DNS records, certificate, derper (and the DDNS updater): one node of the relay."""
        import pulumi_cloudflare as cloudflare
        import pulumi_docker as docker

        from components import cloudflare_api
        from components.certificate import create_certificate
        from components.container import create_container
        from components.ddns import DdnsUpdater, DdnsUpdaterArgs
        from components.dns import RECORD_TTL, create_dns_records
        from components.host import docker_ssh_options, scheme_of

        child = pulumi.ResourceOptions(parent=self)
        # An explicit provider does not read cloudflare:baseUrl itself; pass it so the provider
        # and the record lookup (dns.py) always talk to the same API.
        cloudflare_provider = cloudflare.Provider(
            f"{name}-cloudflare",
            api_token=settings.cloudflare_api_token,
            base_url=cloudflare_api.runtime_config().get(cloudflare_api.BASE_URL_CONFIG),
            opts=child,
        )
        # Over ssh:// the provider's own connection gets the host reads' options (batch mode,
        # bounded connect, keepalives: components/host.py docker_ssh_options).
        docker_provider = docker.Provider(
            f"{name}-docker",
            host=settings.docker.host,
            ssh_opts=docker_ssh_options(os.environ)
            if scheme_of(settings.docker.host) == "ssh"
            else None,
            opts=child,
        )
        records = create_dns_records(name, settings, cloudflare_provider, self)
        cert = create_certificate(name, settings, self)
        relay = create_container(
            name,
            settings,
            provider=docker_provider,
            full_chain_pem=cert.full_chain_pem,
            private_key_pem=cert.private_key_pem,
            certificate_serial=cert.serial,
            parent=self,
            mesh_key=mesh_key,
        )
        if settings.ddns.enabled:
            # Follows prefix changes between `up`s; the records then ignore content (dns.py).
            DdnsUpdater(
                f"{name}-ddns",
                DdnsUpdaterArgs(
                    hostname=settings.hostname,
                    api_token=settings.ddns.api_token or settings.cloudflare_api_token or "",
                    provider=docker_provider,
                    interface=settings.addresses.ipv6_interface,
                    host_id=settings.addresses.ipv6_host_id,
                    ipv4_enabled=settings.addresses.ipv4 is not None,
                    ttl=RECORD_TTL,
                    image=settings.ddns.image,
                ),
                opts=child,
            )
        # Validation probes after the restart that puts a renewed certificate into service.
        resources: list[pulumi.Resource] = [
            records.aaaa,
            cert.certificate,
            relay.container,
            relay.restart,
        ]
        if records.a is not None:
            resources.append(records.a)
        return _Deployment(
            resources=resources,
            container_id=relay.container.id,
            certificate_serial=cert.serial,
            certificate_not_after=cert.not_after,
            image=relay.image_name,
        )

    def _peer_relay(
        self, name: str, settings: RelaySettings
    ) -> pulumi.Output[dict[str, Any]] | None:
        """The host's tailscaled as a peer relay, then the grant that lets the sources use it;
        returns the ``peerRelay`` output."""
        from components.peer_relay import PeerRelayServer, PeerRelayServerArgs, grant_destination

        host = settings.relay_host
        if host is None:
            return None  # settings refused a peer relay whose host cannot be read
        port = settings.peer_relay.port
        server = PeerRelayServer(
            f"{name}-peer-relay",
            PeerRelayServerArgs(
                docker_host=settings.docker.host,
                socket=settings.derper.tailscale_socket,
                port=port,
                static_endpoints=list(settings.peer_relay.static_endpoints),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        grant = derpmap.peer_relay_grant(
            list(settings.peer_relay.sources),
            grant_destination(host, settings.peer_relay.destination),
        )
        confirmation: pulumi.Input[dict[str, Any] | None] = None
        headscale = settings.control_plane.headscale
        if headscale is not None and settings.policy.mode == "patch":
            from components.headscale_grant import HeadscalePeerRelayGrant

            HeadscalePeerRelayGrant(
                f"{name}-peer-relay-grant",
                region_id=settings.region.id,
                grant=grant,
                relay_ips=list(host.tailscale_ips),
                host=headscale.host,
                policy_file=headscale.policy_file or "",
                reload=list(headscale.policy_reload),
                debug_address=headscale.debug_address,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[server]),
            )
        elif settings.policy.mode == "patch":  # file mode: the grant is in policy_text
            written = TailnetPeerRelayGrant(
                f"{name}-peer-relay-grant",
                region_id=settings.region.id,
                grant=grant,
                relay_ips=list(host.tailscale_ips),
                # Published only once the host reports the UDP port bound.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[server]),
            )
            confirmation = written.client_confirmation
        mode = settings.policy.mode
        grant_in = {"patch": "tailnet policy", "file": "policyFile"}.get(mode, "nowhere")
        if headscale is not None:
            grant_in = (
                headscale.policy_file if mode == "patch" and headscale.policy_file else grant_in
            )
        return pulumi.Output.all(server.bound, confirmation).apply(
            lambda v: {
                "port": port,
                "bound": v[0],
                "grant": grant,
                # off: the grant is not written; add it to the policy by hand.
                "grantIn": grant_in,
                "clientConfirmation": v[1],
            }
        )

    def _validate(
        self, name: str, settings: RelaySettings, deployment: _Deployment | None
    ) -> RelayValidation:
        """The outside-in check; it reports, publication and the gate act on its verdict."""
        # An IPv6 that could not be read (a health run, `auto`) leaves DNS unchecked against the
        # config: expecting only the IPv4 would call the published AAAA "unexpected" and drain.
        addresses = list(settings.addresses.all) if settings.addresses.ipv6 else []
        if deployment is None:
            trigger: pulumi.Input[str] = validation_trigger(
                "health-run", "", addresses, settings.validation.nonce
            )
        else:
            trigger = pulumi.Output.all(
                deployment.container_id, deployment.certificate_serial
            ).apply(
                lambda ids: validation_trigger(ids[0], ids[1], addresses, settings.validation.nonce)
            )
        host = settings.relay_host
        build = settings.derper.build
        return RelayValidation(
            f"{name}-validation",
            RelayValidationArgs(
                hostname=settings.hostname,
                derp_port=settings.ports.derp,
                stun_port=settings.ports.stun,
                expected_addresses=addresses,
                expect_verify_clients=settings.derper.verify_clients,
                mode=settings.validation.mode,
                timeout_seconds=settings.validation.timeout,
                trigger=trigger,
                resolvers=list(VALIDATION_RESOLVERS),
                docker_host=settings.docker.host,
                container=naming.container_name(settings.region.id, settings.region.code),
                tailscale_version=build.tailscale_version if build else None,
                host_tailscale_version=host.version if host else None,
                # Coverage is about derper's tailscaled; with headscale's /verify there is none.
                host_peers=sorted(
                    {p.node_key for p in host.peers} | ({host.node_key} if host.node_key else set())
                )
                if host and settings.derper.uses_socket
                else None,
                # publication writes the policy with these credentials: prove them every run
                policy_access="write" if settings.writes_tailnet_policy else None,
                region_ipv4=settings.region_has_ipv4,
            ),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=deployment.resources if deployment else []
            ),
        )

    def _publish(
        self,
        name: str,
        settings: RelaySettings,
        region: dict[str, Any],
        policy_text: str | None,
        validation: _Verdict,
    ) -> tuple[pulumi.Input[bool | None], pulumi.Input[bool | None], list[pulumi.Resource]]:
        """(published, drained, the resources) — the region follows the verdict."""
        validations: list[pulumi.Resource] = list(validation.validations)
        after_validation = pulumi.ResourceOptions(parent=self, depends_on=validations)
        # `validate: off` sends no probes: publish as before and never drain. Otherwise None is
        # no verdict (no route from here to the relay): the region is left as it is.
        verdict: pulumi.Input[bool | None] = (
            True if settings.validation.mode == "off" else validation.healthy
        )
        headscale = settings.control_plane.headscale
        if headscale is not None and settings.policy.mode == "patch":
            from components.headscale_region import HeadscaleDerpRegion

            in_file = HeadscaleDerpRegion(
                f"{name}-headscale-region",
                region=region,
                host=headscale.host,
                derp_file=headscale.derp_file,
                debug_address=headscale.debug_address,
                reload=list(headscale.reload),
                refresh_seconds=headscale.refresh_seconds,
                healthy=verdict,
                adopt_region=settings.region.adopt,
                opts=after_validation,
            )
            return in_file.published, in_file.drained, [in_file]
        if headscale is not None:
            return False, False, validations  # off: the YAML fragment is the output
        if settings.policy.mode == "patch":
            published = TailnetDerpRegion(
                f"{name}-tailnet-region",
                region=region,
                healthy=verdict,
                omit_default_regions=settings.region.omit_default_regions,
                adopt_region=settings.region.adopt,
                opts=after_validation,
            )
            return published.published, published.drained, [published]
        if settings.policy.mode == "file" and policy_text is not None:
            import pulumi_tailscale as tailscale  # only this mode pays for the SDK import

            region_id = settings.region.id
            text = validation.healthy.apply(
                lambda healthy: (
                    policy_text
                    if healthy is not False
                    else drained_policy_text(policy_text, region_id)
                )
            )
            acl = tailscale.Acl(
                f"{name}-tailnet-policy",
                acl=text,
                # The repo's file *is* the policy in this mode (docs/guide/tailnet-policy.md).
                overwrite_existing_content=True,
                opts=after_validation,
            )
            drained = validation.healthy.apply(lambda healthy: healthy is False)
            return True, drained, [acl]
        return False, False, validations

    def _usage(
        self,
        name: str,
        settings: RelaySettings,
        validation: RelayValidation,
        published: pulumi.Input[bool | None],
        drained: pulumi.Input[bool | None],
    ) -> RelayUsage:
        """derper's counters and the nearest Tailscale region, appended to the history each
        time validation probes (every health run too); it reports, it never fails `up`."""
        host = settings.relay_host
        trigger = validation.checked_at.apply(
            lambda checked: f"checked={checked};nonce={settings.validation.nonce}"
        )
        return RelayUsage(
            f"{name}-usage",
            RelayUsageArgs(
                hostname=settings.hostname,
                derp_port=settings.ports.derp,
                docker_host=settings.docker.host,
                region_code=settings.region.code,
                trigger=trigger,
                healthy=validation.healthy,
                latency_ms=validation.stun_latency_ms,
                certificate_days_left=validation.certificate_days_left,
                published=published,
                drained=drained,
                host_homed_here=(host.home_region == settings.region.code) if host else None,
                history_size=settings.usage.history,
                idle_runs=settings.usage.idle_runs,
                compare_map=settings.usage.compare_map,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[validation]),
        )

    def _gate(
        self,
        name: str,
        settings: RelaySettings,
        validation: _Verdict,
        published: pulumi.Input[bool | None],
        drained: pulumi.Input[bool | None],
        publication: list[pulumi.Resource],
    ) -> RelayHealthGate:
        """Last: `up` goes red on a bad verdict, after the tailnet was put right (gate.py)."""
        return RelayHealthGate(
            f"{name}-health-gate",
            RelayHealthGateArgs(
                mode=settings.validation.mode,
                healthy=validation.healthy,
                diagnosis=validation.diagnosis,
                certificate_days_left=validation.certificate_days_left,
                checked_at=validation.checked_at,
                drained=drained,
                published=published,
                credentials=validation.credentials,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=publication),
        )
