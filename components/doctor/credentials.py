"""Credentials without Pulumi: plain stack values, or environment variables for encrypted ones.

The program reads ``cloudflare:apiToken`` from the stack (a secret) or ``CLOUDFLARE_API_TOKEN``
(``settings._secret_from_config_or_env``), and the Tailscale keys from the stack or the variables
``tailscale_api.resolve_credentials`` names. A ``secure:`` value can only be decrypted by the
Pulumi CLI, so for each one the doctor says which variable can carry it instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from components import tailscale_api
from components.doctor.model import Check, not_checked, passed
from components.stack_config import StackConfig

CLOUDFLARE_TOKEN_KEY: Final = "cloudflare:apiToken"
CLOUDFLARE_TOKEN_ENV: Final = "CLOUDFLARE_API_TOKEN"
#: Environment variables that stand in for each encrypted stack value, in the order the program
#: reads them (tailscale_api.resolve_credentials; tests/doctor/test_doctor_cli.py keeps the two in
#: step).
STAND_INS: Final[Mapping[str, tuple[str, ...]]] = {
    CLOUDFLARE_TOKEN_KEY: (CLOUDFLARE_TOKEN_ENV,),
    "tailscale:apiKey": ("TAILSCALE_API_KEY",),
    "tailscale:oauthClientId": ("TAILSCALE_OAUTH_CLIENT_ID", "OAUTH_CLIENT_ID"),
    "tailscale:oauthClientSecret": ("TAILSCALE_OAUTH_CLIENT_SECRET", "OAUTH_CLIENT_SECRET"),
    "tailscale:identityToken": ("TAILSCALE_IDENTITY_TOKEN", "IDENTITY_TOKEN"),
    "tailscale:audience": ("TAILSCALE_AUDIENCE",),
    "tailscale:tailnet": ("TAILSCALE_TAILNET",),
    "tailscale:baseUrl": ("TAILSCALE_BASE_URL",),
}


@dataclass(frozen=True)
class Secrets:
    """What the doctor can use, and which encrypted values it cannot see."""

    cloudflare_token: str | None
    cloudflare_unreadable: bool
    """The token is encrypted in the stack and no variable carries it."""
    tailscale: tailscale_api.Credentials | None
    tailscale_problem: str | None
    """Why no Tailscale credentials resolved (the program's own words)."""
    tailscale_unreadable: tuple[str, ...]
    """Encrypted ``tailscale:`` keys no variable carries."""

    def values(self) -> list[str]:
        """Every secret value, for redaction."""
        found = [self.cloudflare_token]
        creds = self.tailscale
        if creds is not None:
            found += [creds.api_key, creds.client_secret, creds.identity_token]
        return [v for v in found if v]


def _carried(key: str, environ: Mapping[str, str]) -> str | None:
    return next((n for n in STAND_INS.get(key, ()) if environ.get(n)), None)


def resolve(stack: StackConfig, environ: Mapping[str, str]) -> Secrets:
    """The credentials the doctor can use (pure, given the stack and the environment)."""
    token = stack.plain.get(CLOUDFLARE_TOKEN_KEY) or environ.get(CLOUDFLARE_TOKEN_ENV) or None
    unreadable_ts = tuple(
        k for k in stack.secure if k.startswith("tailscale:") and not _carried(k, environ)
    )
    config = {k: v for k, v in stack.plain.items() if k.startswith("tailscale:")}
    creds, problem = None, None
    try:
        creds = tailscale_api.resolve_credentials(config, environ)
    except tailscale_api.TailscaleApiError as exc:
        problem = str(exc)
    return Secrets(
        cloudflare_token=token,
        cloudflare_unreadable=token is None and CLOUDFLARE_TOKEN_KEY in stack.secure,
        tailscale=creds,
        tailscale_problem=problem,
        tailscale_unreadable=unreadable_ts,
    )


def secrets_check(stack: StackConfig, environ: Mapping[str, str], policy_off: bool) -> Check:
    """``stack.secrets``: which encrypted values the doctor reads from the environment instead."""
    if not stack.secure:
        return passed("stack.secrets", f"no encrypted values in {stack.stack_file.name}")
    carried, missing, unused = [], [], []
    for key in stack.secure:
        name = _carried(key, environ)
        if key not in STAND_INS or (policy_off and key.startswith("tailscale:")):
            unused.append(f"{key}: encrypted, not needed by the doctor")
        elif name:
            carried.append(f"{key}: encrypted; using ${name} from the environment instead")
        else:
            missing.append(key)
    detail = "\n".join([*carried, *unused]) or None
    if not missing:
        return passed(
            "stack.secrets", f"{len(stack.secure)} encrypted value(s) accounted for", detail
        )
    exports = " ".join(f"{STAND_INS[k][0]}=…" for k in missing)
    result = not_checked(
        "stack.secrets",
        f"{', '.join(missing)} encrypted in {stack.stack_file.name} (only the Pulumi CLI can "
        "decrypt it); the rows that need it are not checked",
        f"export {exports} (the same values) and run the doctor again",
    )
    return Check(result.id, result.status, result.summary, detail, result.fix)
