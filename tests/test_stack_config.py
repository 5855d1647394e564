"""The one config reader (components/stack_config.py) against the real Pulumi CLI.

``Pulumi.yaml`` declares typed keys (``derpPort: integer`` …) and required ones (``hostname``,
``ipv6``: no default), so ``pulumi up`` stops at the CLI's own check before the program's rules
run, and it prints only the first problem. The reader implements that check from the CLI's source
(docs/upstream/pulumi.md#config-type-check) and gives every problem; here the real CLI v3.274.1
(tests.peers.tools.pulumi_cli: it FAILS when the binary is missing) is asked about the same stack
files, through ``pulumi preview`` on a local backend, and must say exactly the reader's messages:
the first one as it stands, each later one once the earlier ones are fixed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from components.stack_config import config_string, go_yaml_scalar, load_stack
from tests.mocks import ROOT
from tests.peers.pulumi_cli import Project

#: A valid stack: every case below changes it (None removes a key).
VALID = {"home-derp:hostname": "derp.example.com", "home-derp:ipv6": "auto"}

#: (what is written in the stack file, YAML as typed) — plain, quoted, empty, structured.
CASES: list[dict[str, str | None]] = [
    {"home-derp:derpPort": '"12345"'},
    {"home-derp:derpPort": "12345.0"},  # a whole float is an integer
    {"home-derp:derpPort": '"0x10"'},  # text: strconv.Atoi refuses it
    {"home-derp:derpPort": "0x10"},  # plain: yaml.v3 reads 16
    {"home-derp:derpPort": "0o17"},  # plain: yaml.v3 reads 15 (PyYAML would read text)
    {"home-derp:derpPort": "1e3"},  # plain: a float, 1000 (PyYAML would read text)
    {"home-derp:derpPort": "1e21"},  # written back as 1e+21: not an integer
    {"home-derp:derpPort": "true"},
    {"home-derp:derpPort": "1.5"},
    {"home-derp:derpPort": '" 12"'},
    {"home-derp:derpPort": '"+12"'},
    {"home-derp:derpPort": '""'},
    {"home-derp:derpPort": ""},  # empty: the empty string, not the default
    {"home-derp:derpPort": "[1]"},
    {"derpPort": "abc"},  # the project's namespace may be left out
    {"home-derp:verifyClients": '"true"'},
    {"home-derp:verifyClients": "True"},
    {"home-derp:verifyClients": '"True"'},  # quoted: only true/false are booleans as text
    {"home-derp:verifyClients": "yes"},  # yaml.v3 reads text (PyYAML would read true)
    {"home-derp:verifyClients": "on"},
    {"home-derp:verifyClients": '"1"'},
    {"home-derp:hostname": "12345"},  # any plain scalar is text for a string key
    {"home-derp:hostname": "[a]"},
    {"home-derp:peerRelaySources": '["a"]'},
    {"home-derp:peerRelaySources": "[1]"},
    {"home-derp:peerRelaySources": '"a"'},
    {"home-derp:ipv6": None},
    {"home-derp:ipv6": None, "home-derp:hostname": None},
    # several problems: the CLI names one at a time, the reader all of them
    {"home-derp:ipv6": None, "home-derp:derpPort": "abc"},
    {"home-derp:derpPort": "abc", "home-derp:verifyClients": "yes", "home-derp:stunPort": "x"},
]


def stack_file(case: dict[str, str | None]) -> str:
    config = {**VALID, **case}
    return "config:\n" + "".join(f"  {k}: {v}\n" for k, v in config.items() if v is not None)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """One throwaway project with the real Pulumi.yaml and stack ``t`` (local backend)."""
    yield Project(tmp_path_factory.mktemp("cli"), ROOT / "Pulumi.yaml")


# The reader's messages are the real CLI's, word for word: the one the CLI stops on now, and after
# fixing it (the key dropped back to valid), the next, until the CLI accepts the stack — as the
# reader said it would. (Before, the doctor had no such messages: "pulumi up" stopped on text the
# doctor never showed, and a value like 12345.0 or 0o17 was read differently from the CLI.)
@pytest.mark.parametrize("case", CASES, ids=[repr(c) for c in CASES])
def test_messages_are_the_real_clis(project: Project, case: dict[str, str | None]) -> None:
    case = dict(case)
    while True:
        text = stack_file(case)
        (project.dir / f"Pulumi.{project.stack}.yaml").write_text(text)
        ours = load_stack(project.dir, project.stack).cli_problems
        real = project.config_error(text)
        assert real == (ours[0].message if ours else None), text
        if not ours:
            return
        for key in ours[0].keys:  # fix what the CLI named, as a user would
            case.pop(key, None)
            case[f"home-derp:{key}"] = VALID.get(f"home-derp:{key}")


# The program receives what the CLI hands over: plain scalars as yaml.v3 reads them, numbers as
# Go's JSON writes them, an empty value as "" (pure; the values above came from the real CLI's
# `pulumi config --json` on these files).
@pytest.mark.parametrize(
    ("written", "given"),
    [
        ("12345.0", "12345"),
        ("0o17", "15"),
        ("0x10", "16"),
        ("1_000", "1000"),
        ("1e3", "1000"),
        ("1e21", "1e+21"),
        ("0.0000001", "1e-7"),
        ("yes", "yes"),
        ("on", "on"),
        ("True", "true"),
        ("~", ""),
        ("", ""),
        ("'0o17'", "0o17"),
        ("[1, 'a', true]", '[1,"a",true]'),
        ("{b: 1, a: 2.0}", '{"a":2,"b":1}'),
    ],
)
def test_values_reach_the_program_as_the_cli_hands_them(written: str, given: str) -> None:
    from components.stack_config import CliYamlLoader

    value = yaml.load(f"v: {written}\n", Loader=CliYamlLoader)["v"]
    assert config_string(value) == given


# What the real CLI hands the program for the same files (`pulumi config --json`): the reader's
# strings, for the forms where PyYAML's YAML 1.1 and yaml.v3 disagree.
def test_config_strings_equal_the_clis(project: Project) -> None:
    written = {
        "home-derp:regionName": "0o17",
        "home-derp:derpPort": "12345.0",
        "home-derp:ddnsImage": "yes",
        "home-derp:zone": "2024-1-2",  # a timestamp: Go's time.Time.String()
        "home-derp:goProxy": '[1.0, "a", {b: 2, a: 1e21}, 0.0000001]',  # JSON as Go writes it
        "home-derp:buildImage": "1e3",
    }
    text = stack_file(written)
    (project.dir / f"Pulumi.{project.stack}.yaml").write_text(text)
    done = project.run("config", "--json", "-s", project.stack, check=True)
    shown = {k: v["value"] for k, v in yaml.safe_load(done.stdout).items() if "value" in v}
    raw = load_stack(project.dir, project.stack).raw
    for key in written:
        assert raw[key.split(":", 1)[1]] == shown[key], key


# Pure: yaml.v3's plain-scalar rules where YAML 1.1 (PyYAML) differs.
def test_plain_scalars_as_yaml_v3_reads_them() -> None:
    assert go_yaml_scalar("yes") == "yes" and go_yaml_scalar("off") == "off"
    assert go_yaml_scalar("0o17") == 15 and go_yaml_scalar("012") == 10
    assert go_yaml_scalar("1e3") == 1000.0 and go_yaml_scalar("1e400") == "1e400"
    assert go_yaml_scalar("09") == 9.0  # not octal: read as a float, as yaml.v3 does
    assert go_yaml_scalar("_1") == "_1" and go_yaml_scalar("1_0") == 10


# The committed stacks pass the CLI's own check (the reader finds nothing; the real CLI agrees
# in test_messages_are_the_real_clis for the same shapes).
@pytest.mark.parametrize("stack", ["home", "office"])
def test_committed_stacks_pass_the_clis_check(stack: str) -> None:
    assert load_stack(ROOT, stack).cli_problems == ()


def test_project_file_is_what_the_cases_assume() -> None:
    declared = yaml.safe_load(Path(ROOT / "Pulumi.yaml").read_text())["config"]
    assert declared["derpPort"]["type"] == "integer" and "default" not in declared["hostname"]
    assert declared["peerRelaySources"]["items"] == {"type": "string"}
