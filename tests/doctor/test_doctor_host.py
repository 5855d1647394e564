"""The doctor against a real relay host (tests/doctor/world.py): real addresses, dockerd, sshd,
the tailscale CLI stand-in, and the faithful Tailscale and Cloudflare API peers.

Every row's pass, fail and not-checked path is driven here by changing the host, not the doctor.
"""

from __future__ import annotations

import json
import os
import socket

import pulumi
import pytest

from components import settings
from components.doctor.model import Check, Report
from tests.doctor.world import (
    ABSENT,
    CF_TOKEN,
    DEPRECATED,
    DERP_PORT,
    DERPER_IMAGE,
    HANDMADE_IMAGE,
    HOSTNAME,
    MNGTMP_BASE,
    OURS,
    REAL_LIVE_HOST,
    STABLE,
    STUN_PORT,
    TS_KEY,
    TS_OAUTH_ID,
    TS_OAUTH_SECRET,
    World,
)
from tests.peers.tailscale_cli import CliScenario

HAND_WRITTEN_POLICY = """{
  // written by hand for the old derper
  "derpMap": {"Regions": {"900": {"RegionID": 900, "RegionCode": "home", "RegionName": "Home",
    "Nodes": [{"Name": "900a", "RegionID": 900, "HostName": "derp.example.com",
               "DERPPort": 12345}]}}},
}
"""


def rows(report: Report) -> dict[str, Check]:
    return {c.id: c for c in report.checks}


def closed_port() -> int:
    """A loopback port nothing listens on (in the relay namespace: nothing else runs there)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# The healthy host


# Over unix:// and ssh://, a healthy host passes every row, and the run changes nothing: same
# containers, images and volumes, the policy's ETag, no write to either API (GET requests only).
@pytest.mark.parametrize("channel", ["local", "ssh"])
def test_healthy_host_passes_every_row_and_changes_nothing(host: World, channel: str) -> None:
    before = host.state()
    calls = len(host.tailscale.requests), len(host.cloudflare.requests)
    report = host.doctor(host.stack("healthy", getattr(host, channel)))
    assert [c.id for c in report.checks if c.status != "pass"] == [], json.dumps(report.to_json())
    assert report.ok
    assert host.state() == before
    assert {r.method for r in host.tailscale.requests[calls[0] :]} == {"GET"}
    assert {r.method for r in host.cloudflare.requests[calls[1] :]} == {"GET"}
    found = rows(report)
    assert "Docker 20.10" in found["docker.engine"].summary
    assert "tailscaled 1.102.5 is Running" in found["tailscaled.daemon"].summary
    assert found["host.ipv6"].summary == f"{STABLE} is on eth0 and stable"


# A real `ss` in the namespace, parsed: this process's own TCP and UDP sockets show with its pid.
def test_ss_output_names_this_process(host: World) -> None:
    from components.doctor.host_checks import read_listeners
    from components.host import HostChannel

    host.hold_port(DERP_PORT, "tcp")
    host.hold_port(STUN_PORT, "udp")
    found = host.run(lambda: read_listeners(HostChannel(host.local)))
    mine = {
        (lst.protocol, lst.port) for lst in found if os.getpid() in dict(lst.processes).values()
    }
    assert {("tcp", DERP_PORT), ("udp", STUN_PORT)} <= mine


# ---------------------------------------------------------------------------------------------
# The address the record publishes (real kernel-made temporary and deprecated addresses, read
# over ssh from an sshd inside the namespace)


# The doctor's host.ipv6 row and the program's own settings rule judge each address alike (over
# ssh:// for one, in the namespace directly for the rest: the same reads); the cause is said once,
# in host.ipv6, so the settings row does not repeat it.
@pytest.mark.parametrize(
    ("address", "channel", "status", "text", "settings_status"),
    [
        ("temporary", "ssh", "fail", "temporary privacy address", "pass"),
        (DEPRECATED, "local", "fail", "deprecated (preferred lifetime 0)", "pass"),
        (ABSENT, "local", "fail", "is not an address of the relay host", "pass"),
        ("auto", "local", "pass", f"auto picks {MNGTMP_BASE} on eth0", "pass"),
    ],
    ids=["temporary", "deprecated", "absent", "auto"],
)
def test_ipv6_row_follows_the_host(
    host: World, address: str, channel: str, status: str, text: str, settings_status: str
) -> None:
    value = host.temporary if address == "temporary" else address
    found = rows(host.doctor(host.stack("ipv6", getattr(host, channel), ipv6=value)))
    assert found["host.ipv6"].status == status
    assert text in found["host.ipv6"].summary
    assert found["settings"].status == settings_status
    if status == "fail":
        assert found["host.ipv6"].fix
        assert (found["host.ipv6"].detail or "").strip()
    assert text not in (found["settings"].detail or "")


# The PROGRAM itself (settings through the real LiveHost over sshd in the namespace) refuses a
# static ipv6 the host holds only as temporary or deprecated, and only warns when the host does not
# hold it at all (NAT66 or a proxy may forward it). One LiveHost, as in one evaluation.
def test_program_refuses_temporary_and_deprecated_static_ipv6(host: World) -> None:
    # Made here, on the main thread (a pulumi.Output needs the test's event loop).
    env = settings.Environment(cloudflare_api_token=pulumi.Output.secret("cf-test"))
    cases = [
        (host.temporary, "temporary privacy address (RFC 8981)", None),
        (DEPRECATED, "deprecated (preferred lifetime 0): its prefix is being withdrawn", None),
        (ABSENT, None, "is not an address of the relay host"),
        (STABLE, None, None),
    ]

    def parse_all() -> list[settings.RelaySettings | settings.ConfigError]:
        live = REAL_LIVE_HOST(host.ssh)
        results: list[settings.RelaySettings | settings.ConfigError] = []
        for address, _, _ in cases:
            raw = {
                "hostname": HOSTNAME,
                "zone": "example.com",
                "ipv6": address,
                "ipv4": "none",
                "dockerHost": host.ssh,
                "tailscaleSocket": str(host.socket_path),
                "tailnetPolicy": "off",
            }
            try:
                results.append(settings.parse_settings(raw, env=env, host=live).require())
            except settings.ConfigError as exc:
                results.append(exc)
        return results

    for (address, refused, warned), result in zip(cases, host.run(parse_all), strict=True):
        if refused:
            assert isinstance(result, settings.ConfigError), address
            assert len(result.problems) == 1 and refused in result.problems[0], result.problems
            assert result.problems[0].startswith(f"home-derp:ipv6 = '{address}': the relay host")
            continue
        assert isinstance(result, settings.RelaySettings), result
        assert result.addresses.ipv6 == address
        ipv6_warnings = [w for w in result.warnings if "home-derp:ipv6" in w]
        if warned:
            assert len(ipv6_warnings) == 1 and warned in ipv6_warnings[0], address
        else:
            assert ipv6_warnings == [], address


# ---------------------------------------------------------------------------------------------
# tailscaled (the CLI stand-in plays the daemon's states; the doctor asks it as the program does)


# Each state that cannot verify clients fails its row with the fix the program gives.
@pytest.mark.parametrize(
    ("scenario", "channel", "summary", "fix"),
    [
        (CliScenario(state="NeedsLogin"), "local", "is NeedsLogin, not Running", "tailscale up"),
        (None, "local", "CLI is not installed", "https://tailscale.com/download/linux"),
        (CliScenario(daemon_down=True), "local", "is not running", "systemctl enable --now"),
    ],
    ids=["needs-login", "no-cli", "daemon-down"],
)
def test_tailscaled_states_fail_with_the_fix(
    host: World, scenario: CliScenario | None, channel: str, summary: str, fix: str
) -> None:
    host.tailscaled(scenario)
    found = rows(host.doctor(host.stack("ts", getattr(host, channel))))
    assert found["tailscaled.daemon"].status == "fail"
    assert summary in found["tailscaled.daemon"].summary
    assert fix in (found["tailscaled.daemon"].fix or "")
    assert summary not in (found["tailscaled.daemon"].fix or "")  # the fix adds, not restates
    # the program stops on the same problem: said once, in this row, not again under settings
    assert found["settings"].status == "pass" and found["settings"].detail is None
    assert found["tailscaled.socket"].status == "pass"


# A socket path with nothing there fails tailscaled.socket (and settings); verifyClients false
# means derper asks no tailscaled: both rows are not checked.
def test_tailscaled_socket_missing_and_verify_off(host: World) -> None:
    missing = str(host.socket_path.parent / "elsewhere" / "tailscaled.sock")
    found = rows(host.doctor(host.stack("sock", host.local, tailscaleSocket=missing)))
    assert found["tailscaled.socket"].status == "fail"
    assert f"no socket at {missing}" in found["tailscaled.socket"].summary
    assert "home-derp:tailscaleSocket" in (found["tailscaled.socket"].fix or "")
    # the program stops on it too: said once, in the host's row, not again under settings
    assert "tailscaleSocket" not in (found["settings"].detail or "")
    assert "no socket at" not in (found["tailscaled.socket"].fix or "")  # a fix, not the problem
    # the CLI dialled the missing socket and said "not running": the socket is named as the cause
    assert found["tailscaled.daemon"].summary == "not checked: tailscaled.socket failed"
    assert "home-derp:verifyClients" not in (found["settings"].detail or "")
    off = rows(host.doctor(host.stack("off", host.local, verifyClients=False)))
    for row in ("tailscaled.daemon", "tailscaled.socket"):
        assert off[row].status == "not_checked"
        assert "verifyClients is false" in off[row].summary
    assert off["settings"].status == "pass"


# ---------------------------------------------------------------------------------------------
# Ports and derper containers (real derper containers on the host network)


# This stack's own derper (its labels) holds both ports: that is fine, `up` replaces it; the
# region 900 already in the policy is then this stack's too.
def test_ports_held_by_this_stacks_derper_pass(host: World) -> None:
    host.derper(OURS, DERPER_IMAGE, "home-derp.role=derper", "home-derp.region=900")
    host.tailscale.policy = HAND_WRITTEN_POLICY
    before = host.state()
    found = rows(host.doctor(host.stack("ours", host.local)))
    assert host.state() == before
    for row in ("ports.derp", "ports.stun"):
        assert found[row].status == "pass", found[row]
        assert f"this stack's derper (container {OURS}" in found[row].summary
    assert found["docker.derper"].status == "pass"
    assert found["tailnet.region"].status == "pass"
    assert "this stack's" in found["tailnet.region"].summary


# Migrating from a hand-made derper: its container (from fredliang/derper) holds both ports, its
# AAAA record and its hand-written region exist. Ports and docker.derper fail with the fix, the
# record will be adopted, the region needs adoptRegion — and with adoptRegion it passes.
def test_handmade_derper_is_found_with_what_to_do(host: World) -> None:
    host.derper("derper", HANDMADE_IMAGE)
    host.tailscale.policy = HAND_WRITTEN_POLICY
    zone = next(iter(host.cloudflare.zones.values()))
    host.cloudflare.add_record(zone.id, "AAAA", HOSTNAME, "2a01:4f8:d0c::1", proxied=True)
    before = host.state()
    found = rows(host.doctor(host.stack("handmade", host.ssh)))
    assert host.state() == before
    for row, name in (("ports.derp", f"TCP {DERP_PORT}"), ("ports.stun", f"UDP {STUN_PORT}")):
        assert found[row].status == "fail"
        assert found[row].summary == f"{name} is already in use"
        assert f"held by container derper (image {HANDMADE_IMAGE}, running)" in (
            found[row].detail or ""
        )
        assert "`docker rm -f derper`" in (found[row].fix or "")
    derper = found["docker.derper"]
    assert derper.status == "fail" and "derper" in derper.summary
    assert "docker rm -f derper" in (derper.fix or "") and "adoptRegion" in (derper.fix or "")
    records = found["cloudflare.records"]
    assert (
        records.status == "pass"
        and "AAAA record" in records.summary
        and "adopted" in (records.summary)
    )
    assert "DNS-only" in (records.detail or "")
    region = found["tailnet.region"]
    assert region.status == "fail"
    assert "pulumi config set home-derp:adoptRegion true" in (region.fix or "")
    assert "regionId 901" in (region.fix or "")
    adopted = rows(host.doctor(host.stack("adopt", host.local, adoptRegion=True)))
    assert adopted["tailnet.region"].status == "pass"
    assert "takes it over" in adopted["tailnet.region"].summary


# A process on the host (this test process) holds the ports: named with its pid. A stopped
# hand-made derper that does not restart on its own is no obstacle: docker.derper passes and says
# how to remove it — unless it carries the name of this stack's derper.
def test_ports_held_by_a_host_process_fail(host: World) -> None:
    host.hold_port(DERP_PORT, "tcp")
    host.hold_port(STUN_PORT, "udp")
    host.docker.docker("create", "--name", "old-derper", "--restart", "no", HANDMADE_IMAGE)
    found = rows(host.doctor(host.stack("busy", host.local)))
    for row in ("ports.derp", "ports.stun"):
        assert found[row].status == "fail"
        assert f"(pid {os.getpid()})" in (found[row].detail or "")
        assert "pick another home-derp:" in (found[row].fix or "")
    assert found["docker.derper"].status == "pass"
    assert "old-derper" in (found["docker.derper"].detail or "")
    assert "docker rm old-derper" in (found["docker.derper"].detail or "")
    # Stopped but under the name `up` gives this stack's derper: in the way all the same.
    host.docker.docker("create", "--name", OURS, "--restart", "no", HANDMADE_IMAGE)
    clash = rows(host.doctor(host.stack("busy", host.local)))["docker.derper"]
    assert clash.status == "fail" and OURS in clash.summary and "old-derper" not in clash.summary


# ---------------------------------------------------------------------------------------------
# Hosts the doctor cannot (fully) read


# tcp:// is a bare Docker API: the host rows are not checked (they say why), the engine is asked
# directly (nothing listens: fail). In the same run: an encrypted Cloudflare token without its
# variable and tailnetPolicy off leave their API rows not checked, with the way to check them.
def test_tcp_docker_host_and_encrypted_token(host: World) -> None:
    name = host.stack(
        "tcp",
        f"tcp://127.0.0.1:{closed_port()}",
        tailscaleVersion="1.102.5",
        tailnetPolicy="off",
        **{"cloudflare:apiToken": {"secure": "v1:AAAABBBBCCCC"}},
    )
    found = rows(host.doctor(name, host.environ(CLOUDFLARE_API_TOKEN="")))
    assert found["host.channel"].status == "not_checked"
    assert "bare Docker API" in found["host.channel"].summary
    assert found["docker.engine"].status == "fail"
    for row in ("tailscaled.daemon", "tailscaled.socket", "host.ipv6", "ports.derp", "ports.stun"):
        assert found[row].summary == "not checked: host.channel was not checked", row
    assert found["docker.derper"].summary == "not checked: docker.engine failed"
    secrets = found["stack.secrets"]
    assert secrets.status == "not_checked" and "cloudflare:apiToken" in secrets.summary
    assert "export CLOUDFLARE_API_TOKEN=" in (secrets.fix or "")
    assert found["cloudflare.token"].status == "not_checked"
    assert found["cloudflare.zone"].summary == "not checked: cloudflare.token was not checked"
    assert found["tailnet.policy"].summary == "not checked: home-derp:tailnetPolicy is off"
    assert found["tailnet.region"].status == "not_checked"
    # The encrypted token counts as configured: settings does not claim it is missing.
    assert "cloudflare:apiToken is not set" not in (found["settings"].detail or "")
    carried = rows(host.doctor(name, host.environ()))
    assert carried["stack.secrets"].status == "pass"
    assert "using $CLOUDFLARE_API_TOKEN" in (carried["stack.secrets"].detail or "")
    assert carried["cloudflare.token"].status == "pass"


# ssh:// to a port nothing answers: host.channel fails with ssh's diagnosis; everything that goes
# through the host (Docker included) is not checked because of it.
def test_unreachable_ssh_host(host: World) -> None:
    found = rows(host.doctor(host.stack("gone", f"ssh://root@127.0.0.1:{closed_port()}")))
    assert found["host.channel"].status == "fail"
    assert "unreachable" in (found["host.channel"].fix or "")
    for row in ("docker.engine", "tailscaled.daemon", "host.ipv6", "ports.derp"):
        assert found[row].summary == "not checked: host.channel failed", row
    assert found["docker.derper"].summary == "not checked: docker.engine was not checked"


# A dockerHost that is no Docker URL: settings fails on it, the host rows are not checked.
def test_invalid_docker_host(host: World) -> None:
    found = rows(host.doctor(host.stack("bad", "ftp://home.lan")))
    assert "home-derp:dockerHost = 'ftp://home.lan'" in (found["settings"].detail or "")
    assert found["host.channel"].status == "not_checked"
    assert found["docker.engine"].status == "not_checked"


# An engine that is not running fails docker.engine with the fix: a unix:// socket nobody serves,
# and over ssh:// a host whose `docker system dial-stdio` finds no daemon (the test dockerd is not
# at the default socket without the wrapper) — its own words come back in the detail.
def test_docker_engine_down(host: World) -> None:
    gone = f"unix://{host.scratch}/no-docker.sock"
    found = rows(host.doctor(host.stack("nodocker", gone)))
    engine = found["docker.engine"]
    assert engine.status == "fail" and "does not answer" in engine.summary
    assert "systemctl enable --now docker" in (engine.fix or "")
    assert found["host.channel"].status == "pass"  # unix:// is this machine: still readable
    assert found["docker.derper"].summary == "not checked: docker.engine failed"
    wrapper = host.bin_dir / "docker"
    saved = wrapper.read_text()
    wrapper.unlink()
    try:
        over_ssh = rows(host.doctor(host.stack("nodocker-ssh", host.ssh)))
    finally:
        wrapper.write_text(saved)
        wrapper.chmod(0o755)
    assert over_ssh["host.channel"].status == "pass"
    assert over_ssh["docker.engine"].status == "fail"
    assert (
        "the host said: failed to open the raw stream connection: dial unix /var/run/docker.sock"
        in (over_ssh["docker.engine"].detail or "")
    )


# ---------------------------------------------------------------------------------------------
# Cloudflare (the faithful API peer)


def _records(host: World, *records: tuple[str, str]) -> None:
    zone = next(iter(host.cloudflare.zones.values()))
    for kind, content in records:
        host.cloudflare.add_record(zone.id, kind, HOSTNAME, content)


# Each Cloudflare problem fails its row (with the fix) and leaves the rows after it not checked;
# an API that cannot be reached is "not checked", not a failure of the configuration.
@pytest.mark.parametrize(
    ("case", "row", "status", "text"),
    [
        ("wrong token", "cloudflare.token", "fail", "Cloudflare refuses the API token"),
        ("no token", "cloudflare.token", "fail", "no Cloudflare API token"),
        ("unreachable", "cloudflare.token", "not_checked", "cannot reach the Cloudflare API"),
        ("other zone", "cloudflare.zone", "fail", "the token sees no zone 'example.org'"),
        ("pending zone", "cloudflare.zone", "fail", "is pending, not active"),
        ("round-robin", "cloudflare.records", "fail", "several records of one type"),
        ("cname", "cloudflare.records", "fail", "is a CNAME"),
        ("one record", "cloudflare.records", "pass", "will be adopted"),
    ],
)
def test_cloudflare_rows(host: World, case: str, row: str, status: str, text: str) -> None:
    environ = host.environ()
    config: dict[str, str] = {}
    if case == "wrong token":
        environ["CLOUDFLARE_API_TOKEN"] = "not-the-token"
    elif case == "no token":
        del environ["CLOUDFLARE_API_TOKEN"]
    elif case == "unreachable":
        environ["CLOUDFLARE_BASE_URL"] = f"http://127.0.0.1:{closed_port()}/client/v4"
    elif case == "other zone":
        config = {"zone": "example.org", "hostname": "derp.example.org"}
    elif case == "pending zone":
        if not any(z.name == "pending.example" for z in host.cloudflare.zones.values()):
            host.cloudflare.add_zone("pending.example", status="pending")
        config = {"zone": "pending.example", "hostname": "derp.pending.example"}
    elif case == "round-robin":
        _records(host, ("AAAA", "2a01:4f8:d0c::1"), ("AAAA", "2a01:4f8:d0c::2"))
    elif case == "cname":
        _records(host, ("CNAME", "home.example.net"))
    else:
        _records(host, ("AAAA", "2a01:4f8:d0c::1"))
    found = rows(host.doctor(host.stack("cf", host.local, **config), environ))
    assert found[row].status == status, found[row]
    assert text in found[row].summary
    if status == "fail":
        assert found[row].fix
    order = ["cloudflare.token", "cloudflare.zone", "cloudflare.records"]
    for later in order[order.index(row) + 1 :]:
        assert found[later].status == "not_checked", found[later]
    if case == "no token":  # the program stops on it too: said once, in this row
        assert "cloudflare:apiToken is not set" not in (found["settings"].detail or "")
        assert found["settings"].status == "pass" and "✗ rows below" in found["settings"].summary
    if case == "round-robin":
        assert "2a01:4f8:d0c::1" in (found[row].detail or "")


# ---------------------------------------------------------------------------------------------
# The tailnet policy (the faithful Tailscale API peer)


# Credentials the API refuses fail; none at all fail like the program; an encrypted key without
# its variable, or an API that does not answer, is not checked; file mode does not check the
# region; an OAuth client (id in the stack, secret in its variable) works through its token
# exchange. The policy is never written (ETag unchanged).
@pytest.mark.parametrize(
    ("case", "status", "text"),
    [
        ("wrong key", "fail", "cannot be read"),
        ("no key", "fail", "no usable Tailscale credentials"),
        ("encrypted key", "not_checked", "tailscale:apiKey encrypted"),
        ("unreachable", "not_checked", "cannot reach the Tailscale API"),
        ("file mode", "pass", "readable"),
        ("oauth client", "pass", "readable with the OAuth client"),
    ],
)
def test_tailnet_policy_rows(host: World, case: str, status: str, text: str) -> None:
    environ = host.environ()
    config: dict[str, object] = {}
    if case == "wrong key":
        environ["TAILSCALE_API_KEY"] = "tskey-api-wrong"
    elif case == "no key":
        del environ["TAILSCALE_API_KEY"]
    elif case == "encrypted key":
        del environ["TAILSCALE_API_KEY"]
        config = {"tailscale:apiKey": {"secure": "v1:AAAA"}}
    elif case == "unreachable":
        environ["TAILSCALE_BASE_URL"] = f"http://127.0.0.1:{closed_port()}"
    elif case == "oauth client":
        del environ["TAILSCALE_API_KEY"]
        environ["TAILSCALE_OAUTH_CLIENT_SECRET"] = TS_OAUTH_SECRET
        config = {"tailscale:oauthClientId": TS_OAUTH_ID}
    else:
        (host.project / "policy.hujson").write_text("{}\n")
        config = {"tailnetPolicy": "file", "policyFile": "policy.hujson"}
    etag = host.tailscale.etag
    found = rows(host.doctor(host.stack("ts", host.local, **config), environ))
    policy = found["tailnet.policy"]
    assert policy.status == status, policy
    assert text in policy.summary
    assert host.tailscale.etag == etag and host.tailscale.writes == 0
    region = found["tailnet.region"]
    if case == "oauth client":
        assert region.status == "pass"
        return
    assert region.status == "not_checked"
    if case == "file mode":
        assert "tailnetPolicy is file" in region.summary
    if case == "wrong key":
        assert "HTTP 401" in (policy.detail or "")
    if case == "encrypted key":
        assert found["stack.secrets"].status == "not_checked"
        assert "TAILSCALE_API_KEY=" in (found["stack.secrets"].fix or "")


# ---------------------------------------------------------------------------------------------
# The command line, as a process on the relay host


# `python -m components.doctor --json` on a healthy host: exit 0, the documented shape, no secret
# anywhere; the text checklist of a failing stack: exit 1, ✗ rows with their fix.
def test_cli_exit_codes_json_shape_and_no_secrets(host: World) -> None:
    environ = {**host.environ(), "PATH": f"{host.bin_dir}:{os.environ['PATH']}"}
    done = host.cli("-s", host.stack("cli", host.local), "--json", environ=environ)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert set(report) == {
        "stack",
        "project",
        "stack_file",
        "docker_host",
        "ok",
        "checks",
        "warnings",
    }
    assert report["ok"] is True and report["stack"] == "cli"
    for check in report["checks"]:
        assert set(check) == {"id", "status", "summary", "detail", "fix"}
        assert check["status"] in ("pass", "fail", "not_checked")
    failing = host.stack("cli-bad", host.local, ipv6=DEPRECATED)
    text = host.cli("-s", failing, environ=environ)
    assert text.returncode == 1, text.stdout + text.stderr
    assert "✗ host.ipv6" in text.stdout and "fix: publish the stable address" in text.stdout
    assert text.stdout.rstrip().endswith("fix the ✗ rows, then run the doctor again")
    for output in (done.stdout + done.stderr, text.stdout + text.stderr):
        assert CF_TOKEN not in output and TS_KEY not in output
