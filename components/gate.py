"""RelayHealthGate: the last step of `pulumi up`, red when the relay is not fit for clients.

Validation only reports and publication only reacts (a failing relay is drained, a healthy one
restored: ``components/tailnet.py``), so that the tailnet is put right *before* anything fails.
This gate comes after both and makes the run's outcome honest (docs/architecture.md, "Health"):

* ``enforce``: a failed validation fails `up` with the whole diagnosis, naming what was done to
  the region (drained, or never published);
* any mode but ``off``: a certificate with fewer than :data:`RENEWAL_ALARM_DAYS` days left fails
  `up` too. Renewal happens at 30 days left on every `up` (``certificate.py``), and a weekly deploy
  would have renewed it long before, so this means renewal has stopped — weeks before the relay
  dies of an expired certificate, not after;
* any mode but ``off``: a Tailscale credential that may no longer read or write the policy
  (``credentials`` from validation) fails `up` too, while the relay is still healthy: the next
  drain of a failing relay would need it;
* ``warn``: the diagnosis of a failed validation is printed and `up` succeeds (the certificate
  and credential alarms above still fail it);
* ``off``: no probes ran; nothing to judge.

The provider is stored in the stack state under its stable name ``RelayHealthGate``
(components/dynamic_provider.py); older stacks stored ``components.gate.RelayHealthGateProvider``,
which must stay importable.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import pulumi
import pulumi.dynamic

from components.dynamic_provider import ProbeProvider
from components.errors import HomeDerpError
from components.wire import plain

TYPE_TOKEN: Final = "pulumi-python:dynamic/homederp:RelayHealthGate"
#: Fewer days than this on the served certificate means renewal stopped (see module docstring).
RENEWAL_ALARM_DAYS: Final = 21
INPUT_KEYS: Final = (
    "mode",
    "healthy",
    "diagnosis",
    "certificate_days_left",
    "checked_at",
    "drained",
    "published",
    "credentials",
)


class RelayUnhealthyError(HomeDerpError):
    """The relay failed its checks (enforce mode) or its certificate is not being renewed."""


def verdict_problems(inputs: Mapping[str, Any]) -> list[str]:
    """What is wrong with the relay for these inputs (empty when nothing is)."""
    mode = inputs.get("mode") or "enforce"
    if mode == "off":
        return []
    problems = []
    if inputs.get("healthy") is None and inputs.get("diagnosis"):
        problems.append(str(inputs["diagnosis"]))  # validation ran but could not judge
    if inputs.get("healthy") is False:
        diagnosis = inputs.get("diagnosis") or "the relay failed validation"
        if inputs.get("drained"):
            effect = "The region was drained (NoMeasureNoHome): clients stop homing on it."
        elif inputs.get("published"):
            effect = "The region is published."
        else:
            effect = "The region was not published."
        problems.append(f"{diagnosis}\n\n{effect}")
    problems += alarms(inputs)
    return problems


def alarms(inputs: Mapping[str, Any]) -> list[str]:
    """What fails `up` in ``warn`` mode too: renewal stopped, or the credential a drain needs."""
    found = [certificate_alarm(inputs), credentials_alarm(inputs)]
    return [alarm for alarm in found if alarm is not None]


def credentials_alarm(inputs: Mapping[str, Any]) -> str | None:
    """The Tailscale credential cannot read or write the policy (any mode but ``off``)."""
    credentials = inputs.get("credentials")
    if (inputs.get("mode") or "enforce") == "off" or not isinstance(credentials, Mapping):
        return None
    if credentials.get("ok") is not False:
        return None
    healthy = inputs.get("healthy")
    state = "healthy" if healthy is True else "unhealthy" if healthy is False else "not judged"
    return (
        f"the Tailscale credential cannot be used (the relay itself is {state}): "
        f"{credentials.get('detail')}. A failing relay could not be drained with it: replace "
        "the credential, then run the health workflow or `pulumi up` again"
    )


def certificate_alarm(inputs: Mapping[str, Any]) -> str | None:
    """Renewal has stopped (any mode but ``off``; it fails `up` in ``warn`` too)."""
    days = inputs.get("certificate_days_left")
    if (inputs.get("mode") or "enforce") == "off":
        return None
    if isinstance(days, int | float) and not isinstance(days, bool) and days < RENEWAL_ALARM_DAYS:
        return (
            f"the relay's certificate expires in {int(days)} days: renewal should have happened at "
            "30 days left on an earlier `up`, so it has stopped. Run `pulumi up` and read the ACME "
            "certificate's error (Cloudflare token revoked? DNS-01 blocked?); check that the "
            "scheduled deploy workflow still runs"
        )
    return None


def judge(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Raise for a bad verdict (see :func:`verdict_problems`); otherwise the outputs."""
    problems = verdict_problems(inputs)
    mode = inputs.get("mode") or "enforce"
    if problems and (mode == "enforce" or alarms(inputs)):
        advice = "\n\nFix the relay and run `pulumi up` again"
        if mode == "enforce":
            advice += (
                "; `home-derp:validate=warn` deploys anyway and records the failure in the outputs"
            )
        raise RelayUnhealthyError("\n\n".join(problems) + advice + ".")
    if problems:
        print(
            "home-derp: home-derp:validate=warn, the relay is NOT healthy:\n"
            + "\n\n".join(problems),
            file=sys.stderr,
            flush=True,
        )
    return {**{k: inputs.get(k) for k in INPUT_KEYS}, "passed": not problems}


class RelayHealthGateProvider(ProbeProvider):
    """Judges on create/update; holds nothing (the base: components/dynamic_provider.py)."""

    NAME = "RelayHealthGate"
    INPUT_KEYS = INPUT_KEYS

    def runs_again(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> bool:
        # A gate that failed last time must judge again even if nothing changed.
        return olds.get("passed") is not True

    def run(self, props: Mapping[str, Any], olds: Mapping[str, Any]) -> dict[str, Any]:
        return judge(plain(props))


@dataclass
class RelayHealthGateArgs:
    """Inputs of :class:`RelayHealthGate` (validation's verdict and what publication did)."""

    mode: pulumi.Input[str]
    healthy: pulumi.Input[bool | None]
    diagnosis: pulumi.Input[str | None]
    certificate_days_left: pulumi.Input[int | None]
    checked_at: pulumi.Input[str | None]
    """Changes with every validation run, so the gate judges each one."""
    drained: pulumi.Input[bool | None] = None
    published: pulumi.Input[bool | None] = None
    credentials: pulumi.Input[dict[str, Any] | None] = None
    """Validation's ``credentials`` verdict (``{ok, detail}``; None: not asked)."""


class RelayHealthGate(pulumi.dynamic.Resource, module="homederp", name="RelayHealthGate"):
    """Fails `up` when the relay is unhealthy (enforce) or its renewal stopped."""

    passed: pulumi.Output[bool]
    """True when nothing was wrong."""

    def __init__(
        self, resource_name: str, args: RelayHealthGateArgs, opts: pulumi.ResourceOptions | None
    ) -> None:
        props: dict[str, Any] = {k: getattr(args, k) for k in INPUT_KEYS}
        props["passed"] = None
        super().__init__(RelayHealthGateProvider(), resource_name, props, opts)
