"""``ipv6: auto`` discovery against real pieces.

* Real interfaces: network namespaces and veth pairs made by the tests, addresses added with
  ``ip`` or created by the kernel itself (SLAAC from a router advertisement the test sends, privacy
  extensions, duplicate address detection). The product reads them through its own
  ``read_host_addresses`` with ``command_prefix=ip netns exec NS``.
* Recorded ``ip -j`` outputs (``tests/ipv6_samples/``) pin the parser to the real format and keep
  host shapes a namespace cannot have (NetworkManager's userspace SLAAC).
* The ``ssh://`` path against a real OpenSSH ``sshd`` started here on loopback with throwaway keys.

Traffic stays on loopback and inside the namespaces these tests create.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.host import SSH_OPTS_ENV, HostReadError, parse_ssh_host, ssh_command
from components.ipv6 import (
    KIND_RANK,
    Candidate,
    Choice,
    Ipv6DiscoveryError,
    choose_stable_ipv6,
    discover_stable_ipv6,
    ip_command,
    parse_ip_json,
    read_host_addresses,
    static_address_on_host,
)
from tests.peers.ports import free_port
from tests.peers.sshd import Sshd

SAMPLES = Path(__file__).parent / "ipv6_samples"
LOCAL = "unix:///var/run/docker.sock"
SSHD = "/usr/sbin/sshd"
MAC = "02:11:22:33:44:55"
EUI64_IID = "11:22ff:fe33:4455"  # MAC with the universal/local bit flipped, ff:fe in the middle


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a setup command; failures show its stderr."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}")
    return done


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll until ``predicate`` holds (DAD, SLAAC and sshd start-up take a moment)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Netns:
    """A network namespace made by a test."""

    name: str

    @property
    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def ip(self, *args: str) -> None:
        sh("ip", "-n", self.name, *args)

    def sysctl(self, key: str, value: str) -> None:
        sh(*self.prefix, "sysctl", "-qw", f"{key}={value}")

    def add(self, ifname: str, address: str, *flags: str) -> None:
        self.ip("-6", "addr", "add", address, "dev", ifname, *flags)

    def addresses(self, ifname: str | None = None) -> list[Candidate]:
        """Every IPv6 address, unfiltered (link-local included), as the kernel reports it."""
        dev = ("dev", ifname) if ifname else ()
        return parse_ip_json(sh("ip", "-n", self.name, "-j", "-6", "addr", "show", *dev).stdout)

    def read(self, interface: str | None = None) -> str:
        """The product's read, pointed into this namespace."""
        return read_host_addresses(LOCAL, interface, command_prefix=self.prefix)

    def discover(self, interface: str | None = None) -> Choice:
        return discover_stable_ipv6(LOCAL, interface, command_prefix=self.prefix)


@pytest.fixture
def netns() -> Iterator[Callable[[], Netns]]:
    """Makes namespaces on demand (loopback up); deletes all of them afterwards."""
    made: list[Netns] = []

    def make() -> Netns:
        ns = Netns(f"hd6-{uuid.uuid4().hex[:10]}")
        sh("ip", "netns", "add", ns.name)
        made.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns

    try:
        yield make
    finally:
        for ns in made:  # deleting a namespace also deletes the veth ends inside it
            sh("ip", "netns", "del", ns.name, check=False)


def link(host: Netns, ifname: str, peer: Netns, peer_if: str, *, mac: str | None = None) -> None:
    """A veth pair between two namespaces, both ends up (``mac`` on the host end)."""
    host.ip("link", "add", ifname, "type", "veth", "peer", "name", peer_if, "netns", peer.name)
    if mac:
        host.ip("link", "set", ifname, "address", mac)
    host.ip("link", "set", ifname, "up")
    peer.ip("link", "set", peer_if, "up")


def verdict_of(choice_or_error: object, address: str) -> str:
    """``kind`` or rejection reason the chooser gave ``address``."""
    verdicts = getattr(choice_or_error, "verdicts", ())
    for v in verdicts:
        if ipaddress.IPv6Address(v.candidate.address) == ipaddress.IPv6Address(address):
            return str(v.kind or v.rejected)
    raise AssertionError(f"{address} not among the candidates: {verdicts}")


# Sends one router advertisement with a /64 prefix (flags L+A) on an interface of the router
# namespace. The kernel of the host namespace then runs SLAAC itself: EUI-64 or stable-privacy
# addresses and, with use_tempaddr=2, temporary (privacy) addresses.
RA_SENDER = r"""
import socket, struct, sys
ifname, prefix, preferred = sys.argv[1], sys.argv[2], int(sys.argv[3])
idx = socket.if_nametoindex(ifname)
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, idx)
ra = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0, 0, 0, 0)
pio = struct.pack("!BBBBIII", 3, 4, 64, 0xC0, 86400, preferred, 0)
pio += socket.inet_pton(socket.AF_INET6, prefix)
s.sendto(ra + pio, ("ff02::1", 0, 0, idx))
"""


def advertise(router: Netns, ifname: str, prefix: str, preferred: int = 14400) -> None:
    """The router namespace announces ``prefix``/64 on ``ifname``."""
    sh(*router.prefix, sys.executable, "-c", RA_SENDER, ifname, prefix, str(preferred))


def link_local_ready(ns: Netns, *ifnames: str) -> Callable[[], bool]:
    """Every ``ifname`` has a link-local address that finished DAD (needed to send an RA)."""

    def check() -> bool:
        return all(
            any(c.scope == "link" and "tentative" not in c.flags for c in ns.addresses(ifname))
            for ifname in ifnames
        )

    return check


def settled(ns: Netns, ifname: str, count: int) -> Callable[[], bool]:
    """At least ``count`` global addresses on ``ifname``, none still in DAD."""

    def check() -> bool:
        found = [c for c in ns.addresses(ifname) if c.scope == "global"]
        return len(found) >= count and not any("tentative" in c.flags for c in found)

    return check


# ---------------------------------------------------------------- real interfaces


# Several stable globals: the lowest wins, whatever order the kernel lists them in.
def test_several_static_globals_choose_lowest_every_time(netns: Callable[[], Netns]) -> None:
    host, peer = netns(), netns()
    link(host, "up0", peer, "r0")
    for address in ("2a01:4f8:1:30::20/64", "2a01:4f8:1:10::99/64", "2a01:4f8:1:20::1/64"):
        host.add("up0", address, "nodad")
    first = host.discover()
    assert (first.address, first.interface, first.kind) == ("2a01:4f8:1:10::99", "up0", "static")
    assert "2a01:4f8:1:20::1" in first.reason and "2a01:4f8:1:30::20" in first.reason
    assert [host.discover().address for _ in range(3)] == [first.address] * 3
    shuffled = parse_ip_json(host.read())
    random.Random(5).shuffle(shuffled)
    assert choose_stable_ipv6(shuffled).address == first.address


# Every address class and state the kernel can hold that must never be published is rejected,
# each with its own reason; the one good static address is chosen.
def test_unusable_addresses_rejected_with_reasons(netns: Callable[[], Netns]) -> None:
    host, peer = netns(), netns()
    link(host, "up0", peer, "r0")
    host.add("up0", "2a01:4f8:1:2::10/64", "nodad")
    host.add("up0", "fd00:1::5/64", "nodad")  # ULA
    host.add("up0", "2a01:4f8:1:3::7/64", "preferred_lft", "0", "valid_lft", "3600", "nodad")
    host.add("up0", "2001:db8::1/64", "nodad")
    host.add("up0", "::ffff:192.0.2.4/128", "nodad")
    # dadfailed: the peer already owns the address, so the host's DAD probe gets an answer.
    peer.add("r0", "2a01:4f8:1:2::66/64", "nodad")
    host.add("up0", "2a01:4f8:1:2::66/64")
    # tentative: DAD cannot start while the link has no carrier (peer end down).
    side = netns()
    host.ip("link", "add", "up1", "type", "veth", "peer", "name", "r1", "netns", side.name)
    host.ip("link", "set", "up1", "up")
    host.add("up1", "2a01:4f8:9::1/64")

    def dad_failed() -> bool:
        return any("dadfailed" in c.flags for c in host.addresses("up0"))

    wait_for("DAD to fail", dad_failed)
    choice = host.discover()
    assert choice.address == "2a01:4f8:1:2::10"
    assert "unique local" in verdict_of(choice, "fd00:1::5")
    assert "deprecated" in verdict_of(choice, "2a01:4f8:1:3::7")
    assert "documentation" in verdict_of(choice, "2001:db8::1")
    assert "IPv4-mapped" in verdict_of(choice, "::ffff:192.0.2.4")
    assert "duplicate address detection failed" in verdict_of(choice, "2a01:4f8:1:2::66")
    assert "tentative" in verdict_of(choice, "2a01:4f8:9::1")
    # `scope global` keeps link-local addresses out of the read; unfiltered, they are rejected.
    assert not any(c.address.startswith("fe80:") for c in parse_ip_json(host.read()))
    unfiltered = choose_stable_ipv6(host.addresses())
    link_local = [v for v in unfiltered.verdicts if v.candidate.address.startswith("fe80:")]
    assert link_local and all(v.rejected == "link-local address" for v in link_local)


# Kernel SLAAC from a real router advertisement: EUI-64 and stable-privacy addresses are usable,
# the privacy (temporary) addresses the kernel derives from them are rejected, EUI-64 ranks first.
def test_slaac_eui64_stable_privacy_and_temporary(netns: Callable[[], Netns]) -> None:
    host, router = netns(), netns()
    host.ip("link", "add", "up0", "type", "veth", "peer", "name", "r0", "netns", router.name)
    host.ip("link", "add", "up1", "type", "veth", "peer", "name", "r1", "netns", router.name)
    host.ip("link", "set", "up0", "address", MAC)
    for ifname in ("up0", "up1"):
        host.sysctl(f"net.ipv6.conf.{ifname}.forwarding", "0")
        host.sysctl(f"net.ipv6.conf.{ifname}.accept_ra", "2")
        host.sysctl(f"net.ipv6.conf.{ifname}.use_tempaddr", "2")
    # RFC 7217 addresses on up1 (the secret itself is arbitrary).
    host.sysctl("net.ipv6.conf.up1.stable_secret", "2a01:4f8:dead:beef::1")
    host.ip("link", "set", "up1", "addrgenmode", "stable_secret")
    for ifname, peer_if in (("up0", "r0"), ("up1", "r1")):
        host.ip("link", "set", ifname, "up")
        router.ip("link", "set", peer_if, "up")
    # The router needs its link-local source address (after its own DAD) to advertise.
    wait_for("router link-local", link_local_ready(router, "r0", "r1"))
    advertise(router, "r0", "2a01:4f8:2:1::")
    advertise(router, "r1", "2a01:4f8:2:2::")
    wait_for("SLAAC on up0", settled(host, "up0", 2))
    wait_for("SLAAC on up1", settled(host, "up1", 2))

    on_up0 = host.discover("up0")
    assert on_up0.address == f"2a01:4f8:2:1:{EUI64_IID}"
    assert on_up0.kind == "eui64" and on_up0.host_id_survives_prefix_change
    assert on_up0.interface_id == f"::{EUI64_IID}"
    on_up1 = host.discover("up1")
    assert on_up1.kind == "stable-privacy" and on_up1.address.startswith("2a01:4f8:2:2:")
    assert not on_up1.host_id_survives_prefix_change
    temporaries = [c for c in parse_ip_json(host.read()) if "temporary" in c.flags]
    assert {c.interface for c in temporaries} == {"up0", "up1"}
    for c in temporaries:
        assert "temporary privacy address" in verdict_of(
            on_up0 if c.interface == "up0" else on_up1, c.address
        )
    assert host.discover().address == on_up0.address  # eui64 outranks stable-privacy


# A prefix change as the router announces it: the old prefix with preferred lifetime 0, the new one
# fresh. The choice moves to the new prefix with the same EUI-64 host part.
def test_prefix_change_moves_choice_to_new_prefix(netns: Callable[[], Netns]) -> None:
    host, router = netns(), netns()
    host.ip("link", "add", "up0", "type", "veth", "peer", "name", "r0", "netns", router.name)
    host.ip("link", "set", "up0", "address", MAC)
    host.sysctl("net.ipv6.conf.up0.forwarding", "0")
    host.sysctl("net.ipv6.conf.up0.accept_ra", "2")
    host.ip("link", "set", "up0", "up")
    router.ip("link", "set", "r0", "up")
    wait_for("router link-local", link_local_ready(router, "r0"))
    advertise(router, "r0", "2a01:4f8:3:1::")
    wait_for("SLAAC", settled(host, "up0", 1))
    before = host.discover()
    advertise(router, "r0", "2a01:4f8:3:1::", preferred=0)
    advertise(router, "r0", "2a01:4f8:3:2::")
    wait_for("new prefix", settled(host, "up0", 2))
    after = host.discover()
    assert before.address == f"2a01:4f8:3:1:{EUI64_IID}"
    assert after.address == f"2a01:4f8:3:2:{EUI64_IID}"
    assert "deprecated" in verdict_of(after, before.address)


# A manually added mngtmpaddr base makes the kernel derive a real temporary address from it; the
# base ranks above a static address, the temporary one is rejected.
def test_mngtmpaddr_base_outranks_static(netns: Callable[[], Netns]) -> None:
    host, peer = netns(), netns()
    link(host, "up0", peer, "r0")
    host.sysctl("net.ipv6.conf.up0.use_tempaddr", "2")
    host.add("up0", "2a01:4f8:4::1/64", "nodad")
    host.add("up0", "2a01:4f8:5::9/64", "mngtmpaddr", "nodad")
    wait_for("temporary address", settled(host, "up0", 3))
    choice = host.discover()
    assert (choice.address, choice.kind) == ("2a01:4f8:5::9", "mngtmpaddr")
    temporary = next(c for c in host.addresses() if "temporary" in c.flags)
    assert temporary.address.startswith("2a01:4f8:5:0:")
    assert "temporary" in verdict_of(choice, temporary.address)


# Container/VPN interfaces are skipped unless ipv6Interface names them; `dev` limits the read.
def test_interface_selection(netns: Callable[[], Netns]) -> None:
    host, peer = netns(), netns()
    link(host, "docker0", peer, "r0")
    link(host, "up0", peer, "r1")
    host.add("docker0", "2a01:4f8:6::1/64", "nodad")
    host.add("up0", "2a01:4f8:7::1/64", "nodad")
    assert host.discover().address == "2a01:4f8:7::1"
    only_docker = host.discover("docker0")
    assert (only_docker.address, only_docker.interface) == ("2a01:4f8:6::1", "docker0")
    assert {c.interface for c in parse_ip_json(host.read("up0"))} == {"up0"}
    with pytest.raises(Ipv6DiscoveryError, match=r"eth9.*ipv6Interface"):
        host.read("eth9")


# No usable address: the error lists every candidate with the reason it was rejected.
def test_no_usable_address_lists_every_candidate(netns: Callable[[], Netns]) -> None:
    host, peer = netns(), netns()
    link(host, "up0", peer, "r0")
    host.add("up0", "fd00:2::1/64", "nodad")
    host.add("up0", "2a01:4f8:8::1/64", "preferred_lft", "0", "valid_lft", "600", "nodad")
    with pytest.raises(Ipv6DiscoveryError) as caught:
        host.discover()
    message = str(caught.value)
    assert "fd00:2::1/64 on up0" in message and "unique local" in message
    assert "2a01:4f8:8::1/64 on up0" in message and "deprecated" in message
    assert len(caught.value.verdicts) == 2


# ---------------------------------------------------------------- recorded outputs (pure)


def sample(name: str) -> list[Candidate]:
    return parse_ip_json((SAMPLES / name).read_text())


# iproute2 prints `{}` for addresses the scope filter hid; the parser skips them.
def test_parse_real_format_with_filtered_entries() -> None:
    raw = json.loads((SAMPLES / "slaac_privacy.json").read_text())
    assert any(info == {} for link in raw for info in link["addr_info"])
    candidates = sample("slaac_privacy.json")
    assert all(c.scope == "global" for c in candidates)
    assert {"stable-privacy", "mngtmpaddr", "dynamic"} <= next(
        c.flags for c in candidates if "stable-privacy" in c.flags
    )


# Each recorded host shape gives the documented choice.
@pytest.mark.parametrize(
    ("name", "interface", "address", "kind"),
    [
        ("slaac_privacy.json", None, "2a01:4f8:2:1:10a2:ef7c:5ce:b9", "stable-privacy"),
        ("prefix_change.json", None, "2a01:4f8:3:2:11:22ff:fe33:4455", "eui64"),
        ("networkmanager.json", None, "2a02:8070:abcd:1:5c1e:9a3b:7d20:4e11", "dynamic"),
        ("server_docker_tailscale.json", None, "2a01:4f8:c0c:1234::1", "static"),
        ("server_docker_tailscale.json", "docker0", "2a01:4f8:c0c:1234:1::1", "static"),
    ],
)
def test_recorded_hosts(name: str, interface: str | None, address: str, kind: str) -> None:
    choice = choose_stable_ipv6(sample(name), interface)
    assert (choice.address, choice.kind) == (address, kind)


# The choice does not depend on the order addresses are listed in (all permutations of a host).
def test_choice_is_order_independent() -> None:
    candidates = sample("prefix_change.json") + sample("server_docker_tailscale.json")
    expected = choose_stable_ipv6(candidates)
    for perm in itertools.islice(itertools.permutations(candidates), 500):
        assert choose_stable_ipv6(list(perm)) == expected


# The rank table is the documented order.
def test_rank_order_is_documented() -> None:
    assert sorted(KIND_RANK, key=KIND_RANK.__getitem__) == [
        "eui64",
        "stable-privacy",
        "mngtmpaddr",
        "static",
        "dynamic",
    ]


# Garbage instead of JSON is an Ipv6DiscoveryError, not a crash.
def test_parse_rejects_non_json() -> None:
    with pytest.raises(Ipv6DiscoveryError, match="not JSON"):
        parse_ip_json("Usage: ip [ OPTIONS ] OBJECT")
    assert parse_ip_json("") == []


# ---------------------------------------------------------------- command building


# Docker host strings map to ssh's user/host/port; junk is refused.
def test_parse_ssh_host() -> None:
    t = parse_ssh_host("ssh://relay@home.example.net:2222")
    assert (t.user, t.host, t.port) == ("relay", "home.example.net", 2222)
    t6 = parse_ssh_host("ssh://root@[2a01:4f8::1]")
    assert (t6.user, t6.host, t6.port, t6.display()) == (
        "root",
        "2a01:4f8::1",
        None,
        "root@[2a01:4f8::1]",
    )
    for bad in ("ssh://", "ssh://-oProxyCommand=x", "ssh://h:99999"):
        with pytest.raises(ValueError):
            parse_ssh_host(bad)


# ssh runs in batch mode with a connect timeout and keepalives before any user option, the
# interface is quoted.
def test_ssh_command_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SSH_OPTS_ENV, "-o 'ProxyJump=bastion'")
    argv = ssh_command(
        parse_ssh_host("ssh://u@h:2200"), ip_command("eth0"), timeout=4.5, ssh_options=["-i", "/k"]
    )
    assert argv[:14] == [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "ServerAliveInterval=2",
        "-o",
        "ServerAliveCountMax=2",
        "-T",
        "-p",
        "2200",
        "-l",
        "u",
    ]
    assert argv[14:] == ["-i", "/k", "-o", "ProxyJump=bastion", "--", "h", argv[-1]]
    assert argv[-1].endswith("ip -j -6 addr show scope global dev eth0")
    with pytest.raises(ValueError):
        ip_command("eth0; rm -rf /")


# tcp:// cannot list host interfaces: the error says which dockerHost forms work.
def test_tcp_docker_host_is_refused() -> None:
    with pytest.raises(HostReadError, match=r"unix:// \(this machine\) or ssh://"):
        read_host_addresses("tcp://10.0.0.2:2376", None)


# ---------------------------------------------------------------- ssh:// against a real sshd


# Through the real ssh client and sshd, the host's addresses arrive exactly as a local read sees
# them (same interfaces and addresses).
def test_ssh_reads_same_addresses_as_local(sshd_factory: Callable[..., Sshd]) -> None:
    sshd = sshd_factory()
    remote = read_host_addresses(sshd.docker_host, None, ssh_options=sshd.client_options)
    local = read_host_addresses(LOCAL, None)

    def shape(text: str) -> set[tuple[str, str]]:
        return {(c.interface, c.address) for c in parse_ip_json(text)}

    assert shape(remote) == shape(local)


# ssh:// end to end into a namespace: sshd runs in it and ssh connects there, so the host's
# stable address comes back through OpenSSH; extra options also work from HOME_DERP_SSH_OPTS.
def test_ssh_discovers_namespace_address(
    sshd_factory: Callable[..., Sshd], netns: Callable[[], Netns], monkeypatch: pytest.MonkeyPatch
) -> None:
    host, peer = netns(), netns()
    link(host, "up0", peer, "r0")
    host.add("up0", "2a01:4f8:a::20/64", "nodad")
    host.add("up0", "2a01:4f8:a::10/64", "nodad")
    host.add("up0", "fd00:a::1/64", "nodad")
    sshd = sshd_factory(prefix=host.prefix)
    monkeypatch.setenv(SSH_OPTS_ENV, " ".join(sshd.client_options))
    choice = discover_stable_ipv6(sshd.docker_host, "up0", command_prefix=host.prefix)
    assert (choice.address, choice.interface) == ("2a01:4f8:a::10", "up0")


# A key the server does not know: a clear authentication error, quickly, no prompt.
def test_ssh_auth_failure(sshd_factory: Callable[..., Sshd], tmp_path: Path) -> None:
    sshd = sshd_factory()
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "stranger"))
    stranger = str(tmp_path / "stranger")
    options = [stranger if o == str(sshd.key) else o for o in sshd.client_options]
    started = time.monotonic()
    with pytest.raises(HostReadError, match="authentication failed"):
        read_host_addresses(sshd.docker_host, None, ssh_options=options)
    assert time.monotonic() - started < 5


# Nothing listens on the port: "unreachable" within a second or two.
def test_ssh_unreachable_is_quick() -> None:
    started = time.monotonic()
    with pytest.raises(HostReadError, match="unreachable"):
        read_host_addresses(
            f"ssh://nobody@127.0.0.1:{free_port(('127.0.0.1',), socket.SOCK_STREAM)}",
            None,
            timeout=3,
            ssh_options=["-F", "none"],
        )
    assert time.monotonic() - started < 3


# A port that accepts but never speaks SSH: ConnectTimeout ends it, reported as unreachable.
def test_ssh_silent_server_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(HostReadError, match=r"unreachable|took longer"):
            read_host_addresses(
                f"ssh://nobody@127.0.0.1:{port}", None, timeout=2, ssh_options=["-F", "none"]
            )
        assert time.monotonic() - started < 6


# `ip` missing on the relay host (hidden in sshd's mount namespace): "install iproute2".
def test_ssh_ip_missing_on_host(sshd_factory: Callable[..., Sshd]) -> None:
    sshd = sshd_factory(hide_ip=True)
    with pytest.raises(HostReadError, match=r"not installed on the Docker host.*iproute2"):
        read_host_addresses(sshd.docker_host, None, ssh_options=sshd.client_options)


# A static address is judged by the same rules auto uses: absent, only unusable entries (the first
# one's reason), or usable (the first usable entry, however the address is spelled).
def test_static_address_on_host() -> None:
    temp = Candidate("eth0", "2a01:4f8:1::5", 64, "global", frozenset({"temporary", "dynamic"}))
    old = Candidate("eth1", "2a01:4f8:1::5", 64, "global", preferred_lft=0)
    good = Candidate("eth2", "2a01:4f8:1::5", 64, "global", preferred_lft=100)
    other = Candidate("eth0", "2a01:4f8:1::6", 64, "global")
    absent = static_address_on_host("2a01:4f8:1::5", [other])
    assert (absent.held, absent.usable, absent.problem) == ((), None, None)
    unusable = static_address_on_host("2a01:04f8:1:0::5", [temp, old, other])
    assert unusable.held == (temp, old) and unusable.usable is None
    assert unusable.problem is not None and unusable.problem.startswith("temporary")
    mixed = static_address_on_host("2a01:4f8:1::5", [old, good])
    assert (mixed.usable, mixed.problem) == (good, None)
    assert static_address_on_host("not-an-ip", [other]).held == ()
    # a VPN interface is refused unless ipv6Interface names it — then it is accepted, as for auto
    vpn = Candidate("wg0", "2a01:4f8:1::9", 64, "global")
    refused = static_address_on_host("2a01:4f8:1::9", [vpn])
    assert refused.problem is not None and "ipv6Interface" in refused.problem
    assert static_address_on_host("2a01:4f8:1::9", [vpn], "wg0").usable == vpn
    assert choose_stable_ipv6([vpn], "wg0").address == vpn.address
