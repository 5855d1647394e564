"""components/host.py's ssh edges against a real OpenSSH sshd (tests/peers/sshd.py): a shared
connection (ControlMaster) that hangs or drops, host keys that are unknown or changed, and the same
client options for the Docker provider's own ssh connection.

The channel is built as the program builds it (``settings.LiveHost``: one ControlMaster in a
private directory); the sshd session processes are stopped or killed by pid to make the faults.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from components.host import (
    DOCKER_SSH_OPTS_ENV,
    SSH_OPTS_ENV,
    HostChannel,
    HostReadError,
    client_options,
    docker_ssh_options,
    parse_ssh_host,
    ssh_forward_command,
)
from components.netcheck.admission import ssh_logs_argv
from components.netcheck.usage import ssh_forward_argv
from tests.conftest import RelayMocks, evaluate, home_config
from tests.peers.sshd import Sshd


@pytest.fixture
def control_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="hd-test-mux-") as path:
        yield path


def shared_channel(sshd: Sshd, control_dir: str) -> HostChannel:
    """A channel with one shared connection, as ``settings.LiveHost`` makes it."""
    control = ("-o", "ControlMaster=auto", "-o", f"ControlPath={control_dir}/%C",
               "-o", "ControlPersist=20")  # fmt: skip
    return HostChannel(sshd.docker_host, ssh_options=(*sshd.client_options, *control))


def session_pids(sshd: Sshd) -> list[int]:
    """sshd's per-connection children (the process serving each open connection)."""
    done = subprocess.run(
        ["pgrep", "-P", str(sshd.process.pid)], capture_output=True, text=True, check=False
    )
    return [int(pid) for pid in done.stdout.split()]


def master_pids(control_dir: str) -> list[int]:
    done = subprocess.run(["pgrep", "-f", control_dir], capture_output=True, text=True, check=False)
    return [int(pid) for pid in done.stdout.split()]


# A shared connection whose server stops answering (a hung master) costs one read a few seconds,
# not every read its whole timeout: the keepalives end the master and ssh reconnects.
def test_a_hung_shared_connection_is_given_up_quickly(
    sshd_factory: Callable[..., Sshd], control_dir: str
) -> None:
    sshd = sshd_factory()
    channel = shared_channel(sshd, control_dir)
    assert channel.run(["echo", "first"], what="read").stdout == "first\n"
    hung = session_pids(sshd)
    assert hung, "the shared connection has its sshd session"
    for pid in hung:
        os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        assert channel.run(["echo", "second"], what="read").stdout == "second\n"
        took = time.monotonic() - started
    finally:
        for pid in hung:
            os.kill(pid, signal.SIGCONT)
    assert took < channel.timeout + 2  # the read's own limit: it never came to that


# A shared connection that drops while a command runs: ssh exits 255 without a word; the error
# says what happened and that running again is the fix.
def test_a_dropped_shared_connection_is_named(
    sshd_factory: Callable[..., Sshd], control_dir: str
) -> None:
    sshd = sshd_factory()
    channel = shared_channel(sshd, control_dir)
    channel.run(["true"], what="open the connection")
    masters = master_pids(control_dir)
    assert masters, "the ControlMaster runs"
    drop = threading.Timer(1.0, lambda: [os.kill(pid, signal.SIGKILL) for pid in masters])
    drop.start()
    with pytest.raises(HostReadError) as caught:
        channel.run(["sleep", "5"], what="read")
    drop.join()
    said = str(caught.value)
    assert caught.value.kind == "dropped"
    assert "the shared ssh connection (ControlMaster) closed while the command ran" in said
    assert "run again" in said and "no message" not in said


def known_hosts_with(sshd: Sshd, line: str, tmp: Path) -> list[str]:
    """The sshd's client options, with ``line`` as the whole known_hosts file."""
    path = tmp / "known_hosts"
    path.write_text(line)
    return [
        f"UserKnownHostsFile={path}" if o.startswith("UserKnownHostsFile=") else o
        for o in sshd.client_options
    ]


# A host key that changed: the fix is `ssh-keygen -R '[host]:port'`, then `ssh -p port user@host`
# — never `ssh user@host:port`, which ssh does not take.
def test_a_changed_host_key_names_the_real_commands(
    sshd_factory: Callable[..., Sshd], tmp_path: Path
) -> None:
    sshd = sshd_factory()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")],
                   check=True)  # fmt: skip
    other = (tmp_path / "k.pub").read_text().split()
    options = known_hosts_with(sshd, f"[127.0.0.1]:{sshd.port} {other[0]} {other[1]}\n", tmp_path)
    with pytest.raises(HostReadError) as caught:
        HostChannel(sshd.docker_host, ssh_options=tuple(options)).run(["true"], what="read")
    said = str(caught.value)
    assert caught.value.kind == "host-key" and "CHANGED" in said
    assert f"`ssh-keygen -R '[127.0.0.1]:{sshd.port}'`" in said
    assert f"`ssh -p {sshd.port} {sshd.user}@127.0.0.1`" in said
    assert f"`ssh {sshd.user}@127.0.0.1:{sshd.port}`" not in said


# An unknown host key: connect once with the real ssh command line to record it.
def test_an_unknown_host_key_names_the_real_command(
    sshd_factory: Callable[..., Sshd], tmp_path: Path
) -> None:
    sshd = sshd_factory()
    options = known_hosts_with(sshd, "", tmp_path)
    with pytest.raises(HostReadError) as caught:
        HostChannel(sshd.docker_host, ssh_options=tuple(options)).run(["true"], what="read")
    said = str(caught.value)
    assert caught.value.kind == "host-key" and "not known" in said
    assert f"`ssh -p {sshd.port} {sshd.user}@127.0.0.1`" in said and "ssh-keygen" not in said


# The Docker provider's connection gets the same client options, plus the user's; run as the
# provider's connection helper builds its ssh call, they work against a real sshd.
def test_docker_provider_ssh_options_work_against_sshd(
    sshd_factory: Callable[..., Sshd], mocks: RelayMocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    sshd = sshd_factory()
    monkeypatch.setenv(DOCKER_SSH_OPTS_ENV, shlex.join(sshd.client_options))
    monkeypatch.delenv(SSH_OPTS_ENV, raising=False)
    evaluate(home_config(dockerHost=sshd.docker_host))
    # provider config reaches the engine as strings: a list is JSON
    opts = json.loads(mocks.one("pulumi:providers:docker").inputs["sshOpts"])
    assert opts == docker_ssh_options(os.environ)
    assert opts[: len(client_options(10))] == client_options(10)
    assert "ServerAliveInterval=2" in opts and "BatchMode=yes" in opts
    # docker/cli connhelper: ssh -l USER -p PORT <sshOpts…> -T -- HOST <command>
    target = parse_ssh_host(sshd.docker_host)
    argv = ["ssh", "-l", str(target.user), "-p", str(target.port), *opts, "-T", "--",
            target.host, "echo dial-stdio-stand-in"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert (done.returncode, done.stdout) == (0, "dial-stdio-stand-in\n"), done.stderr


# A unix:// Docker host gets no ssh options at all.
def test_no_ssh_options_for_a_local_engine(mocks: RelayMocks) -> None:
    evaluate(home_config())
    assert "sshOpts" not in mocks.one("pulumi:providers:docker").inputs


# derper's log is read over ssh with the same options (both from components/netcheck/ssh.py).
def test_admission_log_reads_use_the_same_options() -> None:
    argv = ssh_logs_argv("ssh://u@h:2222", "derper-900-home", timeout=10)
    assert argv[1 : 1 + len(client_options(10))] == client_options(10)


# derper's /debug/varz read by `python -m components.netcheck usage --from ssh://…` forwards
# over an ssh call with the same options as the program's own read (keepalives included: a hung
# connection is given up instead of stalling the read until its timeout).
def test_usage_forward_uses_the_same_options() -> None:
    argv = ssh_forward_argv("ssh://u@h:2222", 443, timeout=10)
    program = ssh_forward_command(parse_ssh_host("ssh://u@h:2222"), 443, timeout=10)
    assert argv == program
    assert argv[1 : 1 + len(client_options(10))] == client_options(10)


# A host whose command prints bytes that are not UTF-8 (a locale, a corrupt file) gives an answer
# with replacement characters, never a UnicodeDecodeError out of the program.
def test_non_utf8_output_is_an_answer() -> None:
    done = HostChannel("unix:///var/run/docker.sock").run(
        ["printf", "ok \\377\\376"], what="print bytes"
    )
    assert done.returncode == 0 and done.stdout == "ok \ufffd\ufffd"
