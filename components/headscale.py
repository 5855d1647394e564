"""headscale as the control plane: its config as read on its host, our DERP map file written
there atomically, and the DERP map headscale serves (no Pulumi).

The headscale host is reached through the same channel as the relay host (``components/host.py``:
``unix://`` here, ``ssh://`` through the system OpenSSH client). What headscale does with the file
is fixed by its source (docs/upstream/headscale.md):

* it reads every file of ``derp.paths`` at start-up, and again every ``derp.update_frequency``
  only when ``derp.auto_update_enabled`` is true (#derp-refresh); a SIGHUP reloads the policy,
  never the DERP map (#sighup). So after a write headscale either is restarted by the user's
  ``headscaleReload`` command or re-reads the file by itself within one ``update_frequency``;
* ``/debug/derp`` on its debug listener (``metrics_listen_addr``, loopback and Tailscale IPs only)
  lists the regions it serves with each node's name, host name and ports, but not
  ``NoMeasureNoHome`` (#debug-derp): a publish and a withdrawal are seen there, a drain is known
  only once a full ``update_frequency`` has passed since the write.

File contents travel as bytes (no newline translation), and a write replaces the file only if it
still has the checksum it had when we read it (a concurrent editor makes the write fail, and the
caller reads again), through a temporary file in the same directory renamed over it — headscale
reads either the old file or the new one, never half of it.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import shlex
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import yaml

from components.errors import HomeDerpError
from components.host import HostChannel, HostReadError, parse_ssh_host, ssh_failure

#: How long ``derp.update_frequency`` may be when home-derp waits for headscale's own re-read
#: instead of a ``headscaleReload`` command: an `up` waits up to this long after each change.
MAX_REFRESH_SECONDS: Final = 300.0
#: Margin on top of one refresh period (headscale's re-read itself, a slow host).
REFRESH_MARGIN_SECONDS: Final = 10.0
#: How long a ``headscaleReload`` command may take until headscale serves again.
RELOAD_WAIT_SECONDS: Final = 60.0
#: Exit status of the write script when the file changed since it was read.
CHANGED_EXIT: Final = 75
_ABSENT: Final = "absent"


class HeadscaleError(HomeDerpError):
    """headscale or its host answered something we cannot use; the message says what to fix."""


class FileChanged(HeadscaleError):
    """The DERP map file changed between our read and our write."""


# ---------------------------------------------------------------------------------------------
# Pure: headscale's config as it reads it


@dataclass(frozen=True)
class HeadscaleConfig:
    """The keys of headscale's config that home-derp depends on (docs/upstream/headscale.md)."""

    derp_paths: tuple[str, ...]
    auto_update: bool
    update_frequency: float | None
    """Seconds; None when headscale would read it as 0 (no periodic re-read)."""
    update_frequency_text: str
    server_url: str | None
    metrics_listen_addr: str | None
    policy_mode: str
    policy_path: str | None


_GO_DURATION: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS: Final = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
}  # fmt: skip


def go_duration_seconds(value: Any) -> float | None:
    """A duration as viper's ``GetDuration`` reads it (spf13/cast ToDurationE), in seconds; None
    when it reads as 0 or does not parse (viper then gives 0)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        seconds = float(value) * 1e-9  # a bare number is nanoseconds
        return seconds if seconds > 0 else None
    text = str(value).strip()
    if not any(ch in text for ch in "nsuµmh"):
        text += "ns"
    sign, body = (-1.0, text[1:]) if text[:1] == "-" else (1.0, text.lstrip("+"))
    if body == "0":
        return None
    total, at = 0.0, 0
    for match in _GO_DURATION.finditer(body):
        if match.start() != at:
            return None
        total += float(match[1]) * _GO_UNITS[match[2]]
        at = match.end()
    if at != len(body) or at == 0:
        return None
    seconds = sign * total
    return seconds if seconds > 0 else None


def _viper_bool(value: Any) -> bool:
    """viper's GetBool (spf13/cast ToBoolE): true, 1, t, T, TRUE, True … ; anything else false."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    return str(value).strip() in ("1", "t", "T", "TRUE", "true", "True")


def _get(data: Mapping[str, Any], dotted: str) -> Any:
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def parse_config(text: str) -> HeadscaleConfig:
    """headscale's ``config.yaml`` → the keys home-derp reads (HeadscaleError when not YAML)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise HeadscaleError(f"headscale's config is not YAML: {detail}") from None
    if not isinstance(data, Mapping):
        raise HeadscaleError("headscale's config is not a YAML mapping")
    paths = _get(data, "derp.paths") or []
    if isinstance(paths, str):
        paths = [paths]
    frequency = _get(data, "derp.update_frequency")
    if frequency is None:
        frequency = "3h"  # viper's default (hscontrol/types/config.go:416)
    policy_path = _get(data, "policy.path")
    return HeadscaleConfig(
        derp_paths=tuple(str(p) for p in paths if p is not None),
        auto_update=_viper_bool(_get(data, "derp.auto_update_enabled") or False),
        update_frequency=go_duration_seconds(frequency),
        update_frequency_text=str(frequency),
        server_url=_str_or_none(_get(data, "server_url")),
        metrics_listen_addr=_str_or_none(_get(data, "metrics_listen_addr")),
        policy_mode=str(_get(data, "policy.mode") or "file"),
        policy_path=_str_or_none(policy_path),
    )


def _str_or_none(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def listed_problem(config: HeadscaleConfig, derp_file: str) -> str | None:
    """None when headscale reads ``derp_file`` (it is in ``derp.paths``), else why not."""
    if derp_file in config.derp_paths:
        return None
    listed = ", ".join(config.derp_paths) or "nothing"
    return (
        f"headscale's derp.paths lists {listed}, not {derp_file}: headscale would never read "
        f"our region. Add it to derp.paths in the config (paths: [{derp_file}]) and restart "
        "headscale once"
    )


def policy_file(config: HeadscaleConfig, config_path: str) -> str | None:
    """The policy file headscale reads (``policy.mode: file``; a relative ``policy.path`` is
    taken from the config file's directory), or None (database mode, or no policy):
    docs/upstream/headscale.md#policy-grants."""
    if config.policy_mode != "file" or not config.policy_path:
        return None
    if config.policy_path.startswith("/"):
        return config.policy_path
    return posixpath.join(posixpath.dirname(config_path), config.policy_path)


def refresh_seconds(config: HeadscaleConfig) -> float | None:
    """How often headscale re-reads its DERP files by itself (None: only at start-up)."""
    return config.update_frequency if config.auto_update else None


def refresh_problem(config: HeadscaleConfig, has_reload: bool) -> str | None:
    """Without a reload command headscale must re-read the file by itself, soon enough."""
    if has_reload:
        return None
    every = refresh_seconds(config)
    if every is None:
        return (
            "headscale re-reads its DERP files only at start-up unless derp.auto_update_enabled "
            f"is true (and derp.update_frequency is {config.update_frequency_text!r}): set "
            "derp.auto_update_enabled: true and derp.update_frequency: 30s in its config, or "
            "set home-derp:headscaleReload to a command that restarts it"
        )
    if every > MAX_REFRESH_SECONDS:
        return (
            f"headscale re-reads its DERP files every {config.update_frequency_text}: an `up` "
            f"would wait that long to see its region served (at most "
            f"{MAX_REFRESH_SECONDS:.0f}s). Set derp.update_frequency: 30s in its config, or set "
            "home-derp:headscaleReload to a command that restarts it"
        )
    return None


def served_region(debug: Mapping[str, Any], region_id: int) -> dict[str, Any] | None:
    """Our region in ``/debug/derp``'s JSON (``regions`` keyed by the id as text)."""
    regions = debug.get("regions") or {}
    found = regions.get(str(region_id)) if isinstance(regions, Mapping) else None
    return dict(found) if isinstance(found, Mapping) else None


def served_nodes(served: Mapping[str, Any]) -> list[tuple[str, str, int, int]]:
    return sorted(
        (str(n.get("name")), str(n.get("hostname")), int(n.get("derp_port") or 0),
         int(n.get("stun_port") or 0))
        for n in served.get("nodes") or []
        if isinstance(n, Mapping)
    )  # fmt: skip


def expected_nodes(region: Mapping[str, Any]) -> list[tuple[str, str, int, int]]:
    """Our region (YAML spelling) as ``/debug/derp`` would show it."""
    return sorted(
        (str(n.get("name")), str(n.get("hostname")), int(n.get("derpport") or 0),
         int(n.get("stunport") or 0))
        for n in region.get("nodes") or []
    )  # fmt: skip


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# The edge: the headscale host through its channel

#: Reads a file, or says it is absent (exit 44), as raw bytes.
_READ: Final = 'if [ -e "$1" ]; then exec cat -- "$1"; else exit 44; fi'
#: Replaces the file only if its checksum is still the one we read; temp file + rename in the
#: same directory; mode and owner of the old file kept (headscale must still read it).
_WRITE: Final = r"""set -e
f=$1 want=$2
if [ -e "$f" ]; then cur=$(sha256sum < "$f"); cur=${cur%% *}; else cur=absent; fi
if [ "$cur" != "$want" ]; then echo "$f changed since it was read" >&2; exit 75; fi
t=$(mktemp "$(dirname -- "$f")/.home-derp.XXXXXX")
trap 'rm -f -- "$t"' EXIT
cat > "$t"
if [ -e "$f" ]; then
  chmod "$(stat -c %a -- "$f")" "$t"
  chown "$(stat -c %u:%g -- "$f")" "$t" 2>/dev/null || true
else
  chmod 0644 "$t"
fi
mv -f -- "$t" "$f"
trap - EXIT
"""
#: Whether the file (or, when it is missing, its directory) can be replaced by a rename.
_WRITABLE: Final = r"""d=$(dirname -- "$1")
[ -d "$d" ] || { echo "no directory $d"; exit 1; }
[ -w "$d" ] || { echo "directory $d is not writable (the rename needs it)"; exit 1; }
if [ -e "$1" ] && [ ! -w "$1" ]; then echo "$1 is not writable"; exit 1; fi
"""


@dataclass(frozen=True)
class FileState:
    text: str | None
    """The file's text, or None when it does not exist."""
    checksum: str
    """sha256 of its bytes (``absent`` when missing): the write's precondition."""


class HeadscaleHost:
    """The headscale host named by a ``unix://`` or ``ssh://`` URL."""

    def __init__(self, url: str, *, timeout: float = 10.0, command_prefix: Sequence[str] = ()):
        self.channel = HostChannel(url, timeout=timeout, command_prefix=tuple(command_prefix))

    def where(self) -> str:
        return self.channel.where().replace("the Docker host", "the headscale host")

    def _run(
        self, command: Sequence[str], *, what: str, stdin: bytes = b""
    ) -> tuple[int, bytes, str]:
        """``HostChannel.run`` with bytes in and out: file contents are never newline-translated."""
        argv = self.channel.argv(command)
        try:
            done = subprocess.run(
                argv, input=stdin, capture_output=True, timeout=self.channel.timeout + 2,
                check=False,
            )  # fmt: skip
        except FileNotFoundError as exc:
            raise HostReadError("missing-command", f"cannot {what}: {exc}") from exc
        except subprocess.TimeoutExpired as exc:
            raise HostReadError(
                "timeout", f"cannot {what}: {self.where()} did not answer in time"
            ) from exc
        stderr = done.stderr.decode("utf-8", "replace")
        if self.channel.scheme == "ssh" and done.returncode == 255:
            raise ssh_failure(parse_ssh_host(self.channel.docker_host), stderr)
        if done.returncode == 127:
            raise HostReadError(
                "missing-command", f"cannot {what}: {stderr.strip() or 'command not found'}"
            )
        return done.returncode, done.stdout, stderr

    def read_file(self, path: str) -> FileState:
        code, out, err = self._run(["sh", "-c", _READ, "sh", path], what=f"read {path}")
        if code == 44:
            return FileState(None, _ABSENT)
        if code != 0:
            raise HeadscaleError(f"cannot read {path} on {self.where()}: {err.strip()}")
        try:
            return FileState(out.decode("utf-8"), sha256(out))
        except UnicodeDecodeError:
            raise HeadscaleError(f"{path} on {self.where()} is not UTF-8 text") from None

    def write_file(self, path: str, text: str, expect: str) -> None:
        """Replace ``path`` with ``text`` if its checksum is still ``expect``."""
        code, _, err = self._run(
            ["sh", "-c", _WRITE, "sh", path, expect], what=f"write {path}", stdin=text.encode()
        )
        if code == CHANGED_EXIT:
            raise FileChanged(f"{path} changed on {self.where()} while we were editing it")
        if code != 0:
            raise HeadscaleError(
                f"cannot write {path} on {self.where()}: {err.strip()} (the user home-derp "
                "connects as needs write access to the file and its directory)"
            )

    def writable_problem(self, path: str) -> str | None:
        code, out, err = self._run(["sh", "-c", _WRITABLE, "sh", path], what=f"check {path}")
        return None if code == 0 else (out.decode("utf-8", "replace") or err).strip()

    def run_reload(self, command: Sequence[str]) -> None:
        result = self.channel.run(command, what="reload headscale")
        if result.returncode != 0:
            said = (result.stderr or result.stdout).strip()
            raise HeadscaleError(
                f"home-derp:headscaleReload `{shlex.join(command)}` failed on {self.where()} "
                f"(exit {result.returncode}): {said}"
            )

    def debug_derp(self, address: str) -> dict[str, Any]:
        """``GET /debug/derp``: the DERP map headscale serves (docs/upstream/headscale.md
        #debug-derp)."""
        data = self.debug_json("/debug/derp", address)
        if not isinstance(data, dict):
            raise HeadscaleError(f"headscale's /debug/derp on {address} is not a JSON object")
        return data

    def debug_json(self, path: str, address: str) -> Any:
        """``GET <path>`` (JSON) on headscale's debug listener, asked from the headscale host
        itself: the listener answers loopback only (docs/upstream/headscale.md#debug-derp)."""
        request = (
            f"GET {path} HTTP/1.0\r\nHost: {address}\r\nAccept: application/json\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        if self.channel.scheme == "ssh":
            raw = self._forwarded(address, request)
        else:
            raw = _http_exchange(address, request, self.channel.timeout)
        return _debug_json(raw, path, address, self.where())

    def _forwarded(self, address: str, request: bytes) -> bytes:
        """The request through ``ssh -W`` (OpenSSH's stdio forwarding): nothing to install on
        the headscale host, and the listener sees a loopback client."""
        argv = self.channel.argv(["true"])
        cut = argv.index("--")
        forward = [*argv[:cut], "-W", address, *argv[cut:-1]]
        try:
            done = subprocess.run(
                forward, input=request, capture_output=True, timeout=self.channel.timeout + 2,
                check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise HeadscaleError(
                f"cannot reach headscale's debug listener {address}: {exc}"
            ) from None
        if done.returncode == 255 and not done.stdout:
            stderr = done.stderr.decode("utf-8", "replace")
            if "open failed" in stderr or "connect" in stderr.lower():
                raise HeadscaleError(_debug_unreachable(address, self.where(), stderr.strip()))
            raise ssh_failure(parse_ssh_host(self.channel.docker_host), stderr)
        return done.stdout


def rewrite_file(
    host: HeadscaleHost,
    path: str,
    mutate: Callable[[str], tuple[str, Any]],
    *,
    missing: Callable[[], str],
    attempts: int,
) -> tuple[str, str, Any]:
    """Read ``path``, apply ``mutate``, write the result if it differs, with the checksum
    precondition: (text before, text after, mutate's extra). A missing file reads as what
    ``missing`` says (or it raises). A file changed between our read and our write is read
    again, up to ``attempts`` rounds; then the last :class:`FileChanged` is raised."""
    changed: FileChanged | None = None
    for attempt in range(1, attempts + 1):
        try:
            current = host.read_file(path)
            text = missing() if current.text is None else current.text
            new_text, extra = mutate(text)
            if new_text != text:
                host.write_file(path, new_text, current.checksum)
            return text, new_text, extra
        except FileChanged as exc:
            changed = exc
            time.sleep(0.5 * attempt)
    assert changed is not None, "attempts must be at least 1"
    raise changed


def _debug_unreachable(address: str, where: str, why: str) -> str:
    return (
        f"headscale's debug listener {address} does not answer on {where} ({why}): set "
        f"metrics_listen_addr: {address} in headscale's config (or home-derp:headscaleDebugAddress "
        "to the address it has)"
    )


def _http_exchange(address: str, request: bytes, timeout: float) -> bytes:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as conn:
            conn.sendall(request)
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
            return b"".join(chunks)
    except (OSError, ValueError) as exc:
        raise HeadscaleError(_debug_unreachable(address, "this machine", str(exc))) from None


def _debug_json(raw: bytes, path: str, address: str, where: str) -> Any:
    import json

    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise HeadscaleError(f"{address} on {where} is not headscale's debug listener: {status!r}")
    if parts[1] != "200":
        raise HeadscaleError(
            f"headscale's {path} on {address} answered {status[len(parts[0]) + 1 :]} "
            "(it answers loopback and Tailscale addresses only)"
        )
    try:
        return json.loads(body)
    except ValueError:
        raise HeadscaleError(f"headscale's {path} on {address} is not JSON") from None


def wait_served(
    host: HeadscaleHost,
    address: str,
    region_id: int,
    expected: Sequence[tuple[str, str, int, int]] | None,
    *,
    within: float,
    clock: Any = time.monotonic,
    sleep: Any = time.sleep,
) -> tuple[bool, str]:
    """Poll ``/debug/derp`` until our region is served as ``expected`` (None: absent).

    Returns (seen, what was served last); the caller words the failure.
    """
    deadline = clock() + within
    last = "nothing read yet"
    while True:
        try:
            served = served_region(host.debug_derp(address), region_id)
        except HeadscaleError as exc:
            served, last = None, str(exc)
            if clock() >= deadline:
                return False, last
            sleep(1.0)
            continue
        if expected is None and served is None:
            return True, f"region {region_id} is not served"
        if expected is not None and served is not None and served_nodes(served) == list(expected):
            return True, f"region {region_id} is served with nodes {served_nodes(served)}"
        last = (
            f"region {region_id} is not served"
            if served is None
            else f"region {region_id} is served with nodes {served_nodes(served)}"
        )
        if clock() >= deadline:
            return False, last
        sleep(1.0)
