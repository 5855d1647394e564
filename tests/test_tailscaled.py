"""The relay host's tailscaled as the program reads it, and the peer relay it sets on it.

Against the real programs where they can show the state: a real ``tailscaled`` (v1.102.5,
userspace networking, its own state and socket; logged out = NeedsLogin) with the real
``tailscale`` CLI, here and through a real OpenSSH ``sshd``; a peer relay really set, bound and
cleared on that daemon, and the real "Access denied" of a non-operator user. A Running node with
peers is tests/tailnet/ (headscale). The states a real daemon cannot be made to show here (Stopped
after a login, a CLI without the relay flags, garbage, a slow host) use the stand-in of
tests/peers/tailscale_cli.py, written from upstream source.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from components import peer_relay, tailscaled
from components.host import SSH_OPTS_ENV, HostChannel, HostReadError
from components.tailscaled import TailscaledError, read_tailscaled, socket_exists
from tests.peers.sshd import Sshd
from tests.peers.tailscale_cli import CliScenario, calls, install_cli
from tests.peers.tools import tool

LOCAL = "unix:///var/run/docker.sock"


class RealTailscaled:
    """A real tailscaled on this machine: userspace networking, its own socket and state."""

    def __init__(self, workdir: Path) -> None:
        self.socket = str(workdir / "run" / "tailscaled.sock")
        (workdir / "run").mkdir(parents=True, mode=0o755)
        self.log = workdir / "tailscaled.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    str(tool("tailscaled")),
                    "--tun=userspace-networking",
                    f"--statedir={workdir / 'state'}",
                    f"--socket={self.socket}",
                    "--port=0",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while not os.path.exists(self.socket):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"tailscaled did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def real_tailscaled() -> Iterator[RealTailscaled]:
    # Not under pytest's 0700 tmp dirs: the socket's directory must be reachable by other users,
    # as /var/run/tailscale is (the access-denied test connects as nobody).
    workdir = Path(tempfile.mkdtemp(prefix="hd-tsd-"))
    workdir.chmod(0o755)
    daemon = RealTailscaled(workdir)
    try:
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def cli_on_path(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The real tailscale CLI first on this process's PATH (the unix:// channel runs it here)."""
    directory = tool("tailscale").parent
    monkeypatch.setenv("PATH", f"{directory}:{os.environ['PATH']}")
    return directory


# --- the real daemon, here and over ssh ----------------------------------------------------------


# A logged-out real tailscaled reads as NeedsLogin with the daemon's release, no key and no IPs;
# the preflight names the fix.
def test_real_logged_out_daemon(real_tailscaled: RealTailscaled, cli_on_path: Path) -> None:
    channel = HostChannel(LOCAL)
    facts = read_tailscaled(channel, real_tailscaled.socket)
    assert facts.version == "1.102.5" and facts.version_long.startswith("1.102.5")
    assert facts.backend_state == "NeedsLogin" and not facts.running
    assert facts.node_key is None and facts.tailscale_ips == () and facts.tailnet is None
    assert facts.host_name == socket.gethostname()
    assert socket_exists(channel, real_tailscaled.socket)
    assert not socket_exists(channel, real_tailscaled.socket + ".missing")
    problem = tailscaled.state_problem(facts)
    assert problem is not None and "log the relay host in: `sudo tailscale up`" in problem


# Through a real sshd and the system ssh client, the same daemon reads the same.
def test_real_daemon_over_ssh(
    real_tailscaled: RealTailscaled,
    cli_on_path: Path,
    sshd_factory: Callable[..., Sshd],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sshd = sshd_factory(path_dirs=[str(cli_on_path)])
    monkeypatch.setenv(SSH_OPTS_ENV, " ".join(sshd.client_options))
    remote = read_tailscaled(HostChannel(sshd.docker_host), real_tailscaled.socket)
    local = read_tailscaled(HostChannel(LOCAL), real_tailscaled.socket)
    assert remote == local


# A socket with no daemon behind it: "tailscaled is not running", with the fix.
def test_daemon_down(cli_on_path: Path, tmp_path: Path) -> None:
    with pytest.raises(TailscaledError) as err:
        read_tailscaled(HostChannel(LOCAL), str(tmp_path / "none.sock"))
    assert err.value.kind == "daemon-down" and "systemctl enable --now tailscaled" in str(err.value)


# No tailscale CLI on the host at all: say to install Tailscale.
def test_cli_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TailscaledError) as err:
        read_tailscaled(HostChannel(LOCAL), "/var/run/tailscale/tailscaled.sock")
    assert err.value.kind == "cli-missing" and "install Tailscale" in str(err.value)


# --- states the stand-in shows -------------------------------------------------------------------


@pytest.fixture
def sock(tmp_path: Path) -> str:
    """A socket file where the stand-in is pointed (the real CLI dials it; the stand-in only
    checks that it exists, as a missing one reads as a daemon that is down)."""
    path = tmp_path / "run" / "tailscaled.sock"
    path.parent.mkdir()
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
    return str(path)


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[CliScenario], Path]:
    def install(scenario: CliScenario) -> Path:
        directory = tmp_path / "bin"
        install_cli(directory, scenario)
        monkeypatch.setenv("PATH", f"{directory}:{os.environ['PATH']}")
        return directory

    return install


# A Running daemon: its release, node key, name, Tailscale IPs, tailnet and peers; the CLI is
# pointed at the configured socket.
def test_running_daemon_facts(stand_in: Callable[[CliScenario], Path], sock: str) -> None:
    directory = stand_in(CliScenario(tags=["tag:derp"]))
    facts = read_tailscaled(HostChannel(LOCAL), sock)
    assert facts.running and facts.version == "1.102.5"
    assert facts.node_key == "nodekey:" + "ab" * 32
    assert facts.node_name == "homeserver" and facts.tailnet == "example.com"
    assert facts.tailscale_ips == ("100.101.102.103", "fd7a:115c:a1e0::1")
    assert facts.tags == ("tag:derp",) and [p.host_name for p in facts.peers] == ["laptop"]
    assert all(c[0] == f"--socket={sock}" for c in calls(directory))
    assert facts.to_output()["dnsName"] == "homeserver.tail1234.ts.net"


# Stopped and NeedsMachineAuth each get their own fix.
@pytest.mark.parametrize(
    ("state", "fix"), [("Stopped", "tailscale down"), ("NeedsMachineAuth", "approve")]
)
def test_states_that_cannot_verify(
    stand_in: Callable[[CliScenario], Path], sock: str, state: str, fix: str
) -> None:
    stand_in(CliScenario(state=state))
    facts = read_tailscaled(HostChannel(LOCAL), sock)
    problem = tailscaled.state_problem(facts)
    assert problem is not None and state in problem and fix in problem


# Garbage instead of JSON is a clear error, not a crash.
def test_garbage_output(stand_in: Callable[[CliScenario], Path], sock: str) -> None:
    stand_in(CliScenario(garbage=True))
    with pytest.raises(TailscaledError, match="not JSON"):
        read_tailscaled(HostChannel(LOCAL), sock)


# A host that answers too slowly is cut off (reads happen at every preview: bounded).
def test_slow_host_is_cut_off(stand_in: Callable[[CliScenario], Path], sock: str) -> None:
    stand_in(CliScenario(sleep=10))
    started = time.monotonic()
    with pytest.raises(HostReadError) as err:
        read_tailscaled(HostChannel(LOCAL, timeout=1), sock)
    assert err.value.kind == "timeout" and time.monotonic() - started < 6


# An old daemon's release is read as such (settings then refuse a derper of another release).
def test_old_daemon_version(stand_in: Callable[[CliScenario], Path], sock: str) -> None:
    stand_in(CliScenario(version="1.62.1"))
    facts = read_tailscaled(HostChannel(LOCAL), sock)
    assert facts.version == "1.62.1"


# --- the peer relay on a real daemon ------------------------------------------------------------


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def udp_bound(port: int) -> bool:
    out = subprocess.run(["ss", "-Hlun", f"sport = :{port}"], capture_output=True, text=True)
    return peer_relay.is_bound(out.stdout, port)


# Set, confirmed bound (tailscaled really listens), then cleared: the host is as it was.
def test_real_peer_relay_set_and_cleared(
    real_tailscaled: RealTailscaled, cli_on_path: Path
) -> None:
    port = free_udp_port()
    channel = HostChannel(LOCAL)
    peer_relay.enable(channel, real_tailscaled.socket, port, [])
    assert udp_bound(port)
    shown = subprocess.run(
        [str(tool("tailscale")), f"--socket={real_tailscaled.socket}", "get", "relay-server-port"],
        capture_output=True,
        text=True,
    )
    assert shown.stdout.strip() == str(port)
    peer_relay.disable(channel, real_tailscaled.socket, with_endpoints=False)
    deadline = time.monotonic() + 5
    while udp_bound(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not udp_bound(port)


def _pref(daemon: RealTailscaled, name: str) -> str:
    shown = subprocess.run(
        [str(tool("tailscale")), f"--socket={daemon.socket}", "get", name],
        capture_output=True,
        text=True,
        check=True,
    )
    return shown.stdout.strip()


# Static endpoints (a port-forwarded public IPv4) reach the daemon's prefs through the provider;
# an update without them clears them (an `ipv4` removed from the stack), and delete leaves the
# daemon as it was.
def test_real_peer_relay_static_endpoint_set_updated_cleared(
    real_tailscaled: RealTailscaled, cli_on_path: Path
) -> None:
    port = free_udp_port()
    provider = peer_relay.PeerRelayServerProvider()
    props = {"docker_host": LOCAL, "socket": real_tailscaled.socket, "port": port}
    with_v4 = {**props, "static_endpoints": [f"203.0.114.7:{port}"]}
    created = provider.create(with_v4)
    assert _pref(real_tailscaled, "relay-server-static-endpoints") == f"203.0.114.7:{port}"
    updated = provider.update(created.id, created.outs, {**props, "static_endpoints": []})
    assert _pref(real_tailscaled, "relay-server-static-endpoints") == ""
    assert _pref(real_tailscaled, "relay-server-port") == str(port) and udp_bound(port)
    provider.delete(created.id, updated.outs)
    assert _pref(real_tailscaled, "relay-server-port") == ""


# A port another program holds is refused before the pref is set: "bound" afterwards would be
# that program's socket, and the grant would be published for a relay that does not listen.
def test_real_port_held_by_another_program(
    real_tailscaled: RealTailscaled, cli_on_path: Path
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind(("0.0.0.0", 0))
        port = other.getsockname()[1]
        with pytest.raises(peer_relay.PeerRelayError, match=f"UDP port {port} is already in use"):
            peer_relay.enable(HostChannel(LOCAL), real_tailscaled.socket, port, [])
    assert _pref(real_tailscaled, "relay-server-port") == ""


# A user who may not change prefs gets the real "Access denied", turned into the fix.
def test_real_access_denied(real_tailscaled: RealTailscaled, cli_on_path: Path) -> None:
    nobody = HostChannel(
        LOCAL, command_prefix=("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    )
    with pytest.raises(peer_relay.PeerRelayError) as err:
        peer_relay.enable(nobody, real_tailscaled.socket, free_udp_port(), [])
    assert "may not change tailscaled's prefs" in str(err.value)
    assert "tailscale set --operator=$USER" in str(err.value)


# A CLI without the relay flags (older than the feature): "needs tailscaled >= 1.86".
def test_cli_without_relay_flags(stand_in: Callable[[CliScenario], Path], sock: str) -> None:
    stand_in(CliScenario(no_relay_flags=True))
    with pytest.raises(peer_relay.PeerRelayError, match=r"needs tailscaled\s+>= 1.86"):
        peer_relay.enable(HostChannel(LOCAL), sock, 40000, [])


# The pref accepted but nothing listens (a port taken by another program): a clear error.
def test_port_never_bound(stand_in: Callable[[CliScenario], Path], sock: str) -> None:
    stand_in(CliScenario())
    port = free_udp_port()
    with pytest.raises(peer_relay.PeerRelayError, match=f"nothing listens on UDP {port}"):
        peer_relay.enable(HostChannel(LOCAL), sock, port, [], timeout=1)


# Pure: who the grant's dst names — the host's own Tailscale IPv4 even when it is tagged (a tag
# names every device that carries it), a tag only when the user chose one — and whether a node
# is among the sources.
def test_grant_destination_and_membership() -> None:
    from tests.mocks import HostFacts

    facts = HostFacts(tags=("tag:derp",)).tailscaled_facts("/x")
    assert peer_relay.grant_destination(facts) == "100.101.102.103"
    assert peer_relay.grant_destination(facts, "tag:derp") == "tag:derp"
    status = {
        "Self": {"Tags": ["tag:laptop"], "TailscaleIPs": ["100.64.0.7"], "UserID": 5},
        "User": {"5": {"LoginName": "alice@example.com"}},
    }
    assert peer_relay.member_of(["*"], status) is True
    assert peer_relay.member_of(["tag:laptop"], status) is True
    assert peer_relay.member_of(["100.64.0.0/24"], status) is True
    assert peer_relay.member_of(["autogroup:member"], status) is False  # tagged devices are not
    assert peer_relay.member_of(["group:family"], status) is None  # cannot tell from here
    untagged = {"Self": {"TailscaleIPs": ["100.64.0.8"], "UserID": 5}, "User": status["User"]}
    assert peer_relay.member_of(["alice@example.com"], untagged) is True


# The upstream unit with systemd's default: the socket's directory is recreated at every restart,
# so derper's mount would go stale — named with the drop-in that fixes it; preserved: fine.
def test_runtime_directory_problem() -> None:
    default = "RuntimeDirectory=tailscale\nRuntimeDirectoryPreserve=no\n"
    problem = tailscaled.runtime_directory_problem(default, "/var/run/tailscale/tailscaled.sock")
    assert problem is not None and "RuntimeDirectoryPreserve=yes" in problem
    assert tailscaled.runtime_directory_problem(default, "/run/tailscale/tailscaled.sock")
    kept = "RuntimeDirectory=tailscale\nRuntimeDirectoryPreserve=yes\n"
    assert tailscaled.runtime_directory_problem(kept, "/var/run/tailscale/tailscaled.sock") is None
    assert tailscaled.runtime_directory_problem(default, "/srv/ts/tailscaled.sock") is None
    assert tailscaled.runtime_directory_problem("", "/var/run/tailscale/tailscaled.sock") is None


# This machine's real systemctl: on a systemd host the read gives a verdict (no tailscaled unit
# here: nothing to warn about); where systemd is not running (a container) systemctl fails, and
# the check says it was skipped and why instead of passing silently.
def test_runtime_directory_read_on_this_machine() -> None:
    note = tailscaled.read_runtime_directory_problem(
        HostChannel(LOCAL), "/var/run/tailscale/tailscaled.sock"
    )
    if os.path.isdir("/run/systemd/system"):  # sd_booted(3): systemd is PID 1
        assert note is None
    else:
        assert note is not None and note.startswith("not checked whether tailscaled's systemd unit")
        assert "`systemctl show` exited 1" in note and "RuntimeDirectoryPreserve=yes" in note


# A relay host without systemctl (a real sshd whose sessions lack it): said to be skipped, with
# how to check by hand — never a silent pass.
def test_runtime_directory_check_without_systemctl_is_said_to_be_skipped(
    sshd_factory: Callable[..., Sshd],
) -> None:
    sshd = sshd_factory(hide=("systemctl",))
    channel = HostChannel(sshd.docker_host, ssh_options=tuple(sshd.client_options))
    note = tailscaled.read_runtime_directory_problem(channel, "/run/tailscale/tailscaled.sock")
    assert note is not None and "/run/tailscale at every restart" in note
    assert "`systemctl` is not installed" in note and "Without systemd this does not apply" in note
