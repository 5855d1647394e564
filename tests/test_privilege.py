"""Least privilege in every configuration: whatever the stack says, derper never runs as uid 0
while tailscaled's socket is mounted (docs/guide/what-derper-can-touch.md).

The walk goes through every combination of the settings that decide who derper runs as: the
image (built or pinned), verifyClients, derpPort and stunPort on either side of 1024, the network
mode and the runtime image. Each goes through the product's own rules (``parse_settings``) and,
when they accept it, through the product's own container arguments
(``container.derper_container_args``), which the policy pack then judges as the engine would hand
them over (camelCase names).
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import pulumi
import pytest

from components import container
from components.settings import Environment, RelaySettings, parse_settings
from policy import rules
from tests.mocks import HostFacts, HostProbeAdapter

PINNED = "fredliang/derper:v1.102.5@sha256:" + "a" * 64
OTHER_RUNTIME = "alpine:3.22@sha256:" + "b" * 64
AXES: dict[str, tuple[str | None, ...]] = {
    "image": (None, PINNED),
    "verifyClients": ("true", "false"),
    "derpPort": ("443", "12345"),
    "stunPort": ("3478", "999"),
    "networkMode": ("host", "bridge"),
    "runtimeImage": ("scratch", OTHER_RUNTIME),
}
# Dual stack: an IPv6-only relay is warned about on purpose (docs/guide/reach.md).
BASE = {
    "hostname": "derp.example.com",
    "zone": "example.com",
    "ipv6": "2409:8a00::10",
    "ipv4": "93.184.216.34",
}


def combinations() -> list[dict[str, str]]:
    names = list(AXES)
    return [
        {k: v for k, v in zip(names, values, strict=True) if v is not None}
        for values in itertools.product(*AXES.values())
    ]


def camel(value: Any) -> Any:
    """Container arguments as the engine hands them to the policy pack (camelCase keys)."""
    if isinstance(value, dict):
        return {re.sub(r"_(\w)", lambda m: m[1].upper(), k): camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel(v) for v in value]
    return value


def derper_args(settings: RelaySettings) -> dict[str, Any]:
    return container.derper_container_args(
        settings,
        image="sha256:" + "c" * 64,
        state_volume="derper-900-home-state",
        certs_volume="derper-900-home-certs",
    )


def verdict(raw: dict[str, str]) -> Any:
    host = HostProbeAdapter(HostFacts(addresses=["2409:8a00::10"]))
    env = Environment(cloudflare_api_token=pulumi.Output.secret("token"))
    return parse_settings({**BASE, **raw}, env=env, host=host)


# Every combination: refused with a named key, or run as a non-root uid whenever the socket
# directory is mounted; the built derper is always 65532, with no-new-privileges off only where
# it binds below 1024 in host networking (its file capability), and then only from scratch; the
# policy pack accepts every container the program would create.
def test_no_combination_runs_root_with_the_socket() -> None:
    accepted, refused = 0, 0
    for raw in combinations():
        judged = verdict(raw)
        pinned, verify = "image" in raw, raw["verifyClients"] == "true"
        low = min(int(raw["derpPort"]), int(raw["stunPort"])) < 1024
        host = raw["networkMode"] == "host"
        file_capability = not pinned and low and host
        if not judged.ok:
            refused += 1
            keys = {p.key for p in judged.problems}
            expected = set()
            if pinned and verify:
                expected.add("image")
            if file_capability and raw["runtimeImage"] != "scratch":
                expected.add("runtimeImage")
            assert keys == expected, (raw, judged.problems)
            continue
        accepted += 1
        args = derper_args(judged.settings)
        uid = args["user"].split(":")[0]
        socket_mounted = any(v.get("host_path") for v in args["volumes"])
        assert socket_mounted is verify, raw
        assert not (uid == "0" and socket_mounted), raw
        if pinned:
            assert (
                uid == "0" and not verify and args["security_opts"] == [container.NO_NEW_PRIVILEGES]
            )
        else:
            assert uid == "65532", raw
            assert args["capabilities"] == {"drops": ["ALL"], "adds": ["NET_BIND_SERVICE"]}, raw
            no_new_privileges = args["security_opts"] == [container.NO_NEW_PRIVILEGES]
            assert no_new_privileges is not file_capability, raw
            assert (
                "chown -R 65532:65532"
                in container.init_command(container.derper_user(judged.settings))[-1]
            )
        assert rules.hardening_problems(camel(args)) == [], raw
    # 16 pinned images with verification, 6 low-port host stacks on another runtime image.
    assert (accepted, refused) == (42, 22)


# The default stack (derpPort 443, host networking, the built image, verification on) is safe
# with no warning at all: 65532, the socket read-only, no-new-privileges off only for the file
# capability that binds 443.
def test_the_default_stack_needs_no_warning() -> None:
    judged = verdict({})
    assert judged.ok and judged.warnings == (), judged.warnings
    args = derper_args(judged.settings)
    assert judged.settings.ports.derp == 443
    assert args["user"] == "65532:65532" and args["security_opts"] == []
    assert [v["read_only"] for v in args["volumes"] if v.get("host_path")] == [True]


@pytest.mark.parametrize("raw", [{"derpPort": "443"}, {"image": PINNED, "verifyClients": "false"}])
# The pack refuses what the program never creates: the same containers as root with the socket.
def test_the_pack_refuses_root_with_the_socket(raw: dict[str, str]) -> None:
    args = camel(derper_args(verdict(raw).require()))
    args["user"] = "0:0"
    if not any(v.get("hostPath") for v in args["volumes"]):
        args["volumes"].append(
            {"containerPath": "/var/run/tailscale", "hostPath": "/run/tailscale"}
        )
    found = rules.hardening_problems(args)
    assert any("runs as root (0:0) with tailscaled's socket" in p for p in found), found


# The companion node (docs/guide/reach.md#companion-node) runs derper the same way on its own host:
# every combination of ports, verification, runtime image and socket path gives it uid 65532,
# the socket only with verification, and containers the policy pack accepts.
def test_the_companion_never_runs_root_with_the_socket() -> None:
    from components.settings.topology import node_settings

    home = HostProbeAdapter(HostFacts(addresses=["2409:8a00::10"]))
    vps = HostProbeAdapter(HostFacts(addresses=["2a01:4f8:c0c:9a1e::1"]))
    axes = {
        "verifyClients": ("true", "false"),
        "derpPort": ("443", "12345"),
        "stunPort": ("3478", "999"),
        "runtimeImage": ("scratch", OTHER_RUNTIME),
        "tailscaleSocket": ("/var/run/tailscale/tailscaled.sock", "/run/tailscale/tailscaled.sock"),
    }
    walked = 0
    for values in itertools.product(*axes.values()):
        raw = dict(zip(axes, values, strict=True))
        judged = parse_settings(
            {
                **BASE,
                "ipv4": "none",
                "companionHostname": "derp2.example.com",
                "companionDockerHost": "ssh://root@vps.example.com",
                "companionIpv4": "203.0.114.9",
                **raw,
            },
            env=Environment(cloudflare_api_token=pulumi.Output.secret("token")),
            host=home,
            companion_host=vps,
        )
        low = min(int(raw["derpPort"]), int(raw["stunPort"])) < 1024
        if not judged.ok:
            # only a low port bound through the file capability from a runtime image other than
            # scratch, on either node
            assert low and raw["runtimeImage"] != "scratch", (raw, judged.problems)
            continue
        companion = judged.settings.companion
        assert companion is not None
        for node in (judged.settings, node_settings(judged.settings, companion)):
            args = derper_args(node)
            socket_mounted = any(v.get("host_path") for v in args["volumes"])
            assert args["user"] == "65532:65532", raw
            assert socket_mounted is (raw["verifyClients"] == "true"), raw
            assert rules.hardening_problems(camel(args)) == [], raw
            walked += 1
    assert walked == 2 * 20  # 32 combinations, 12 refused (a low port from another runtime)
