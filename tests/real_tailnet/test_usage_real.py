"""Usage from the real derper of the tests' tailnet, read the way the product reads it.

The relay host is the tailnet's relay namespace: its real derper (region 900 "home", verifying
clients through the relay's real tailscaled) and a real sshd. ``RelayUsage`` runs in the real
provider process with ``dockerHost: ssh://…``, so derper's ``/debug/varz`` is read through
``ssh -W 127.0.0.1:8443`` from inside the relay host — the production path, nothing on the host but
sshd. Tailscale's regions are the tailnet's DERP map (region 901 "far" behind the 80 ms delay
relay; 900 is the relay itself and is never compared with itself). The checker reads the same
counters from a client of the tailnet through ``tailscale nc`` to the relay host's Tailscale IP.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from components.host import HostChannel
from components.netcheck.cli import EXIT_UNCONFIRMED
from components.netcheck.regions import probe_regions
from components.relay import TYPE_TOKEN as RELAY_TYPE
from components.tailscaled import read_tailscaled
from components.usage import TYPE_TOKEN, RelayUsage, RelayUsageArgs, clients_homed, stack_output
from components.usage_summary import summary_lines
from tests.mocks import dynamic_inputs
from tests.peers.forward import forward_into_netns
from tests.peers.sshd import Sshd
from tests.peers.tailnet import HOME, RELAY_DERP_PORT, RELAY_STUN_PORT, Tailnet
from tests.peers.tools import tool
from tests.provider_host import ProviderHost, urn_for
from tests.test_usage_summary import blocks, categories, expected_axis, mermaid_check, numbers

URN = urn_for(TYPE_TOKEN, "relay-900-usage", parent_type=RELAY_TYPE)
ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def relay_over_ssh(
    net: Tailnet, sshd_factory: Callable[..., Sshd], tmp: Path
) -> Iterator[tuple[str, dict[str, str]]]:
    """(``ssh://`` Docker host URL of the relay host, the provider process's environment)."""
    sshd = sshd_factory(prefix=net.relay.host.prefix)
    with forward_into_netns(net.relay.host.name, sshd.port) as local_port:
        known = tmp / "relay_known_hosts"  # the forwarded port is what the client dials
        kind, key = (sshd.key.parent / "host_key.pub").read_text().split()[:2]
        known.write_text(f"[127.0.0.1]:{local_port} {kind} {key}\n")
        options = ["-F", "none", "-i", str(sshd.key), "-o", "IdentitiesOnly=yes",
                   "-o", "IdentityAgent=none", "-o", f"UserKnownHostsFile={known}",
                   "-o", "StrictHostKeyChecking=yes"]  # fmt: skip
        env = {**os.environ, "HOME_DERP_SSH_OPTS": shlex.join(options)}
        yield f"ssh://{sshd.user}@127.0.0.1:{local_port}", env


def stack_host(env: dict[str, str]) -> ProviderHost:
    """The real provider process, configured as the engine configures it."""
    host = ProviderHost(timeout=90, env=env)
    host.configure({})
    return host


def home_latency(net: Tailnet) -> float:
    """Our relay's STUN latency from here, measured as validation measures it (netcheck's STUN
    probe; what RelayValidation hands RelayUsage as ``latency_ms``)."""
    only_home = {"Regions": {"900": net.derp_map["Regions"]["900"]}}
    # On its own thread: asyncio.run here would replace the event loop the Pulumi mocks use.
    with ThreadPoolExecutor(1) as pool:
        [region] = pool.submit(asyncio.run, probe_regions(only_home, 3.0)).result()
    assert region.latency_ms is not None, "the home region did not answer STUN"
    return region.latency_ms


def inputs(net: Tailnet, docker_host: str, run: int, **overrides: Any) -> dict[str, Any]:
    host_home = net.relay.status()["Self"].get("Relay")
    fields: dict[str, Any] = {
        "hostname": HOME.hostname,
        "derp_port": RELAY_DERP_PORT,  # derper's own port on the relay host (not the front)
        "docker_host": docker_host,
        "region_code": HOME.code,
        "trigger": f"checked=run-{run};nonce=",
        "healthy": True,
        "latency_ms": home_latency(net),
        "certificate_days_left": 80,
        "published": True,
        "drained": False,
        "host_homed_here": host_home == HOME.code,
        "history_size": 3,
        "idle_runs": 3,
        "compare_map": str(net.derp_map_file),
    }
    fields.update(overrides)
    return dynamic_inputs(lambda: RelayUsage("relay-900-usage", RelayUsageArgs(**fields)))


def homed_by_status(net: Tailnet) -> int:
    """Nodes whose own status names home as their DERP: what derper's home gauge counts."""
    return sum(n.status()["Self"].get("Relay") == HOME.code for n in net.nodes)


def relay_pings(net: Tailnet, count: int) -> None:
    """a → b over DERP (a and b cannot exchange UDP: tests/peers/tailnet.py)."""
    a, b = net.clients["a"], net.clients["b"]
    out = a.cli("ping", "--until-direct=false", "-c", str(count), "--timeout", "5s", b.ipv4).stdout
    assert out.count(f"via DERP({HOME.code})") == count, out


# derper's own counters, read over ssh -W, see the tailnet as it is (every node connected and
# homed, the relay host among them), and they move when a real client relays through the region:
# 5 pings a → b over DERP are at least 10 more packets delivered (each ping and each pong).
def test_counters_move_when_a_client_relays(
    net: Tailnet, sshd_factory: Callable[..., Sshd], tmp_path: Path
) -> None:
    with relay_over_ssh(net, sshd_factory, tmp_path) as (docker_host, env):
        host = stack_host(env)
        with host:
            first = host.create(URN, host.check(URN, {}, inputs(net, docker_host, 0)).inputs)
            before = first.outputs["current"]
            assert first.outputs.get("read_error") is None, first.outputs
            assert first.outputs["read_via"].startswith("ssh -W 127.0.0.1:8443 to the Docker host")
            assert before["version"] == tool("derper").parent.name.removeprefix("v")
            assert before["homed"] == homed_by_status(net) == len(net.nodes)
            assert before["connected"] >= before["homed"]
            relay_pings(net, 5)
            news = inputs(net, docker_host, 1)
            after = host.update(first.id, first.outputs, news).outputs["current"]
    assert after["packetsSent"] >= before["packetsSent"] + 10, (before, after)
    assert after["bytesSent"] > before["bytesSent"] and after["packetsReceived"] >= 10
    assert after["uptimeSeconds"] >= before["uptimeSeconds"]


# Five runs through the engine's protocol with usageHistory 3: the first two fall out, the rest
# keep their order and their numbers; far (80 ms) is the nearest Tailscale region, home itself is
# never compared with itself; nobody is warned about (clients are homed, ours is nearer); and the
# job summary's charts say exactly these numbers.
def test_history_rolls_over_at_its_bound(
    net: Tailnet, sshd_factory: Callable[..., Sshd], tmp_path: Path
) -> None:
    runs = []
    with relay_over_ssh(net, sshd_factory, tmp_path) as (docker_host, env):
        host = stack_host(env)
        with host:
            outs = host.create(URN, host.check(URN, {}, inputs(net, docker_host, 0)).inputs).outputs
            runs.append(outs["history"][-1]["at"])
            for n in range(1, 5):
                outs = host.update("id", outs, inputs(net, docker_host, n)).outputs
                runs.append(outs["history"][-1]["at"])
    history = outs["history"]
    assert [e["at"] for e in history] == runs[-3:] and len(history) == 3
    assert all(e["homed"] == len(net.nodes) and e["hostHomed"] is True for e in history)
    assert all(clients_homed(e) == len(net.clients) for e in history)
    assert outs["nearest_default"]["code"] == "far"
    assert all(e["defaultRegion"] == "far" and e["defaultMs"] >= 80.0 for e in history)
    assert all(e["latencyMs"] < e["defaultMs"] for e in history)
    assert outs.get("warning") is None
    summary = "\n".join(summary_lines(stack_output(outs)))
    # The job summary drawn from these real outputs: both charts parse with the real Mermaid
    # parser, and their points are the history's numbers.
    assert all(r["ok"] for r in mermaid_check(summary, tmp_path))
    latency, clients = blocks(summary)
    assert numbers(latency, "line") == [
        [e["latencyMs"] for e in history],
        [e["defaultMs"] for e in history],
    ]
    assert numbers(clients, "bar") == [[float(len(net.clients))] * 3]
    assert categories(latency) == expected_axis(history)


# From a client of the tailnet, the checker reads the same counters through `tailscale nc` to the
# relay host's Tailscale IP (derper's /debug answers Tailscale addresses): the relay's report
# (probed on the relay host's LAN address, where clients may reach it), then derper's clients.
def test_checker_reads_usage_through_the_tailnet(net: Tailnet, tmp_path: Path) -> None:
    a = net.clients["a"]
    # `tailscale nc` through a's own tailscaled: the real CLI, given a's --socket.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "tailscale"
    wrapper.write_text(f'#!/bin/sh\nexec {tool("tailscale")} --socket {a.socket} "$@"\n')
    wrapper.chmod(0o755)
    relay_ip = net.relay.ipv4
    argv = [
        *a.host.prefix, sys.executable, "-m", "components.netcheck", HOME.hostname,
        "--address", net.relay.host.v4, "--derp-port", str(RELAY_DERP_PORT),
        "--stun-port", str(RELAY_STUN_PORT), "--ca-file", net.pki.ca_file,
        "--usage-from", f"tailnet:{relay_ip}",
    ]  # fmt: skip
    env = {**a.env, "PATH": f"{bindir}:{a.env['PATH']}"}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    # derper's own verdict on admission is not read here (no --docker-host): unconfirmed, exit 5
    assert done.returncode == EXIT_UNCONFIRMED, done.stdout + done.stderr
    assert f"Usage (derper's /debug/varz via tailscale nc {relay_ip}):" in done.stdout
    assert f"{homed_by_status(net)} homed here" in done.stdout, done.stdout


# The program learns whether the relay host homes on its own relay from the host's real
# `tailscale status --json` (Self.Relay), read as settings read it (the host channel): here it
# does, so derper's homed count includes the host and the clients are one fewer.
def test_program_reads_the_hosts_own_home(net: Tailnet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{tool('tailscale').parent}:{os.environ['PATH']}")
    channel = HostChannel("unix://", command_prefix=tuple(net.relay.host.prefix))
    facts = read_tailscaled(channel, str(net.relay.socket))
    assert facts.home_region == HOME.code == net.relay.status()["Self"]["Relay"]
