"""Rules of what runs as derper: the source build at the host tailscaled's release or a pinned
image, client verification through the host's tailscaled, and who derper runs as
(docs/architecture.md, "derper", "The relay host").
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from components import image_reference, naming, tailscaled
from components.host import HostReadError, can_read_host
from components.settings.checks import check_go_proxy, check_image, check_socket_path
from components.settings.collector import Collector
from components.settings.keys import FALLBACK_TAILSCALE_VERSION, NetworkMode, full_name
from components.settings.model import Derper, DerperBuild, Docker, Ports
from components.tailscaled import TailscaledError, TailscaledFacts

if TYPE_CHECKING:
    from components.settings.environment import Environment, HostProbe

#: The user of the built image (components/derper/Dockerfile ``USER``, distroless's "nonroot").
DERPER_USER: Final = "65532:65532"
ROOT_USER: Final = "0:0"
#: The one capability derper may hold: binding a port below 1024.
NET_BIND_SERVICE: Final = "NET_BIND_SERVICE"
#: Host directories a socket must not share with derper: derper gets the socket's directory, and
#: these hold far more than one socket (Docker's own socket sits in /run; /tmp is everyone's).
SHARED_DIRECTORIES: Final = frozenset(
    {"/", "/tmp", "/var/tmp", "/run", "/var/run", "/var", "/dev", "/dev/shm", "/etc", "/home",
     "/root", "/usr", "/opt", "/srv", "/mnt", "/media"}
)  # fmt: skip


@dataclass(frozen=True)
class Privileges:
    """Who derper runs as and what it may gain: the one home of that decision
    (``components/container.py`` applies it, the policy pack checks it;
    docs/guide/what-derper-can-touch.md explains it)."""

    user: str
    """``uid:gid``; uid 0 only for a pinned image, which never gets tailscaled's socket."""
    capabilities: tuple[str, ...]
    """Kept in the bounding set after dropping ALL. The built binary carries the file
    capability ``cap_net_bind_service=+ep``, and the kernel refuses to execute such a binary
    when the bounding set lacks it (docs/upstream/capabilities.md#bounding-set-check), so the
    built image always keeps NET_BIND_SERVICE there."""
    no_new_privileges: bool
    """Off only where derper binds through its file capability, which no-new-privileges
    disables (docs/upstream/capabilities.md#no-new-privileges)."""
    file_capability: bool
    """derper binds a port below 1024 through its binary's file capability."""


def file_capability_needed(ports: Ports, network_mode: NetworkMode | str) -> bool:
    """A port below 1024 in the host's own network namespace: only a capability can bind it
    there. In bridge mode the container's own namespace lets every uid bind any port (Docker
    sets ``net.ipv4.ip_unprivileged_port_start=0`` in it:
    docs/upstream/capabilities.md#bridge-mode)."""
    return network_mode == "host" and ports.privileged


def derper_privileges(derper: Derper, ports: Ports, network_mode: NetworkMode | str) -> Privileges:
    """The built derper always runs as 65532; a pinned image runs as root (its entrypoint gives
    derper no ``-c``: docs/upstream/derper.md#key-file), only without the socket (settings refuse
    a pinned image with ``verifyClients``: :func:`least_privilege`)."""
    file_capability = file_capability_needed(ports, network_mode)
    if derper.build is None:
        adds = (NET_BIND_SERVICE,) if file_capability else ()
        return Privileges(ROOT_USER, adds, no_new_privileges=True, file_capability=False)
    return Privileges(
        DERPER_USER,
        (NET_BIND_SERVICE,),
        no_new_privileges=not file_capability,
        file_capability=file_capability,
    )


def socket_directory_problem(socket: str) -> str | None:
    """None when the socket's directory may be mounted into derper (it gets the whole
    directory: docs/upstream/localapi.md#socket-mode)."""
    directory = os.path.dirname(socket)
    if directory not in SHARED_DIRECTORIES:
        return None
    return (
        f"derper gets the socket's whole directory, and {directory} holds far more than "
        "tailscaled's socket (other programs' files and sockets): give tailscaled a directory "
        f"of its own, e.g. `tailscaled --socket=/run/tailscale/{os.path.basename(socket)}` "
        "(the tailscale container: TS_SOCKET=/run/tailscale/tailscaled.sock with /run/tailscale "
        "bind-mounted from the host), and point home-derp:tailscaleSocket there"
    )


def _read_relay_host(
    c: Collector, docker: Docker, probe: HostProbe, socket: str, health_run: bool
) -> tuple[TailscaledFacts | None, TailscaledError | None, bool | None]:
    """(facts, why they are missing, whether the socket exists) — channel failures recorded."""
    socket_exists = None
    try:
        socket_exists = probe.socket_exists(socket)
        return probe.tailscaled(socket), None, socket_exists
    except TailscaledError as exc:
        return None, exc, socket_exists
    except HostReadError as exc:
        message = f"cannot read the relay host's tailscaled: {exc}"
        if health_run:
            c.warn(f"health run: {message}; the relay is judged from outside only")
        else:
            c.fail_on_host("dockerHost", docker.host, message)
        return None, None, None


def _tailscale_version(
    c: Collector,
    facts: TailscaledFacts | None,
    error: TailscaledError | None,
    *,
    verify: bool,
    building: bool,
    readable: bool,
) -> str | None:
    """The release derper is built from: explicit, or the daemon's (``auto``)."""
    raw = c.text("tailscaleVersion")
    explicit = None
    if raw.lower() != "auto":
        explicit = tailscaled.parse_version(raw)
        if explicit is None:
            c.fail(
                "tailscaleVersion",
                raw,
                "must be auto or a release X.Y.Z such as 1.102.5 (a moving name like 'latest' or "
                "a partial '1.90' would build a derper that drifts from tailscaled)",
            )
            return None
    if facts is not None:
        if explicit is not None and explicit != facts.version and verify:
            c.fail_on_host(
                "tailscaleVersion",
                raw,
                f"the relay host's tailscaled runs {facts.version}; derper must be the same "
                "release or -verify-clients rejects every client (tailscale/tailscale#12617): "
                f"set auto or {facts.version}",
            )
        return explicit or facts.version
    if explicit is not None or not building:
        return explicit
    if not readable:
        c.fail(
            "tailscaleVersion",
            "auto",
            "auto reads the host's tailscaled, which a tcp:// dockerHost cannot: set the "
            "release explicitly (`tailscale version` on the relay host)",
        )
        return None
    if error is not None and not verify:
        c.warn(
            f"tailscaleVersion=auto: {error}; building derper {FALLBACK_TAILSCALE_VERSION} (no "
            "tailscaled is needed when derper does not verify clients through it)"
        )
        return FALLBACK_TAILSCALE_VERSION
    return None  # the tailscaled problem is reported by _derper


def _verification_problems(
    facts: TailscaledFacts | None,
    error: TailscaledError | None,
    socket: str,
    socket_exists: bool | None,
) -> list[tuple[str, str, str]]:
    """(key, value, problem) for every reason derper could not verify clients on this host."""
    problems = []
    if socket_exists is False:
        problems.append(("tailscaleSocket", socket, tailscaled.missing_socket_problem(socket)))
    if error is not None:
        # The CLI is pointed at that socket, so without one it can only say "not running":
        # then the socket is the cause to name (tailscaleSocket), not the daemon.
        if not problems:
            problems.append(
                ("verifyClients", "true", f"derper needs the relay host's tailscaled: {error}")
            )
        return problems
    if facts is not None and (problem := tailscaled.state_problem(facts)) is not None:
        problems.append(("verifyClients", "true", problem))
    return problems


def derper(
    c: Collector,
    docker: Docker,
    docker_ok: bool,
    probe: HostProbe | None,
    env: Environment,
    *,
    verify_url: str | None = None,
) -> tuple[Derper, TailscaledFacts | None]:
    """``verify_url`` (headscale's /verify) replaces the host's tailscaled as the verifier."""
    wants_verify = c.boolean("verifyClients")
    if not wants_verify:
        c.warn("verifyClients=false: anyone who learns the hostname can relay through it")
    # From here on `verify` means "through the host's tailscaled and its socket".
    verify = wants_verify and verify_url is None
    socket = c.text("tailscaleSocket")
    blank = c.raw.get("tailscaleSocket") is not None and c.optional("tailscaleSocket") is None
    # set but empty: refused rather than silently taken as the default path
    socket_ok = c.checked(
        "tailscaleSocket",
        "" if blank else socket,
        "must not be empty: remove the key for the default "
        f"{tailscaled.DEFAULT_SOCKET}, or give tailscaled's socket path"
        if blank
        else check_socket_path(socket),
    )
    if verify and socket_ok:  # its directory is mounted into derper only when verifying
        c.checked("tailscaleSocket", socket, socket_directory_problem(socket))
    image = c.optional("image")
    if image is not None:
        c.checked("image", image, check_image(image) or _derper_image_pin_problem(image))
    go_proxy = c.text("goProxy")
    c.checked("goProxy", go_proxy, check_go_proxy(go_proxy))
    build_image = c.text("buildImage")
    c.checked("buildImage", build_image, check_image(build_image))
    runtime_image = c.text("runtimeImage")
    if runtime_image != "scratch":
        c.checked("runtimeImage", runtime_image, check_image(runtime_image))

    readable = docker_ok and can_read_host(docker.host)
    facts, error, socket_exists = None, None, None
    if readable and socket_ok and probe is not None:
        facts, error, socket_exists = _read_relay_host(c, docker, probe, socket, env.health_run)
    if verify:
        for key, value, problem in _verification_problems(facts, error, socket, socket_exists):
            if env.health_run:  # a health run judges the relay from outside; it must not stop
                c.warn(f"health run: {full_name(key)}: {problem}")
            else:
                c.fail_on_host(key, value, problem)
    stale = None
    if verify and facts is not None and probe is not None and not env.health_run:
        stale = probe.runtime_directory_problem(socket)
    if stale is not None:
        c.warn(f"home-derp:tailscaleSocket = {socket!r}: {stale}")
    if verify and docker_ok and not can_read_host(docker.host):
        c.warn(
            "verifyClients=true with a tcp:// dockerHost: the relay host's tailscaled cannot be "
            "checked before up; validation proves admission afterwards"
        )
    version = _tailscale_version(
        c, facts, error, verify=verify, building=image is None, readable=readable
    )
    if image is not None:
        c.warn(
            f"image={image}: a pinned image replaces the source build; its derper must be the "
            "release of the host's tailscaled"
        )
        if wants_verify and verify_url is not None:
            # The images' entrypoints cannot pass -verify-client-url-fail-open=false.
            c.fail(
                "image",
                image,
                "with controlPlane=headscale derper must refuse clients while /verify is "
                "unreachable (-verify-client-url-fail-open=false), which a pinned image's "
                "entrypoint cannot pass: leave home-derp:image empty to build derper here",
            )
        return Derper(
            None, image, wants_verify, socket, build_image, _url(wants_verify, verify_url)
        ), facts
    build = None
    if version is not None:
        build = DerperBuild(version, go_proxy, build_image, runtime_image)
    name = naming.derper_image_name(version or FALLBACK_TAILSCALE_VERSION)
    return Derper(
        build, name, wants_verify, socket, build_image, _url(wants_verify, verify_url)
    ), facts


def _url(verify: bool, verify_url: str | None) -> str | None:
    return verify_url if verify else None


def _derper_image_pin_problem(image: str) -> str | None:
    if image_reference.pinned_by_digest(image):
        return None
    return (
        "derper's image is handed the tailscaled socket, so a tag that can be rebuilt under you "
        "is not enough: pin it by digest (name:tag@sha256:…; `docker buildx imagetools inspect "
        "name:tag` shows it), or leave home-derp:image empty to build derper from source here"
    )


def least_privilege(c: Collector, derper: Derper, ports: Ports, docker: Docker) -> None:
    """No configuration runs derper as uid 0 with tailscaled's socket: uid 0 gets write access
    to the LocalAPI (docs/upstream/localapi.md#write-permission), derper needs read only."""
    pinned = c.optional("image")  # (a build whose release is unknown has no build either)
    if pinned is not None and derper.uses_socket:
        c.fail(
            "image",
            pinned,
            "a pinned image runs derper as root (the common images' entrypoints give derper no "
            "-c, and derper then starts only as root), and tailscaled lets uid 0 change its "
            "prefs, log the node out or edit its serve config through the socket "
            "-verify-clients needs",
            fix="leave home-derp:image empty (the built derper verifies clients as uid 65532), "
            "or set home-derp:verifyClients false to run the image without tailscaled's socket "
            "(then anyone who learns the hostname can relay through it)",
        )
    privileges = derper_privileges(derper, ports, docker.network_mode)
    runtime = derper.build.runtime_image if derper.build is not None else None
    if privileges.file_capability and runtime not in (None, "scratch"):
        c.fail(
            "runtimeImage",
            runtime,
            f"with derpPort {ports.derp} / stunPort {ports.stun} below 1024 in host networking "
            "derper binds through its binary's file capability, which works only without "
            "no-new-privileges; another program in the image could then gain privileges (a "
            "set-user-ID root one would be uid 0, which tailscaled lets write)",
            fix="keep home-derp:runtimeImage scratch (derper is its only program), use ports of "
            "1024 or above, or networkMode bridge",
        )
