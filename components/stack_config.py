"""The stack's configuration as the Pulumi CLI would hand it to the program, read without Pulumi.

One reader for the doctor and the workflows' ``.github/scripts/stack_facts.py``, so both see what
``pulumi up`` would.

``pulumi up`` gives the program every key of ``Pulumi.<stack>.yaml`` plus the ``default`` of
each project key in ``Pulumi.yaml`` the stack does not set, each as a string: booleans
``true``/``false``, numbers in decimal, lists and objects as JSON (https://www.pulumi.com/docs/iac/concepts/config/,
"Project-level configuration" and "Structured configuration"). Keys of the project's own namespace
may be written without it. ``secure:`` values are encrypted with the stack's secrets provider, which
only the CLI can open: they are listed by name, never read.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from components.errors import HomeDerpError
from components.settings import KNOWN_KEYS, NAMESPACE, SECRET_KEYS

PROJECT_FILES: Final = ("Pulumi.yaml", "Pulumi.yml")


class StackFileError(HomeDerpError):
    """The project or stack file cannot be used; ``usage`` when the user named a wrong stack."""

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


@dataclass(frozen=True)
class StackConfig:
    """What one stack configures, split the way the doctor needs it."""

    project: str
    stack: str
    project_dir: Path
    stack_file: Path
    raw: dict[str, str | None]
    """``home-derp:`` keys the program reads, as ``pulumi.Config.get`` returns them."""
    configured_keys: tuple[str, ...]
    """Full names of every ``home-derp:`` key the stack or project sets (for unknown-key hints)."""
    plain: dict[str, str]
    """Every readable value outside ``home-derp:`` by full name (``tailscale:tailnet``)."""
    secure: tuple[str, ...]
    """Full names of the encrypted (``secure:``) values."""


def find_project(start: Path, *, checkout: Path | None = None) -> Path:
    """The directory holding ``Pulumi.yaml``: ``start`` or its nearest parent, as the CLI looks.

    ``checkout`` (the home-derp checkout the caller runs from) is named in the error, so a user in
    another directory reads the exact ``-C`` that works.
    """
    for directory in (start, *start.parents):
        if any((directory / name).is_file() for name in PROJECT_FILES):
            return directory
    where = f" (-C {checkout})" if checkout is not None else " (or -C DIR)"
    raise StackFileError(
        f"no Pulumi.yaml in {start} or above: run it in the home-derp checkout{where}"
    )


def yaml_problem(exc: yaml.YAMLError) -> str:
    """What is wrong and where, never the text around it: a stack file holds secrets, and
    PyYAML's own message quotes the offending line."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"{exc.problem or exc.context or 'invalid YAML'}{where}"
    return type(exc).__name__


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise StackFileError(f"cannot read {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise StackFileError(f"{path} is not valid YAML: {yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise StackFileError(f"{path} is not a YAML mapping")
    return data


def _full_key(project: str, key: str) -> str:
    return key if ":" in key else f"{project}:{key}"


def _is_secure(value: Any) -> bool:
    if isinstance(value, dict):
        return ("secure" in value and len(value) == 1) or any(_is_secure(v) for v in value.values())
    if isinstance(value, list):
        return any(_is_secure(v) for v in value)
    return False


def config_string(value: Any) -> str:
    """A config value as the program's ``Config.get`` sees it: booleans ``true``/``false``,
    structured values as compact JSON (what ``pulumi config --json`` shows as their ``value``;
    tests/engine/test_stack_facts.py holds both against the real CLI)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def _project_defaults(project: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config:`` of Pulumi.yaml: ``key: {default: v}``, ``{value: v}`` or the short ``key: v``."""
    defaults: dict[str, Any] = {}
    for key, spec in config.items():
        if isinstance(spec, dict) and ("type" in spec or "default" in spec or "value" in spec):
            if "default" in spec:
                defaults[_full_key(project, str(key))] = spec["default"]
            elif "value" in spec:
                defaults[_full_key(project, str(key))] = spec["value"]
        else:
            defaults[_full_key(project, str(key))] = spec
    return defaults


def merge_config(
    project_doc: Mapping[str, Any], stack_doc: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """Full key → value as the CLI merges them (pulumi/pulumi pkg/workspace/config.go
    ``mergeConfig``, docs/upstream/pulumi.md#config-type-check): the stack file's keys (a bare key is
    the project's), then the project's declared defaults, values and bare literals for the keys the
    stack does not set. ESC ``environment:`` imports are refused: their values live in Pulumi
    Cloud, which nothing here can read (``where`` names the file in the message)."""
    if stack_doc.get("environment"):
        raise StackFileError(
            f"{where} imports Pulumi ESC environments (environment: "
            f"{stack_doc['environment']!r}): their values live in Pulumi Cloud, which cannot be "
            "read here, and may set any key (dockerHost, regionId, tailnetPolicy, validate, "
            "ipv6). Write those keys in the stack file itself and keep ESC for secrets the "
            "program reads, or remove the import"
        )
    stack_config = stack_doc.get("config") or {}
    if not isinstance(stack_config, dict):
        raise StackFileError(f"{where}: `config:` is not a mapping")
    project = str(project_doc.get("name") or NAMESPACE)
    values = _project_defaults(project, project_doc.get("config") or {})
    values.update({_full_key(project, str(k)): v for k, v in stack_config.items()})
    return values


def readable_strings(values: Mapping[str, Any]) -> dict[str, str]:
    """Every merged value but the encrypted ones, as the program reads it."""
    return {k: config_string(v) for k, v in values.items() if not _is_secure(v) and v is not None}


def stack_file_path(project_dir: Path, project_doc: Mapping[str, Any], stack: str) -> Path:
    """``Pulumi.<stack>.yaml`` in ``stackConfigDir`` (or the project directory)."""
    config_dir = project_dir / str(project_doc.get("stackConfigDir") or ".")
    return config_dir / f"Pulumi.{stack.rsplit('/', 1)[-1]}.yaml"


def stack_names(config_dir: Path) -> list[str]:
    """The stacks that have a file (``Pulumi.<name>.yaml``)."""
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in config_dir.glob("Pulumi.*.yaml"))


def _missing_stack(path: Path, stack: str) -> StackFileError:
    names = stack_names(path.parent)
    close = difflib.get_close_matches(stack, names, n=1)
    hint = f"did you mean -s {close[0]}?" if close else f"stacks here: {', '.join(names) or 'none'}"
    return StackFileError(f"no stack file {path.name} in {path.parent} ({hint})", usage=True)


def load_stack(project_dir: Path, stack: str) -> StackConfig:
    """Read Pulumi.yaml and the stack's file; raise :class:`StackFileError` when unusable."""
    project_file = next(project_dir / n for n in PROJECT_FILES if (project_dir / n).is_file())
    project_doc = _load_yaml(project_file)
    project = str(project_doc.get("name") or NAMESPACE)
    path = stack_file_path(project_dir, project_doc, stack)
    if not path.is_file():
        raise _missing_stack(path, stack)
    values = merge_config(project_doc, _load_yaml(path), str(path))
    secure = tuple(sorted(k for k, v in values.items() if _is_secure(v)))
    readable = readable_strings(values)
    prefix = f"{NAMESPACE}:"
    raw: dict[str, str | None] = {
        key: readable.get(prefix + key) for key in KNOWN_KEYS if key not in SECRET_KEYS
    }
    return StackConfig(
        project=project,
        stack=stack.rsplit("/", 1)[-1],
        project_dir=project_dir,
        stack_file=path,
        raw=raw,
        configured_keys=tuple(sorted(k for k in values if k.startswith(prefix))),
        plain={k: v for k, v in readable.items() if not k.startswith(prefix)},
        secure=secure,
    )
