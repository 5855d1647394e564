"""The real ``derper`` (tailscale.com/cmd/derper, pinned in tests/tools/go-tools.txt).

Started as Tailscale documents it for a custom relay, the way the product's container runs it:
``-certmode manual`` with ``<certdir>/<hostname>.crt|.key`` (tailscale.com@v1.102.5/cmd/derper/
cert.go:117-121), a custom ``-a :PORT`` and ``-stun-port`` (the STUN listener binds the IP of
``-a``, cmd/derper/derper.go:59-61,181-184), ``-http-port -1`` (no port 80), and optionally
``-verify-clients`` with ``-socket`` pointing at a real tailscaled (derper.go:82,86). The server
key is the ``PrivateKey`` JSON field of the ``-c`` file, written on first start
(derper.go:112-160).

Its log is captured; the helpers below read the lines tests (and later the product) care about:

* a rejected client: ``derp: <addr>: client nodekey:<hex> rejected: <reason>`` — the error of
  ``accept`` (derp/derpserver/derpserver.go:1028-1029) logged by ``derpserver.go:676``; the
  reason is ``peer nodekey:<hex> not authorized (not found in local tailscaled)`` when tailscaled
  answers but does not know the key, and ``failed to query local tailscaled status for
  nodekey:<hex>: <error>`` when it cannot be asked (derpserver.go:1590-1601);
* an admitted client, with ``DERP_DEBUG_LOGS=true`` (derpserver.go:376): ``derp client
  <addr>[<5 base64 chars of the key>]: register single client`` (derpserver.go:772, the prefix is
  derpserver.go:1045, the short key types/key/util.go:105-120).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nacl.public import PrivateKey

from components.netcheck.admission import wait_for_evidence
from components.netcheck.derp import Admission, AdmissionEvidence, EvidenceSource
from tests.peers.daemons import Daemon, start, wait_until
from tests.peers.tools import tool

REJECTED = re.compile(
    r"derp: (?P<addr>\S+): client nodekey:(?P<client>[0-9a-f]{64}) rejected: (?P<reason>.*)$",
    re.M,
)
NOT_AUTHORIZED = "not authorized (not found in local tailscaled)"
QUERY_FAILED = "failed to query local tailscaled status for"


@dataclass(frozen=True)
class Rejection:
    addr: str  # the client's address as derper saw it
    client: str  # node key, 64 hex
    reason: str


def rejections(log: str) -> list[Rejection]:
    """Every client derper rejected, in log order."""
    return [Rejection(m["addr"], m["client"], m["reason"]) for m in REJECTED.finditer(log)]


def rejection_for(log: str, client_public_hex: str) -> Rejection | None:
    """derper's rejection line for the client key ``client_public_hex`` (64 hex), if any."""
    key = client_public_hex.lower()
    return next((r for r in rejections(log) if r.client == key), None)


CAUSES = (  # reason text (derpserver.go:1590-1601) → a stable token (netcheck's cause names)
    (NOT_AUTHORIZED, "not_authorized"),
    ("tailscaled version is too old", "version_skew"),
    (QUERY_FAILED, "tailscaled_unreachable"),
)


def cause_of(reason: str) -> str:
    """The netcheck AdmissionCause a rejection reason stands for ("unconfirmed": unknown)."""
    return next((cause for text, cause in CAUSES if text in reason), "unconfirmed")


def short_key(nodekey: str) -> str:
    """key.NodePublic.ShortString(): ``[`` + first 5 base64 chars + ``]`` (util.go:105-120)."""
    raw = bytes.fromhex(nodekey.removeprefix("nodekey:"))
    return "[" + base64.b64encode(raw[:4]).decode()[:5] + "]"


def admitted(log: str, nodekey: str) -> list[str]:
    """The client addresses derper registered for ``nodekey`` (needs DERP_DEBUG_LOGS)."""
    tag = re.escape(short_key(nodekey))
    return re.findall(rf"derp client (\S+?){tag}: register single client", log)


def public_key_of_config(config_file: Path) -> str:
    """The server public key (64 hex) of derper's ``-c`` file: X25519 of ``privkey:<hex>``."""
    private = json.loads(config_file.read_text())["PrivateKey"]
    return bytes(PrivateKey(bytes.fromhex(private.removeprefix("privkey:"))).public_key).hex()


@dataclass
class Derper:
    hostname: str
    derp_port: int
    stun_port: int
    config_file: Path
    daemon: Daemon
    socket: Path | None = None
    addresses: tuple[str, ...] = field(default_factory=tuple)  # where it listens

    def log(self) -> str:
        return self.daemon.log()

    @property
    def public_key(self) -> str:
        return public_key_of_config(self.config_file)

    def stop(self) -> None:
        self.daemon.stop()

    def evidence(self, wait: float = 4.0) -> EvidenceSource:
        """derper's own verdict on the probe's key, read from this derper's log with the
        product's reader (``components.netcheck.admission.wait_for_evidence``), as the checker's
        ``--docker-host`` reads a container's log."""

        async def source(_address: str, admission: Admission) -> AdmissionEvidence | None:
            if admission.admitted:
                return None
            return await wait_for_evidence(self.log, admission.client_key, wait=wait)

        return source


def install_cert(certdir: Path, hostname: str, cert_file: str, key_file: str) -> None:
    """derper's manual mode reads ``<hostname>.crt`` / ``.key`` (cert.go:117-121)."""
    certdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cert_file, certdir / f"{hostname}.crt")
    shutil.copyfile(key_file, certdir / f"{hostname}.key")


def start_derper(
    workdir: Path,
    *,
    hostname: str,
    cert_file: str,
    key_file: str,
    derp_port: int,
    stun_port: int,
    listen_ip: str = "",
    prefix: Sequence[str] = (),
    verify_socket: Path | None = None,
    debug_logs: bool = False,
    addresses: tuple[str, ...] = (),
    timeout: float = 15.0,
    extra_args: Sequence[str] = (),
) -> Derper:
    """Start derper (``prefix``: e.g. ``ip netns exec NS``); returns once TLS and STUN listen.

    A derper of the product's (flags, user, volumes, mesh) is ``tests/peers/product_process.py``'s
    ``deploy``."""
    workdir.mkdir(parents=True, exist_ok=True)
    certdir = workdir / "certs"
    install_cert(certdir, hostname, cert_file, key_file)
    config_file = workdir / "derper.key"
    host = f"[{listen_ip}]" if ":" in listen_ip else listen_ip
    argv = [
        *prefix,
        str(tool("derper")),
        "-c",
        str(config_file),
        "-hostname",
        hostname,
        "-certmode",
        "manual",
        "-certdir",
        str(certdir),
        "-a",
        f"{host}:{derp_port}",
        "-stun-port",
        str(stun_port),
        "-http-port",
        "-1",
    ]
    if verify_socket is not None:
        argv += ["-verify-clients", "-socket", str(verify_socket)]
    argv += list(extra_args)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(workdir)}
    if debug_logs:
        env["DERP_DEBUG_LOGS"] = "true"
    return run_derper(
        argv,
        workdir=workdir,
        hostname=hostname,
        derp_port=derp_port,
        stun_port=stun_port,
        config_file=config_file,
        env=env,
        verify_socket=verify_socket,
        addresses=addresses,
        timeout=timeout,
    )


def run_derper(
    argv: Sequence[str],
    *,
    workdir: Path,
    hostname: str,
    derp_port: int,
    stun_port: int,
    config_file: Path,
    env: dict[str, str],
    verify_socket: Path | None = None,
    addresses: tuple[str, ...] = (),
    timeout: float = 15.0,
) -> Derper:
    """Run derper's ``argv`` (log in ``workdir``); returns once TLS and STUN listen and the
    ``-c`` file ``config_file`` exists."""
    daemon = start(f"derper {hostname}", list(argv), workdir / "derper.log", env=env)
    derper = Derper(hostname, derp_port, stun_port, config_file, daemon, verify_socket, addresses)
    try:
        # derper.go:350 logs the TLS listener; net/stunserver logs its bound address.
        wait_until(
            f"derper {hostname} to serve TLS and STUN",
            lambda: (
                "with TLS" in daemon.log()
                and "STUN server listening" in daemon.log()
                and config_file.exists()
            ),
            timeout,
            [daemon],
        )
    except BaseException:
        daemon.stop()
        raise
    return derper
