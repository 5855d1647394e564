"""What the rules may ask beyond the raw config: the relay host (:class:`HostProbe`) and the
machine running the program (:class:`Environment`). A leaf of the settings package, so every topic
module imports it at run time and none imports ``parse`` (which imports them all)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from components.ipv6 import Candidate
from components.tailscaled import TailscaledFacts

if TYPE_CHECKING:
    import pulumi


class HostProbe(Protocol):
    """Read-only questions to the relay host (``components.relay_host.LiveHost``); each may raise
    ``HostReadError`` when the host cannot be asked."""

    def addresses(self, interface: str | None) -> Sequence[Candidate]: ...

    def tailscaled(self, socket: str) -> TailscaledFacts: ...

    def socket_exists(self, socket: str) -> bool: ...

    def runtime_directory_problem(self, socket: str) -> str | None: ...


@dataclass(frozen=True)
class Environment:
    """Facts of the machine running the program that rules depend on."""

    cloudflare_api_token: pulumi.Output[str] | None = None
    tailscale_credentials_problem: str | None = None
    """None when usable Tailscale credentials are configured; else what is missing."""
    github_hosted_runner: bool = False
    health_run: bool = False
    file_exists: Callable[[str], bool] = os.path.isfile


def github_hosted_runner(environ: Mapping[str, str]) -> bool:
    """True on a GitHub-hosted Actions runner
    (docs/upstream/github-actions.md#runner-environment)."""
    return (
        environ.get("GITHUB_ACTIONS") == "true"
        and environ.get("RUNNER_ENVIRONMENT") == "github-hosted"
    )
