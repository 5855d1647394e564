"""Rows about the relay host: its channel, Docker, tailscaled, the address, the ports, derpers,
and the free space derper and its builds need.

Every read goes through the channel the program itself uses (``relay_host.LiveHost``: this machine
for ``unix://``, the system OpenSSH client for ``ssh://``), and the verdicts are the program's own
rules (``components.tailscaled``, ``components.ipv6``), so a row here fails exactly when ``up``
would. Parsing (``ss``, cgroups) and judging are pure; only the ``read_*`` functions run commands.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from components import naming, tailscaled
from components.doctor.engine import Container, Engine, EngineError, looks_like_derper, read_engine
from components.doctor.model import Check, blocked, failed, lines, not_checked, passed
from components.doctor.plan import Plan
from components.host import HostChannel, HostReadError, can_read_host, scheme_of
from components.ipv6 import (
    Candidate,
    Ipv6DiscoveryError,
    choose_stable_ipv6,
    static_address_on_host,
)
from components.relay_host import LiveHost
from components.settings import HostProbe
from components.tailscaled import TailscaledError

#: Listening TCP and bound UDP sockets, numeric, with owning processes, no header (iproute2 ss(8)).
SS_COMMAND: Final = ("ss", "-Hlnptu")
#: Free space below which a rebuild of derper may fail: the build pulls a Go toolchain image and
#: fills Go's module and build caches (docs/architecture.md, "derper"); a judgement, not a measure.
DATA_ROOT_MIN_FREE: Final = 2 * 1024**3
DATA_ROOT_MIN_INODES: Final = 10_000
#: derper writes one small key file, through a temporary file beside it
#: (docs/upstream/derper.md#key-file): any less than this and it cannot start.
STATE_MIN_FREE: Final = 1024**2
STATE_MIN_INODES: Final = 16
_SS_USER = re.compile(r'\("([^"]*)",pid=(\d+)')
_CGROUP_LINE = re.compile(r"^/proc/(\d+)/cgroup:.*?([0-9a-f]{64})", re.M)

Ownership = Literal["ours", "home-derp", "foreign"]


@dataclass(frozen=True)
class Listener:
    """One socket ``ss`` lists: protocol, local port and the processes holding it."""

    protocol: str
    """``tcp`` or ``udp``."""
    address: str
    port: int
    processes: tuple[tuple[str, int], ...]
    """(command name, pid); empty when ss may not see the owner (not root)."""


# ---------------------------------------------------------------------------------------------
# Pure: parsing and judging


def parse_ss(text: str) -> list[Listener]:
    """``ss -Hlnptu`` lines → listeners (``Netid State Recv-Q Send-Q Local Peer [Process]``)."""
    found = []
    for line in text.splitlines():
        fields = line.split(None, 6)
        if len(fields) < 5 or fields[0] not in ("tcp", "udp"):
            continue
        address, _, port = fields[4].rpartition(":")
        if not port.isdigit():
            continue
        address = address.split("%", 1)[0].strip("[]")
        users = tuple((name, int(pid)) for name, pid in _SS_USER.findall(line))
        found.append(Listener(fields[0], address, int(port), users))
    return found


def parse_cgroups(text: str) -> dict[int, str]:
    """``grep -H '' /proc/<pid>/cgroup …`` → pid → container id (the 64-hex id in the path).

    Docker names a container's cgroup after its id with both drivers (``/docker/<id>`` for
    cgroupfs, ``/system.slice/docker-<id>.scope`` for systemd).
    """
    return {int(pid): cid for pid, cid in _CGROUP_LINE.findall(text)}


def ownership(container: Container, region_id: int | None, region_code: str | None) -> Ownership:
    """``ours``: this stack's derper; ``home-derp``: another of the project's; else ``foreign``."""
    role = container.labels.get(naming.ROLE_LABEL)
    if role is None:
        return "foreign"
    if role == naming.ROLE_DERPER and container.labels.get(naming.REGION_LABEL) == str(region_id):
        return "ours"
    if (
        region_id is not None
        and region_code is not None
        and container.name == naming.container_name(region_id, region_code)
    ):
        return "ours"
    return "home-derp"


def describe(container: Container) -> str:
    return f"container {container.name} (image {container.image}, {container.state})"


def holders(
    listeners: Sequence[Listener],
    cgroups: Mapping[int, str],
    containers: Sequence[Container],
    port: int,
    protocol: str,
) -> list[tuple[str, Container | None]]:
    """Who holds ``port``: (description, the container or None for a host process)."""
    by_id = {c.id: c for c in containers}
    found: dict[str, Container | None] = {}
    for listener in listeners:
        if listener.port != port or listener.protocol != protocol:
            continue
        if not listener.processes:
            found.setdefault(
                "a process ss cannot name (run the doctor as root on the host to see it)", None
            )
        for name, pid in listener.processes:
            container = by_id.get(cgroups.get(pid, ""))
            if container is not None:
                found[describe(container)] = container
            elif name != "docker-proxy":  # its container is found below by its published port
                found[f"process {name} (pid {pid})"] = None
    for container in containers:
        if container.running and (port, protocol) in container.published:
            found[describe(container)] = container
    return list(found.items())


@dataclass(frozen=True)
class Space:
    """What ``df -P`` and ``/proc/self/mounts`` say about the filesystem holding a path."""

    path: str
    mountpoint: str
    size: int
    """Bytes."""
    free: int
    """Bytes available to unprivileged writers."""
    free_inodes: int | None
    """None when the filesystem has no inode count (``-`` in ``df -Pi``)."""
    read_only: bool

    def describe(self) -> str:
        inodes = "" if self.free_inodes is None else f", {self.free_inodes:,} inodes"
        ro = ", READ-ONLY" if self.read_only else ""
        return f"{gib(self.free)} of {gib(self.size)} free{inodes} ({self.mountpoint}{ro})"


def gib(size: int) -> str:
    return f"{size / 1024**3:.1f} GiB" if size >= 1024**3 else f"{size / 1024**2:.1f} MiB"


def parse_df(text: str) -> list[tuple[int, int, str]]:
    """``df -P`` rows after the header, in the order of the paths asked: (second column, fourth
    column, mountpoint) — for ``df -Pk`` (1024-blocks, available), for ``df -Pi`` (inodes, free
    inodes). A ``-`` (a filesystem without inode counts) is -1. POSIX fixes the columns (df(1p),
    ``-P``: one line per filesystem)."""
    rows = []
    for line in text.splitlines()[1:]:
        fields = line.split(None, 5)
        if len(fields) == 6:
            total, avail = (int(f) if f.isdigit() else -1 for f in (fields[1], fields[3]))
            rows.append((total, avail, fields[5]))
    return rows


def parse_mounts(text: str) -> dict[str, list[str]]:
    """``/proc/self/mounts`` → mountpoint → options of its last (topmost) mount (proc(5):
    spaces in paths are ``\040``)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            point = fields[1].encode().decode("unicode_escape")
            found[point] = fields[3].split(",")
    return found


def space_verdict(
    space: Space, what: str, min_free: int, min_inodes: int, fix: str, check_id: str
) -> Check:
    """Pass, or fail with ``fix``: read-only, too little space, or too few inodes."""
    if space.read_only:
        return failed(
            check_id,
            f"{what} is on a READ-ONLY filesystem ({space.mountpoint})",
            "derper cannot write its key there and exits at start ('read-only file system' in "
            "its log). Find out why it is read-only on the relay host (`dmesg`: a filesystem "
            "remounted read-only after errors?) and remount it read-write",
            space.describe(),
        )
    low_space = space.free < min_free
    low_inodes = space.free_inodes is not None and 0 <= space.free_inodes < min_inodes
    if low_space or low_inodes:
        short = "space" if low_space else "inodes"
        return failed(
            check_id,
            f"{what} is nearly full: {space.describe()}",
            f"free {short} on the relay host ({fix}); derper exits at start with 'no space left "
            "on device' when it cannot write its key",
            f"needs at least {gib(min_free)} and {min_inodes:,} inodes",
        )
    return passed(check_id, f"{what}: {space.describe()}")


# ---------------------------------------------------------------------------------------------
# The edge: what the host says


def read_listeners(channel: HostChannel) -> list[Listener]:
    result = channel.run(SS_COMMAND, what="list the host's listening sockets")
    if result.returncode != 0:
        raise HostReadError("ssh", f"`ss -Hlnptu` failed on {channel.where()}: {result.stderr}")
    return parse_ss(result.stdout)


def read_cgroups(channel: HostChannel, pids: Sequence[int]) -> dict[int, str]:
    """Container ids of ``pids`` (a vanished pid is simply missing)."""
    if not pids:
        return {}
    files = [f"/proc/{pid}/cgroup" for pid in sorted(set(pids))]
    result = channel.run(["grep", "-H", "", *files], what="read the processes' cgroups")
    return parse_cgroups(result.stdout)


def read_space(channel: HostChannel, paths: Sequence[str]) -> dict[str, Space]:
    """Free space of the filesystems holding ``paths`` on the host (``df -Pk``, ``df -Pi``,
    ``/proc/self/mounts``). :class:`HostReadError` names what could not be read (``df`` cannot
    look into a directory the user may not enter: Docker's data root is root's)."""
    blocks = channel.run(["df", "-Pk", *paths], what="measure free space")
    if blocks.returncode != 0:
        said = blocks.stderr.strip() or f"exit {blocks.returncode}"
        raise HostReadError("ssh", f"`df` failed on {channel.where()}: {said}")
    inodes = channel.run(["df", "-Pi", *paths], what="count free inodes")
    mounts = parse_mounts(channel.run(["cat", "/proc/self/mounts"], what="read mounts").stdout)
    sizes = parse_df(blocks.stdout)
    counts = parse_df(inodes.stdout) if inodes.returncode == 0 else []
    found = {}
    for n, (path, (size, avail, mountpoint)) in enumerate(zip(paths, sizes, strict=False)):
        # btrfs and others count no inodes (0 in every column): no inode limit to judge
        free_inodes = counts[n][1] if n < len(counts) and counts[n][0] > 0 else -1
        found[path] = Space(
            path=path,
            mountpoint=mountpoint,
            size=size * 1024,
            free=max(avail, 0) * 1024,
            free_inodes=None if free_inodes < 0 else free_inodes,
            read_only="ro" in mounts.get(mountpoint, []),
        )
    return found


# ---------------------------------------------------------------------------------------------
# Rows


def channel_check(plan: Plan, host: LiveHost | None) -> Check:
    """``host.channel``: can the relay host be asked at all (what the program's reads need)."""
    if plan.docker_host is None:
        return not_checked("host.channel", "home-derp:dockerHost is not a Docker URL (settings)")
    if not can_read_host(plan.docker_host) or host is None:
        return not_checked(
            "host.channel",
            f"{plan.docker_host} is a bare Docker API: tailscaled, addresses and ports of the "
            "relay host cannot be read",
            "run the doctor on the relay host with dockerHost unix://, or use ssh://user@host",
        )
    try:
        host.channel.run(["true"], what="reach the relay host")
    except HostReadError as exc:
        return failed(
            "host.channel",
            f"cannot run commands on {host.channel.where()}",
            str(exc),
        )
    return passed("host.channel", f"commands run on {host.channel.where()}")


def engine_check(plan: Plan, host: LiveHost | None, gate: Check) -> tuple[Check, Engine | None]:
    """``docker.engine``: the engine answers, and its version."""
    if plan.docker_host is None:
        return not_checked("docker.engine", "home-derp:dockerHost is invalid (settings)"), None
    if scheme_of(plan.docker_host) == "ssh" and gate.status == "fail":
        return blocked("docker.engine", gate), None
    channel = host.channel if host is not None else HostChannel(plan.docker_host)
    try:
        engine = read_engine(plan.docker_host, channel, volumes=_state_volume(plan))
    except EngineError as exc:
        return failed(
            "docker.engine",
            f"the Docker engine at {plan.docker_host} does not answer",
            "start Docker on the relay host (`sudo systemctl enable --now docker`) and make sure "
            "this user may use it (the `docker` group); check home-derp:dockerHost",
            str(exc),
        ), None
    return passed(
        "docker.engine",
        f"Docker {engine.version} (API {engine.api_version}, {engine.os}/{engine.arch}), "
        f"{len(engine.containers)} container(s)",
    ), engine


def _tailscaled_failure(exc: TailscaledError | HostReadError) -> Check:
    """The summary says what is wrong, the fix only what to do (the error carries both)."""
    if isinstance(exc, TailscaledError) and exc.fix:
        return failed("tailscaled.daemon", exc.what, exc.fix)
    return failed(
        "tailscaled.daemon",
        "tailscaled on the relay host could not be read",
        "check that `tailscale status` works for this user on the relay host",
        str(exc),
    )


def tailscaled_checks(plan: Plan, host: HostProbe | None, gate: Check) -> list[Check]:
    """``tailscaled.daemon`` (running, logged in, version) and ``tailscaled.socket``."""
    ids = ("tailscaled.daemon", "tailscaled.socket")
    if not plan.verify_clients:
        why = (
            "home-derp:verifyClients is false (or headscale's /verify admits clients): derper "
            "does not ask tailscaled"
        )
        return [not_checked(i, why) for i in ids]
    if gate.status != "pass" or host is None:
        return [blocked(i, gate) for i in ids]
    if plan.socket is None:
        return [not_checked(i, "home-derp:tailscaleSocket is invalid (settings)") for i in ids]
    socket = _socket_check(plan.socket, host)
    try:
        facts = host.tailscaled(plan.socket)
    except (TailscaledError, HostReadError) as exc:
        # the CLI is pointed at the socket: without one it says "not running", and the cause to
        # fix is the socket's path (the settings preflight names tailscaleSocket for the same)
        missing = socket.status == "fail" and getattr(exc, "kind", "") == "daemon-down"
        daemon = blocked("tailscaled.daemon", socket) if missing else _tailscaled_failure(exc)
    else:
        problem = tailscaled.state_problem(facts)
        daemon = (
            failed(
                "tailscaled.daemon",
                f"tailscaled {facts.version} is {facts.backend_state}, not Running",
                tailscaled.state_fix(facts),
            )
            if problem
            else passed(
                "tailscaled.daemon",
                f"tailscaled {facts.version} is Running as {facts.node_name} in tailnet "
                f"{facts.tailnet or '?'} ({len(facts.peers)} peer(s) derper can admit)",
            )
        )
    return [daemon, socket]


def _socket_check(socket: str, host: HostProbe) -> Check:
    try:
        present = host.socket_exists(socket)
    except HostReadError as exc:
        return failed("tailscaled.socket", f"cannot look for {socket}", str(exc))
    if not present:
        return failed(
            "tailscaled.socket",
            f"no socket at {socket} on the relay host",
            tailscaled.MISSING_SOCKET_FIX,
        )
    return passed("tailscaled.socket", f"{socket} is a socket (derper gets its directory)")


def _stable_hint(candidates: Sequence[Candidate], interface: str | None) -> str:
    try:
        choice = choose_stable_ipv6(list(candidates), interface)
    except Ipv6DiscoveryError:
        return "the host has no stable global address at all"
    return f"the host's stable address is {choice.address} on {choice.interface} ({choice.kind})"


def ipv6_check(plan: Plan, host: HostProbe | None, gate: Check) -> tuple[Check, str | None]:
    """``host.ipv6``: the address the record will publish is the host's, and stable.

    Also returns that address (what ``auto`` picks), None when there is none.
    """
    if plan.ipv6 is None:
        return not_checked("host.ipv6", "home-derp:ipv6 is not set or not valid (settings)"), None
    if gate.status != "pass" or host is None:
        return blocked("host.ipv6", gate), None
    if plan.ipv6 == "auto":
        # The program's own choice (settings: ipv6=auto), not a second one made here.
        if plan.ipv6_address is None:
            return failed(
                "host.ipv6",
                "no usable IPv6 address on the relay host",
                "give the host a stable global IPv6 address (SLAAC/EUI-64 or static), or check "
                "home-derp:ipv6Interface",
            ), None
        summary = f"auto picks {plan.ipv6_address} on {plan.ipv6_found_on}"
        return passed("host.ipv6", summary, plan.ipv6_why), plan.ipv6_address
    try:
        candidates = host.addresses(plan.ipv6_interface)
    except (HostReadError, Ipv6DiscoveryError) as exc:
        return failed(
            "host.ipv6",
            "the relay host's IPv6 addresses could not be read",
            "check that `ip -6 addr` works for this user on the relay host",
            str(exc),
        ), None
    return _static_verdict(plan.ipv6, plan.ipv6_interface, candidates), plan.ipv6


def _static_verdict(address: str, interface: str | None, candidates: Sequence[Candidate]) -> Check:
    hold = static_address_on_host(address, candidates, interface)
    hint = _stable_hint(candidates, interface)
    if not hold.held:
        # stricter than the program, which only warns: the doctor's ✗ carries the NAT66 caveat
        return failed(
            "host.ipv6",
            f"{address} is not an address of the relay host",
            f"set home-derp:ipv6 to the host's address ({hint}) or to auto; if a NAT66 or proxy "
            "in front of the host forwards this address, this row does not apply",
            lines([c.describe() for c in candidates]),
        )
    if hold.usable is None:
        return failed(
            "host.ipv6",
            f"{address} is held as {hold.problem}",
            f"publish the stable address instead ({hint}), or set home-derp:ipv6 auto",
            lines([c.describe() for c in hold.held]),
        )
    usable = hold.usable
    return passed("host.ipv6", f"{address} is on {usable.interface} and stable", usable.describe())


def port_checks(
    plan: Plan, host: LiveHost | None, gate: Check, engine: Engine | None
) -> list[Check]:
    """``ports.derp`` (TCP) and ``ports.stun`` (UDP): free, or held by this stack's derper."""
    wanted = (("ports.derp", plan.derp_port, "tcp"), ("ports.stun", plan.stun_port, "udp"))
    if gate.status != "pass" or host is None:
        return [blocked(i, gate) for i, _, _ in wanted]
    try:
        listeners = read_listeners(host.channel)
        pids = [pid for listener in listeners for _, pid in listener.processes]
        cgroups = read_cgroups(host.channel, pids)
    except HostReadError as exc:
        return [not_checked(i, f"cannot list the host's sockets: {exc}") for i, _, _ in wanted]
    containers = engine.containers if engine is not None else ()
    checks = []
    for check_id, port, protocol in wanted:
        if port is None:
            checks.append(not_checked(check_id, "the port is not valid (settings)"))
            continue
        found = holders(listeners, cgroups, containers, port, protocol)
        checks.append(_port_verdict(check_id, port, protocol, found, plan))
    return checks


def _port_verdict(
    check_id: str,
    port: int,
    protocol: str,
    found: Sequence[tuple[str, Container | None]],
    plan: Plan,
) -> Check:
    name = f"{protocol.upper()} {port}"
    key = "home-derp:derpPort" if protocol == "tcp" else "home-derp:stunPort"
    if not found:
        return passed(check_id, f"{name} is free on the relay host")
    kinds = [ownership(c, plan.region_id, plan.region_code) if c else "foreign" for _, c in found]
    if all(k == "ours" for k in kinds):
        return passed(
            check_id,
            f"{name} is held by this stack's derper ({found[0][0]}); `up` replaces it in place",
        )
    held = [(text, c) for (text, c), kind in zip(found, kinds, strict=True) if kind != "ours"]
    others = [text for text, _ in held]
    containers = " ".join(c.name for _, c in held if c is not None)
    fix = f"stop what holds {name} on the relay host, or pick another {key}"
    if any(k == "home-derp" for k in kinds):
        fix = f"another home-derp relay on this host uses {name}: give this stack its own {key}"
    elif containers:
        fix = (
            f"stop and remove it on the relay host (`docker rm -f {containers}`), or pick "
            f"another {key}"
        )
    return failed(
        check_id, f"{name} is already in use", fix, lines([f"held by {o}" for o in others])
    )


def derper_check(plan: Plan, engine: Engine | None, gate: Check) -> Check:
    """``docker.derper``: a hand-made derper container that ``up`` would collide with."""
    if engine is None:
        return blocked("docker.derper", gate)
    ports = {(plan.derp_port, "tcp"), (plan.stun_port, "udp")}
    ours_name = (
        naming.container_name(plan.region_id, plan.region_code)
        if plan.region_id is not None and plan.region_code is not None
        else None
    )
    foreign = [
        c
        for c in engine.containers
        if ownership(c, plan.region_id, plan.region_code) == "foreign"
        and (looks_like_derper(c) or c.name == ours_name or ports & set(c.published))
    ]
    # A stopped one is in the way only if Docker restarts it by itself, or holds our name
    # (`up` cannot create a container whose name is taken, whatever that one's state).
    blocking = [
        c for c in foreign if c.running or c.restart_policy == "always" or c.name == ours_name
    ]
    if not blocking:
        idle = [f"{describe(c)}: stopped; remove it with `docker rm {c.name}`" for c in foreign]
        return passed("docker.derper", "no hand-made derper runs on the relay host", lines(idle))
    names = " ".join(c.name for c in blocking)
    region = f"{plan.region_id}" if plan.region_id is not None else "<regionId>"
    return failed(
        "docker.derper",
        f"a derper not made by home-derp runs on the relay host: {names}",
        f"stop and remove it before `pulumi up` (`docker rm -f {names}` on the relay host). "
        f"Its DNS record for {plan.hostname or 'the hostname'} is adopted by `up`; if its region "
        f"{region} is in the tailnet policy, take it over with "
        "`pulumi config set home-derp:adoptRegion true`",
        lines([describe(c) for c in blocking]),
    )


def _state_volume(plan: Plan) -> tuple[str, ...]:
    if plan.region_id is None or plan.region_code is None:
        return ()
    return (naming.state_volume_name(plan.region_id, plan.region_code),)


def space_checks(
    plan: Plan, host: LiveHost | None, gate: Check, engine: Engine | None, engine_row: Check
) -> list[Check]:
    """``docker.space`` (Docker's data root: images, builds, logs, local volumes) and
    ``derper.state`` (the filesystem of derper's state volume, where its key lives)."""
    ids = ("docker.space", "derper.state")
    if engine is None:  # the engine row says why (not the channel, which may well have passed)
        return [blocked(i, engine_row) for i in ids]
    if host is None or gate.status != "pass":
        why = "the relay host's commands cannot be run (a tcp:// Docker host, or host.channel)"
        fix = "run the doctor on the relay host with dockerHost unix://, or use ssh://user@host"
        return [not_checked(i, why, fix) for i in ids]
    if engine.root_dir is None:
        return [not_checked(i, "the engine did not say where its data root is") for i in ids]
    volume = next(iter(engine.volumes.values()), None)
    paths = [engine.root_dir]
    if volume is not None and volume.options and volume.mountpoint:
        paths.append(volume.mountpoint)
    try:
        spaces = read_space(host.channel, paths)
    except HostReadError as exc:
        why = f"free space could not be measured: {exc}"
        fix = "run the doctor as root on the relay host (Docker's data root is root's)"
        return [not_checked(i, why, fix) for i in ids]
    root = spaces.get(engine.root_dir)
    if root is None:
        return [not_checked(i, f"`df` said nothing about {engine.root_dir}") for i in ids]
    data_root = space_verdict(
        root,
        f"Docker's data root {engine.root_dir}",
        DATA_ROOT_MIN_FREE,
        DATA_ROOT_MIN_INODES,
        "`docker system prune` removes stopped containers, unused images and build cache",
        "docker.space",
    )
    return [data_root, _state_row(plan, volume, root, spaces)]


def _state_row(plan: Plan, volume: Any, root: Space, spaces: Mapping[str, Space]) -> Check:
    fix = "`docker system prune`, or free the disk that holds it"
    if volume is None:
        name = _state_volume(plan)
        if not name:
            return not_checked("derper.state", "regionId/regionCode are not valid (settings)")
        return passed(
            "derper.state",
            f"{name[0]} does not exist yet: `up` creates it on Docker's data root (docker.space)",
        )
    what = f"derper's state volume {volume.name}"
    if not volume.options:
        return space_verdict(root, what, STATE_MIN_FREE, STATE_MIN_INODES, fix, "derper.state")
    mounted = spaces.get(volume.mountpoint)
    if mounted is None or mounted.mountpoint != volume.mountpoint:
        return not_checked(
            "derper.state",
            f"{what} is a {volume.options.get('type', volume.driver)} volume ({volume.options}) "
            "that is mounted only while a container uses it; it is not mounted now",
            "start derper (`pulumi up`) and run the doctor again while it runs",
        )
    return space_verdict(mounted, what, STATE_MIN_FREE, STATE_MIN_INODES, fix, "derper.state")
