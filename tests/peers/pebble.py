"""Pebble (Let's Encrypt's RFC 8555 test CA, ``apt-get install pebble``) on 127.0.0.1.

``pebble_ca(tmpdir)`` writes a config with free loopback ports and a trustme certificate for
the ACME endpoint itself, starts ``pebble -strict=false`` with ``PEBBLE_VA_ALWAYS_VALID=1``
(authorizations are granted without looking at DNS or HTTP: no public DNS exists here),
``PEBBLE_VA_NOSLEEP=1`` and ``PEBBLE_WFE_NONCEREJECT=0`` (no random badNonce, so no flakes), and
yields where to find it. Pebble makes a new root (and intermediate) every start:
:func:`pebble_root_pem` fetches the root from the management API (``/roots/0``).

``dns_server="IP:PORT"`` makes pebble really validate dns-01: no ``PEBBLE_VA_ALWAYS_VALID``, and
``-dnsserver`` points its validation authority at a DNS server the test runs (pebble asks it for
``_acme-challenge.<name>`` TXT, RFC 8555 §8.4). ``netns`` runs pebble inside that network
namespace (its loopback is the namespace's); ``validity_seconds`` sets
``certificateValidityPeriod`` (pebble 2.4 config; its default is five years).

A missing binary is a failure, never a skip (docs/testing.md).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import trustme

from tests.peers.netns import run_in_netns
from tests.peers.ports import free_port

HOST = "127.0.0.1"


class PebbleCa(NamedTuple):
    """Unpacks as ``(directory_url, server_ca_file, management_url)``."""

    directory_url: str  # https://127.0.0.1:PORT/dir
    server_ca_file: str  # trust anchor for pebble's own HTTPS endpoints (not for issued certs)
    management_url: str  # https://127.0.0.1:PORT (roots, intermediates, ...)


def _get(url: str, ca_file: str, timeout: float = 2.0) -> bytes:
    ctx = ssl.create_default_context(cafile=ca_file)
    # No proxy handler: pebble is on loopback, whatever the environment says.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
    )
    with opener.open(url, timeout=timeout) as resp:
        body: bytes = resp.read()
        return body


def pebble_root_pem(management_url: str, server_ca_file: str) -> bytes:
    """The root that signed this pebble run's issuing intermediate (PEM)."""
    pem = _get(f"{management_url}/roots/0", server_ca_file)
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise RuntimeError(f"pebble /roots/0 returned no PEM certificate: {pem[:200]!r}")
    return pem


@contextmanager
def pebble_ca(
    tmpdir: str | Path,
    *,
    startup_timeout: float = 10.0,
    dns_server: str | None = None,
    netns: str | None = None,
    validity_seconds: int | None = None,
) -> Iterator[PebbleCa]:
    """Start pebble on free 127.0.0.1 ports; stop (kill) it on exit (see the module docstring)."""
    binary = shutil.which("pebble")
    if binary is None:
        raise RuntimeError("pebble is not installed (pebble not on PATH): apt-get install pebble")
    d = Path(tmpdir)
    d.mkdir(parents=True, exist_ok=True)
    server_ca = trustme.CA()
    server_cert = server_ca.issue_cert(HOST, "localhost")
    server_ca.cert_pem.write_to_path(str(d / "pebble-server-ca.pem"))
    server_cert.cert_chain_pems[0].write_to_path(str(d / "pebble-server.pem"))
    server_cert.private_key_pem.write_to_path(str(d / "pebble-server.key"))

    def port() -> int:
        if netns is not None:
            return run_in_netns(netns, lambda: free_port((HOST,), socket.SOCK_STREAM))
        return free_port((HOST,), socket.SOCK_STREAM)

    acme_port, mgmt_port = port(), port()
    while mgmt_port == acme_port:
        mgmt_port = port()
    config = {
        "pebble": {
            "listenAddress": f"{HOST}:{acme_port}",
            "managementListenAddress": f"{HOST}:{mgmt_port}",
            "certificate": str(d / "pebble-server.pem"),
            "privateKey": str(d / "pebble-server.key"),
            # Only used to validate challenges, which PEBBLE_VA_ALWAYS_VALID skips.
            "httpPort": port(),
            "tlsPort": port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
    }
    if validity_seconds is not None:
        config["pebble"]["certificateValidityPeriod"] = validity_seconds
    (d / "pebble-config.json").write_text(json.dumps(config, indent=2))
    env = {
        **os.environ,
        "PEBBLE_VA_NOSLEEP": "1",
        # pebble rejects 5% of good nonces by default; acme retries a badNonce only once.
        "PEBBLE_WFE_NONCEREJECT": "0",
    }
    argv = [binary, "-config", str(d / "pebble-config.json"), "-strict=false"]
    if dns_server is None:
        env["PEBBLE_VA_ALWAYS_VALID"] = "1"
    else:
        argv += ["-dnsserver", dns_server]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]

    def get(url: str) -> bytes:
        if netns is not None:
            return run_in_netns(netns, lambda: _get(url, ca_file, timeout=0.5))
        return _get(url, ca_file, timeout=0.5)

    log_path = d / "pebble.log"
    directory_url = f"https://{HOST}:{acme_port}/dir"
    management_url = f"https://{HOST}:{mgmt_port}"
    ca_file = str(d / "pebble-server-ca.pem")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=d,
        )
        try:
            deadline = time.monotonic() + startup_timeout
            while True:
                try:
                    get(directory_url)
                    get(f"{management_url}/roots/0")
                    break
                except (OSError, urllib.error.URLError):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        text = log_path.read_text(errors="replace")[-2000:]
                        raise RuntimeError(
                            f"pebble did not answer on {directory_url} (exit {proc.poll()}):\n"
                            f"{text}"
                        ) from None
                    time.sleep(0.05)
            yield PebbleCa(directory_url, ca_file, management_url)
        finally:
            proc.kill()
            proc.wait()
