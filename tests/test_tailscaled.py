"""``components/tailscaled.py``: the relay host's tailscaled as the program reads it.

Against the real programs where they can show the state: a real ``tailscaled`` (v1.102.5,
userspace networking, its own state and socket; logged out = NeedsLogin; tests/peers/tailscaled.py)
with the real ``tailscale`` CLI, here and through a real OpenSSH ``sshd``. A Running node with
peers is tests/real_tailnet/ (headscale). The states a real daemon cannot be made to show here
(Stopped after a login, garbage, a slow host) use the stand-in of tests/peers/tailscale_cli.py,
written from upstream source. The peer relay set on the daemon is tests/test_peer_relay.py.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from components import tailscaled
from components.host import SSH_OPTS_ENV, HostChannel, HostReadError
from components.tailscaled import TailscaledError, read_tailscaled, socket_exists
from tests.peers.sshd import Sshd
from tests.peers.tailscale_cli import CliScenario, calls
from tests.peers.tailscaled import RealTailscaled

LOCAL = "unix:///var/run/docker.sock"


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
