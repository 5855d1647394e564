"""The commands in the README, the guides and the shipped stack files are one set, and true.

A newcomer copies commands from several places: the first hour, a guide, a stack file's comment.
Every shell command is extracted (fenced ``bash``/``sh``/``console`` blocks and unlabelled ones,
``$ ``-prompted lines where a block has prompts; inline code that is more than a tool's bare
name; ``#`` comments of ``Pulumi.<stack>.yaml``) and held against what ships:

* ``python -m components.doctor`` / ``components.netcheck``: parsed by the CLIs' own argparse
  parsers (``build_parser``), so a flag that does not exist fails here, not on a user's screen;
  the synopsis in docs/guide/netcheck.md names exactly the parser's options;
* example names: a stack (``-s``) is a shipped ``Pulumi.<stack>.yaml``; the checker's HOST,
  ``--derp-port``, ``--stun-port`` and ``--container`` are one shipped stack's hostname, ports and
  container (``components/naming.py``); every ``derper-<id>-<code>…`` name in the text is one of a
  shipped stack's containers or volumes;
* ``pulumi up`` / ``pulumi preview``: always ``-s <stack> --policy-pack policy``, as the first
  hour runs it (the policy pack is skipped silently otherwise); a block that creates a stack also
  chooses the backend (``pulumi login``) and the passphrase (``PULUMI_CONFIG_PASSPHRASE``);
* no hand-kept counts ("930 tests") anywhere in the docs: they go stale with the next test.

The Pulumi commands' flags are also checked against the real CLI's ``--help``
(tests/peers/pulumi_cli.py).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

from components import naming
from components.doctor.cli import build_parser as doctor_parser
from components.netcheck.cli import build_parser as netcheck_parser
from tests.peers.pulumi_cli import environment, pulumi_cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs" / "guide").glob("*.md"))]
STACK_FILES = sorted(ROOT.glob("Pulumi.*.yaml"))
PYTHONS = {"python", "python3", "venv/bin/python"}
SEPARATORS = {"&&", "||", ";", "|"}
FENCE = re.compile(r"^```(\w*)\s*$")
INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
PLACEHOLDER = re.compile(r"^<[^>]+>$|…")
NAME = re.compile(r"\bderper-\d+-[a-z0-9]+(?:-[a-z]+)*")
COUNT = re.compile(r"\b\d[\d,]*\s+(?:tests|test cases|test functions|test modules)\b", re.I)
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}


@dataclass(frozen=True)
class Command:
    where: str
    """``README.md:49``: where a reader finds it."""
    argv: tuple[str, ...]
    fenced: bool
    """From a code block or a stack file (what is copied and run), not a sentence."""

    def __str__(self) -> str:
        return f"{self.where}: {shlex.join(self.argv)}"


@dataclass(frozen=True)
class Stack:
    name: str
    hostname: str
    derp_port: int
    stun_port: int
    region_id: int
    region_code: str

    @property
    def names(self) -> set[str]:
        """Every derper-… name home-derp gives this stack's things on the host."""
        rid, code = self.region_id, self.region_code
        return {
            naming.container_name(rid, code),
            naming.state_volume_name(rid, code),
            naming.state_owner_name(rid, code),
        }


@cache
def stacks() -> dict[str, Stack]:
    found = {}
    for path in STACK_FILES:
        config = yaml.safe_load(path.read_text())["config"]
        name = path.name[len("Pulumi.") : -len(".yaml")]
        found[name] = Stack(
            name,
            config["home-derp:hostname"],
            int(config["home-derp:derpPort"]),
            int(config["home-derp:stunPort"]),
            int(config["home-derp:regionId"]),
            config["home-derp:regionCode"],
        )
    return found


# ---------------------------------------------------------------------------------- extraction


def _split(line: str) -> list[list[str]]:
    """Shell words of one logical line, split at ``&&``/``||``/``;``/``|`` (comments dropped)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    parts: list[list[str]] = [[]]
    try:
        for word in lexer:
            if word in SEPARATORS:
                parts.append([])
            else:
                parts[-1].append(word)
    except ValueError:  # not shell (a diagram, output with an apostrophe): words as they are
        return [line.split()]
    return [p for p in parts if p]


def _block_commands(lines: list[str]) -> Iterator[tuple[int, str]]:
    """(offset, logical line) of the commands of one code block: ``$ `` lines when the block
    has prompts, else every line that is not a comment; ``\\`` continuations joined."""
    prompted = any(line.startswith("$ ") for line in lines)
    logical: list[tuple[int, str]] = []
    joining = False
    for n, line in enumerate(lines):
        if joining:
            logical[-1] = (logical[-1][0], logical[-1][1] + " " + line.strip())
        elif prompted and line.startswith("$ "):
            logical.append((n, line[2:]))
        elif not prompted and line.strip() and not line.lstrip().startswith("#"):
            logical.append((n, line))
        else:
            joining = False
            continue
        joining = logical[-1][1].endswith("\\")
        if joining:
            logical[-1] = (logical[-1][0], logical[-1][1][:-1])
    yield from logical


def _is_name(span: str) -> bool:
    """``pulumi up``, ``python -m components.doctor``: a tool named in a sentence."""
    words = span.split()
    return words in (["pulumi", "up"], ["pulumi", "preview"]) or (
        len(words) == 3 and _is_python(words[0]) and words[1] == "-m"
    )


def _is_python(word: str) -> bool:
    return word in PYTHONS or word.endswith("/venv/bin/python")


def _module(argv: tuple[str, ...] | list[str]) -> tuple[str, int] | None:
    """(``components.<tool>``, index of its first argument) for ``python -m components.<tool>``
    and for ``python <checkout>/components/<tool>`` (the form for another directory)."""
    if len(argv) < 2 or not _is_python(argv[0]):
        return None
    if argv[1] == "-m" and len(argv) > 2 and argv[2].startswith("components."):
        return argv[2], 3
    match = re.search(r"(?:^|/)components/(\w+)/?$", argv[1])
    return (f"components.{match[1]}", 2) if match else None


def _is_tool(argv: list[str]) -> bool:
    return argv[0] == "pulumi" or _module(argv) is not None


def doc_commands(path: Path) -> list[Command]:
    """Every command of a Markdown file (see the module docstring)."""
    found: list[Command] = []
    text = path.read_text(encoding="utf-8").splitlines()
    rel = path.relative_to(ROOT)
    block: list[str] | None = None
    start, lang = 0, ""
    for number, line in enumerate(text, 1):
        fence = FENCE.match(line.strip())
        if fence and block is None:
            block, start, lang = [], number, fence[1]
            continue
        if line.strip().startswith("```") and block is not None:
            if lang in SHELL_LANGS:
                lines = [b.strip() for b in block]
                for offset, logical in _block_commands(lines):
                    if "[--" in logical:  # a usage synopsis, checked on its own
                        continue
                    for argv in _split(logical):
                        found.append(Command(f"{rel}:{start + 1 + offset}", tuple(argv), True))
            block = None
            continue
        if block is not None:
            block.append(line)
            continue
        for span in INLINE.findall(line):
            if _is_name(span) or "[--" in span:
                continue  # the command's name in a sentence, or a synopsis
            for argv in _split(span):
                found.append(Command(f"{rel}:{number}", tuple(argv), False))
    return [c for c in found if _is_tool(list(c.argv))]


def stack_file_commands(path: Path) -> list[Command]:
    """Commands in a stack file's ``#`` comments (``#   pulumi up -s office``)."""
    found = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        body = line.strip().lstrip("#").strip()
        if line.strip().startswith("#") and body.startswith("pulumi "):
            for argv in _split(body):
                found.append(Command(f"{path.name}:{number}", tuple(argv), True))
    return found


@cache
def all_commands() -> tuple[Command, ...]:
    found = [c for path in DOCS for c in doc_commands(path)]
    found += [c for path in STACK_FILES for c in stack_file_commands(path)]
    return tuple(found)


def tool_commands(module: str) -> list[Command]:
    return [c for c in all_commands() if (_module(c.argv) or ("", 0))[0] == module]


def tool_args(command: Command) -> tuple[str, ...]:
    """The arguments after ``python -m components.<tool>`` (or the tool's folder)."""
    found = _module(command.argv)
    assert found is not None, command
    return command.argv[found[1] :]


def pulumi_commands(*verbs: str) -> list[Command]:
    return [c for c in all_commands() if c.argv[0] == "pulumi" and c.argv[1] in verbs]


def parse(parser: argparse.ArgumentParser, argv: tuple[str, ...]) -> argparse.Namespace:
    """The CLI's own parser on ``argv``; an AssertionError with argparse's message on a usage
    error."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return parser.parse_args(list(argv))
    except SystemExit:
        raise AssertionError(err.getvalue().strip().splitlines()[-1]) from None


def option(argv: tuple[str, ...], *names: str) -> str | None:
    """The value of the first of ``names`` in ``argv`` (``-s home``, ``--stack=home``)."""
    for n, word in enumerate(argv):
        for name in names:
            if word == name and n + 1 < len(argv):
                return argv[n + 1]
            if word.startswith(name + "=") and name.startswith("--"):
                return word.split("=", 1)[1]
    return None


def placeholder(value: str | None) -> bool:
    return value is not None and PLACEHOLDER.search(value) is not None


# ------------------------------------------------------------------------------------- tests


# The extraction finds what a reader copies: the first hour's doctor, deploy and checker commands.
def test_the_first_hour_is_found() -> None:
    first_hour = [c for c in all_commands() if c.where.startswith("README.md:")]
    texts = [shlex.join(c.argv) for c in first_hour]
    assert "venv/bin/python -m components.doctor -s home" in texts
    assert "pulumi up -s home --policy-pack policy" in texts
    checker = "venv/bin/python -m components.netcheck derp.example.com"
    assert any(t.startswith(checker) for t in texts)
    assert len(tool_commands("components.doctor")) >= 5
    assert len(tool_commands("components.netcheck")) >= 3


# Every doctor and checker command parses with the CLI's own parser (a flag that does not exist,
# or a value it refuses, fails here), and runs with the venv's Python like the first hour.
@pytest.mark.parametrize("module", ["components.doctor", "components.netcheck"])
def test_tool_commands_parse_with_the_real_parser(module: str) -> None:
    make = doctor_parser if module == "components.doctor" else netcheck_parser
    problems = []
    for command in tool_commands(module):
        args = tuple(a for a in tool_args(command) if not placeholder(a) or a.startswith("-"))
        values = [a for a in tool_args(command) if placeholder(a)]
        try:
            if not values:
                parse(make(), args)
        except AssertionError as exc:
            problems.append(f"{command}: {exc}")
        if not command.argv[0].endswith("venv/bin/python"):
            problems.append(f"{command}: the first hour runs it with the venv's Python")
    assert problems == []


# The synopsis of docs/guide/netcheck.md names exactly the checker's options.
def test_checker_synopsis_names_every_option() -> None:
    text = (ROOT / "docs" / "guide" / "netcheck.md").read_text()
    synopsis = next(block for block in re.findall(r"```\n(.*?)```", text, re.S) if "[--" in block)
    shown = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", synopsis))
    real = {s for a in netcheck_parser()._actions for s in a.option_strings if s.startswith("--")}
    assert shown == real - {"--help"}


# A stack named in a command (-s/--stack, `pulumi stack init`) is a shipped stack file.
def test_stacks_named_are_shipped() -> None:
    problems = []
    for command in all_commands():
        names = [option(command.argv, "-s", "--stack")]
        if command.argv[:3] == ("pulumi", "stack", "init") and len(command.argv) > 3:
            names.append(command.argv[3])
        for name in names:
            if name is not None and not placeholder(name) and name not in stacks():
                problems.append(f"{command}: no Pulumi.{name}.yaml")
    assert problems == []


# The checker's examples name one shipped relay: its hostname, ports and container.
def test_checker_examples_match_a_shipped_stack() -> None:
    by_host = {s.hostname: s for s in stacks().values()}
    problems = []
    for command in tool_commands("components.netcheck"):
        args = parse(netcheck_parser(), tool_args(command))
        stack = by_host.get(args.host)
        if stack is None:
            problems.append(f"{command}: {args.host} is no shipped stack's hostname")
            continue
        shipped = {
            "--derp-port": str(stack.derp_port),
            "--stun-port": str(stack.stun_port),
            "--container": naming.container_name(stack.region_id, stack.region_code),
        }
        given = {flag: option(command.argv, flag) for flag in shipped}
        problems += [
            f"{command}: {flag} {value}, but Pulumi.{stack.name}.yaml gives {shipped[flag]}"
            for flag, value in given.items()
            if value is not None and value != shipped[flag]
        ]
    assert problems == []


# Every derper-<id>-<code>… name in the README and the guides is a shipped stack's container or
# volume (the issue saw --container derper-900-home beside regionCode homelab).
def test_derper_names_match_a_shipped_stack() -> None:
    known = set().union(*(s.names for s in stacks().values()))
    problems = [
        f"{path.relative_to(ROOT)}:{n}: {name}"
        for path in DOCS
        for n, line in enumerate(path.read_text().splitlines(), 1)
        for name in NAME.findall(line)
        if name not in known
    ]
    assert problems == [], f"shipped: {sorted(known)}"


# `pulumi up` and `pulumi preview` are one command everywhere: with the stack and the policy
# pack, as the first hour runs them (without --policy-pack the pack is skipped silently).
def test_pulumi_up_and_preview_carry_the_same_flags() -> None:
    problems = []
    for command in pulumi_commands("up", "preview"):
        if option(command.argv, "--policy-pack") != "policy":
            problems.append(f"{command}: no --policy-pack policy")
        if option(command.argv, "-s", "--stack") is None:
            problems.append(f"{command}: no -s <stack>")
    assert problems == []


# A block that creates a stack also chooses its backend and passphrase, as the first hour does:
# otherwise `pulumi stack init` stops at a login or a passphrase prompt.
def test_stack_init_comes_with_backend_and_passphrase() -> None:
    problems = []
    for path in DOCS:
        text = path.read_text()
        for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, re.S):
            if "pulumi stack init" not in block:
                continue
            if "pulumi login" not in block and "PULUMI_BACKEND_URL" not in block:
                problems.append(f"{path.name}: `pulumi stack init` without a backend")
            if "PULUMI_CONFIG_PASSPHRASE" not in block:
                problems.append(f"{path.name}: `pulumi stack init` without the passphrase")
    assert problems == []


# No hand-kept counts of tests in the docs: they are wrong after the next commit.
def test_no_hand_kept_test_counts() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{n}: {m.group(0)}"
        for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
        for n, line in enumerate(path.read_text().splitlines(), 1)
        for m in COUNT.finditer(line)
    ]
    assert found == []


# --------------------------------------------------------------- the real Pulumi CLI's flags


def cli_flags(cli: Path, verb: tuple[str, ...], workdir: Path) -> set[str]:
    """The flags ``pulumi <verb> --help`` lists (its own and the global ones)."""
    done = subprocess.run(
        [str(cli), *verb, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environment(workdir),
    )
    assert done.returncode == 0, done.stderr
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*|-[a-zA-Z])\b", done.stdout))


# Every flag of every Pulumi command in the docs exists in the real CLI's --help.
def test_pulumi_flags_exist_in_the_real_cli(tmp_path: Path) -> None:
    cli = pulumi_cli()
    problems = []
    cache: dict[tuple[str, ...], set[str]] = {}
    for command in pulumi_commands("up", "preview", "login", "stack", "config"):
        verb = command.argv[1:3] if command.argv[1] in ("stack", "config") else command.argv[1:2]
        if len(verb) == 2 and verb[1].startswith("-"):
            verb = verb[:1]
        if verb not in cache:
            cache[verb] = cli_flags(cli, verb, tmp_path)
        for word in command.argv[1:]:
            flag = word.split("=", 1)[0]
            if flag.startswith("-") and flag not in cache[verb]:
                problems.append(f"{command}: `pulumi {' '.join(verb)}` has no {flag}")
    assert problems == []
