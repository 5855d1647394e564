"""The stack's configuration as the Pulumi CLI would hand it to the program, read without Pulumi.

One reader for the doctor and the workflows' ``.github/scripts/stack_facts.py``, so both see what
``pulumi up`` would.

``pulumi up`` gives the program every key of ``Pulumi.<stack>.yaml`` plus the ``default`` of
each project key in ``Pulumi.yaml`` the stack does not set, each as a string: booleans
``true``/``false``, numbers in decimal, lists and objects as JSON (https://www.pulumi.com/docs/iac/concepts/config/,
"Project-level configuration" and "Structured configuration"). Keys of the project's own namespace
may be written without it. ``secure:`` values are encrypted with the stack's secrets provider, which
only the CLI can open: they are listed by name, never read.

The files are read as the CLI reads them (docs/upstream/pulumi.md#config-type-check): plain YAML
scalars resolved the way gopkg.in/yaml.v3 resolves them (``yes`` is text, ``0o17`` a number,
``12345.0`` the integer text ``12345``), an empty value as the empty string. Before the program
runs the CLI checks the project's typed and required keys; :func:`cli_config_problems` gives the
CLI's own messages for every key it would stop on, where the CLI prints only the first.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
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
    cli_problems: tuple[CliProblem, ...] = field(default=())
    """What the CLI's own config validation stops on, every key (:func:`cli_config_problems`)."""


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


# ---------------------------------------------------------------------------------------------
# YAML as the CLI reads it (docs/upstream/pulumi.md#config-type-check)

#: yaml.v3's table of plain scalars with a fixed meaning (gopkg.in/yaml.v3@v3.0.1/resolve.go:52-59).
_GO_YAML_WORDS: Final[Mapping[str, Any]] = {
    **dict.fromkeys(("true", "True", "TRUE"), True),
    **dict.fromkeys(("false", "False", "FALSE"), False),
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), None),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
#: resolve.go:124, the float syntax yaml.v3 accepts after a sign or digit.
_GO_YAML_FLOAT: Final = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_GO_DOT_FLOAT: Final = re.compile(r"^\.[0-9]+([eE][-+]?[0-9]+)?$")
_GO_DATE: Final = re.compile(r"^([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})$")
_INT64: Final = 1 << 63
_UINT64: Final = 1 << 64


@dataclass(frozen=True)
class GoTimestamp:
    """A plain scalar yaml.v3 reads as a timestamp; Pulumi keeps ``time.Time.String()`` of it
    (resource/config/object.go:500-501)."""

    text: str


def _go_parse_uint(text: str, base: int) -> int | None:
    """Go's strconv.ParseUint(text, base, 64) (go1.26 src/strconv/atoi.go): None on error."""
    if not text:
        return None
    if base == 0:
        base = 10
        if text[0] == "0":
            prefix = text[1:2].lower()
            if len(text) >= 3 and prefix in ("b", "o", "x"):
                base, text = {"b": 2, "o": 8, "x": 16}[prefix], text[2:]
            else:
                base, text = 8, text[1:]
    value = 0
    for char in text.lower():
        digit = "0123456789abcdefghijklmnopqrstuvwxyz".find(char)
        if digit < 0 or digit >= base:
            return None
        value = value * base + digit
    return value if value < _UINT64 else None


def _go_parse_int(text: str, base: int) -> int | None:
    """Go's strconv.ParseInt(text, base, 64): an optional sign, then :func:`_go_parse_uint`."""
    sign, body = (-1, text[1:]) if text[:1] == "-" else (1, text[1:] if text[:1] == "+" else text)
    value = _go_parse_uint(body, base)
    if value is None or (sign > 0 and value >= _INT64) or (sign < 0 and value > _INT64):
        return None
    return sign * value


def _go_float(text: str) -> float | None:
    """Go's strconv.ParseFloat for the decimal syntax yaml.v3 lets through; None when it is out
    of range (Go answers ±Inf with an error, which yaml.v3 takes as "not a float")."""
    value = float(text)
    return None if math.isinf(value) else value


def _go_timestamp(text: str) -> GoTimestamp | None:
    """resolve.go:292-326 for the date-only form (``2006-1-2``, UTC); other timestamp forms are
    kept as text here (no config key of home-derp is a time)."""
    found = _GO_DATE.match(text)
    if found is None:
        return None
    try:
        day = dt.date(int(found[1]), int(found[2]), int(found[3]))
    except ValueError:
        return None
    return GoTimestamp(f"{day.isoformat()} 00:00:00 +0000 UTC")


def go_yaml_scalar(text: str) -> Any:
    """A plain (unquoted) scalar as yaml.v3 resolves it (resolve.go:126-265): None, bool, int,
    float, :class:`GoTimestamp` or the text itself."""
    if text in _GO_YAML_WORDS:
        return _GO_YAML_WORDS[text]
    first = text[0]
    if first == ".":
        return _go_float(text) if _GO_DOT_FLOAT.match(text) else text
    if not (first.isdigit() or first in "+-"):
        return text  # resolve.go:42-45: any other first character is text (yes, on, 0x? no)
    stamp = _go_timestamp(text)
    if stamp is not None:
        return stamp
    plain = text.replace("_", "")
    for parse in (_go_parse_int, _go_parse_uint):
        number = parse(plain, 0)
        if number is not None:
            return number
    if _GO_YAML_FLOAT.match(plain) and (value := _go_float(plain)) is not None:
        return value
    for prefix, base, sign in (("0b", 2, ""), ("-0b", 2, "-"), ("0o", 8, ""), ("-0o", 8, "-")):
        if plain.startswith(prefix):
            number = _go_parse_int(sign + plain[len(prefix) :], base)
            if number is not None:
                return number
    return text


class CliYamlLoader(yaml.SafeLoader):
    """PyYAML with yaml.v3's resolution of plain scalars (the CLI's stack and project files are
    read with gopkg.in/yaml.v3: sdk/go/common/encoding/marshal.go:27). Quoted scalars stay text."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode and implicit[0]:
            return "!cli/plain"
        return str(super().resolve(kind, value, implicit))


def _plain(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    assert isinstance(node, yaml.ScalarNode)
    return go_yaml_scalar(str(loader.construct_scalar(node)))


CliYamlLoader.add_constructor("!cli/plain", _plain)


def go_json_number(value: float) -> str:
    """A float64 as Go's encoding/json writes it (go1.26 src/encoding/json/encode.go, floatEncoder):
    the shortest digits, in exponent form below 1e-6 and from 1e21 on (``e-7``, ``e+21``)."""
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    number = Decimal(repr(value)).normalize()
    if 1e-6 <= abs(value) < 1e21:
        return format(number, "f")
    sign, digits, exponent = number.as_tuple()
    text = "".join(map(str, digits))
    power = int(exponent) + len(digits) - 1
    mantissa = text[0] + (f".{text[1:]}" if len(text) > 1 else "")
    shown = f"-{abs(power)}" if power < 0 else f"+{power:02d}"
    return f"{'-' if sign else ''}{mantissa}e{shown}"


class StackValueError(ValueError):
    """A value the CLI cannot turn into config text (NaN, ±Inf: encoding/json refuses them)."""


def go_json(value: Any) -> str:
    """``value`` as compact JSON the way Go's json.Marshal writes config objects (keys sorted,
    floats as :func:`go_json_number`); equal as JSON, not byte for byte (Go also escapes <>&)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise StackValueError(f"json: unsupported value: {value}")
        return go_json_number(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, GoTimestamp):
        return json.dumps(value.text, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted((str(k), v) for k, v in value.items())
        return (
            "{"
            + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{go_json(v)}" for k, v in items)
            + "}"
        )
    return json.dumps(str(value), ensure_ascii=False)


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=CliYamlLoader)
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
    """A config value as the program's ``Config.get`` sees it: text as written, an empty value as
    "" (yaml.v3 leaves a null node's Value zero), booleans and numbers as Go's JSON writes them,
    lists and objects as JSON (resource/config/object.go:401-418). :class:`StackValueError` for
    NaN and ±Inf, which the CLI cannot store either."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, GoTimestamp):
        return value.text
    return go_json(value)


def is_object(value: Any) -> bool:
    """Lists and maps reach the program (and the CLI's type check) as JSON objects."""
    return isinstance(value, list | dict)


def _is_spec(spec: Any) -> bool:
    return isinstance(spec, dict) and ("type" in spec or "default" in spec or "value" in spec)


def _project_default(spec: Any) -> Any:
    """What the CLI applies for a project key the stack does not set: ``default``, else
    ``value``, else a bare literal (pkg/workspace/config.go:316-347); None when nothing (a null
    ``default`` is no default: config.go:316)."""
    if _is_spec(spec):
        return spec.get("default") if spec.get("default") is not None else spec.get("value")
    return spec


def _project_defaults(project: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config:`` of Pulumi.yaml: ``key: {default: v}``, ``{value: v}`` or the short ``key: v``."""
    return {
        _full_key(project, str(key)): default
        for key, spec in config.items()
        if (default := _project_default(spec)) is not None
    }


# ---------------------------------------------------------------------------------------------
# The CLI's own check of typed and required keys (docs/upstream/pulumi.md#config-type-check)


@dataclass(frozen=True)
class CliProblem:
    """One reason the Pulumi CLI stops before the program runs, in the CLI's own words."""

    keys: tuple[str, ...]
    """The project keys as ``Pulumi.yaml`` writes them (``derpPort``)."""
    message: str
    """``Stack 'home' with configuration key 'derpPort' must be of type 'integer'``."""
    accepts: str | None = None
    """What the CLI takes for that type (:data:`ACCEPTED`), for the reader who must fix it."""


#: What the CLI's check takes for each type (see :func:`type_accepts`), said to the user.
ACCEPTED: Final[Mapping[str, str]] = {
    "integer": "write digits only, e.g. 12345",
    "boolean": "write true or false",
    "string": "write one value, not a list or a map",
    "array<string>": 'write a list of strings, e.g. ["tag:laptop"]',
}


def missing_message(stack: str, keys: list[str]) -> str:
    """pkg/workspace/config.go:30-64: one error naming every missing key, sorted."""
    if len(keys) == 1:
        return f"Stack '{stack}' is missing configuration value '{keys[0]}'"
    quoted = [f"'{k}'" for k in sorted(keys)]
    listed = ", ".join([*quoted[:-2], f"{quoted[-2]} and {quoted[-1]}"])
    return f"Stack '{stack}' is missing configuration values {listed}"


def type_name(spec: Mapping[str, Any]) -> str:
    """``integer``, ``array<string>`` … (sdk/go/common/workspace/project.go:769-775)."""
    items = spec.get("items")
    if isinstance(items, Mapping):
        return f"array<{type_name(items)}>"
    return str(spec.get("type"))


#: strconv.Atoi: an optional sign and decimal digits, within int64 (go1.26 src/strconv/atoi.go).
_ATOI: Final = re.compile(r"^[+-]?[0-9]+$")


def type_accepts(spec: Mapping[str, Any], content: Any) -> bool:
    """sdk/go/common/workspace/project.go:780-840 (ValidateConfigValue): a plain stack value
    arrives as its text, an object as parsed JSON."""
    kind = spec.get("type")
    if kind == "string":
        return isinstance(content, str)
    if kind == "integer":
        if isinstance(content, bool):
            return False
        if isinstance(content, int):
            return True
        if isinstance(content, float):
            return content == math.trunc(content)
        return (
            isinstance(content, str)
            and _ATOI.match(content) is not None
            and -_INT64 <= int(content) < _INT64
        )
    if kind == "boolean":
        return content in ("true", "false") or isinstance(content, bool)
    if kind == "object":
        return isinstance(content, dict)
    items = spec.get("items")
    return (
        isinstance(content, list)
        and isinstance(items, Mapping)
        and all(type_accepts(items, item) for item in content)
    )


def _content(value: Any) -> Any:
    """What the CLI's type check sees of a stack value: its config text, or for a list or map
    the JSON of it parsed back (config.go:136-143); timestamps inside are text."""
    if is_object(value):
        return json.loads(config_string(value))
    return config_string(value)


def _default_content(default: Any) -> Any:
    """A default the CLI applies: text for a string, integer or boolean (``%v``), JSON for
    anything else (config.go:170-193, createConfigValue)."""
    if isinstance(default, str | bool | int) and not isinstance(default, float):
        return config_string(default)
    return json.loads(go_json(default))


def cli_config_problems(
    project: str, spec: Mapping[str, Any], stack_values: Mapping[str, Any], stack: str
) -> tuple[CliProblem, ...]:
    """Every problem the CLI's config validation has with this stack: the missing required keys
    (one message, as the CLI gives it), then each typed key whose value is not of its type, in
    the CLI's order (sorted by key). The CLI stops at the missing keys, or at the first type
    error (pkg/workspace/config.go:88-117, :350-362); the doctor shows them all. Encrypted values
    are not checked (only the CLI can open them)."""
    missing, typed = [], []
    for key in sorted(str(k) for k in spec):
        declared = spec[key]
        full = _full_key(project, key)
        if full not in stack_values:
            default = _project_default(declared)
            if default is None:
                if full.startswith(f"{project}:"):
                    missing.append(key)
                continue
            content: Any = _default_content(default)
        elif _is_secure(stack_values[full]):
            continue
        else:
            value = stack_values[full]
            if isinstance(declared, Mapping) and declared.get("secret"):
                typed.append(
                    CliProblem(
                        (key,),
                        f"Stack '{stack}' with configuration key '{key}' must be encrypted as "
                        "it's secret",
                    )
                )
                continue
            content = _content(value)
        typed_key = isinstance(declared, Mapping) and declared.get("type") is not None
        if typed_key and not type_accepts(declared, content):
            typed.append(
                CliProblem(
                    (key,),
                    f"Stack '{stack}' with configuration key '{key}' must be of type "
                    f"'{type_name(declared)}'",
                    ACCEPTED.get(type_name(declared)),
                )
            )
    found = (
        [CliProblem(tuple(missing), missing_message(stack, missing), "set each of them")]
        if missing
        else []
    )
    return (*found, *typed)


def merge_config(
    project_doc: Mapping[str, Any], stack_doc: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """Full key → value as the CLI merges them (pulumi/pulumi pkg/workspace/config.go
    ``mergeConfig``, docs/upstream/pulumi.md#config-type-check): the stack file's keys (a bare key
    is the project's), then the project's declared defaults, values and bare literals for the keys
    the stack does not set. ESC ``environment:`` imports are refused: their values live in Pulumi
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
    try:
        return {k: config_string(v) for k, v in values.items() if not _is_secure(v)}
    except StackValueError as exc:
        raise StackFileError(str(exc)) from None


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
    project_config = project_doc.get("config") or {}
    if not isinstance(project_config, dict):
        raise StackFileError(f"{project_file}: `config:` is not a mapping")
    stack_doc = _load_yaml(path)
    values = merge_config(project_doc, stack_doc, str(path))
    stack_config = stack_doc.get("config") or {}
    stack_values = {_full_key(project, str(k)): v for k, v in stack_config.items()}
    secure = tuple(sorted(k for k, v in values.items() if _is_secure(v)))
    try:
        readable = {k: config_string(v) for k, v in values.items() if k not in secure}
        cli_problems = cli_config_problems(project, project_config, stack_values, _short(stack))
    except StackValueError as exc:
        raise StackFileError(f"{path}: {exc}") from None
    prefix = f"{NAMESPACE}:"
    raw: dict[str, str | None] = {
        key: readable.get(prefix + key) for key in KNOWN_KEYS if key not in SECRET_KEYS
    }
    return StackConfig(
        project=project,
        stack=_short(stack),
        project_dir=project_dir,
        stack_file=path,
        raw=raw,
        configured_keys=tuple(sorted(k for k in values if k.startswith(prefix))),
        plain={k: v for k, v in readable.items() if not k.startswith(prefix)},
        secure=secure,
        cli_problems=cli_problems,
    )


def _short(stack: str) -> str:
    """The stack's name as the CLI's messages give it (``org/project/home`` → ``home``)."""
    return stack.rsplit("/", 1)[-1]
