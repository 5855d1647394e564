"""Pulumi.yaml's config schema agrees with the key table and with the CLI's own rules.

The CLI validates stacks against the schema before the program runs
(``ValidateStackConfigAndApplyProjectConfig`` in pulumi/pulumi): a typed key without a default is
required in every stack (pulumi/pulumi#21797), stack values must have the declared type, and keys of
the project's own namespace are declared unqualified. Nothing here runs the CLI (it cannot be
installed on these machines); these are its rules applied to our files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from components.settings import KEYS, KNOWN_KEYS, Environment, parse_settings
from tests.mocks import ROOT, HostFacts, HostProbeAdapter, project_config_schema, project_defaults

STACK_FILES = sorted(ROOT.glob("Pulumi.*.yaml"))
PYTHON_TYPES = {"string": str, "integer": int, "boolean": bool, "array": list}
#: Declared nowhere in Pulumi.yaml on purpose: a typed secret without a default would be required.
UNDECLARED = {"ddnsApiToken"}


def declared_type(spec: dict[str, Any]) -> type:
    return PYTHON_TYPES[spec["type"]]


# Every key the settings read is documented in Pulumi.yaml, unqualified, typed, described.
def test_schema_declares_every_setting() -> None:
    schema = project_config_schema()
    assert set(schema) == set(KNOWN_KEYS) - UNDECLARED
    for key, spec in schema.items():
        assert ":" not in key, f"{key}: the project's own keys are declared without a namespace"
        assert spec.get("type") in PYTHON_TYPES, key
        assert spec.get("description"), key


# Pulumi.yaml declares each key exactly as the key table does: type and default. The key table
# (components/settings/keys.py) is the one home of every default; this is its copy for the CLI,
# and it may not drift. (What a key means is Pulumi.yaml's own: the CLI shows it.)
@pytest.mark.parametrize("key", [k for k in KEYS if k.declared], ids=lambda k: k.name)
def test_pulumi_yaml_matches_the_key_table(key: Any) -> None:
    spec = project_config_schema()[key.name]
    assert spec["type"] == key.type
    assert spec.get("description"), key.name
    if key.required:
        assert "default" not in spec
    else:
        default = list(key.default) if isinstance(key.default, tuple) else key.default
        assert spec["default"] == default


# Only hostname and ipv6 are required; every other key has a default of its declared type.
def test_only_required_keys_lack_defaults() -> None:
    schema = project_config_schema()
    assert {k for k, spec in schema.items() if "default" not in spec} == {"hostname", "ipv6"}
    for key, spec in schema.items():
        if "default" in spec:
            assert isinstance(spec["default"], declared_type(spec)), key


# The CLI's checks on every committed stack: required keys present, values of the declared type.
@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_stack_files_pass_cli_validation(stack_file: Path) -> None:
    schema = project_config_schema()
    values = (yaml.safe_load(stack_file.read_text()) or {}).get("config") or {}
    ours = {k.split(":", 1)[1]: v for k, v in values.items() if k.startswith("home-derp:")}
    missing = {k for k, spec in schema.items() if "default" not in spec} - set(ours)
    assert not missing, f"{stack_file.name} is missing configuration values {sorted(missing)}"
    for key, value in ours.items():
        assert key in schema or key in UNDECLARED, f"{stack_file.name}: unknown key {key}"
        if key in schema:
            assert isinstance(value, declared_type(schema[key])), f"{stack_file.name}: {key}"


# Pulumi.yaml's defaults mean exactly what the settings do when a key is absent.
def test_defaults_match_settings() -> None:
    # ipv4 has no default meaning: the rules require a choice (docs/guide/reach.md), with a message
    # that names the choices, which the CLI's own "missing configuration value" would not.
    required = {
        "hostname": "derp.example.com",
        "zone": "example.com",
        "ipv6": "2409:8a00::10",
        "ipv4": "none",
    }
    env = Environment(cloudflare_api_token=pulumi.Output.secret("t"))
    host = HostProbeAdapter(HostFacts(addresses=["2409:8a00::10"]))
    bare = parse_settings(required, env=env, host=host).require()
    defaults = {k.split(":", 1)[1]: v for k, v in project_defaults().items()}
    with_defaults = parse_settings({**defaults, **required}, env=env, host=host).require()
    assert with_defaults == bare


def _guide_table() -> dict[str, str]:
    """``docs/guide/configuration.md``'s key table: key → its default column."""
    rows: dict[str, str] = {}
    text = (ROOT / "docs" / "guide" / "configuration.md").read_text(encoding="utf-8")
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            for key in re.findall(r"`(\w+)`", cells[0]):
                rows[key] = cells[1]
    return rows


# The configuration guide lists every key, and a default it writes is the key table's.
def test_configuration_guide_matches_the_key_table() -> None:
    rows = _guide_table()
    assert set(rows) == set(KNOWN_KEYS)
    for key in KEYS:
        shown = rows[key.name]
        if key.required:
            assert "required" in shown, key.name
        elif isinstance(key.default, bool):
            assert shown == f"`{'true' if key.default else 'false'}`", key.name
        elif isinstance(key.default, int):
            assert shown.startswith(f"`{key.default}`"), key.name
        elif isinstance(key.default, str) and key.default and key.name != "ddnsImage":
            assert shown == f"`{key.default}`", key.name
