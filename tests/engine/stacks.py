"""One stack of the project in the engine tests' world: its own project copy, name, relay.

Each scenario deploys a relay of its own (region id, code, ports, hostname), so scenarios share
the world (tests/engine/world.py) without seeing each other's resources. Every operation goes
through the real CLI (tests/engine/driver.py); results are the CLI's own output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.engine.world import World, copy_project


class EngineError(AssertionError):
    """A Pulumi operation failed; the message is what the CLI printed."""


@dataclass
class Stack:
    world: World
    name: str
    code: str
    region: int
    derp_port: int
    stun_port: int
    work_dir: Path = field(default=Path())
    extra_config: dict[str, tuple[Any, bool]] = field(default_factory=dict)

    @classmethod
    def new(cls, world: World, name: str, region: int, derp_port: int, stun_port: int,
            project: Path | None = None, **config: Any) -> Stack:  # fmt: skip
        """A stack of a fresh copy of the project (``project``: another tree of it)."""
        stack = cls(world, name, name, region, derp_port, stun_port)
        dest = world.root / f"project-{name}"
        stack.work_dir = copy_project(dest) if project is None else copy_project(dest, project)
        stack.extra_config = {f"home-derp:{k}": (v, False) for k, v in config.items()}
        return stack

    @property
    def hostname(self) -> str:
        return str(self.config()["home-derp:hostname"][0])

    def config(self) -> dict[str, tuple[Any, bool]]:
        return {
            **self.world.config(self.code, self.region, self.derp_port, self.stun_port),
            **self.extra_config,
        }

    def run(self, op: str, *, check: bool = True, **request: Any) -> dict[str, Any]:
        reply = self.world.pulumi(op, self.work_dir, self.name, **request)
        if check and not reply.get("ok"):
            raise EngineError(
                f"pulumi {op} of stack {self.name} failed:\n{reply.get('error', '')}"
                f"\n{reply.get('stdout', '')}\n{reply.get('stderr', '')}"
                f"\n{reply.get('traceback', '')}\n{reply.get('driver_stderr', '')}"
            )
        return reply

    def configure(self, **overrides: Any) -> None:
        """Write the stack file (``pulumi config set`` for every key)."""
        values = {**self.config(), **{f"home-derp:{k}": (v, False) for k, v in overrides.items()}}
        self.run("config", config=values)

    def up(self, *, check: bool = True, **args: Any) -> dict[str, Any]:
        return self.run("up", check=check, args=args)

    def preview(self, *, check: bool = True, **args: Any) -> dict[str, Any]:
        return self.run("preview", check=check, args=args)

    def destroy(self, *, check: bool = True, **args: Any) -> dict[str, Any]:
        return self.run("destroy", check=check, args=args)

    def outputs(self) -> dict[str, Any]:
        return dict(self.run("outputs")["outputs"])

    def resources(self) -> list[dict[str, Any]]:
        """The stack's state (``pulumi stack export``): one dict per resource."""
        deployment = self.run("export")["deployment"]
        return list(deployment.get("resources") or [])

    def cli(
        self, *argv: str, check: bool = False, env: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """The CLI with exactly ``argv`` (plus the program server), in the project directory."""
        return self.run("cli", check=check, argv=list(argv), env=env or {})

    def stack_file(self) -> str:
        return (self.work_dir / f"Pulumi.{self.name}.yaml").read_text()


def changes(reply: dict[str, Any]) -> dict[str, int]:
    """The resource changes of an up/destroy/preview, without the unchanged ones."""
    summary = reply.get("summary") or {}
    return {k: int(v) for k, v in summary.items() if k != "same" and v}


def dumps(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True, default=str)
