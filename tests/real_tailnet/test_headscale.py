"""controlPlane: headscale end to end, with the real programs only: the product writes region 900
into headscale's DERP map file, headscale serves it, real clients home on it, derper admits
through headscale's /verify, a drain moves the clients away and destroy takes the region back out
— and the user's file keeps every byte the product did not own.

The topology is ``tests/peers/headscale_net.py``. ``HeadscaleDerpRegion`` runs in the real
dynamic-provider process (``tests/provider_host.py``), pickled exactly as the program registers
it, against headscale's real config, file and debug listener through a ``unix://`` channel.
What clients receive is read from them: ``tailscale debug derp-map`` (the map tailscaled got from
headscale) and ``tailscale netcheck --format=json`` (netcheck.Report: ``PreferredDERP``,
``RegionLatency``; tailscale.com@v1.102.5/cmd/tailscale/cli/netcheck.go:160-166).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components import headscale_derpmap
from components.doctor import headscale_checks
from components.headscale import HeadscaleHost, served_region
from components.headscale_region import HeadscaleDerpRegion
from components.netcheck import RelayTarget, check_relay
from components.netcheck.admission import find_evidence
from tests.mocks import dynamic_inputs
from tests.peers.daemons import wait_until
from tests.peers.derper import admitted, rejections
from tests.peers.headscale_net import (
    REFRESH_SECONDS,
    HeadscaleNet,
    headscale_net,
    parse,
    stack_config,
    wait_client_map,
    wait_home,
)
from tests.peers.tailnet import FAR, HOME, RELAY_DERP_PORT, RELAY_STUN_PORT
from tests.provider_host import ProviderHost, urn_for

TYPE = "pulumi-python:dynamic/homederp:HeadscaleDerpRegion"
URN = urn_for(TYPE, "relay-900-headscale-region", parent_type="homederp:index:HomeDerpRelay")


@pytest.fixture(scope="module")
def hsn() -> Iterator[HeadscaleNet]:
    with headscale_net() as net:
        yield net


@pytest.fixture(scope="module")
def provider() -> Iterator[ProviderHost]:
    with ProviderHost() as host:
        host.configure({})
        yield host


def _props(hsn: HeadscaleNet, *, healthy: bool | None = True) -> dict[str, Any]:
    """The inputs ``HomeDerpRelay`` registers for this stack (relay.py ``_publish``)."""
    headscale = hsn.settings.control_plane.headscale
    assert headscale is not None
    kwargs: dict[str, Any] = {
        "region": hsn.region(),
        "host": headscale.host,
        "derp_file": headscale.derp_file,
        "debug_address": headscale.debug_address,
        "reload": list(headscale.reload),
        "refresh_seconds": headscale.refresh_seconds,
        "healthy": healthy,
        "adopt_region": False,
    }
    inputs = dynamic_inputs(lambda: HeadscaleDerpRegion("relay-900-headscale-region", **kwargs))
    return inputs


def _netcheck(node: Any) -> dict[str, Any]:
    return dict(json.loads(node.cli("netcheck", "--format=json", timeout=60).stdout))


def _regions(derp_map: dict[str, Any]) -> dict[str, Any]:
    return dict(derp_map.get("Regions") or {})


def _file(hsn: HeadscaleNet) -> str:
    return hsn.derp_file.read_text()


def _without_ours(text: str) -> str:
    return headscale_derpmap.remove_region(text, HOME.id)


# The product's settings read headscale's real config: the file is in derp.paths, headscale
# re-reads it every 2 s by itself, and derper's admission URL is headscale's /verify.
def test_settings_read_the_real_headscale_config(hsn: HeadscaleNet) -> None:
    assert hsn.verdict.ok, hsn.verdict.problems
    headscale = hsn.settings.control_plane.headscale
    assert headscale is not None
    assert headscale.refresh_seconds == REFRESH_SECONDS
    assert hsn.settings.derper.verify_url == f"{hsn.headscale.url}/verify"
    assert "-verify-client-url-fail-open=false" in " ".join(hsn.home_derper.daemon.argv)


# A DERP map file that headscale's config does not list is refused before anything is written:
# headscale would never serve the region (the doctor shows the same problem).
def test_a_file_headscale_does_not_read_is_refused(hsn: HeadscaleNet, tmp_path: Path) -> None:
    other = tmp_path / "derp.yaml"
    verdict = parse(stack_config(hsn.headscale, other, hsn.debug_address))
    (problem,) = [p for p in verdict.problems if p.key == "headscaleDerpFile"]
    assert str(hsn.derp_file) in problem.why and "derp.paths" in problem.why, problem


# up → drain → restore → destroy against the real headscale and real clients.
def test_publish_drain_restore_destroy(hsn: HeadscaleNet, provider: ProviderHost) -> None:
    props = _props(hsn)
    checked = provider.check(URN, {}, props)
    assert checked.failures == []

    # up: the region lands in the file, every other byte stays, headscale serves it.
    created = provider.create(URN, checked.inputs)
    outs = created.outputs
    assert outs["published"] is True and outs["drained"] is False
    text = _file(hsn)
    assert _without_ours(text) == hsn.original
    assert f"hostname: {json.dumps(HOME.hostname)}" in text
    served = served_region(HeadscaleHost("unix:///").debug_derp(hsn.debug_address), HOME.id)
    assert served is not None and served["nodes"][0]["hostname"] == HOME.hostname
    assert "is served" in str(outs["served"])

    # Clients receive it, measure it, and make it their home: it is nearest (20 ms vs 80 ms).
    wait_client_map(hsn, lambda m: str(HOME.id) in _regions(m), "region 900 in every map")
    wait_home(hsn.clients, HOME.code)
    report = _netcheck(hsn.clients["a"])
    assert report["PreferredDERP"] == HOME.id, report
    assert str(HOME.id) in report["RegionLatency"] and str(FAR.id) in report["RegionLatency"]
    # derper admitted them through headscale's /verify, and rejected none of them.
    log = hsn.home_derper.log()
    for node in hsn.clients.values():
        assert admitted(log, node.nodekey), f"{node.label} not admitted\n{log[-2000:]}"
    keys = {n.nodekey.removeprefix("nodekey:") for n in hsn.clients.values()}
    assert not {r.client for r in rejections(log)} & keys

    # A failing relay is drained: the flag reaches the clients and they move to "far".
    drained = provider.update(created.id, outs, _props(hsn, healthy=False), urn=URN)
    assert drained.outputs["published"] is True and drained.outputs["drained"] is True
    assert _without_ours(_file(hsn)) == hsn.original
    assert headscale_derpmap.find_region(_file(hsn), HOME.id)["nomeasurenohome"] is True
    path = props["derp_file"]
    assert f"region {HOME.id} DRAINED (nomeasurenohome) in {path}" in provider.stderr_text()
    wait_client_map(
        hsn,
        lambda m: _regions(m).get(str(HOME.id), {}).get("NoMeasureNoHome") is True,
        "NoMeasureNoHome on region 900 in every map",
    )
    wait_home(hsn.clients, FAR.code)
    assert _netcheck(hsn.clients["a"])["PreferredDERP"] == FAR.id

    # Healthy again: restored, and the clients come back.
    restored = provider.update(created.id, drained.outputs, _props(hsn), urn=URN)
    assert restored.outputs["drained"] is False
    assert _file(hsn) == text  # exactly the bytes of the first publish
    assert f"region {HOME.id} restored in {path}: the relay is healthy" in provider.stderr_text()
    wait_home(hsn.clients, HOME.code)

    # destroy: the file is the user's again, byte for byte, and clients no longer get 900.
    provider.delete(created.id, restored.outputs, urn=URN)
    assert _file(hsn) == hsn.original
    wait_client_map(hsn, lambda m: str(HOME.id) not in _regions(m), "region 900 gone")
    assert served_region(HeadscaleHost("unix:///").debug_derp(hsn.debug_address), HOME.id) is None
    wait_home(hsn.clients, FAR.code)


# A random key is refused by derper because headscale's /verify does not know it, and derper's
# own log says so: "admission controller: … not allowed", which the product reads as `denied`.
def test_random_key_refused_through_verify(hsn: HeadscaleNet) -> None:
    relay = hsn.lan.hosts[0]
    target = RelayTarget(
        HOME.hostname,
        RELAY_DERP_PORT,
        RELAY_STUN_PORT,
        relay.addresses,
        ca_file=hsn.pki.ca_file,
        expect_verify_clients=True,
    )
    report = check_relay(target, timeout=5)
    for address in relay.addresses:
        key = str(report.check("verify_clients", address).data["client_key"])
        found = wait_until(
            f"derper's line for nodekey:{key}",
            lambda key=key: find_evidence(hsn.home_derper.log(), key),
            5.0,
            [hsn.home_derper.daemon],
        )
        assert found.cause == "denied", found
        assert f"admission controller: nodekey:{key}/" in str(found.log_line)
        assert str(found.log_line).endswith(" not allowed")


# headscale down, derper fails closed: the random key is rejected because /verify cannot be
# reached (never admitted), and the product names that cause.
def test_unreachable_verify_url_is_named(hsn: HeadscaleNet, tmp_path: Path) -> None:
    from tests.peers.derper import start_derper
    from tests.peers.tailnet import isolated_host

    files = hsn.pki.files("good")
    with isolated_host() as bare:
        derper = start_derper(
            tmp_path / "derper",
            hostname=HOME.hostname,
            cert_file=files.cert_file,
            key_file=files.key_file,
            derp_port=RELAY_DERP_PORT,
            stun_port=RELAY_STUN_PORT,
            prefix=bare.prefix,
            addresses=bare.addresses,
            # The product's flags, with a headscale nobody listens for in this namespace.
            extra_args=[
                f"-verify-client-url=http://127.0.0.1:{RELAY_STUN_PORT}/verify",
                "-verify-client-url-fail-open=false",
            ],
        )
        try:
            target = RelayTarget(
                HOME.hostname,
                RELAY_DERP_PORT,
                RELAY_STUN_PORT,
                ("127.0.0.1",),
                ca_file=hsn.pki.ca_file,
                expect_verify_clients=True,
            )
            report = bare.run(lambda: check_relay(target, timeout=5))
            check = report.check("verify_clients", "127.0.0.1")
            assert check.data["verify_clients"] is True, check  # rejected, not admitted
            key = str(check.data["client_key"])
            found = wait_until(
                "derper's line for the key",
                lambda: find_evidence(derper.log(), key),
                5.0,
                [derper.daemon],
            )
            assert found.cause == "verifier_unreachable", found
            assert 'Post "http://127.0.0.1:' in str(found.log_line)
        finally:
            derper.stop()


# The doctor's headscale rows against the real headscale: reachable, the config lists the file
# and re-reads it, the file is a writable DERP map, /verify answers "no" for a random key.
def test_doctor_rows_pass_against_real_headscale(hsn: HeadscaleNet) -> None:
    rows = headscale_checks.checks(hsn.settings, "unix:///", timeout=10)
    assert [(r.id, r.status) for r in rows] == [
        ("headscale.reachable", "pass"),
        ("headscale.config", "pass"),
        ("headscale.file", "pass"),
        ("headscale.verify", "pass"),
    ], rows
    assert "re-read every 2s" in rows[1].summary


# The doctor catches a headscale config that does not list the file: the row fails, names the
# file and what derp.paths holds, and says how to fix it.
def test_doctor_catches_a_config_without_the_file(hsn: HeadscaleNet, tmp_path: Path) -> None:
    other = tmp_path / "derp.yaml"
    verdict = parse(stack_config(hsn.headscale, other, hsn.debug_address))
    rows = {r.id: r for r in headscale_checks.checks(verdict.settings, "unix:///", timeout=10)}
    config = rows["headscale.config"]
    assert config.status == "fail", config
    assert str(other) in config.summary and str(hsn.derp_file) in str(config.detail)
    assert config.fix is not None and "derp.paths" in config.fix
    assert rows["headscale.file"].status == "not_checked"


# Over ssh:// (a real sshd, the system OpenSSH client in batch mode): the file travels as bytes,
# a stale checksum refuses the write, /debug/derp is asked on the headscale host's loopback
# through `ssh -W`, a wrong debug address is named, and the doctor's rows pass over ssh too.
def test_headscale_host_over_ssh(
    hsn: HeadscaleNet, sshd_factory: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import shlex

    from components.headscale import FileChanged, HeadscaleError

    sshd = sshd_factory()
    monkeypatch.setenv("HOME_DERP_SSH_OPTS", shlex.join(sshd.client_options))
    host = HeadscaleHost(sshd.docker_host)
    state = host.read_file(str(hsn.derp_file))
    assert state.text == hsn.derp_file.read_text()
    scratch = tmp_path / "derp.yaml"
    scratch.write_bytes(b"regions:\r\n  901: {}\r\n")
    before = host.read_file(str(scratch))
    host.write_file(str(scratch), before.text + "# ours\r\n", before.checksum)
    assert scratch.read_bytes() == b"regions:\r\n  901: {}\r\n# ours\r\n"
    with pytest.raises(FileChanged):
        host.write_file(str(scratch), "x", before.checksum)
    served = served_region(host.debug_derp(hsn.debug_address), FAR.id)
    assert served is not None and served["nodes"][0]["hostname"] == FAR.hostname
    with pytest.raises(HeadscaleError, match="does not answer"):
        host.debug_derp("127.0.0.1:1")
    raw = {**stack_config(hsn.headscale, hsn.derp_file, hsn.debug_address)}
    raw["headscaleHost"] = sshd.docker_host
    verdict = parse(raw)
    assert verdict.ok, verdict.problems
    rows = headscale_checks.checks(verdict.settings, sshd.docker_host, timeout=10)
    assert all(r.status == "pass" for r in rows), rows
    # A verify URL the relay host cannot open is named as such (derper would fail closed).
    unreachable = headscale_checks.verify_check("http://127.0.0.1:1/verify", sshd.docker_host, 10)
    assert unreachable.status == "fail" and "cannot open 127.0.0.1:1" in unreachable.summary


GRANT_TYPE = "pulumi-python:dynamic/homederp:HeadscalePeerRelayGrant"
GRANT_URN = urn_for(
    GRANT_TYPE, "relay-900-peer-relay-grant", parent_type="homederp:index:HomeDerpRelay"
)


def _grant_props(hsn: HeadscaleNet, grant: dict[str, Any]) -> dict[str, Any]:
    """The inputs ``HomeDerpRelay._peer_relay`` registers with headscale."""
    from components.headscale_grant import HeadscalePeerRelayGrant

    headscale = hsn.settings.control_plane.headscale
    assert headscale is not None and headscale.policy_file is not None
    kwargs = {
        "region_id": HOME.id,
        "grant": grant,
        "relay_ips": hsn.relay_node.status()["Self"]["TailscaleIPs"],
        "host": headscale.host,
        "policy_file": headscale.policy_file,
        # headscale runs under the test harness, not systemd: the SIGHUP `systemctl reload`
        # would send (headscale@v0.29.3/packaging/systemd/headscale.service:11), sent directly.
        "reload": ["kill", "-HUP", str(hsn.headscale.daemon.process.pid)],
        "debug_address": headscale.debug_address,
    }
    return dynamic_inputs(lambda: HeadscalePeerRelayGrant("relay-900-peer-relay-grant", **kwargs))


# The peer-relay grant goes into headscale's policy file (every other byte kept), headscale
# reloads it, and c reaches d through the relay host's peer relay; destroy takes it out again.
def test_peer_relay_grant_in_headscale_policy(hsn: HeadscaleNet, provider: ProviderHost) -> None:
    from components import derpmap, peer_relay, tailscaled
    from tests.peers.tailnet import RELAY_SERVER_PORT

    relay = hsn.relay_node
    relay.cli("set", f"--relay-server-port={RELAY_SERVER_PORT}")
    facts = tailscaled.parse_status_json(relay.cli("status", "--json").stdout, "1.102.5", "")
    grant = derpmap.peer_relay_grant(["tag:relay-client"], peer_relay.grant_destination(facts))
    # The relay host itself, not its tag (docs/guide/what-derper-can-touch.md): its Tailscale IPv4.
    assert grant["dst"] == [next(ip for ip in facts.tailscale_ips if "." in ip)]
    settings = hsn.settings.control_plane.headscale
    assert settings is not None and settings.policy_file is not None
    policy = Path(settings.policy_file)
    original = policy.read_text()

    created = provider.create(
        GRANT_URN, provider.check(GRANT_URN, {}, _grant_props(hsn, grant)).inputs
    )
    text = policy.read_text()
    assert derpmap.find_grant(text, HOME.id) == grant
    assert derpmap.remove_grant(text, HOME.id) == original
    c, d = hsn.relay_clients["c"], hsn.relay_clients["d"]
    d_ip = d.ipv4

    def relayed() -> bool:
        out = c.cli("ping", "--until-direct=false", "-c", "3", "--timeout", "3s", d_ip,
                    check=False).stdout  # fmt: skip
        return f":{RELAY_SERVER_PORT}:vni:" in out and "via peer-relay(" in out

    wait_until("a pong from d via the peer relay", relayed, 60.0, hsn.daemons, 0.5)

    provider.delete(created.id, created.outputs, urn=GRANT_URN)
    assert policy.read_text() == original


# A grant headscale refuses (a tag no tagOwners entry owns) is not left behind: the previous
# policy file is put back and `up` fails naming headscale's log.
def test_refused_grant_is_put_back(hsn: HeadscaleNet, provider: ProviderHost) -> None:
    from components import derpmap
    from tests.provider_host import ProviderError

    settings = hsn.settings.control_plane.headscale
    assert settings is not None and settings.policy_file is not None
    policy = Path(settings.policy_file)
    original = policy.read_text()
    grant = derpmap.peer_relay_grant(["tag:relay-client"], "tag:nobody-owns-this")
    props = _grant_props(hsn, grant)
    with pytest.raises(ProviderError, match="was put back"):
        provider.create(GRANT_URN, provider.check(GRANT_URN, {}, props).inputs)
    assert policy.read_text() == original
