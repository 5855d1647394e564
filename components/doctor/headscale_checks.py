"""Rows about headscale as the control plane (``controlPlane: headscale``), read-only.

* ``headscale.reachable`` — ``GET <headscaleUrl>/health`` from this machine answers 200
  ``{"status": "pass"}`` (headscale@v0.29.3/hscontrol/handlers.go:218);
* ``headscale.config`` — headscale's config on its host lists the DERP map file in ``derp.paths``
  and headscale loads it within a bounded time (docs/upstream/headscale.md#derp-paths,
  #derp-refresh);
* ``headscale.file`` — the file is a DERP map home-derp can edit and the user home-derp connects
  as may replace it (write access to the file and its directory, for the rename);
* ``headscale.verify`` — derper's admission URL answers from the relay host: ``POST /verify``
  with a zero key answers ``{"Allow": false}`` (docs/upstream/headscale.md#verify). Over
  ``ssh://`` the relay host opens the TCP connection itself (``ssh -W``, OpenSSH's stdio
  forwarding), so what is tested is that host's route, DNS and firewall; for ``https`` the row
  proves the TCP connection and that a TLS server answers there.

Nothing is written: the file is read, ``test -w`` asked, ``/verify`` asked about a key no node has.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from typing import Final

from components import headscale, headscale_derpmap
from components.doctor.model import Check, blocked, failed, not_checked, passed
from components.host import HostChannel, HostReadError
from components.settings import RelaySettings
from components.settings.model import Headscale

#: ``tailcfg.DERPAdmitClientRequest`` for the zero key: no node has it, so the answer is "no".
PROBE_BODY: Final = json.dumps(
    {"NodePublic": "nodekey:" + "0" * 64, "Source": "127.0.0.1"}
).encode()
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def checks(settings: RelaySettings, relay_host: str | None, timeout: float) -> list[Check]:
    """Every headscale row (empty for a Tailscale stack)."""
    hs = settings.control_plane.headscale
    if hs is None:
        return []
    reachable = reachable_check(hs.url, timeout)
    config, derp_ok = config_check(hs, timeout)
    return [
        reachable,
        config,
        file_check(hs, timeout) if derp_ok else blocked("headscale.file", config),
        verify_check(hs.verify_url, relay_host, timeout),
    ]


def reachable_check(url: str, timeout: float) -> Check:
    if not url:
        return not_checked("headscale.reachable", "home-derp:headscaleUrl is not set (settings)")
    try:
        with _DIRECT.open(f"{url}/health", timeout=timeout) as resp:
            body = json.load(resp)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return failed(
            "headscale.reachable",
            f"headscale does not answer at {url}/health: {exc}",
            "check home-derp:headscaleUrl (headscale's server_url) and that headscale runs",
        )
    if body.get("status") != "pass":
        return failed(
            "headscale.reachable",
            f"{url}/health answered {body}",
            "headscale's database is not ready: read its log",
        )
    return passed("headscale.reachable", f"headscale answers at {url}")


def config_check(hs: Headscale, timeout: float) -> tuple[Check, bool]:
    """(row, whether the file rows can go on)."""
    host = headscale.HeadscaleHost(hs.host, timeout=timeout) if hs.host else None
    if host is None:
        return not_checked("headscale.config", "home-derp:headscaleHost is invalid"), False
    try:
        state = host.read_file(hs.config)
        if state.text is None:
            return failed(
                "headscale.config",
                f"no {hs.config} on {host.where()}",
                "set home-derp:headscaleConfig to headscale's config.yaml",
            ), False
        config = headscale.parse_config(state.text)
    except (HostReadError, headscale.HeadscaleError) as exc:
        return failed(
            "headscale.config",
            f"cannot read headscale's config: {exc}",
            "home-derp reads it over home-derp:headscaleHost (unix:// or ssh://)",
        ), False
    listed = headscale.listed_problem(config, hs.derp_file)
    if listed:
        return failed(
            "headscale.config",
            f"{hs.config} does not list {hs.derp_file} in derp.paths",
            listed,
            f"derp.paths: {list(config.derp_paths)}",
        ), False
    refresh = headscale.refresh_problem(config, bool(hs.reload))
    if refresh:
        return failed(
            "headscale.config", "headscale would not load the file in time", refresh
        ), True
    how = (
        f"restarted by `{' '.join(hs.reload)}`"
        if hs.reload
        else f"re-read every {config.update_frequency_text}"
    )
    return passed("headscale.config", f"headscale reads {hs.derp_file} (derp.paths), {how}"), True


def file_check(hs: Headscale, timeout: float) -> Check:
    host = headscale.HeadscaleHost(hs.host, timeout=timeout)
    try:
        problem = host.writable_problem(hs.derp_file)
        state = host.read_file(hs.derp_file)
    except (HostReadError, headscale.HeadscaleError) as exc:
        return failed("headscale.file", f"cannot check {hs.derp_file}: {exc}", str(exc))
    if problem:
        return failed(
            "headscale.file",
            f"{hs.derp_file} cannot be replaced on {host.where()}: {problem}",
            "home-derp writes a temporary file beside it and renames it over the file: give the "
            "user of home-derp:headscaleHost write access to both",
        )
    if state.text is None:
        return passed("headscale.file", f"{hs.derp_file} does not exist yet; it can be created")
    try:
        regions = headscale_derpmap.regions_summary(state.text)
    except headscale_derpmap.DerpFileError as exc:
        return failed(
            "headscale.file",
            f"{hs.derp_file} is not a DERP map home-derp can edit: {exc}",
            "fix the file (headscale's derp-example.yaml shows the format)",
        )
    return passed("headscale.file", f"{hs.derp_file} is writable; regions {regions or 'none'}")


def verify_check(url: str, relay_host: str | None, timeout: float) -> Check:
    if not url or url == "/verify":
        return not_checked("headscale.verify", "home-derp:headscaleUrl is not set (settings)")
    if relay_host is not None and relay_host.startswith("ssh://"):
        return _verify_from_ssh_host(url, relay_host, timeout)
    request = urllib.request.Request(url, data=PROBE_BODY, method="POST")
    try:
        with _DIRECT.open(request, timeout=timeout) as resp:
            answer = json.load(resp)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return failed(
            "headscale.verify",
            f"derper's admission URL {url} does not answer from the relay host: {exc}",
            "derper would reject EVERY client (it fails closed): make headscale reachable at "
            "home-derp:headscaleUrl from the relay host",
        )
    if answer != {"Allow": False}:
        return failed(
            "headscale.verify",
            f"{url} answered {answer} for a key no node has",
            "home-derp:headscaleUrl must be headscale's own server_url",
        )
    return passed("headscale.verify", f"{url} answers from the relay host (a random key: denied)")


def _verify_from_ssh_host(url: str, relay_host: str, timeout: float) -> Check:
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    argv = HostChannel(relay_host, timeout=timeout).argv(["true"])
    cut = argv.index("--")
    forward = [*argv[:cut], "-W", target, *argv[cut:-1]]
    if parts.scheme == "https":
        hello = _client_hello(host)
    else:
        hello = (
            f"POST {parts.path or '/'} HTTP/1.0\r\nHost: {parts.netloc}\r\n"
            f"Content-Length: {len(PROBE_BODY)}\r\n\r\n"
        ).encode() + PROBE_BODY
    try:
        done = subprocess.run(
            forward, input=hello, capture_output=True, timeout=timeout + 2, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return failed(
            "headscale.verify", f"cannot ask the relay host to connect to {target}: {exc}", ""
        )
    said = done.stderr.decode("utf-8", "replace").strip()
    if done.returncode == 255 or not done.stdout:
        return failed(
            "headscale.verify",
            f"the relay host cannot open {target} (derper's admission URL {url}): {said}",
            "derper would reject EVERY client (it fails closed): let the relay host reach "
            "headscale (DNS, route, firewall)",
        )
    if parts.scheme == "http" and b'"Allow":false' not in done.stdout.replace(b" ", b""):
        head = done.stdout.split(b"\r\n", 1)[0].decode("latin-1")
        return failed(
            "headscale.verify",
            f"{url} answered {head!r} from the relay host, not headscale's /verify",
            "home-derp:headscaleUrl must be headscale's own server_url",
        )
    return passed("headscale.verify", f"the relay host reaches {target} ({url})")


def _client_hello(host: str) -> bytes:
    """A TLS ClientHello for ``host``: a TLS server answers it (ServerHello or an alert)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=host)
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()
