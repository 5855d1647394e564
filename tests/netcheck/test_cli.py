"""``python -m components.netcheck``: human table, the issue's JSON shape, exit codes 0/1/2."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from components.netcheck.__main__ import main
from tests.peers.relay import LocalRelay
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


# A good relay: exit 0 and an aligned table with one line per check and address.
def test_human_report_for_good_relay(relay: LocalRelay) -> None:
    proc = run_cli(*relay.cli_args(), "--resolver", relay.resolver, "--expect-verify-clients")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Report for derp.test: OK")
    rows = [line for line in lines if line.startswith("  ") and not line.startswith("  *")]
    assert len(rows) == 1 + 1 + 5 * 2  # header, dns, 5 checks × 2 addresses
    result_col, detail_col = rows[0].index("RESULT"), rows[0].index("DETAIL")
    for row in rows[1:]:  # every column starts at the same place on every line
        assert row[result_col:].split()[0] == "ok"
        assert row[detail_col - 2 : detail_col] == "  " and row[detail_col] != " "
    assert f"Server public key: {relay.server_public_key}" in proc.stdout


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
    assert code == 0, err
    doc = json.loads(out)
    assert {"hostname", "ok", "checks", "server_public_key", "regions", "nearest"} <= set(doc)
    assert doc["hostname"] == "derp.test" and doc["ok"] is True
    assert doc["server_public_key"] == relay.server_public_key
    assert doc["regions"] == [] and doc["nearest"] is None
    for check in doc["checks"]:
        assert {"name", "address", "ok", "detail", "hint", "latency_ms"} <= set(check)
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
