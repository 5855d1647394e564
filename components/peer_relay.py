"""The relay host's tailscaled as a Tailscale Peer Relay (docs/upstream/peer-relay.md).

A peer relay forwards UDP between two tailnet devices that cannot reach each other directly;
clients try it before DERP. On the host it is one pref, set through the relay host's channel
(``components.host``) with the CLI (docs/upstream/tailscale-cli.md#set-relay-server):

    tailscale --socket=S set --relay-server-port=N [--relay-server-static-endpoints=v4:N]

and cleared with empty values. The relay finds and re-advertises its endpoints by itself every
20–26 s — interface addresses (the home IPv6 under any prefix) and STUN-observed ones
(tailscale.com@v1.102.5/net/udprelay/server.go:458-559) — so no IPv6 is configured. A public IPv4
behind the router's port forward is not an interface address and is observed with the NAT's own
port, so when ``home-derp:ipv4`` is set (the user already forwards the relay's ports to that
address) ``<ipv4>:<port>`` is advertised as a static endpoint (settings: ``PeerRelay``, from
tailscaled 1.92 on); no extra key is needed.

``PeerRelayServer`` is a dynamic resource so that ``preview`` shows the change and ``destroy``
clears the pref; it runs the CLI in ``create``/``update``/``delete`` only, then waits until the UDP
port is bound on the host. The provider is stored in the stack state under its stable name
``PeerRelayServer`` (components/dynamic_provider.py); older stacks stored
``components.peer_relay.PeerRelayServerProvider``, which must stay importable.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import pulumi
import pulumi.dynamic

from components.dynamic_provider import HomeDerpProvider
from components.errors import HomeDerpError
from components.host import CommandResult, HostChannel, HostReadError
from components.tailscaled import TailscaledFacts, cli_command
from components.wire import plain

TYPE_TOKEN: Final = "pulumi-python:dynamic/homederp:PeerRelayServer"
#: Seconds to wait for tailscaled to bind the port after the pref is set.
BIND_TIMEOUT: Final = 15.0
#: Seconds a client waits to see the relay among its candidate servers (bounded: at most 60).
CLIENT_CONFIRM_TIMEOUT: Final = 60.0
INPUT_KEYS: Final = ("docker_host", "socket", "port", "static_endpoints")


class PeerRelayError(HomeDerpError):
    """The host's tailscaled could not be made (or unmade) a peer relay; the message says why."""


# ---------------------------------------------------------------------------------------------
# Pure


def set_command(
    socket: str, port: int, endpoints: Sequence[str], *, had_endpoints: bool = False
) -> list[str]:
    """Make the host's tailscaled a peer relay on UDP ``port``.

    The endpoints flag is passed only when there are endpoints or the last run set some (an empty
    value clears them); a tailscaled before 1.92 does not know the flag at all.
    """
    command = cli_command(socket, "set", f"--relay-server-port={port}")
    if endpoints or had_endpoints:
        command.append(f"--relay-server-static-endpoints={','.join(endpoints)}")
    return command


def clear_command(socket: str, with_endpoints: bool) -> list[str]:
    """Turn the peer relay off again (empty values disable, cmd/tailscale/cli/set.go:246-267)."""
    command = cli_command(socket, "set", "--relay-server-port=")
    if with_endpoints:
        command.append("--relay-server-static-endpoints=")
    return command


def bound_command(port: int) -> list[str]:
    """List UDP sockets bound to ``port`` (iproute2's ss; no root needed without -p)."""
    return ["ss", "-H", "-l", "-u", "-n", f"sport = :{port}"]


def is_bound(ss_output: str, port: int) -> bool:
    """Whether ``ss -Hlun`` output shows a socket on ``port``."""
    for line in ss_output.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[3].rsplit(":", 1)[-1] == str(port):
            return True
    return False


def set_failure(result: CommandResult, command: Sequence[str], where: str) -> str:
    """What a failed ``tailscale set`` means, and the fix (docs/upstream/tailscale-cli.md)."""
    text = (result.stderr + result.stdout).strip()
    low = text.lower()
    shown = shlex.join(command)
    if "access denied" in low:
        return (
            f"the user home-derp runs as on {where} may not change tailscaled's prefs "
            f"({text.splitlines()[0]}): run `sudo tailscale set --operator=$USER` once on the "
            "relay host (that user may then change prefs), or connect as root "
            "(home-derp:dockerHost ssh://root@…)"
        )
    if "connect: permission denied" in low:
        return (
            f"the user home-derp runs as on {where} cannot open tailscaled's socket ({text}): "
            "check the permissions of the socket's directory, or connect as root"
        )
    if "flag provided but not defined" in low and "relay-server" in low:
        return (
            f"the tailscale CLI on {where} has no peer relay flags: a peer relay needs tailscaled "
            f">= 1.86 (upgrade Tailscale on the relay host). `{shown}` said: {text}"
        )
    return f"`{shown}` failed on {where} (exit {result.returncode}): {text}"


def grant_destination(facts: TailscaledFacts, tag: str | None = None) -> str:
    """Who the grant's ``dst`` names: the tag the user chose (``home-derp:peerRelayDestination``),
    else the relay host's own Tailscale IPv4 (stable for the node, read again at every run).

    Never the host's tags on their own: a tag names every device that carries it, and each would
    become a relay candidate for all the sources (docs/upstream/peer-relay.md#grant).
    """
    if tag is not None:
        return tag
    v4 = [ip for ip in facts.tailscale_ips if ipaddress.ip_address(ip).version == 4]
    if v4:
        return v4[0]
    if facts.tailscale_ips:
        return facts.tailscale_ips[0]
    raise PeerRelayError("the relay host has no Tailscale IP yet: log it in (`tailscale up`)")


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _selector_matches(
    source: str, tags: set[str], login: str | None, ips: list[str]
) -> bool | None:
    """One grant source against one node; None when it cannot be judged here (groups, hosts)."""
    if source == "*" or source in tags or (login is not None and source == login):
        return True
    if source == "autogroup:member":
        return not tags  # a user's device (tagged devices are not members)
    try:
        network = ipaddress.ip_network(source, strict=False)
    except ValueError:
        return False if source.startswith(("tag:", "autogroup:")) or "@" in source else None
    return any(ipaddress.ip_address(ip) in network for ip in ips)


def member_of(sources: Sequence[str], status: Mapping[str, Any]) -> bool | None:
    """Whether the node described by ``status`` (``tailscale status --json``) is one of
    ``sources``; None when a selector cannot be judged from here (a group, a host alias)."""
    self_status = _mapping(status.get("Self"))
    tags = set(self_status.get("Tags") or [])
    ips = [str(ip) for ip in self_status.get("TailscaleIPs") or []]
    login = _mapping(_mapping(status.get("User")).get(str(self_status.get("UserID")))).get(
        "LoginName"
    )
    verdicts = [_selector_matches(s, tags, login, ips) for s in sources]
    if any(v is True for v in verdicts):
        return True
    return None if any(v is None for v in verdicts) else False


def servers_failure(result: CommandResult) -> str:
    """Why ``tailscale debug peer-relay-servers`` could not answer, and the fix.

    The LocalAPI serves every debug action only to a writer: root, tailscaled's own user or its
    operator (docs/upstream/localapi.md#debug-needs-write); anyone else gets "Access denied".
    """
    text = (result.stderr + result.stdout).strip()
    first = text.splitlines()[0] if text else f"exit {result.returncode}"
    if "access denied" in text.lower():
        return (
            "not confirmed from a client: this machine's tailscaled lists its peer relay servers "
            f"only to root or its operator ({first}): run `sudo tailscale set --operator=$USER` "
            "once on this machine, or run pulumi up as root"
        )
    return f"not confirmed from a client: `tailscale debug peer-relay-servers` failed ({first})"


def confirmation_from_client(
    run_local: Callable[[Sequence[str]], CommandResult],
    relay_ips: Sequence[str],
    sources: Sequence[str],
    *,
    timeout: float = CLIENT_CONFIRM_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Ask this machine's own tailscaled whether it sees the relay as a peer relay server.

    Only meaningful when this machine is a tailnet node among ``sources``; otherwise say so. The
    question needs write access to this machine's LocalAPI; without it (or on any other failure
    of the command) the answer comes at once, never after ``timeout``.
    """
    status_result = run_local(["tailscale", "status", "--json"])
    if status_result.returncode != 0:
        return {"confirmed": None, "detail": "not confirmed from a client: this machine is not a "
                "tailnet node (no running tailscaled here)"}  # fmt: skip
    try:
        status = json.loads(status_result.stdout)
    except ValueError:
        return {"confirmed": None, "detail": "not confirmed: `tailscale status --json` unreadable"}
    if status.get("BackendState") != "Running":
        return {"confirmed": None, "detail": "not confirmed from a client: this machine's "
                f"tailscaled is {status.get('BackendState')}"}  # fmt: skip
    member = member_of(sources, status)
    if member is False:
        return {"confirmed": None, "detail": "not confirmed from a client: this machine is not "
                "among home-derp:peerRelaySources"}  # fmt: skip
    deadline = clock() + timeout
    wanted = {str(ipaddress.ip_address(ip)) for ip in relay_ips}
    while True:
        result = run_local(["tailscale", "debug", "peer-relay-servers"])
        if result.returncode != 0:  # asking again will not help: say why, at once
            return {"confirmed": None, "detail": servers_failure(result)}
        try:
            servers = {str(ipaddress.ip_address(s)) for s in json.loads(result.stdout or "[]")}
        except (ValueError, TypeError):
            servers = set()
        if servers & wanted:
            return {"confirmed": True, "detail": "this machine lists the relay host among its "
                    "peer relay servers (tailscale debug peer-relay-servers)"}  # fmt: skip
        if clock() >= deadline:
            hint = "" if member else " (this machine may not be among the sources)"
            return {"confirmed": False, "detail": f"this machine did not list the relay host as a "
                    f"peer relay server within {timeout:.0f}s{hint}"}  # fmt: skip
        sleep(2.0)


# ---------------------------------------------------------------------------------------------
# The edge


def _run(channel: HostChannel, command: Sequence[str], what: str) -> CommandResult:
    try:
        return channel.run(command, what=what)
    except HostReadError as exc:
        if exc.kind == "missing-command":
            raise PeerRelayError(
                f"cannot {what}: {exc}; install Tailscale (and iproute2) on the relay host"
            ) from None
        raise PeerRelayError(f"cannot {what}: {exc}") from None


def enable(
    channel: HostChannel,
    socket: str,
    port: int,
    endpoints: Sequence[str],
    *,
    had_endpoints: bool = False,
    port_is_ours: bool = False,
    timeout: float = BIND_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Set the pref, then wait until the UDP port is bound; PeerRelayError says what failed.

    Unless the port is already ours (an update on the same port), it must be free first: "bound"
    afterwards would otherwise be another program's socket, and the grant would be published
    for a relay that does not listen.
    """
    if not port_is_ours:
        taken = _run(channel, bound_command(port), f"check UDP port {port}")
        if taken.returncode == 0 and is_bound(taken.stdout, port):
            raise PeerRelayError(
                f"UDP port {port} is already in use on {channel.where()} (`ss -ulpn "
                f"'sport = :{port}'` shows by whom): pick another home-derp:peerRelayPort, or "
                "stop that program; if it is tailscaled's relay set by hand, clear it with "
                "`tailscale set --relay-server-port=`"
            )
    command = set_command(socket, port, endpoints, had_endpoints=had_endpoints)
    result = _run(channel, command, "make tailscaled a peer relay")
    if result.returncode != 0:
        raise PeerRelayError(set_failure(result, command, channel.where()))
    deadline = clock() + timeout
    while True:
        bound = _run(channel, bound_command(port), f"check UDP port {port}")
        if bound.returncode == 0 and is_bound(bound.stdout, port):
            return
        if clock() >= deadline:
            raise PeerRelayError(
                f"tailscaled accepted --relay-server-port={port} but nothing listens on UDP "
                f"{port} on {channel.where()} after {timeout:.0f}s: is the port taken by another "
                "program (`ss -ulpn`)? tailscaled logs 'relayserver' errors"
            )
        sleep(0.5)


def disable(channel: HostChannel, socket: str, with_endpoints: bool) -> None:
    command = clear_command(socket, with_endpoints)
    result = _run(channel, command, "turn the peer relay off")
    if result.returncode != 0:
        raise PeerRelayError(set_failure(result, command, channel.where()))


class PeerRelayServerProvider(HomeDerpProvider):
    """Sets the pref on create/update, clears it on delete; holds nothing (the base:
    components/dynamic_provider.py)."""

    NAME = "PeerRelayServer"
    INPUT_KEYS = INPUT_KEYS
    REPLACE_KEYS = ("docker_host",)  # another host: the old one's pref is cleared by delete

    def _apply(self, props: Mapping[str, Any], olds: Mapping[str, Any] | None) -> dict[str, Any]:
        inputs = {k: plain(props.get(k)) for k in INPUT_KEYS}
        was = plain(olds) if olds is not None else {}
        channel = HostChannel(str(inputs["docker_host"]))
        enable(
            channel,
            str(inputs["socket"]),
            int(inputs["port"]),
            list(inputs["static_endpoints"]),
            had_endpoints=bool(was.get("static_endpoints")),
            port_is_ours=bool(was.get("bound")) and was.get("port") == inputs["port"],
        )
        return {**inputs, "bound": True}

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        outs = self._apply(props, None)
        return pulumi.dynamic.CreateResult(f"{outs['docker_host']}#{outs['port']}", outs)

    def change(
        self, _id: str, olds: dict[str, Any], news: dict[str, Any]
    ) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(self._apply(news, olds))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        inputs = plain(props)
        disable(
            HostChannel(str(inputs["docker_host"])),
            str(inputs["socket"]),
            bool(inputs.get("static_endpoints")),
        )


@dataclass
class PeerRelayServerArgs:
    """Inputs of :class:`PeerRelayServer`."""

    docker_host: pulumi.Input[str]
    """The relay host (its channel: unix:// here, ssh:// over OpenSSH)."""
    socket: pulumi.Input[str]
    """tailscaled's socket on the host (``home-derp:tailscaleSocket``)."""
    port: pulumi.Input[int]
    """UDP port (``home-derp:peerRelayPort``)."""
    static_endpoints: pulumi.Input[Sequence[str]]
    """``ipv4:port`` for a port-forwarded public IPv4 (see the module docstring)."""


class PeerRelayServer(pulumi.dynamic.Resource, module="homederp", name="PeerRelayServer"):
    """The host's tailscaled serving as a peer relay on ``port`` (cleared on destroy)."""

    bound: pulumi.Output[bool]
    """True once the UDP port was seen bound on the host."""

    def __init__(
        self, resource_name: str, args: PeerRelayServerArgs, opts: pulumi.ResourceOptions | None
    ) -> None:
        props: dict[str, Any] = {k: getattr(args, k) for k in INPUT_KEYS}
        props["bound"] = None
        super().__init__(PeerRelayServerProvider(), resource_name, props, opts)
