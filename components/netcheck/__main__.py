"""CLI: ``python -m components.netcheck HOST [options]`` — exit 0 ok, 1 a check failed, 2 usage."""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from collections.abc import Sequence

from .probes import check_relay, parse_resolver
from .regions import DEFAULT_DERP_MAP_URL, DerpMapError, load_derp_map
from .report import RelayTarget


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


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a timeout in seconds (0 < S <= 600)")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m components.netcheck",
        description="Check from outside that a Tailscale DERP relay works for real clients.",
    )
    p.add_argument("host", metavar="HOST", help="relay hostname (TLS SNI and certificate name)")
    p.add_argument("--derp-port", type=_port, default=443, metavar="N")
    p.add_argument("--stun-port", type=_port, default=3478, metavar="N")
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
    expect.add_argument("--expect-verify-clients", dest="expect", action="store_const", const=True)
    expect.add_argument("--expect-open", dest="expect", action="store_const", const=False)
    p.add_argument("--timeout", type=_seconds, default=5.0, metavar="S", help="whole report (5)")
    p.add_argument("--stun-timeout", type=_seconds, default=3.0, metavar="S", help="STUN phase (3)")
    maps = p.add_mutually_exclusive_group()
    maps.add_argument("--derp-map", metavar="URL|FILE", help="compare with this DERP map")
    maps.add_argument(
        "--compare-default",
        action="store_true",
        help=f"compare with Tailscale's default map ({DEFAULT_DERP_MAP_URL})",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.ca_file is not None:
        try:
            with open(args.ca_file, "rb"):
                pass
        except OSError as exc:
            parser.error(f"--ca-file {args.ca_file}: {exc.strerror}")
    source = DEFAULT_DERP_MAP_URL if args.compare_default else args.derp_map
    derp_map = None
    if source:
        try:
            derp_map = load_derp_map(source, timeout=args.timeout)
        except DerpMapError as exc:
            parser.error(str(exc))
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
    report = check_relay(
        target,
        timeout=args.timeout,
        stun_timeout=min(args.stun_timeout, args.timeout),
        derp_map=derp_map,
    )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.format_text())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
