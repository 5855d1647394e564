"""A stand-in for the ``tailscale`` CLI, for the host states the real programs cannot easily show.

The real CLI and tailscaled run in tests/test_tailscaled.py and tests/real_tailnet/ (NeedsLogin and
Running for real). This stand-in covers the rest: Stopped, an old daemon, a CLI without the
peer-relay flags, access denied, garbage output and a slow host. What it prints follows upstream
(tailscale.com@v1.102.5), not what the product expects:

* ``version --daemon --json``: ``version.Meta`` (version/prop.go:256-313: ``majorMinorPatch``,
  ``short``, ``long``, ``cap``) plus ``daemonLong`` set from the daemon's status
  (cmd/tailscale/cli/version.go:68-82), tab-indented (``e.SetIndent("", "\\t")``);
* ``status --json``: ``ipnstate.Status`` (ipn/ipnstate/ipnstate.go:33-89: ``Version``,
  ``BackendState``, ``TailscaleIPs``, ``Self`` as a ``PeerStatus`` with ``PublicKey`` as
  ``nodekey:<hex>``, ``HostName``, ``DNSName`` ending in a dot, ``TailscaleIPs``, ``Tags`` only
  when tagged; ``CurrentTailnet`` null when not connected; ``Peer`` keyed by node key), two-space
  indented, exit 0 in every state (cmd/tailscale/cli/status.go:76-102);
* a daemon that does not answer: exit 1 with "failed to connect to local tailscaled …"
  (cmd/tailscale/cli/diag.go:27-64);
* ``set`` as a non-operator: exit 1, ``Access denied: checkprefs access denied`` and the sudo hint
  (client/local/local.go:170-173, cmd/tailscale/cli/cli.go:167-170);
* an unknown flag: Go's flag package, ``flag provided but not defined: -relay-server-port``
  (go1.26.8 src/flag/flag.go, FlagSet.parseOne).

Each call is appended to ``calls.log`` so tests can see what the product ran.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATES = ("Running", "NeedsLogin", "Stopped", "NeedsMachineAuth")


@dataclass
class CliScenario:
    """How the stand-in behaves."""

    state: str = "Running"
    version: str = "1.102.5"
    daemon_down: bool = False
    garbage: bool = False
    sleep: float = 0.0
    access_denied: bool = False
    no_relay_flags: bool = False
    tags: list[str] = field(default_factory=list)


SCRIPT = r"""#!__PYTHON__
import json, sys, time, os
S = json.loads(__SCENARIO__)
args = sys.argv[1:]
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "calls.log"), "a") as log:
    log.write(json.dumps(args) + "\n")
if S["sleep"]:
    time.sleep(S["sleep"])
sockets = [a.split("=", 1)[1] for a in args if a.startswith("--socket=")]
args = [a for a in args if not a.startswith("--socket")]
cmd = args[0] if args else ""
def fail(text):
    sys.stderr.write(text + "\n"); sys.exit(1)
# the real CLI dials --socket: nothing there reads exactly like a daemon that is down
no_socket = any(not os.path.exists(p) for p in sockets)
if (S["daemon_down"] or no_socket) and cmd in ("version", "status", "set", "get"):
    fail("failed to connect to local tailscaled; it doesn't appear to be running")
long = S["version"] + "-t0123456789ab-g0123456789ab"
if S["garbage"]:
    print("<html>not json</html>"); sys.exit(0)
if cmd == "version":
    meta = {"majorMinorPatch": S["version"], "short": S["version"], "long": long, "cap": 142}
    if "--daemon" in args:
        meta["daemonLong"] = long
    print(json.dumps(meta, indent="\t")); sys.exit(0)
if cmd == "status":
    running = S["state"] == "Running"
    key = "nodekey:" + ("ab" * 32 if running else "00" * 32)
    self = {"ID": "n1" if running else "", "PublicKey": key, "HostName": "homeserver",
            "DNSName": "homeserver.tail1234.ts.net." if running else "", "OS": "linux",
            "TailscaleIPs": ["100.101.102.103", "fd7a:115c:a1e0::1"] if running else None,
            "Online": running}
    if S["tags"]:
        self["Tags"] = S["tags"]
    peer_key = "nodekey:" + "cd" * 32
    status = {"Version": long, "TUN": False, "BackendState": S["state"],
              "TailscaleIPs": self["TailscaleIPs"], "Self": self,
              "MagicDNSSuffix": "tail1234.ts.net" if running else "",
              "CurrentTailnet": {"Name": "example.com", "MagicDNSSuffix": "tail1234.ts.net",
                                 "MagicDNSEnabled": True} if running else None,
              "Peer": {peer_key: {"PublicKey": peer_key, "HostName": "laptop",
                                  "DNSName": "laptop.tail1234.ts.net.",
                                  "TailscaleIPs": ["100.64.0.2"]}} if running else None}
    sys.stdout.write(json.dumps(status, indent=2)); sys.exit(0)
if cmd == "set":
    if S["no_relay_flags"] and any(a.startswith("--relay-server") for a in args):
        flag = next(a for a in args if a.startswith("--relay-server")).split("=")[0][1:]
        sys.stderr.write(f"flag provided but not defined: {flag}\n"); sys.exit(2)
    if S["access_denied"]:
        hint = "Use 'sudo tailscale " + " ".join(sys.argv[1:]) + "'."
        fail("Access denied: checkprefs access denied\n\n" + hint +
             "\nTo not require root, use 'sudo tailscale set --operator=$USER' once.")
    sys.exit(0)
fail("stand-in: unsupported command " + " ".join(args))
"""


def install_cli(directory: Path, scenario: CliScenario) -> Path:
    """Write the stand-in as ``directory/tailscale`` (put ``directory`` first on PATH)."""
    directory.mkdir(parents=True, exist_ok=True)
    text = SCRIPT.replace("__PYTHON__", sys.executable).replace(
        "__SCENARIO__", repr(json.dumps(scenario.__dict__))
    )
    path = directory / "tailscale"
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def calls(directory: Path) -> list[list[str]]:
    """Every argv the stand-in was called with, in order."""
    log = directory / "calls.log"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def on_path(directory: Path) -> dict[str, Any]:
    """An environment with ``directory`` first on PATH."""
    return {**os.environ, "PATH": f"{directory}:{os.environ.get('PATH', '')}"}
