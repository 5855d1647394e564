"""The relay host's tailscaled, as the program reads it (docs/upstream/tailscale-cli.md).

derper's ``-verify-clients`` asks the host's tailscaled about every client, so that daemon is part
of the relay: its version decides which derper is built (``home-derp:tailscaleVersion: auto``), its
state decides whether any client can be admitted, and its peers are the clients it can vouch for.
Two read-only CLI calls give all of it, through the relay host's channel (``components.host``),
pointed at the socket derper will use (``home-derp:tailscaleSocket``):

* ``tailscale --socket=S version --daemon --json`` — ``version.Meta`` plus ``daemonLong``, the
  running daemon's long version (tailscale.com@v1.102.5/cmd/tailscale/cli/version.go:68-82,
  version/prop.go:256-313);
* ``tailscale --socket=S status --json`` — ``ipnstate.Status`` (ipn/ipnstate/ipnstate.go:33-89:
  ``BackendState``, ``Self`` (a ``PeerStatus``: ``PublicKey``, ``HostName``, ``DNSName``,
  ``TailscaleIPs``, ``Tags``), ``Peer`` keyed by node key, ``CurrentTailnet``).

Parsing is pure (recorded outputs reproduce every verdict); :func:`read_tailscaled` is the one
edge. When the daemon is not running, the CLI exits 1 with "failed to connect to local tailscaled"
(cmd/tailscale/cli/diag.go) — that is a fact about the host, reported as such, not a crash.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from components.errors import HomeDerpError
from components.host import CommandResult, HostChannel, HostReadError

#: tailscaled's LocalAPI socket on Linux (tailscale.com@v1.102.5/paths/paths.go); the official
#: container image uses /tmp/tailscaled.sock (TS_SOCKET, cmd/containerboot).
DEFAULT_SOCKET: Final = "/var/run/tailscale/tailscaled.sock"
#: ipn.State names (tailscale.com@v1.102.5/ipn/backend.go:28-48).
BACKEND_STATES: Final = (
    "NoState",
    "InUseOtherUser",
    "NeedsLogin",
    "NeedsMachineAuth",
    "Stopped",
    "Starting",
    "Running",
)
#: What a user must do on the relay host for each state that cannot verify clients.
STATE_FIX: Final[Mapping[str, str]] = {
    "NeedsLogin": "log the relay host in: `sudo tailscale up`",
    "NeedsMachineAuth": "approve the relay host in the admin console (device approval)",
    "Stopped": "start it: `sudo tailscale up` (it was turned off with `tailscale down`)",
    "Starting": "wait until `tailscale status` says it is running, then try again",
    "NoState": "tailscaled has not started up yet: check `systemctl status tailscaled`",
    "InUseOtherUser": "another user owns this tailscaled (Windows/macOS only): log in as them",
}

_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")
_LONG_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$")
_ZERO_KEY = "nodekey:" + "0" * 64


class TailscaledError(HomeDerpError):
    """The host's tailscaled could not be read, or what it printed is not what upstream prints.

    ``kind`` is a stable token: ``cli-missing``, ``daemon-down``, ``garbage``, ``failed``.
    The message is ``what`` (what is wrong), then ``fix`` when there is one: the doctor shows
    them apart, so its fix never repeats the problem.
    """

    def __init__(self, kind: str, what: str, fix: str | None = None) -> None:
        super().__init__(f"{what}: {fix}" if fix else what)
        self.kind = kind
        self.what = what
        self.fix = fix


@dataclass(frozen=True)
class Peer:
    """One node the relay host's tailscaled can see (a ``Status.Peer`` entry)."""

    node_key: str
    host_name: str
    dns_name: str
    tailscale_ips: tuple[str, ...]
    tags: tuple[str, ...] = ()
    """``PeerStatus.Tags`` (ipn/ipnstate/ipnstate.go:254-256): who else a tag selector names."""


@dataclass(frozen=True)
class TailscaledFacts:
    """What the relay host's tailscaled said about itself."""

    version: str
    """The daemon's release, ``X.Y.Z`` (from ``daemonLong``)."""
    version_long: str
    """``daemonLong`` as printed (``1.102.5-t4c1aae3ce-g…``)."""
    backend_state: str
    """``Running``, ``NeedsLogin``, ``Stopped`` … (ipn/backend.go)."""
    node_key: str | None
    """``Self.PublicKey`` (``nodekey:<hex>``), None before the node has a key."""
    host_name: str
    """``Self.HostName``: the OS host name the node reports."""
    dns_name: str
    """``Self.DNSName``: its MagicDNS name (``relay.tail1234.ts.net.``), empty when logged out."""
    tailscale_ips: tuple[str, ...]
    """``Self.TailscaleIPs``: its 100.x / fd7a: addresses (empty when logged out)."""
    tags: tuple[str, ...]
    """``Self.Tags``: ACL tags of the node (``tag:derp``), empty for a user-owned node."""
    tailnet: str | None
    """``CurrentTailnet.Name``, None when logged out."""
    peers: tuple[Peer, ...]
    """Every node in the host's netmap: the clients derper can admit (derper's README)."""
    home_region: str = ""
    """``Self.Relay``: the region code of the host's own home DERP (tailscale.com@v1.102.5/
    wgengine/magicsock/magicsock.go:3971-3974), empty before it has one. When it is our region,
    one of derper's homed clients is the host itself (components/usage.py)."""

    @property
    def node_name(self) -> str:
        """The name a user knows the node by: its MagicDNS label, else the OS host name."""
        return self.dns_name.split(".", 1)[0] if self.dns_name else self.host_name

    @property
    def running(self) -> bool:
        return self.backend_state == "Running"

    def to_output(self) -> dict[str, Any]:
        """The ``relayHost`` stack output (what later work and users need, nothing secret)."""
        return {
            "tailscaleVersion": self.version,
            "backendState": self.backend_state,
            "nodeName": self.node_name,
            "dnsName": self.dns_name.rstrip("."),
            "tailscaleIps": list(self.tailscale_ips),
            "tags": list(self.tags),
            "tailnet": self.tailnet,
            "peers": len(self.peers),
        }


# ---------------------------------------------------------------------------------------------
# Pure: versions


def parse_version(text: str) -> str | None:
    """``X.Y.Z`` (an optional leading ``v`` is dropped), or None when ``text`` is not one."""
    match = _VERSION.match(text.strip())
    return ".".join(match.groups()) if match else None


def short_version(long_version: str) -> str | None:
    """The ``X.Y.Z`` release of a long version (``1.102.5-t4c1aae3ce-gd1b2…`` → ``1.102.5``)."""
    match = _LONG_VERSION.match(long_version.strip())
    return ".".join(match.groups()) if match else None


def version_key(version: str) -> tuple[int, int, int]:
    """``X.Y.Z`` as a comparable tuple."""
    major, minor, patch = (int(part) for part in version.split("."))
    return major, minor, patch


# ---------------------------------------------------------------------------------------------
# Pure: the two JSON documents


def _object(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        message = f"`{what}` printed something that is not JSON: {exc}"
        raise TailscaledError("garbage", message) from None
    if not isinstance(data, dict):
        raise TailscaledError("garbage", f"`{what}` printed JSON that is not an object")
    return data


def parse_version_json(text: str) -> tuple[str, str]:
    """(``X.Y.Z``, long) of the daemon from ``tailscale version --daemon --json``.

    ``daemonLong`` is set from the daemon's status (cmd/tailscale/cli/version.go:71-72); a CLI
    older than the ``--daemon`` flag or a daemon that did not answer leaves it out.
    """
    data = _object(text, "tailscale version --daemon --json")
    long_version = data.get("daemonLong")
    if not isinstance(long_version, str) or not long_version:
        raise TailscaledError(
            "garbage",
            "`tailscale version --daemon --json` has no daemonLong: the CLI is too old for "
            "--daemon, or the daemon did not answer",
        )
    short = short_version(long_version)
    if short is None:
        raise TailscaledError("garbage", f"daemonLong {long_version!r} is not a version")
    return short, long_version


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(str(item) for item in value if isinstance(item, str))


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _peer(node_key: str, entry: Any) -> Peer:
    item = _mapping(entry)
    return Peer(
        node_key=_text(item.get("PublicKey")) or node_key,
        host_name=_text(item.get("HostName")),
        dns_name=_text(item.get("DNSName")),
        tailscale_ips=_strings(item.get("TailscaleIPs")),
        tags=_strings(item.get("Tags")),
    )


def parse_status_json(text: str, version: str, version_long: str) -> TailscaledFacts:
    """The facts of ``tailscale status --json`` (ipn/ipnstate/ipnstate.go:33-89, 234-321)."""
    data = _object(text, "tailscale status --json")
    state = data.get("BackendState")
    if not isinstance(state, str) or state not in BACKEND_STATES:
        raise TailscaledError(
            "garbage", f"`tailscale status --json` has no known BackendState (got {state!r})"
        )
    self_status = _mapping(data.get("Self"))
    node_key = _text(self_status.get("PublicKey"))
    peers = _mapping(data.get("Peer"))
    return TailscaledFacts(
        version=version,
        version_long=version_long,
        backend_state=state,
        node_key=node_key if node_key and node_key != _ZERO_KEY else None,
        host_name=_text(self_status.get("HostName")),
        dns_name=_text(self_status.get("DNSName")),
        tailscale_ips=_strings(self_status.get("TailscaleIPs")),
        tags=_strings(self_status.get("Tags")),
        tailnet=_text(_mapping(data.get("CurrentTailnet")).get("Name")) or None,
        peers=tuple(_peer(key, entry) for key, entry in peers.items()),
        home_region=_text(self_status.get("Relay")),
    )


# ---------------------------------------------------------------------------------------------
# Pure: what stops verification


#: What to do when tailscaled's socket is not where home-derp:tailscaleSocket says.
MISSING_SOCKET_FIX: Final = (
    "point home-derp:tailscaleSocket at tailscaled's socket (`tailscaled --socket`; the tailscale "
    "container: TS_SOCKET=/run/tailscale/tailscaled.sock with /run/tailscale bind-mounted from "
    "the host, as derper may not get /tmp)"
)


def missing_socket_problem(socket: str) -> str:
    """Why derper cannot ask tailscaled when its socket is not at ``socket``, and the fix."""
    return f"there is no socket at {socket} on the relay host: {MISSING_SOCKET_FIX}"


def state_fix(facts: TailscaledFacts) -> str:
    """What to do about a tailscaled that is not Running (see :func:`state_problem`)."""
    fix = STATE_FIX.get(facts.backend_state, "check `tailscale status` on the relay host")
    return f"{fix}; until then derper -verify-clients rejects every client"


def state_problem(facts: TailscaledFacts) -> str | None:
    """Why a tailscaled in this state cannot vouch for clients (None when Running)."""
    if facts.running:
        return None
    fix = STATE_FIX.get(facts.backend_state, "check `tailscale status` on the relay host")
    return (
        f"the relay host's tailscaled is {facts.backend_state}, not Running, so derper "
        f"-verify-clients would reject every client: {fix}"
    )


# ---------------------------------------------------------------------------------------------
# The edge: ask the host


def cli_command(socket: str, *args: str) -> list[str]:
    """``tailscale --socket=S …``: the CLI talks to the daemon derper will talk to."""
    return ["tailscale", f"--socket={socket}", *args]


def _daemon_down(result: CommandResult) -> bool:
    text = (result.stderr + result.stdout).lower()
    return "failed to connect to local tailscale" in text or "not running?" in text


def _run_cli(channel: HostChannel, socket: str, args: Sequence[str], what: str) -> str:
    try:
        result = channel.run(cli_command(socket, *args), what=what)
    except HostReadError as exc:
        if exc.kind == "missing-command":
            raise TailscaledError(
                "cli-missing",
                f"the tailscale CLI is not installed on {channel.where()}",
                "install Tailscale on the relay host (https://tailscale.com/download/linux) and "
                "log it in (`sudo tailscale up`)",
            ) from None
        raise
    if result.returncode != 0:
        if _daemon_down(result):
            raise TailscaledError(
                "daemon-down",
                f"tailscaled is not running on {channel.where()} (or not at {socket})",
                "start it (`sudo systemctl enable --now tailscaled`) or set "
                "home-derp:tailscaleSocket",
            )
        raise TailscaledError(
            "failed",
            f"`{shlex.join(cli_command(socket, *args))}` exited {result.returncode} on "
            f"{channel.where()}: {result.stderr.strip() or result.stdout.strip()}",
        )
    return result.stdout


#: The systemd properties that decide whether tailscaled's socket directory survives a restart.
SYSTEMD_SHOW: Final = (
    "systemctl",
    "show",
    "tailscaled.service",
    "--property=RuntimeDirectory",
    "--property=RuntimeDirectoryPreserve",
)


def runtime_directory_problem(systemctl_show: str, socket: str) -> str | None:
    """Why derper's mount of the socket's directory goes stale at a tailscaled restart, or None.

    With systemd's default ``RuntimeDirectoryPreserve=no`` the unit's ``RuntimeDirectory``
    (``/run/tailscale`` for the upstream unit, cmd/tailscaled/tailscaled.service:14-15) is deleted
    at every stop and created anew, and a bind mount keeps the deleted directory
    (docs/upstream/localapi.md#runtime-directory).
    """
    props = dict(line.split("=", 1) for line in systemctl_show.splitlines() if "=" in line)
    directories = props.get("RuntimeDirectory", "").split()
    if props.get("RuntimeDirectoryPreserve", "no") != "no" or not directories:
        return None
    parent = os.path.dirname(socket)
    runtime = [f"{root}/{d}" for d in directories for root in ("/run", "/var/run")]
    if parent not in runtime:
        return None
    return (
        f"tailscaled's unit recreates {parent} at every restart (RuntimeDirectory with "
        "RuntimeDirectoryPreserve=no), so derper's mount of it goes stale and every client is "
        "rejected until the derper container restarts. Keep the directory: `sudo systemctl edit "
        "tailscaled` and add '[Service]' and 'RuntimeDirectoryPreserve=yes'"
    )


def read_runtime_directory_problem(channel: HostChannel, socket: str) -> str | None:
    """:func:`runtime_directory_problem` on the host, or a note that the check was skipped
    because systemd could not be asked (never a silent skip: a host without systemd cannot have
    the problem, but one whose systemctl failed may)."""
    try:
        result = channel.run(SYSTEMD_SHOW, what="ask systemd about tailscaled")
    except HostReadError as exc:
        return runtime_directory_skipped(socket, str(exc))
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip().splitlines()
        why = f"`systemctl show` exited {result.returncode}" + (f": {said[0]}" if said else "")
        return runtime_directory_skipped(socket, why)
    return runtime_directory_problem(result.stdout, socket)


def runtime_directory_skipped(socket: str, why: str) -> str:
    """The note for a :func:`runtime_directory_problem` check that could not run."""
    return (
        f"not checked whether tailscaled's systemd unit recreates {os.path.dirname(socket)} at "
        f"every restart (RuntimeDirectoryPreserve), because systemd could not be asked ({why}). "
        "Without systemd this does not apply; with it, run `systemctl show tailscaled -p "
        "RuntimeDirectory -p RuntimeDirectoryPreserve` on the relay host: RuntimeDirectory "
        "naming the socket's directory with RuntimeDirectoryPreserve=no needs the drop-in "
        "'[Service]' 'RuntimeDirectoryPreserve=yes' (`sudo systemctl edit tailscaled`)"
    )


def socket_exists(channel: HostChannel, socket: str) -> bool:
    """Whether ``socket`` is a unix socket on the host (``test -S``, local or over ssh)."""
    return channel.run(["test", "-S", socket], what=f"look for {socket}").returncode == 0


def read_tailscaled(channel: HostChannel, socket: str = DEFAULT_SOCKET) -> TailscaledFacts:
    """Both CLI calls on the host; :class:`TailscaledError` says what is wrong and the fix."""
    version_text = _run_cli(
        channel, socket, ("version", "--daemon", "--json"), "read tailscaled's version"
    )
    version, version_long = parse_version_json(version_text)
    status_text = _run_cli(channel, socket, ("status", "--json"), "read tailscaled's status")
    return parse_status_json(status_text, version, version_long)
