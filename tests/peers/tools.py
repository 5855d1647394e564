"""The real Tailscale programs, built by ``tests/tools/install`` from ``tests/tools/go-tools.txt``.

``tool("derper")`` is ``${HOME_DERP_TOOLS:-<repo>/.ci/work/tools}/<version>/derper`` with the
version pinned in the list. A missing binary raises :class:`ToolMissing` (an AssertionError, so
the test FAILS with the command that installs it; it never skips).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOOLS_LIST = REPO / "tests" / "tools" / "go-tools.txt"
INSTALL = "tests/tools/install"
TOOLS_ENV = "HOME_DERP_TOOLS"


class ToolMissing(AssertionError):
    """A pinned program is not built; the message says how to build it."""


@dataclass(frozen=True)
class PinnedTool:
    name: str  # the binary's name: the package's last element
    package: str  # <module>/cmd/<name>
    version: str  # as pinned: v1.102.5


def parse_tools_list(text: str) -> dict[str, PinnedTool]:
    """``package version`` lines (``#`` comments, blank lines ignored) → tools by binary name."""
    tools: dict[str, PinnedTool] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[1].startswith("v"):
            raise ValueError(f"{TOOLS_LIST.name}:{number}: expected `package vX.Y.Z`, got {raw!r}")
        package, version = fields
        name = package.rsplit("/", 1)[-1]
        tools[name] = PinnedTool(name, package, version)
    return tools


@cache
def pinned() -> dict[str, PinnedTool]:
    return parse_tools_list(TOOLS_LIST.read_text())


def tools_root() -> Path:
    return Path(os.environ.get(TOOLS_ENV) or REPO / ".ci" / "work" / "tools")


def version_of(name: str) -> str:
    """The pinned version without the ``v`` (what the binaries report: ``1.102.5``)."""
    return pinned()[name].version.removeprefix("v")


def tool(name: str) -> Path:
    """Path of the pinned binary ``name``; ToolMissing (test failure) when it is not built."""
    try:
        spec = pinned()[name]
    except KeyError:
        raise ToolMissing(f"{name} is not pinned in {TOOLS_LIST}") from None
    path = tools_root() / spec.version / name
    if not os.access(path, os.X_OK):
        raise ToolMissing(
            f"{spec.package}@{spec.version} is not built: {path} is missing. "
            f"Run `bash {INSTALL}` (builds every tool of tests/tools/go-tools.txt with Go; "
            f"set {TOOLS_ENV} to build elsewhere)."
        )
    return path


def derper_build_cache() -> Path:
    """The Go build cache tests/tools/install filled while building derper (same release, flags
    and toolchain as the product's Dockerfile build); fails like :func:`tool` when missing."""
    cache = tool("derper").parent / "derper-go-build"
    if not (cache / "README").is_file():
        raise ToolMissing(
            f"no Go build cache of derper at {cache}: run `bash tests/tools/install` "
            "(it builds derper with that cache)"
        )
    return cache


#: The wrapper module that pins the Pulumi CLI (tests/tools/install builds it).
PULUMI_MODULE = REPO / "tests" / "tools" / "pulumi" / "go.mod"
_PULUMI_REQUIRE = re.compile(r"^(?:require)?\s*github\.com/pulumi/pulumi/pkg/v3 (v[0-9.]+)", re.M)


def pulumi_version() -> str:
    """The Pulumi CLI release the tests run (``v3.274.1``): the wrapper module's requirement."""
    found = _PULUMI_REQUIRE.search(PULUMI_MODULE.read_text())
    if found is None:
        raise ToolMissing(f"{PULUMI_MODULE} does not require github.com/pulumi/pulumi/pkg/v3")
    return found[1]


def pulumi_cli() -> Path:
    """``<tools>/<version>/pulumi``; ToolMissing (test failure) when it is not built."""
    version = pulumi_version()
    path = tools_root() / version / "pulumi"
    if not os.access(path, os.X_OK):
        raise ToolMissing(
            f"the Pulumi CLI {version} is not built: {path} is missing. Run `bash {INSTALL}` "
            f"(builds it from the Go module proxy through {PULUMI_MODULE.relative_to(REPO)})."
        )
    return path
