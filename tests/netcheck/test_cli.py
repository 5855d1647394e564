"""``python -m components.netcheck``: human table, the issue's JSON shape, exit codes 0-5."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from components.netcheck import cli
from components.netcheck.cli import main
from tests.peers.aio import BackgroundLoop
from tests.peers.certs import Pki
from tests.peers.ports import free_port
from tests.peers.relay import LocalRelay, local_relay
from tests.peers.silent_tcp import silent_tcp

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "components.netcheck", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# A good relay, its admission unread: an aligned table with one line per check and address; the
# headline says what was not proven and the exit code is 5 (unconfirmed), not 0.
def test_human_report_for_good_relay(relay: LocalRelay) -> None:
    proc = run_cli(*relay.cli_args(), "--resolver", relay.resolver)
    assert proc.returncode == cli.EXIT_UNCONFIRMED == 5, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == (
        "Report for derp.test: OK except 2 unconfirmed (9/11 checks passed, 2 unconfirmed)"
    )
    rows = [
        line
        for line in lines
        if line.startswith("  ") and not line.startswith("  *") and "hint:" not in line
    ]
    assert len(rows) == 1 + 1 + 5 * 2  # header, dns, 5 checks × 2 addresses
    result_col, detail_col = rows[0].index("RESULT"), rows[0].index("DETAIL")
    for row in rows[1:]:  # every column starts at the same place on every line
        # Without --docker-host a rejection cannot prove admission: verify_clients is unconfirmed.
        expected = "unconfirmed" if row.startswith("  verify_clients") else "ok"
        assert row[result_col:].split()[0] == expected
        assert row[detail_col - 2 : detail_col] == "  " and row[detail_col] != " "
    assert "read derper's own verdict with --docker-host and --container" in proc.stdout
    assert f"Server public key: {relay.server_public_key}" in proc.stdout


# The case on the faithful relay: a rejection that derper's log does not explain passes
# nothing. Asked to expect verification, the checker FAILS (exit 1); the JSON says why.
def test_unconfirmed_with_expect_verify_clients_fails(
    relay: LocalRelay, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = main_in_process(capsys, *relay.cli_args(), "--expect-verify-clients")
    assert code == cli.EXIT_FAILED, out
    assert out.splitlines()[0] == "Report for derp.test: FAILED (8/10 checks passed)"
    code, out, _ = main_in_process(capsys, *relay.cli_args(), "--expect-verify-clients", "--json")
    doc = json.loads(out)
    assert code == cli.EXIT_FAILED and doc["ok"] is False and doc["verdict"] == "failed"
    admission = [c for c in doc["checks"] if c["name"] == "verify_clients"]
    assert [c["data"]["cause"] for c in admission] == ["unconfirmed", "unconfirmed"]
    assert [c["unconfirmed"] for c in admission] == [False, False]  # failures, not marks


def main_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The CLI's main() in this process (interpreter start-up costs seconds per subprocess)."""
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


# --json carries exactly the promised keys and types.
def test_json_shape(relay: LocalRelay, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = main_in_process(capsys, *relay.cli_args(), "--json")
    assert code == cli.EXIT_UNCONFIRMED, err
    doc = json.loads(out)
    assert {"hostname", "ok", "verdict", "checks", "server_public_key", "regions"} <= set(doc)
    assert doc["hostname"] == "derp.test" and doc["ok"] is False
    assert doc["verdict"] == "unconfirmed"
    assert doc["server_public_key"] == relay.server_public_key
    assert doc["regions"] == [] and doc["nearest"] is None
    for check in doc["checks"]:
        assert {"name", "address", "ok", "detail", "hint", "latency_ms"} <= set(check)
        assert check["unconfirmed"] is (check["name"] == "verify_clients")
        assert isinstance(check["ok"], bool) and isinstance(check["detail"], str)
        assert check["latency_ms"] is None or isinstance(check["latency_ms"], float)


# A failed check (verification on, open expected) gives exit 1 and the hint in the table.
def test_failed_check_exits_1(relay: LocalRelay, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = main_in_process(capsys, *relay.cli_args(), "--expect-open")
    assert code == 1
    assert "FAIL" in out and "hint: turn verification off" in out


# Usage errors exit 2 with a message and never a traceback.
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["derp.test", "--derp-port", "70000"], "not a port"),
        (["derp.test", "--address", "not-an-ip"], "not an IP address"),
        (["derp.test", "--resolver", "dns.google"], "not an IP address"),
        (["derp.test", "--expect-open", "--expect-verify-clients"], "not allowed with"),
        (["derp.test", "--timeout", "0"], "timeout"),
        (["derp.test", "--ca-file", "/nonexistent.pem"], "--ca-file"),
        (["derp.test", "--derp-map", "/nonexistent.json"], "cannot load DERP map"),
        (["derp.test", "--derp-map", "x.json", "--compare-default"], "not allowed with"),
        ([], "HOST"),
    ],
)
def test_usage_errors_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = main_in_process(capsys, *args)
    assert code == 2
    assert message in err and "Traceback" not in err


# The real entry point reports a usage error the same way (exit 2, message, no traceback).
def test_usage_error_subprocess() -> None:
    proc = run_cli("derp.test", "--stun-port", "x")
    assert proc.returncode == 2
    assert "not a port" in proc.stderr and "Traceback" not in proc.stderr


# A relay that accepts TCP but never speaks, with STUN dropped: bounded by --timeout.
def test_nothing_hangs() -> None:
    with silent_tcp() as port:
        start = time.monotonic()
        proc = run_cli(
            "derp.test",
            "--address",
            "::1",
            "--derp-port",
            str(port),
            "--stun-port",
            "9",
            "--timeout",
            "1.5",
            "--json",
        )
        elapsed = time.monotonic() - start
    assert proc.returncode == 1
    assert elapsed < 10  # interpreter start-up (see report: components/__init__ imports Pulumi)
    doc = json.loads(proc.stdout)
    assert doc["duration_ms"] < 1700


# --help documents every option (the four that had none included) and the exit codes.
def test_help_documents_options_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = main_in_process(capsys, "--help")
    assert code == 0
    for flag, phrase in (
        ("--derp-port", "TCP port of derper's HTTPS/DERP listener"),
        ("--stun-port", "UDP port of derper's STUN server"),
        ("--expect-verify-clients", "fail unless derper rejects an unknown client key"),
        ("--expect-open", "fail unless derper admits an unknown client key"),
    ):
        assert flag in out and phrase in " ".join(out.split()), flag
    assert "exit codes:" in out
    for line in ("0  every check passed", "1  at least one check failed", "2  usage error"):
        assert line in out
    assert "3  could not run" in out
    assert "4  partial: every check passed, but the DERP map could not be fetched" in out
    assert "5  unconfirmed: no check failed, but admission was not proven" in out


def help_exit_codes(text: str) -> dict[int, str]:
    """The ``exit codes:`` section of ``--help``: code → meaning (wrapped lines joined)."""
    codes: dict[int, str] = {}
    section = text.split("\nexit codes:\n", 1)[1]
    for line in section.splitlines():
        head = re.match(r"^  (\d+)  (.*)$", line)
        if head:
            code = int(head[1])
            codes[code] = head[2]
        elif line.startswith("     ") and codes:
            codes[code] += " " + line.strip()
    return codes


def doc_exit_codes(text: str) -> dict[int, str]:
    """The exit-code table of docs/guide/netcheck.md: ``| code | meaning |`` rows."""
    rows = re.findall(r"^\| (\d+) \| (.*?) \|$", text, re.M)
    return {int(code): meaning for code, meaning in rows}


# Every exit code is documented once, the same way, in --help and in docs/guide/netcheck.md
# (the real --help output is parsed, not the constant it is printed from).
def test_help_and_guide_list_the_same_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = main_in_process(capsys, "--help")
    in_help = help_exit_codes(out)
    in_guide = doc_exit_codes((ROOT / "docs" / "guide" / "netcheck.md").read_text())
    assert in_help == in_guide
    assert sorted(in_help) == [0, 1, 2, 3, 4, 5] == sorted(c for c, _ in cli.EXIT_CODES)


# A DERP map URL that cannot be fetched no longer throws the report away: the relay is checked
# and reported, the comparison is named as skipped with the reason, and the exit code is the
# partial-result code 4 (3, "could not run", was the old answer). No usage banner: it is the
# network, not the arguments. --compare-default takes the same path (its URL pointed at loopback).
# The relay's own verdict comes first: an unconfirmed admission is 5, a failure 1.
@pytest.mark.parametrize("how", ["--derp-map", "--compare-default"])
def test_unreachable_map_still_reports_the_relay(
    how: str,
    relay: LocalRelay,
    bg: BackgroundLoop,
    pki: Pki,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = f"http://127.0.0.1:{free_port(('127.0.0.1',), socket.SOCK_STREAM)}/derpmap/default"
    extra = ["--derp-map", url] if how == "--derp-map" else [how]
    monkeypatch.setattr(cli, "DEFAULT_DERP_MAP_URL", url)
    with local_relay(bg=bg, pki=pki, verify_clients=False) as open_relay:
        args = [*open_relay.cli_args(), "--expect-open"]
        code, out, err = main_in_process(capsys, *args, *extra)
        assert code == cli.EXIT_PARTIAL == 4, out + err
        assert out.startswith("Report for derp.test: OK (")
        assert "Comparison skipped: cannot load DERP map" in out and url in out
        assert "usage:" not in err
        code, out, _ = main_in_process(capsys, *args, *extra, "--json")
        assert code == 4 and url in json.loads(out)["comparison_skipped"]
    code, out, _ = main_in_process(capsys, *relay.cli_args(), *extra)
    assert code == cli.EXIT_UNCONFIRMED and "Comparison skipped" in out
    # A relay that fails is a failure whatever else was skipped.
    code, out, _ = main_in_process(capsys, *relay.cli_args(), *extra, "--expect-open")
    assert code == cli.EXIT_FAILED and "Comparison skipped" in out


# A mistyped option gets the closest real one suggested (exit 2, a usage error).
@pytest.mark.parametrize(
    ("typo", "meant"),
    [("--derp-prot", "--derp-port"), ("--stunport", "--stun-port"), ("--expect-verify", None)],
)
def test_mistyped_flag_gets_a_suggestion(
    typo: str, meant: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = main_in_process(capsys, "derp.test", typo, "443")
    assert code == 2
    if meant:
        assert f"unrecognized arguments: {typo} 443 (did you mean {meant}?)" in err
    else:  # an unambiguous prefix is argparse's own abbreviation: accepted, 443 is extra
        assert "did you mean" not in err


# When TLS fails, https/derp/verify_clients show "skipped (TLS failed)" in the table and in JSON
# (skipped: true) instead of vanishing; only tls counts as failed.
def test_tls_failure_shows_skipped_rows(
    bg: BackgroundLoop, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    with local_relay(bg=bg, pki=pki, cert="none", addresses=("127.0.0.1",)) as r:
        code, out, _ = main_in_process(capsys, *r.cli_args(), "--stun-timeout", "0.5")
        jcode, jout, _ = main_in_process(capsys, *r.cli_args(), "--json")
    assert code == jcode == 1
    assert "FAILED (1/5 checks passed, 3 skipped)" in out
    for name in ("https", "derp", "verify_clients"):
        row = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
        assert " skip " in row and row.rstrip().endswith("skipped (TLS failed)"), row
    checks = {c["name"]: c for c in json.loads(jout)["checks"]}
    assert checks["tls"]["skipped"] is False and checks["tls"]["ok"] is False
    for name in ("https", "derp", "verify_clients"):
        assert checks[name]["skipped"] is True and checks[name]["ok"] is False
        assert checks[name]["detail"] == "skipped (TLS failed)"
        assert checks[name]["data"] == {"skipped_because": "tls"}
