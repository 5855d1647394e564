"""RelayValidation: probe the relay from outside on `pulumi up`; report the verdict.

A Pulumi dynamic resource around the netcheck library (``components.netcheck``). It no longer
stops `up` itself: its verdict (``healthy``) feeds publication, which drains a published relay
that fails and restores it when it passes (``components/tailnet.py``), and a gate after
publication makes `up` fail in ``enforce`` mode (``components/gate.py``) — so the tailnet is put
right before anything goes red (docs/architecture.md, "Health"). Why each choice, with the trap
it avoids (docs/upstream/pulumi.md#dynamic-provider-preview):

* Probes run only in ``create``/``update``: `pulumi preview` calls only ``check``/``diff``, which
  stay pure, so PR previews send no traffic.
* ``diff`` reports a change only when an input changed, ``trigger`` included. ``relay.py`` builds
  the trigger with :func:`validation_trigger` from what changes the relay (container id,
  certificate serial, addresses) plus ``home-derp:validateNonce``, so an unchanged relay is not
  re-probed and a changed nonce (every health run) re-runs the probe. An unknown input counts as
  a change.
* Admission is proven from derper's own log line for the probe's random key, read through the
  Docker Engine API on ``docker_host`` (``components/netcheck/admission.py``): a closed connection
  alone looks the same whether tailscaled said "not found" or could not be asked.
* Coverage: with Tailscale credentials that may list devices, every device the relay host's
  tailscaled cannot see is named — derper's ``-verify-clients`` would reject it. When the region
  has no IPv4, every device whose last endpoints show no IPv6 is named too: it cannot reach the
  devices homed on the region (``components/reach.py``).
* A health run whose own machine has no path to a region with no IPv4 (its tailscaled has no
  IPv6, so derper's log cannot be read over the tailnet) gives no verdict instead of an
  "unconfirmed" one: the region is left as it is and the gate turns the run red.
* Credentials (``policy_access: "write"``, whenever publication writes the policy): every run —
  every health run included — proves the Tailscale credential may still read the policy and
  would be allowed to write it, without writing (``tailscale_api.Client.check_policy_access``).
  A revoked or demoted credential is then reported while the relay is healthy, and the gate
  fails the run with the fix, instead of being found by the drain of a failing relay.
* The provider is stored in the stack state under its stable name ``RelayValidation``
  (components/dynamic_provider.py: moving the class is one line there); older stacks stored
  ``components.validation.RelayValidationProvider``, which must stay importable. It holds no
  sockets, clients or credentials when pickled; ``configure()`` reads the Tailscale provider's
  config in the provider process, and everything else is built inside each method.
* Outputs are ``{**inputs, **computed}`` because the engine keeps exactly what ``create``/
  ``update`` return. Nothing here is secret.
* The provider process has no engine connection, so ``pulumi.log`` there is only a print
  (pulumi/pulumi#6065, #20409): progress and diagnoses go to stderr, which the CLI shows, and the
  diagnosis is kept in the ``diagnosis`` output.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import json
import math
import re
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import pulumi
import pulumi.dynamic

from components.dynamic_provider import ProbeProvider, TailscaleCredentials
from components.reach import devices_not_checked, devices_without_ipv6, runner_without_path
from components.settings import keys
from components.settings.keys import MAX_VALIDATE_TIMEOUT_SECONDS, VALIDATE_MODES
from components.wire import is_unknown, plain

if TYPE_CHECKING:
    from components.netcheck import Check, RelayTarget, Report

TYPE_TOKEN: Final = "pulumi-python:dynamic/homederp:RelayValidation"
MODES: Final = VALIDATE_MODES
DEFAULT_TIMEOUT_SECONDS: Final = keys.default_int("validateTimeout")
MAX_TIMEOUT_SECONDS: Final = MAX_VALIDATE_TIMEOUT_SECONDS

# One probe has netcheck's own budgets (5 s report, 3 s STUN: docs/upstream/netcheck.md); between
# probes wait 1, 2, 4, 5, 5, … s (never past the deadline) for DNS and the container to come up.
PROBE_TIMEOUT: Final = 5.0
STUN_TIMEOUT: Final = 3.0
MAX_BACKOFF: Final = 5.0

INPUT_KEYS: Final = (
    "hostname",
    "derp_port",
    "stun_port",
    "expected_addresses",
    "expect_verify_clients",
    "mode",
    "timeout_seconds",
    "trigger",
    "addresses_override",
    "resolvers",
    "ca_file",
    "docker_host",
    "container",
    "tailscale_version",
    "host_tailscale_version",
    "host_peers",
    "policy_access",
    "region_ipv4",
)
OUTPUT_KEYS: Final = (
    "ok",
    "healthy",
    "checks",
    "server_public_key",
    "stun_latency_ms",
    "tls_latency_ms",
    "certificate_days_left",
    "checked_at",
    "last_healthy_at",
    "attempts",
    "diagnosis",
    "admission",
    "coverage",
    "credentials",
    "reach",
)
# Order-free inputs: a reordered list is not a change.
_SET_KEYS: Final = frozenset({"expected_addresses", "addresses_override", "host_peers"})


# --------------------------------------------------------------------------------------------
# Pure rules


def validation_trigger(
    container_id: str, certificate_serial: str, addresses: Sequence[str], nonce: str
) -> str:
    """What makes validation re-run: a new container, certificate, address set, or nonce."""
    addrs = ",".join(sorted({_normal_ip(a) for a in addresses if a}))
    return f"container={container_id};cert={certificate_serial};addresses={addrs};nonce={nonce}"


def _normal_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return text.strip()


def _comparable(key: str, value: Any) -> Any:
    if key in _SET_KEYS and isinstance(value, list | tuple):
        return sorted(_normal_ip(str(v)) for v in value)
    if isinstance(value, tuple):
        return list(value)
    return plain(value)


def changed_inputs(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    """Input keys whose value differs (``olds`` are the previous outputs, inputs echoed)."""
    return [k for k in INPUT_KEYS if _comparable(k, olds.get(k)) != _comparable(k, news.get(k))]


def input_failures(news: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(property, reason) for every invalid known input; unknown values are checked on `up`."""
    failures: list[tuple[str, str]] = []

    def known(key: str) -> Any:
        value = news.get(key)
        return None if is_unknown(value) else value

    hostname = known("hostname")
    if not is_unknown(news.get("hostname")) and (not isinstance(hostname, str) or not hostname):
        failures.append(("hostname", "must be the relay's DNS name"))
    for key in ("derp_port", "stun_port"):
        port = known(key)
        if port is not None and not _is_int_in(port, 1, 65535):
            failures.append((key, f"{port!r} is not a port (1-65535)"))
    mode = known("mode")
    if mode is not None and mode not in MODES:
        failures.append(("mode", f"{mode!r} is not one of {', '.join(MODES)}"))
    timeout = known("timeout_seconds")
    if timeout is not None and not _is_int_in(timeout, 0, MAX_TIMEOUT_SECONDS):
        failures.append(("timeout_seconds", f"{timeout!r} is not 0-{MAX_TIMEOUT_SECONDS} seconds"))
    for key in ("expected_addresses", "addresses_override"):
        values = known(key)
        if values is None:
            continue
        if not isinstance(values, list):
            failures.append((key, "must be a list of IP addresses"))
            continue
        for v in values:
            if not is_unknown(v) and _not_ip(v):
                failures.append((key, f"{v!r} is not an IP address"))
    verify = known("expect_verify_clients")
    if verify is not None and not isinstance(verify, bool):
        failures.append(("expect_verify_clients", "must be true or false"))
    return failures


def _is_int_in(value: Any, low: int, high: int) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and value == int(value) and low <= value <= high


def _not_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return True
    return False


def relay_target(props: Mapping[str, Any]) -> RelayTarget:
    """The netcheck target for these inputs (numbers arrive from the engine as floats)."""
    from components.netcheck import RelayTarget

    verify = props.get("expect_verify_clients")
    return RelayTarget(
        hostname=str(props["hostname"]),
        derp_port=int(props["derp_port"]),
        stun_port=int(props["stun_port"]),
        addresses=tuple(str(a) for a in props.get("addresses_override") or ()),
        expected_addresses=tuple(str(a) for a in props.get("expected_addresses") or ()),
        resolvers=tuple(str(r) for r in props.get("resolvers") or ()),
        ca_file=str(props["ca_file"]) if props.get("ca_file") else None,
        expect_verify_clients=None if verify is None else bool(verify),
    )


def check_summary(check: Check) -> dict[str, Any]:
    return {
        "name": check.name,
        "address": check.address,
        "ok": check.ok,
        "warning": check.warning,
        "detail": check.detail,
        "hint": check.hint,
        "latency_ms": None if check.latency_ms is None else round(check.latency_ms, 3),
    }


def _best(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(min(known), 3) if known else None


def admission_summary(report: Report) -> dict[str, Any] | None:
    """The cause derper logged for the probe's random key (first address that has one)."""
    for check in report.checks:
        if check.name == "verify_clients" and check.data.get("cause"):
            return {"cause": check.data["cause"], "detail": check.detail, "ok": check.ok}
    return None


def computed_outputs(
    report: Report, *, attempts: int, checked_at: str, last_healthy_at: str | None
) -> dict[str, Any]:
    """The outputs for one final report."""
    passed = [c for c in report.checks if c.ok]
    tls = [c for c in passed if c.name == "tls"]
    days = [int(c.data["days_left"]) for c in tls if isinstance(c.data.get("days_left"), int)]
    healthy = report.ok
    return {
        "ok": healthy,
        "healthy": healthy,
        "checks": [check_summary(c) for c in report.checks],
        "server_public_key": report.server_public_key,
        "stun_latency_ms": _best([c.latency_ms for c in passed if c.name == "stun"]),
        "tls_latency_ms": _best([c.latency_ms for c in tls]),
        "certificate_days_left": min(days) if days else None,
        "checked_at": checked_at,
        "last_healthy_at": checked_at if healthy else last_healthy_at,
        "attempts": attempts,
        "diagnosis": None if healthy else diagnosis(report, attempts=attempts),
        "admission": admission_summary(report),
    }


def off_outputs(last_healthy_at: str | None = None) -> dict[str, Any]:
    """``validate: off``: nothing probed, nothing judged (publication treats it as healthy)."""
    return {
        "ok": None,
        "healthy": None,
        "checks": [],
        "server_public_key": None,
        "stun_latency_ms": None,
        "tls_latency_ms": None,
        "certificate_days_left": None,
        "checked_at": None,
        "last_healthy_at": last_healthy_at,
        "attempts": 0,
        "diagnosis": None,
        "admission": None,
        "coverage": None,
        "credentials": None,
        "reach": None,
    }


def diagnosis(report: Report, *, attempts: int, waited: float | None = None) -> str:
    """Failed checks with details and hints first, then netcheck's whole table."""
    failed = report.failed()
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    if waited is not None:
        tries += f" over {waited:.0f}s"
    lines = [
        f"relay {report.hostname} failed {len(failed)} of {len(report.checks)} checks ({tries}):"
    ]
    if not report.checks:
        lines.append("  ✗ no check ran (no address to probe)")
    for c in failed:
        where = f" {c.address}" if c.address else ""
        lines.append(f"  ✗ {c.name}{where}: {c.detail}")
        if c.hint:
            lines.append(f"      hint: {c.hint}")
    lines += ["", report.format_text()]
    return "\n".join(lines)


#: Seconds a container restarted by Docker counts as still looping (see container_trouble).
RESTART_LOOP_WINDOW: Final = 60.0


_DOCKER_TIME: Final = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _docker_time(value: Any) -> dt.datetime | None:
    """Docker's RFC 3339 times with nanoseconds (``2026-12-06T07:16:06.123456789Z``); None for
    the zero time (``0001-01-01T00:00:00Z``, never started) and anything else."""
    match = _DOCKER_TIME.match(value) if isinstance(value, str) else None
    if match is None or value.startswith("0001-"):
        return None
    zone = "+00:00" if match[2] == "Z" else match[2]
    return dt.datetime.fromisoformat(match[1] + zone)


#: A known last word of derper (docs/upstream/derper.md#key-file) → what to do about it.
EXIT_HINTS: Final = (
    (
        "no space left on device",
        "the filesystem of derper's state volume (Docker's data root for a plain volume) is full: "
        "free space on the relay host (`docker system prune`; `python -m components.doctor` "
        "measures it as docker.space and derper.state)",
    ),
    (
        "read-only file system",
        "derper's state volume is read-only: find out why on the relay host (`dmesg`: a "
        "filesystem remounted read-only after errors?) and make it writable again",
    ),
    (
        "derper: config:",
        "derper.key in the state volume is damaged (often a disk that filled up while it was "
        "written): free space first, then move the file aside on the relay host (`sudo mv "
        "\"$(docker volume inspect -f '{{.Mountpoint}}' VOLUME)/derper.key\" /root/`); derper "
        "then writes a new key, and clients learn it as they reconnect",
    ),
)


def container_trouble(
    name: str, inspect: Mapping[str, Any], log_text: str, now: dt.datetime | None = None
) -> str | None:
    """What is wrong with derper's container, from ``docker inspect`` and its log; None when it
    runs normally. A restart loop — ``State.Restarting``, or running again for less than a minute
    after Docker restarted it (a loop caught between two exits) — is named with derper's last
    log line, the reason it exits (docs/upstream/derper.md#key-file)."""
    raw_state = inspect.get("State")
    state: Mapping[str, Any] = raw_state if isinstance(raw_state, Mapping) else {}
    restarts = inspect.get("RestartCount")
    restarts = restarts if isinstance(restarts, int) else 0
    status = str(state.get("Status") or "")
    code = state.get("ExitCode")
    started = _docker_time(state.get("StartedAt"))
    now = now or dt.datetime.now(dt.UTC)
    just_restarted = (
        status == "running"
        and restarts >= 1
        and started is not None
        and (now - started).total_seconds() < RESTART_LOOP_WINDOW
    )
    if state.get("Restarting") or status == "restarting" or just_restarted:
        exits = f" (it exits with code {code})" if status != "running" else ""
        what = (
            f"derper's container {name} is in a RESTART LOOP: Docker has restarted it "
            f"{restarts} times{exits}"
        )
    elif status in ("exited", "dead", "created"):
        what = f"derper's container {name} is not running ({status}, exit code {code})"
    else:
        return None
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    last = lines[-1] if lines else None
    text = what + (f"; its last log line: {last!r}" if last else "; its log is empty")
    hint = next((fix for word, fix in EXIT_HINTS if last and word in last), None)
    return text + (f"\n      hint: {hint}" if hint else "")


def coverage(devices: Sequence[Mapping[str, Any]], host_peers: Sequence[str]) -> dict[str, Any]:
    """Devices of the tailnet that the relay host cannot see (derper would reject them)."""
    visible = {str(k) for k in host_peers}
    invisible = sorted(
        str(d.get("name") or d.get("hostname") or d.get("id") or "?")
        for d in devices
        if d.get("nodeKey") and str(d["nodeKey"]) not in visible
    )
    return {"checked": True, "devices": len(devices), "invisible": invisible, "reason": None}


def coverage_not_checked(reason: str) -> dict[str, Any]:
    return {"checked": False, "devices": None, "invisible": [], "reason": reason}


def has_route(address: str) -> bool:
    """Whether this machine has a route to ``address`` (a UDP connect sends nothing).

    GitHub-hosted runners have no IPv6 at all: a probe from there cannot tell anything about an
    IPv6-only relay, and must not drain it (docs/architecture.md, "Health runs").
    """
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    except ValueError:
        return True
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((address, 9))
        except OSError:
            return False
    return True


def admission_only_unconfirmed(report: Report) -> bool:
    """Every failed check is a rejection of the probe's random key whose cause derper's log could
    not confirm: what the relay does from outside all passed, a key it *admitted* is no such case
    (docs/architecture.md, "Health runs")."""
    failed = report.failed()
    return bool(failed) and all(
        c.name == "verify_clients"
        and c.data.get("verify_clients") is True
        and c.data.get("cause") == "unconfirmed"
        for c in failed
    )


def not_judged_outputs(
    report: Report, why: str, *, attempts: int, checked_at: str, last_healthy_at: str | None
) -> dict[str, Any]:
    """The probes ran, but this machine cannot tell whether the relay admits clients because of
    where it stands: no verdict (``healthy`` None), the region left as it is."""
    judged = computed_outputs(
        report, attempts=attempts, checked_at=checked_at, last_healthy_at=last_healthy_at
    )
    return {**judged, "ok": None, "healthy": None, "diagnosis": why}


def region_verdict(nodes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One verdict for a region of several nodes (``{hostname, healthy, diagnosis,
    certificate_days_left, checked_at}`` each): healthy when every node is, failed when one
    failed, else not judged. Clients use the first node that connects, so one broken node is a
    broken region (docs/upstream/derpmap.md#region-nodes)."""
    verdicts = [n.get("healthy") for n in nodes]
    healthy: bool | None
    if any(v is False for v in verdicts):
        healthy = False
    elif verdicts and all(v is True for v in verdicts):
        healthy = True
    else:
        healthy = None
    notes = [
        f"{n.get('hostname')}: {n['diagnosis']}" if len(nodes) > 1 else str(n["diagnosis"])
        for n in nodes
        if n.get("diagnosis") and n.get("healthy") is not True
    ]
    days = [d for n in nodes if isinstance(d := n.get("certificate_days_left"), int | float)]
    checked = [str(c) for n in nodes if (c := n.get("checked_at"))]
    return {
        "healthy": healthy,
        "diagnosis": "\n\n".join(notes) or None,
        "certificate_days_left": min(days) if days else None,
        "checked_at": max(checked) if checked else None,
    }


def unjudged_outputs(unroutable: Sequence[str], last_healthy_at: str | None) -> dict[str, Any]:
    """No route from here to any of the relay's addresses: no verdict, nothing drained."""
    return {
        **off_outputs(last_healthy_at),
        "attempts": 0,
        "diagnosis": (
            f"this machine has no route to the relay's addresses ({', '.join(unroutable)}), so "
            "it cannot judge the relay; nothing was drained. Run validation from a machine "
            "with IPv6 (a GitHub-hosted runner has none: use an exit node with IPv6 or a "
            "self-hosted runner, docs/guide/ci-cd.md)"
        ),
    }


def _backoff(attempt: int) -> float:
    return float(min(MAX_BACKOFF, 2 ** (attempt - 1)))


def _note(message: str) -> None:
    # The provider process has no engine connection: stderr is what the CLI shows.
    print(f"home-derp validation: {message}", file=sys.stderr, flush=True)


def published_addresses(target: RelayTarget) -> list[str]:
    """The AAAA and A records of the relay's name, asked of the target's resolvers."""
    import asyncio

    from components.netcheck.dns import check_dns

    _, found = asyncio.run(check_dns(target, PROBE_TIMEOUT))
    return list(found)


Probe = Callable[..., "Report"]
Devices = Callable[[], Sequence[Mapping[str, Any]]]
Access = Callable[[], None]
"""Raises ``TailscaleApiError`` unless the credential may read and write the policy."""
ContainerCheck = Callable[[], "str | None"]
"""What is wrong with derper's container (a restart loop …), or None."""


def default_container_check(props: Mapping[str, Any]) -> ContainerCheck | None:
    """derper's container on ``docker_host``, inspected and its log read (only after a failed
    probe: a refused connection alone does not say that derper keeps dying, or why)."""
    from components.netcheck.admission import (
        LogReadError,
        docker_log_reader,
        docker_state_reader,
    )

    docker_host, container = props.get("docker_host"), props.get("container")
    if not docker_host or not container:
        return None
    name = str(container)

    def check() -> str | None:
        try:
            inspect = docker_state_reader(str(docker_host), name)()
            if container_trouble(name, inspect, "") is None:
                return None
            log_text = docker_log_reader(str(docker_host), name)()
        except LogReadError as exc:
            return f"derper's container could not be inspected (a crash loop not ruled out): {exc}"
        return container_trouble(name, inspect, log_text)

    return check


LocalStatus = Callable[[], "Mapping[str, Any] | None"]


def local_tailscale_status() -> dict[str, Any] | None:
    """This machine's own ``tailscale status --json`` (None when it runs no tailscaled)."""
    from components.host import HostReadError, this_machine

    try:
        done = this_machine().run(["tailscale", "status", "--json"], what="read tailscaled here")
    except HostReadError:
        return None
    try:
        status = json.loads(done.stdout) if done.returncode == 0 else None
    except ValueError:
        return None
    return status if isinstance(status, dict) else None


def default_probe(props: Mapping[str, Any]) -> Probe:
    """netcheck's check_relay, with derper's log as admission evidence when we know the host."""
    from components.netcheck import check_relay
    from components.netcheck.admission import docker_evidence

    docker_host, container = props.get("docker_host"), props.get("container")
    if not props.get("expect_verify_clients") or not docker_host or not container:
        return check_relay
    evidence = docker_evidence(
        str(docker_host),
        str(container),
        derper_version=props.get("tailscale_version"),
        tailscaled_version=props.get("host_tailscale_version"),
    )

    def probe(target: RelayTarget, **kw: Any) -> Report:
        return check_relay(target, evidence_source=evidence, **kw)

    return probe


def run_validation(
    props: Mapping[str, Any],
    *,
    probe: Probe | None = None,
    devices: Devices | None = None,
    access: Access | None = None,
    container: ContainerCheck | None = None,
    last_healthy_at: str | None = None,
    route: Callable[[str], bool] = has_route,
    local_status: LocalStatus = local_tailscale_status,
    resolve: Callable[[RelayTarget], Sequence[str]] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
) -> dict[str, Any]:
    """Probe until the relay passes or ``timeout_seconds`` is spent; return the computed outputs.

    Never raises for a failing relay: the verdict is the output (``healthy``), and the gate
    decides what `up` reports. ``off`` probes nothing.
    """
    mode = props.get("mode") or "enforce"
    if mode == "off":
        return off_outputs(last_healthy_at)
    resolve = resolve or published_addresses
    target = relay_target(props)
    expected = list(target.expected_addresses)
    if not expected and not target.addresses and target.resolvers:
        # No address from the config (a health run that could not read `ipv6: auto`): judge
        # what DNS publishes, but only what this machine can route to, as below.
        expected = list(resolve(target))
    routable = [a for a in expected if route(a)]
    if expected and not routable:
        return {**unjudged_outputs(expected, last_healthy_at), **_credentials(props, access)}
    if not target.addresses and len(routable) < len(expected):
        # Judge what can be reached from here; DNS is still checked for every address.
        _note(f"no route from here to {', '.join(set(expected) - set(routable))}: not probed")
        target = dataclasses.replace(target, addresses=tuple(routable))
    probe = probe or default_probe(props)
    budget = float(props.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS))
    started = clock()
    deadline = started + budget
    attempts = 0
    while True:
        attempts += 1
        report = probe(target, timeout=PROBE_TIMEOUT, stun_timeout=STUN_TIMEOUT)
        left = deadline - clock()
        if report.ok or left <= 0:
            break
        pause = min(_backoff(attempts), left)
        failing = ", ".join(sorted({c.name for c in report.failed()})) or "no checks"
        _note(f"attempt {attempts} failed ({failing}); retrying in {pause:.0f}s, {left:.0f}s left")
        sleep(pause)
    checked_at = now().isoformat()
    outputs = computed_outputs(
        report, attempts=attempts, checked_at=checked_at, last_healthy_at=last_healthy_at
    )
    outputs.update(_credentials(props, access))
    if (
        not report.ok
        and props.get("region_ipv4") is False
        and admission_only_unconfirmed(report)
        and (why := runner_without_path(local_status())) is not None
    ):
        outputs = {
            **not_judged_outputs(
                report,
                why,
                attempts=attempts,
                checked_at=checked_at,
                last_healthy_at=last_healthy_at,
            ),
            "credentials": outputs["credentials"],
        }
        _note(why)
    wanted = props.get("region_ipv4") is False or (
        bool(props.get("expect_verify_clients")) and props.get("host_peers") is not None
    )
    listed = _listed_devices(devices) if wanted else []
    outputs["coverage"] = _coverage(props, listed)
    outputs["reach"] = _reach(props, listed)
    if outputs["healthy"] is False:
        outputs["diagnosis"] = diagnosis(report, attempts=attempts, waited=clock() - started)
        check = container if container is not None else default_container_check(props)
        trouble = check() if check is not None else None
        if trouble:
            outputs["diagnosis"] = f"{trouble}\n\n{outputs['diagnosis']}"
        _note("the relay is NOT healthy\n" + outputs["diagnosis"])
    left_out = (outputs["reach"] or {}).get("withoutIpv6")
    if left_out:
        _note(
            f"region has no IPv4: {len(left_out)} device(s) whose last endpoints show no IPv6 "
            f"cannot reach the devices homed on it: {', '.join(left_out)} (docs/guide/reach.md)"
        )
    invisible = (outputs["coverage"] or {}).get("invisible")
    if invisible:
        _note(
            f"{len(invisible)} device(s) are invisible to the relay host's tailscaled and would be "
            f"rejected by -verify-clients: {', '.join(invisible)}. Let the relay host see them in "
            "the tailnet policy (an ACL or grant with the relay host as destination, or put it in "
            "a group every device may reach)"
        )
    return outputs


def _credentials(props: Mapping[str, Any], access: Access | None) -> dict[str, Any]:
    """``{"credentials": {ok, detail}}`` when publication writes the policy, else None."""
    from components.tailscale_api import MISSING_HINT, TailscaleApiError

    if props.get("policy_access") != "write":
        return {"credentials": None}
    if access is None:
        verdict = {"ok": False, "detail": f"no Tailscale credentials: {MISSING_HINT}"}
    else:
        try:
            access()
        except TailscaleApiError as exc:
            verdict = {"ok": False, "detail": str(exc)}
        else:
            verdict = {"ok": True, "detail": "may read and write the tailnet policy"}
    if not verdict["ok"]:
        _note(f"the Tailscale credential is NOT usable: {verdict['detail']}")
    return {"credentials": verdict}


NO_CREDENTIALS: Final = "no Tailscale credentials to list the tailnet's devices"


def _listed_devices(devices: Devices | None) -> list[Mapping[str, Any]] | str:
    """The tailnet's devices, listed once for every check that needs them, or why not."""
    from components.tailscale_api import TailscaleApiError

    if devices is None:
        return NO_CREDENTIALS
    try:
        return list(devices())
    except TailscaleApiError as exc:
        return (
            f"the tailnet's devices could not be listed ({exc}); an API key or an OAuth client "
            "with the devices:core:read scope can"
        )


def _coverage(
    props: Mapping[str, Any], listed: list[Mapping[str, Any]] | str
) -> dict[str, Any] | None:
    peers = props.get("host_peers")
    if not props.get("expect_verify_clients"):
        return None  # derper admits everyone: nothing to cover
    if peers is None:
        return coverage_not_checked(
            "the relay host's tailscaled could not be read at this run, so the devices it can "
            "see are unknown"
        )
    if isinstance(listed, str):
        return coverage_not_checked(listed)
    return coverage(listed, list(peers))


def _reach(
    props: Mapping[str, Any], listed: list[Mapping[str, Any]] | str
) -> dict[str, Any] | None:
    """Devices left out by a region with no IPv4 (None when the region has IPv4 or says not)."""
    if props.get("region_ipv4") is not False:
        return None
    if isinstance(listed, str):
        return devices_not_checked(listed)
    return devices_without_ipv6(listed)


# --------------------------------------------------------------------------------------------
# The dynamic provider and resource


class RelayValidationProvider(TailscaleCredentials, ProbeProvider):
    """Probes on create/update; a refresh keeps the last result (the base:
    components/dynamic_provider.py)."""

    NAME = "RelayValidation"
    INPUT_KEYS = INPUT_KEYS

    def comparable(self, key: str, value: Any) -> Any:
        return _comparable(key, value)

    def _client(self) -> Any:
        """A Tailscale API client (one token exchange for every call of this run), or None."""
        from components.tailscale_api import TailscaleApiError

        try:
            return self.api_client()
        except TailscaleApiError:
            return None

    def run(self, props: Mapping[str, Any], olds: Mapping[str, Any]) -> dict[str, Any]:
        inputs = {k: props[k] for k in INPUT_KEYS if k in props}
        previous = olds.get("last_healthy_at")
        client = self._client()
        computed = run_validation(
            plain(props),
            # clientConnectivity (each device's endpoints) comes only with fields=all.
            devices=(lambda: client.list_devices(fields="all")) if client is not None else None,
            access=(lambda: client.check_policy_access(write=True)) if client is not None else None,
            last_healthy_at=previous if isinstance(previous, str) else None,
        )
        return inputs | computed

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
        failures = [pulumi.dynamic.CheckFailure(p, r) for p, r in input_failures(news)]
        return pulumi.dynamic.CheckResult(news, failures)


@dataclass
class RelayValidationArgs:
    """Inputs of :class:`RelayValidation`."""

    hostname: pulumi.Input[str]
    """The relay's DNS name: TLS SNI and the name the certificate must carry."""
    derp_port: pulumi.Input[int]
    """TCP port of derper's HTTPS/DERP listener."""
    stun_port: pulumi.Input[int]
    """UDP port of derper's STUN server."""
    expected_addresses: pulumi.Input[Sequence[pulumi.Input[str]]]
    """Addresses DNS must return for ``hostname`` (empty: accept what DNS says)."""
    expect_verify_clients: pulumi.Input[bool]
    """Whether derper must reject unknown clients (``-verify-clients``)."""
    mode: pulumi.Input[str] = "enforce"
    """``enforce``/``warn`` probe and report; ``off`` probes nothing (the gate acts on it)."""
    timeout_seconds: pulumi.Input[int] = DEFAULT_TIMEOUT_SECONDS
    """How long to keep retrying while DNS propagates and the container starts."""
    trigger: pulumi.Input[str] = ""
    """Re-probe when this changes: build it with :func:`validation_trigger`."""
    addresses_override: pulumi.Input[Sequence[pulumi.Input[str]]] | None = None
    """Probe these addresses instead of resolving ``hostname`` (like a derpMap pin)."""
    resolvers: pulumi.Input[Sequence[pulumi.Input[str]]] | None = None
    """DNS servers (``IP``, ``IP:PORT``, ``[IPv6]:PORT``) instead of the system resolver."""
    ca_file: pulumi.Input[str] | None = None
    """Extra trusted CA bundle, a path on the machine running pulumi (e.g. ACME staging)."""
    docker_host: pulumi.Input[str] | None = None
    """The relay's Docker engine: derper's log proves admission."""
    container: pulumi.Input[str] | None = None
    """derper's container name on ``docker_host``."""
    tailscale_version: pulumi.Input[str] | None = None
    """The release derper was built from (named in a version-skew diagnosis)."""
    host_tailscale_version: pulumi.Input[str] | None = None
    """The host tailscaled's release as read at this run."""
    host_peers: pulumi.Input[Sequence[pulumi.Input[str]]] | None = None
    """Node keys the relay host's tailscaled can see (itself included): the coverage check."""
    policy_access: pulumi.Input[str | None] = None
    """``"write"`` when publication writes the tailnet policy: the credential is proven on every
    run (see the module docstring)."""
    region_ipv4: pulumi.Input[bool] | None = None
    """Whether a device without IPv6 can dial some node of the region (docs/guide/reach.md)."""

    def to_props(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in INPUT_KEYS}


class RelayValidation(pulumi.dynamic.Resource, module="homederp", name="RelayValidation"):
    """The relay as a client sees it, checked on `up`; type ``TYPE_TOKEN``."""

    ok: pulumi.Output[bool | None]
    """Same as ``healthy`` (kept for existing stacks' outputs)."""
    healthy: pulumi.Output[bool | None]
    """True when every check passed; False when one failed; None when validation is off."""
    checks: pulumi.Output[list[dict[str, Any]]]
    """One ``{name, address, ok, warning, detail, hint, latency_ms}`` per check."""
    server_public_key: pulumi.Output[str | None]
    """derper's public key (64 hex) from the DERP handshake."""
    stun_latency_ms: pulumi.Output[float | None]
    """Best STUN round trip across the relay's addresses."""
    tls_latency_ms: pulumi.Output[float | None]
    """Best TCP connect + TLS handshake time."""
    certificate_days_left: pulumi.Output[int | None]
    """Days until the served certificate expires."""
    checked_at: pulumi.Output[str | None]
    """When the last probe ran (ISO 8601, UTC)."""
    last_healthy_at: pulumi.Output[str | None]
    """When the relay last passed every check."""
    attempts: pulumi.Output[int]
    """Probes it took (retries while DNS and the container come up)."""
    diagnosis: pulumi.Output[str | None]
    """The failure report when ``healthy`` is False."""
    admission: pulumi.Output[dict[str, Any] | None]
    """derper's verdict on the probe's random key: ``{cause, detail, ok}``."""
    coverage: pulumi.Output[dict[str, Any] | None]
    """``{checked, devices, invisible, reason}``: tailnet devices the relay host cannot see."""
    credentials: pulumi.Output[dict[str, Any] | None]
    """``{ok, detail}``: the Tailscale credential may read and write the policy (None: not
    asked, ``policy_access`` unset)."""
    reach: pulumi.Output[dict[str, Any] | None]
    """Region without IPv4: ``{checked, devices, withoutIpv6, unknown, reason}``, the devices
    whose last endpoints show no IPv6 (None when the region has IPv4)."""

    def __init__(
        self,
        resource_name: str,
        args: RelayValidationArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {**args.to_props(), **dict.fromkeys(OUTPUT_KEYS)}
        super().__init__(RelayValidationProvider(), resource_name, props, opts)
