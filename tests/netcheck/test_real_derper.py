"""The checker against the real derper (tailscale.com/cmd/derper v1.102.5, tests/tools).

The faithful peers (tests.peers.derp_server, stun_server) carry the fault catalogue; these tests
prove the checker reads the real server the same way, and that the admission seam (derp.py)
receives derper's own words about the probe's random client key.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from components.netcheck import RelayTarget, check_relay
from components.netcheck.cli import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, EXIT_UNCONFIRMED, main
from components.netcheck.derp import Admission, AdmissionCause, AdmissionEvidence, EvidenceSource
from tests.peers.certs import Pki
from tests.peers.daemons import wait_until
from tests.peers.derper import Derper, cause_of, rejection_for, start_derper
from tests.peers.ports import free_port

HOST = "::1"


def _derper(tmp_path: Path, pki: Pki, verify_socket: Path | None = None) -> Derper:
    files = pki.files("good")
    return start_derper(
        tmp_path,
        hostname="derp.test",
        cert_file=files.cert_file,
        key_file=files.key_file,
        derp_port=free_port((HOST,), socket.SOCK_STREAM),
        stun_port=free_port((HOST,)),
        listen_ip=HOST,  # loopback only: -a [::1]:PORT, and STUN binds the same IP
        verify_socket=verify_socket,
    )


def log_evidence(d: Derper, wait: float = 2.0) -> EvidenceSource:
    """An EvidenceSource reading this derper's log: its rejection line for the probe's key."""

    async def source(address: str, admission: Admission) -> AdmissionEvidence | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while (found := rejection_for(d.log(), admission.client_key)) is None:
            if loop.time() > deadline:
                return AdmissionEvidence("unconfirmed")
            await asyncio.sleep(0.05)
        line = f"derp: {found.addr}: client nodekey:{found.client} rejected: {found.reason}"
        return AdmissionEvidence(cast(AdmissionCause, cause_of(found.reason)), line)

    return source


def _target(d: Derper, pki: Pki, expect: bool | None) -> RelayTarget:
    return RelayTarget(
        "derp.test",
        d.derp_port,
        d.stun_port,
        (HOST,),
        ca_file=pki.ca_file,
        expect_verify_clients=expect,
    )


# An open real derper passes every check: its TLS, endpoints, 101 + FrameServerKey, the
# admission of a random key (FrameServerInfo decrypted) and its STUN, with derper's own key.
def test_every_check_passes_against_real_derper(tmp_path: Path, pki: Pki) -> None:
    d = _derper(tmp_path, pki)
    try:
        report = check_relay(_target(d, pki, False), timeout=5, stun_timeout=1)
    finally:
        d.stop()
    assert report.ok, report.format_text()
    assert [c.name for c in report.checks] == ["tls", "https", "derp", "verify_clients", "stun"]
    assert report.server_public_key == d.public_key
    assert report.check("https").data["reconnects"] == 0  # derper keeps connections alive


# -verify-clients with no tailscaled behind it. For its first 5 s a derper keeps retrying the
# missing socket, assuming tailscaled is still starting (tailscale.com@v1.102.5/safesocket/
# safesocket.go:36-58): a probe right after the start, like `pulumi up`'s, runs out of budget on
# verify_clients, yet keeps the key it offered, and derper later logs that very key. Past those
# 5 s the rejection is immediate ("ON"), and only derper's log says why: the seam gets that line.
def test_evidence_source_from_real_derper_log(tmp_path: Path, pki: Pki) -> None:
    d = _derper(tmp_path, pki, verify_socket=tmp_path / "no-tailscaled.sock")
    try:
        early = check_relay(_target(d, pki, True), timeout=1.5, stun_timeout=0.5)
        stalled = early.check("verify_clients")
        assert not stalled.ok and "report budget" in stalled.detail, early.format_text()
        first_key = str(stalled.data["client_key"])
        wait_until("derper to log the stalled key", lambda: rejection_for(d.log(), first_key), 8)
        report = check_relay(
            _target(d, pki, True), timeout=3, stun_timeout=0.5, evidence_source=log_evidence(d)
        )
    finally:
        d.stop()
    check = report.check("verify_clients")
    # derper rejects every client when it cannot ask tailscaled: the evidence makes that a failure.
    assert not check.ok and check.data["verify_clients"] is True, report.format_text()
    assert "derper cannot reach tailscaled" in check.detail
    assert check.data["client_key"] != first_key  # a fresh key per probe
    assert check.data["cause"] == "tailscaled_unreachable"
    assert f"client nodekey:{check.data['client_key']} rejected" in str(check.data["log_line"])


#: derper keeps retrying a missing tailscaled socket for up to 5 s after its start
#: (tailscale.com@v1.102.5/safesocket/safesocket.go:43-59): probes then stall, not get rejected.
SAFESOCKET_RETRY_S = 5.0


@pytest.fixture(scope="module")
def blind_derper(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Derper]:
    """The issue's relay: -verify-clients with a socket path that does not exist, so derper rejects
    every client; yielded once it is past its retry window (it rejects at once)."""
    tmp = tmp_path_factory.mktemp("blind")
    started = time.monotonic()
    d = _derper(tmp, pki, verify_socket=tmp / "no-tailscaled.sock")
    try:
        time.sleep(max(0.0, SAFESOCKET_RETRY_S + 0.5 - (time.monotonic() - started)))
        yield d
    finally:
        d.stop()


# The issue's case with the real derper: it rejects everyone (its log: "failed to query local
# tailscaled status … no such file or directory"), which from outside looks like verification
# working. The checker printed "Report for derp.test: OK (5/5 checks passed)" and exited 0. Now,
# with derper's own verdict unread, it never says OK: "OK except 1 unconfirmed" and exit 5;
# asked to expect verification, FAILED and exit 1; the JSON carries cause "unconfirmed". Reading
# derper's log (what --docker-host does with a container's) names the real cause.
def test_checker_never_reads_ok_for_a_derper_that_rejects_everyone(
    blind_derper: Derper, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    d = blind_derper
    args = ["derp.test", "--address", HOST, "--derp-port", str(d.derp_port), "--stun-port",
            str(d.stun_port), "--ca-file", pki.ca_file]  # fmt: skip
    assert main(args) == EXIT_UNCONFIRMED
    out = capsys.readouterr().out
    assert out.splitlines()[0] == (
        "Report for derp.test: OK except 1 unconfirmed (4/5 checks passed, 1 unconfirmed)"
    ), out
    assert main([*args, "--expect-verify-clients"]) == EXIT_FAILED
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "Report for derp.test: FAILED (4/5 checks passed)", out
    assert "--docker-host and --container" in out
    assert main([*args, "--expect-verify-clients", "--json"]) == EXIT_FAILED
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["verdict"] == "failed"
    (admission,) = [c for c in doc["checks"] if c["name"] == "verify_clients"]
    assert admission["data"]["cause"] == "unconfirmed" and admission["ok"] is False
    report = check_relay(_target(d, pki, True), timeout=5, evidence_source=d.evidence())
    check = report.check("verify_clients")
    assert check.data["cause"] == "tailscaled_unreachable", report.format_text()
    assert not check.ok and "derper cannot reach tailscaled" in check.detail
    assert "no-tailscaled.sock: connect: no such file or directory" in str(check.data["log_line"])


# The checker on the relay host: the relay's address is this machine's, so it reads derper's own
# counters on loopback without being asked (HOST's derper listens on ::1 only: the IPv4 attempt
# is refused, IPv6 answers), and prints them under the report; --json carries them. An explicit
# --usage-from that cannot be read is the partial-result exit code 4, with ssh's own reason.
def test_checker_reads_derpers_counters_on_the_relay_host(
    tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    d = _derper(tmp_path, pki)
    args = ["derp.test", "--address", HOST, "--derp-port", str(d.derp_port), "--stun-port",
            str(d.stun_port), "--ca-file", pki.ca_file, "--expect-open"]  # fmt: skip
    try:
        assert main(args) == EXIT_OK
        out = capsys.readouterr().out
        assert "* Usage (derper's /debug/varz via this machine's loopback):" in out
        assert "clients: 0 connected, 0 homed here" in out and "derper 1.102.5, up" in out
        assert main([*args, "--json"]) == EXIT_OK
        usage = json.loads(capsys.readouterr().out)["usage"]
        assert usage["error"] is None and usage["usage"]["version"] == "1.102.5"
        bad_ssh = "ssh://nobody@127.0.0.1:1"
        assert main([*args, "--usage-from", bad_ssh]) == EXIT_PARTIAL
        out = capsys.readouterr().out
        assert "* Usage: not read (could not read /debug/varz (ssh " in out
        assert "Connection refused" in out, out
    finally:
        d.stop()


# --usage-from takes local, ssh:// or tailnet:<name> and nothing else (a usage error, exit 2).
@pytest.mark.parametrize("value", ["remote", "ssh://", "tailnet:", "tailnet:-x", "http://h"])
def test_usage_from_is_checked(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["derp.test", "--usage-from", value])
    assert stop.value.code == 2 and "--usage-from" in capsys.readouterr().err
