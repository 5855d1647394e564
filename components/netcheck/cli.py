"""The command line: ``python -m components.netcheck HOST [options]``.

Exit codes (:data:`EXIT_CODES`, printed by ``--help`` and listed in docs/guide/netcheck.md; a test
keeps the two equal): 0 every check passed, 1 a check failed, 2 usage error, 3 could not run,
4 partial: every check of the relay passed but a part of the report asked for could not be made —
the DERP map of ``--derp-map``/``--compare-default`` could not be fetched (the network, not the
user's arguments: no usage banner, and the relay's own report is still printed), or derper's
counters of ``--usage-from`` could not be read; 5 unconfirmed: nothing failed, but a check could
not be proven — admission, when derper's own verdict on the random key was not read (report.py,
derp.py). When several apply the first of 1, 5, 4 wins: the relay before the extras.
"""

from __future__ import annotations

import argparse
import difflib
import ipaddress
import json
import textwrap
from collections.abc import Sequence
from typing import NoReturn

from .dns import parse_resolver
from .errors import DerpMapError
from .probes import check_relay
from .regions import DEFAULT_DERP_MAP_URL, load_derp_map
from .report import RelayTarget, Report
from .usage import UsageSource, is_local_address, parse_source, read_from

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # argparse's own code for usage errors
EXIT_NOT_RUN = 3
EXIT_PARTIAL = 4
EXIT_UNCONFIRMED = 5

#: Every exit code and what it means: the one list --help prints and docs/guide/netcheck.md
#: repeats (tests/netcheck/test_cli.py keeps them equal).
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "every check passed (warnings included)"),
    (EXIT_FAILED, "at least one check failed (also: admission unconfirmed with "
     "--expect-verify-clients)"),
    (EXIT_USAGE, "usage error (bad option or argument)"),
    (EXIT_NOT_RUN, "could not run (the project's Python packages are missing)"),
    (EXIT_PARTIAL, "partial: every check passed, but the DERP map could not be fetched (the "
     "comparison was skipped) or --usage-from could not read derper's counters"),
    (EXIT_UNCONFIRMED, "unconfirmed: no check failed, but admission was not proven (derper's "
     "own verdict on the random key was not read: --docker-host and --container); wins over 4"),
)  # fmt: skip


def _epilog() -> str:
    lines = ["exit codes:"]
    for code, meaning in EXIT_CODES:
        lines += textwrap.wrap(meaning, 96, initial_indent=f"  {code}  ", subsequent_indent=" " * 5)
    return "\n".join(lines) + "\n"


EPILOG = _epilog()


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return int(text)


def _ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None


def _resolver(text: str) -> str:
    try:
        parse_resolver(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def seconds(text: str) -> float:
    """An argparse type: a timeout in seconds, 0 < S <= 600 (shared with the doctor)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a timeout in seconds (0 < S <= 600)")
    return value


class DidYouMeanParser(argparse.ArgumentParser):
    """argparse with "did you mean --x?" for a mistyped option (Python 3.11 has none)."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments:"):
            hint = self._suggestion(message.split(":", 1)[1].split())
            if hint:
                message += f" (did you mean {hint}?)"
        super().error(message)

    def _suggestion(self, unknown: list[str]) -> str | None:
        known = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
        for token in unknown:
            if token.startswith("-"):
                close = difflib.get_close_matches(token.split("=", 1)[0], known, n=1, cutoff=0.6)
                if close:
                    return close[0]
        return None


def build_parser() -> argparse.ArgumentParser:
    p = DidYouMeanParser(
        prog="python -m components.netcheck",
        description="Check from outside that a Tailscale DERP relay works for real clients.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("host", metavar="HOST", help="relay hostname (TLS SNI and certificate name)")
    p.add_argument(
        "--derp-port",
        type=_port,
        default=443,
        metavar="N",
        help="TCP port of derper's HTTPS/DERP listener (-a; the derpMap DERPPort) (443)",
    )
    p.add_argument(
        "--stun-port",
        type=_port,
        default=3478,
        metavar="N",
        help="UDP port of derper's STUN server (-stun-port; the derpMap STUNPort) (3478)",
    )
    p.add_argument(
        "--address",
        type=_ip,
        action="append",
        default=[],
        metavar="IP",
        help="probe this address instead of DNS answers (repeatable); SNI stays HOST",
    )
    p.add_argument(
        "--expect-address",
        type=_ip,
        action="append",
        default=[],
        metavar="IP",
        help="DNS must answer exactly these addresses (repeatable)",
    )
    p.add_argument(
        "--resolver",
        type=_resolver,
        action="append",
        default=[],
        metavar="IP",
        help="DNS server: IP, IP:PORT or [IPv6]:PORT (repeatable; default: system)",
    )
    p.add_argument("--ca-file", metavar="PEM", help="trust only these CAs (default: system CAs)")
    expect = p.add_mutually_exclusive_group()
    expect.add_argument(
        "--expect-verify-clients",
        dest="expect",
        action="store_const",
        const=True,
        help="fail unless derper rejects an unknown client key (-verify-clients is on)",
    )
    expect.add_argument(
        "--expect-open",
        dest="expect",
        action="store_const",
        const=False,
        help="fail unless derper admits an unknown client key (an open relay)",
    )
    p.add_argument(
        "--docker-host",
        metavar="URL",
        help="derper's Docker engine (unix:///var/run/docker.sock, ssh://user@host, tcp://h:p): "
        "read derper's own log line for the random key, which proves admission; needs "
        "--container",
    )
    p.add_argument(
        "--container",
        metavar="NAME",
        help="derper's container on --docker-host (home-derp names it derper-<id>-<code>)",
    )
    p.add_argument("--timeout", type=seconds, default=5.0, metavar="S", help="whole report (5)")
    p.add_argument("--stun-timeout", type=seconds, default=3.0, metavar="S", help="STUN phase (3)")
    maps = p.add_mutually_exclusive_group()
    maps.add_argument("--derp-map", metavar="URL|FILE", help="compare with this DERP map")
    maps.add_argument(
        "--compare-default",
        action="store_true",
        help=f"compare with Tailscale's default map ({DEFAULT_DERP_MAP_URL})",
    )
    p.add_argument(
        "--usage-from",
        type=_usage_source,
        metavar="WHERE",
        help="read derper's own counters (clients connected and homed, bytes relayed; its "
        "/debug/varz answers loopback and Tailscale addresses only) through: local (this is the "
        "relay host), ssh://[user@]host[:port] (ssh -W to the host's loopback) or "
        "tailnet:<relay host's tailnet name or IP> (tailscale nc). Default: the --docker-host "
        "when given, or local when HOST's address is this machine's",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def _usage_source(text: str) -> UsageSource:
    try:
        return parse_source(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def usage_source(args: argparse.Namespace, report: Report) -> UsageSource | None:
    """Where derper's counters can be read from: ``--usage-from``; else the Docker host
    (unix:// is this machine, ssh:// the relay host over ssh); else this machine when one of
    the relay's probed addresses is its own."""
    if args.usage_from is not None:
        source: UsageSource = args.usage_from
        return source
    docker_host = args.docker_host or ""
    if docker_host.startswith("unix://"):
        return UsageSource("local")
    if docker_host.startswith("ssh://"):
        return UsageSource("ssh", docker_host)
    probed = {c.address for c in report.checks if c.address}
    if any(is_local_address(a) for a in probed):
        return UsageSource("local")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.ca_file is not None:
        try:
            with open(args.ca_file, "rb"):
                pass
        except OSError as exc:
            parser.error(f"--ca-file {args.ca_file}: {exc.strerror}")
    if (args.docker_host is None) != (args.container is None):
        parser.error("--docker-host and --container go together (derper's engine and container)")
    source = DEFAULT_DERP_MAP_URL if args.compare_default else args.derp_map
    derp_map = None
    skipped = None
    if source:
        try:
            derp_map = load_derp_map(source, timeout=args.timeout)
        except DerpMapError as exc:
            if exc.kind != "unreachable":
                parser.error(str(exc))
            # The network, not the arguments: check the relay anyway and say what is missing.
            skipped = f"{exc} (the relay was checked; the comparison needs that map)"
    target = RelayTarget(
        hostname=args.host,
        derp_port=args.derp_port,
        stun_port=args.stun_port,
        addresses=tuple(args.address),
        expected_addresses=tuple(args.expect_address),
        resolvers=tuple(args.resolver),
        ca_file=args.ca_file,
        expect_verify_clients=args.expect,
    )
    evidence = None
    if args.docker_host is not None:
        from .admission import docker_evidence

        evidence = docker_evidence(args.docker_host, args.container)
    report = check_relay(
        target,
        timeout=args.timeout,
        stun_timeout=min(args.stun_timeout, args.timeout),
        derp_map=derp_map,
        evidence_source=evidence,
    )
    report.comparison_skipped = skipped
    where = usage_source(args, report)
    if where is not None:
        report.usage = read_from(where, args.host, args.derp_port, timeout=args.timeout + 5)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.format_text())
    usage_missing = args.usage_from is not None and (report.usage is None or report.usage.error)
    return exit_status(report, partial=bool(skipped or usage_missing))


def exit_status(report: Report, *, partial: bool) -> int:
    """The exit code of a report (see :data:`EXIT_CODES`): the relay's verdict first."""
    if report.verdict == "failed":
        return EXIT_FAILED
    if report.verdict == "unconfirmed":
        return EXIT_UNCONFIRMED
    return EXIT_PARTIAL if partial else EXIT_OK
