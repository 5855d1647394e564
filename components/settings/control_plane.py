"""Rules of the control plane: Tailscale (the default) or headscale (docs/guide/headscale.md).

With headscale the region goes into a DERP map YAML file on the headscale host and derper admits
clients through headscale's ``/verify``. Before any resource the headscale host is asked (through
the injected reader, ``components/headscale.py`` in the program) for headscale's config: the file
must be in ``derp.paths`` and headscale must load it within a bounded time
(docs/upstream/headscale.md#derp-paths, #derp-refresh).
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

from components import headscale
from components.host import HostReadError, can_read_host
from components.settings import keys
from components.settings.checks import check_docker_host
from components.settings.collector import Collector
from components.settings.keys import CONTROL_PLANES
from components.settings.model import ControlPlane, Docker, Headscale

if TYPE_CHECKING:
    from components.settings.environment import Environment

#: The keys that only mean something with ``controlPlane: headscale``.
HEADSCALE_KEYS: Final = (
    "headscaleUrl",
    "headscaleHost",
    "headscaleConfig",
    "headscaleDerpFile",
    "headscaleReload",
    "headscalePolicyReload",
    "headscaleDebugAddress",
)


class HeadscaleReader(Protocol):
    """Read-only questions to the headscale host; each may raise ``HostReadError``."""

    def read_file(self, path: str) -> headscale.FileState: ...


HeadscaleReaders = Callable[[str], HeadscaleReader]


def check_headscale_url(value: str) -> str | None:
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        return "must be headscale's server_url, e.g. https://hs.example.com"
    if parsed.query or parsed.fragment or parsed.path.rstrip("/"):
        return "must be headscale's server_url without a path (derper appends /verify)"
    return None


def check_host_path(value: str) -> str | None:
    if not value.startswith("/") or os.path.normpath(value) != value:
        return "must be an absolute, normalized path on the headscale host"
    return None


def _is_loopback_url(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_debug_address(value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return "must be host:port (headscale's metrics_listen_addr as seen on its host)"
    return None


def control_plane(
    c: Collector,
    docker: Docker,
    docker_ok: bool,
    readers: HeadscaleReaders | None,
    env: Environment,
) -> ControlPlane:
    kind = c.choice("controlPlane", CONTROL_PLANES)
    if kind == "tailscale":
        for key in HEADSCALE_KEYS:
            # Pulumi hands the program every declared key with its default: only another
            # value is a choice the user made.
            if c.optional(key) not in (None, keys.default_text(key)):
                c.fail(
                    key,
                    c.optional(key),
                    "set, but home-derp:controlPlane is tailscale: set controlPlane headscale, "
                    "or remove the key",
                )
        return ControlPlane()
    url = (c.optional("headscaleUrl") or "").rstrip("/")
    if not url:
        c.fail("headscaleUrl", None, "required with controlPlane=headscale: its server_url")
    elif c.checked("headscaleUrl", url, check_headscale_url(url)):
        if url.startswith("http:"):
            c.warn(
                f"home-derp:headscaleUrl = {url!r}: derper asks headscale's /verify over plain "
                "HTTP; anyone on the path can answer it and admit every client. Use https"
            )
        if docker.network_mode == "bridge" and _is_loopback_url(url):
            # derper asks /verify from its own network namespace in bridge mode, where loopback
            # is the container's: fail-closed, it would reject every client.
            c.fail(
                "headscaleUrl",
                url,
                "is a loopback address, but with networkMode bridge derper has its own network "
                "namespace and its loopback is not the host's: every client would be rejected",
                "use headscale's server_url as clients reach it, or networkMode host",
            )
    host = _host(c, docker, docker_ok)
    config, derp_file = c.text("headscaleConfig"), c.text("headscaleDerpFile")
    c.checked("headscaleConfig", config, check_host_path(config))
    c.checked("headscaleDerpFile", derp_file, check_host_path(derp_file))
    reload = _command(c, "headscaleReload", c.optional("headscaleReload"))
    policy_reload = _command(c, "headscalePolicyReload", c.text("headscalePolicyReload"))
    debug = c.text("headscaleDebugAddress")
    c.checked("headscaleDebugAddress", debug, check_debug_address(debug))
    read: headscale.HeadscaleConfig | None = None
    readable = not c.failed("headscaleConfig") and not c.failed("headscaleDerpFile")
    if host and readers is not None and readable:
        read = _read_config(c, readers(host), host, url, config, derp_file, bool(reload), env)
    return ControlPlane(
        "headscale",
        Headscale(
            url,
            host or "",
            config,
            derp_file,
            reload,
            debug,
            refresh_seconds=headscale.refresh_seconds(read) if read else None,
            policy_reload=policy_reload,
            config_read=read is not None,
            policy_file=headscale.policy_file(read, config) if read else None,
        ),
    )


def _command(c: Collector, key: str, raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return ()
    try:
        return tuple(shlex.split(raw))
    except ValueError as exc:
        c.fail(key, raw, f"not a command line: {exc}")
        return ()


def _host(c: Collector, docker: Docker, docker_ok: bool) -> str | None:
    explicit = c.optional("headscaleHost")
    if explicit is None:
        if docker_ok and can_read_host(docker.host):
            return docker.host
        if docker_ok:
            c.fail(
                "headscaleHost",
                None,
                f"required: the relay's dockerHost {docker.host} is a bare Docker API, so the "
                "headscale host must be named (unix:// or ssh://user@host)",
            )
        return None
    why = check_docker_host(explicit)
    if why is None and not can_read_host(explicit):
        why = "must be unix:// (this machine) or ssh://user@host[:port]: a shell is needed"
    return explicit if c.checked("headscaleHost", explicit, why) else None


def _read_config(
    c: Collector,
    reader: HeadscaleReader,
    host: str,
    url: str,
    config_path: str,
    derp_file: str,
    has_reload: bool,
    env: Environment,
) -> headscale.HeadscaleConfig | None:
    """headscale's config as read on its host: the file listed, a bounded reload."""
    fail = c.warn if env.health_run else None
    try:
        state = reader.read_file(config_path)
        config = headscale.parse_config(state.text) if state.text is not None else None
    except (HostReadError, headscale.HeadscaleError) as exc:
        message = f"cannot read headscale's config {config_path} on {host}: {exc}"
        if fail:
            fail(f"health run: {message}")
        else:
            c.fail_on_host("headscaleConfig", config_path, message)
        return None
    if config is None:
        c.fail_on_host(
            "headscaleConfig",
            config_path,
            f"no such file on {host}: point home-derp:headscaleConfig at headscale's config.yaml",
        )
        return None
    listed = headscale.listed_problem(config, derp_file)
    if listed:
        c.fail_on_host("headscaleDerpFile", derp_file, listed)
    refresh = headscale.refresh_problem(config, has_reload)
    if refresh:
        c.fail_on_host("headscaleReload", "", refresh)
    if config.server_url and url and config.server_url.rstrip("/") != url:
        c.warn(
            f"home-derp:headscaleUrl = {url!r}, but headscale's server_url is "
            f"{config.server_url!r}: derper must reach /verify at an address that serves it"
        )
    return config
