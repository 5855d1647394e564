"""A real headscale control plane (github.com/juanfont/headscale, pinned in tests/tools).

Every key of the config is one of ``config-example.yaml`` at v0.29.3
(github.com/juanfont/headscale@v0.29.3/config-example.yaml, cited by line below); nothing here
reaches beyond this machine:

* ``server_url`` / ``listen_addr`` (lines 13, 19): plain HTTP on an address the node namespaces
  reach (the root namespace's LAN address); TS2021 (Noise) runs inside it (``noise``, line 55).
* ``metrics_listen_addr: ""`` disables the debug listener (lines 21-24); ``grpc_listen_addr`` on
  loopback (line 34) — remote gRPC only starts with TLS or ``grpc_allow_insecure``
  (hscontrol/app.go:788), so the CLI uses ``unix_socket`` (line 378).
* ``derp`` (lines 91-149): embedded DERP off, ``urls: []`` (no Tailscale regions), ``paths`` with
  one YAML file holding only the test's regions (format: derp-example.yaml; parsed with yaml.v3
  into tailcfg.DERPMap, hscontrol/derp/derp.go:24-41), no auto update.
* ``disable_check_updates: true`` (line 152): no call to GitHub.
* ``database`` sqlite in the temp dir (lines 194-223); ``policy`` mode file with a HuJSON path
  (lines 294-299); ``dns`` MagicDNS with a test base domain and no nameservers, local DNS kept
  (lines 321-364; ``override_local_dns`` true would require nameservers, types/config.go:618);
  ``logtail.enabled: false`` (line 459).
* ``prefixes`` are the example's (lines 75-84).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.peers.daemons import Daemon, DaemonError, run, start, wait_until
from tests.peers.tools import tool

BASE_DOMAIN = "tailnet.test"


def derp_map_yaml(derp_map: dict[str, Any]) -> str:
    """tailcfg.DERPMap JSON (``{"Regions": {"900": …}}``) → the YAML headscale's ``derp.paths``
    reads: yaml.v3 matches lower-cased Go field names (derp-example.yaml) and int region keys."""

    def lower(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                (int(k) if str(k).isdigit() else str(k).lower()): lower(v) for k, v in value.items()
            }
        if isinstance(value, list):
            return [lower(v) for v in value]
        return value

    return flow_yaml(lower(derp_map)) + "\n"


def flow_yaml(value: Any) -> str:
    """YAML flow style (JSON with bare int keys): yaml.v3 must see region ids as ints."""
    if isinstance(value, dict):
        items = (
            f"{k if isinstance(k, int) else json.dumps(k)}: {flow_yaml(v)}"
            for k, v in value.items()
        )
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(flow_yaml(v) for v in value) + "]"
    return json.dumps(value)


def config_yaml(
    workdir: Path,
    listen_ip: str,
    port: int,
    grpc_port: int,
    derp_file: Path,
    policy: Path,
    base_domain: str = BASE_DOMAIN,
    *,
    derp_update_frequency: str | None = None,
    metrics_listen_addr: str = "",
) -> str:
    """``derp_update_frequency`` turns on headscale's periodic re-read of ``derp.paths``
    (hscontrol/app.go:286-373); ``metrics_listen_addr`` its debug listener (/debug/derp)."""
    host = f"[{listen_ip}]" if ":" in listen_ip else listen_ip
    config = {
        "server_url": f"http://{host}:{port}",
        "listen_addr": f"{host}:{port}",
        "metrics_listen_addr": metrics_listen_addr,
        "grpc_listen_addr": f"127.0.0.1:{grpc_port}",
        "grpc_allow_insecure": False,
        "noise": {"private_key_path": str(workdir / "noise_private.key")},
        "prefixes": {
            "v4": "100.64.0.0/10",
            "v6": "fd7a:115c:a1e0::/48",
            "allocation": "sequential",
        },
        "derp": {
            "server": {"enabled": False},
            "urls": [],
            "paths": [str(derp_file)],
            "auto_update_enabled": derp_update_frequency is not None,
            "update_frequency": derp_update_frequency or "3h",
        },
        "disable_check_updates": True,
        "node": {"expiry": 0, "ephemeral": {"inactivity_timeout": "30m"}},
        "database": {
            "type": "sqlite",
            "sqlite": {"path": str(workdir / "db.sqlite"), "write_ahead_log": True},
        },
        "log": {"level": "info", "format": "text"},
        "policy": {"mode": "file", "path": str(policy)},
        "dns": {
            "magic_dns": True,
            "base_domain": base_domain,
            "override_local_dns": False,
            "nameservers": {"global": [], "split": {}},
            "search_domains": [],
            "extra_records": [],
        },
        "unix_socket": str(workdir / "headscale.sock"),
        "unix_socket_permission": "0770",
        "logtail": {"enabled": False},
        "taildrop": {"enabled": False},
        "auto_update": {"enabled": False},
    }
    return flow_yaml(config) + "\n"  # JSON is YAML; viper parses .yaml with yaml.v3


@dataclass
class Headscale:
    url: str
    config_file: Path
    daemon: Daemon

    def cli(self, *args: str, daemons: Sequence[Daemon] = ()) -> Any:
        """``headscale -c CONFIG ARGS -o json`` over the unix socket; the parsed JSON."""
        done = run(
            [str(tool("headscale")), "-c", str(self.config_file), *args, "-o", "json"],
            daemons=[self.daemon, *daemons],
        )
        try:
            return json.loads(done.stdout)
        except ValueError:
            raise DaemonError(
                f"headscale {' '.join(args)}: not JSON: {done.stdout!r}\n{self.daemon.describe()}"
            ) from None

    def create_user(self, name: str) -> int:
        return int(self.cli("users", "create", name)["id"])

    def preauth_key(self, user_id: int, tags: Sequence[str] = (), reusable: bool = True) -> str:
        args = ["preauthkeys", "create", "--user", str(user_id), "--expiration", "1h"]
        if reusable:
            args.append("--reusable")
        if tags:
            args += ["--tags", ",".join(tags)]
        return str(self.cli(*args)["key"])

    def nodes(self) -> list[dict[str, Any]]:
        return list(self.cli("nodes", "list") or [])

    def log(self) -> str:
        return self.daemon.log()

    def stop(self) -> None:
        self.daemon.stop()


# No proxy from the environment may see a probe of a LAN address.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def healthy(url: str) -> bool:
    """GET /health answers 200 {"status":"pass"} once the database is up (handlers.go:218)."""
    with _DIRECT.open(f"{url}/health", timeout=2) as resp:
        return bool(resp.status == 200 and json.load(resp).get("status") == "pass")


def start_headscale(
    workdir: Path,
    *,
    listen_ip: str,
    port: int,
    grpc_port: int,
    derp_map: dict[str, Any] | None,
    policy: str,
    base_domain: str = BASE_DOMAIN,
    timeout: float = 30.0,
    derp_text: str | None = None,
    derp_update_frequency: str | None = None,
    metrics_listen_addr: str = "",
    prefix: Sequence[str] = (),
) -> Headscale:
    """Write config, DERP map (``derp_text`` verbatim instead of ``derp_map``) and policy; start
    ``headscale serve`` (``prefix``: e.g. ``ip netns exec NS``, so its listeners are that
    namespace's); wait for /health.

    headscale shuffles the nodes of every region with a generator seeded by ``base_domain``
    (hscontrol/derp/derp.go:134-191), so a multi-node region's order depends on it."""
    workdir.mkdir(parents=True, exist_ok=True)
    derp_file = workdir / "derp.yaml"
    derp_file.write_text(derp_text if derp_text is not None else derp_map_yaml(derp_map or {}))
    policy_file = workdir / "policy.hujson"
    policy_file.write_text(policy)
    config_file = workdir / "config.yaml"
    config_file.write_text(
        config_yaml(
            workdir,
            listen_ip,
            port,
            grpc_port,
            derp_file,
            policy_file,
            base_domain,
            derp_update_frequency=derp_update_frequency,
            metrics_listen_addr=metrics_listen_addr,
        )
    )
    daemon = start(
        "headscale",
        [*prefix, str(tool("headscale")), "-c", str(config_file), "serve"],
        workdir / "headscale.log",
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(workdir)},
        cwd=workdir,
    )
    host = f"[{listen_ip}]" if ":" in listen_ip else listen_ip
    hs = Headscale(f"http://{host}:{port}", config_file, daemon)
    try:
        wait_until("headscale /health", lambda: healthy(hs.url), timeout, [daemon], 0.2)
    except BaseException:
        daemon.stop()
        raise
    return hs
