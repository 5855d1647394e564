"""The pinned Tailscale programs: the list parses, the binaries are the pinned versions, and a
missing one fails with the command that builds it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.peers.tools import TOOLS_ENV, ToolMissing, parse_tools_list, pinned, tool, version_of


# The list pins derper, tailscaled and tailscale at one release and headscale beside them.
def test_list_pins_every_program() -> None:
    tools = pinned()
    assert set(tools) == {"derper", "tailscaled", "tailscale", "headscale"}
    assert {tools[n].version for n in ("derper", "tailscaled", "tailscale")} == {"v1.102.5"}
    assert tools["headscale"].package == "github.com/juanfont/headscale/cmd/headscale"


# Comments and blank lines are ignored; a malformed line is an error naming the line.
def test_parse_rejects_malformed_lines() -> None:
    text = "# comment\n\nexample.com/cmd/x v1.2.3  # trailing\n"
    assert parse_tools_list(text)["x"].version == "v1.2.3"
    with pytest.raises(ValueError, match=":2: expected"):
        parse_tools_list("example.com/cmd/x v1\nexample.com/cmd/y latest\n")


# Each built binary reports the version it is pinned at (what tests/tools/install checks too).
@pytest.mark.parametrize("name", ["derper", "tailscaled", "tailscale", "headscale"])
def test_binary_reports_pinned_version(name: str) -> None:
    args = ["--version"] if name in ("derper", "tailscaled") else ["version"]
    done = subprocess.run(
        [str(tool(name)), *args], capture_output=True, text=True, timeout=10, check=False
    )
    assert done.returncode == 0, done
    assert version_of(name) in done.stdout.splitlines()[0], done.stdout


# Not built: the test fails (never skips) and says to run tests/tools/install.
def test_missing_binary_fails_with_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOOLS_ENV, str(tmp_path))
    with pytest.raises(ToolMissing, match=r"Run `bash tests/tools/install`"):
        tool("derper")
    assert issubclass(ToolMissing, AssertionError)
