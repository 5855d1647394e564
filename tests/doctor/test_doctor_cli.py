"""``python -m components.doctor``: what needs no relay host — the stack files, the credentials'
stand-ins, the parsers on recorded output, redaction, and the command line's usage errors.

The checks against a real relay host (namespace, dockerd, sshd, API peers) are the other modules
here (tests/doctor/world.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components import tailscale_api
from components.doctor.credentials import STAND_INS, resolve, secrets_check
from components.doctor.host_checks import Listener, parse_cgroups, parse_ss
from components.doctor.model import Report, failed, passed
from components.settings import SECRET_KEYS
from components.stack_config import StackFileError, load_stack
from tests.mocks import ROOT, stack_config


def doctor_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "components.doctor", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=False,
    )


def project(tmp_path: Path, stack: dict[str, object], name: str = "t") -> Path:
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": stack}))
    return tmp_path


# ---------------------------------------------------------------------------------------------
# Stack files


# The doctor reads every committed stack exactly as the suite's own CLI model does (project
# defaults, then the stack's values, all strings): the same raw config the program gets.
@pytest.mark.parametrize("stack", ["home", "office"])
def test_committed_stacks_read_like_the_cli(stack: str) -> None:
    config = load_stack(ROOT, stack)
    expected = stack_config(ROOT / f"Pulumi.{stack}.yaml")
    ours = {f"home-derp:{k}": v for k, v in config.raw.items() if v is not None}
    theirs = {k: v for k, v in expected.items() if k.startswith("home-derp:")}
    assert ours == {k: v for k, v in theirs.items() if k.split(":")[1] not in SECRET_KEYS}
    written = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    assert config.raw["derpPort"] == str(written["home-derp:derpPort"])  # a YAML int → a string


# secure: values are listed by name and never read; short keys get the project's namespace;
# lists become JSON text and booleans true/false, as Pulumi hands them over.
def test_secure_values_are_named_not_read(tmp_path: Path) -> None:
    stack = {
        "hostname": "derp.example.com",
        "home-derp:verifyClients": False,
        "home-derp:peerRelaySources": ["tag:laptop"],
        "cloudflare:apiToken": {"secure": "v1:c2VjcmV0"},
        "tailscale:tailnet": "example.com",
        "home-derp:derpport": 12345,  # a typo the settings row reports (settings.unknown_keys)
    }
    config = load_stack(project(tmp_path, stack), "t")
    assert "home-derp:derpport" in config.configured_keys
    assert config.secure == ("cloudflare:apiToken",)
    assert "cloudflare:apiToken" not in config.plain
    assert config.plain["tailscale:tailnet"] == "example.com"
    assert config.raw["hostname"] == "derp.example.com"
    assert config.raw["verifyClients"] == "false"
    assert config.raw["peerRelaySources"] == '["tag:laptop"]'
    assert "v1:c2VjcmV0" not in repr(config)
    check = secrets_check(config, {}, policy_off=False)
    assert check.status == "not_checked" and "export CLOUDFLARE_API_TOKEN=" in (check.fix or "")
    carried = secrets_check(config, {"CLOUDFLARE_API_TOKEN": "x"}, policy_off=False)
    assert carried.status == "pass"


# A mistyped stack is a usage error that names the close match.
def test_missing_stack_names_the_close_match() -> None:
    with pytest.raises(StackFileError, match=r"did you mean -s home\?") as exc:
        load_stack(ROOT, "hme")
    assert exc.value.usage


# ---------------------------------------------------------------------------------------------
# Credentials


# Each stand-in variable is one the program's credential resolution really reads for that key
# (so the doctor's advice "export X instead" is true), and the key itself is read from config.
@pytest.mark.parametrize(
    ("key", "field", "companions"),
    [
        ("tailscale:apiKey", "api_key", {}),
        ("tailscale:oauthClientId", "client_id", {"TAILSCALE_OAUTH_CLIENT_SECRET": "s"}),
        ("tailscale:oauthClientSecret", "client_secret", {"TAILSCALE_OAUTH_CLIENT_ID": "i"}),
        ("tailscale:identityToken", "identity_token", {"TAILSCALE_OAUTH_CLIENT_ID": "i"}),
        ("tailscale:audience", "audience", {"TAILSCALE_OAUTH_CLIENT_ID": "i"}),
        ("tailscale:tailnet", "tailnet", {"TAILSCALE_API_KEY": "k"}),
        ("tailscale:baseUrl", "base_url", {"TAILSCALE_API_KEY": "k"}),
    ],
)
def test_stand_ins_are_what_the_program_reads(
    key: str, field: str, companions: dict[str, str]
) -> None:
    for name in STAND_INS[key]:
        creds = tailscale_api.resolve_credentials({}, {**companions, name: "http://v"})
        assert getattr(creds, field) == "http://v", name
    from_config = tailscale_api.resolve_credentials({key: "http://c"}, companions)
    assert getattr(from_config, field) == "http://c"


# The Cloudflare token comes from a plain stack value or CLOUDFLARE_API_TOKEN, like the program.
def test_cloudflare_token_sources(tmp_path: Path) -> None:
    plain = load_stack(project(tmp_path, {"cloudflare:apiToken": "plain-token"}), "t")
    assert resolve(plain, {}).cloudflare_token == "plain-token"
    assert resolve(plain, {"CLOUDFLARE_API_TOKEN": "env"}).cloudflare_token == "plain-token"
    none = load_stack(project(tmp_path, {}, "u"), "u")
    assert resolve(none, {"CLOUDFLARE_API_TOKEN": "env"}).cloudflare_token == "env"
    assert resolve(none, {}).cloudflare_token is None


# Every secret value is replaced in summary, detail, fix and warnings.
def test_report_redacts_secrets() -> None:
    report = Report(
        "s",
        "p",
        "f",
        None,
        (
            passed("a", "token tok-123456 ok", "detail tok-123456"),
            failed("b", "x", "use tok-123456"),
        ),
        ("warning tok-123456",),
    ).redacted(["tok-123456"])
    assert "tok-123456" not in repr(report.to_json())
    assert report.checks[0].summary == "token *** ok"


# ---------------------------------------------------------------------------------------------
# Parsers (lines recorded from iproute2 6.1 `ss -Hlnptu` and a container's /proc/<pid>/cgroup)


# ss: v4, bracketed v6, wildcard and interface-scoped addresses; several owners; none (not root).
def test_parse_ss_recorded_lines() -> None:
    text = (
        'udp UNCONN 0      0               0.0.0.0:37535 0.0.0.0:* users:(("tailscaled",pid=27300,fd=13))\n'  # noqa: E501
        'udp UNCONN 0      0                     *:3478        *:* users:(("derper",pid=4242,fd=7))\n'  # noqa: E501
        "udp UNCONN 0      0        127.0.0.53%lo:53      0.0.0.0:*\n"
        'tcp LISTEN 0      4096              [::]:12345     [::]:* users:(("nginx",pid=10,fd=6),("nginx",pid=11,fd=6))\n'  # noqa: E501
        "garbage line\n"
    )
    assert parse_ss(text) == [
        Listener("udp", "0.0.0.0", 37535, (("tailscaled", 27300),)),
        Listener("udp", "*", 3478, (("derper", 4242),)),
        Listener("udp", "127.0.0.53", 53, ()),
        Listener("tcp", "::", 12345, (("nginx", 10), ("nginx", 11))),
    ]


# cgroups: both Docker cgroup drivers name the container id; other processes map to nothing.
def test_parse_cgroups_both_drivers() -> None:
    cid = "4f" * 32
    text = (
        f"/proc/100/cgroup:0::/docker/{cid}\n"
        f"/proc/200/cgroup:0::/system.slice/docker-{cid}.scope\n"
        "/proc/300/cgroup:0::/user.slice/user-0.slice/session-1.scope\n"
    )
    assert parse_cgroups(text) == {100: cid, 200: cid}


# ---------------------------------------------------------------------------------------------
# The command line


# Usage errors exit 2 with a did-you-mean (no abbreviations: --js is not --json).
@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--jsn"], 2, "did you mean --json?"),
        (["--stak", "home"], 2, "did you mean --stack?"),
        (["--js"], 2, "unrecognized arguments: --js"),
        (["-s", "hme"], 2, "did you mean -s home?"),
        (["--timeout", "-1"], 2, "is not a timeout in seconds"),
    ],
)
def test_cli_usage_errors(args: list[str], code: int, says: str) -> None:
    done = doctor_cli(*args)
    assert done.returncode == code, done.stderr
    assert says in done.stderr
    assert done.stdout == ""


# Outside a project (no Pulumi.yaml here or above) the doctor cannot run: exit 3, no usage banner.
def test_cli_without_project_cannot_run(tmp_path: Path) -> None:
    done = doctor_cli("-C", str(tmp_path))
    assert done.returncode == 3
    assert "no Pulumi.yaml" in done.stderr


# A stack file that is not valid YAML: exit 3 with the line and column, never the text of the line
# (PyYAML's own message quotes it, and stack files hold secrets).
def test_broken_stack_file_never_prints_its_text(tmp_path: Path) -> None:
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    secret = "Abc123SecretTok"
    (tmp_path / "Pulumi.bad.yaml").write_text(
        f"config:\n  home-derp:hostname: derp.example.com\n  cloudflare:apiToken: {secret}: en\n"
    )
    done = doctor_cli("-C", str(tmp_path), "-s", "bad", "--json")
    assert done.returncode == 3, done.stderr
    assert "is not valid YAML" in done.stderr and "line 3" in done.stderr
    assert secret not in done.stderr + done.stdout
